//! The four modes end to end through the pipeline, each through its failure stages.

use contextgate::pipeline::Outcome;
use contextgate::stages::{Reason, Stage};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn conformist_forwards_the_input_bytes_unchanged_with_a_derived_id() {
    let pipeline = pipeline(&repo());
    // Odd spacing, a big exact integer and a trailing-zero decimal: nothing may be re-serialized.
    let data = r#"{ "payment_id":"0b7e6f4c-58a3-4c0e-9a57-3d1f2b6c9e01","order_id":"o-1", "customer_id":"c-1","amount_minor": 1250,
        "currency":"EUR","captured_at":"2026-11-27T10:00:00Z" }"#;
    let delivery = contextgate::pipeline::Delivery::structured(event_body(
        "payments/PaymentCaptured@1",
        "e-1",
        data,
    ));

    let first = on_route(
        pipeline.process(&context("payments"), &delivery).await,
        "payments-to-orders",
    );
    let again = on_route(
        pipeline.process(&context("payments"), &delivery).await,
        "payments-to-orders",
    );

    assert_eq!(first.route.as_ref().unwrap().as_str(), "payments-to-orders");
    let Outcome::Forward { messages } = &first.outcome else {
        panic!("{first:#?}")
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(&messages[0].data[..], data.as_bytes());
    assert_ne!(messages[0].attributes.id, "e-1");
    assert_eq!(
        messages[0].attributes.dataschema,
        "contextgate:payments/PaymentCaptured@1"
    );
    assert_eq!(
        messages[0].attributes.extensions["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "trace context is passed on"
    );
    let Outcome::Forward { messages: again } = &again.outcome else {
        panic!()
    };
    assert_eq!(
        again[0].attributes.id, messages[0].attributes.id,
        "redelivery gives the same id"
    );
}

#[tokio::test]
async fn a_command_goes_to_its_one_route() {
    let pipeline = pipeline(&repo());
    let data = example("payments/AuthorizePayment/examples/v1/eur-order.json");
    let verdict = only(
        pipeline
            .process(
                &context("orders"),
                &event("payments/AuthorizePayment@1", "c-1", &data),
            )
            .await,
    );
    assert_eq!(
        verdict.route.as_ref().unwrap().as_str(),
        "orders-to-payments"
    );
    assert_eq!(forwarded(&verdict), vec![data]);
}

async fn verdict_of(
    pipeline: &contextgate::pipeline::Pipeline,
    from: &str,
    contract: &str,
    data: &serde_json::Value,
) -> contextgate::pipeline::Verdict {
    only(
        pipeline
            .process(&context(from), &event(contract, "x-1", data))
            .await,
    )
}

#[tokio::test]
async fn a_command_no_route_takes_is_a_dead_letter_without_a_route() {
    let pipeline = pipeline(&repo());
    // shipping owns PrepareShipment, but no route carries it from payments.
    let data = json!({"shipment_id": "s", "order_id": "o-1", "warehouse": "ams", "items": [], "address": {}});
    let verdict = verdict_of(&pipeline, "payments", "shipping/PrepareShipment@1", &data).await;
    assert_eq!(verdict.route, None);
    let failure = dead_letter(&verdict, Stage::Decode, Reason::Unroutable);
    assert!(
        failure.problems[0]
            .message
            .contains("no route takes the command"),
        "{failure}"
    );
}

#[tokio::test]
async fn an_event_published_by_another_context_is_refused() {
    let pipeline = pipeline(&repo());
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    let verdict = verdict_of(&pipeline, "payments", "orders/OrderPlaced@2", &data).await;
    dead_letter(&verdict, Stage::Decode, Reason::NotOwner);
}

#[tokio::test]
async fn an_event_no_route_takes_has_no_verdict() {
    let pipeline = pipeline(&repo());
    let data = example("orders/OrderPlaced/examples/v1/single-line.json");
    let verdicts = pipeline
        .process(
            &context("orders"),
            &event("orders/OrderPlaced@1", "e-1", &data),
        )
        .await;
    assert!(verdicts.is_empty(), "{verdicts:#?}");
}

#[tokio::test]
async fn conformist_validation_failures_name_every_pointer() {
    let pipeline = pipeline(&repo());
    let data = json!({"payment_id": "p-1", "order_id": 7, "customer_id": "c-1",
        "amount_minor": -5, "currency": "euro", "captured_at": "2026-11-27T10:00:00Z"});
    let verdicts = pipeline
        .process(
            &context("payments"),
            &event("payments/PaymentCaptured@1", "e-1", &data),
        )
        .await;
    let verdict = on_route(verdicts, "payments-to-orders");
    let failure = dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
    let pointers: Vec<&str> = failure
        .problems
        .iter()
        .filter_map(|p| p.pointer.as_deref())
        .collect();
    for expected in ["/order_id", "/amount_minor", "/currency"] {
        assert!(
            pointers.contains(&expected),
            "{expected} missing from {pointers:?}"
        );
    }
    assert!(
        failure
            .problems
            .iter()
            .any(|p| p.keyword.as_deref() == Some("type"))
    );
}

#[tokio::test]
async fn open_host_translates_once_and_fans_out_to_every_route_with_its_own_id() {
    let pipeline = pipeline(&repo());
    let data = example("customers/CustomerRecordChanged/examples/v1/with-email.json");
    let verdicts = pipeline
        .process(
            &context("customers"),
            &event("customers/CustomerRecordChanged@1", "e-1", &data),
        )
        .await;
    let routes: Vec<&str> = verdicts
        .iter()
        .map(|v| v.route.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(
        routes,
        ["customers-to-orders", "customers-to-notifications"]
    );
    let outputs: Vec<_> = verdicts.iter().map(forwarded).collect();
    assert_eq!(
        outputs[0], outputs[1],
        "the same published message for every consumer"
    );
    assert!(
        outputs[0][0].get("internal_score").is_none(),
        "the internal model stays inside"
    );
    let ids: Vec<String> = verdicts
        .iter()
        .map(|v| match &v.outcome {
            Outcome::Forward { messages } => {
                assert_eq!(
                    messages[0].attributes.event_type,
                    "customers.CustomerUpdated"
                );
                messages[0].attributes.id.clone()
            }
            other => panic!("{other:#?}"),
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn open_host_runs_the_shared_translator_once_per_input() {
    let registry = shipped_registry_copy();
    let pipeline = pipeline(registry.path());
    let data = example("customers/CustomerRecordChanged/examples/v1/with-email.json");
    let message = contextgate::stages::receive::decode(
        Some("application/cloudevents+json"),
        [],
        event("customers/CustomerRecordChanged@1", "e-1", &data).body,
    )
    .unwrap();
    let (input, routes) =
        contextgate::stages::receive::accept(pipeline.registry(), &context("customers"), message)
            .unwrap();
    let mut shared = contextgate::modes::Shared::default();
    for route in &routes {
        contextgate::modes::run(route, &input, &mut shared)
            .await
            .unwrap();
    }
    assert_eq!(routes.len(), 2);
    assert_eq!(shared.n_translations(), 1);
}

#[tokio::test]
async fn open_host_drop_is_a_drop_for_every_route() {
    let pipeline = pipeline(&repo());
    let data = example("customers/CustomerRecordChanged/examples/v1/without-email.json");
    let verdicts = pipeline
        .process(
            &context("customers"),
            &event("customers/CustomerRecordChanged@1", "e-1", &data),
        )
        .await;
    assert_eq!(verdicts.len(), 2);
    for verdict in verdicts {
        assert!(
            matches!(verdict.outcome, Outcome::Drop { .. }),
            "{verdict:#?}"
        );
    }
}

#[tokio::test]
async fn anti_corruption_emits_one_message_per_warehouse_in_the_downstream_model() {
    let pipeline = pipeline(&repo());
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    let verdict = verdict_of(&pipeline, "orders", "orders/OrderPlaced@2", &data).await;
    let Outcome::Forward { messages } = &verdict.outcome else {
        panic!("{verdict:#?}")
    };
    assert_eq!(
        messages.len(),
        3,
        "ams (lines without a warehouse), ber and lis"
    );
    for message in messages {
        assert_eq!(message.attributes.event_type, "shipping.PrepareShipment");
        assert_eq!(
            message.attributes.dataschema,
            "contextgate:shipping/PrepareShipment@1"
        );
    }
    assert_ne!(messages[0].attributes.id, messages[1].attributes.id);
    assert_ne!(messages[1].attributes.id, messages[2].attributes.id);
}

#[tokio::test]
async fn anti_corruption_translator_errors_are_dead_letters_at_translate() {
    let pipeline = pipeline(&repo());
    let mut data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    data["shipping_address"]["country"] = json!("US");
    let verdict = verdict_of(&pipeline, "orders", "orders/OrderPlaced@2", &data).await;
    let failure = dead_letter(&verdict, Stage::Translate, Reason::ScriptError);
    assert!(
        failure
            .to_string()
            .contains("no warehouse serves country US"),
        "{failure}"
    );
}

#[tokio::test]
async fn anti_corruption_output_that_breaks_the_downstream_contract_fails_at_validate_out() {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { #{ id: data.id, total: 5000 } }"),
        "",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    let failure = dead_letter(
        &verdict,
        Stage::ValidateOut,
        Reason::OutputContractViolation,
    );
    assert!(names_pointer(&failure, "/total"), "{failure}");
}

#[tokio::test]
async fn anti_corruption_input_that_breaks_the_upstream_contract_fails_at_validate_in() {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { #{ id: data.id, total: 1 } }"),
        "",
    );
    let verdict = fixture.run(&json!({"id": "a"})).await;
    dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
}

#[tokio::test]
async fn more_outputs_than_the_route_allows_is_a_translate_failure() {
    let script = "fn translate(data) { [#{ id: data.id, total: 1 }, #{ id: data.id, total: 2 }] }";
    let fixture = Fixture::new("anti-corruption", Some(script), "");
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    dead_letter(&verdict, Stage::Translate, Reason::TooManyOutputs);

    let fixture = Fixture::new("anti-corruption", Some(script), "max_outputs = 2\n");
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    assert_eq!(forwarded(&verdict).len(), 2);
}

#[tokio::test]
async fn translators_see_meta_and_can_drop() {
    let script = r#"fn translate(data, meta) { if data.n == 0 { return (); } #{ id: meta.id + "/" + meta.subject, total: data.n } }"#;
    let fixture = Fixture::new("anti-corruption", Some(script), "");
    let verdict = fixture.run(&json!({"id": "a", "n": 3})).await;
    assert_eq!(
        forwarded(&verdict),
        vec![json!({"id": "e-1/s-1", "total": 3})]
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 0})).await;
    assert!(
        matches!(verdict.outcome, Outcome::Drop { .. }),
        "{verdict:#?}"
    );
}

#[tokio::test]
async fn the_drop_policy_drops_instead_of_dead_lettering() {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { throw \"nope\" }"),
        "[routes.on_failure]\ntranslate = \"drop\"\n",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    let Outcome::Drop { reason } = &verdict.outcome else {
        panic!("{verdict:#?}")
    };
    assert!(reason.contains("nope"), "{reason}");
}

#[tokio::test]
async fn a_retry_policy_never_retries_a_permanent_failure() {
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { throw \"nope\" }"),
        "[routes.on_failure]\ntranslate = \"retry\"\n",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    dead_letter(&verdict, Stage::Translate, Reason::ScriptError);
}

#[tokio::test]
async fn open_host_fixture_output_must_be_valid_published_language() {
    let fixture = Fixture::new(
        "open-host",
        Some("fn translate(data) { #{ id: data.id } }"),
        "",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    dead_letter(
        &verdict,
        Stage::ValidateOut,
        Reason::OutputContractViolation,
    );
    let fixture = Fixture::new(
        "open-host",
        Some("fn translate(data) { #{ id: data.id, n: data.n * 2 } }"),
        "",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 21})).await;
    assert_eq!(forwarded(&verdict), vec![json!({"id": "a", "n": 42})]);
}

#[tokio::test]
async fn retries_on_one_route_reprocess_only_that_route() {
    let pipeline = pipeline(&repo());
    let data = example("payments/PaymentCaptured/examples/v1/eur-order.json");
    let delivery = event("payments/PaymentCaptured@1", "e-9", &data);
    let route = pipeline
        .registry()
        .route(&contextgate::registry::RouteName::parse("payments-to-orders").unwrap())
        .unwrap()
        .clone();
    let verdict = pipeline.process_on(&route, &delivery, 3).await;
    assert_eq!(forwarded(&verdict), vec![data]);
}

#[tokio::test]
async fn open_host_input_that_breaks_the_internal_contract_fails_at_validate_in() {
    let fixture = Fixture::new("open-host", Some("fn translate(data) { data }"), "");
    let verdict = fixture.run(&json!({"id": "a", "n": "not a number"})).await;
    let failure = dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
    assert!(names_pointer(&failure, "/n"), "{failure}");
}
