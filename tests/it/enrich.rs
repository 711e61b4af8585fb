//! Enrich look-ups against a real HTTP server (axum on 127.0.0.1:0) that the test starts and
//! whose requests it counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use contextgate::pipeline::{Outcome, Verdict};
use contextgate::stages::{Reason, Stage};
use serde_json::json;

use crate::helpers::*;

struct Stub {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Stub {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn spawn_stub() -> Stub {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/customers/{id}",
            get(|Path(id): Path<String>| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                axum::Json(json!({"name": format!("name of {id}"), "tier": "gold"})).into_response()
            }),
        )
        .route(
            "/slow/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "{}"
            }),
        )
        .route(
            "/fail/{id}",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/busy/{id}",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "7")],
                    "",
                )
            }),
        )
        .route("/missing/{id}", get(|| async { StatusCode::NOT_FOUND }))
        .route("/invalid/{id}", get(|| async { "this is not json" }))
        .route(
            "/big/{id}",
            get(|| async { format!("\"{}\"", "x".repeat(1024 * 1024)) }),
        )
        .route(
            "/redirect/{id}",
            get(|| async {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, "/customers/x")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }),
        )
        .layer(axum::middleware::from_fn_with_state(hits.clone(), count));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Stub { base, hits }
}

async fn count(
    State(hits): State<Arc<AtomicUsize>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

const SCRIPT: &str =
    r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#;

/// An enrich fixture whose look-up `customer` queries `<base><path>/{/id}`.
fn enrich_fixture(stub: &Stub, path: &str, extra: &str) -> Fixture {
    let fixture = Fixture::new(
        "enrich",
        Some(SCRIPT),
        &format!(
            "{extra}\n[[routes.lookups]]\nname = \"customer\"\nurl = \"{}{path}/{{/id}}\"\ntimeout = \"300ms\"\n",
            stub.base
        ),
    );
    fixture.allow(&stub.base);
    fixture
}

fn failure_of(verdict: &Verdict) -> (Stage, Reason, bool) {
    match &verdict.outcome {
        Outcome::DeadLetter { failure } | Outcome::Retry { failure, .. } => {
            (failure.stage, failure.reason, failure.transient)
        }
        other => panic!("expected a failure, got {other:#?}"),
    }
}

#[tokio::test]
async fn the_translator_sees_the_look_up_results() {
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    let verdict = fixture.run(&json!({"id": "c 1", "n": 3})).await;
    assert_eq!(
        forwarded(&verdict),
        vec![json!({"id": "name of c 1", "total": 3})]
    );
}

#[tokio::test]
async fn without_a_translator_results_are_merged_under_their_names() {
    let stub = spawn_stub().await;
    let fixture = Fixture::new(
        "enrich",
        None,
        &format!(
            "output = \"down/Enriched@1\"\n[[routes.lookups]]\nname = \"customer\"\nurl = \"{}customers/{{/id}}\"\n",
            stub.base
        ),
    );
    fixture.allow(&stub.base);
    write(
        fixture.root(),
        "contracts/down/Enriched/contract.toml",
        "kind = \"event\"\n",
    );
    write(
        fixture.root(),
        "contracts/down/Enriched/v1.json",
        r#"{"type": "object", "required": ["id", "n", "customer"], "properties": {"customer": {"type": "object", "required": ["tier"]}}}"#,
    );
    let verdict = fixture.run(&json!({"id": "c-1", "n": 3})).await;
    assert_eq!(
        forwarded(&verdict),
        vec![json!({"id": "c-1", "n": 3, "customer": {"name": "name of c-1", "tier": "gold"}})]
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_dead_lettered() {
    // D1
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let stub = Stub {
        base,
        hits: Arc::default(),
    };
    let fixture = enrich_fixture(
        &stub,
        "customers",
        "[routes.on_failure]\nenrich = \"retry\"\n[routes.retry]\nmax_attempts = 3\ninitial_backoff = \"2s\"\n",
    );
    let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
    let Outcome::Retry {
        attempt,
        delay,
        failure,
    } = &verdict.outcome
    else {
        panic!("{verdict:#?}")
    };
    assert_eq!((*attempt, *delay), (2, Duration::from_secs(2)));
    assert_eq!(failure.reason, Reason::EnrichmentUnavailable);

    let pipeline = fixture.pipeline();
    let route = pipeline.registry().routes[0].clone();
    let delivery = event("up/Thing@1", "e-1", &json!({"id": "c-1", "n": 1}));
    let verdict = pipeline.process_on(&route, &delivery, 2).await;
    assert!(
        matches!(verdict.outcome, Outcome::Retry { attempt: 3, .. }),
        "{verdict:#?}"
    );
    let verdict = pipeline.process_on(&route, &delivery, 3).await;
    dead_letter(&verdict, Stage::Enrich, Reason::EnrichmentUnavailable);
}

#[tokio::test]
async fn a_slow_answer_times_out_quickly_and_is_transient() {
    // D2
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "slow", "");
    let started = Instant::now();
    let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        failure_of(&verdict),
        (Stage::Enrich, Reason::EnrichmentUnavailable, true)
    );
}

#[tokio::test]
async fn server_errors_are_transient_and_retry_after_is_honoured() {
    // D3
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "fail", "");
    let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
    assert_eq!(
        failure_of(&verdict),
        (Stage::Enrich, Reason::EnrichmentUnavailable, true)
    );

    let fixture = enrich_fixture(&stub, "busy", "[routes.on_failure]\nenrich = \"retry\"\n");
    let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
    let Outcome::Retry { delay, .. } = &verdict.outcome else {
        panic!("{verdict:#?}")
    };
    assert_eq!(*delay, Duration::from_secs(7));
}

#[tokio::test]
async fn unusable_answers_fail_for_good() {
    // D4, and redirects are not followed, and a 404 is not retried.
    let stub = spawn_stub().await;
    for (path, text) in [
        ("invalid", "not JSON"),
        ("big", "larger than"),
        ("missing", "404"),
        ("redirect", "302"),
    ] {
        let fixture = enrich_fixture(&stub, path, "[routes.on_failure]\nenrich = \"retry\"\n");
        let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
        let failure = dead_letter(&verdict, Stage::Enrich, Reason::EnrichmentFailed);
        assert!(failure.to_string().contains(text), "{path}: {failure}");
    }
}

#[tokio::test]
async fn concurrent_identical_look_ups_make_one_request() {
    // D5
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    let pipeline = fixture.pipeline();
    let deliveries: Vec<_> = (0..100)
        .map(|n| {
            event(
                "up/Thing@1",
                &format!("e-{n}"),
                &json!({"id": "c-1", "n": n}),
            )
        })
        .collect();
    let up = context("up");
    let verdicts = futures_util::future::join_all(
        deliveries
            .iter()
            .map(|delivery| pipeline.process(&up, delivery)),
    )
    .await;
    for verdict in verdicts {
        assert_eq!(forwarded(&only(verdict)).len(), 1);
    }
    assert_eq!(stub.hits(), 1);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "fail", "");
    let pipeline = fixture.pipeline();
    for _ in 0..2 {
        pipeline
            .process(
                &context("up"),
                &event("up/Thing@1", "e", &json!({"id": "c-1", "n": 1})),
            )
            .await;
    }
    assert_eq!(stub.hits(), 2);
}

#[tokio::test]
async fn two_routes_never_share_cache_entries() {
    // D6
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    fixture.append(&format!(
        "\n[[routes]]\nname = \"up-to-down-again\"\nupstream = \"up\"\ndownstream = \"down\"\nmode = \"enrich\"\n\
         translator = \"down/map\"\n[[routes.lookups]]\nname = \"customer\"\nurl = \"{}customers/{{/id}}\"\n",
        stub.base
    ));
    let verdicts = fixture
        .pipeline()
        .process(
            &context("up"),
            &event("up/Thing@1", "e", &json!({"id": "c-1", "n": 1})),
        )
        .await;
    assert_eq!(verdicts.len(), 2);
    assert_eq!(stub.hits(), 2);
}

#[tokio::test]
async fn answers_are_fetched_again_after_their_ttl() {
    // D7
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    let path = fixture.root().join("contextgate.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "timeout = \"300ms\"",
        "timeout = \"300ms\"\ncache_ttl = \"300ms\"",
    );
    std::fs::write(&path, config).unwrap();
    let pipeline = fixture.pipeline();
    let delivery = event("up/Thing@1", "e", &json!({"id": "c-1", "n": 1}));
    pipeline.process(&context("up"), &delivery).await;
    pipeline.process(&context("up"), &delivery).await;
    assert_eq!(stub.hits(), 1, "the second look-up came from the cache");
    tokio::time::sleep(Duration::from_millis(500)).await;
    pipeline.process(&context("up"), &delivery).await;
    assert_eq!(stub.hits(), 2, "the entry expired");
}

#[tokio::test]
async fn look_ups_outside_the_allow_list_are_refused_at_load() {
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    fixture.allow("http://127.0.0.1:1/");
    let problems = problems(fixture.root());
    assert!(
        problems.iter().any(|p| p.contains("lookup_allow")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn an_invalid_input_fails_at_validate_in_before_any_look_up() {
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    let verdict = fixture.run(&json!({"id": "c-1"})).await;
    dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
    assert_eq!(stub.hits(), 0);
}

#[tokio::test]
async fn an_enriched_result_that_breaks_the_output_contract_fails_at_validate_out() {
    let stub = spawn_stub().await;
    let fixture = Fixture::new(
        "enrich",
        Some("fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: 5000 } }"),
        &format!(
            "[[routes.lookups]]\nname = \"customer\"\nurl = \"{}customers/{{/id}}\"\n",
            stub.base
        ),
    );
    fixture.allow(&stub.base);
    let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
    let failure = dead_letter(
        &verdict,
        Stage::ValidateOut,
        Reason::OutputContractViolation,
    );
    assert!(names_pointer(&failure, "/total"), "{failure}");
}

#[tokio::test]
async fn a_service_that_keeps_failing_is_left_alone_for_a_while() {
    // D3: the circuit opens after `breaker_failures` transient failures in a row.
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "fail", "");
    let path = fixture.root().join("contextgate.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "timeout = \"300ms\"",
        "timeout = \"300ms\"\nbreaker_failures = 3\nbreaker_cooldown = \"300ms\"",
    );
    std::fs::write(&path, config).unwrap();
    let pipeline = fixture.pipeline();
    let delivery = event("up/Thing@1", "e", &json!({"id": "c-1", "n": 1}));
    let mut texts = Vec::new();
    for _ in 0..5 {
        let verdict = only(pipeline.process(&context("up"), &delivery).await);
        assert_eq!(
            failure_of(&verdict),
            (Stage::Enrich, Reason::EnrichmentUnavailable, true)
        );
        texts.push(format!("{verdict:?}"));
    }
    assert_eq!(stub.hits(), 3, "the last two did not call");
    assert!(texts[4].contains("circuit open"), "{}", texts[4]);

    tokio::time::sleep(Duration::from_millis(400)).await;
    pipeline.process(&context("up"), &delivery).await;
    assert_eq!(stub.hits(), 4, "after the cooldown one request tries again");
}

/// A service with an API under `/api/` and an admin area under `/admin/`: it answers every GET
/// with a customer, and counts the requests that reach `/admin/` as a lenient server reads a
/// path (percent-decoded until nothing is left to decode, `;parameters` stripped from segments as
/// Tomcat and Spring do, `//` and `\` merged, dot segments resolved).
struct AdminStub {
    base: String,
    admin_hits: Arc<AtomicUsize>,
}

async fn spawn_admin_stub() -> AdminStub {
    let admin_hits = Arc::new(AtomicUsize::new(0));
    let counted = admin_hits.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let counted = counted.clone();
        async move {
            if lenient_path(uri.path()).starts_with("/admin/") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            axum::Json(json!({"name": "someone", "tier": "gold"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    AdminStub { base, admin_hits }
}

/// A path as a lenient server reads it.
fn lenient_path(path: &str) -> String {
    let mut decoded = path.to_owned();
    loop {
        let again = percent_encoding::percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .into_owned();
        if again == decoded {
            break;
        }
        decoded = again;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}/", segments.join("/"))
}

/// An enrich fixture whose look-up `customer` has the URL template `url`, allowed to query
/// `allow`.
fn fixture_with_template(url: &str, allow: &str) -> Fixture {
    let fixture = Fixture::new(
        "enrich",
        Some(SCRIPT),
        &format!("[[routes.lookups]]\nname = \"customer\"\nurl = \"{url}\"\n"),
    );
    fixture.allow(allow);
    fixture
}

/// Loads a fixture whose look-up is `template` under `allow`: `false` when the load refuses it
/// for leaving `lookup_allow`; `true` when it loads, after one message made its look-up (so
/// that a stub sees where it went).
async fn load_and_look_up(template: &str, allow: &str) -> bool {
    let fixture = fixture_with_template(template, allow);
    match contextgate::registry::load(fixture.root()) {
        Ok(registry) => {
            let pipeline = contextgate::pipeline::Pipeline::new(Arc::new(registry));
            let data = json!({"id": "c-1", "n": 1});
            pipeline
                .process(&context("up"), &event("up/Thing@1", "e-1", &data))
                .await;
            true
        }
        Err(contextgate::registry::RegistryError::Problems(problems)) => {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert!(
                lines.iter().any(|line| line.contains("lookup_allow")),
                "{template}: {lines:?}"
            );
            false
        }
        Err(error) => panic!("{template}: {error}"),
    }
}

#[tokio::test]
async fn templates_that_climb_out_of_their_allowed_base_are_refused_at_load() {
    let stub = spawn_admin_stub().await;
    let api = format!("{}api/", stub.base);
    let mut loaded = Vec::new();
    for path in [
        "api/../admin/{/id}",
        "api/%2e%2e/admin/{/id}",
        "api/.%2E/admin/{/id}",
        "api/..%2fadmin/{/id}",
        "api/..//admin/{/id}",
        "api//../admin/{/id}",
        "api/{/id}/../../admin/x",
    ] {
        let template = format!("{}{path}", stub.base);
        if load_and_look_up(&template, &api).await {
            loaded.push(template);
        }
    }
    assert_eq!(stub.admin_hits.load(Ordering::SeqCst), 0, "/admin/ reached");
    assert!(loaded.is_empty(), "loaded: {loaded:#?}");

    // A template that stays under its base once normalised still loads and works.
    let fixture = fixture_with_template(&format!("{}api/v1/../v2/{{/id}}", stub.base), &api);
    let verdict = fixture.run(&json!({"id": "c-1", "n": 1})).await;
    assert_eq!(
        forwarded(&verdict),
        vec![json!({"id": "someone", "total": 1})]
    );
}

#[tokio::test]
async fn a_filled_url_that_climbs_out_of_its_base_is_not_requested() {
    let stub = spawn_admin_stub().await;
    let api = format!("{}api/", stub.base);
    let fixture = fixture_with_template(&format!("{}api/{{/id}}/{{/area}}", stub.base), &api);
    let pipeline = fixture.pipeline();

    // `/` in a value is sent as %2F, which a lenient server decodes: `/api/..%2F../admin/`.
    let data = json!({"id": "../..", "area": "admin", "n": 1});
    let verdict = only(
        pipeline
            .process(&context("up"), &event("up/Thing@1", "e-1", &data))
            .await,
    );
    assert_eq!(
        failure_of(&verdict),
        (Stage::Enrich, Reason::EnrichmentFailed, false)
    );
    let text = format!("{verdict:?}");
    assert!(
        text.contains("lookup_allow") || text.contains("may read as `..`"),
        "{verdict:?}"
    );
    assert_eq!(stub.admin_hits.load(Ordering::SeqCst), 0, "/admin/ reached");

    // The same template with ordinary values is requested.
    let data = json!({"id": "c-1", "area": "eu", "n": 1});
    let verdict = only(
        pipeline
            .process(&context("up"), &event("up/Thing@1", "e-2", &data))
            .await,
    );
    assert_eq!(
        forwarded(&verdict),
        vec![json!({"id": "someone", "total": 1})]
    );
}

#[tokio::test]
async fn path_parameters_and_double_encoding_never_move_a_look_up_out_of_its_base() {
    let stub = spawn_admin_stub().await;
    let api = format!("{}api/", stub.base);

    // Templates: refused at load, so never requested.
    for path in [
        "api/..;/admin/{/id}",
        "api/..;jsessionid=x/admin/{/id}",
        "api/%252e%252e/admin/{/id}",
        "api/%252E%252E/admin/{/id}",
        "api/..%252fadmin/{/id}",
    ] {
        let template = format!("{}{path}", stub.base);
        assert!(
            !load_and_look_up(&template, &api).await,
            "{template} loaded"
        );
    }
    assert_eq!(stub.admin_hits.load(Ordering::SeqCst), 0, "/admin/ reached");

    // Values: a placeholder that would read as a dot segment is refused, never sent.
    let fixture = fixture_with_template(&format!("{}api/{{/id}}/{{/area}}", stub.base), &api);
    let pipeline = fixture.pipeline();
    for (n, id) in [
        "..;",
        "..;jsessionid=x",
        "%2e%2e",
        "%2E%2e;",
        "%252e%252e",
        ".%2e",
        "c-1/..;",
        "..%3b",
    ]
    .into_iter()
    .enumerate()
    {
        let data = json!({"id": id, "area": "admin", "n": 1});
        let verdict = only(
            pipeline
                .process(
                    &context("up"),
                    &event("up/Thing@1", &format!("e-{n}"), &data),
                )
                .await,
        );
        assert_eq!(
            failure_of(&verdict),
            (Stage::Enrich, Reason::EnrichmentFailed, false),
            "{id}: {verdict:?}"
        );
        assert_eq!(
            stub.admin_hits.load(Ordering::SeqCst),
            0,
            "/admin/ reached with {id:?}"
        );
    }

    // Ordinary values, with a `;`, a `%` or dots inside, are still requested.
    for (n, id) in ["c-1", "a;b", "100%", "v1.2", "x..y"]
        .into_iter()
        .enumerate()
    {
        let data = json!({"id": id, "area": "eu", "n": 1});
        let verdict = only(
            pipeline
                .process(
                    &context("up"),
                    &event("up/Thing@1", &format!("ok-{n}"), &data),
                )
                .await,
        );
        assert_eq!(
            forwarded(&verdict),
            vec![json!({"id": "someone", "total": 1})],
            "{id}"
        );
    }
}

#[tokio::test]
async fn look_up_timeouts_and_answer_sizes_over_their_caps_are_refused_at_load() {
    let stub = spawn_stub().await;
    let fixture = enrich_fixture(&stub, "customers", "");
    let path = fixture.root().join("contextgate.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replace(
            "timeout = \"300ms\"",
            "timeout = \"1h\"\nconnect_timeout = \"31s\"\nmax_bytes = 10000000000",
        ),
    )
    .unwrap();
    let problems = problems(fixture.root());
    for expected in [
        "look-up \"customer\": timeout 1h is over the cap of 30s",
        "look-up \"customer\": connect_timeout 31s is over the cap of 30s",
        "look-up \"customer\": max_bytes 10000000000 is over the cap of 16777216 (16 MiB)",
    ] {
        assert!(
            problems.iter().any(|problem| problem.contains(expected)
                && problem.starts_with("contextgate.toml:")
                && problem.split(':').nth(1).unwrap().parse::<u32>().is_ok()),
            "{expected}: {problems:#?}"
        );
    }

    // At the caps, it loads.
    std::fs::write(
        &path,
        config.replace(
            "timeout = \"300ms\"",
            "timeout = \"30s\"\nconnect_timeout = \"30s\"\nmax_bytes = 16777216",
        ),
    )
    .unwrap();
    let verdict = fixture.run(&json!({"id": "c-1", "n": 3})).await;
    assert_eq!(
        forwarded(&verdict),
        vec![json!({"id": "name of c-1", "total": 3})]
    );
}
