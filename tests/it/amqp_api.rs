//! Registration and dead letters over HTTP with the gateway on the real RabbitMQ (issue 4): a
//! route registered over HTTP carries the next message without a restart; a translator replaced
//! while messages flow loses none and doubles none; dead letters listed, deleted and redriven
//! after a fix, straight from the broker's dead-letter streams.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;
use contextgate::bus::{AmqpBus, Bus};
use contextgate::gateway::Gateway;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{self, Cleanup, Client, binary_event};
use crate::helpers::*;
use crate::registration::{OPERATOR, ORDERS, PREPARE, SHIPPING, credentials};
use crate::routes::{kept_header_names, post_us_order_with_request_headers};

const WAIT: Duration = Duration::from_secs(20);

/// A gateway on RabbitMQ over a copy of the shipped registry, with its HTTP API.
struct Live {
    _dir: TempDir,
    base: String,
    client: Client,
    names: Names,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    cleanup: Cleanup,
}

async fn live(test: &str, extra_routes: &[&str]) -> Live {
    let dir = shipped_registry_copy();
    let pipeline = pipeline(dir.path());
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix(test);
    let names = Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    for route in extra_routes {
        cleanup.queue(&names.route_queue(route));
        cleanup.queue(&names.dead_letter_queue(Some(route)));
    }
    let client = Client::connect(&url).await;
    let bus = Arc::new(AmqpBus::new(broker::settings(&url, &prefix)));
    let gateway = Gateway::new(pipeline, Bus::Amqp(bus.clone()));
    let (stop, stopping) = watch::channel(false);
    let pipelines = gateway.pipelines();
    let running = bus.clone();
    let task = tokio::spawn(async move { running.run(pipelines, stopping).await });
    assert!(
        gateway.settled(WAIT).await,
        "the gateway did not get ready on RabbitMQ at {url}"
    );
    let base = serve_gateway_with(gateway, credentials()).await;
    Live {
        _dir: dir,
        base,
        client,
        names,
        stop,
        task,
        cleanup,
    }
}

impl Live {
    /// A queue that receives everything delivered to `context`.
    async fn inbox(&self, context: &str) -> String {
        let queue = format!("{}inbox.{context}", self.names.prefix());
        self.cleanup.queue(&queue);
        self.client
            .subscribe(&queue, &self.names.inbound(&broker::context(context)))
            .await;
        queue
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = crate::helpers::http()
            .request(method, format!("{}{path}", self.base))
            .header("authorization", token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// How many dead letters orders-to-shipping's stream keeps, read straight from the broker
    /// once it is quiet.
    async fn kept_dead_letters(&self) -> usize {
        let quiet = Duration::from_millis(500);
        let stream = self.names.dead_letter_queue(Some("orders-to-shipping"));
        broker::kept_dead_letters(&broker::amqp_url(), &stream, 0, quiet, quiet)
            .await
            .len()
    }

    async fn publish_order(&self, id: &str, country: &str) {
        let mut data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
        data["shipping_address"]["country"] = json!(country);
        self.client
            .publish_stored(
                &self.names.outbound(&broker::context("orders")),
                "orders.OrderPlaced",
                data.to_string().as_bytes(),
                binary_event("orders/OrderPlaced@2", id),
            )
            .await;
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap().unwrap();
    }
}

/// shipping/prepare_shipments as stored, changed by `edit` and then put back over HTTP.
async fn replace_translator(live: &Live, edit: impl FnOnce(&mut Value)) {
    let (status, mut translator) = live.call(Method::GET, PREPARE, SHIPPING, None).await;
    assert_eq!(status, 200, "{translator}");
    edit(&mut translator);
    let (status, answer) = live
        .call(Method::PUT, PREPARE, SHIPPING, Some(&translator))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn a_route_registered_over_http_carries_the_next_message_without_a_restart() {
    let live = live("api-route", &["payments-to-shipping"]).await;
    let inbox = live.inbox("shipping").await;
    let route = json!({
        "upstream": "payments",
        "downstream": "shipping",
        "mode": "conformist",
        "accepts": ["payments/PaymentCaptured@1"],
    });
    let (status, created) = live
        .call(
            Method::PUT,
            "/v1/routes/payments-to-shipping",
            SHIPPING,
            Some(&route),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    let data = example("payments/PaymentCaptured/examples/v1/eur-order.json");
    let response = crate::helpers::http()
        .post(format!("{}/v1/contexts/payments/messages", live.base))
        .header("authorization", OPERATOR)
        .header("content-type", "application/cloudevents+json")
        .body(event_body(
            "payments/PaymentCaptured@1",
            "p-1",
            &data.to_string(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let report: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        report.to_string().contains("payments-to-shipping"),
        "{report}"
    );
    let delivered = live.client.take(&inbox, 1, WAIT).await;
    assert_eq!(
        broker::header(&delivered[0], "cloudEvents_type").as_deref(),
        Some("payments.PaymentCaptured")
    );

    // Deleted: its consumers stop; its queue stays with what it holds, for the operator.
    let (status, _) = live
        .call(
            Method::DELETE,
            "/v1/routes/payments-to-shipping",
            SHIPPING,
            None,
        )
        .await;
    assert_eq!(status, 204);
    live.stop().await;
}

#[tokio::test]
async fn a_translator_replaced_while_messages_flow_loses_none_and_doubles_none() {
    let live = live("api-swap", &[]).await;
    let inbox = live.inbox("shipping").await;
    // How many shipments one order becomes.
    let dir = shipped_registry_copy();
    let verdicts = pipeline(dir.path())
        .process(
            &context("orders"),
            &event(
                "orders/OrderPlaced@2",
                "probe",
                &example("orders/OrderPlaced/examples/v2/store-two-warehouses.json"),
            ),
        )
        .await;
    let per_order = forwarded(&on_route(verdicts, "orders-to-shipping")).len();
    assert!(per_order >= 1);

    const N: usize = 400;
    let publishing = async {
        for i in 0..N {
            live.publish_order(&format!("o-{i}"), "DE").await;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let replacing = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for round in 0..3 {
            replace_translator(&live, |translator| {
                let script = translator["script"].as_str().unwrap();
                translator["script"] = json!(format!("// replaced, round {round}\n{script}"));
            })
            .await;
        }
    };
    tokio::join!(publishing, replacing);

    let outputs = live.client.take(&inbox, N * per_order, WAIT * 3).await;
    let ids: BTreeSet<String> = outputs
        .iter()
        .map(|message| broker::header(message, "cloudEvents_id").expect("an id"))
        .collect();
    assert_eq!(ids.len(), N * per_order, "no output twice");
    live.client
        .assert_empty(&inbox, Duration::from_millis(500))
        .await;
    assert_eq!(live.kept_dead_letters().await, 0, "nothing dead-lettered");
    live.stop().await;
}

#[tokio::test]
async fn dead_letters_are_read_deleted_and_redriven_from_the_broker_over_http() {
    let live = live("api-dead", &[]).await;
    let inbox = live.inbox("shipping").await;
    let listing = "/v1/routes/orders-to-shipping/dead-letters";
    // No warehouse serves the US: three orders become dead letters.
    for i in 0..3 {
        live.publish_order(&format!("us-{i}"), "US").await;
    }
    let deadline = Instant::now() + WAIT;
    let kept = loop {
        let (status, listed) = live.call(Method::GET, listing, SHIPPING, None).await;
        assert_eq!(status, 200, "{listed}");
        if listed["total"] == 3 || Instant::now() > deadline {
            break listed["dead_letters"].as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[0]["failure"]["stage"], "translate");
    assert_eq!(kept[0]["route"], "orders-to-shipping");
    assert!(
        kept[0]["input"]["body"]
            .as_str()
            .unwrap()
            .contains("\"US\"")
    );
    assert!(
        kept[0]["input"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|pair| !pair[0].as_str().unwrap().starts_with("x-gateway-")),
        "the input as it arrived: {}",
        kept[0]
    );
    // Reading gives nothing away: all three are still there, in order, and another context sees none.
    let (_, again) = live.call(Method::GET, listing, SHIPPING, None).await;
    let ids = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(again["dead_letters"].as_array().unwrap()), ids(&kept));
    let (status, _) = live.call(Method::GET, listing, ORDERS, None).await;
    assert_eq!(status, 403);

    let first = format!("{listing}/{}", kept[0]["id"].as_str().unwrap());
    let (status, one) = live.call(Method::GET, &first, SHIPPING, None).await;
    assert_eq!((status, &one["id"]), (200, &kept[0]["id"]));
    let (status, _) = live.call(Method::DELETE, &first, SHIPPING, None).await;
    assert_eq!(status, 204);
    let (status, _) = live.call(Method::GET, &first, SHIPPING, None).await;
    assert_eq!(status, 404);
    // The two others are kept, in order.
    let (_, left) = live.call(Method::GET, listing, SHIPPING, None).await;
    assert_eq!(left["total"], 2);
    assert_eq!(
        ids(left["dead_letters"].as_array().unwrap()),
        ids(&kept[1..])
    );

    // The fix: the translator serves the US. Then one, then the rest, are redriven.
    replace_translator(&live, crate::routes::serve_the_us).await;
    let second = format!("{listing}/{}/redrive", kept[1]["id"].as_str().unwrap());
    let (status, redriven) = live.call(Method::POST, &second, SHIPPING, None).await;
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["outcomes"], json!({"queued": 1}));
    assert_eq!(redriven["remaining"], 1);
    let (status, redriven) = live
        .call(Method::POST, &format!("{listing}/redrive"), SHIPPING, None)
        .await;
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["outcomes"], json!({"queued": 1}));
    assert_eq!(redriven["remaining"], 0);

    // Both went through the fixed translator to shipping.
    let outputs = live.client.take(&inbox, 2, WAIT).await;
    for output in &outputs {
        assert_eq!(
            broker::header(output, "cloudEvents_type").as_deref(),
            Some("shipping.PrepareShipment")
        );
    }
    let (_, left) = live.call(Method::GET, listing, SHIPPING, None).await;
    assert_eq!(left["total"], 0, "{left}");
    assert_eq!(
        live.kept_dead_letters().await,
        0,
        "every dead letter settled in the stream"
    );
    live.stop().await;
}

#[tokio::test]
async fn a_dead_letter_posted_over_http_keeps_no_credentials_on_the_broker() {
    let live = live("api-dead-headers", &[]).await;
    post_us_order_with_request_headers(&live.base, "us-headers-1").await;
    let listing = "/v1/routes/orders-to-shipping/dead-letters";
    let deadline = Instant::now() + WAIT;
    let kept = loop {
        let (status, listed) = live.call(Method::GET, listing, SHIPPING, None).await;
        assert_eq!(status, 200, "{listed}");
        let page = listed["dead_letters"].as_array().unwrap();
        if !page.is_empty() || Instant::now() > deadline {
            break page.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["failure"]["stage"], "translate");
    let names = kept_header_names(&kept[0]);
    for described in [
        "cloudevents_id",
        "cloudevents_type",
        "cloudevents_tenant",
        "traceparent",
    ] {
        assert!(
            names.iter().any(|name| name == described),
            "{described} is kept: {:#}",
            kept[0]
        );
    }
    live.stop().await;
}
