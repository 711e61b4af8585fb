//! The HTTP listener's limits against real sockets (RELIABILITY A6, A8, A9, O2): slow clients are
//! dropped after the header-read timeout while others are served, ingest sheds load past its
//! concurrency limit with 503 and the admin API apart from it, oversized bodies (chunked too) are
//! 413, bodies that are not JSON 415, slow requests 408.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use contextgate::api::Limits;
use contextgate::api::auth::Credentials;
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// The API over `fixture`'s pipeline with `limits`; its base URL.
async fn serve(fixture: &Fixture, limits: Limits) -> String {
    let gateway = Gateway::new(fixture.pipeline(), Bus::InProcess(InProcessBus::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(contextgate::cli::serve::serve_with(
        listener,
        gateway,
        Arc::new(Credentials::open()),
        limits,
        std::future::pending(),
    ));
    base
}

/// An enrich fixture whose look-up answers after `delay`.
async fn slow_enrich(delay: Duration) -> Fixture {
    let app = Router::new().route(
        "/slow/{id}",
        get(move || async move {
            tokio::time::sleep(delay).await;
            axum::Json(json!({"name": "late"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fixture = Fixture::new(
        "enrich",
        Some(r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#),
        &format!(
            "[[routes.lookups]]\nname = \"customer\"\nurl = \"{stub}slow/{{/id}}\"\ntimeout = \"5s\"\ncache_ttl = \"0s\"\n"
        ),
    );
    fixture.allow(&stub);
    fixture
}

async fn post(base: &str, body: String) -> reqwest::Response {
    crate::helpers::http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_while_others_are_served() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(
        &fixture,
        Limits {
            header_read_timeout: Duration::from_millis(800),
            ..Limits::default()
        },
    )
    .await;
    let address = base.trim_start_matches("http://").to_owned();
    // 300 clients that send half a request line and then nothing.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHo")
            .await
            .unwrap();
        slow.push(stream);
    }
    let http = crate::helpers::http();
    for _ in 0..5 {
        let started = Instant::now();
        let response = http
            .get(format!("{base}/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "a probe took {:?} next to 300 slow clients",
            started.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut closed = 0;
    for stream in &mut slow {
        let mut buffer = [0u8; 512];
        // The server answers 408 or just closes; either way the connection ends.
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, slow.len(), "every slow client was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_sheds_load_past_its_concurrency_limit() {
    let fixture = slow_enrich(Duration::from_millis(700)).await;
    let base = serve(
        &fixture,
        Limits {
            ingest_concurrency: 2,
            ..Limits::default()
        },
    )
    .await;
    let posts = (0..6).map(|i| {
        let base = base.clone();
        tokio::spawn(async move {
            let response = post(
                &base,
                event_body("up/Thing@1", &format!("l-{i}"), r#"{"id":"a","n":1}"#),
            )
            .await;
            let retry_after = response.headers().get("retry-after").cloned();
            (response.status().as_u16(), retry_after)
        })
    });
    let mut statuses = Vec::new();
    for post in posts.collect::<Vec<_>>() {
        statuses.push(post.await.unwrap());
    }
    let accepted = statuses.iter().filter(|(status, _)| *status == 202).count();
    let shed: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status == 503)
        .collect();
    assert_eq!(accepted + shed.len(), 6, "{statuses:?}");
    assert!((1..=2).contains(&accepted), "{statuses:?}");
    assert!(shed.iter().all(|(_, retry_after)| retry_after.is_some()));
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(&fixture, Limits::default()).await;
    let data = format!(r#"{{"id":"{}","n":1}}"#, "x".repeat(2 * 1024 * 1024));
    let response = post(&base, event_body("up/Thing@1", "big", &data)).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_answered_408() {
    let fixture = slow_enrich(Duration::from_secs(2)).await;
    let base = serve(
        &fixture,
        Limits {
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    let started = Instant::now();
    let response = post(
        &base,
        event_body("up/Thing@1", "t-1", r#"{"id":"a","n":1}"#),
    )
    .await;
    assert_eq!(response.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_flood_is_shed_apart_from_ingest() {
    let fixture = slow_enrich(Duration::from_millis(500)).await;
    let base = serve(
        &fixture,
        Limits {
            admin_concurrency: 2,
            ingest_concurrency: 8,
            ..Limits::default()
        },
    )
    .await;
    // 40 dry runs at once, each waiting on the slow look-up: the admin side is full at once.
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                let response = crate::helpers::http()
                    .post(format!("{base}/v1/routes/up-to-down/dry-run"))
                    .header("content-type", "application/cloudevents+json")
                    .body(event_body(
                        "up/Thing@1",
                        &format!("d-{i}"),
                        r#"{"id":"a","n":1}"#,
                    ))
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Meanwhile ingest has its own limit: every message is taken.
    let ingest: Vec<_> = (0..4)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                post(
                    &base,
                    event_body("up/Thing@1", &format!("i-{i}"), r#"{"id":"a","n":1}"#),
                )
                .await
                .status()
                .as_u16()
            })
        })
        .collect();
    let mut admin = Vec::new();
    for answer in flood {
        admin.push(answer.await.unwrap());
    }
    for answer in ingest {
        assert_eq!(answer.await.unwrap(), 202, "ingest kept its capacity");
    }
    let shed = admin.iter().filter(|status| **status == 503).count();
    let served = admin.iter().filter(|status| **status == 200).count();
    assert_eq!(shed + served, admin.len(), "{admin:?}");
    assert!(served >= 2 && shed >= 30, "{admin:?}");
}

#[tokio::test]
async fn registration_bodies_must_be_json_and_within_the_cap() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(&fixture, Limits::default()).await;
    let response = crate::helpers::http()
        .put(format!("{base}/v1/routes/up-to-down"))
        .header("content-type", "text/plain")
        .body(r#"{"upstream":"up","downstream":"down","mode":"conformist"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    // A chunked body with no length, past the cap: 413, and the connection is not held open.
    let address = base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            b"PUT /v1/routes/up-to-down HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
    for _ in 0..40 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn the_admin_side_sheds_requests_past_its_rate() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(
        &fixture,
        Limits {
            admin_rate: 20,
            ..Limits::default()
        },
    )
    .await;
    let http = crate::helpers::http();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let response = http.get(format!("{base}/v1/routes")).send().await.unwrap();
        if response.status() == 503 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    let served = statuses.iter().filter(|status| **status == 200).count();
    let shed = statuses.iter().filter(|status| **status == 503).count();
    assert_eq!(served + shed, 200, "{statuses:?}");
    assert!(served >= 20 && shed > 0, "{served} served, {shed} shed");
    // Ingest is not on that budget.
    for i in 0..30 {
        let response = post(
            &base,
            event_body("up/Thing@1", &format!("r-{i}"), r#"{"id":"a","n":1}"#),
        )
        .await;
        assert_eq!(response.status(), 202);
    }
}

/// The API over `fixture`'s pipeline on an in-process bus with `bounds`: the gateway and its URL.
async fn serve_bounded(
    fixture: &Fixture,
    bounds: contextgate::bus::in_process::Bounds,
) -> (Arc<Gateway>, String) {
    let gateway = Gateway::new(
        fixture.pipeline(),
        Bus::InProcess(InProcessBus::new(bounds)),
    );
    (gateway.clone(), serve_gateway(gateway).await)
}

/// An `up/Thing@1` whose data weighs about a megabyte; valid unless `valid` is false (no `n`).
fn megabyte_event(id: &str, valid: bool) -> String {
    let n = if valid { r#""n":1,"# } else { "" };
    let data = format!(r#"{{"id":"{id}",{n}"pad":"{}"}}"#, "x".repeat(1_000_000));
    event_body("up/Thing@1", id, &data)
}

#[tokio::test]
async fn inboxes_are_bounded_by_bytes_and_read_in_bounded_answers() {
    let fixture = Fixture::new("conformist", None, "");
    let (_gateway, base) = serve_bounded(
        &fixture,
        contextgate::bus::in_process::Bounds {
            inbox_bytes: 12 * 1024 * 1024,
            ..Default::default()
        },
    )
    .await;

    for i in 0..15 {
        let response = post(&base, megabyte_event(&format!("m-{i}"), true)).await;
        assert_eq!(response.status(), 202);
    }

    let read = || async {
        let answer = crate::helpers::http()
            .get(format!("{base}/v1/contexts/down/inbox?max=1000"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let messages: Vec<serde_json::Value> = serde_json::from_slice(&answer).unwrap();
        messages
            .iter()
            .map(|message| message["data"]["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let first = read().await;
    let second = read().await;
    let expected =
        |range: std::ops::Range<usize>| range.map(|i| format!("m-{i}")).collect::<Vec<_>>();
    assert_eq!(
        first,
        expected(3..11),
        "the 12 newest kept; 8 MiB per answer"
    );
    assert_eq!(second, expected(11..15));
    assert!(read().await.is_empty());
}

#[tokio::test]
async fn dead_letters_past_their_byte_bound_are_refused_not_lost() {
    let fixture = Fixture::new("conformist", None, "");
    let (gateway, base) = serve_bounded(
        &fixture,
        contextgate::bus::in_process::Bounds {
            dead_letter_bytes: 3 * 1024 * 1024,
            ..Default::default()
        },
    )
    .await;
    let Bus::InProcess(bus) = gateway.bus() else {
        unreachable!("served on the in-process bus")
    };
    let route = contextgate::registry::RouteName::parse("up-to-down").unwrap();
    let kept = || {
        bus.dead_letters(Some(&route), usize::MAX)
            .iter()
            .map(|dead_letter| String::from_utf8_lossy(&dead_letter.input.body)[..120].to_owned())
            .filter_map(|start| {
                Some(
                    start
                        .split(r#""id":""#)
                        .nth(1)?
                        .split('"')
                        .next()?
                        .to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };

    for i in 0..3 {
        let response = post(&base, megabyte_event(&format!("d-{i}"), false)).await;
        assert_eq!(response.status(), 202);
    }
    let refused = post(&base, megabyte_event("d-3", false)).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: serde_json::Value =
        serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("dead letters are full"),
        "{problem}"
    );
    assert_eq!(kept(), ["d-0", "d-1", "d-2"], "none pushed out");

    // Room made (a dead letter deleted): the sender's retry is kept.
    assert_eq!(bus.take_dead_letters(&route, None, 1).len(), 1);
    let retried = post(&base, megabyte_event("d-3", false)).await;
    assert_eq!(retried.status(), 202);
    assert_eq!(kept(), ["d-1", "d-2", "d-3"]);
    let metrics = crate::helpers::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"contextgate_dead_letters_refused_total{route="up-to-down"}"#),
        "{metrics}"
    );
}

/// The sum of a counter's series for one route, as `/metrics` shows them.
async fn counted(base: &str, counter: &str, route: &str) -> f64 {
    let metrics = crate::helpers::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{counter}{{"))
                && line.contains(&format!("route=\"{route}\""))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_never_loses_a_dead_letter_when_others_fill_the_room_meanwhile() {
    // A look-up that answers 404 after 300 ms: every valid input fails for good, slowly.
    let app = Router::new().route(
        "/gone/{id}",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            axum::http::StatusCode::NOT_FOUND
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fixture = Fixture::new(
        "enrich",
        Some(r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#),
        &format!(
            "[[routes.lookups]]\nname = \"customer\"\nurl = \"{stub}gone/{{/id}}\"\ntimeout = \"5s\"\ncache_ttl = \"0s\"\n"
        ),
    );
    fixture.allow(&stub);
    // A route name of its own, so that its metrics are this test's alone.
    let path = fixture.root().join("contextgate.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, config.replace("\"up-to-down\"", "\"redrive-room\"")).unwrap();
    let (gateway, base) = serve_bounded(
        &fixture,
        contextgate::bus::in_process::Bounds {
            messages: 2,
            ..Default::default()
        },
    )
    .await;
    let Bus::InProcess(bus) = gateway.bus() else {
        unreachable!("served on the in-process bus")
    };
    let route = contextgate::registry::RouteName::parse("redrive-room").unwrap();
    let kept = || {
        bus.dead_letters(Some(&route), usize::MAX)
            .iter()
            .map(|dead_letter| {
                let body: serde_json::Value =
                    serde_json::from_slice(&dead_letter.input.body).unwrap();
                body["id"].as_str().unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    };
    let send = |id: &'static str, valid: bool| {
        let base = base.clone();
        async move {
            let data = if valid {
                json!({"id": id, "n": 1})
            } else {
                json!({"id": id})
            };
            post(&base, event_body("up/Thing@1", id, &data.to_string()))
                .await
                .status()
                .as_u16()
        }
    };

    // Two dead letters fill the room.
    for id in ["a", "b"] {
        assert_eq!(send(id, true).await, 202);
    }
    assert_eq!(kept(), ["a", "b"]);

    // Both redriven (each fails again, slowly) while two other inputs fail fast.
    let redrive = tokio::spawn(
        crate::helpers::http()
            .post(format!(
                "{base}/v1/routes/redrive-room/dead-letters/redrive"
            ))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = Vec::new();
    for id in ["c", "d"] {
        match send(id, false).await {
            202 => {}
            503 => refused.push(id),
            other => panic!("{id}: answered {other}"),
        }
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&redrive.await.unwrap().unwrap().bytes().await.unwrap()).unwrap();

    // Every input is kept, or its sender was told to send it again; the bound holds.
    let kept = kept();
    for id in ["a", "b", "c", "d"] {
        assert!(
            kept.contains(&id.to_owned()) || refused.contains(&id),
            "{id} lost: kept {kept:?}, refused {refused:?}, redrive {answer}"
        );
    }
    assert!(kept.len() <= 2, "{kept:?}");
    assert_eq!(answer["outcomes"], json!({"dead-letter": 2}), "{answer}");
    // Counted once kept: a and b, then each again; a refused one is counted as refused.
    let dead_lettered = counted(
        &base,
        "contextgate_messages_dead_lettered_total",
        "redrive-room",
    )
    .await;
    assert_eq!(dead_lettered, 4.0, "kept {kept:?}, refused {refused:?}");
}

/// Opens a connection that posts to `context` and sends only the start of its body; the stream.
async fn slow_body(address: &str, context: &str) -> tokio::net::TcpStream {
    request_without_body(
        address,
        &format!(
            "POST /v1/contexts/{context}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{{\"specversion\""
        ),
    )
    .await
}

/// The status line's code of what the server answered on `stream`, if it answered in `wait`.
async fn answered(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<u16> {
    let mut buffer = [0u8; 512];
    let n = tokio::time::timeout(wait, stream.read(&mut buffer))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&buffer[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_context_s_slow_bodies_do_not_turn_another_context_away() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(
        &fixture,
        Limits {
            ingest_concurrency: 8,
            ingest_per_context: 4,
            body_read_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
    )
    .await;
    let address = base.trim_start_matches("http://").to_owned();

    // `down` opens twice the global limit of requests and never finishes their bodies.
    let mut hogs = Vec::new();
    for _ in 0..16 {
        hogs.push(slow_body(&address, "down").await);
    }
    let mut shed = 0;
    for hog in &mut hogs {
        if answered(hog, Duration::from_millis(300)).await == Some(503) {
            shed += 1;
        }
    }
    assert_eq!(
        shed, 12,
        "down holds its share of 4, the rest is shed at once"
    );

    // Another context is still served, at once.
    let started = Instant::now();
    for i in 0..8 {
        let response = post(
            &base,
            event_body("up/Thing@1", &format!("f-{i}"), r#"{"id":"a","n":1}"#),
        )
        .await;
        assert_eq!(response.status(), 202);
    }
    assert!(started.elapsed() < Duration::from_secs(1));

    // The slow bodies are cut at the body-read timeout, well before the request timeout, and
    // `down` has its share back.
    let mut timed_out = 0;
    for hog in &mut hogs {
        if answered(hog, Duration::from_secs(3)).await == Some(408) {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 4);
    assert!(started.elapsed() < Duration::from_secs(5));
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/down/messages"))
        .header("content-type", "application/cloudevents+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "refused for its content, not shed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_registration_bodies_hold_no_admin_slot_and_are_cut_at_the_body_deadline() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(
        &fixture,
        Limits {
            admin_concurrency: 2,
            body_read_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
    )
    .await;
    let address = base.trim_start_matches("http://").to_owned();
    // Four registrations whose bodies never finish: twice the admin side's slots.
    let mut hogs = Vec::new();
    for i in 0..4 {
        hogs.push(
            request_without_body(
                &address,
                &format!(
                    "PUT /v1/contexts/up/contracts/Slow{i}/versions/1?kind=event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\""
                ),
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The admin side still answers, at once.
    let started = Instant::now();
    for _ in 0..4 {
        let response = crate::helpers::http()
            .get(format!("{base}/v1/routes"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(1));

    // The slow bodies are cut at the body deadline, well before the request timeout.
    for hog in &mut hogs {
        assert_eq!(answered(hog, Duration::from_secs(4)).await, Some(408));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// What the server answered on `stream` within `wait` (its status line and headers, at least),
/// lower-cased; empty when it did not answer.
async fn answer_head(stream: &mut tokio::net::TcpStream, wait: Duration) -> String {
    let mut buffer = [0u8; 2048];
    match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).to_lowercase(),
        _ => String::new(),
    }
}

/// Opens a connection that sends `head` (a request line and headers, and maybe the start of a
/// body) and nothing more.
async fn request_without_body(address: &str, head: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_being_read_share_one_byte_budget_past_which_requests_are_shed_at_once() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve(
        &fixture,
        Limits {
            body_bytes: 1_572_864,
            ..Limits::default()
        },
    )
    .await;
    let address = base.trim_start_matches("http://").to_owned();

    // Two slow bodies of 500 000 bytes, one on ingest and one on the admin side, hold 1 000 000
    // of the 1 572 864.
    let mut slow = Vec::new();
    for head in [
        "POST /v1/contexts/up/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 500000\r\n\r\n{\"specversion\"",
        "PUT /v1/contexts/up/contracts/Slow/versions/1?kind=event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n\r\n{\"type\"",
    ] {
        slow.push(request_without_body(&address, head).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A body that declares more than is left is answered 503 at once, before it is sent.
    for head in [
        "POST /v1/contexts/up/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 600000\r\n\r\n",
        "PUT /v1/contexts/up/contracts/Other/versions/1?kind=event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 600000\r\n\r\n",
        // A chunked body declares no length: it reserves the body cap.
        "POST /v1/contexts/up/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let started = Instant::now();
        let mut stream = request_without_body(&address, head).await;
        let answer = answer_head(&mut stream, Duration::from_secs(2)).await;
        assert!(answer.starts_with("http/1.1 503"), "{head}: {answer:?}");
        assert!(answer.contains("retry-after: 1"), "{answer}");
        assert!(started.elapsed() < Duration::from_millis(500), "{head}");
    }

    // Smaller bodies, and requests without one, still fit.
    let response = post(
        &base,
        event_body("up/Thing@1", "small", r#"{"id":"a","n":1}"#),
    )
    .await;
    assert_eq!(response.status(), 202);
    let response = crate::helpers::http()
        .get(format!("{base}/v1/routes"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Once the slow bodies are gone, their room is given back.
    drop(slow);
    let data = format!(r#"{{"id":"big","n":1,"pad":"{}"}}"#, "x".repeat(600_000));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = post(&base, event_body("up/Thing@1", "big", &data))
            .await
            .status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "the room was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A translator that works for about 80 ms on every message (its 50 ms budget is checked every
/// 1 024 operations, and these are heavy ones); `data, meta` for an enrich route.
fn slow_script(parameters: &str, id: &str) -> String {
    format!(
        r#"fn translate({parameters}) {{ for i in 0..1500 {{ let t = ""; t.pad(60000, "x"); }} #{{ id: {id}, total: data.n }} }}"#
    )
}

/// The slowest of the `/health/live` probes sent every 100 ms while a burst of 60 requests made
/// by `request` (a base URL and a message id) goes through `fixture`'s gateway. The gateway runs
/// in process on a runtime of its own with two workers, as a small container has; the clients on
/// another, so that what is measured is the server. The slowest probe must answer within
/// [`PROBE_BOUND`]: the issue's target is 100 ms, measured in tens of milliseconds on a quiet
/// machine; the bound leaves room for a loaded two-core CI machine (figures in BENCHMARKS.md).
fn slowest_probe_during_a_burst(
    fixture: &Fixture,
    request: impl Fn(&str, &str) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Duration {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (address, server) = {
        let (sender, receiver) = std::sync::mpsc::channel();
        let pipeline = fixture.pipeline();
        let server = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let gateway = Gateway::new(pipeline, Bus::InProcess(InProcessBus::default()));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                contextgate::cli::serve::serve_with(
                    listener,
                    gateway,
                    Arc::new(Credentials::open()),
                    Limits {
                        ingest_per_context: 1_000,
                        ingest_concurrency: 1_000,
                        admin_concurrency: 1_000,
                        admin_rate: 10_000,
                        ..Limits::default()
                    },
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
            });
        });
        (receiver.recv().unwrap(), server)
    };
    let base = format!("http://{address}");
    let request = Arc::new(request);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slowest = runtime.block_on(async {
        let one = Instant::now();
        let status = request(&base, "c-0").send().await.unwrap().status();
        assert!(status.is_success(), "{status}");
        eprintln!("one message: {:?}", one.elapsed());

        let burst_started = Instant::now();
        let burst: Vec<_> = (0..60)
            .map(|i| {
                let (base, request) = (base.clone(), request.clone());
                tokio::spawn(async move {
                    request(&base, &format!("b-{i}"))
                        .send()
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let http = crate::helpers::http();
        let mut probes = Vec::new();
        while !burst.iter().all(|post| post.is_finished()) {
            let started = Instant::now();
            let response = http
                .get(format!("{base}/health/live"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            probes.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let burst_took = burst_started.elapsed();
        for post in burst {
            let status = post.await.unwrap();
            assert!(status.is_success(), "{status}");
        }
        let slowest = probes.iter().max().copied().unwrap_or_default();
        eprintln!(
            "burst of 60: {burst_took:?}; {} probes, slowest {slowest:?}",
            probes.len()
        );
        assert!(
            slowest < PROBE_BOUND,
            "a liveness probe took {slowest:?} during the burst"
        );
        assert!(
            burst_took > Duration::from_secs(1) && probes.len() >= 5,
            "the burst lasted {burst_took:?} ({} probes): too short to show anything",
            probes.len()
        );
        slowest
    });
    drop(runtime);
    stop.send(()).unwrap();
    server.join().unwrap();
    slowest
}

/// How long a liveness probe may take in [`slowest_probe_during_a_burst`].
const PROBE_BOUND: Duration = Duration::from_millis(500);

fn ingest(base: &str, id: &str) -> reqwest::RequestBuilder {
    crate::helpers::http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(event_body("up/Thing@1", id, r#"{"id":"a","n":1}"#))
}

#[test]
fn health_answers_at_once_during_a_burst_through_a_slow_translator() {
    let fixture = Fixture::new("anti-corruption", Some(&slow_script("data", "data.id")), "");
    slowest_probe_during_a_burst(&fixture, ingest);
}

#[test]
fn health_answers_at_once_during_a_burst_through_a_slow_enrich_translator() {
    // The look-up answers at once, from a runtime of its own: what is slow is the translator.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new().route(
                "/customers/{id}",
                get(|| async { axum::Json(json!({"name": "ada"})) }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let stub = format!("http://{}/", receiver.recv().unwrap());
    let fixture = Fixture::new(
        "enrich",
        Some(&slow_script("data, meta", "meta.lookups.customer.name")),
        &format!(
            "[[routes.lookups]]\nname = \"customer\"\nurl = \"{stub}customers/{{/id}}\"\ncache_ttl = \"0s\"\n"
        ),
    );
    fixture.allow(&stub);
    slowest_probe_during_a_burst(&fixture, ingest);
}

#[test]
fn health_answers_at_once_during_a_burst_of_dry_runs_through_a_slow_translator() {
    let fixture = Fixture::new("anti-corruption", Some(&slow_script("data", "data.id")), "");
    slowest_probe_during_a_burst(&fixture, |base, id| {
        crate::helpers::http()
            .post(format!("{base}/v1/routes/up-to-down/dry-run"))
            .header("content-type", "application/cloudevents+json")
            .body(event_body("up/Thing@1", id, r#"{"id":"a","n":1}"#))
    });
}
