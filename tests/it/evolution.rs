//! Schema evolution from the command line (issue 5): `contextgate compat` on two files, and
//! `contextgate check --against` on a real git repository made by the test — a commit with the
//! registry, a change adding a version, a change editing a published one — and against a folder.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::helpers::*;

fn contextgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_json(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
}

#[test]
fn compat_answers_compatible_incompatible_and_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let old = json!({
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": false
    });
    write_json(dir.path(), "old.json", &old);
    let mut added = old.clone();
    added["properties"]["b"] = json!({"type": "integer"});
    write_json(dir.path(), "added.json", &added);
    let mut required = old.clone();
    required["required"] = json!(["a"]);
    write_json(dir.path(), "required.json", &required);
    std::fs::write(dir.path().join("broken.json"), "{ not json").unwrap();

    // An optional property added to a closed content model: old documents stay valid.
    let output = contextgate(dir.path(), &["compat", "old.json", "added.json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).starts_with("compatible (backward"));

    // A property made required: an old document without it is the counterexample.
    let output = contextgate(
        dir.path(),
        &["compat", "old.json", "required.json", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["compatible"], false);
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["compatible"] == false && c["path"].is_string() && c["type"].is_string()),
        "{report:#}"
    );
    assert_eq!(report["counterexample"]["valid_under"], 1, "{report:#}");
    assert_eq!(
        report["counterexample"]["document"],
        json!({}),
        "{report:#}"
    );

    // The other way round it is forward incompatible and backward compatible.
    let output = contextgate(dir.path(), &["compat", "required.json", "old.json"]);
    assert_eq!(output.status.code(), Some(0));
    let output = contextgate(
        dir.path(),
        &["compat", "required.json", "old.json", "--level", "full"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("counterexample"));

    for args in [
        vec!["compat", "old.json", "missing.json"],
        vec!["compat", "old.json", "broken.json"],
        vec!["compat", "old.json", "added.json", "--level", "sideways"],
    ] {
        let output = contextgate(dir.path(), &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stdout)
        );
    }
}

/// Writes `value` as JSON at `relative` under `dir`, making its folders.
fn write_json_at(dir: &Path, relative: &str, value: &Value) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

#[test]
fn compat_reads_relative_refs_from_each_file_s_folder() {
    let dir = tempfile::tempdir().unwrap();
    let order = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["id", "total"],
        "properties": {
            "id": {"type": "string"},
            "total": {"$ref": "common/money.json"},
            "customer": {"$ref": "../shared/customer.json#/$defs/customer"}
        }
    });
    let money = |maximum: Option<u64>| {
        let mut amount = json!({"type": "integer", "minimum": 0});
        if let Some(maximum) = maximum {
            amount["maximum"] = json!(maximum);
        }
        json!({
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": amount,
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}
            }
        })
    };
    let customer = json!({"$defs": {"customer": {"type": "object", "properties": {"name": {"type": "string"}}}}});
    write_json_at(dir.path(), "v1/order.json", &order);
    write_json_at(dir.path(), "v1/common/money.json", &money(None));
    write_json_at(dir.path(), "v2/order.json", &order);
    write_json_at(dir.path(), "v2/common/money.json", &money(Some(1_000_000)));
    write_json_at(dir.path(), "shared/customer.json", &customer);

    // The break is inside v2's own common/money.json: the answer names it where it is used, and
    // the counterexample holds an amount just past the new maximum.
    let output = contextgate(
        dir.path(),
        &[
            "compat",
            "v1/order.json",
            "v2/order.json",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let incompatible: Vec<&Value> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["compatible"] == false)
        .collect();
    assert_eq!(incompatible.len(), 1, "{report:#}");
    assert_eq!(incompatible[0]["type"], "MAXIMUM_ADDED");
    assert_eq!(
        incompatible[0]["path"],
        "#/properties/total/properties/amount/maximum"
    );
    let document = &report["counterexample"]["document"];
    assert!(
        document["total"]["amount"]
            .as_u64()
            .is_some_and(|amount| amount > 1_000_000),
        "{report:#}"
    );
    assert!(document["total"]["currency"].is_string(), "{report:#}");

    // The same files on both sides are compatible.
    let output = contextgate(dir.path(), &["compat", "v1/order.json", "v1/order.json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    // A referenced file that is missing, or outside the file's folder and its siblings, stops
    // the command (exit 2) and says which $ref.
    write_json_at(
        dir.path(),
        "v3/order.json",
        &json!({"properties": {"total": {"$ref": "common/missing.json"}}}),
    );
    write_json_at(dir.path(), "outside.json", &money(None));
    // Two folders up from deep/v4/: outside the tree of its parent (deep/).
    write_json_at(
        dir.path(),
        "deep/v4/order.json",
        &json!({"properties": {"total": {"$ref": "../../outside.json"}}}),
    );
    for (new, needle) in [
        ("v3/order.json", "common/missing.json"),
        ("deep/v4/order.json", "leaves"),
    ] {
        let output = contextgate(dir.path(), &["compat", "v1/order.json", new]);
        assert_eq!(output.status.code(), Some(2), "{new}");
        assert!(
            text(&output.stderr).contains(needle),
            "{}",
            text(&output.stderr)
        );
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// `contextgate check --registry ROOT --against BASELINE [--format FORMAT]`, run in `root`.
fn check_against(root: &Path, baseline: &str, format: Option<&str>) -> Output {
    let mut args = vec![
        "check",
        "--registry",
        root.to_str().unwrap(),
        "--against",
        baseline,
    ];
    args.extend(format.iter().flat_map(|format| ["--format", format]));
    contextgate(root, &args)
}

fn add_version(dir: &Path, version: u32, schema: &Value) {
    let folder = dir.join("contracts/orders/OrderPlaced");
    write_json(&folder, &format!("v{version}.json"), schema);
}

#[test]
fn check_against_a_git_revision_guards_published_versions_and_checks_new_ones() {
    let dir = shipped_registry_copy();
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "the registry"]);

    // A compatible v3: shipping_address is no longer required.
    let v3 = compatible_order_placed_v3(root);
    add_version(root, 3, &v3);
    // Its example ships to the US, which shipping's translator (still reading v2) does not serve.
    let mut us = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    us["shipping_address"]["country"] = json!("US");
    let examples = root.join("contracts/orders/OrderPlaced/examples/v3");
    std::fs::create_dir_all(&examples).unwrap();
    write_json(&examples, "us.json", &us);
    let output = check_against(root, "HEAD", None);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("notice"),
        "routes still on v2 are named: {stdout}"
    );
    assert!(
        stdout.contains("orders-to-shipping takes orders/OrderPlaced@2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("translators/shipping/prepare_shipments.rhai: warning: translator shipping/prepare_shipments reads orders/OrderPlaced@2; on orders/OrderPlaced@3's example contracts/orders/OrderPlaced/examples/v3/us.json it fails"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: "), "{stdout}");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "OrderPlaced v3"]);

    // A published version edited: an error, whatever else is fine.
    let mut v1 = order_placed(root, 1);
    v1["description"] = json!("Edited after publication.");
    std::fs::write(
        root.join("contracts/orders/OrderPlaced/v1.json"),
        serde_json::to_string_pretty(&v1).unwrap(),
    )
    .unwrap();
    let output = check_against(root, "HEAD", None);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("contracts/orders/OrderPlaced/v1.json: version 1 of orders/OrderPlaced was published and its content changed"),
        "{stdout}"
    );
    // Against the first commit, v3 is new as well, and still compatible.
    let output = check_against(root, "HEAD~1", Some("json"));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let rules: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"version-changed"), "{report:#}");
    assert!(!rules.contains(&"incompatible"), "{report:#}");
    git(root, &["checkout", "-q", "--", "."]);

    // An incompatible v4: a new required property. Each format says so.
    let mut v4 = v3.clone();
    v4["properties"]["gift"] = json!({"type": "boolean"});
    v4["required"].as_array_mut().unwrap().push(json!("gift"));
    add_version(root, 4, &v4);
    let output = check_against(root, "HEAD", None);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("contracts/orders/OrderPlaced/v4.json: version 4 of orders/OrderPlaced is not backward compatible"), "{stdout}");
    assert!(stdout.contains("REQUIRED_PROPERTY_ADDED"), "{stdout}");
    assert!(
        stdout.contains("valid under v3, rejected by v4"),
        "{stdout}"
    );
    let output = check_against(root, "HEAD", Some("github"));
    assert!(
        text(&output.stdout)
            .contains("::error file=contracts/orders/OrderPlaced/v4.json,title=incompatible::"),
        "{}",
        text(&output.stdout)
    );
    let output = check_against(root, "HEAD", Some("junit"));
    let junit = text(&output.stdout);
    assert!(junit.starts_with("<?xml"), "{junit}");
    assert!(
        junit.contains(
            "<failure message=\"version 4 of orders/OrderPlaced is not backward compatible"
        ),
        "{junit}"
    );

    // Accepted on purpose, with a reason: a notice, not an error.
    let metadata = root.join("contracts/orders/OrderPlaced/contract.toml");
    let mut toml = std::fs::read_to_string(&metadata).unwrap();
    toml.push_str("\n[accept_breaking]\nv4 = \"Gift wrapping became mandatory; every producer ships v4 the same day.\"\n");
    std::fs::write(&metadata, toml).unwrap();
    let output = check_against(root, "HEAD", None);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("notice: version 4 of orders/OrderPlaced breaks backward compatibility, accepted in contract.toml: Gift wrapping"), "{stdout}");

    // A folder works as a baseline too; a revision that does not exist cannot run.
    let baseline = shipped_registry_copy();
    let output = check_against(root, baseline.path().to_str().unwrap(), None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let output = check_against(root, "no-such-branch", None);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("neither a folder nor a git revision"));
}
