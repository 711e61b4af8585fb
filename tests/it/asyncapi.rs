//! AsyncAPI 3.0 per context (issue 15, part 2): `contextgate asyncapi` on every shipped context
//! and `GET /v1/contexts/{context}/asyncapi` per caller, every document checked against the
//! official AsyncAPI 3.0.0 JSON Schema vendored in `tests/asyncapi/`; a hostile context cannot
//! read another's internal contracts through it; on RabbitMQ, the channels it names exist as
//! the gateway declared them, and a message built from the document alone goes through.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use contextgate::api::auth::{Credentials, hash_token};
use contextgate::bus::amqp::{AmqpBus, Names};
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use contextgate::pipeline::Pipeline;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::broker::{self, Cleanup, Client};
use crate::helpers::*;

/// The official AsyncAPI 3.0.0 JSON Schema, compiled once.
static ASYNCAPI: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let text = std::fs::read_to_string(repo().join("tests/asyncapi/asyncapi-3.0.0.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the AsyncAPI 3.0.0 schema compiles")
});

const CONTEXTS: [&str; 5] = [
    "customers",
    "notifications",
    "orders",
    "payments",
    "shipping",
];

/// Panics with every error unless `document` is a valid AsyncAPI 3.0.0 document.
fn assert_valid(document: &Value, what: &str) {
    let errors: Vec<String> = ASYNCAPI
        .iter_errors(document)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

/// `contextgate asyncapi` with `args`, the broker settings of the environment removed.
fn asyncapi(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .arg("asyncapi")
        .args(args)
        .env_remove("CONTEXTGATE_AMQP_URL")
        .env_remove("CONTEXTGATE_AMQP_PREFIX")
        .env_remove("CONTEXTGATE_REGISTRY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn printed(output: &std::process::Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn shipped(context: &str, extra: &[&str]) -> Value {
    let registry = repo();
    let mut args = vec![
        "--registry",
        registry.to_str().unwrap(),
        "--context",
        context,
    ];
    args.extend(extra);
    printed(&asyncapi(&args))
}

#[test]
fn the_vendored_schema_refuses_a_broken_document() {
    let good = shipped("shipping", &[]);
    assert_valid(&good, "shipping");
    let mut broken = good.clone();
    broken["operations"]["receive.orders-to-shipping"]["action"] = json!("subscribe");
    assert!(!ASYNCAPI.is_valid(&broken), "a 2.x action was accepted");
    let mut broken = good.clone();
    broken["asyncapi"] = json!("2.6.0");
    assert!(!ASYNCAPI.is_valid(&broken), "another version was accepted");
    let mut broken = good;
    broken["channels"]["outbound"]["bindings"]["amqp"]["exchange"]["type"] = json!("stream");
    assert!(
        !ASYNCAPI.is_valid(&broken),
        "a bad AMQP binding was accepted"
    );
}

#[test]
fn asyncapi_prints_a_valid_document_for_every_shipped_context() {
    for context in CONTEXTS {
        let document = shipped(context, &[]);
        assert_valid(&document, context);
        assert_eq!(document["asyncapi"], "3.0.0");
        assert_eq!(document["info"]["title"], context);
        assert_eq!(
            document["channels"]["outbound"]["address"],
            format!("{context}.out")
        );
        assert_eq!(
            document["channels"]["inbound"]["address"],
            format!("{context}.in")
        );
        assert_eq!(document["servers"]["rabbitmq"]["host"], "localhost:5672");
        let text = document.to_string();
        assert!(!text.contains("contextgate://"), "{context}: {text}");
        // Whoever reads the folder is the operator: every contract shows.
        if context == "customers" {
            assert!(text.contains("customers.CustomerRecordChanged.v1"));
        }
    }
    // The broker of --amqp-url (never its credentials) and the names under --amqp-prefix.
    let document = shipped(
        "orders",
        &[
            "--amqp-url",
            "amqps://gateway:s3cr3t@rabbit.example/prod",
            "--amqp-prefix",
            "staging",
        ],
    );
    assert_valid(&document, "orders under a prefix");
    assert_eq!(
        document["servers"]["rabbitmq"]["host"],
        "rabbit.example:5671"
    );
    assert_eq!(document["servers"]["rabbitmq"]["protocol"], "amqps");
    assert_eq!(
        document["channels"]["route.payments-to-orders"]["address"],
        "staging.route.payments-to-orders.sequencer"
    );
    assert_eq!(
        document["channels"]["outbound"]["bindings"]["amqp"]["exchange"]["vhost"],
        "prod"
    );
    assert!(!document.to_string().contains("s3cr3t"));
}

#[test]
fn asyncapi_refuses_an_unknown_context_a_bad_url_and_a_broken_registry() {
    let registry = repo();
    let root = registry.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--registry", root, "--context", "warehouse"],
            "no context warehouse",
        ),
        (
            vec!["--registry", root, "--context", "Orders"],
            "context name",
        ),
        (
            vec![
                "--registry",
                root,
                "--context",
                "orders",
                "--amqp-url",
                "http://x",
            ],
            "not amqp or amqps",
        ),
    ] {
        let output = asyncapi(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let dir = shipped_registry_copy();
    write(dir.path(), "contracts/orders/OrderPlaced/v3.json", "{");
    let output = asyncapi(&[
        "--registry",
        dir.path().to_str().unwrap(),
        "--context",
        "orders",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("run contextgate check"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const OPERATOR: &str = "asyncapi-operator-token";
const ORDERS: &str = "asyncapi-orders-token";
const CUSTOMERS: &str = "asyncapi-customers-token";
const NOTIFICATIONS: &str = "asyncapi-notifications-token";

#[tokio::test]
async fn get_asyncapi_gives_each_caller_what_it_may_read() {
    let credentials = format!(
        "operator = [{:?}]\n[contexts]\norders = [{:?}]\ncustomers = [{:?}]\nnotifications = [{:?}]\n",
        hash_token(OPERATOR),
        hash_token(ORDERS),
        hash_token(CUSTOMERS),
        hash_token(NOTIFICATIONS),
    );
    let registry = contextgate::registry::load(&repo()).unwrap();
    let base = serve_gateway_with(
        Gateway::new(
            Pipeline::new(Arc::new(registry)),
            Bus::InProcess(InProcessBus::default()),
        ),
        Credentials::parse(&credentials).unwrap(),
    )
    .await;

    // No token, or a wrong one: 401, whatever the context.
    for token in [None, Some("not-a-token")] {
        for context in ["customers", "warehouse"] {
            let (status, content_type, _) =
                get_as(&base, &format!("/v1/contexts/{context}/asyncapi"), token).await;
            assert_eq!(status, 401);
            assert_eq!(content_type, "application/problem+json");
        }
    }
    // An unknown context: 404; a name that is none: 400.
    for (context, expected) in [("warehouse", 404), ("Not_A_Name", 400)] {
        let (status, content_type, body) = get_as(
            &base,
            &format!("/v1/contexts/{context}/asyncapi"),
            Some(ORDERS),
        )
        .await;
        assert_eq!(status, expected, "{body}");
        assert_eq!(content_type, "application/problem+json");
    }

    // The operator gets what the CLI prints (on the in-process bus: the placeholder server).
    for context in CONTEXTS {
        let (status, content_type, body) = get_as(
            &base,
            &format!("/v1/contexts/{context}/asyncapi"),
            Some(OPERATOR),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/json");
        let document: Value = serde_json::from_str(&body).unwrap();
        assert_valid(&document, &format!("{context} for the operator"));
        assert_eq!(document, shipped(context, &[]), "{context}");
    }

    // customers reads its own internal contract in its document; orders and notifications, the
    // hostile readers here, never see it — in customers' document, in their own, anywhere.
    let (_, _, body) = get_as(&base, "/v1/contexts/customers/asyncapi", Some(CUSTOMERS)).await;
    let own: Value = serde_json::from_str(&body).unwrap();
    assert_valid(&own, "customers for customers");
    assert!(
        own["components"]["messages"]
            .get("customers.CustomerRecordChanged.v1")
            .is_some()
    );
    assert!(body.contains("internal_score"), "{body}");
    for token in [ORDERS, NOTIFICATIONS] {
        for context in CONTEXTS {
            let (status, _, body) = get_as(
                &base,
                &format!("/v1/contexts/{context}/asyncapi"),
                Some(token),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let document: Value = serde_json::from_str(&body).unwrap();
            assert_valid(&document, &format!("{context} for {token}"));
            assert!(
                !body.contains("CustomerRecordChanged") && !body.contains("internal_score"),
                "{token} reads customers' internal contract in {context}'s document: {body}"
            );
        }
    }
    // ...and the same for notifications' internal PaymentReceipt, which orders never reads
    // while notifications does in its own document.
    let (_, _, body) = get_as(&base, "/v1/contexts/notifications/asyncapi", Some(ORDERS)).await;
    assert!(!body.contains("PaymentReceipt"), "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seen["operations"]["receive.payments-to-notifications"]["messages"],
        json!([])
    );
    let (_, _, body) = get_as(
        &base,
        "/v1/contexts/notifications/asyncapi",
        Some(NOTIFICATIONS),
    )
    .await;
    assert!(body.contains("notifications.PaymentReceipt.v1"), "{body}");
    // A reader that is no party of a route does not see its translator.
    let (_, _, body) = get_as(&base, "/v1/contexts/shipping/asyncapi", Some(CUSTOMERS)).await;
    assert!(!body.contains("prepare_shipments"), "{body}");
    let (_, _, body) = get_as(&base, "/v1/contexts/shipping/asyncapi", Some(ORDERS)).await;
    assert!(
        body.contains("translator:shipping/prepare_shipments"),
        "{body}"
    );
}

/// Whether the broker has an exchange or queue by that name (a passive declare, on a channel
/// of its own: a missing one closes it).
async fn exists(connection: &Connection, binding: &Value) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let found = match binding["is"].as_str().unwrap() {
        "routingKey" => channel
            .exchange_declare(
                binding["exchange"]["name"].as_str().unwrap().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok(),
        "queue" => channel
            .queue_declare(
                binding["queue"]["name"].as_str().unwrap().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok(),
        other => panic!("binding is {other}"),
    };
    let _ = channel.close(200, "checked".into()).await;
    found
}

#[tokio::test]
async fn on_rabbitmq_the_document_names_what_the_gateway_declared_and_is_enough_to_talk_to_it() {
    // An unordered and an ordered conformist route from up to down (2 shards: few quorum queues).
    let fixture = Fixture::new("conformist", None, "");
    fixture.append(
        r#"
[[routes]]
name = "up-to-down-ordered"
upstream = "up"
downstream = "down"
mode = "conformist"
accepts = ["up/Thing@1"]
ordering_key = "subject"
shards = 2
"#,
    );
    let pipeline = fixture.pipeline();
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix("asyncapi");
    let names = Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    let client = Client::connect(&url).await;
    let bus = Arc::new(AmqpBus::new(broker::settings(&url, &prefix)));
    let gateway = Gateway::new(pipeline, Bus::Amqp(bus.clone()));
    let (stop, stopping) = watch::channel(false);
    let pipelines = gateway.pipelines();
    let running = bus.clone();
    let task = tokio::spawn(async move { running.run(pipelines, stopping).await });
    assert!(
        gateway.settled(Duration::from_secs(20)).await,
        "the gateway did not get ready on RabbitMQ at {url}"
    );
    let base = serve_gateway_with(gateway, Credentials::open()).await;

    let mut documents = std::collections::BTreeMap::new();
    for context in ["up", "down"] {
        let (status, _, body) =
            get_as(&base, &format!("/v1/contexts/{context}/asyncapi"), None).await;
        assert_eq!(status, 200, "{body}");
        let document: Value = serde_json::from_str(&body).unwrap();
        assert_valid(&document, context);
        // The server is the gateway's broker, without its user or password.
        let server = contextgate::asyncapi::Server::from_url(&url).unwrap();
        assert_eq!(document["servers"]["rabbitmq"]["host"], server.host);
        let credentials = url.split_once("://").unwrap().1.split_once('@').unwrap().0;
        assert!(!body.contains(credentials), "{body}");
        documents.insert(context, document);
    }

    // Every channel is an exchange or a queue the gateway declared, by that exact name.
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let mut checked = Vec::new();
    for document in documents.values() {
        for (key, channel) in document["channels"].as_object().unwrap() {
            let binding = &channel["bindings"]["amqp"];
            assert!(
                exists(&connection, binding).await,
                "channel {key} ({}) is not on the broker",
                channel["address"]
            );
            checked.push(channel["address"].as_str().unwrap().to_owned());
        }
    }
    checked.sort();
    let mut expected = vec![
        names.outbound(&context("up")),
        names.inbound(&context("up")),
        names.outbound(&context("down")),
        names.inbound(&context("down")),
        names.route_queue("up-to-down"),
        names.sequencer_queue("up-to-down-ordered"),
    ];
    expected.sort();
    assert_eq!(checked, expected);
    // The check can fail: a name the gateway never declared is not there.
    assert!(
        !exists(
            &connection,
            &json!({"is": "queue", "queue": {"name": format!("{prefix}route.nowhere")}})
        )
        .await
    );

    // down's team binds a queue to its inbound channel with the routing keys of its receive
    // operation; up publishes what its send operation and the message's headers say. The
    // message comes through both routes.
    let down = &documents["down"];
    let receive = &down["operations"]["receive.up-to-down"];
    let inbound = down["channels"]["inbound"]["address"].as_str().unwrap();
    let queue = format!("{prefix}team.down");
    cleanup.queue(&queue);
    client
        .channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for key in receive["bindings"]["amqp"]["cc"].as_array().unwrap() {
        client
            .channel
            .queue_bind(
                queue.as_str().into(),
                inbound.into(),
                key.as_str().unwrap().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let up = &documents["up"];
    let send = &up["operations"]["send.up.Thing"];
    let routing_key = send["bindings"]["amqp"]["cc"][0].as_str().unwrap();
    let message = &up["components"]["messages"]["up.Thing.v1"];
    let mut headers = FieldTable::default();
    let mut put = |name: &str, value: &str| {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    };
    put("cloudEvents_specversion", "1.0");
    put("cloudEvents_id", "e-asyncapi-1");
    put("cloudEvents_source", "/up");
    put("cloudEvents_subject", "k-1");
    for (header, schema) in message["headers"]["properties"].as_object().unwrap() {
        put(header, schema["const"].as_str().unwrap());
    }
    let trait_headers = &up["components"]["messageTraits"]["cloudEventsBinary"]["headers"];
    for required in trait_headers["required"].as_array().unwrap() {
        assert!(
            headers.inner().contains_key(required.as_str().unwrap()),
            "{required} is required and set"
        );
    }
    client
        .publish_stored(
            up["channels"]["outbound"]["address"].as_str().unwrap(),
            routing_key,
            br#"{"id": "t-1", "n": 1}"#,
            BasicProperties::default()
                .with_content_type(message["contentType"].as_str().unwrap().into())
                .with_headers(headers),
        )
        .await;
    let delivered = client.take(&queue, 2, Duration::from_secs(20)).await;
    for message in &delivered {
        assert_eq!(
            broker::header(message, "cloudEvents_type").as_deref(),
            Some("up.Thing")
        );
        assert_eq!(message.delivery.data, br#"{"id": "t-1", "n": 1}"#);
    }
    let extra = client
        .channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap();
    if let Some(extra) = extra {
        extra
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        panic!("a third delivery for two routes");
    }
    let _ = connection.close(200, "done".into()).await;

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the gateway stops")
        .unwrap()
        .unwrap();
    drop(cleanup);
}
