//! Bad messages of every kind become dead letters with their stage and reason.

use bytes::Bytes;
use contextgate::message::MAX_MESSAGE_BYTES;
use contextgate::pipeline::Delivery;
use contextgate::stages::{Reason, Stage};
use serde_json::json;

use crate::helpers::*;

async fn decode_failure(body: Vec<u8>, reason: Reason) {
    let pipeline = pipeline(&repo());
    let verdict = only(
        pipeline
            .process(&context("payments"), &Delivery::structured(body))
            .await,
    );
    assert_eq!(verdict.route, None);
    dead_letter(&verdict, Stage::Decode, reason);
}

#[tokio::test]
async fn bodies_that_are_not_json_are_parse_errors() {
    // M1, M2
    decode_failure(b"not json".to_vec(), Reason::ParseError).await;
    decode_failure(b"\xff\xfe\xfd".to_vec(), Reason::ParseError).await;
    decode_failure(Vec::new(), Reason::ParseError).await;
    decode_failure("[".repeat(129).into_bytes(), Reason::ParseError).await;
}

#[tokio::test]
async fn duplicate_keys_in_the_data_are_refused_never_resolved() {
    // M3
    let body = event_body(
        "payments/PaymentCaptured@1",
        "e-1",
        r#"{"payment_id":"p-1","order_id":"o-1","customer_id":"c-1","amount_minor":1,"amount_minor":1000000,"currency":"EUR","captured_at":"2026-11-27T10:00:00Z"}"#,
    );
    decode_failure(body.into_bytes(), Reason::DuplicateKey).await;
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_before_parsing() {
    // M6
    let mut body = event_body("payments/PaymentCaptured@1", "e-1", "{}").into_bytes();
    body.resize(MAX_MESSAGE_BYTES + 10, b' ');
    decode_failure(body, Reason::TooLarge).await;
}

#[tokio::test]
async fn unknown_contracts_and_mismatched_types_are_refused() {
    // M7
    let data = json!({});
    let body = event_body("payments/PaymentRefunded@1", "e-1", &data.to_string());
    decode_failure(body.into_bytes(), Reason::UnknownContract).await;
    let body = event_body("payments/PaymentCaptured@9", "e-1", "{}");
    decode_failure(body.into_bytes(), Reason::UnknownContract).await;
    let body = event_body("payments/PaymentCaptured@1", "e-1", "{}")
        .replace("payments.PaymentCaptured", "payments.Other");
    decode_failure(body.into_bytes(), Reason::UnknownContract).await;
    let body =
        event_body("payments/PaymentCaptured@1", "e-1", "{}").replace("contextgate:", "https://x/");
    decode_failure(body.into_bytes(), Reason::UnknownContract).await;
}

#[tokio::test]
async fn binary_mode_with_a_wrong_content_type_is_unsupported_encoding() {
    // M7
    let pipeline = pipeline(&repo());
    let delivery = Delivery {
        content_type: Some("application/xml".into()),
        headers: vec![
            ("ce_specversion".into(), "1.0".into()),
            ("ce_id".into(), "1".into()),
            ("ce_source".into(), "/payments".into()),
            ("ce_type".into(), "payments.PaymentCaptured".into()),
            (
                "ce_dataschema".into(),
                "contextgate:payments/PaymentCaptured@1".into(),
            ),
        ],
        body: Bytes::from_static(b"<x/>"),
    };
    let verdict = only(pipeline.process(&context("payments"), &delivery).await);
    dead_letter(&verdict, Stage::Decode, Reason::UnsupportedEncoding);
}

#[tokio::test]
async fn binary_mode_messages_flow_like_structured_ones() {
    let pipeline = pipeline(&repo());
    let data = example("payments/PaymentCaptured/examples/v1/eur-order.json");
    let delivery = Delivery {
        content_type: Some("application/json".into()),
        headers: vec![
            ("cloudEvents:specversion".into(), "1.0".into()),
            ("cloudEvents:id".into(), "1".into()),
            ("cloudEvents:source".into(), "/payments".into()),
            ("cloudEvents:type".into(), "payments.PaymentCaptured".into()),
            (
                "cloudEvents:dataschema".into(),
                "contextgate:payments/PaymentCaptured@1".into(),
            ),
            ("x-death".into(), "forged and ignored".into()),
        ],
        body: Bytes::from(data.to_string()),
    };
    let verdict = on_route(
        pipeline.process(&context("payments"), &delivery).await,
        "payments-to-orders",
    );
    assert_eq!(forwarded(&verdict), vec![data]);
}

#[tokio::test]
async fn format_violations_are_contract_violations() {
    // M8: formats are validated, not only annotated.
    let pipeline = pipeline(&repo());
    let mut data = example("payments/PaymentCaptured/examples/v1/eur-order.json");
    data["captured_at"] = json!("yesterday");
    let verdict = on_route(
        pipeline
            .process(
                &context("payments"),
                &event("payments/PaymentCaptured@1", "e", &data),
            )
            .await,
        "payments-to-orders",
    );
    let failure = dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
    assert!(
        failure
            .problems
            .iter()
            .any(|p| p.pointer.as_deref() == Some("/captured_at")
                && p.keyword.as_deref() == Some("format")),
        "{failure}"
    );
}

#[tokio::test]
async fn numbers_are_forwarded_exactly_or_refused_never_rounded() {
    // M4: a conformist route forwards the bytes; a translator refuses what it cannot hold.
    let fixture = Fixture::new("conformist", None, "");
    for number in [
        "18446744073709551617",
        "9007199254740993",
        "0.30000000000000000001",
    ] {
        let data = format!(r#"{{"id":"a","n":{number}}}"#);
        let delivery = Delivery::structured(event_body("up/Thing@1", "e", &data));
        let verdict = only(fixture.pipeline().process(&context("up"), &delivery).await);
        let contextgate::pipeline::Outcome::Forward { messages } = &verdict.outcome else {
            panic!("{verdict:#?}")
        };
        assert_eq!(&messages[0].data[..], data.as_bytes());
    }

    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { #{ id: data.id, total: 1 } }"),
        "",
    );
    for number in ["18446744073709551617", "0.30000000000000000001"] {
        let data = format!(r#"{{"id":"a","n":{number}}}"#);
        let delivery = Delivery::structured(event_body("up/Thing@1", "e", &data));
        let verdict = only(fixture.pipeline().process(&context("up"), &delivery).await);
        let failure = dead_letter(&verdict, Stage::Translate, Reason::InexactNumber);
        assert!(failure.to_string().contains(number), "{failure}");
    }
    let data = r#"{"id":"a","n":9007199254740993}"#;
    let delivery = Delivery::structured(event_body("up/Thing@1", "e", data));
    let verdict = only(fixture.pipeline().process(&context("up"), &delivery).await);
    assert_eq!(forwarded(&verdict).len(), 1, "an exact i64 goes through");
}

#[tokio::test]
async fn strange_strings_are_validated_like_any_other() {
    // M5
    let fixture = Fixture::new("conformist", None, "");
    for data in [
        json!({"id": "nul\u{0}inside", "n": 1}),
        json!({"id": "x".repeat(500_000), "n": 1}),
    ] {
        let verdict = fixture.run(&data).await;
        assert_eq!(forwarded(&verdict), vec![data]);
    }
    let body = event_body("up/Thing@1", "e", r#"{"id":"\ud800","n":1}"#);
    let verdict = only(
        fixture
            .pipeline()
            .process(&context("up"), &Delivery::structured(body))
            .await,
    );
    dead_letter(&verdict, Stage::Decode, Reason::ParseError);
}
