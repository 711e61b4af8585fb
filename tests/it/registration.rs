//! Registering contract versions over HTTP (issue 4, first endpoints): persisted to the registry
//! folder and applied to the running gateway at once; ownership (A2), immutability (A4), names
//! (A5), refusals that leave the folder unchanged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::IntoResponse;

use contextgate::api::auth::{Credentials, hash_token};
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

pub(crate) const OPERATOR: &str = "Bearer operator-secret-1";
pub(crate) const ORDERS: &str = "Bearer orders-secret-2";
pub(crate) const SHIPPING: &str = "Bearer shipping-secret-3";

/// The API over a copy of the shipped registry, with credentials.
pub(crate) async fn registry_api() -> (TempDir, String) {
    let dir = shipped_registry_copy();
    let credentials = credentials();
    let gateway = Gateway::new(
        pipeline(dir.path()),
        Bus::InProcess(InProcessBus::default()),
    );
    let base = serve_gateway_with(gateway, credentials).await;
    (dir, base)
}

/// The operator's, orders' and shipping's tokens.
pub(crate) fn credentials() -> Credentials {
    Credentials::parse(&format!(
        "operator = [{:?}]\n[contexts]\norders = [{:?}]\nshipping = [{:?}]\n",
        hash_token("operator-secret-1"),
        hash_token("orders-secret-2"),
        hash_token("shipping-secret-3")
    ))
    .unwrap()
}

/// Every file of the folder with its bytes.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let key = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

pub(crate) async fn put(base: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = crate::helpers::http()
        .put(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub(crate) async fn get(base: &str, path: &str, token: &str) -> (u16, Value) {
    let response = crate::helpers::http()
        .get(format!("{base}{path}"))
        .header("authorization", token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn order_placed_v3(root: &Path) -> String {
    serde_json::to_string_pretty(&compatible_order_placed_v3(root)).unwrap()
}

const V3: &str = "/v1/contexts/orders/contracts/OrderPlaced/versions/3";

#[tokio::test]
async fn a_new_version_is_written_to_the_folder_and_used_at_once() {
    let (dir, base) = registry_api().await;
    let schema = order_placed_v3(dir.path());
    let event = |id: &str| {
        let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
        event_body("orders/OrderPlaced@3", id, &data.to_string())
    };
    let post = |body: String| {
        crate::helpers::http()
            .post(format!("{base}/v1/contexts/orders/messages"))
            .header("authorization", ORDERS)
            .header("content-type", "application/cloudevents+json")
            .body(body)
            .send()
    };
    assert_eq!(
        post(event("before")).await.unwrap().status(),
        400,
        "v3 is unknown yet"
    );

    let (status, body) = put(&base, V3, Some(ORDERS), &schema).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"contract": "orders/OrderPlaced@3", "created": true})
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("contracts/orders/OrderPlaced/v3.json")).unwrap(),
        schema,
        "the folder holds the schema as it was sent"
    );
    assert_eq!(
        post(event("after")).await.unwrap().status(),
        202,
        "v3 is known now"
    );
    let (status, listed) = get(&base, "/v1/contexts/orders/contracts", ORDERS).await;
    assert_eq!(status, 200);
    assert!(
        listed.as_array().unwrap().iter().any(|contract| {
            contract["name"] == "orders/OrderPlaced" && contract["versions"] == json!([1, 2, 3])
        }),
        "{listed}"
    );
    let (status, read) = get(&base, V3, OPERATOR).await;
    assert_eq!(status, 200);
    assert_eq!(read, serde_json::from_str::<Value>(&schema).unwrap());

    // Immutable: the same again is fine, other content is a conflict.
    let (status, body) = put(&base, V3, Some(ORDERS), &schema).await;
    assert_eq!((status, &body["created"]), (200, &json!(false)));
    let before = snapshot(dir.path());
    let (status, _) = put(&base, V3, Some(ORDERS), r#"{"type":"object"}"#).await;
    assert_eq!(status, 409);
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_schema_cannot_refer_to_another_context_s_internal_contract() {
    let (dir, base) = registry_api().await;
    let before = snapshot(dir.path());
    // customers/CustomerRecordChanged is internal to customers.
    let probe = r#"{"type": "object", "properties": {"record": {"$ref": "../../customers/CustomerRecordChanged/v1.json"}}}"#;
    let (status, answer) = put(
        &base,
        "/v1/contexts/orders/contracts/Probe/versions/1?kind=event",
        Some(ORDERS),
        probe,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["problems"]
            .to_string()
            .contains("internal to customers"),
        "{answer}"
    );
    assert_eq!(snapshot(dir.path()), before, "nothing written");
}

#[tokio::test]
async fn versions_in_paths_are_canonical_decimals_only() {
    let (dir, base) = registry_api().await;
    let schema = order_placed_v3(dir.path());
    let before = snapshot(dir.path());
    for version in ["01", "+1", "001", "1.0", "0x1", " 1", "0", "-1"] {
        let encoded = version.replace('+', "%2B").replace(' ', "%20");
        let path = format!("/v1/contexts/orders/contracts/OrderPlaced/versions/{encoded}");
        let (status, answer) = get(&base, &path, ORDERS).await;
        assert_eq!(status, 400, "GET {version:?}: {answer}");
        let (status, answer) = put(&base, &path, Some(ORDERS), &schema).await;
        assert_eq!(status, 400, "PUT {version:?}: {answer}");
    }
    // Also `+1` as written, unencoded.
    let (status, answer) = get(
        &base,
        "/v1/contexts/orders/contracts/OrderPlaced/versions/+1",
        ORDERS,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = put(
        &base,
        "/v1/contexts/orders/contracts/OrderPlaced/versions/03",
        Some(ORDERS),
        &schema,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(snapshot(dir.path()), before, "nothing written");
    let (status, _) = get(
        &base,
        "/v1/contexts/orders/contracts/OrderPlaced/versions/1",
        ORDERS,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn refusals_leave_the_folder_unchanged() {
    let (dir, base) = registry_api().await;
    let schema = order_placed_v3(dir.path());
    let before = snapshot(dir.path());
    let cases: [(&str, Option<&str>, &str, u16); 10] = [
        (V3, Some(SHIPPING), &schema, 403),
        (V3, None, &schema, 401),
        (V3, Some("Bearer wrong"), &schema, 401),
        (
            "/v1/contexts/orders/contracts/OrderPlaced/versions/5",
            Some(ORDERS),
            &schema,
            422,
        ),
        (V3, Some(ORDERS), r#"{"type": 12}"#, 422),
        (V3, Some(ORDERS), "not json", 422),
        (V3, Some(ORDERS), r#"{"$ref": "http://127.0.0.1:1/x"}"#, 422),
        (
            "/v1/contexts/orders/contracts/..%2F..%2Fetc/versions/1",
            Some(OPERATOR),
            &schema,
            400,
        ),
        (
            "/v1/contexts/orders/contracts/orderplaced/versions/1",
            Some(OPERATOR),
            &schema,
            400,
        ),
        (
            "/v1/contexts/Orders/contracts/OrderPlaced/versions/3",
            Some(OPERATOR),
            &schema,
            400,
        ),
    ];
    for (path, token, body, expected) in cases {
        let (status, answer) = put(&base, path, token, body).await;
        assert_eq!(status, expected, "{path} {token:?}: {answer}");
        if status == 422 {
            assert!(
                !answer["problems"].as_array().unwrap().is_empty(),
                "{answer}"
            );
        }
    }
    let (status, _) = put(
        &base,
        &format!(
            "/v1/contexts/orders/contracts/{}/versions/1?kind=event",
            "A".repeat(10_000)
        ),
        Some(OPERATOR),
        &schema,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(snapshot(dir.path()), before, "nothing was written");
}

#[tokio::test]
async fn a_new_contract_needs_its_kind_and_gets_its_metadata_file() {
    let (dir, base) = registry_api().await;
    let path = "/v1/contexts/shipping/contracts/ParcelLost/versions/1";
    let schema = r#"{"type":"object","required":["parcel_id"],"properties":{"parcel_id":{"type":"string"}}}"#;
    let (status, _) = put(&base, path, Some(SHIPPING), schema).await;
    assert_eq!(status, 422, "no kind given");
    assert!(!dir.path().join("contracts/shipping/ParcelLost").exists());
    let (status, body) = put(&base, &format!("{path}?kind=event"), Some(SHIPPING), schema).await;
    assert_eq!(status, 201, "{body}");
    let metadata = std::fs::read_to_string(
        dir.path()
            .join("contracts/shipping/ParcelLost/contract.toml"),
    )
    .unwrap();
    assert!(metadata.contains("kind = \"event\""), "{metadata}");
    // The folder still passes `contextgate check` as a whole.
    contextgate::registry::load(dir.path()).unwrap();
}

pub(crate) const PREPARE: &str = "/v1/contexts/shipping/translators/prepare_shipments";

pub(crate) async fn put_json(base: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    put(base, path, Some(token), &body.to_string()).await
}

/// orders-to-shipping's outcome for an order shipped to `country`.
pub(crate) async fn shipping_outcome(base: &str, country: &str) -> Value {
    let mut data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    data["shipping_address"]["country"] = json!(country);
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/orders/messages"))
        .header("authorization", ORDERS)
        .header("content-type", "application/cloudevents+json")
        .body(event_body("orders/OrderPlaced@2", "t-1", &data.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let report: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    report["routes"][0]["outcome"].clone()
}

#[tokio::test]
async fn a_replaced_translator_is_checked_like_the_folder_and_used_at_once() {
    let (dir, base) = registry_api().await;
    let (status, mut translator) = get(&base, PREPARE, SHIPPING).await;
    assert_eq!(status, 200, "{translator}");
    assert_eq!(translator["input"], "orders/OrderPlaced@2");
    assert_eq!(shipping_outcome(&base, "US").await, "dead-letter");
    let before = snapshot(dir.path());

    // Serving the US breaks the case that expects an error for it: refused, nothing changes.
    let script = translator["script"]
        .as_str()
        .unwrap()
        .replace("\"IT\"]", "\"IT\", \"US\"]");
    translator["script"] = json!(script);
    let (status, refused) = put_json(&base, PREPARE, SHIPPING, &translator).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["problems"]
            .to_string()
            .contains("no warehouse serves country US"),
        "{refused}"
    );
    assert_eq!(snapshot(dir.path()), before);

    // A script that does not compile: the problem names its line.
    let mut broken = translator.clone();
    broken["script"] = json!("fn translate(data) {\n  let x = ;\n}\n");
    let (status, refused) = put_json(&base, PREPARE, SHIPPING, &broken).await;
    assert_eq!(status, 422);
    assert!(
        refused["problems"]
            .to_string()
            .contains("prepare_shipments.rhai:2"),
        "{refused}"
    );
    // Another context's token.
    let (status, _) = put_json(&base, PREPARE, ORDERS, &translator).await;
    assert_eq!(status, 403);
    assert_eq!(snapshot(dir.path()), before);

    // Without that case the change is taken, written, and used by the next message.
    let cases: Vec<Value> = translator["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case.get("expect_error").is_none())
        .cloned()
        .collect();
    translator["cases"] = json!(cases);
    let (status, applied) = put_json(&base, PREPARE, SHIPPING, &translator).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["content_hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        std::fs::read_to_string(
            dir.path()
                .join("translators/shipping/prepare_shipments.rhai")
        )
        .unwrap(),
        script
    );
    assert_eq!(shipping_outcome(&base, "US").await, "forward");
    contextgate::registry::load(dir.path()).unwrap();
}

#[tokio::test]
async fn a_new_translator_gets_its_three_files() {
    let (dir, base) = registry_api().await;
    let body = json!({
        "input": "orders/OrderPlaced@2",
        "output": "shipping/PrepareShipment@1",
        "description": "Everything from one warehouse.",
        "script": "fn translate(data) { #{ shipment_id: data.order_id + \"-ams\", order_id: data.order_id, warehouse: \"ams\", items: data.lines.map(|l| #{ sku: l.sku, quantity: l.quantity }), address: data.shipping_address } }",
        "cases": [],
    });
    let (status, created) = put_json(
        &base,
        "/v1/contexts/shipping/translators/one_warehouse",
        SHIPPING,
        &body,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    for suffix in [".rhai", ".toml", ".cases.json"] {
        assert!(
            dir.path()
                .join(format!("translators/shipping/one_warehouse{suffix}"))
                .exists()
        );
    }
    let (status, listed) = get(&base, "/v1/contexts/shipping/translators", SHIPPING).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let (status, _) = put_json(
        &base,
        "/v1/contexts/shipping/translators/One-Warehouse",
        SHIPPING,
        &body,
    )
    .await;
    assert_eq!(status, 400, "names are lowercase slugs");
}

#[tokio::test]
async fn a_translator_put_back_unchanged_leaves_its_files_byte_identical() {
    let (dir, base) = registry_api().await;
    let before = snapshot(dir.path());
    let (status, translator) = get(&base, PREPARE, SHIPPING).await;
    assert_eq!(status, 200, "{translator}");
    let (status, answer) = put_json(&base, PREPARE, SHIPPING, &translator).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(snapshot(dir.path()), before, "every file as it was");

    // A real change is written.
    let mut changed = translator.clone();
    changed["cases"][0]["name"] = json!("renamed case");
    let (status, answer) = put_json(&base, PREPARE, SHIPPING, &changed).await;
    assert_eq!(status, 200, "{answer}");
    let after = snapshot(dir.path());
    let cases = "translators/shipping/prepare_shipments.cases.json";
    assert_ne!(after[cases], before[cases]);
    assert!(String::from_utf8_lossy(&after[cases]).contains("renamed case"));
    for (file, bytes) in &before {
        if file != cases {
            assert_eq!(&after[file], bytes, "{file} unchanged");
        }
    }
}

#[tokio::test]
async fn a_dry_run_returns_the_verdict_and_publishes_nothing() {
    let (_dir, base) = registry_api().await;
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    let body = event_body("orders/OrderPlaced@2", "d-1", &data.to_string());
    let dry_run = |route: &str, token: Option<&'static str>, body: String| {
        let mut request = crate::helpers::http()
            .post(format!("{base}/v1/routes/{route}/dry-run"))
            .header("content-type", "application/cloudevents+json")
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        request.send()
    };
    for token in [ORDERS, SHIPPING, OPERATOR] {
        let response = dry_run("orders-to-shipping", Some(token), body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let verdict: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(verdict["outcome"], "forward", "{verdict}");
        assert_eq!(verdict["messages"].as_array().unwrap().len(), 3);
    }
    let mut broken = data.clone();
    broken["lines"] = json!("not a list");
    let response = dry_run(
        "orders-to-shipping",
        Some(SHIPPING),
        event_body("orders/OrderPlaced@2", "d-2", &broken.to_string()),
    )
    .await
    .unwrap();
    let verdict: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(verdict["outcome"], "dead-letter");
    assert_eq!(verdict["failure"]["stage"], "validate-in");
    let statuses = [
        dry_run("payments-to-orders", Some(SHIPPING), body.clone())
            .await
            .unwrap()
            .status(),
        dry_run("orders-to-shipping", None, body.clone())
            .await
            .unwrap()
            .status(),
        dry_run("no-such-route", Some(OPERATOR), body.clone())
            .await
            .unwrap()
            .status(),
    ];
    assert_eq!(statuses.map(|status| status.as_u16()), [403, 401, 404]);
    let (_, inbox) = get(&base, "/v1/contexts/shipping/inbox", SHIPPING).await;
    assert_eq!(inbox, json!([]), "a dry run publishes nothing");
}

/// The customers context's look-up service, started by the test: `c-404` is unknown, every other
/// customer has a private record. It counts the requests it answers.
async fn spawn_customers() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/customers/{id}",
        axum::routing::get(
            move |axum::extract::Path(id): axum::extract::Path<String>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    if id == "c-404" {
                        return axum::http::StatusCode::NOT_FOUND.into_response();
                    }
                    axum::Json(json!({
                        "customer_id": id,
                        "display_name": "Ada Private",
                        "email": "ada.private@example.com"
                    }))
                    .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

#[tokio::test]
async fn the_upstream_s_dry_run_of_an_enrich_route_discloses_no_look_up_data() {
    let (customers, hits) = spawn_customers().await;
    let dir = shipped_registry_copy();
    let config = std::fs::read_to_string(dir.path().join("contextgate.toml"))
        .unwrap()
        .replace("http://127.0.0.1:9100/", &customers);
    std::fs::write(dir.path().join("contextgate.toml"), config).unwrap();
    let credentials = Credentials::parse(&format!(
        "operator = [{:?}]\n[contexts]\norders = [{:?}]\npayments = [{:?}]\nnotifications = [{:?}]\n",
        hash_token("operator-secret-1"),
        hash_token("orders-secret-2"),
        hash_token("payments-secret-4"),
        hash_token("notifications-secret-5"),
    ))
    .unwrap();
    let gateway = Gateway::new(
        pipeline(dir.path()),
        Bus::InProcess(InProcessBus::default()),
    );
    let base = serve_gateway_with(gateway, credentials).await;
    let dry_run = |token: &'static str, customer_id: &str, amount: i64| {
        let mut data = example("payments/PaymentCaptured/examples/v1/eur-order.json");
        data["customer_id"] = json!(customer_id);
        data["amount_minor"] = json!(amount);
        let request = crate::helpers::http()
            .post(format!(
                "{base}/v1/routes/payments-to-notifications/dry-run"
            ))
            .header("authorization", token)
            .header("content-type", "application/cloudevents+json")
            .body(event_body(
                "payments/PaymentCaptured@1",
                "d-1",
                &data.to_string(),
            ));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        }
    };

    // The downstream (the route's owner) sees the whole verdict, look-up data included.
    let (status, owner) = dry_run("Bearer notifications-secret-5", "c-42", 100).await;
    assert_eq!(status, 200, "{owner}");
    assert!(owner.contains("ada.private@example.com"), "{owner}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The upstream learns that the route takes its input, and nothing of the look-ups: no
    // record, not even whether the customer exists (no look-up is made).
    let (status, known) = dry_run("Bearer payments-secret-4", "c-43", 100).await;
    let (_, unknown) = dry_run("Bearer payments-secret-4", "c-404", 100).await;
    assert_eq!(status, 200, "{known}");
    let known: Value = serde_json::from_str(&known).unwrap();
    let unknown: Value = serde_json::from_str(&unknown).unwrap();
    assert_eq!(known["outcome"], "accepted", "{known}");
    assert_eq!(known, unknown);
    for text in [known.to_string(), unknown.to_string()] {
        assert!(
            !text.contains("Ada Private") && !text.contains("ada.private"),
            "{text}"
        );
        assert!(!text.contains("404"), "{text}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no look-up for the upstream"
    );

    // Its own input's problems it still sees.
    let (status, invalid) = dry_run("Bearer payments-secret-4", "c-43", 0).await;
    assert_eq!(status, 200, "{invalid}");
    let invalid: Value = serde_json::from_str(&invalid).unwrap();
    assert_eq!(invalid["outcome"], "dead-letter", "{invalid}");
    assert_eq!(invalid["failure"]["stage"], "validate-in", "{invalid}");

    // The operator sees everything; a third context nothing.
    let (status, operator) = dry_run("Bearer operator-secret-1", "c-404", 100).await;
    assert_eq!(status, 200, "{operator}");
    assert!(operator.contains("404"), "{operator}");
    let (status, _) = dry_run("Bearer orders-secret-2", "c-42", 100).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn an_incompatible_version_is_refused_with_the_checker_s_report_unless_accepted() {
    let (dir, base) = registry_api().await;
    let text =
        std::fs::read_to_string(dir.path().join("contracts/orders/OrderPlaced/v2.json")).unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    // A new required property: documents of v2 lack it.
    schema["properties"]["gift"] = json!({"type": "boolean"});
    schema["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("gift"));
    let schema = schema.to_string();
    let before = snapshot(dir.path());
    let (status, refused) = put(&base, V3, Some(ORDERS), &schema).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["compatibility"]["compatible"], false, "{refused}");
    assert!(
        refused["problems"]
            .to_string()
            .contains("REQUIRED_PROPERTY_ADDED"),
        "{refused}"
    );
    let example = &refused["compatibility"]["counterexample"];
    assert_eq!(example["valid_under"], 2, "{refused}");
    assert_eq!(example["rejected_by"], 3, "{refused}");
    assert!(example["document"].get("gift").is_none(), "{refused}");
    assert_eq!(snapshot(dir.path()), before, "nothing was written");

    // On purpose, with a reason: taken, and the reason recorded in the contract's metadata.
    let (status, body) = put(
        &base,
        &format!("{V3}?accept_breaking=Gift%20wrapping%20is%20now%20mandatory"),
        Some(ORDERS),
        &schema,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let metadata = std::fs::read_to_string(
        dir.path()
            .join("contracts/orders/OrderPlaced/contract.toml"),
    )
    .unwrap();
    assert!(metadata.contains("[accept_breaking]"), "{metadata}");
    assert!(
        metadata.contains("v3 = \"Gift wrapping is now mandatory\""),
        "{metadata}"
    );
    assert!(
        metadata.contains("description = \"A customer placed an order"),
        "the rest kept"
    );
    contextgate::registry::load(dir.path()).unwrap();
}
