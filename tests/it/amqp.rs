//! The gateway on the real RabbitMQ: every mode and both message kinds end to end, a dead letter
//! for each stage with its headers, retry then success, retry exhausted, drop, unroutable
//! output, what no route takes, ordering per key under parallel lanes, HTTP ingest, a new
//! registry and a restart while inputs flow (none lost, none repeated), a route removed and
//! back, and
//! `contextgate serve --amqp-url` as the README runs it. Each test has its own name prefix and
//! deletes what it declared.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use contextgate::pipeline::Pipeline;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, LongString};
use serde_json::{Value, json};

use crate::broker::{self, Cleanup, Client, Running, binary_event, header};
use crate::helpers::{Fixture, event_body, example, pipeline, repo, serve_binary, serve_gateway};

const WAIT: Duration = Duration::from_secs(15);
/// How long a stream must stay quiet for its records to count as all read.
const SETTLE: Duration = Duration::from_millis(500);

/// A running gateway over `pipeline` with a fresh prefix, a client, and a subscribed `down` inbox.
struct Setup {
    client: Client,
    gateway: Running,
    inbox: String,
    cleanup: Cleanup,
    /// Per dead-letter stream, how many of its dead letters the test has read.
    seen: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

async fn setup(test: &str, pipeline: Pipeline, subscriber: &str) -> Setup {
    setup_with(test, pipeline, subscriber, |_| {}).await
}

async fn setup_with(
    test: &str,
    pipeline: Pipeline,
    subscriber: &str,
    tweak: impl FnOnce(&mut contextgate::bus::AmqpSettings),
) -> Setup {
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix(test);
    let mut settings = broker::settings(&url, &prefix);
    tweak(&mut settings);
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    let client = Client::connect(&url).await;
    let gateway = broker::start(pipeline, settings).await;
    let inbox = format!("{prefix}inbox.{subscriber}");
    cleanup.queue(&inbox);
    if !subscriber.is_empty() {
        client
            .subscribe(&inbox, &names.inbound(&broker::context(subscriber)))
            .await;
    }
    Setup {
        client,
        gateway,
        inbox,
        cleanup,
        seen: std::sync::Mutex::default(),
    }
}

impl Setup {
    fn names(&self) -> &contextgate::bus::amqp::Names {
        &self.gateway.names
    }

    async fn publish_binary(&self, from: &str, contract: &str, id: &str, data: &str) {
        self.publish_with(from, contract, data.as_bytes(), binary_event(contract, id))
            .await;
    }

    async fn publish_with(
        &self,
        from: &str,
        contract: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let (name, _) = contract.split_once('@').unwrap();
        let routing_key = name.replace('/', ".");
        self.client
            .publish_stored(
                &self.names().outbound(&broker::context(from)),
                &routing_key,
                body,
                properties,
            )
            .await;
    }

    /// The next output in the subscriber's inbox.
    async fn output(&self) -> lapin::message::BasicGetMessage {
        self.client.take(&self.inbox, 1, WAIT).await.pop().unwrap()
    }

    /// Serves the HTTP API over this gateway's bus; its base URL.
    async fn serve_api(&self, pipeline: Pipeline) -> String {
        serve_gateway(contextgate::gateway::Gateway::new(
            pipeline,
            contextgate::bus::Bus::Amqp(self.gateway.bus.clone()),
        ))
        .await
    }

    /// The next dead letter of route `route` (or of no route) that this test has not read yet.
    async fn dead_letter(&self, route: Option<&str>) -> lapin::message::BasicGetMessage {
        let stream = self.names().dead_letter_queue(route);
        let seen = *self.seen.lock().unwrap().entry(stream.clone()).or_default();
        let mut kept =
            broker::kept_dead_letters(&broker::amqp_url(), &stream, seen + 1, SETTLE, WAIT).await;
        assert!(
            kept.len() > seen,
            "no dead letter in {stream} within {WAIT:?}"
        );
        self.seen.lock().unwrap().insert(stream, seen + 1);
        kept.swap_remove(seen)
    }

    /// How many dead letters route `route` (or no route) keeps that this test has not read,
    /// once its stream is quiet.
    async fn unread_dead_letters(&self, route: Option<&str>) -> usize {
        let stream = self.names().dead_letter_queue(route);
        let seen = self.seen.lock().unwrap().get(&stream).copied().unwrap_or(0);
        broker::kept_dead_letters(&broker::amqp_url(), &stream, 0, SETTLE, SETTLE)
            .await
            .len()
            - seen
    }
}

fn body_json(message: &lapin::message::BasicGetMessage) -> Value {
    serde_json::from_slice(&message.delivery.data).unwrap()
}

#[tokio::test]
async fn conformist_forwards_binary_events_unchanged_with_a_derived_id() {
    let fixture = Fixture::new("conformist", None, "");
    let setup = setup("conformist", fixture.pipeline(), "down").await;
    // Number spelling and key order are the producer's: a conformist route keeps the bytes.
    let data = r#"{"n": 1.50, "id": "a"}"#;
    setup.publish_binary("up", "up/Thing@1", "e-1", data).await;

    let output = setup.output().await;
    assert_eq!(output.delivery.data, data.as_bytes());
    assert_eq!(output.delivery.routing_key.as_str(), "up.Thing");
    let id = header(&output, "cloudEvents_id").unwrap();
    assert_ne!(id, "e-1", "the output id is derived from the input's");
    assert_eq!(
        output
            .delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        id
    );
    assert_eq!(
        header(&output, "cloudEvents_traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(output.delivery.properties.delivery_mode(), &Some(2));
    let route_queue = setup.names().route_queue("up-to-down");
    setup
        .client
        .assert_empty(&route_queue, Duration::from_millis(300))
        .await;

    // The same input again (a redelivery, a replay): the same output id.
    setup.publish_binary("up", "up/Thing@1", "e-1", data).await;
    let again = setup.output().await;
    assert_eq!(header(&again, "cloudEvents_id").unwrap(), id);
    setup.gateway.stop().await;
}

#[tokio::test]
async fn structured_input_is_taken_and_a_route_can_emit_structured() {
    let fixture = Fixture::new("conformist", None, "wire = \"structured\"\n");
    let setup = setup("structured", fixture.pipeline(), "down").await;
    let body = event_body(
        "up/Thing@1",
        "e-2",
        r#"{"id":"b","n":18446744073709551617}"#,
    );
    setup
        .publish_with(
            "up",
            "up/Thing@1",
            body.as_bytes(),
            BasicProperties::default().with_content_type("application/cloudevents+json".into()),
        )
        .await;
    let output = setup.output().await;
    assert_eq!(
        output
            .delivery
            .properties
            .content_type()
            .as_ref()
            .unwrap()
            .as_str(),
        "application/cloudevents+json"
    );
    let text = String::from_utf8(output.delivery.data.clone()).unwrap();
    assert!(
        text.ends_with(r#""data":{"id":"b","n":18446744073709551617}}"#),
        "the data keeps its exact bytes: {text}"
    );
    let event = body_json(&output);
    assert_eq!(event["type"], "up.Thing");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(
        event["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    setup.gateway.stop().await;
}

#[tokio::test]
async fn anti_corruption_translates_into_the_downstream_model() {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { #{ id: data.id, total: data.n * 2 } }"),
        "",
    );
    let setup = setup("acl", fixture.pipeline(), "down").await;
    setup
        .publish_binary("up", "up/Thing@1", "e-3", r#"{"id":"c","n":21}"#)
        .await;
    let output = setup.output().await;
    assert_eq!(body_json(&output), json!({"id": "c", "total": 42}));
    assert_eq!(output.delivery.routing_key.as_str(), "down.Act");
    assert_eq!(
        header(&output, "cloudEvents_dataschema").as_deref(),
        Some("contextgate:down/Act@1")
    );
    setup.gateway.stop().await;
}

#[tokio::test]
async fn open_host_publishes_the_upstream_published_language() {
    let fixture = Fixture::new(
        "open-host",
        Some("fn translate(data) { #{ id: data.id, n: data.n + 1 } }"),
        "",
    );
    let setup = setup("openhost", fixture.pipeline(), "down").await;
    setup
        .publish_binary("up", "up/Internal@1", "e-4", r#"{"id":"d","n":1}"#)
        .await;
    let output = setup.output().await;
    assert_eq!(body_json(&output), json!({"id": "d", "n": 2}));
    assert_eq!(output.delivery.routing_key.as_str(), "up.Published");
    setup.gateway.stop().await;
}

#[tokio::test]
async fn a_command_reaches_its_owner_and_an_event_fans_out() {
    let setup = setup("kinds", pipeline(&repo()), "payments").await;
    let orders_inbox = format!("{}inbox.orders", setup.names().prefix());
    setup
        .client
        .subscribe(
            &orders_inbox,
            &setup.names().inbound(&broker::context("orders")),
        )
        .await;
    setup.cleanup.queue(&orders_inbox);
    let command = example("payments/AuthorizePayment/examples/v1/eur-order.json");
    setup
        .publish_binary(
            "orders",
            "payments/AuthorizePayment@1",
            "c-1",
            &command.to_string(),
        )
        .await;
    let output = setup.output().await;
    assert_eq!(body_json(&output), command);
    assert_eq!(
        output.delivery.routing_key.as_str(),
        "payments.AuthorizePayment"
    );

    // PaymentCaptured goes to orders (conformist) and to notifications (enrich, whose look-up
    // service is not running here: a dead letter of that route alone).
    let captured = example("payments/PaymentCaptured/examples/v1/eur-order.json");
    setup
        .publish_binary(
            "payments",
            "payments/PaymentCaptured@1",
            "p-1",
            &captured.to_string(),
        )
        .await;
    let delivered = setup
        .client
        .take(&orders_inbox, 1, WAIT)
        .await
        .pop()
        .unwrap();
    assert_eq!(body_json(&delivered), captured);
    let dead = setup.dead_letter(Some("payments-to-notifications")).await;
    assert_eq!(header(&dead, "x-gateway-stage").as_deref(), Some("enrich"));
    setup.gateway.stop().await;
}

/// A look-up service: `/customers/{id}` answers; `/flaky/{id}` fails twice, then answers;
/// `/fail/{id}` always fails.
async fn lookup_stub() -> (String, Arc<AtomicUsize>) {
    let flaky = Arc::new(AtomicUsize::new(0));
    let calls = flaky.clone();
    let app = Router::new()
        .route(
            "/customers/{id}",
            get(|Path(id): Path<String>| async move {
                axum::Json(json!({"name": format!("name of {id}")}))
            }),
        )
        .route(
            "/flaky/{id}",
            get(move |Path(id): Path<String>| {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        axum::Json(json!({"name": format!("name of {id}")})).into_response()
                    }
                }
            }),
        )
        .route(
            "/fail/{id}",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, flaky)
}

fn enrich_fixture(base: &str, path: &str, max_attempts: u32) -> Fixture {
    let fixture = Fixture::new(
        "enrich",
        Some(r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#),
        &format!(
            "[routes.on_failure]\nenrich = \"retry\"\n[routes.retry]\nmax_attempts = {max_attempts}\ninitial_backoff = \"100ms\"\nmax_backoff = \"200ms\"\n[[routes.lookups]]\nname = \"customer\"\nurl = \"{base}{path}/{{/id}}\"\ntimeout = \"500ms\"\ncache_ttl = \"0s\"\n"
        ),
    );
    fixture.allow(base);
    fixture
}

#[tokio::test]
async fn enrich_retries_through_the_delay_queue_then_succeeds() {
    let (base, flaky) = lookup_stub().await;
    let fixture = enrich_fixture(&base, "flaky", 5);
    let setup = setup("retry", fixture.pipeline(), "down").await;
    setup
        .publish_binary("up", "up/Thing@1", "e-5", r#"{"id":"k","n":3}"#)
        .await;
    let output = setup.output().await;
    assert_eq!(body_json(&output), json!({"id": "name of k", "total": 3}));
    assert_eq!(
        flaky.load(Ordering::SeqCst),
        3,
        "two failures, then the answer"
    );
    for step in [100, 200] {
        let delay = setup.names().delay_queue(Duration::from_millis(step));
        assert_eq!(setup.client.count(&delay).await, 0);
    }
    setup.gateway.stop().await;
}

#[tokio::test]
async fn a_short_retry_leaves_after_its_own_delay_not_behind_a_longer_one() {
    // The first look-up of each id fails: `late`'s with `Retry-After: 6`, `soon`'s without, so
    // `soon` waits the route's 1 s backoff. In one shared delay queue with per-message TTLs,
    // `soon` would wait behind `late` until it expired.
    let seen = Arc::new(std::sync::Mutex::new(
        std::collections::HashSet::<String>::new(),
    ));
    let app = Router::new().route(
        "/paced/{id}",
        get(move |Path(id): Path<String>| {
            let seen = seen.clone();
            async move {
                if seen.lock().unwrap().insert(id.clone()) {
                    let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
                    if id == "late" {
                        response
                            .headers_mut()
                            .insert("retry-after", "6".parse().unwrap());
                    }
                    response
                } else {
                    axum::Json(json!({"name": id})).into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fixture = Fixture::new(
        "enrich",
        Some(r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#),
        &format!(
            "[routes.on_failure]\nenrich = \"retry\"\n[routes.retry]\nmax_attempts = 3\ninitial_backoff = \"1s\"\nmax_backoff = \"20s\"\n[[routes.lookups]]\nname = \"customer\"\nurl = \"{base}paced/{{/id}}\"\ntimeout = \"500ms\"\ncache_ttl = \"0s\"\n"
        ),
    );
    fixture.allow(&base);
    let setup = setup("paced", fixture.pipeline(), "down").await;

    let started = std::time::Instant::now();
    setup
        .publish_binary("up", "up/Thing@1", "p-1", r#"{"id":"late","n":1}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // With a producer's `expiration` shorter than its delay: the delay queue's TTL decides.
    setup
        .publish_with(
            "up",
            "up/Thing@1",
            br#"{"id":"soon","n":2}"#,
            binary_event("up/Thing@1", "p-2").with_expiration("300".into()),
        )
        .await;
    let first = setup.output().await;
    let first_after = started.elapsed();
    let second = setup.output().await;
    let second_after = started.elapsed();

    assert_eq!(
        body_json(&first)["id"],
        "soon",
        "the short retry leaves first"
    );
    assert!(
        first_after >= Duration::from_millis(1_200) && first_after < Duration::from_secs(4),
        "the 1 s retry (published at 200 ms) left after {first_after:?}"
    );
    assert_eq!(body_json(&second)["id"], "late");
    assert!(
        second_after >= Duration::from_secs(6),
        "the retry asked for 6 s left after {second_after:?}"
    );
    setup.gateway.stop().await;
}

#[tokio::test]
async fn enrich_retries_until_the_last_attempt_then_dead_letters() {
    let (base, _) = lookup_stub().await;
    let fixture = enrich_fixture(&base, "fail", 3);
    let setup = setup("exhausted", fixture.pipeline(), "down").await;
    setup
        .publish_binary("up", "up/Thing@1", "e-6", r#"{"id":"k","n":3}"#)
        .await;
    let dead = setup.dead_letter(Some("up-to-down")).await;
    assert_eq!(header(&dead, "x-gateway-stage").as_deref(), Some("enrich"));
    assert_eq!(
        header(&dead, "x-gateway-reason").as_deref(),
        Some("enrichment_unavailable")
    );
    assert_eq!(header(&dead, "x-gateway-attempt").as_deref(), Some("3"));
    assert_eq!(dead.delivery.data, br#"{"id":"k","n":3}"#);
    setup
        .client
        .assert_empty(&setup.inbox, Duration::from_millis(200))
        .await;
    setup.gateway.stop().await;
}

#[tokio::test]
async fn every_stage_dead_letters_with_the_gateway_headers_and_the_original_message() {
    let script = r#"fn translate(data) { if data.id == "boom" { throw "boom"; } if data.id == "drop" { return (); } #{ id: data.id, total: data.n } }"#;
    let fixture = Fixture::new("anti-corruption", Some(script), "");
    let setup = setup("stages", fixture.pipeline(), "down").await;
    let route = "up-to-down";
    let cases = [
        ("decode", "parse_error", "{not json", None),
        (
            "validate-in",
            "contract_violation",
            r#"{"id":"a","n":"x"}"#,
            Some("/n"),
        ),
        ("translate", "script_error", r#"{"id":"boom","n":1}"#, None),
        (
            "validate-out",
            "output_contract_violation",
            r#"{"id":"a","n":5000}"#,
            Some("/total"),
        ),
    ];
    for (index, (stage, reason, data, pointer)) in cases.into_iter().enumerate() {
        let mut properties = binary_event("up/Thing@1", &format!("s-{index}"));
        let mut headers = properties.headers().clone().unwrap();
        // Forged by the producer: never trusted.
        headers.insert(
            "x-gateway-reason".into(),
            AMQPValue::LongString(LongString::from("forged")),
        );
        headers.insert(
            "x-team".into(),
            AMQPValue::LongString(LongString::from("kept")),
        );
        properties = properties.with_headers(headers);
        setup
            .publish_with("up", "up/Thing@1", data.as_bytes(), properties)
            .await;
        let dead = setup.dead_letter(Some(route)).await;
        assert_eq!(
            dead.delivery.data,
            data.as_bytes(),
            "the body is kept unchanged"
        );
        assert_eq!(header(&dead, "x-gateway-stage").as_deref(), Some(stage));
        assert_eq!(header(&dead, "x-gateway-reason").as_deref(), Some(reason));
        assert_eq!(header(&dead, "x-gateway-route").as_deref(), Some(route));
        assert_eq!(
            header(&dead, "x-gateway-mode").as_deref(),
            Some("anti-corruption")
        );
        assert_eq!(
            header(&dead, "x-gateway-contract").as_deref(),
            Some("up/Thing@1")
        );
        assert_eq!(
            header(&dead, "x-gateway-translator").as_deref(),
            Some("down/map")
        );
        assert_eq!(
            header(&dead, "x-gateway-translator-hash").unwrap().len(),
            64,
            "a SHA-256 in hex"
        );
        assert_eq!(header(&dead, "x-team").as_deref(), Some("kept"));
        assert_eq!(
            header(&dead, "cloudEvents_id").as_deref(),
            Some(format!("s-{index}").as_str())
        );
        let problems: Vec<Value> =
            serde_json::from_str(&header(&dead, "x-gateway-problems").unwrap()).unwrap();
        assert!(!problems.is_empty());
        if let Some(pointer) = pointer {
            assert!(
                problems.iter().any(|problem| problem["pointer"] == pointer),
                "{stage}: {problems:?}"
            );
        }
    }

    // A drop: acked, counted, nothing forwarded, nothing kept.
    setup
        .publish_binary("up", "up/Thing@1", "s-drop", r#"{"id":"drop","n":1}"#)
        .await;
    setup
        .client
        .assert_empty(&setup.inbox, Duration::from_millis(500))
        .await;
    assert_eq!(setup.unread_dead_letters(Some(route)).await, 0);
    assert_eq!(
        setup.client.count(&setup.names().route_queue(route)).await,
        0
    );
    setup.gateway.stop().await;
}

#[tokio::test]
async fn an_output_nobody_subscribed_to_is_a_dead_letter_at_publish() {
    let fixture = Fixture::new("conformist", None, "");
    // No subscriber: `down.in` has no queue bound.
    let setup = setup("unroutable", fixture.pipeline(), "").await;
    setup
        .publish_binary("up", "up/Thing@1", "u-1", r#"{"id":"u","n":1}"#)
        .await;
    let dead = setup.dead_letter(Some("up-to-down")).await;
    assert_eq!(header(&dead, "x-gateway-stage").as_deref(), Some("publish"));
    assert_eq!(
        header(&dead, "x-gateway-reason").as_deref(),
        Some("unroutable")
    );
    assert_eq!(dead.delivery.data, br#"{"id":"u","n":1}"#);
    setup.gateway.stop().await;
}

#[tokio::test]
async fn what_no_route_queue_takes_is_a_dead_letter_or_for_events_nobody_takes_let_go() {
    let fixture = Fixture::new("conformist", None, "");
    let setup = setup("unrouted", fixture.pipeline(), "down").await;
    let outbound = setup.names().outbound(&broker::context("up"));
    // Not a CloudEvent, with a routing key no route binds.
    setup
        .client
        .publish_stored(
            &outbound,
            "whatever",
            b"garbage",
            BasicProperties::default(),
        )
        .await;
    let dead = setup.dead_letter(None).await;
    assert_eq!(header(&dead, "x-gateway-stage").as_deref(), Some("decode"));
    assert!(header(&dead, "x-gateway-route").is_none());
    assert_eq!(dead.delivery.data, b"garbage");

    // A valid event under the wrong routing key.
    setup
        .client
        .publish_stored(
            &outbound,
            "up.thing",
            br#"{"id":"w","n":1}"#,
            binary_event("up/Thing@1", "w-1"),
        )
        .await;
    let dead = setup.dead_letter(None).await;
    assert_eq!(
        header(&dead, "x-gateway-reason").as_deref(),
        Some("unroutable")
    );

    // An event no route takes: let go, not kept.
    setup
        .publish_binary("up", "up/Published@1", "w-2", r#"{"id":"w","n":1}"#)
        .await;
    assert_eq!(setup.unread_dead_letters(None).await, 0, "nothing kept");
    assert_eq!(setup.client.count(&setup.names().unrouted()).await, 0);
    setup.gateway.stop().await;
}

#[tokio::test]
async fn one_key_keeps_its_order_while_keys_run_in_parallel() {
    let fixture = Fixture::new("conformist", None, "ordering_key = \"/id\"\n");
    let setup = setup_with("ordering", fixture.pipeline(), "down", |settings| {
        settings.lanes = 8;
        settings.prefetch = 200;
    })
    .await;
    const KEYS: usize = 12;
    const PER_KEY: usize = 150;
    for n in 0..PER_KEY {
        for key in 0..KEYS {
            let data = format!(r#"{{"id":"key-{key}","n":{n}}}"#);
            setup
                .publish_binary("up", "up/Thing@1", &format!("o-{key}-{n}"), &data)
                .await;
        }
    }
    let outputs = setup
        .client
        .take(&setup.inbox, KEYS * PER_KEY, Duration::from_secs(60))
        .await;
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for output in &outputs {
        let data = body_json(output);
        seen.entry(data["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(data["n"].as_u64().unwrap());
    }
    assert_eq!(seen.len(), KEYS);
    for (key, ns) in seen {
        assert_eq!(
            ns,
            (0..PER_KEY as u64).collect::<Vec<_>>(),
            "order of {key}"
        );
    }
    setup.gateway.stop().await;
}

#[tokio::test]
async fn http_ingest_on_the_broker_answers_202_after_the_confirm() {
    let fixture = Fixture::new("conformist", None, "");
    let setup = setup("ingest", fixture.pipeline(), "down").await;
    let base = setup.serve_api(fixture.pipeline()).await;
    let client = crate::helpers::http();
    let post = |body: String| {
        client
            .post(format!("{base}/v1/contexts/up/messages"))
            .header("content-type", "application/cloudevents+json")
            .body(body)
            .send()
    };
    let response = post(event_body("up/Thing@1", "h-1", r#"{"id":"h","n":1}"#))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let report: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(report["routes"][0]["outcome"], "published");
    let output = setup.output().await;
    assert_eq!(body_json(&output), json!({"id": "h", "n": 1}));

    let refused = post(event_body("up/Thing@1", "h-2", r#"{"id":"h"}"#))
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        202,
        "validation is the route's: it becomes a dead letter"
    );
    let dead = setup.dead_letter(Some("up-to-down")).await;
    assert_eq!(
        header(&dead, "x-gateway-stage").as_deref(),
        Some("validate-in")
    );
    let refused = post("{not json".to_owned()).await.unwrap();
    assert_eq!(
        refused.status(),
        400,
        "refused at the edge: nothing is published"
    );
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    setup.gateway.stop().await;
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready once disconnected");
}

#[tokio::test]
async fn the_readme_serves_on_rabbitmq_and_stops_on_sigterm() {
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix("readme");
    let registry = pipeline(&repo());
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, registry.registry());
    let client = Client::connect(&url).await;
    let (mut child, base) = serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", &prefix])
            .env("CONTEXTGATE_AMQP_URL", &url)
            .current_dir(repo()),
    );
    let http = crate::helpers::http();
    let mut ready = false;
    for _ in 0..200 {
        let response = http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "ready on RabbitMQ at {url}");
    let inbox = format!("{prefix}inbox.shipping");
    cleanup.queue(&inbox);
    client
        .subscribe(&inbox, &names.inbound(&broker::context("shipping")))
        .await;
    let event = std::fs::read_to_string(repo().join("examples/order-placed.json")).unwrap();
    let response = http
        .post(format!("{base}/v1/contexts/orders/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let shipments = client.take(&inbox, 3, WAIT).await;
    assert_eq!(shipments.len(), 3);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_stays_responsive_while_scripts_run_out_of_time() {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { let i = 0; loop { i += 1; } }"),
        "",
    );
    let setup = setup("busy", fixture.pipeline(), "down").await;
    let base = setup.serve_api(fixture.pipeline()).await;
    const N: usize = 120;
    for i in 0..N {
        setup
            .publish_binary("up", "up/Thing@1", &format!("b-{i}"), r#"{"id":"x","n":1}"#)
            .await;
    }
    let http = crate::helpers::http();
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let started = std::time::Instant::now();
        let response = http
            .get(format!("{base}/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let dead = broker::kept_dead_letters(
        &broker::amqp_url(),
        &setup.names().dead_letter_queue(Some("up-to-down")),
        N,
        SETTLE,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(dead.len(), N);
    assert!(dead.iter().all(|message| matches!(
        header(message, "x-gateway-reason").as_deref(),
        Some("script_timeout" | "script_limit")
    )));
    assert!(
        slowest < Duration::from_millis(100),
        "/health/live took {slowest:?} while scripts ran out of time"
    );
    setup.gateway.stop().await;
}

/// A producer of `up/Thing@1` inputs `r-0`, `r-1`, ... that keeps sending, confirms waited
/// for in batches, until it is told where to end.
struct Flow {
    next: Arc<AtomicUsize>,
    end: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<usize>,
}

impl Flow {
    async fn start(setup: &Setup) -> Self {
        let outbound = setup.names().outbound(&broker::context("up"));
        let next = Arc::new(AtomicUsize::new(0));
        let end = Arc::new(AtomicUsize::new(usize::MAX));
        let client = Client::connect(&broker::amqp_url()).await;
        let task = tokio::spawn({
            let (next, end) = (next.clone(), end.clone());
            async move {
                let mut pending = Vec::new();
                let mut i = 0;
                while i < end.load(Ordering::SeqCst) {
                    next.store(i + 1, Ordering::SeqCst);
                    let id = format!("r-{i}");
                    let data = format!(r#"{{"id":"{id}","n":{i}}}"#);
                    let properties = binary_event("up/Thing@1", &id).with_delivery_mode(2);
                    pending.push(
                        client
                            .channel
                            .basic_publish(
                                outbound.as_str().into(),
                                "up.Thing".into(),
                                lapin::options::BasicPublishOptions::default(),
                                data.as_bytes(),
                                properties,
                            )
                            .await
                            .unwrap(),
                    );
                    if pending.len() == 50 {
                        for confirm in pending.drain(..) {
                            assert!(confirm.await.unwrap().is_ack());
                        }
                    }
                    i += 1;
                }
                for confirm in pending {
                    assert!(confirm.await.unwrap().is_ack());
                }
                i
            }
        });
        Self { next, end, task }
    }

    /// Sends `more` inputs that start after this call, then ends; the index of the first of
    /// them, and how many inputs were sent in all.
    async fn finish(self, more: usize) -> (usize, usize) {
        let boundary = self.next.load(Ordering::SeqCst);
        self.end.store(boundary + more, Ordering::SeqCst);
        let sent = self.task.await.unwrap();
        assert_eq!(sent, boundary + more);
        (boundary, sent)
    }
}

/// Takes `sent` outputs of a [`Flow`] and whatever more comes within half a second, and
/// returns each input's `total`, failing on any input that came out twice.
async fn once_each(setup: &Setup, sent: usize) -> BTreeMap<usize, u64> {
    let mut outputs = setup
        .client
        .take(&setup.inbox, sent, Duration::from_secs(60))
        .await;
    // Anything more is a repeat: taken too, so that the failure names it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let more = setup.client.count(&setup.inbox).await as usize;
    outputs.extend(setup.client.take(&setup.inbox, more, WAIT).await);
    let mut totals = BTreeMap::new();
    for output in &outputs {
        let data = body_json(output);
        let id = data["id"].as_str().unwrap();
        let n: usize = id.strip_prefix("r-").unwrap().parse().unwrap();
        let total = data["total"].as_u64().unwrap();
        if let Some(before) = totals.insert(n, total) {
            panic!("{id} came out twice: total {before}, then {total}");
        }
    }
    assert_eq!(totals.len(), sent, "every input came out once");
    totals
}

/// Waits until `n` outputs are in the inbox (and stay there: nobody takes them yet).
async fn wait_for_outputs(setup: &Setup, n: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while setup.client.count(&setup.inbox).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {n} outputs within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn total_of(total: u32) -> String {
    format!("fn translate(data) {{ #{{ id: data.id, total: {total} }} }}")
}

/// A producer keeps sending while the registry changes, so inputs are in flight when the
/// consumers move to the new one; what is sent once the bus runs on it meets the new translator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_registry_while_messages_flow_loses_none_and_repeats_none() {
    let first = Fixture::new("anti-corruption", Some(&total_of(1)), "");
    let second = Fixture::new("anti-corruption", Some(&total_of(2)), "");
    let setup = setup("reload", first.pipeline(), "down").await;
    let flow = Flow::start(&setup).await;
    wait_for_outputs(&setup, 200).await;
    switch(&setup, second.pipeline()).await;
    let (boundary, sent) = flow.finish(1_000).await;
    let totals = once_each(&setup, sent).await;
    for (n, total) in totals.range(boundary..) {
        assert_eq!(
            *total, 2,
            "r-{n} was sent after the bus ran on the new registry"
        );
    }
    let old = totals.values().filter(|total| **total == 1).count();
    assert!(old >= 200, "the old translator before the change: {old}");
    setup.gateway.stop().await;
}

/// A gateway stopped while inputs flow finishes and settles what it holds; the next one takes
/// up the rest, and no input comes out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_while_messages_flow_repeats_none_when_started_again() {
    let fixture = Fixture::new("anti-corruption", Some(&total_of(1)), "");
    let mut setup = setup("restart", fixture.pipeline(), "down").await;
    let flow = Flow::start(&setup).await;
    wait_for_outputs(&setup, 200).await;
    let settings = broker::settings(&broker::amqp_url(), setup.names().prefix());
    let stopped = std::mem::replace(
        &mut setup.gateway,
        broker::start(fixture.pipeline(), settings).await,
    );
    stopped.stop().await;
    let (_, sent) = flow.finish(500).await;
    once_each(&setup, sent).await;
    setup.gateway.stop().await;
}

/// A registry without a route stops that route's consumer, and its inputs wait in its queue;
/// the route back, they come out, each once, while the session never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_route_keeps_its_inputs_queued_until_it_is_back() {
    let with = Fixture::new("anti-corruption", Some(&total_of(1)), "");
    let without = Fixture::new("anti-corruption", Some(&total_of(1)), "");
    let toml = std::fs::read_to_string(without.root().join("contextgate.toml")).unwrap();
    let (contexts, _) = toml.split_once("[[routes]]").unwrap();
    crate::helpers::write(without.root(), "contextgate.toml", contexts);
    let setup = setup("removed", with.pipeline(), "down").await;
    let route_queue = setup.names().route_queue("up-to-down");
    publish_range(&setup, 0..10).await;
    assert_eq!(setup.client.take(&setup.inbox, 10, WAIT).await.len(), 10);

    let no_route = without.pipeline();
    assert!(no_route.registry().routes.is_empty());
    switch(&setup, no_route).await;
    publish_range(&setup, 10..20).await;
    setup
        .client
        .assert_empty(&setup.inbox, Duration::from_millis(500))
        .await;
    assert_eq!(
        setup.client.count(&route_queue).await,
        10,
        "the inputs wait in the removed route's queue"
    );

    switch(&setup, with.pipeline()).await;
    publish_range(&setup, 20..30).await;
    let outputs = setup.client.take(&setup.inbox, 20, WAIT).await;
    setup
        .client
        .assert_empty(&setup.inbox, Duration::from_millis(500))
        .await;
    let ids: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|output| body_json(output)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 20, "each input once: {ids:?}");
    assert!(ids.contains("r-10") && ids.contains("r-29"));
    setup.gateway.stop().await;
}

/// Replaces the gateway's registry and waits until the bus runs on it.
async fn switch(setup: &Setup, pipeline: Pipeline) {
    let digest = pipeline.registry().digest;
    setup.gateway.pipeline.send_replace(pipeline);
    let running = setup.gateway.bus.status().wait_running(digest, WAIT).await;
    assert!(running, "the bus never ran on the new registry");
}

/// Publishes `up/Thing@1` inputs `r-i` for each `i` of `range`.
async fn publish_range(setup: &Setup, range: std::ops::Range<usize>) {
    for i in range {
        let data = format!(r#"{{"id":"r-{i}","n":{i}}}"#);
        setup
            .publish_binary("up", "up/Thing@1", &format!("r-{i}"), &data)
            .await;
    }
}

/// Every page of `route`'s dead letters over HTTP, `max` at a time: the ids, the inputs' `n`,
/// and the totals each page said.
async fn all_pages(base: &str, route: &str, max: usize) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let http = crate::helpers::http();
    let (mut ids, mut ns, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/routes/{route}/dead-letters?max={max}");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        totals.push(page["total"].as_u64().unwrap());
        for dead_letter in page["dead_letters"].as_array().unwrap() {
            ids.push(dead_letter["id"].as_str().unwrap().parse().unwrap());
            let input: Value =
                serde_json::from_str(dead_letter["input"]["body"].as_str().unwrap()).unwrap();
            ns.push(input["n"].as_u64().unwrap());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return (ids, ns, totals),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_dead_letters_neither_reorders_holds_nor_hides_them() {
    // One key, so that a redrive's inputs stay in one lane and come out in order.
    let fixture = Fixture::new("conformist", None, "ordering_key = \"/id\"\n");
    // Nobody subscribed to `down`: every input is a dead letter `publish/unroutable`.
    let setup = setup("listing", fixture.pipeline(), "").await;
    let base = setup.serve_api(fixture.pipeline()).await;
    const N: u64 = 300;
    for n in 0..N {
        setup
            .publish_binary(
                "up",
                "up/Thing@1",
                &format!("l-{n}"),
                &format!(r#"{{"id":"k","n":{n}}}"#),
            )
            .await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while all_pages(&base, "up-to-down", 1_000).await.0.len() < N as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{N} dead letters within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Page by page, twice: in the order they were kept, every one once, the same both times,
    // true totals.
    let (ids, ns, totals) = all_pages(&base, "up-to-down", 40).await;
    let mut sorted = ns.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N).collect::<Vec<_>>(), "each once, none hidden");
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids grow: {ids:?}"
    );
    assert!(totals.iter().all(|total| *total == N), "{totals:?}");
    assert_eq!(
        all_pages(&base, "up-to-down", 40).await.0,
        ids,
        "reading moved nothing"
    );

    // The downstream subscribes; a redrive of all runs while another reader lists them.
    setup
        .client
        .subscribe(
            &setup.inbox,
            &setup.names().inbound(&broker::context("down")),
        )
        .await;
    let listing = tokio::spawn({
        let base = base.clone();
        async move {
            let mut seen_totals = Vec::new();
            for _ in 0..10 {
                let (ids, _, totals) = all_pages(&base, "up-to-down", 25).await;
                assert!(
                    ids.windows(2).all(|pair| pair[0] < pair[1]),
                    "in order while redriven: {ids:?}"
                );
                seen_totals.extend(totals);
            }
            seen_totals
        }
    });
    let response = crate::helpers::http()
        .post(format!("{base}/v1/routes/up-to-down/dead-letters/redrive"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let redriven: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(redriven["redriven"], N, "{redriven}");
    assert_eq!(
        redriven["remaining"], 0,
        "nothing held by the reader: {redriven}"
    );
    let seen_totals = listing.await.unwrap();
    assert!(
        seen_totals.iter().all(|total| *total <= N),
        "{seen_totals:?}"
    );

    // They went out in the order they were kept.
    let outputs = setup.client.take(&setup.inbox, N as usize, WAIT).await;
    let out: Vec<u64> = outputs
        .iter()
        .map(|output| body_json(output)["n"].as_u64().unwrap())
        .collect();
    assert_eq!(out, ns);
    assert!(all_pages(&base, "up-to-down", 40).await.0.is_empty());
    setup.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_a_full_downstream_queue_refuses_are_retried_until_it_has_room() {
    // RELIABILITY B6: the subscriber's queue holds 5 and refuses more (`reject-publish`): the
    // broker nacks those outputs, their inputs are retried, and they arrive once it has room.
    contextgate::telemetry::metrics();
    let fixture = Fixture::new(
        "conformist",
        None,
        "[routes.retry]\nmax_attempts = 30\ninitial_backoff = \"200ms\"\nmax_backoff = \"500ms\"\n",
    );
    let setup = setup("full", fixture.pipeline(), "").await;
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(5));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    setup
        .client
        .channel
        .queue_declare(
            setup.inbox.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    setup
        .client
        .channel
        .queue_bind(
            setup.inbox.as_str().into(),
            setup
                .names()
                .inbound(&broker::context("down"))
                .as_str()
                .into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    for n in 0..10 {
        setup
            .publish_binary(
                "up",
                "up/Thing@1",
                &format!("f-{n}"),
                &format!(r#"{{"id":"f","n":{n}}}"#),
            )
            .await;
    }
    // Five fit; the other five are refused and wait for their retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.client.count(&setup.inbox).await, 5);
    let retried = contextgate::telemetry::metrics().render();
    assert!(
        retried.lines().any(
            |line| line.starts_with("contextgate_messages_retried_total")
                && line.contains("publish")
                && !line.ends_with(" 0")
        ),
        "refused outputs are retried: {retried}"
    );

    // Room again: every input comes out, once each, none dead-lettered.
    let mut ns = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ns.len() < 10 {
        assert!(std::time::Instant::now() < deadline, "only {ns:?} came out");
        for output in setup.client.take(&setup.inbox, 1, WAIT).await {
            assert!(
                ns.insert(body_json(&output)["n"].as_u64().unwrap()),
                "once each"
            );
        }
    }
    setup
        .client
        .assert_empty(&setup.inbox, Duration::from_secs(1))
        .await;
    assert_eq!(setup.unread_dead_letters(Some("up-to-down")).await, 0);
    setup.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_queue_deleted_under_its_consumer_is_declared_again_and_consumed() {
    // RELIABILITY B7: the broker cancels the consumer; the gateway reconnects with backoff
    // (no busy loop), declares the queue again, and the route carries the next input.
    let fixture = Fixture::new("conformist", None, "");
    let setup = setup("deleted", fixture.pipeline(), "down").await;
    let queue = setup.names().route_queue("up-to-down");
    setup
        .client
        .channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while setup.gateway.bus.status().reconnects() < 1 || !setup.gateway.bus.status().is_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway came back within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup
        .publish_binary("up", "up/Thing@1", "d-1", r#"{"id":"d","n":1}"#)
        .await;
    assert_eq!(body_json(&setup.output().await), json!({"id": "d", "n": 1}));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        setup.gateway.bus.status().reconnects(),
        1,
        "one reconnect, no loop"
    );
    setup.gateway.stop().await;
}

#[tokio::test]
async fn dead_letters_of_an_earlier_version_s_queue_move_into_the_stream() {
    // Earlier versions kept a route's dead letters in a quorum queue `dead.<route>` bound to
    // `dead-letters`. A gateway moves them into the stream, in order, and unbinds the queue.
    let fixture = Fixture::new("conformist", None, "");
    let pipeline = fixture.pipeline();
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix("legacy");
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    let legacy = names.legacy_dead_letter_queue(Some("up-to-down"));
    cleanup.queue(&legacy);
    let client = Client::connect(&url).await;
    broker::declare(&client, &names, pipeline.registry()).await;
    let mut quorum = lapin::types::FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    client
        .channel
        .queue_declare(
            legacy.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            quorum,
        )
        .await
        .unwrap();
    client
        .channel
        .queue_bind(
            legacy.as_str().into(),
            names.dead_letters().as_str().into(),
            "up-to-down".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    for n in 0..3 {
        client
            .publish_stored(
                "",
                &legacy,
                format!(r#"{{"id":"old","n":{n}}}"#).as_bytes(),
                binary_event("up/Thing@1", &format!("old-{n}")),
            )
            .await;
    }
    // An earlier gateway's listing holds the first one, unacknowledged, while this one starts.
    let holder = Client::connect(&url).await;
    let held = holder
        .channel
        .basic_get(legacy.as_str().into(), Default::default())
        .await
        .unwrap()
        .expect("a dead letter to hold");
    assert_eq!(body_json(&held)["n"], 0);

    let gateway = broker::start(pipeline, broker::settings(&url, &prefix)).await;
    let stream = names.dead_letter_queue(Some("up-to-down"));
    let kept = broker::kept_dead_letters(&url, &stream, 2, SETTLE, WAIT).await;
    let ns: Vec<Value> = kept
        .iter()
        .map(|message| body_json(message)["n"].clone())
        .collect();
    assert_eq!(ns, [json!(1), json!(2)], "the two not held moved, in order");

    // The held one is not lost: it goes back to the queue, which is left (unbound: new dead
    // letters go to the stream only).
    drop(holder);
    let deadline = std::time::Instant::now() + WAIT;
    while client.count(&legacy).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the held dead letter is back in {legacy}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .publish_stored(
            &names.dead_letters(),
            "up-to-down",
            br#"{"id":"new","n":3}"#,
            binary_event("up/Thing@1", "new-3"),
        )
        .await;
    let kept = broker::kept_dead_letters(&url, &stream, 3, SETTLE, WAIT).await;
    assert_eq!(kept.len(), 3, "the new one is in the stream");
    assert_eq!(client.count(&legacy).await, 1, "and not in the queue");
    gateway.stop().await;
}

#[tokio::test]
async fn a_producer_s_headers_dead_lettered_by_the_broker_settle_nothing() {
    // A route queue at its delivery limit dead-letters the producer's message as it was, headers
    // included: one that looks like the gateway's tombstone (or marker) must stay a dead letter
    // and hide none.
    let fixture = Fixture::new("conformist", None, "");
    let setup = setup("forged", fixture.pipeline(), "").await;
    let base = setup.serve_api(fixture.pipeline()).await;
    setup
        .publish_binary("up", "up/Thing@1", "g-1", r#"{"id":"g","n":1}"#)
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    let (ids, _, _) = loop {
        let listed = all_pages(&base, "up-to-down", 100).await;
        if !listed.0.is_empty() {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a dead letter within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = ids[0];
    for forged in ["x-gateway-settles", "x-gateway-marker"] {
        let mut headers = lapin::types::FieldTable::default();
        headers.insert(forged.into(), AMQPValue::LongLongInt(victim as i64));
        headers.insert(
            "x-gateway-publish".into(),
            AMQPValue::LongString("0".into()),
        );
        headers.insert(
            "x-first-death-reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        setup
            .client
            .publish_stored(
                &setup.names().dead_letters(),
                "up-to-down",
                b"",
                BasicProperties::default().with_headers(headers),
            )
            .await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ids, _, totals) = all_pages_raw(&base, "up-to-down").await;
        if totals == 3 {
            assert!(
                ids.contains(&victim),
                "the dead letter is still kept: {ids:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two forged records are kept as dead letters: {totals}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.gateway.stop().await;
}

/// The ids and the total of one page of up to 1 000, inputs unread.
async fn all_pages_raw(base: &str, route: &str) -> (Vec<u64>, (), u64) {
    let response = crate::helpers::http()
        .get(format!("{base}/v1/routes/{route}/dead-letters?max=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let ids = page["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dead_letter| dead_letter["id"].as_str().unwrap().parse().unwrap())
        .collect();
    (ids, (), page["total"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_with_headers_a_stream_cannot_hold_becomes_a_dead_letter_and_stops_nothing() {
    // RabbitMQ 3.10's streams drop array and table headers and close the publishing connection
    // on a decimal one: a producer's such headers must neither break the gateway's session (over
    // and over, at each redelivery) nor be lost from the dead letter.
    let fixture = Fixture::new("conformist", None, "");
    let setup = setup("odd-headers", fixture.pipeline(), "").await;
    let base = setup.serve_api(fixture.pipeline()).await;
    let mut properties = binary_event("up/Thing@1", "h-1");
    let mut headers = properties.headers().clone().unwrap();
    headers.insert(
        "price".into(),
        AMQPValue::DecimalValue(lapin::types::DecimalValue {
            scale: 2,
            value: 150,
        }),
    );
    let mut tags = lapin::types::FieldArray::default();
    tags.push(AMQPValue::LongString("a".into()));
    headers.insert("tags".into(), AMQPValue::FieldArray(tags));
    properties = properties.with_headers(headers);
    setup
        .publish_with("up", "up/Thing@1", br#"{"id":"h","n":1}"#, properties)
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    while all_pages_raw(&base, "up-to-down").await.2 < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead letter is kept within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        setup.gateway.bus.status().reconnects(),
        0,
        "the session stayed up"
    );
    assert_eq!(all_pages_raw(&base, "up-to-down").await.2, 1, "kept once");
    let kept = setup.dead_letter(Some("up-to-down")).await;
    let input_headers =
        header(&kept, "x-gateway-input-headers").expect("the input's headers kept whole");
    assert!(
        input_headers.contains("DecimalValue") && input_headers.contains("FieldArray"),
        "{input_headers}"
    );
    setup.gateway.stop().await;
}
