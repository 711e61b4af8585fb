//! The real binary on good and deliberately broken registries.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::*;

fn contextgate(args: &[&str]) -> Output {
    run_binary(args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_passes_on_the_shipped_registry() {
    let output = contextgate(&["check", "--registry", repo().to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).starts_with("ok: 5 contexts"),
        "{}",
        text(&output.stdout)
    );
}

/// Breaks the shipped registry in one way per kind of problem `check` must find.
fn broken_registry() -> tempfile::TempDir {
    let dir = shipped_registry_copy();
    let root = dir.path();
    let edit = |relative: &str, from: &str, to: &str| {
        let path = root.join(relative);
        let contents = std::fs::read_to_string(&path).unwrap();
        assert!(contents.contains(from), "{relative} has no {from:?}");
        std::fs::write(path, contents.replacen(from, to, 1)).unwrap();
    };
    // an invalid schema
    write(
        root,
        "contracts/payments/PaymentCaptured/v2.json",
        r#"{"type": "objekt"}"#,
    );
    // an unresolved $ref
    write(
        root,
        "contracts/payments/AuthorizePayment/v2.json",
        r#"{"$ref": "../Nope/v1.json"}"#,
    );
    // an example that does not validate
    write(
        root,
        "contracts/orders/OrderPlaced/examples/v1/broken.json",
        r#"{"order_id": 1}"#,
    );
    // a translator that does not compile
    edit(
        "translators/customers/publish_customer_updated.rhai",
        "fn translate",
        "fn translate(data) { let = 1; }\nfn unused",
    );
    // a case whose output differs
    edit(
        "translators/notifications/dispatch_email.cases.json",
        "shipment-dispatched",
        "shipment-shipped",
    );
    // a route naming a missing context, a missing contract and a missing translator
    edit(
        "contextgate.toml",
        "upstream = \"orders\"",
        "upstream = \"warehouse\"",
    );
    edit(
        "contextgate.toml",
        "payments/PaymentCaptured@1",
        "payments/PaymentCaptured@7",
    );
    edit(
        "contextgate.toml",
        "shipping/prepare_shipments",
        "shipping/prepare_everything",
    );
    // a translator in the folder of a context that does not own it for its mode
    std::fs::rename(
        root.join("translators/notifications"),
        root.join("translators/shipping-notes"),
    )
    .unwrap();
    edit(
        "contextgate.toml",
        "[contexts.shipping]",
        "[contexts.shipping-notes]\n[contexts.shipping]",
    );
    edit(
        "contextgate.toml",
        "notifications/dispatch_email",
        "shipping-notes/dispatch_email",
    );
    dir
}

#[test]
fn check_names_every_problem_with_its_file_and_exits_1() {
    let dir = broken_registry();
    let output = contextgate(&["check", "--registry", dir.path().to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for expected in [
        "contracts/payments/PaymentCaptured/v2.json:1:10: invalid schema: at /type",
        "contracts/payments/AuthorizePayment/v2.json:1:10: $ref \"../Nope/v1.json\" (contextgate://registry/contracts/payments/Nope/v1.json) names no schema of this registry",
        "contracts/orders/OrderPlaced/examples/v1/broken.json:1:1: example is invalid",
        "translators/customers/publish_customer_updated.rhai:3:26: script does not compile",
        // Its routes are skipped in one line, not refused once each.
        "contextgate.toml: route customers-to-orders, route customers-to-notifications skipped: translator customers/publish_customer_updated did not load",
        "translators/shipping-notes/dispatch_email.cases.json: case",
        "upstream warehouse is not a context",
        "contract payments/PaymentCaptured@7 does not exist",
        "translator shipping/prepare_everything does not exist",
        "translator shipping-notes/dispatch_email belongs to shipping-notes, but an enrich",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("problem(s) found"));
}

#[test]
fn check_reports_json_for_machines() {
    let dir = broken_registry();
    let output = contextgate(&[
        "check",
        "--registry",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert!(problems.len() >= 9, "{report:#}");
    assert!(
        problems
            .iter()
            .all(|p| p["file"].is_string() && p["message"].is_string())
    );
    assert!(problems.iter().any(|p| p["line"].is_number()));
}

#[test]
fn check_that_cannot_run_exits_2() {
    let output = contextgate(&["check", "--registry", "/nonexistent/registry"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read the registry"));
    let output = contextgate(&["check", "--format", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let output = contextgate(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

fn translate(route: &str, event_file: &Path) -> Output {
    contextgate(&[
        "translate",
        "--registry",
        repo().to_str().unwrap(),
        "--route",
        route,
        event_file.to_str().unwrap(),
    ])
}

#[test]
fn translate_dry_runs_one_message_and_prints_the_outcome() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    let path = dir.path().join("event.json");
    std::fs::write(
        &path,
        event_body("orders/OrderPlaced@2", "e-1", &data.to_string()),
    )
    .unwrap();

    let output = translate("orders-to-shipping", &path);

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["route"], "orders-to-shipping");
    assert_eq!(verdict["outcome"], "forward");
    let messages = verdict["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "ams (no warehouse), ber and lis");
    assert_eq!(messages[0]["type"], "shipping.PrepareShipment");
    assert_eq!(messages[0]["data"]["order_id"], data["order_id"]);
}

#[test]
fn translate_reports_a_dead_letter_with_exit_1() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(
        &path,
        event_body("orders/OrderPlaced@2", "e-1", r#"{"order_id": 5}"#),
    )
    .unwrap();

    let output = translate("orders-to-shipping", &path);

    assert_eq!(output.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["outcome"], "dead-letter");
    assert_eq!(verdict["failure"]["stage"], "validate-in");
    assert!(
        verdict["failure"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pointer"] == "/order_id")
    );
}

#[test]
fn translate_with_an_unknown_route_exits_2() {
    let output = translate("nowhere-to-go", Path::new("-"));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_readme_commands_work_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for command in [
        "cargo run --release -- serve",
        "cargo run --release -- check",
        "cargo run --release -- translate --route orders-to-shipping examples/order-placed.json",
    ] {
        assert!(
            readme.contains(command),
            "README no longer says {command:?}"
        );
    }
    // The same commands on the built binary, from the repository root as the README runs them.
    let check = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .arg("check")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
    let translate = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args([
            "translate",
            "--route",
            "orders-to-shipping",
            "examples/order-placed.json",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(
        translate.status.code(),
        Some(0),
        "{}",
        text(&translate.stderr)
    );
    let verdict: Value = serde_json::from_slice(&translate.stdout).unwrap();
    assert_eq!(verdict["outcome"], "forward");
}

#[test]
fn the_readmes_context_map_is_the_shipped_registrys() {
    // The tour shows `contextgate map` of the shipped registry: it must not drift from it.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let shown = readme
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README's tour shows the map in a mermaid block");
    let map = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .arg("map")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(map.status.code(), Some(0), "{}", text(&map.stderr));
    assert_eq!(
        shown,
        text(&map.stdout),
        "README's map is stale: paste `contextgate map`"
    );
}

#[test]
fn translate_into_a_closed_pipe_exits_quietly() {
    // `contextgate translate … | head -1` where head has gone: the read end is closed before
    // the binary writes its verdict.
    let dir = tempfile::TempDir::new().unwrap();
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    let path = dir.path().join("event.json");
    std::fs::write(
        &path,
        event_body("orders/OrderPlaced@2", "e-1", &data.to_string()),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["translate", "--registry", repo().to_str().unwrap()])
        .args(["--route", "orders-to-shipping", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());

    let output = child.wait_with_output().unwrap();

    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );

    // `hash-token` writes the same way.
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a-token\n").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_help_names_the_environment_but_never_shows_a_secret_from_it() {
    for args in [
        &["serve", "--help"][..],
        &["serve", "-h"][..],
        &["help", "serve"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(args)
            .env(
                "CONTEXTGATE_AMQP_URL",
                "amqp://gateway:amqp-password-1@broker.internal:5672/%2f",
            )
            .env(
                "CONTEXTGATE_CREDENTIALS_FILE",
                "/run/secrets/credentials-file-1.toml",
            )
            .env(
                "CONTEXTGATE_CREDENTIALS",
                "operator = [\"credentials-text-1\"]",
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let help = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{args:?}: {help}");
        assert!(help.contains("CONTEXTGATE_AMQP_URL"), "{args:?}: {help}");
        for secret in [
            "amqp-password-1",
            "broker.internal",
            "credentials-file-1",
            "credentials-text-1",
        ] {
            assert!(!help.contains(secret), "{args:?} shows {secret}: {help}");
        }
    }
}

#[test]
fn check_judges_the_history_inside_the_folder_without_a_baseline() {
    let dir = shipped_registry_copy();
    let root = dir.path();
    let mut v3: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("contracts/orders/OrderPlaced/v2.json")).unwrap(),
    )
    .unwrap();
    // A new required property: data valid under v2 is refused by v3.
    v3["required"]
        .as_array_mut()
        .unwrap()
        .push(Value::from("gift_wrap"));
    v3["properties"]["gift_wrap"] = serde_json::json!({"type": "boolean"});
    write(
        root,
        "contracts/orders/OrderPlaced/v3.json",
        &v3.to_string(),
    );
    let output = contextgate(&["check", "--registry", root.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "contracts/orders/OrderPlaced/v3.json: version 3 of orders/OrderPlaced is not backward compatible (lenient policy)"
        ) && stdout.contains("is valid under v2, rejected by v3"),
        "{stdout}"
    );
    let metadata = root.join("contracts/orders/OrderPlaced/contract.toml");
    let mut toml = std::fs::read_to_string(&metadata).unwrap();
    toml.push_str("\n[accept_breaking]\nv3 = \"Gift wrapping is mandatory from now on.\"\n");
    std::fs::write(&metadata, toml).unwrap();
    let output = contextgate(&["check", "--registry", root.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("notice: version 3 of orders/OrderPlaced breaks backward compatibility, accepted in contract.toml: Gift wrapping"),
        "{stdout}"
    );
}
