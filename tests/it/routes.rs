//! Routes and dead letters over HTTP on the in-process bus (issue 4): create, replace and delete
//! routes in `contextgate.toml` without losing its comments; `If-Match` for concurrent updates
//! (A11); dead letters listed, read, redriven after a fix and deleted; the ownership matrix over
//! every write endpoint (A2, A3); the registry folder watched for the operator's edits.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::registration::{
    OPERATOR, ORDERS, PREPARE, SHIPPING, get, put_json, registry_api, shipping_outcome, snapshot,
};

/// One request: status, body (JSON or null), ETag.
async fn call(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut request = crate::helpers::http().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    if let Some(body) = body {
        if !headers.iter().any(|(name, _)| *name == "content-type") {
            request = request.header("content-type", "application/json");
        }
        request = request.body(body.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        etag,
    )
}

/// Shipping takes payments' PaymentCaptured as it is.
fn payments_to_shipping(description: &str) -> Value {
    json!({
        "description": description,
        "upstream": "payments",
        "downstream": "shipping",
        "mode": "conformist",
        "accepts": ["payments/PaymentCaptured@1"],
    })
}

const NEW_ROUTE: &str = "/v1/routes/payments-to-shipping";

async fn post_payment_captured(base: &str) -> Value {
    let data = example("payments/PaymentCaptured/examples/v1/eur-order.json");
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/payments/messages"))
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
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn routes_of(report: &Value) -> Vec<String> {
    report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| route["route"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_route_is_created_replaced_and_deleted_over_http_keeping_the_file_s_comments() {
    let (dir, base) = registry_api().await;
    assert!(
        !routes_of(&post_payment_captured(&base).await).contains(&"payments-to-shipping".into())
    );

    let body = payments_to_shipping("Shipping starts packing once paid.");
    let (status, created, etag) = call(
        &base,
        Method::PUT,
        NEW_ROUTE,
        Some(SHIPPING),
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "payments-to-shipping");
    let etag = etag.expect("a created route has an ETag");
    assert!(
        routes_of(&post_payment_captured(&base).await).contains(&"payments-to-shipping".into())
    );
    let (_, inbox) = get(&base, "/v1/contexts/shipping/inbox", SHIPPING).await;
    assert_eq!(inbox[0]["type"], "payments.PaymentCaptured", "{inbox}");

    let config = std::fs::read_to_string(dir.path().join("contextgate.toml")).unwrap();
    assert!(
        config.starts_with("# contextgate demo registry"),
        "comments kept"
    );
    assert!(config.contains("# Conformist with a command: orders sends AuthorizePayment"));
    assert!(config.contains("name = \"payments-to-shipping\""));

    // Read back as stored, with the same tag; listed for its owner, not for another context.
    let (status, read, read_etag) =
        call(&base, Method::GET, NEW_ROUTE, Some(SHIPPING), None, &[]).await;
    assert_eq!((status, read_etag.as_deref()), (200, Some(etag.as_str())));
    assert_eq!(read["accepts"], json!(["payments/PaymentCaptured@1"]));
    let (_, listed) = get(&base, "/v1/routes", SHIPPING).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "payments-to-shipping")
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["downstream"] == "shipping")
    );
    let (_, listed) = get(&base, "/v1/routes", ORDERS).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["downstream"] == "orders")
    );
    let (status, _, _) = call(&base, Method::GET, NEW_ROUTE, Some(ORDERS), None, &[]).await;
    assert_eq!(status, 403);

    // Replace: a stale tag is refused, the current one is taken.
    let replaced = payments_to_shipping("Packing starts when the money is in.");
    let stale = [("if-match", "\"0000\"")];
    let (status, _, _) = call(
        &base,
        Method::PUT,
        NEW_ROUTE,
        Some(SHIPPING),
        Some(&replaced),
        &stale,
    )
    .await;
    assert_eq!(status, 412);
    let current = [("if-match", etag.as_str())];
    let (status, answer, new_etag) = call(
        &base,
        Method::PUT,
        NEW_ROUTE,
        Some(SHIPPING),
        Some(&replaced),
        &current,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_ne!(new_etag.as_deref(), Some(etag.as_str()));
    // Create-only on an existing route.
    let (status, _, _) = call(
        &base,
        Method::PUT,
        NEW_ROUTE,
        Some(SHIPPING),
        Some(&replaced),
        &[("if-none-match", "*")],
    )
    .await;
    assert_eq!(status, 412);

    let (status, _, _) = call(&base, Method::DELETE, NEW_ROUTE, Some(SHIPPING), None, &[]).await;
    assert_eq!(status, 204);
    assert!(
        !routes_of(&post_payment_captured(&base).await).contains(&"payments-to-shipping".into())
    );
    let (status, _, _) = call(&base, Method::GET, NEW_ROUTE, Some(SHIPPING), None, &[]).await;
    assert_eq!(status, 404);
    let config = std::fs::read_to_string(dir.path().join("contextgate.toml")).unwrap();
    assert!(!config.contains("payments-to-shipping"));
    contextgate::registry::load(dir.path()).unwrap();
}

#[tokio::test]
async fn routes_that_break_the_rules_are_refused_and_change_nothing() {
    let (dir, base) = registry_api().await;
    let before = snapshot(dir.path());
    let with = |patch: Value| {
        let mut body = payments_to_shipping("x");
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let cases: [(&str, &str, Value, u16); 9] = [
        // Another context's route (A3): consuming as orders, or taking over orders' route.
        (
            NEW_ROUTE,
            SHIPPING,
            with(json!({"downstream": "orders"})),
            403,
        ),
        (
            "/v1/routes/payments-to-orders",
            SHIPPING,
            payments_to_shipping("x"),
            403,
        ),
        // What does not exist, or may not be read.
        (
            NEW_ROUTE,
            SHIPPING,
            with(json!({"accepts": ["payments/Nope@1"]})),
            422,
        ),
        (
            NEW_ROUTE,
            SHIPPING,
            with(json!({"upstream": "nowhere"})),
            422,
        ),
        (
            NEW_ROUTE,
            SHIPPING,
            with(
                json!({"accepts": ["customers/CustomerRecordChanged@1"], "upstream": "customers"}),
            ),
            422,
        ),
        // An open-host route must use the upstream's translator, never its own.
        (
            NEW_ROUTE,
            SHIPPING,
            with(
                json!({"mode": "open-host", "translator": "shipping/prepare_shipments", "accepts": []}),
            ),
            422,
        ),
        // Shapes and names.
        (NEW_ROUTE, SHIPPING, with(json!({"surprise": true})), 422),
        (
            NEW_ROUTE,
            SHIPPING,
            with(json!({"name": "another-name"})),
            422,
        ),
        (
            "/v1/routes/Payments-To-Shipping",
            SHIPPING,
            payments_to_shipping("x"),
            400,
        ),
    ];
    for (path, token, body, expected) in cases {
        let (status, answer, _) =
            call(&base, Method::PUT, path, Some(token), Some(&body), &[]).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        if status == 422 {
            assert!(
                !answer["problems"].as_array().unwrap().is_empty(),
                "{answer}"
            );
        }
    }
    // Enrich look-ups only where the operator allows (A10): not the admin API, not metadata.
    for url in [
        "http://127.0.0.1:8080/v1/routes",
        "http://169.254.169.254/latest/meta-data/",
    ] {
        let body = json!({
            "upstream": "payments", "downstream": "notifications", "mode": "enrich",
            "accepts": ["payments/PaymentCaptured@1"], "output": "notifications/PaymentReceipt@1",
            "lookups": [{"name": "customer", "url": url}],
        });
        let (status, answer, _) = call(
            &base,
            Method::PUT,
            "/v1/routes/sneaky",
            Some(OPERATOR),
            Some(&body),
            &[],
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer.to_string().contains("lookup_allow"), "{answer}");
    }
    for path in [
        "/v1/routes/..%2F..%2Fetc",
        "/v1/routes/a%00b",
        "/v1/routes/%2e%2e%2fetc",
        // A Cyrillic "о" that looks like the Latin one, and a case variant.
        "/v1/routes/%D0%BErders-to-shipping",
        "/v1/routes/Orders-to-shipping",
        &format!("/v1/routes/{}", "a".repeat(10_000)),
    ] {
        let (status, _, _) = call(&base, Method::DELETE, path, Some(OPERATOR), None, &[]).await;
        assert_eq!(status, 400, "{path}");
    }
    assert_eq!(snapshot(dir.path()), before, "nothing was written");
}

#[tokio::test]
async fn two_concurrent_updates_of_one_route_never_mix() {
    let (dir, base) = registry_api().await;
    let (status, _, etag) = call(
        &base,
        Method::PUT,
        NEW_ROUTE,
        Some(SHIPPING),
        Some(&payments_to_shipping("first")),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let etag = etag.unwrap();
    let bodies = [
        payments_to_shipping("from team member A"),
        payments_to_shipping("from team member B"),
    ];
    let if_match = [("if-match", etag.as_str())];
    let answers = futures_util::future::join_all(bodies.iter().map(|body| {
        call(
            &base,
            Method::PUT,
            NEW_ROUTE,
            Some(SHIPPING),
            Some(body),
            &if_match,
        )
    }))
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "one wins, the other is told");
    let winner = answers
        .iter()
        .position(|(status, _, _)| *status == 200)
        .unwrap();
    let (_, stored, _) = call(&base, Method::GET, NEW_ROUTE, Some(SHIPPING), None, &[]).await;
    assert_eq!(stored["description"], bodies[winner]["description"]);
    contextgate::registry::load(dir.path()).unwrap();
}

/// The fix of shipping's translator (as `GET` gives it) that the dead-letter tests make: it
/// serves the US, and its case expecting the US to fail goes.
pub(crate) fn serve_the_us(translator: &mut Value) {
    let script = translator["script"]
        .as_str()
        .unwrap()
        .replace("\"IT\"]", "\"IT\", \"US\"]");
    translator["script"] = json!(script);
    let cases: Vec<Value> = translator["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case.get("expect_error").is_none())
        .cloned()
        .collect();
    translator["cases"] = json!(cases);
}

/// orders-to-shipping's dead letters as shipping reads them.
async fn dead_letters(base: &str) -> Vec<Value> {
    let (status, listed) = get(base, "/v1/routes/orders-to-shipping/dead-letters", SHIPPING).await;
    assert_eq!(status, 200, "{listed}");
    let kept = listed["dead_letters"].as_array().unwrap().clone();
    assert_eq!(listed["total"], kept.len(), "one page holds them all");
    kept
}

/// Credentials a client sends with its request, which must never reach a dead letter.
pub(crate) const REQUEST_SECRETS: [&str; 3] = ["orders-secret-2", "session=cookie-7", "api-key-9"];

/// Posts, as orders and in binary mode, an order to the US (a dead letter on
/// orders-to-shipping), with credentials, a cookie, an API key, a hop-by-hop header and trace
/// context among its HTTP headers.
pub(crate) async fn post_us_order_with_request_headers(base: &str, id: &str) {
    let mut data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    data["shipping_address"]["country"] = json!("US");
    let response = crate::helpers::http()
        .post(format!("{base}/v1/contexts/orders/messages"))
        .header("authorization", ORDERS)
        .header("cookie", REQUEST_SECRETS[1])
        .header("x-api-key", REQUEST_SECRETS[2])
        .header(
            "proxy-authorization",
            format!("Basic {}", REQUEST_SECRETS[2]),
        )
        .header("te", "trailers")
        .header("forwarded", "for=192.0.2.60")
        .header("traceparent", TRACEPARENT)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/orders")
        .header("ce-type", "orders.OrderPlaced")
        .header("ce-dataschema", "contextgate:orders/OrderPlaced@2")
        .header("ce-tenant", "acme")
        .header("content-type", "application/json")
        .body(data.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
}

pub(crate) const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The names of a dead letter's kept input headers, lowercase, after checking that no request
/// secret appears anywhere in it.
pub(crate) fn kept_header_names(dead_letter: &Value) -> Vec<String> {
    let text = dead_letter.to_string();
    for secret in REQUEST_SECRETS {
        assert!(!text.contains(secret), "{secret} leaked: {dead_letter:#}");
    }
    let names: Vec<String> = dead_letter["input"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for request_header in [
        "authorization",
        "cookie",
        "x-api-key",
        "proxy-authorization",
        "te",
        "forwarded",
        "host",
        "user-agent",
        "accept",
        "content-length",
    ] {
        assert!(
            !names.iter().any(|name| name == request_header),
            "{request_header} kept: {dead_letter:#}"
        );
    }
    names
}

#[tokio::test]
async fn a_dead_letter_posted_over_http_keeps_what_describes_the_message_and_no_credentials() {
    let (_dir, base) = registry_api().await;
    post_us_order_with_request_headers(&base, "us-1").await;

    let kept = dead_letters(&base).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let names = kept_header_names(&kept[0]);
    for described in [
        "ce-id",
        "ce-type",
        "ce-dataschema",
        "ce-tenant",
        "traceparent",
    ] {
        assert!(
            names.iter().any(|name| name == described),
            "{described} is kept: {:#}",
            kept[0]
        );
    }
    assert_eq!(kept[0]["input"]["content_type"], "application/json");

    // What is kept is enough: after the fix, the redriven input goes through.
    let (_, mut translator) = get(&base, PREPARE, SHIPPING).await;
    serve_the_us(&mut translator);
    let (status, _) = put_json(&base, PREPARE, SHIPPING, &translator).await;
    assert_eq!(status, 200);
    let (status, redriven, _) = call(
        &base,
        Method::POST,
        "/v1/routes/orders-to-shipping/dead-letters/redrive",
        Some(SHIPPING),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["outcomes"], json!({"forward": 1}));
}

#[tokio::test]
async fn dead_letters_are_listed_a_page_at_a_time_after_a_cursor() {
    let (_dir, base) = registry_api().await;
    for _ in 0..5 {
        assert_eq!(shipping_outcome(&base, "US").await, "dead-letter");
    }
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/v1/routes/orders-to-shipping/dead-letters?max=2".to_owned();
    loop {
        let (status, page) = get(&base, &path, SHIPPING).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 5, "every page counts all: {page}");
        let kept = page["dead_letters"].as_array().unwrap();
        sizes.push(kept.len());
        ids.extend(
            kept.iter()
                .map(|d| d["id"].as_str().unwrap().parse::<u64>().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/v1/routes/orders-to-shipping/dead-letters?max=2&after={next}")
            }
            None => break,
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first, none twice: {ids:?}"
    );
    let (status, _) = get(
        &base,
        "/v1/routes/orders-to-shipping/dead-letters?after=not..an-id",
        SHIPPING,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn dead_letters_are_listed_redriven_after_a_fix_and_deleted() {
    let (_dir, base) = registry_api().await;
    // No warehouse serves the US: two orders fail in the translator.
    assert_eq!(shipping_outcome(&base, "US").await, "dead-letter");
    assert_eq!(shipping_outcome(&base, "US").await, "dead-letter");
    let kept = dead_letters(&base).await;
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["route"], "orders-to-shipping");
    assert_eq!(kept[0]["failure"]["stage"], "translate");
    assert!(
        kept[0]["input"]["body"]
            .as_str()
            .unwrap()
            .contains("\"US\"")
    );
    let id = kept[0]["id"].as_str().unwrap().to_owned();
    let one = format!("/v1/routes/orders-to-shipping/dead-letters/{id}");
    let (status, read) = get(&base, &one, SHIPPING).await;
    assert_eq!((status, &read["id"]), (200, &json!(id)));
    // Only the route's downstream (and the operator) sees or touches them.
    for (method, path) in [
        (Method::GET, one.clone()),
        (Method::DELETE, one.clone()),
        (Method::POST, format!("{one}/redrive")),
        (
            Method::POST,
            "/v1/routes/orders-to-shipping/dead-letters/redrive".into(),
        ),
    ] {
        let (status, _, _) = call(&base, method, &path, Some(ORDERS), None, &[]).await;
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(dead_letters(&base).await.len(), 2);

    // Redriven before the fix: it fails again and is kept anew.
    let (status, redriven, _) = call(
        &base,
        Method::POST,
        &format!("{one}/redrive"),
        Some(SHIPPING),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["outcomes"], json!({"dead-letter": 1}));
    assert_eq!(redriven["remaining"], 2);
    let (status, _) = get(&base, &one, SHIPPING).await;
    assert_eq!(status, 404, "the old id is gone");

    // The fix: shipping's translator now serves the US. Then everything is redriven.
    let (_, mut translator) = get(&base, PREPARE, SHIPPING).await;
    serve_the_us(&mut translator);
    let (status, _) = put_json(&base, PREPARE, SHIPPING, &translator).await;
    assert_eq!(status, 200);
    let (status, redriven, _) = call(
        &base,
        Method::POST,
        "/v1/routes/orders-to-shipping/dead-letters/redrive",
        Some(SHIPPING),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["outcomes"], json!({"forward": 2}));
    assert_eq!(redriven["remaining"], 0);
    let (_, inbox) = get(&base, "/v1/contexts/shipping/inbox?max=100", SHIPPING).await;
    assert!(!inbox.as_array().unwrap().is_empty());

    // A dead letter deleted after inspection.
    assert_eq!(shipping_outcome(&base, "ZZ").await, "dead-letter");
    let id = dead_letters(&base).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = format!("/v1/routes/orders-to-shipping/dead-letters/{id}");
    let (status, _, _) = call(&base, Method::DELETE, &one, Some(SHIPPING), None, &[]).await;
    assert_eq!(status, 204);
    let (status, _, _) = call(&base, Method::DELETE, &one, Some(SHIPPING), None, &[]).await;
    assert_eq!(status, 404);
    assert!(dead_letters(&base).await.is_empty());
    let (status, _, _) = call(
        &base,
        Method::GET,
        "/v1/routes/orders-to-shipping/dead-letters/not..an-id",
        Some(SHIPPING),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 400);
}

/// One write endpoint: how to call it, and who owns it.
struct Write {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    owner: &'static str,
    other: &'static str,
    /// What the owner and the operator get.
    allowed: u16,
}

fn write_endpoints() -> Vec<Write> {
    let schema =
        std::fs::read_to_string(repo().join("contracts/orders/OrderPlaced/v2.json")).unwrap();
    let mut v3: Value = serde_json::from_str(&schema).unwrap();
    v3["description"] = json!("Version 3.");
    let order = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    let event: Value = serde_json::from_str(&event_body(
        "orders/OrderPlaced@2",
        "m-1",
        &order.to_string(),
    ))
    .unwrap();
    let translator = json!({
        "input": "orders/OrderPlaced@2",
        "output": "shipping/PrepareShipment@1",
        "script": "fn translate(data) { #{ shipment_id: data.order_id + \"-ams\", order_id: data.order_id, warehouse: \"ams\", items: data.lines.map(|l| #{ sku: l.sku, quantity: l.quantity }), address: data.shipping_address } }",
        "cases": [],
    });
    vec![
        Write {
            method: Method::PUT,
            path: "/v1/contexts/orders/contracts/OrderPlaced/versions/3",
            body: Some(v3),
            owner: ORDERS,
            other: SHIPPING,
            allowed: 201,
        },
        Write {
            method: Method::PUT,
            path: "/v1/contexts/shipping/translators/one_warehouse",
            body: Some(translator),
            owner: SHIPPING,
            other: ORDERS,
            allowed: 201,
        },
        Write {
            method: Method::PUT,
            path: NEW_ROUTE,
            body: Some(payments_to_shipping("x")),
            owner: SHIPPING,
            other: ORDERS,
            allowed: 201,
        },
        Write {
            method: Method::DELETE,
            path: "/v1/routes/orders-to-shipping",
            body: None,
            owner: SHIPPING,
            other: ORDERS,
            allowed: 204,
        },
        Write {
            method: Method::POST,
            path: "/v1/contexts/orders/messages",
            body: Some(event),
            owner: ORDERS,
            other: SHIPPING,
            allowed: 202,
        },
        Write {
            method: Method::POST,
            path: "/v1/routes/orders-to-shipping/dead-letters/redrive",
            body: None,
            owner: SHIPPING,
            other: ORDERS,
            allowed: 200,
        },
        Write {
            method: Method::DELETE,
            path: "/v1/routes/orders-to-shipping/dead-letters/0b7e1f7c-0000-4000-8000-000000000000",
            body: None,
            owner: SHIPPING,
            other: ORDERS,
            allowed: 404,
        },
    ]
}

#[tokio::test]
async fn every_write_endpoint_answers_each_caller_as_ownership_says() {
    for write in write_endpoints() {
        let callers = [
            ("owner", Some(write.owner), write.allowed),
            ("another context", Some(write.other), 403),
            ("operator", Some(OPERATOR), write.allowed),
            ("no token", None, 401),
            ("bad token", Some("Bearer not-a-known-token"), 401),
        ];
        for (who, token, expected) in callers {
            // A fresh copy each time: an allowed write changes the registry.
            let (dir, base) = registry_api().await;
            let before = snapshot(dir.path());
            // Ingest takes a structured CloudEvent; the rest JSON.
            let content_type = if write.path.ends_with("/messages") {
                "application/cloudevents+json"
            } else {
                "application/json"
            };
            let (status, answer, _) = call(
                &base,
                write.method.clone(),
                write.path,
                token,
                write.body.as_ref(),
                &[("content-type", content_type)],
            )
            .await;
            assert_eq!(
                status, expected,
                "{} {} as {who}: {answer}",
                write.method, write.path
            );
            if !(200..300).contains(&status) {
                assert_eq!(
                    snapshot(dir.path()),
                    before,
                    "{} {} as {who} changed the registry",
                    write.method,
                    write.path
                );
            }
        }
    }
}

#[test]
fn the_registry_folder_is_watched_for_the_operator_s_edits() {
    let dir = shipped_registry_copy();
    let (mut child, base) = serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
            .arg(dir.path())
            .env_remove("CONTEXTGATE_CREDENTIALS")
            .env_remove("CONTEXTGATE_CREDENTIALS_FILE")
            .env_remove("CONTEXTGATE_AMQP_URL"),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let route_names = || {
        runtime.block_on(async {
            let (status, listed) = get(&base, "/v1/routes", OPERATOR).await;
            assert_eq!(status, 200);
            listed
                .as_array()
                .unwrap()
                .iter()
                .map(|route| route["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
    };
    let wait_for = |want: &dyn Fn(&[String]) -> bool| {
        let started = Instant::now();
        loop {
            let names = route_names();
            if want(&names) {
                return names;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the edit was not picked up: {names:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(route_names().len(), 7);

    let config = dir.path().join("contextgate.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{original}\n[[routes]]\nname = \"payments-to-shipping\"\nupstream = \"payments\"\ndownstream = \"shipping\"\nmode = \"conformist\"\naccepts = [\"payments/PaymentCaptured@1\"]\n"
        ),
    )
    .unwrap();
    wait_for(&|names| names.iter().any(|name| name == "payments-to-shipping"));

    // An edit that does not load is refused; the running registry stays.
    std::fs::write(
        &config,
        format!("{original}\n[[routes]]\nname = \"broken\"\n"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        route_names()
            .iter()
            .any(|name| name == "payments-to-shipping")
    );
    // Put back as it was: the added route goes.
    std::fs::write(&config, &original).unwrap();
    let names = wait_for(&|names| names.len() == 7);
    assert!(!names.iter().any(|name| name == "payments-to-shipping"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn replacing_the_folder_logs_one_line_per_reload_at_most() {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};

    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    let dir = shipped_registry_copy();
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(dir.path())
        .env_remove("CONTEXTGATE_LOG")
        .env_remove("CONTEXTGATE_CREDENTIALS")
        .env_remove("CONTEXTGATE_CREDENTIALS_FILE")
        .env_remove("CONTEXTGATE_AMQP_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let child = KillOnDrop(child);
    let count = |needle: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    };
    let wait_for = |needle: &str, n: usize| {
        let started = Instant::now();
        while count(needle) < n {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no {n} × {needle:?}: {:#?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("listening on", 1);
    let n_at_start = lines.lock().unwrap().len();

    // A checkout switching branches, eight times: every contract and translator folder deleted
    // and written again, and contextgate.toml changed so that each switch is a new registry.
    let config = dir.path().join("contextgate.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let n_switches = 8;
    for switch in 1..=n_switches {
        for folder in ["contracts", "translators"] {
            std::fs::remove_dir_all(dir.path().join(folder)).unwrap();
            copy_tree(&repo().join(folder), &dir.path().join(folder));
        }
        let description = format!("Takes and tracks customer orders (branch {switch}).");
        std::fs::write(
            &config,
            original.replace("Takes and tracks customer orders.", &description),
        )
        .unwrap();
        wait_for("Registry reloaded.", switch);
    }
    std::thread::sleep(Duration::from_millis(800));
    drop(child);
    reader.join().unwrap();

    let lines = lines.lock().unwrap();
    let logged = &lines[n_at_start..];
    assert!(
        logged.len() <= n_switches,
        "{} lines for {n_switches} reloads: {logged:#?}",
        logged.len()
    );
    assert!(
        logged
            .iter()
            .all(|line| line.contains("Registry reloaded."))
    );
}
