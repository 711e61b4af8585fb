//! The OpenAPI document (`GET /openapi.json`) and schemathesis against the real binary (A7):
//! with the operator's token and with one context's token, zero server errors and zero answers
//! that contradict the document.

use std::path::PathBuf;
use std::process::Command;

use contextgate::api::auth::hash_token;
use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::Gateway;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_document_describes_every_operation_of_the_router() {
    let dir = shipped_registry_copy();
    let base = serve_gateway(Gateway::new(
        pipeline(dir.path()),
        Bus::InProcess(InProcessBus::default()),
    ))
    .await;
    let body = crate::helpers::http()
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let document: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let operations = [
        ("/v1/contexts/{context}/messages", "post"),
        ("/v1/contexts/{context}/inbox", "get"),
        ("/v1/contexts/{context}/contracts", "get"),
        (
            "/v1/contexts/{context}/contracts/{name}/versions/{version}",
            "get",
        ),
        (
            "/v1/contexts/{context}/contracts/{name}/versions/{version}",
            "put",
        ),
        ("/v1/contexts/{context}/translators", "get"),
        ("/v1/contexts/{context}/translators/{name}", "get"),
        ("/v1/contexts/{context}/translators/{name}", "put"),
        ("/v1/routes", "get"),
        ("/v1/routes/{route}", "get"),
        ("/v1/routes/{route}", "put"),
        ("/v1/routes/{route}", "delete"),
        ("/v1/routes/{route}/dry-run", "post"),
        ("/v1/dead-letters", "get"),
        ("/v1/routes/{route}/dead-letters", "get"),
        ("/v1/routes/{route}/dead-letters/redrive", "post"),
        ("/v1/routes/{route}/dead-letters/{id}", "get"),
        ("/v1/routes/{route}/dead-letters/{id}", "delete"),
        ("/v1/routes/{route}/dead-letters/{id}/redrive", "post"),
        ("/v1/replays", "post"),
        ("/v1/replays", "get"),
        ("/v1/replays/{id}", "get"),
        ("/v1/replays/{id}", "delete"),
        ("/v1/map", "get"),
        ("/v1/contexts/{context}/contracts/{name}/compat", "get"),
        ("/v1/contexts/{context}/translators/{name}/run", "post"),
        ("/v1/routes/{route}/stats", "get"),
        ("/v1/whoami", "get"),
        ("/v1/contexts/{context}/asyncapi", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    let paths = document["paths"].as_object().unwrap();
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, operations.len(), "{:?}", paths.keys());
    for (path, method) in operations {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        if path.starts_with("/v1/") {
            for status in ["401", "403", "503"] {
                assert_eq!(
                    operation["responses"][status]["content"]["application/problem+json"]["schema"]
                        ["$ref"],
                    "#/components/schemas/ProblemDocument",
                    "{method} {path} {status}"
                );
            }
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Errors the router itself produces are problem documents too.
    let response = crate::helpers::http()
        .get(format!(
            "{base}/v1/routes/orders-to-shipping/dead-letters?max=lots"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// The schemathesis CLI: `CONTEXTGATE_SCHEMATHESIS`, as `scripts/test` installs it.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("CONTEXTGATE_SCHEMATHESIS").map(PathBuf::from).expect(
        "CONTEXTGATE_SCHEMATHESIS is not set: run the suite through scripts/test, which installs \
         schemathesis from PyPI, or point it at an `st` executable",
    );
    assert!(
        path.is_file(),
        "CONTEXTGATE_SCHEMATHESIS={} is not a file",
        path.display()
    );
    path
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_against_the_document() {
    let st = schemathesis();
    let dir = shipped_registry_copy();
    let credentials = format!(
        "operator = [{:?}]\n[contexts]\nshipping = [{:?}]\n",
        hash_token("st-operator"),
        hash_token("st-shipping")
    );
    let (mut child, base) = serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
            .arg(dir.path())
            .env("CONTEXTGATE_CREDENTIALS", credentials)
            .env_remove("CONTEXTGATE_CREDENTIALS_FILE")
            .env_remove("CONTEXTGATE_AMQP_URL"),
    );
    let reports = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (who, token) in [("operator", "st-operator"), ("shipping", "st-shipping")] {
        let junit = reports.path().join(format!("{who}.xml"));
        let output = Command::new(&st)
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
                "--max-examples",
                "50",
                // One worker: Hypothesis's caches are not thread-safe, and two workers made
                // schemathesis itself crash now and then (a KeyError in its lambda-source cache).
                "--workers",
                "1",
                "--seed",
                "20261127",
                "--report",
                "junit",
                "--report-junit-path",
            ])
            .arg(&junit)
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .env("NO_COLOR", "1")
            // Its caches go with the reports, not into the checkout.
            .current_dir(reports.path())
            .output()
            .expect("schemathesis runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            failures.push(format!(
                "as {who}: exit {:?}\n{stdout}\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        assert!(
            stdout.contains("passed"),
            "schemathesis ran no test as {who}: {stdout}"
        );
        assert!(junit.is_file(), "no JUnit report as {who}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
