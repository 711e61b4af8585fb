//! The gateway on the in-process bus, over HTTP: the real router served on 127.0.0.1:0, and the
//! real binary as the README runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use contextgate::pipeline::Pipeline;
use serde_json::{Value, json};

use crate::helpers::*;

/// Starts the gateway over the shipped registry on a free port; its base URL.
async fn spawn_gateway() -> String {
    let registry = contextgate::registry::load(&repo()).unwrap();
    serve_gateway(Gateway::new(
        Pipeline::new(Arc::new(registry)),
        Bus::InProcess(InProcessBus::default()),
    ))
    .await
}

async fn post(base: &str, context: &str, body: String) -> (u16, Value) {
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/{context}/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = crate::helpers::http()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_posted_event_is_delivered_to_the_downstream_inbox() {
    let base = spawn_gateway().await;
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");

    let (status, body) = post(
        &base,
        "orders",
        event_body("orders/OrderPlaced@2", "e-1", &data.to_string()),
    )
    .await;

    assert_eq!(status, 202, "{body}");
    assert_eq!(body["routes"][0]["route"], "orders-to-shipping");
    assert_eq!(body["routes"][0]["outcome"], "forward");
    let (status, inbox) = get(&base, "/v1/contexts/shipping/inbox").await;
    assert_eq!(status, 200);
    let inbox: Vec<Value> = serde_json::from_str(&inbox).unwrap();
    assert_eq!(inbox.len(), 3);
    assert_eq!(inbox[0]["type"], "shipping.PrepareShipment");
    let (_, again) = get(&base, "/v1/contexts/shipping/inbox").await;
    assert_eq!(again, "[]", "reading the inbox takes the messages out");
}

#[tokio::test]
async fn binary_mode_over_http_uses_ce_headers() {
    let base = spawn_gateway().await;
    let data = example("payments/AuthorizePayment/examples/v1/eur-order.json");
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/orders/messages"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "c-1")
        .header("ce-source", "/orders")
        .header("ce-type", "payments.AuthorizePayment")
        .header("ce-dataschema", "contextgate:payments/AuthorizePayment@1")
        .body(data.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let (_, inbox) = get(&base, "/v1/contexts/payments/inbox").await;
    let inbox: Vec<Value> = serde_json::from_str(&inbox).unwrap();
    assert_eq!(inbox[0]["data"], data);
}

#[tokio::test]
async fn a_message_refused_at_the_edge_is_a_400_with_its_problems() {
    let base = spawn_gateway().await;
    let (status, body) = post(&base, "orders", "{\"not\": \"an event\"}".into()).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], 400);
    assert!(
        body["title"].as_str().unwrap().contains("invalid_envelope"),
        "{body}"
    );

    let (status, _) = post(&base, "Orders", "{}".into()).await;
    assert_eq!(status, 400, "context names are parsed");
    let (status, _) = post(&base, "warehouse", "{}".into()).await;
    assert_eq!(status, 404, "unknown contexts are not found");
}

#[tokio::test]
async fn a_route_failure_is_accepted_and_kept_as_a_dead_letter_with_pointers() {
    let base = spawn_gateway().await;
    let data = json!({"order_id": 5});
    let (status, body) = post(
        &base,
        "orders",
        event_body("orders/OrderPlaced@2", "bad-1", &data.to_string()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["routes"][0]["outcome"], "dead-letter");

    let (_, dead_letters) = get(&base, "/v1/dead-letters").await;
    let page: Value = serde_json::from_str(&dead_letters).unwrap();
    let dead_letter = page["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["input"]["body"].as_str().unwrap().contains("bad-1"))
        .unwrap();
    assert_eq!(dead_letter["route"], "orders-to-shipping");
    assert_eq!(dead_letter["failure"]["stage"], "validate-in");
    assert!(
        dead_letter["failure"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pointer"] == "/order_id")
    );
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let base = spawn_gateway().await;
    let data = example("payments/AuthorizePayment/examples/v1/eur-order.json");
    post(
        &base,
        "orders",
        event_body("payments/AuthorizePayment@1", "m-1", &data.to_string()),
    )
    .await;
    assert_eq!(get(&base, "/health/live").await.0, 200);
    let (status, ready) = get(&base, "/health/ready").await;
    assert_eq!(status, 200);
    assert!(ready.starts_with("ready: 5 contexts"), "{ready}");
    let (status, metrics) = get(&base, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("contextgate_messages_in_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("contextgate_messages_forwarded_total{route=\"orders-to-payments\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_readme_quickstart_serves_on_the_in_process_bus() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let event = std::fs::read_to_string(repo().join("examples/order-placed.json")).unwrap();
    let (status, body) = post(&base, "orders", event).await;
    let (_, inbox) = get(&base, "/v1/contexts/shipping/inbox").await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 202, "{body}");
    let inbox: Vec<Value> = serde_json::from_str(&inbox).unwrap();
    assert_eq!(inbox.len(), 3);
}

/// Starts `contextgate serve` on the shipped registry with `args`, reads its standard error (a
/// pipe) until a line holds `until`, stops it, and returns every line read.
fn serve_log_lines(args: &[&str], until: &str) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(repo())
        .env_remove("CONTEXTGATE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = KillOnDrop(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let done = line.contains(until);
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let lines = serve_log_lines(&[], "Gateway started.");

    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
}

#[test]
fn json_logs_are_one_object_a_line() {
    let lines = serve_log_lines(&["--log-format", "json"], "Gateway started.");

    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect();
    let started = events
        .iter()
        .find(|event| event["fields"]["message"] == "Gateway started.")
        .unwrap();
    assert_eq!(started["level"], "INFO");
    assert!(
        started["fields"]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{started}"
    );
    assert!(
        events.iter().any(|event| event["level"] == "WARN"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_conformist_route_delivers_the_input_bytes_exactly() {
    let fixture = Fixture::new("conformist", None, "");
    let base = serve_gateway(Gateway::new(
        fixture.pipeline(),
        Bus::InProcess(InProcessBus::default()),
    ))
    .await;
    let data = r#"{"n": 7.90, "id":"x-1",  "b":1, "a":2, "e": 1e2}"#;

    let (status, body) = post(&base, "up", event_body("up/Thing@1", "c-1", data)).await;
    assert_eq!(status, 202, "{body}");
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "c-2")
        .header("ce-source", "/up")
        .header("ce-type", "up.Thing")
        .header("ce-dataschema", "contextgate:up/Thing@1")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let (status, inbox) = get(&base, "/v1/contexts/down/inbox").await;
    assert_eq!(status, 200);
    assert_eq!(
        inbox.matches(&format!(r#""data":{data}"#)).count(),
        2,
        "the data as it was posted, byte for byte, in both messages: {inbox}"
    );
    let inbox: Vec<Value> = serde_json::from_str(&inbox).unwrap();
    assert_eq!(inbox[0]["specversion"], "1.0");
    assert_eq!(inbox[0]["datacontenttype"], "application/json");
}

#[tokio::test]
async fn a_fresh_gateway_declares_every_series_with_help_and_buckets() {
    let dir = shipped_registry_copy();
    let (child, base) = serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--instance-id", "gw-1"])
            .arg("--registry")
            .arg(dir.path())
            .env_remove("CONTEXTGATE_CREDENTIALS")
            .env_remove("CONTEXTGATE_CREDENTIALS_FILE")
            .env_remove("CONTEXTGATE_AMQP_URL"),
    );
    let _child = KillOnDrop(child);
    // Every series carries the instance's label first (shards.rs checks that); the series are
    // compared here without it.
    let without_instance = |metrics: String| metrics.replace(r#"instance="gw-1","#, "");

    let (status, metrics) = get(&base, "/metrics").await;
    let metrics = without_instance(metrics);

    assert_eq!(status, 200);
    let routes = [
        "orders-to-payments",
        "payments-to-orders",
        "orders-to-shipping",
        "customers-to-orders",
        "customers-to-notifications",
        "shipping-to-notifications",
        "payments-to-notifications",
    ];
    for route in routes {
        for series in [
            format!(r#"contextgate_messages_forwarded_total{{route="{route}"}} 0"#),
            format!(r#"contextgate_messages_dropped_total{{route="{route}"}} 0"#),
            format!(
                r#"contextgate_messages_dead_lettered_total{{route="{route}",stage="validate-in"}} 0"#
            ),
            format!(r#"contextgate_messages_retried_total{{route="{route}",stage="enrich"}} 0"#),
        ] {
            assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
        }
    }
    for context in [
        "orders",
        "payments",
        "shipping",
        "customers",
        "notifications",
    ] {
        let series = format!(r#"contextgate_messages_in_total{{context="{context}"}} 0"#);
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
    for line in [
        "# HELP contextgate_messages_forwarded_total ",
        "# HELP contextgate_messages_in_total ",
        "# HELP contextgate_processing_seconds ",
        "# TYPE contextgate_processing_seconds histogram",
        r#"contextgate_processing_seconds_bucket{le="0.005"} 0"#,
        r#"contextgate_processing_seconds_bucket{le="+Inf"} 0"#,
    ] {
        assert!(metrics.contains(line), "no {line:?} in:\n{metrics}");
    }

    // A route added by a registry change is declared too.
    let config = dir.path().join("contextgate.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{original}\n[[routes]]\nname = \"payments-to-shipping\"\nupstream = \"payments\"\ndownstream = \"shipping\"\nmode = \"conformist\"\naccepts = [\"payments/PaymentCaptured@1\"]\n"
        ),
    )
    .unwrap();
    let added = r#"contextgate_messages_forwarded_total{route="payments-to-shipping"} 0"#;
    let started = std::time::Instant::now();
    while !without_instance(get(&base, "/metrics").await.1).contains(added) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the added route was not declared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
