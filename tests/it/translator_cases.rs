//! Translator test cases at load and at registration (issue 10, item 7): a registration runs
//! only the cases its change can affect and never waits on another context's cases; cases have
//! a count cap and a time budget per translator; a registration that cannot have its turn in
//! time is answered 503 with nothing written.

use std::path::Path;
use std::time::{Duration, Instant};

use contextgate::api::auth::{Credentials, hash_token};
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;
use crate::registration::{put, put_json, snapshot};

const SLOW: &str = "Bearer slow-secret-1";
const QUICK: &str = "Bearer quick-secret-2";

/// A case that runs until the sandbox's 50 ms budget stops it, and expects just that: passing,
/// but slow on every machine (each turn of the loop copies 64 KiB).
const SPIN: &str =
    "fn translate(data) { let s = \"a\"; for i in 0..15 { s += s; } loop { let t = s + s; } }";
const COPY: &str = "fn translate(data) { #{ id: data.id } }";

fn spin_cases(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"name": format!("spin {i}"), "input": {"id": format!("{i}")}, "expect_error": "the translator ran"}))
        .collect()
}

fn copy_cases(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"name": format!("copy {i}"), "input": {"id": format!("{i}")}, "expect": {"id": format!("{i}")}}))
        .collect()
}

/// Contexts `slow` and `quick`, each with an event `Thing@1` {id}; `slow` has `n_spinning`
/// translators of `n_cases` spinning cases each.
fn registry(n_spinning: usize, n_cases: usize) -> TempDir {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(
        root,
        "contextgate.toml",
        "[contexts.slow]\n[contexts.quick]\n",
    );
    for context in ["slow", "quick"] {
        write(
            root,
            &format!("contracts/{context}/Thing/contract.toml"),
            "kind = \"event\"\n",
        );
        write(
            root,
            &format!("contracts/{context}/Thing/v1.json"),
            &json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}})
                .to_string(),
        );
    }
    // Each script differs (a comment), so that no two translators share their cases' verdicts.
    for i in 0..n_spinning {
        let script = format!("{SPIN} // spin {i}");
        write_translator(
            root,
            &format!("slow/spin_{i}"),
            &script,
            &spin_cases(n_cases),
        );
    }
    dir
}

fn write_translator(root: &Path, id: &str, script: &str, cases: &Value) {
    let (context, _) = id.split_once('/').unwrap();
    write(root, &format!("translators/{id}.rhai"), script);
    write(
        root,
        &format!("translators/{id}.toml"),
        &format!("input = \"{context}/Thing@1\"\noutput = \"{context}/Thing@1\"\n"),
    );
    write(
        root,
        &format!("translators/{id}.cases.json"),
        &cases.to_string(),
    );
}

fn translator(context: &str, script: &str, cases: Value) -> Value {
    json!({
        "input": format!("{context}/Thing@1"),
        "output": format!("{context}/Thing@1"),
        "script": script,
        "cases": cases,
    })
}

async fn serve(root: &Path) -> (std::sync::Arc<Gateway>, String) {
    let credentials = Credentials::parse(&format!(
        "operator = [{:?}]\n[contexts]\nslow = [{:?}]\nquick = [{:?}]\n",
        hash_token("operator-secret-0"),
        hash_token("slow-secret-1"),
        hash_token("quick-secret-2")
    ))
    .unwrap();
    let gateway = Gateway::new(pipeline(root), Bus::InProcess(InProcessBus::default()));
    let base = serve_gateway_with(gateway.clone(), credentials).await;
    (gateway, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_neither_reruns_nor_waits_for_another_context_s_slow_cases() {
    // Arrange: six translators of `slow` with 40 passing cases of ~50 ms each.
    let dir = registry(6, 40);
    let started = Instant::now();
    let (_gateway, base) = serve(dir.path()).await;
    let all_cases = started.elapsed();
    assert!(
        all_cases > Duration::from_secs(10),
        "the slow cases take {all_cases:?} in all: the test needs them to be slow"
    );

    // Act and assert: another context's registration runs none of them.
    let started = Instant::now();
    let (status, body) = put_json(
        &base,
        "/v1/contexts/quick/translators/copy",
        QUICK,
        &translator("quick", COPY, copy_cases(3)),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{body}");
    assert!(
        took < Duration::from_secs(3),
        "quick's registration took {took:?}"
    );

    // `slow` registers a translator over the budget; meanwhile `quick` registers again and
    // waits on none of it.
    let over_budget = {
        let base = base.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = put_json(
                &base,
                "/v1/contexts/slow/translators/spin_over",
                SLOW,
                &translator("slow", SPIN, spin_cases(150)),
            )
            .await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let started = Instant::now();
    let (status, body) = put(
        &base,
        "/v1/contexts/quick/contracts/Other/versions/1?kind=event",
        Some(QUICK),
        r#"{"type": "object"}"#,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{body}");
    assert!(
        took < Duration::from_secs(3),
        "quick's registration beside slow's took {took:?}"
    );

    let ((status, refused), took) = over_budget.await.unwrap();
    assert_eq!(status, 422, "{refused}");
    let problems = refused["problems"].to_string();
    assert!(
        problems.contains("translators/slow/spin_over.cases.json")
            && problems.contains("take more than 5 s in all"),
        "{refused}"
    );
    assert!(took < Duration::from_secs(15), "refused after {took:?}");
    assert!(!dir.path().join("translators/slow/spin_over.rhai").exists());
}

#[test]
fn a_translator_over_the_case_cap_or_the_time_budget_is_refused_at_load() {
    let dir = registry(0, 0);
    write_translator(dir.path(), "quick/many", COPY, &copy_cases(1_001));
    write_translator(dir.path(), "slow/spin_over", SPIN, &spin_cases(120));

    let problems = problems(dir.path());

    assert!(
        problems.iter().any(|problem| problem
            .starts_with("translators/quick/many.cases.json: 1001 cases, over the cap of 1000")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|problem| problem
            .starts_with("translators/slow/spin_over.cases.json: the cases of slow/spin_over take more than 5 s in all")),
        "{problems:#?}"
    );
}

#[tokio::test]
async fn a_registration_that_cannot_have_its_turn_in_time_is_answered_503_and_not_written() {
    let dir = registry(0, 0);
    let (gateway, base) = serve(dir.path()).await;
    let before = snapshot(dir.path());

    // Another change holds the registry for longer than a registration may wait.
    let _held = gateway.registering().await;
    let started = Instant::now();
    let (status, body) = put(
        &base,
        "/v1/contexts/quick/contracts/Other/versions/1?kind=event",
        Some(QUICK),
        r#"{"type": "object"}"#,
    )
    .await;
    let took = started.elapsed();

    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(snapshot(dir.path()), before);
    assert!(
        gateway
            .pipeline()
            .registry()
            .contracts
            .keys()
            .all(|name| name.name() != "Other")
    );
}
