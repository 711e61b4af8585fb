//! Telemetry of the real binary: OpenTelemetry traces exported to an OTLP/HTTP receiver the test
//! starts (protobuf, decoded with opentelemetry-proto), in process and on the real RabbitMQ;
//! the route metrics (latency, in flight, queue depth) moving on `/metrics`; and the Grafana
//! dashboard's queries against what `/metrics` exports.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{Fixture, KillOnDrop, event_body, http, serve_binary};
use crate::replay::wait_ready;

/// The trace context producers give in these tests: trace id and parent span id.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// The trace context of `helpers::event_body`'s `traceparent` extension.
const EXTENSION_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const EXTENSION_PARENT: &str = "b7ad6b7169203331";

/// What the OTLP receiver took: every span, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    /// Requests that were not `application/x-protobuf` or did not decode.
    refused: Arc<Mutex<Vec<String>>>,
}

impl Received {
    /// Every span once `done` holds of them, or a panic after `within`.
    async fn until(&self, within: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + within;
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|(_, span)| span.clone())
                .collect();
            if done(&spans) {
                assert!(self.refused.lock().unwrap().is_empty());
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the spans did not arrive within {within:?}; received: {:#?}; refused: {:?}",
                spans.iter().map(|span| &span.name).collect::<Vec<_>>(),
                self.refused.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn services(&self) -> BTreeSet<String> {
        let spans = self.spans.lock().unwrap();
        spans.iter().map(|(service, _)| service.clone()).collect()
    }
}

/// An OTLP/HTTP trace receiver on 127.0.0.1: its base URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`)
/// and what it receives on `POST /v1/traces`.
async fn otlp_receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(accept))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

async fn accept(
    State(received): State<Received>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type != "application/x-protobuf" {
        received.refused.lock().unwrap().push(content_type);
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            received.refused.lock().unwrap().push(error.to_string());
            return StatusCode::BAD_REQUEST;
        }
    };
    let mut spans = received.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| text(attribute.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                spans.push((service.clone(), span));
            }
        }
    }
    StatusCode::OK
}

fn text(value: &any_value::Value) -> Option<String> {
    match value {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        any_value::Value::BoolValue(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| text(attribute.value.as_ref()?.value.as_ref()?))
}

/// The route spans (`process <route>`) of the input with CloudEvents id `id`.
fn route_spans<'a>(spans: &'a [Span], id: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|span| {
            span.name.starts_with("process ")
                && attribute(span, "messaging.message.id").as_deref() == Some(id)
        })
        .collect()
}

/// The names of the child spans of `parent`, in the order they started.
fn stages(spans: &[Span], parent: &Span) -> Vec<String> {
    let mut children: Vec<&Span> = spans
        .iter()
        .filter(|span| span.parent_span_id == parent.span_id && span.trace_id == parent.trace_id)
        .collect();
    children.sort_by_key(|span| span.start_time_unix_nano);
    children.iter().map(|span| span.name.clone()).collect()
}

/// `serve` with traces sent to `otlp`, batches exported every `delay_ms`.
fn traced<'a>(command: &'a mut Command, otlp: &str, delay_ms: u64) -> &'a mut Command {
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_string())
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("CONTEXTGATE_CREDENTIALS")
}

/// The fixture's anti-corruption route `up-to-down` (`up/Thing@1` → `down/Act@1`) and a
/// conformist route `up-as-is` that forwards the same event unchanged.
fn two_routes() -> Fixture {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { #{ id: data.id, total: data.n } }"),
        "",
    );
    fixture.append(
        "\n[[routes]]\nname = \"up-as-is\"\nupstream = \"up\"\ndownstream = \"down\"\nmode = \"conformist\"\naccepts = [\"up/Thing@1\"]\n",
    );
    fixture
}

async fn post_event(base: &str, body: String, traceparent: Option<(&str, &str)>) {
    let mut request = http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(body);
    if let Some((traceparent, tracestate)) = traceparent {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", tracestate);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
}

async fn metrics_text(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the series `name{labels}` (labels as they are written, without `instance`),
/// e.g. `contextgate_in_flight{route="up-to-down"}`.
fn value(metrics: &str, series: &str) -> Option<f64> {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let labels = labels.trim_end_matches('}');
    metrics.lines().find_map(|line| {
        let (head, number) = line.rsplit_once(' ')?;
        let (found_name, found_labels) = head.split_once('{').unwrap_or((head, "}"));
        let found_labels = found_labels.trim_end_matches('}');
        let found_labels: Vec<&str> = found_labels
            .split(',')
            .filter(|label| !label.starts_with("instance="))
            .collect();
        (found_name == name && found_labels.join(",") == labels).then(|| number.parse().ok())?
    })
}

/// Reads `/metrics` until `series` has a value `accept` takes, or panics after `within`.
async fn wait_metric(base: &str, series: &str, within: Duration, accept: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let metrics = metrics_text(base).await;
        let found = value(&metrics, series);
        if found.is_some_and(&accept) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {found:?} after {within:?}:\n{}",
            metrics
                .lines()
                .filter(|line| line.contains("route_queue_depth") || line.contains("in_flight"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_each_route_of_an_input_has_a_span_that_continues_its_traceparent() {
    let (otlp, received) = otlp_receiver().await;
    let fixture = two_routes();
    let (child, base) = serve_traced_in_process(&fixture, &otlp);
    let _child = KillOnDrop(child);

    // The trace context in the HTTP headers comes first; the second input has it only in the
    // event (the CloudEvents extension `helpers::event_body` writes).
    let header = format!("00-{TRACE}-{PARENT}-01");
    post_event(
        &base,
        event_body("up/Thing@1", "in-headers", r#"{"id":"a","n":1}"#),
        Some((&header, "vendor=a")),
    )
    .await;
    post_event(
        &base,
        event_body("up/Thing@1", "in-event", r#"{"id":"b","n":2}"#),
        None,
    )
    .await;

    let spans = received
        .until(Duration::from_secs(20), |spans| {
            route_spans(spans, "in-headers").len() == 2 && route_spans(spans, "in-event").len() == 2
        })
        .await;
    assert_eq!(
        received.services(),
        BTreeSet::from(["contextgate".to_owned()])
    );
    let inbox = http()
        .get(format!("{base}/v1/contexts/down/inbox"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let inbox: Vec<Value> = serde_json::from_slice(&inbox).unwrap();
    assert_eq!(inbox.len(), 4, "{inbox:#?}");
    for (id, trace, parent, tracestate) in [
        ("in-headers", TRACE, PARENT, Some("vendor=a")),
        ("in-event", EXTENSION_TRACE, EXTENSION_PARENT, None),
    ] {
        let mut routes = BTreeSet::new();
        for span in route_spans(&spans, id) {
            assert_eq!(hex(&span.trace_id), trace, "{span:#?}");
            assert_eq!(hex(&span.parent_span_id), parent, "{span:#?}");
            assert_eq!(
                attribute(span, "messaging.system").as_deref(),
                Some("contextgate")
            );
            assert_eq!(
                attribute(span, "contextgate.outcome").as_deref(),
                Some("forward")
            );
            assert_eq!(
                attribute(span, "contextgate.upstream").as_deref(),
                Some("up")
            );
            assert_eq!(
                attribute(span, "contextgate.downstream").as_deref(),
                Some("down")
            );
            assert_eq!(
                attribute(span, "cloudevents.event_type").as_deref(),
                Some("up.Thing")
            );
            let route = attribute(span, "contextgate.route").unwrap();
            let expected = match route.as_str() {
                "up-to-down" => {
                    assert_eq!(
                        attribute(span, "contextgate.mode").as_deref(),
                        Some("anti-corruption")
                    );
                    vec![
                        "decode",
                        "validate-in",
                        "translate",
                        "validate-out",
                        "publish",
                    ]
                }
                "up-as-is" => vec!["decode", "validate-in", "publish"],
                other => panic!("a span of an unknown route {other}"),
            };
            assert_eq!(stages(&spans, span), expected, "the stages of {route}");
            // The output of this route names this span as its parent.
            let output_type = if route == "up-to-down" {
                "down.Act"
            } else {
                "up.Thing"
            };
            let output = inbox
                .iter()
                .find(|message| {
                    message["type"] == output_type
                        && message["data"]["id"] == if id == "in-headers" { "a" } else { "b" }
                })
                .unwrap_or_else(|| panic!("no {output_type} output of {id}: {inbox:#?}"));
            assert_eq!(
                output["traceparent"],
                format!("00-{trace}-{}-01", hex(&span.span_id)),
                "{output:#}"
            );
            assert_eq!(output["tracestate"].as_str(), tracestate, "{output:#}");
            routes.insert(route);
        }
        assert_eq!(
            routes,
            BTreeSet::from(["up-as-is".to_owned(), "up-to-down".to_owned()])
        );
    }
}

/// An in-process gateway binary over `fixture`, tracing to `otlp` (batches every 100 ms).
fn serve_traced_in_process(fixture: &Fixture, otlp: &str) -> (std::process::Child, String) {
    serve_binary(
        traced(
            Command::new(env!("CARGO_BIN_EXE_contextgate"))
                .args(["serve", "--listen", "127.0.0.1:0"])
                .arg("--registry")
                .arg(fixture.root()),
            otlp,
            100,
        )
        .env_remove("CONTEXTGATE_AMQP_URL"),
    )
}

/// A RabbitMQ gateway binary over `fixture`, tracing to `otlp` (batches every `delay_ms`).
fn serve_traced_on_broker(
    fixture: &Fixture,
    prefix: &str,
    otlp: &str,
    delay_ms: u64,
    extra: &[&str],
) -> (std::process::Child, String) {
    serve_binary(
        traced(
            Command::new(env!("CARGO_BIN_EXE_contextgate"))
                .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", prefix])
                .args(extra)
                .arg("--registry")
                .arg(fixture.root()),
            otlp,
            delay_ms,
        )
        .env("CONTEXTGATE_AMQP_URL", crate::broker::amqp_url()),
    )
}

/// A binary-mode `up/Thing@1` input with `traceparent` as a plain AMQP header (no CloudEvents
/// extension), and a CloudEvents `time` a second ago.
fn traced_input(id: &str, traceparent: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    let time =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() - Duration::from_secs(1))
            .to_string();
    for (name, value) in [
        ("cloudEvents_specversion", "1.0".to_owned()),
        ("cloudEvents_id", id.to_owned()),
        ("cloudEvents_source", "/up".to_owned()),
        ("cloudEvents_type", "up.Thing".to_owned()),
        (
            "cloudEvents_dataschema",
            "contextgate:up/Thing@1".to_owned(),
        ),
        ("cloudEvents_time", time),
        ("traceparent", traceparent.to_owned()),
        ("tracestate", "vendor=amqp".to_owned()),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(id.into())
        .with_headers(headers)
}

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        other => panic!("{name} is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_a_route_span_continues_the_inputs_traceparent_and_is_flushed_at_a_stop() {
    let (otlp, received) = otlp_receiver().await;
    let fixture = two_routes();
    let url = crate::broker::amqp_url();
    let prefix = crate::broker::unique_prefix("otel");
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let cleanup = crate::broker::Cleanup::new(&url, &names, fixture.pipeline().registry());
    let inbox = format!("{prefix}inbox.down");
    cleanup.queue(&inbox);
    let client = crate::broker::Client::connect(&url).await;
    // Batches every minute: what the test sees was flushed by the stop.
    let (child, base) = serve_traced_on_broker(&fixture, &prefix, &otlp, 60_000, &[]);
    let mut child = KillOnDrop(child);
    wait_ready(&base).await;
    client
        .subscribe(&inbox, &names.inbound(&crate::broker::context("down")))
        .await;

    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let exchange = names.outbound(&crate::broker::context("up"));
    client
        .publish_stored(
            &exchange,
            "up.Thing",
            br#"{"id":"a","n":1}"#,
            traced_input("good", &traceparent),
        )
        .await;
    client
        .publish_stored(
            &exchange,
            "up.Thing",
            br#"{"id":"b","n":"not a number"}"#,
            traced_input("bad", &traceparent),
        )
        .await;
    let outputs = client.take(&inbox, 2, Duration::from_secs(20)).await;
    let latency = r#"contextgate_route_latency_seconds_count{route="up-to-down"}"#;
    wait_metric(&base, latency, Duration::from_secs(10), |count| {
        count == 1.0
    })
    .await;
    let metrics = metrics_text(&base).await;
    assert_eq!(
        value(
            &metrics,
            r#"contextgate_end_to_end_seconds_count{route="up-to-down"}"#
        ),
        Some(1.0),
        "the input had a time"
    );
    assert!(
        value(
            &metrics,
            r#"contextgate_end_to_end_seconds_sum{route="up-to-down"}"#
        )
        .is_some_and(|sum| sum >= 1.0),
        "the input's time was a second before it was sent"
    );

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let spans = received
        .until(Duration::from_secs(5), |spans| {
            route_spans(spans, "good").len() == 2 && route_spans(spans, "bad").len() == 2
        })
        .await;
    for span in route_spans(&spans, "good") {
        assert_eq!(hex(&span.trace_id), TRACE);
        assert_eq!(hex(&span.parent_span_id), PARENT);
        assert_eq!(
            attribute(span, "messaging.system").as_deref(),
            Some("rabbitmq")
        );
        assert_eq!(
            attribute(span, "contextgate.outcome").as_deref(),
            Some("forward")
        );
        let route = attribute(span, "contextgate.route").unwrap();
        let expected = if route == "up-to-down" {
            vec![
                "decode",
                "validate-in",
                "translate",
                "validate-out",
                "publish",
                "confirm",
            ]
        } else {
            vec!["decode", "validate-in", "publish", "confirm"]
        };
        assert_eq!(stages(&spans, span), expected, "the stages of {route}");
        let output_type = if route == "up-to-down" {
            "down.Act"
        } else {
            "up.Thing"
        };
        let output = outputs
            .iter()
            .find(|output| {
                header(&output.delivery.properties, "cloudEvents_type").as_deref()
                    == Some(output_type)
            })
            .unwrap_or_else(|| panic!("no {output_type} output"));
        let expected = format!("00-{TRACE}-{}-01", hex(&span.span_id));
        assert_eq!(
            header(&output.delivery.properties, "traceparent").as_deref(),
            Some(expected.as_str()),
            "the output's transport header names the route's span"
        );
        assert_eq!(
            header(&output.delivery.properties, "cloudEvents_traceparent").as_deref(),
            Some(expected.as_str()),
            "and so does its CloudEvents extension"
        );
        assert_eq!(
            header(&output.delivery.properties, "tracestate").as_deref(),
            Some("vendor=amqp")
        );
    }
    for span in route_spans(&spans, "bad") {
        assert_eq!(hex(&span.trace_id), TRACE);
        assert_eq!(hex(&span.parent_span_id), PARENT);
        assert_eq!(
            attribute(span, "contextgate.outcome").as_deref(),
            Some("dead-letter")
        );
        assert_eq!(
            attribute(span, "contextgate.dead_letter.reason").as_deref(),
            Some("contract_violation")
        );
        assert_eq!(
            attribute(span, "contextgate.dead_letter.stage").as_deref(),
            Some("validate-in")
        );
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, 2, "an error: {status:?}");
        assert_eq!(stages(&spans, span), ["decode", "validate-in"]);
    }
}

/// A look-up server whose answers wait until `open` turns true.
async fn gated_lookup() -> (String, watch::Sender<bool>) {
    let (open, opened) = watch::channel(false);
    let app = Router::new().route(
        "/customers/{id}",
        get(move |Path(id): Path<String>| {
            let mut opened = opened.clone();
            async move {
                let _ = opened.wait_for(|open| *open).await;
                axum::Json(json!({"name": format!("name of {id}")}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, open)
}

/// An enrich route `up-to-down` whose look-up waits on the gated server at `base`.
fn gated_enrich(base: &str, extra: &str) -> Fixture {
    let fixture = Fixture::new(
        "enrich",
        Some(r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#),
        &format!(
            "{extra}\n[[routes.lookups]]\nname = \"customer\"\nurl = \"{base}customers/{{/id}}\"\ntimeout = \"30s\"\n"
        ),
    );
    fixture.allow(base);
    fixture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_a_backlog_shows_as_queue_depth_and_in_flight_then_both_return_to_zero() {
    const N: usize = 30;
    let (lookups, open) = gated_lookup().await;
    let fixture = gated_enrich(&lookups, "");
    let url = crate::broker::amqp_url();
    let prefix = crate::broker::unique_prefix("depth");
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let cleanup = crate::broker::Cleanup::new(&url, &names, fixture.pipeline().registry());
    let inbox = format!("{prefix}inbox.down");
    cleanup.queue(&inbox);
    let client = crate::broker::Client::connect(&url).await;
    let (child, base) = crate::helpers::serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", &prefix])
            .args(["--prefetch", "10", "--lanes", "10"])
            .arg("--registry")
            .arg(fixture.root())
            .env("CONTEXTGATE_AMQP_URL", &url)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("CONTEXTGATE_CREDENTIALS"),
    );
    let _child = KillOnDrop(child);
    wait_ready(&base).await;
    client
        .subscribe(&inbox, &names.inbound(&crate::broker::context("down")))
        .await;
    let depth = r#"contextgate_route_queue_depth{route="up-to-down"}"#;
    let in_flight = r#"contextgate_in_flight{route="up-to-down"}"#;
    let metrics = metrics_text(&base).await;
    assert_eq!(value(&metrics, depth), Some(0.0), "declared at zero");
    assert_eq!(value(&metrics, in_flight), Some(0.0), "declared at zero");

    let exchange = names.outbound(&crate::broker::context("up"));
    for i in 0..N {
        let id = format!("c-{i}");
        client
            .publish_stored(
                &exchange,
                "up.Thing",
                format!(r#"{{"id":"{id}","n":{i}}}"#).as_bytes(),
                traced_input(&id, &format!("00-{TRACE}-{PARENT}-01")),
            )
            .await;
    }
    // The prefetch (10) is taken and waits on the look-ups; the rest waits in the queue.
    wait_metric(&base, in_flight, Duration::from_secs(10), |n| n == 10.0).await;
    wait_metric(&base, depth, Duration::from_secs(10), |n| {
        n == (N - 10) as f64
    })
    .await;

    open.send_replace(true);
    client.take(&inbox, N, Duration::from_secs(30)).await;
    wait_metric(&base, in_flight, Duration::from_secs(10), |n| n == 0.0).await;
    wait_metric(&base, depth, Duration::from_secs(10), |n| n == 0.0).await;
    let latency = r#"contextgate_route_latency_seconds_count{route="up-to-down"}"#;
    wait_metric(&base, latency, Duration::from_secs(5), |n| n == N as f64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_waiting_look_up_is_in_flight_and_a_retry_waiting_out_its_backoff_is_depth() {
    let (otlp, received) = otlp_receiver().await;
    let (lookups, open) = gated_lookup().await;
    let fixture = gated_enrich(
        &lookups,
        "[routes.on_failure]\nenrich = \"retry\"\n[routes.retry]\ninitial_backoff = \"2s\"\n",
    );
    // The look-up gives up after 2 s while the gate is shut: a transient failure, retried.
    let toml = fixture.root().join("contextgate.toml");
    let config = std::fs::read_to_string(&toml).unwrap().replace("30s", "2s");
    std::fs::write(&toml, config).unwrap();
    let (child, base) = serve_traced_in_process(&fixture, &otlp);
    let _child = KillOnDrop(child);
    let depth = r#"contextgate_route_queue_depth{route="up-to-down"}"#;
    let in_flight = r#"contextgate_in_flight{route="up-to-down"}"#;

    let posting = {
        let base = base.clone();
        tokio::spawn(async move {
            post_event(
                &base,
                event_body("up/Thing@1", "slow", r#"{"id":"s","n":1}"#),
                None,
            )
            .await;
        })
    };
    wait_metric(&base, in_flight, Duration::from_secs(5), |n| n == 1.0).await;
    posting.await.unwrap();
    let metrics = metrics_text(&base).await;
    assert_eq!(value(&metrics, in_flight), Some(0.0), "answered: {metrics}");
    assert_eq!(
        value(&metrics, depth),
        Some(1.0),
        "the retry waits out its backoff"
    );

    open.send_replace(true);
    wait_metric(&base, depth, Duration::from_secs(10), |n| n == 0.0).await;
    let forwarded = r#"contextgate_messages_forwarded_total{route="up-to-down"}"#;
    wait_metric(&base, forwarded, Duration::from_secs(10), |n| n == 1.0).await;

    // Each attempt is a span of its own, both children of the input's trace context.
    let spans = received
        .until(Duration::from_secs(10), |spans| {
            route_spans(spans, "slow").len() == 2
        })
        .await;
    let mut attempts: Vec<(String, String)> = route_spans(&spans, "slow")
        .into_iter()
        .map(|span| {
            assert_eq!(hex(&span.trace_id), EXTENSION_TRACE);
            assert_eq!(hex(&span.parent_span_id), EXTENSION_PARENT);
            (
                attribute(span, "contextgate.attempt").unwrap(),
                attribute(span, "contextgate.outcome").unwrap(),
            )
        })
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [
            ("1".to_owned(), "retry".to_owned()),
            ("2".to_owned(), "forward".to_owned())
        ]
    );
    let first = route_spans(&spans, "slow")
        .into_iter()
        .find(|span| attribute(span, "contextgate.attempt").as_deref() == Some("1"))
        .unwrap();
    assert_eq!(
        attribute(first, "contextgate.failure.reason").as_deref(),
        Some("enrichment_unavailable")
    );
    assert_eq!(stages(&spans, first), ["decode", "validate-in", "enrich"]);
}

/// Every metric name the dashboard's queries use, histograms by their base name.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = crate::helpers::repo().join("examples/grafana/contextgate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut expressions = Vec::new();
    collect_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() >= 10, "{expressions:?}");
    let name = regex::Regex::new(r"contextgate_[a-z_]+").unwrap();
    expressions
        .iter()
        .flat_map(|expression| name.find_iter(expression))
        .map(|found| {
            let found = found.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| found.strip_suffix(suffix))
                .unwrap_or(found)
                .to_owned()
        })
        .collect()
}

/// Every `expr` (a panel's query) and `query` (a template variable's) in the dashboard.
fn collect_expressions(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr", Value::String(expression)) => found.push(expression.clone()),
                    ("query", Value::String(query)) if query.contains("contextgate_") => {
                        found.push(query.clone());
                    }
                    _ => collect_expressions(value, found),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_expressions(item, found)),
        _ => {}
    }
}

/// The metric names a `/metrics` page declares (`# TYPE name kind`).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_is_exported_by_the_gateway() {
    let wanted = dashboard_metrics();
    for metric in [
        "contextgate_route_latency_seconds",
        "contextgate_end_to_end_seconds",
        "contextgate_in_flight",
        "contextgate_route_queue_depth",
        "contextgate_messages_forwarded_total",
        "contextgate_messages_dead_lettered_total",
    ] {
        assert!(wanted.contains(metric), "the dashboard shows {metric}");
    }
    // A fresh gateway on each bus: together they declare every series.
    let fixture = Fixture::new("conformist", None, "");
    let (in_process, in_process_base) = serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--registry")
            .arg(fixture.root())
            .env_remove("CONTEXTGATE_AMQP_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CONTEXTGATE_CREDENTIALS"),
    );
    let _in_process = KillOnDrop(in_process);
    let url = crate::broker::amqp_url();
    let prefix = crate::broker::unique_prefix("dashboard");
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let _cleanup = crate::broker::Cleanup::new(&url, &names, fixture.pipeline().registry());
    let _client = crate::broker::Client::connect(&url).await;
    let (on_broker, on_broker_base) = crate::helpers::serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", &prefix])
            .arg("--registry")
            .arg(fixture.root())
            .env("CONTEXTGATE_AMQP_URL", &url)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CONTEXTGATE_CREDENTIALS"),
    );
    let _on_broker = KillOnDrop(on_broker);
    wait_ready(&on_broker_base).await;

    let mut declared = exported(&metrics_text(&in_process_base).await);
    declared.extend(exported(&metrics_text(&on_broker_base).await));
    let missing: Vec<&String> = wanted.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the gateway does not export: {missing:?}"
    );
}
