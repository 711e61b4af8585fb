//! The context map (issue 15, part 1): `contextgate map` on the shipped registry in every format,
//! and `GET /v1/map` on a served gateway as the operator and as contexts, whose tokens see only
//! what they may read.

use std::sync::Arc;

use contextgate::api::auth::{Credentials, hash_token};
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use contextgate::pipeline::Pipeline;
use serde_json::{Value, json};

use crate::helpers::*;

const CONTEXTS: [&str; 5] = [
    "customers",
    "notifications",
    "orders",
    "payments",
    "shipping",
];
const ROUTES: [&str; 7] = [
    "orders-to-payments",
    "payments-to-orders",
    "orders-to-shipping",
    "customers-to-orders",
    "customers-to-notifications",
    "shipping-to-notifications",
    "payments-to-notifications",
];

fn map(format: Option<&str>) -> std::process::Output {
    let registry = repo();
    let mut args = vec!["map", "--registry", registry.to_str().unwrap()];
    if let Some(format) = format {
        args.extend(["--format", format]);
    }
    run_binary(&args)
}

fn stdout(output: &std::process::Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The edge of route `route` in a JSON map.
fn edge<'a>(map: &'a Value, route: &str) -> &'a Value {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|edge| edge["route"] == route)
        .unwrap_or_else(|| panic!("no edge {route} in {map:#}"))
}

#[test]
fn map_as_json_labels_every_route_of_the_shipped_registry() {
    let map: Value = serde_json::from_str(&stdout(&map(Some("json")))).unwrap();
    let nodes: Vec<&str> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, CONTEXTS);
    let routes: Vec<&str> = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ROUTES);
    assert_eq!(
        edge(&map, "customers-to-orders"),
        &json!({
            "route": "customers-to-orders",
            "upstream": "customers",
            "downstream": "orders",
            "mode": "open-host",
            "relationship": "OHS/PL",
            "upstream_roles": ["U", "OHS", "PL"],
            "downstream_roles": ["D"],
            "types": ["customers/CustomerRecordChanged@1"],
            "output": "customers/CustomerUpdated@1",
            "ordered": true
        })
    );
    // (route, relationship, downstream roles, types, output, ordered)
    let expected = [
        (
            "orders-to-payments",
            "CF",
            json!(["D", "CF"]),
            json!(["payments/AuthorizePayment@1"]),
            Value::Null,
            false,
        ),
        (
            "payments-to-orders",
            "CF",
            json!(["D", "CF"]),
            json!(["payments/PaymentCaptured@1"]),
            Value::Null,
            true,
        ),
        (
            "orders-to-shipping",
            "ACL",
            json!(["D", "ACL"]),
            json!(["orders/OrderPlaced@2"]),
            json!("shipping/PrepareShipment@1"),
            true,
        ),
        (
            "shipping-to-notifications",
            "enrichment",
            json!(["D"]),
            json!(["shipping/ShipmentDispatched@1"]),
            json!("notifications/SendEmail@1"),
            false,
        ),
        (
            "payments-to-notifications",
            "enrichment",
            json!(["D"]),
            json!(["payments/PaymentCaptured@1"]),
            json!("notifications/PaymentReceipt@1"),
            false,
        ),
    ];
    for (route, relationship, downstream_roles, types, output, ordered) in expected {
        let edge = edge(&map, route);
        assert_eq!(edge["relationship"], relationship, "{route}");
        assert_eq!(edge["upstream_roles"], json!(["U"]), "{route}");
        assert_eq!(edge["downstream_roles"], downstream_roles, "{route}");
        assert_eq!(edge["types"], types, "{route}");
        assert_eq!(edge["output"], output, "{route}");
        assert_eq!(edge["ordered"], ordered, "{route}");
    }
}

#[test]
fn map_draws_mermaid_by_default_and_dot_on_request() {
    let mermaid = stdout(&map(None));
    assert_eq!(mermaid, stdout(&map(Some("mermaid"))));
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    for context in CONTEXTS {
        assert!(
            mermaid.contains(&format!("ctx_{context}[\"{context}\"]")),
            "{mermaid}"
        );
    }
    assert!(
        mermaid.contains(
            "ctx_orders -->|\"orders-to-shipping: ACL<br/>[U] → [D,ACL]<br/>orders/OrderPlaced@2 → shipping/PrepareShipment@1<br/>ordered\"| ctx_shipping"
        ),
        "{mermaid}"
    );
    let dot = stdout(&map(Some("dot")));
    assert!(dot.starts_with("digraph context_map {\n"), "{dot}");
    assert!(dot.ends_with("}\n"), "{dot}");
    assert!(
        dot.contains(
            "\"customers\" -> \"orders\" [label=\"customers-to-orders: OHS/PL\\ncustomers/CustomerRecordChanged@1 → customers/CustomerUpdated@1\\nordered\", taillabel=\"U,OHS,PL\", headlabel=\"D\"];"
        ),
        "{dot}"
    );
    for route in ROUTES {
        assert!(mermaid.contains(&format!("|\"{route}: ")), "{route}");
        assert!(dot.contains(&format!("[label=\"{route}: ")), "{route}");
    }
}

/// Every text an SVG shows, a `<tspan>` per line; panics if it is not well-formed.
fn svg_texts(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    document
        .descendants()
        .filter(|node| node.has_tag_name("text") || node.has_tag_name("tspan"))
        .filter_map(|node| node.text().map(str::to_owned))
        .collect()
}

#[test]
fn map_draws_svg_itself_with_every_context_and_route() {
    let svg = stdout(&map(Some("svg")));
    let texts = svg_texts(&svg);
    for context in CONTEXTS {
        assert!(texts.iter().any(|text| text == context), "{context}");
    }
    for route in ROUTES {
        assert!(
            texts
                .iter()
                .any(|text| text.starts_with(&format!("{route}: "))),
            "{route} in {texts:?}"
        );
    }
    for label in [
        "orders-to-payments: CF",
        "customers-to-orders: OHS/PL",
        "orders-to-shipping: ACL",
        "payments-to-notifications: enrichment",
        "U,OHS,PL",
        "D,ACL",
        "ordered",
        "orders/OrderPlaced@2 → shipping/PrepareShipment@1",
    ] {
        assert!(
            texts.iter().any(|text| text == label),
            "{label} in {texts:?}"
        );
    }
    assert_eq!(
        svg,
        stdout(&map(Some("svg"))),
        "the same registry, the same bytes"
    );
}

#[test]
fn map_refuses_an_unknown_format_and_a_broken_registry() {
    let output = map(Some("png"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("mermaid, dot, svg or json"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = shipped_registry_copy();
    write(dir.path(), "contracts/orders/OrderPlaced/v3.json", "{");
    let output = run_binary(&["map", "--registry", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("run contextgate check"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const OPERATOR: &str = "map-operator-token";
const ORDERS: &str = "map-orders-token";
const CUSTOMERS: &str = "map-customers-token";
const NOTIFICATIONS: &str = "map-notifications-token";

/// The shipped registry served over HTTP with an operator token and three contexts' tokens.
async fn guarded_gateway() -> String {
    let credentials = format!(
        "operator = [{:?}]\n[contexts]\norders = [{:?}]\ncustomers = [{:?}]\nnotifications = [{:?}]\n",
        hash_token(OPERATOR),
        hash_token(ORDERS),
        hash_token(CUSTOMERS),
        hash_token(NOTIFICATIONS),
    );
    let registry = contextgate::registry::load(&repo()).unwrap();
    serve_gateway_with(
        Gateway::new(
            Pipeline::new(Arc::new(registry)),
            Bus::InProcess(InProcessBus::default()),
        ),
        Credentials::parse(&credentials).unwrap(),
    )
    .await
}

/// Every type an edge of a JSON map shows, taken or delivered.
fn types(map: &Value) -> Vec<String> {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|edge| {
            let taken = edge["types"].as_array().unwrap().iter();
            taken.chain(edge["output"].as_str().map(|_| &edge["output"]))
        })
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn get_map_gives_the_operator_everything_and_a_context_what_it_may_read() {
    let base = guarded_gateway().await;
    for token in [None, Some("not-a-token")] {
        let (status, content_type, _) = get_as(&base, "/v1/map", token).await;
        assert_eq!(status, 401);
        assert_eq!(content_type, "application/problem+json");
    }

    let (status, content_type, body) = get_as(&base, "/v1/map", Some(OPERATOR)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    let whole: Value = serde_json::from_str(&body).unwrap();
    let cli: Value = serde_json::from_str(&stdout(&map(Some("json")))).unwrap();
    assert_eq!(
        whole, cli,
        "the operator sees what `contextgate map` prints"
    );

    // orders sees every route (each carries a published type), with the internal contracts of
    // customers and notifications taken out: on its own route customers-to-orders it sees what
    // customers publishes, not what customers keeps to itself.
    let (status, _, body) = get_as(&base, "/v1/map", Some(ORDERS)).await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    for internal in ["CustomerRecordChanged", "PaymentReceipt"] {
        assert!(!body.contains(internal), "orders sees {internal}: {body}");
    }
    assert_eq!(seen["nodes"], whole["nodes"]);
    assert_eq!(seen["edges"].as_array().unwrap().len(), ROUTES.len());
    assert_eq!(edge(&seen, "customers-to-orders")["types"], json!([]));
    assert_eq!(
        edge(&seen, "customers-to-orders")["output"],
        "customers/CustomerUpdated@1"
    );
    assert_eq!(
        edge(&seen, "payments-to-notifications")["types"],
        json!(["payments/PaymentCaptured@1"])
    );
    assert_eq!(
        edge(&seen, "payments-to-notifications")["output"],
        Value::Null
    );
    let mut kept: Vec<String> = types(&whole);
    kept.retain(|id| !id.contains("CustomerRecordChanged") && !id.contains("PaymentReceipt"));
    assert_eq!(types(&seen), kept);

    // Each owner sees its own internal contract, and not the other's.
    for (token, own, other) in [
        (
            CUSTOMERS,
            "customers/CustomerRecordChanged@1",
            "PaymentReceipt",
        ),
        (
            NOTIFICATIONS,
            "notifications/PaymentReceipt@1",
            "CustomerRecordChanged",
        ),
    ] {
        let (status, _, body) = get_as(&base, "/v1/map", Some(token)).await;
        assert_eq!(status, 200, "{body}");
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert!(types(&seen).contains(&own.to_owned()), "{own}: {body}");
        assert!(!body.contains(other), "{other}: {body}");
    }

    // Every format is filtered the same way.
    for (format, expected_type) in [
        ("svg", "image/svg+xml"),
        ("dot", "text/vnd.graphviz; charset=utf-8"),
        ("mermaid", "text/vnd.mermaid; charset=utf-8"),
        ("json", "application/json"),
    ] {
        let (status, content_type, body) =
            get_as(&base, &format!("/v1/map?format={format}"), Some(ORDERS)).await;
        assert_eq!(status, 200, "{format}: {body}");
        assert_eq!(content_type, expected_type);
        assert!(!body.contains("CustomerRecordChanged"), "{format}: {body}");
        assert!(body.contains("customers-to-orders"), "{format}: {body}");
        if format == "svg" {
            let texts = svg_texts(&body);
            assert!(texts.contains(&"customers-to-orders: OHS/PL".to_owned()));
        }
    }
    let (status, content_type, _) = get_as(&base, "/v1/map?format=png", Some(ORDERS)).await;
    assert_eq!(status, 400);
    assert_eq!(content_type, "application/problem+json");
}
