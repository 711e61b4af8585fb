//! The AsyncAPI document's content: channels and their bindings, messages and their schemas by
//! reference, the CloudEvents trait, operations per mode, and what each viewer is given. Each
//! document is also checked against the vendored AsyncAPI 3.0.0 JSON Schema.

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::*;
use crate::registry::Registry;

/// The official AsyncAPI 3.0.0 JSON Schema (see `tests/asyncapi/README.md`).
static ASYNCAPI: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../../tests/asyncapi/asyncapi-3.0.0.json")).unwrap();
    jsonschema::validator_for(&schema).expect("the AsyncAPI 3.0.0 schema compiles")
});

fn context(name: &str) -> ContextName {
    ContextName::parse(name).unwrap()
}

fn shipped() -> Registry {
    crate::registry::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Three contexts: `shop` publishes `OrderPlaced` (2020-12), whose schema refers to its own
/// internal `Address` (draft-07, and so to its `zip`) and to `billing`'s published `Money`;
/// `billing` takes it in structured mode, and the command `Charge` from `shop` in order;
/// `spy` takes nothing.
fn fixture() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::TempDir::new().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "contextgate.toml",
        r#"
[contexts.shop]
description = "Sells things."
[contexts.billing]
[contexts.spy]

[[routes]]
name = "shop-to-billing"
upstream = "shop"
downstream = "billing"
mode = "conformist"
accepts = ["shop/OrderPlaced@1"]
wire = "structured"

[[routes]]
name = "shop-charges"
upstream = "shop"
downstream = "billing"
mode = "conformist"
accepts = ["billing/Charge@1"]
ordering_key = "subject"
shards = 3
"#,
    );
    write(
        "contracts/shop/Address/contract.toml",
        "kind = \"event\"\nvisibility = \"internal\"\n",
    );
    write(
        "contracts/shop/Address/v1.json",
        r##"{"$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "definitions": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "properties": {"zip": {"$ref": "#/definitions/zip"}}}"##,
    );
    write(
        "contracts/shop/OrderPlaced/contract.toml",
        "kind = \"event\"\nvisibility = \"published\"\ndescription = \"An order was placed.\"\n",
    );
    write(
        "contracts/shop/OrderPlaced/v1.json",
        r##"{"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://shop.example/order-placed.json",
            "type": "object",
            "required": ["order_id"],
            "$defs": {"line": {"$anchor": "line", "type": "object", "properties": {"sku": {"type": "string"}}}},
            "properties": {
                "order_id": {"type": "string", "enum": ["not-a-schema", {"$ref": "data, not a reference"}]},
                "address": {"$ref": "contextgate://registry/contracts/shop/Address/v1.json"},
                "total": {"$ref": "contextgate://registry/contracts/billing/Money/v1.json#/definitions/amount"},
                "lines": {"type": "array", "items": {"$ref": "#line"}},
                "first": {"$ref": "#/$defs/line"},
                "default": {"$ref": "#/$defs/line"}
            }}"##,
    );
    write(
        "contracts/billing/Money/contract.toml",
        "kind = \"event\"\nvisibility = \"published\"\n",
    );
    write(
        "contracts/billing/Money/v1.json",
        r##"{"$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "definitions": {"amount": {"type": "number", "minimum": 0}},
            "properties": {"amount": {"$ref": "#/definitions/amount"}}}"##,
    );
    write(
        "contracts/billing/Charge/contract.toml",
        "kind = \"command\"\nvisibility = \"published\"\n",
    );
    write(
        "contracts/billing/Charge/v1.json",
        r#"{"type": "object", "properties": {"order_id": {"type": "string"}}}"#,
    );
    let registry = match crate::registry::load(dir.path()) {
        Ok(registry) => registry,
        Err(crate::registry::RegistryError::Problems(problems)) => {
            panic!("the fixture loads: {problems:#?}")
        }
        Err(error) => panic!("the fixture loads: {error}"),
    };
    (dir, registry)
}

fn placeholder() -> Broker {
    Broker::new(None, "").unwrap()
}

/// The document of `of` as `viewer` sees it, checked against the AsyncAPI 3.0.0 schema and
/// for references that all resolve inside it.
fn check(registry: &Registry, of: &str, viewer: &Viewer, broker: &Broker) -> Value {
    let document = document(registry, &context(of), viewer, broker).unwrap();
    let errors: Vec<String> = ASYNCAPI
        .iter_errors(&document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{of} as {viewer:?}: {errors:#?}");
    refs_resolve(&document, &document);
    document
}

/// Every `$ref` in `value` points inside `document`.
fn refs_resolve(document: &Value, value: &Value) {
    match value {
        Value::Object(object) => {
            for (keyword, child) in object {
                if keyword == "$ref" {
                    let reference = child.as_str().unwrap();
                    let pointer = reference
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("{reference} leaves the document"));
                    assert!(
                        document.pointer(pointer).is_some(),
                        "{reference} points at nothing"
                    );
                } else if SCHEMA_MAP_KEYWORDS.contains(&keyword.as_str()) {
                    for member in child.as_object().into_iter().flat_map(|m| m.values()) {
                        refs_resolve(document, member);
                    }
                } else if !DATA_KEYWORDS.contains(&keyword.as_str()) {
                    refs_resolve(document, child);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs_resolve(document, item)),
        _ => {}
    }
}

fn keys(object: &Value) -> Vec<&str> {
    object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn tags(operation: &Value) -> Vec<&str> {
    operation["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect()
}

fn message_refs(operation: &Value) -> Vec<&str> {
    operation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["$ref"].as_str().unwrap())
        .collect()
}

#[test]
fn the_vendored_schema_refuses_a_broken_document() {
    let registry = shipped();
    let good = check(&registry, "orders", &Viewer::Operator, &placeholder());
    type Breakage = (&'static str, fn(&mut Value));
    let breakages: [Breakage; 4] = [
        ("no asyncapi version", |d| {
            d.as_object_mut().unwrap().remove("asyncapi");
        }),
        ("an action that is neither send nor receive", |d| {
            d["operations"]["send.orders.OrderPlaced"]["action"] = json!("publish");
        }),
        ("a channel binding that is both queue and exchange", |d| {
            d["channels"]["outbound"]["bindings"]["amqp"]["queue"] = json!({"name": "q"});
        }),
        ("a draft-07 payload that is no schema", |d| {
            d["components"]["schemas"]["payments.PaymentCaptured.v1"] = json!({
                "schemaFormat": "application/schema+json;version=draft-07",
                "schema": {"type": 7}
            });
        }),
    ];
    for (what, breakage) in breakages {
        let mut broken = good.clone();
        breakage(&mut broken);
        assert!(!ASYNCAPI.is_valid(&broken), "{what} was accepted");
    }
}

#[test]
fn channels_are_the_exchanges_and_route_queues_the_bus_declares() {
    let registry = shipped();
    let names = Names::new("staging");
    let broker = Broker {
        server: Some(Server::from_url("amqp://gateway:secret@rabbit.internal/shop").unwrap()),
        names: names.clone(),
    };
    let orders = context("orders");
    let document = check(&registry, "orders", &Viewer::Operator, &broker);
    assert_eq!(
        keys(&document["channels"]),
        [
            "inbound",
            "outbound",
            "route.customers-to-orders",
            "route.payments-to-orders"
        ]
    );
    let outbound = &document["channels"]["outbound"];
    assert_eq!(outbound["address"], names.outbound(&orders));
    assert_eq!(outbound["address"], "staging.orders.out");
    assert_eq!(
        outbound["bindings"],
        json!({"amqp": {
            "is": "routingKey",
            "exchange": {"name": "staging.orders.out", "type": "topic", "durable": true,
                "autoDelete": false, "vhost": "shop"},
            "bindingVersion": "0.3.0"
        }})
    );
    assert_eq!(
        document["channels"]["inbound"]["address"],
        names.inbound(&orders)
    );
    // Both routes into orders are ordered: their inputs wait in the sequencer queue.
    for route in ["payments-to-orders", "customers-to-orders"] {
        let channel = &document["channels"][format!("route.{route}")];
        assert_eq!(channel["address"], names.sequencer_queue(route));
        assert_eq!(
            channel["bindings"],
            json!({"amqp": {
                "is": "queue",
                "queue": {"name": names.sequencer_queue(route), "durable": true,
                    "exclusive": false, "autoDelete": false, "vhost": "shop"},
                "bindingVersion": "0.3.0"
            }})
        );
        let description = channel["description"].as_str().unwrap();
        assert!(
            description.contains(&names.shard_queue(route, 11)),
            "{description}"
        );
    }
    // An unordered route reads its own queue.
    let payments = check(&registry, "payments", &Viewer::Operator, &broker);
    assert_eq!(
        payments["channels"]["route.orders-to-payments"]["address"],
        names.route_queue("orders-to-payments")
    );
    // The server: no credentials, the port filled in.
    assert_eq!(
        document["servers"]["rabbitmq"],
        json!({"host": "rabbit.internal:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
            "title": "RabbitMQ", "description": "The broker the gateway runs on (virtual host \"shop\")."})
    );
    assert!(!document.to_string().contains("secret"));
}

#[test]
fn the_server_is_read_from_the_url_as_lapin_reads_it() {
    let cases = [
        (
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqp",
            "127.0.0.1:5672",
            "/",
        ),
        ("amqp://localhost", "amqp", "localhost:5672", "/"),
        (
            "amqps://u:p@broker.example/prod",
            "amqps",
            "broker.example:5671",
            "prod",
        ),
        ("amqp://[::1]:5673/a%2Fb", "amqp", "[::1]:5673", "a/b"),
    ];
    for (url, protocol, host, vhost) in cases {
        let server = Server::from_url(url).unwrap();
        assert_eq!(
            (server.protocol, server.host.as_str(), server.vhost.as_str()),
            (protocol, host, vhost),
            "{url}"
        );
    }
    for url in ["http://example.com", "not a url", "amqp://"] {
        assert!(Server::from_url(url).is_err(), "{url}");
    }
    let document = check(&shipped(), "orders", &Viewer::Operator, &placeholder());
    let server = &document["servers"]["rabbitmq"];
    assert_eq!(server["host"], PLACEHOLDER_HOST);
    assert!(
        server["description"]
            .as_str()
            .unwrap()
            .contains("placeholder")
    );
}

#[test]
fn operations_send_what_the_context_publishes_and_receive_per_route() {
    let registry = shipped();
    let orders = check(&registry, "orders", &Viewer::Operator, &placeholder());
    assert_eq!(
        keys(&orders["operations"]),
        [
            "receive.customers-to-orders",
            "receive.payments-to-orders",
            "send.orders.OrderPlaced",
            "send.payments.AuthorizePayment"
        ]
    );
    let send = &orders["operations"]["send.orders.OrderPlaced"];
    assert_eq!(send["action"], "send");
    assert_eq!(send["channel"], json!({"$ref": "#/channels/outbound"}));
    assert_eq!(
        message_refs(send),
        [
            "#/channels/outbound/messages/orders.OrderPlaced.v1",
            "#/channels/outbound/messages/orders.OrderPlaced.v2"
        ]
    );
    assert_eq!(
        send["bindings"],
        json!({"amqp": {"cc": ["orders.OrderPlaced"], "deliveryMode": 2, "bindingVersion": "0.3.0"}})
    );
    // A command orders sends to payments goes out on orders' exchange, keyed by its type.
    assert_eq!(
        orders["operations"]["send.payments.AuthorizePayment"]["bindings"]["amqp"]["cc"],
        json!(["payments.AuthorizePayment"])
    );

    // (context, route, tags, delivered message)
    let cases = [
        (
            "orders",
            "payments-to-orders",
            vec![
                "mode:conformist",
                "relationship:CF",
                "upstream:payments",
                "ordered",
            ],
            "payments.PaymentCaptured.v1",
        ),
        (
            "orders",
            "customers-to-orders",
            vec![
                "mode:open-host",
                "relationship:OHS/PL",
                "upstream:customers",
                "translator:customers/publish_customer_updated",
                "ordered",
            ],
            "customers.CustomerUpdated.v1",
        ),
        (
            "shipping",
            "orders-to-shipping",
            vec![
                "mode:anti-corruption",
                "relationship:ACL",
                "upstream:orders",
                "translator:shipping/prepare_shipments",
                "ordered",
            ],
            "shipping.PrepareShipment.v1",
        ),
        (
            "notifications",
            "shipping-to-notifications",
            vec![
                "mode:enrich",
                "relationship:enrichment",
                "upstream:shipping",
                "translator:notifications/dispatch_email",
            ],
            "notifications.SendEmail.v1",
        ),
        (
            "notifications",
            "payments-to-notifications",
            vec![
                "mode:enrich",
                "relationship:enrichment",
                "upstream:payments",
            ],
            "notifications.PaymentReceipt.v1",
        ),
    ];
    for (of, route, expected_tags, delivered) in cases {
        let document = check(&registry, of, &Viewer::Operator, &placeholder());
        let receive = &document["operations"][format!("receive.{route}")];
        assert_eq!(receive["action"], "receive", "{route}");
        assert_eq!(receive["channel"], json!({"$ref": "#/channels/inbound"}));
        assert_eq!(tags(receive), expected_tags, "{route}");
        assert_eq!(
            message_refs(receive),
            [format!("#/channels/inbound/messages/{delivered}")],
            "{route}"
        );
        let routing_key = delivered.rsplit_once(".v").unwrap().0;
        assert_eq!(
            receive["bindings"]["amqp"],
            json!({"cc": [routing_key], "ack": true, "bindingVersion": "0.3.0"})
        );
        let description = receive["description"].as_str().unwrap();
        assert!(
            description.contains(&format!("route.{route}")),
            "{description}"
        );
        assert_eq!(receive["x-contextgate-route"]["name"], route);
        assert_eq!(
            receive["x-contextgate-route"]["queue"],
            document["channels"][format!("route.{route}")]["address"]
        );
    }
    // What waits in a translating route's queue is its input, not what it delivers.
    let shipping = check(&registry, "shipping", &Viewer::Operator, &placeholder());
    assert_eq!(
        keys(&shipping["channels"]["route.orders-to-shipping"]["messages"]),
        ["orders.OrderPlaced.v2"]
    );
    assert_eq!(
        keys(&shipping["channels"]["inbound"]["messages"]),
        ["shipping.PrepareShipment.v1"]
    );
}

#[test]
fn payloads_are_the_contracts_by_reference_with_their_draft() {
    let registry = shipped();
    let document = check(&registry, "orders", &Viewer::Operator, &placeholder());
    let message = &document["components"]["messages"]["orders.OrderPlaced.v2"];
    assert_eq!(
        message["payload"],
        json!({"$ref": "#/components/schemas/orders.OrderPlaced.v2"})
    );
    assert_eq!(message["name"], "orders.OrderPlaced");
    assert_eq!(message["contentType"], "application/json");
    assert_eq!(
        message["bindings"],
        json!({"amqp": {"messageType": "orders.OrderPlaced", "bindingVersion": "0.3.0"}})
    );
    assert_eq!(
        message["headers"]["properties"],
        json!({
            "cloudEvents_type": {"const": "orders.OrderPlaced"},
            "cloudEvents_dataschema": {"const": "contextgate:orders/OrderPlaced@2"}
        })
    );
    assert_eq!(
        message["traits"],
        json!([{"$ref": "#/components/messageTraits/cloudEventsBinary"}])
    );
    let id = ContractId::parse("orders/OrderPlaced@2").unwrap();
    // The contract's schema, its local references now pointing into the document.
    let text = registry.contract_version(&id).unwrap().schema.to_string();
    let text = text.replace(
        "\"#/$defs/",
        "\"#/components/schemas/orders.OrderPlaced.v2/schema/$defs/",
    );
    let mut expected: Value = serde_json::from_str(&text).unwrap();
    expected.as_object_mut().unwrap().remove("$schema");
    assert_eq!(
        document["components"]["schemas"]["orders.OrderPlaced.v2"],
        json!({"schemaFormat": "application/schema+json;version=2020-12", "schema": expected})
    );
}

#[test]
fn refs_between_registry_schemas_are_rewritten_inside_the_document() {
    let (_dir, registry) = fixture();
    let document = check(&registry, "shop", &Viewer::Operator, &placeholder());
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        keys(schemas),
        [
            "billing.Charge.v1",
            "billing.Money.v1",
            "shop.Address.v1",
            "shop.OrderPlaced.v1"
        ]
    );
    for (key, format) in [
        ("shop.OrderPlaced.v1", "2020-12"),
        ("shop.Address.v1", "draft-07"),
        ("billing.Money.v1", "draft-07"),
    ] {
        assert_eq!(
            schemas[key]["schemaFormat"],
            format!("application/schema+json;version={format}")
        );
    }
    let order = &schemas["shop.OrderPlaced.v1"]["schema"];
    let properties = &order["properties"];
    assert_eq!(
        properties["address"]["$ref"],
        "#/components/schemas/shop.Address.v1/schema"
    );
    assert_eq!(
        properties["total"]["$ref"],
        "#/components/schemas/billing.Money.v1/schema/definitions/amount"
    );
    // An anchor becomes the pointer of the schema that names it.
    assert_eq!(
        properties["lines"]["items"]["$ref"],
        "#/components/schemas/shop.OrderPlaced.v1/schema/$defs/line"
    );
    // A property named like a data keyword is a schema all the same.
    for property in ["first", "default"] {
        assert_eq!(
            properties[property]["$ref"],
            "#/components/schemas/shop.OrderPlaced.v1/schema/$defs/line"
        );
    }
    assert_eq!(
        schemas["shop.Address.v1"]["schema"]["properties"]["zip"]["$ref"],
        "#/components/schemas/shop.Address.v1/schema/definitions/zip"
    );
    // The document is the base now: no `$id` or `$schema` left, and data is left as it is.
    assert!(order.get("$id").is_none() && order.get("$schema").is_none());
    assert_eq!(
        properties["order_id"]["enum"][1],
        json!({"$ref": "data, not a reference"})
    );
    assert!(!document.to_string().contains("contextgate://"));
}

#[test]
fn another_context_never_reads_internal_contracts_through_the_document() {
    let (_dir, registry) = fixture();
    // The owner reads its internal Address.
    let own = check(
        &registry,
        "shop",
        &Viewer::Context(context("shop")),
        &placeholder(),
    );
    assert!(
        own["components"]["schemas"]
            .get("shop.Address.v1")
            .is_some()
    );
    // Another context finds it withheld, its name nowhere.
    for viewer in ["spy", "billing"] {
        let seen = check(
            &registry,
            "shop",
            &Viewer::Context(context(viewer)),
            &placeholder(),
        );
        let text = seen.to_string();
        assert!(!text.contains("Address"), "{viewer}: {text}");
        assert!(!text.contains("[0-9]{5}"), "{viewer}: {text}");
        let schemas = &seen["components"]["schemas"];
        assert_eq!(
            keys(schemas),
            [
                "billing.Charge.v1",
                "billing.Money.v1",
                "shop.OrderPlaced.v1",
                "withheld"
            ]
        );
        assert_eq!(
            schemas["shop.OrderPlaced.v1"]["schema"]["properties"]["address"]["$ref"],
            "#/components/schemas/withheld/schema"
        );
    }

    // On the shipped registry: customers' internal CustomerRecordChanged is for customers (and
    // the operator) only, even on orders' own route and in customers' own document.
    let registry = shipped();
    for (of, viewer) in [
        ("customers", "orders"),
        ("customers", "notifications"),
        ("orders", "orders"),
        ("notifications", "notifications"),
        ("orders", "payments"),
    ] {
        let seen = check(
            &registry,
            of,
            &Viewer::Context(context(viewer)),
            &placeholder(),
        );
        let text = seen.to_string();
        assert!(
            !text.contains("CustomerRecordChanged"),
            "{of} as {viewer}: {text}"
        );
        assert!(!text.contains("internal_score"), "{of} as {viewer}: {text}");
    }
    for viewer in [Viewer::Operator, Viewer::Context(context("customers"))] {
        let seen = check(&registry, "customers", &viewer, &placeholder());
        assert!(
            seen["components"]["messages"]
                .get("customers.CustomerRecordChanged.v1")
                .is_some(),
            "{viewer:?}"
        );
    }
    let orders = check(
        &registry,
        "orders",
        &Viewer::Context(context("orders")),
        &placeholder(),
    );
    assert_eq!(
        orders["channels"]["route.customers-to-orders"]["messages"],
        json!({})
    );
    assert_eq!(
        message_refs(&orders["operations"]["receive.customers-to-orders"]),
        ["#/channels/inbound/messages/customers.CustomerUpdated.v1"]
    );
    // notifications' internal PaymentReceipt: its own route, seen by payments without it.
    let seen = check(
        &registry,
        "notifications",
        &Viewer::Context(context("payments")),
        &placeholder(),
    );
    assert!(!seen.to_string().contains("PaymentReceipt"));
    let receive = &seen["operations"]["receive.payments-to-notifications"];
    assert_eq!(receive["messages"], json!([]));
    // payments is upstream of the route, not of shipping-to-notifications: it does not see
    // that route's translator, nor a route that carries nothing it may read... which here
    // carries shipping's published ShipmentDispatched, so it is there.
    assert!(
        !tags(&seen["operations"]["receive.shipping-to-notifications"])
            .iter()
            .any(|tag| tag.starts_with("translator:"))
    );
}

#[test]
fn a_structured_route_delivers_the_whole_event_as_the_payload() {
    let (_dir, registry) = fixture();
    let document = check(&registry, "billing", &Viewer::Operator, &placeholder());
    assert_eq!(
        message_refs(&document["operations"]["receive.shop-to-billing"]),
        ["#/channels/inbound/messages/shop.OrderPlaced.v1.structured"]
    );
    let message = &document["components"]["messages"]["shop.OrderPlaced.v1.structured"];
    assert_eq!(message["contentType"], "application/cloudevents+json");
    assert!(message.get("traits").is_none());
    let envelope = &document["components"]["schemas"]["shop.OrderPlaced.v1.structured"]["schema"];
    assert_eq!(
        envelope["properties"]["data"],
        json!({"$ref": "#/components/schemas/shop.OrderPlaced.v1/schema"})
    );
    assert_eq!(
        envelope["properties"]["dataschema"],
        json!({"const": "contextgate:shop/OrderPlaced@1"})
    );
    // Its queue holds what shop publishes, in binary mode.
    assert_eq!(
        keys(&document["channels"]["route.shop-to-billing"]["messages"]),
        ["shop.OrderPlaced.v1"]
    );
    // The ordered command route: three shards.
    let description = document["channels"]["route.shop-charges"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains("route.shop-charges.shard.2"),
        "{description}"
    );
    assert!(description.contains("3 shard queues"), "{description}");
}

#[test]
fn the_cloudevents_trait_lists_the_headers_the_gateway_writes_and_reads() {
    let document = check(&shipped(), "payments", &Viewer::Operator, &placeholder());
    let headers = &document["components"]["messageTraits"]["cloudEventsBinary"]["headers"];
    let listed: BTreeSet<String> = headers["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // What the gateway's AMQP wire writes for an output with every attribute and trace headers.
    let message = crate::message::Message {
        attributes: Attributes {
            id: "e-1".into(),
            source: "/orders".into(),
            event_type: "payments.PaymentCaptured".into(),
            dataschema: "contextgate:payments/PaymentCaptured@1".into(),
            subject: Some("o-1".into()),
            time: Some("2026-12-01T00:00:00Z".into()),
            extensions: BTreeMap::new(),
        },
        data: bytes::Bytes::from_static(b"{}"),
    };
    let mut trace = std::collections::HashMap::new();
    trace.insert(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    );
    trace.insert("tracestate".to_owned(), "a=b".to_owned());
    let trace: Vec<(String, String)> = trace.into_iter().collect();
    let table = crate::bus::amqp::wire::trace_headers(&trace);
    let (_, properties) =
        crate::bus::amqp::wire::output(&message, Wire::Binary, Some(&table), None);
    let written: BTreeSet<String> = properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .keys()
        .map(|name| name.to_string())
        .collect();
    assert_eq!(listed, written);
    assert_eq!(
        headers["required"],
        json!([
            "cloudEvents_specversion",
            "cloudEvents_id",
            "cloudEvents_source",
            "cloudEvents_type",
            "cloudEvents_dataschema"
        ])
    );
    // What the trait lists is what the gateway reads back.
    let pairs: Vec<(String, String)> = properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .iter()
        .map(|(name, value)| match value {
            lapin::types::AMQPValue::LongString(text) => (
                name.to_string(),
                String::from_utf8_lossy(text.as_bytes()).into_owned(),
            ),
            other => panic!("{name}: {other:?}"),
        })
        .collect();
    let decoded = cloudevents::decode_binary(
        Some("application/json"),
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        bytes::Bytes::from_static(b"{}"),
    )
    .unwrap();
    assert_eq!(decoded.attributes, message.attributes);
}

#[test]
fn an_unknown_context_has_no_document() {
    assert_eq!(
        document(
            &shipped(),
            &context("warehouse"),
            &Viewer::Operator,
            &placeholder()
        ),
        Err(AsyncApiError::UnknownContext(context("warehouse")))
    );
}

#[test]
fn every_shipped_context_has_a_valid_document_for_every_viewer() {
    let registry = shipped();
    let mut viewers = vec![Viewer::Operator];
    viewers.extend(registry.contexts.keys().cloned().map(Viewer::Context));
    for of in registry.contexts.keys() {
        for viewer in &viewers {
            let document = check(&registry, of.as_str(), viewer, &placeholder());
            assert_eq!(document["asyncapi"], "3.0.0");
            assert_eq!(document["info"]["title"], of.as_str());
        }
    }
}
