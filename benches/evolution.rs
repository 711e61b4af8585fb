//! `contextgate check --against` on a big registry: 1 000 contracts with 5 versions each
//! (generated here), against a baseline that has only their first version, so that 4 000 new
//! versions are each checked against every earlier one (events default to backward-transitive:
//! 10 000 comparisons). One contract in twenty has an incompatible last version, so the
//! counterexample search runs too. The target: under 2 s for the whole check (load + compare).
//!
//! Run: `cargo bench --bench evolution` (`-- --rounds N`, default 5). It times the real binary
//! when `CONTEXTGATE_BIN` names it (a release build), the library otherwise, and prints both
//! parts: loading the registry (which `check` always does) and the comparison.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

const CONTRACTS: usize = 1_000;
const VERSIONS: u32 = 5;
const CONTEXTS: usize = 10;

/// Version `v` of contract `i`: a closed object that gains one optional property per version;
/// every twentieth contract's last version also makes a property required (incompatible).
fn schema(i: usize, v: u32) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "id".into(),
        json!({"type": "string", "minLength": 1, "maxLength": 64}),
    );
    properties.insert("amount".into(), json!({"type": "integer", "minimum": 0}));
    properties.insert("currency".into(), json!({"enum": ["EUR", "USD", "GBP"]}));
    properties.insert(
        "lines".into(),
        json!({"type": "array", "maxItems": 100, "items": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            "required": ["sku", "quantity"],
            "additionalProperties": false
        }}),
    );
    properties.insert(
        "address".into(),
        json!({"type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"}, "country": {"type": "string", "pattern": "^[A-Z]{2}$"}
        }, "required": ["city", "country"], "additionalProperties": false}),
    );
    for extra in 2..=v {
        properties.insert(
            format!("field_{extra}"),
            json!({"type": "string", "maxLength": 200}),
        );
    }
    let mut required = vec![json!("id"), json!("amount"), json!("currency")];
    if i.is_multiple_of(20) && v == VERSIONS {
        required.push(json!(format!("field_{v}")));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("Contract{i} v{v}"),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The registry with versions 1..=`versions` of every contract.
fn generate(root: &Path, versions: u32) {
    let mut config = String::new();
    for context in 0..CONTEXTS {
        config.push_str(&format!("[contexts.ctx{context}]\n"));
    }
    write(&root.join("contextgate.toml"), &config);
    for i in 0..CONTRACTS {
        let folder = root.join(format!("contracts/ctx{}/Contract{i}", i % CONTEXTS));
        write(&folder.join("contract.toml"), "kind = \"event\"\n");
        for v in 1..=versions {
            write(
                &folder.join(format!("v{v}.json")),
                &serde_json::to_string_pretty(&schema(i, v)).unwrap(),
            );
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|arg| arg != "--rounds")
        .nth(1)
        .map_or(5, |n| n.parse().expect("--rounds takes a number"));
    let current = tempfile::tempdir().unwrap();
    let baseline = tempfile::tempdir().unwrap();
    generate(current.path(), VERSIONS);
    generate(baseline.path(), 1);
    println!(
        "registry: {CONTRACTS} contracts x {VERSIONS} versions; baseline: version 1 of each; {rounds} rounds"
    );

    let (mut loads, mut compares, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let registry = contextgate::registry::load(current.path()).expect("the registry loads");
        let loaded = started.elapsed().as_secs_f64();
        let findings = contextgate::evolution::against(&registry, baseline.path());
        let total = started.elapsed().as_secs_f64();
        errors = findings
            .iter()
            .filter(|f| f.severity == contextgate::evolution::Severity::Error)
            .count();
        loads.push(loaded);
        compares.push(total - loaded);
        totals.push(total);
    }
    assert_eq!(
        errors,
        CONTRACTS / 20,
        "one contract in twenty is incompatible"
    );
    println!(
        "library: load {:.3} s + compare {:.3} s = {:.3} s (median), {errors} incompatible versions found",
        median(loads),
        median(compares),
        median(totals)
    );

    if let Some(binary) = std::env::var_os("CONTEXTGATE_BIN") {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let output = Command::new(&binary)
                .args(["check", "--format", "json", "--registry"])
                .arg(current.path())
                .arg("--against")
                .arg(baseline.path())
                .output()
                .expect("the binary runs");
            runs.push(started.elapsed().as_secs_f64());
            assert_eq!(
                output.status.code(),
                Some(1),
                "the incompatible versions fail the check"
            );
        }
        println!(
            "contextgate check --against (the binary): {:.3} s (median)",
            median(runs)
        );
    }
}
