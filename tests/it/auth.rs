//! Credentials over HTTP (RELIABILITY A1, A2, A12 by construction): each endpoint × {owner,
//! another context, operator, no token, unknown token, malformed header}, the same 401 body
//! whatever the reason, nothing done on a refusal; and the real binary's `hash-token` and
//! `serve --credentials`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use contextgate::api::auth::{Credentials, hash_token};
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use contextgate::pipeline::Pipeline;

use crate::helpers::*;

const OPERATOR: &str = "operator-secret-1";
const ORDERS: &str = "orders-secret-2";
const SHIPPING: &str = "shipping-secret-3";

fn credentials_toml() -> String {
    format!(
        "operator = [{:?}]\n[contexts]\norders = [{:?}]\nshipping = [{:?}]\n",
        hash_token(OPERATOR),
        hash_token(ORDERS),
        hash_token(SHIPPING)
    )
}

async fn guarded_gateway() -> String {
    let registry = contextgate::registry::load(&repo()).unwrap();
    serve_gateway_with(
        Gateway::new(
            Pipeline::new(Arc::new(registry)),
            Bus::InProcess(InProcessBus::default()),
        ),
        Credentials::parse(&credentials_toml()).unwrap(),
    )
    .await
}

/// The `Authorization` header each kind of caller sends.
const CALLERS: [(&str, Option<&str>); 7] = [
    ("operator", Some("Bearer operator-secret-1")),
    ("orders", Some("Bearer orders-secret-2")),
    ("shipping", Some("bearer shipping-secret-3")),
    ("no token", None),
    ("unknown token", Some("Bearer not-a-token")),
    ("basic scheme", Some("Basic b3JkZXJzOnNlY3JldA==")),
    ("empty bearer", Some("Bearer ")),
];

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<String>,
) -> (u16, String, Option<String>) {
    let mut request = crate::helpers::http().request(method, format!("{base}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/cloudevents+json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), challenge)
}

fn command() -> String {
    let data = example("payments/AuthorizePayment/examples/v1/eur-order.json");
    event_body("payments/AuthorizePayment@1", "m-1", &data.to_string())
}

#[tokio::test]
async fn every_endpoint_answers_each_caller_as_ownership_says() {
    let base = guarded_gateway().await;
    // (caller, POST as orders, GET shipping's inbox, GET dead letters)
    let expected: [(&str, u16, u16, u16); 7] = [
        ("operator", 202, 200, 200),
        ("orders", 202, 403, 403),
        ("shipping", 403, 200, 403),
        ("no token", 401, 401, 401),
        ("unknown token", 401, 401, 401),
        ("basic scheme", 401, 401, 401),
        ("empty bearer", 401, 401, 401),
    ];
    let mut unauthorized_bodies = Vec::new();
    for ((name, authorization), (expected_name, post, inbox, dead)) in CALLERS.iter().zip(expected)
    {
        assert_eq!(*name, expected_name);
        let answers = [
            call(
                &base,
                reqwest::Method::POST,
                "/v1/contexts/orders/messages",
                *authorization,
                Some(command()),
            )
            .await,
            call(
                &base,
                reqwest::Method::GET,
                "/v1/contexts/shipping/inbox",
                *authorization,
                None,
            )
            .await,
            call(
                &base,
                reqwest::Method::GET,
                "/v1/dead-letters",
                *authorization,
                None,
            )
            .await,
        ];
        for ((status, body, challenge), want) in answers.into_iter().zip([post, inbox, dead]) {
            assert_eq!(status, want, "{name}: {body}");
            if status == 401 {
                assert_eq!(challenge.as_deref(), Some("Bearer"));
                unauthorized_bodies.push(body);
            }
        }
    }
    unauthorized_bodies.dedup();
    assert_eq!(
        unauthorized_bodies.len(),
        1,
        "one 401 body whatever the reason: {unauthorized_bodies:?}"
    );
    // Health and metrics stay open.
    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert_eq!(
            call(&base, reqwest::Method::GET, path, None, None).await.0,
            200
        );
    }
}

#[tokio::test]
async fn a_refused_post_publishes_nothing() {
    let base = guarded_gateway().await;
    let shipping = Some("Bearer shipping-secret-3");
    let as_orders = "/v1/contexts/orders/messages";
    let shipping_inbox = || {
        call(
            &base,
            reqwest::Method::GET,
            "/v1/contexts/shipping/inbox",
            shipping,
            None,
        )
    };
    let event = std::fs::read_to_string(repo().join("examples/order-placed.json")).unwrap();
    for authorization in [shipping, None, Some("Bearer nope")] {
        let (status, ..) = call(
            &base,
            reqwest::Method::POST,
            as_orders,
            authorization,
            Some(event.clone()),
        )
        .await;
        assert!(status == 401 || status == 403, "{status}");
    }
    let (_, inbox, _) = shipping_inbox().await;
    assert_eq!(inbox, "[]", "nothing reached shipping");
    let (status, ..) = call(
        &base,
        reqwest::Method::POST,
        as_orders,
        Some("Bearer orders-secret-2"),
        Some(event),
    )
    .await;
    assert_eq!(status, 202);
    let (_, inbox, _) = shipping_inbox().await;
    let inbox: Vec<serde_json::Value> = serde_json::from_str(&inbox).unwrap();
    assert_eq!(inbox.len(), 3);
}

#[test]
fn hash_token_prints_the_digest_the_credentials_store() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"orders-secret-2\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed.trim(), hash_token(ORDERS));
    assert_eq!(printed.trim().len(), 64);
}

#[test]
fn serve_refuses_credentials_that_hold_a_token_in_clear() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("credentials.toml");
    std::fs::write(&file, "operator = [\"operator-secret-1\"]\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(&file)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a SHA-256 digest"), "{stderr}");
    assert!(
        !stderr.contains("operator-secret-1"),
        "the token is never echoed: {stderr}"
    );
}

/// Starts the real `serve` with `credentials` as a file (or, with `in_env`, as
/// `CONTEXTGATE_CREDENTIALS`) and expects it to refuse them at start: its exit code and
/// standard error. One that starts serving is stopped and fails the test.
fn serve_refusing(credentials: &str, in_env: bool) -> (Option<i32>, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("credentials.toml");
    std::fs::write(&file, credentials).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_contextgate"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(repo())
        .env_remove("CONTEXTGATE_CREDENTIALS_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if in_env {
        command.env("CONTEXTGATE_CREDENTIALS", credentials);
    } else {
        command
            .env_remove("CONTEXTGATE_CREDENTIALS")
            .arg("--credentials")
            .arg(&file);
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "serve started with these credentials: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn serve_says_which_credential_entry_is_wrong_and_never_echoes_it() {
    let orders = hash_token(ORDERS);
    // Each: the credentials, in a file or the variable, and what the refusal must say.
    let cases = [
        (
            "operator = \"operator-secret-1\"\n".to_owned(),
            false,
            "operator (line 1): must be an array of digests",
        ),
        (
            "operator = \"operator-secret-1\"\n".to_owned(),
            true,
            "CONTEXTGATE_CREDENTIALS were refused: operator (line 1)",
        ),
        (
            format!("[contexts]\norders = [{orders:?}]\nshipping = [operator-secret-1]\n"),
            false,
            "not valid TOML at line 3, column 13",
        ),
        (
            format!("[contexts]\norders = [{orders:?}]\nshipping = [\"operator-secret-1\n"),
            true,
            "not valid TOML at line 3",
        ),
        (
            format!("operator-secret-1 = [{orders:?}]\n"),
            false,
            "line 1: unknown key",
        ),
        (
            "[contexts]\norders = [\"operator-secret-1\"]\n".to_owned(),
            false,
            "contexts.orders, entry 1 (line 2): not a SHA-256 digest",
        ),
        // A token written as a key, where a context's name goes: a valid name, but none of the
        // registry's.
        (
            format!(
                "[contexts]\norders = [{orders:?}]\noperator-secret-1 = [{:?}]\n",
                hash_token("x")
            ),
            false,
            "contexts, the entry at line 3: its name is not a context of the registry",
        ),
        (
            format!(
                "[contexts]\norders = [{orders:?}]\n\"operator-secret-1\" = [{:?}]\n",
                hash_token("x")
            ),
            true,
            "CONTEXTGATE_CREDENTIALS were refused: contexts, the entry at line 3",
        ),
    ];
    for (credentials, in_env, expected) in cases {
        let (code, stderr) = serve_refusing(&credentials, in_env);
        assert_eq!(code, Some(2), "{credentials:?}: {stderr}");
        assert!(stderr.contains(expected), "{credentials:?}: {stderr}");
        assert!(
            !stderr.contains("operator-secret-1"),
            "{credentials:?}: the token is echoed: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_credentials_for_an_unknown_context_or_a_digest_with_two_owners() {
    let orders = hash_token(ORDERS);
    let cases = [
        (
            format!(
                "[contexts]\norders = [{orders:?}]\nbilling = [{:?}]\n",
                hash_token("b")
            ),
            "contexts, the entry at line 3: its name is not a context of the registry",
        ),
        (
            format!("operator = [{orders:?}]\n[contexts]\norders = [{orders:?}]\n"),
            "contexts.orders, entry 1 (line 3): the same digest as operator, entry 1 (line 1)",
        ),
        (
            format!(
                "[contexts]\norders = [{orders:?}]\nshipping = [{:?}, {orders:?}]\n",
                hash_token(SHIPPING)
            ),
            "contexts.shipping, entry 2 (line 3): the same digest as contexts.orders, entry 1 (line 2)",
        ),
    ];
    for (credentials, expected) in cases {
        let (code, stderr) = serve_refusing(&credentials, false);
        assert_eq!(code, Some(2), "{credentials:?}: {stderr}");
        assert!(stderr.contains(expected), "{credentials:?}: {stderr}");
    }
}
