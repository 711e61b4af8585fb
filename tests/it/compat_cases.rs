//! The data-driven compatibility suite: every case in `tests/compat/*.json` is checked, and every
//! failing case is reported by file and name (not only the first).
//!
//! A case is `{"name", "old", "new", "changes", "backward"}` plus optional fields:
//! - `"forward"`: the verdict with the arguments swapped;
//! - `"policy": "lenient"`: run `changes`/`backward` under the lenient policy;
//! - `"lenient"`: the backward verdict under the lenient policy;
//! - `"documents"`: other registry documents by URI, for cross-document `$ref`;
//! - `"undecided": "too complex" | "unresolved"` (with an optional `"budget"`): the diff must
//!   give up, for that reason;
//! - `"counterexample"`: whether an incompatible backward verdict must come with a checked
//!   counterexample (default true);
//! - `"soundness": false`: a compatible verdict Confluent gives although a document valid under
//!   `old` is rejected by `new` (otherwise the suite checks that no counterexample exists);
//! - `"lenient_unsound": true`: the same for the lenient verdict.
//!
//! A case with `"history": [schemas, oldest first]`, `"new"`, `"level"` and `"compatible"` runs
//! `check` at that level instead (and wants a counterexample when incompatible).
//!
//! Below the suite: levels and reports, the budget, very deep schemas. (Speed: `cargo bench --bench
//! evolution`.)

use std::collections::BTreeMap;
use std::path::Path;

use contextgate::compat::{self, Policy, Schemas, Undecided, Version};
use serde_json::Value;

const OLD_URI: &str = "contextgate://registry/contracts/test/Case/v1.json";
const NEW_URI: &str = "contextgate://registry/contracts/test/Case/v2.json";

#[test]
fn every_case_in_the_compat_folder_holds() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("tests/compat exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable case file");
        let cases: Vec<Value> = serde_json::from_str(&text).expect("a JSON array of cases");
        let file_name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        for case in &cases {
            n_cases += 1;
            let name = case["name"].as_str().unwrap_or("(unnamed)");
            for problem in check_case(case) {
                failures.push(format!(
                    "{}: {name}: {problem}",
                    file_name.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    assert!(
        n_cases > 100,
        "expected the full suite, found {n_cases} cases"
    );
    assert!(
        failures.is_empty(),
        "{} failing of {n_cases}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_case(case: &Value) -> Vec<String> {
    if case.get("history").is_some() {
        return check_history_case(case);
    }
    let mut problems = Vec::new();
    let documents: BTreeMap<String, Value> = case
        .get("documents")
        .and_then(Value::as_object)
        .map(|documents| {
            documents
                .iter()
                .map(|(uri, document)| (uri.clone(), document.clone()))
                .collect()
        })
        .unwrap_or_default();
    let schemas = Schemas::new(&documents);
    let old = Version::new(1, &case["old"], OLD_URI);
    let new = Version::new(2, &case["new"], NEW_URI);
    let policy = match case.get("policy").and_then(Value::as_str) {
        Some("lenient") => Policy::Lenient,
        _ => Policy::Strict,
    };
    if let Some(expected) = case.get("undecided").and_then(Value::as_str) {
        let budget = case
            .get("budget")
            .and_then(Value::as_u64)
            .map_or(compat::DEFAULT_BUDGET, |budget| budget as usize);
        match (
            expected,
            compat::diff_with_budget(&old, &new, &schemas, policy, budget),
        ) {
            ("too complex", Err(Undecided::TooComplex))
            | ("unresolved", Err(Undecided::UnresolvedReference(_))) => {}
            (_, other) => problems.push(format!("expected {expected}, got {other:?}")),
        }
        return problems;
    }
    let changes = match compat::diff(&old, &new, &schemas, policy) {
        Ok(changes) => changes,
        Err(undecided) => return vec![format!("undecided: {undecided}")],
    };
    if let Some(expected) = case.get("changes").and_then(Value::as_array) {
        let mut expected: Vec<String> = expected
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let mut actual: Vec<String> = changes
            .iter()
            .map(|change| format!("{} {}", change.kind, change.path))
            .collect();
        expected.sort();
        actual.sort();
        if expected != actual {
            problems.push(format!("changes: expected {expected:?}, got {actual:?}"));
        }
    }
    let backward = changes.iter().all(|change| change.compatible);
    check_verdict(&mut problems, "backward", case.get("backward"), backward);
    if let Some(expected) = case.get("forward") {
        let verdict = compat::diff(&new, &old, &schemas, policy)
            .map(|changes| changes.iter().all(|change| change.compatible));
        match verdict {
            Ok(verdict) => check_verdict(&mut problems, "forward", Some(expected), verdict),
            Err(undecided) => problems.push(format!("forward undecided: {undecided}")),
        }
    }
    if let Some(expected) = case.get("lenient") {
        match compat::diff(&old, &new, &schemas, Policy::Lenient) {
            Ok(changes) => check_verdict(
                &mut problems,
                "lenient",
                Some(expected),
                changes.iter().all(|change| change.compatible),
            ),
            Err(undecided) => problems.push(format!("lenient undecided: {undecided}")),
        }
    }
    check_counterexample(&mut problems, case, &old, &new, &schemas, backward);
    problems
}

/// A history case: `{"name", "history": [schemas, oldest first], "new", "level", "compatible"}`.
fn check_history_case(case: &Value) -> Vec<String> {
    let documents = BTreeMap::new();
    let schemas = Schemas::new(&documents);
    let uris: Vec<String> = (1..=20)
        .map(|number| format!("contextgate://registry/contracts/test/Case/v{number}.json"))
        .collect();
    let history: Vec<Version<'_>> = case["history"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(&uris)
        .zip(1..)
        .map(|((schema, uri), number)| Version::new(number, schema, uri))
        .collect();
    let number = history.len() as u32 + 1;
    let new = Version::new(
        number,
        &case["new"],
        &uris[history.len().min(uris.len() - 1)],
    );
    let Some(level) = case["level"].as_str().and_then(compat::Level::parse) else {
        return vec![format!("unknown level {}", case["level"])];
    };
    let report = compat::check(&history, &new, level, Policy::Strict, &schemas);
    let mut problems = Vec::new();
    check_verdict(
        &mut problems,
        level.as_str(),
        case.get("compatible"),
        report.compatible,
    );
    if !report.compatible
        && report.undecided.is_none()
        && case.get("counterexample") != Some(&Value::Bool(false))
    {
        match &report.counterexample {
            Some(counterexample) if counterexample.rejected_by != counterexample.valid_under => {}
            other => problems.push(format!("expected a counterexample, got {other:?}")),
        }
    }
    problems
}

fn check_verdict(problems: &mut Vec<String>, what: &str, expected: Option<&Value>, actual: bool) {
    if let Some(expected) = expected.and_then(Value::as_bool)
        && expected != actual
    {
        problems.push(format!(
            "{what}: expected compatible={expected}, got {actual}"
        ));
    }
}

/// Incompatible verdicts come with a checked counterexample; compatible ones must have none
/// (a counterexample would prove the verdict unsound), unless the case says Confluent is unsound.
fn check_counterexample(
    problems: &mut Vec<String>,
    case: &Value,
    old: &Version<'_>,
    new: &Version<'_>,
    schemas: &Schemas<'_>,
    backward: bool,
) {
    let found = compat::counterexample(old, new, schemas);
    let unsound_allowed = case.get("soundness") == Some(&Value::Bool(false))
        || (case.get("policy").and_then(Value::as_str) == Some("lenient")
            && case.get("lenient_unsound") == Some(&Value::Bool(true)));
    match (&found, backward) {
        (Some(found), true) if !unsound_allowed => {
            problems.push(format!(
                "compatible, yet {} is {}",
                found.document, found.summary
            ));
        }
        (None, false) if case.get("counterexample") != Some(&Value::Bool(false)) => {
            problems.push("incompatible, but no counterexample was found".into());
        }
        _ => {}
    }
    if let Some(found) = &found {
        let validator = |schema: &Value| {
            jsonschema::options()
                .should_validate_formats(true)
                .build(schema)
        };
        let accepts = validator(old.schema).map(|validator| validator.is_valid(&found.document));
        let rejects = validator(new.schema).map(|validator| !validator.is_valid(&found.document));
        if schemas_are_local(case) && !(matches!(accepts, Ok(true)) && matches!(rejects, Ok(true)))
        {
            problems.push(format!(
                "counterexample {} does not hold on re-validation",
                found.document
            ));
        }
        if found.summary != "valid under v1, rejected by v2" {
            problems.push(format!("unexpected summary {:?}", found.summary));
        }
    }
}

fn schemas_are_local(case: &Value) -> bool {
    case.get("documents").is_none()
}

// Levels, reports and limits: `check` over a history rather than one pair.

const V1: &str = "contextgate://registry/contracts/test/Case/v1.json";
const V2: &str = "contextgate://registry/contracts/test/Case/v2.json";
const V3: &str = "contextgate://registry/contracts/test/Case/v3.json";

fn no_documents() -> BTreeMap<String, Value> {
    BTreeMap::new()
}

#[test]
fn backward_checks_only_the_latest_version_and_transitive_checks_all() {
    let (v1, v2, v3) = (
        serde_json::json!({"type": "string"}),
        serde_json::json!({"type": "integer"}),
        serde_json::json!({"type": "integer"}),
    );
    let documents = no_documents();
    let schemas = Schemas::new(&documents);
    let history = [Version::new(1, &v1, V1), Version::new(2, &v2, V2)];
    let new = Version::new(3, &v3, V3);

    let latest = compat::check(
        &history,
        &new,
        compat::Level::Backward,
        Policy::Strict,
        &schemas,
    );
    let transitive = compat::check(
        &history,
        &new,
        compat::Level::BackwardTransitive,
        Policy::Strict,
        &schemas,
    );

    assert!(latest.compatible, "{latest:?}");
    assert!(!transitive.compatible);
    let change = &transitive.changes[0];
    assert_eq!(
        (change.against, change.change.kind.name()),
        (1, "TYPE_CHANGED")
    );
    let counterexample = transitive.counterexample.expect("a checked counterexample");
    assert_eq!(counterexample.summary, "valid under v1, rejected by v3");
    assert!(counterexample.document.is_string());
}

#[test]
fn full_checks_both_directions_and_reports_the_forward_counterexample() {
    let (v1, v2) = (
        serde_json::json!({"type": "integer"}),
        serde_json::json!({"type": "number"}),
    );
    let documents = no_documents();
    let schemas = Schemas::new(&documents);
    let history = [Version::new(1, &v1, V1)];
    let new = Version::new(2, &v2, V2);

    let backward = compat::check(
        &history,
        &new,
        compat::Level::Backward,
        Policy::Strict,
        &schemas,
    );
    let full = compat::check(
        &history,
        &new,
        compat::Level::Full,
        Policy::Strict,
        &schemas,
    );
    let none = compat::check(
        &history,
        &new,
        compat::Level::None,
        Policy::Strict,
        &schemas,
    );

    assert!(backward.compatible);
    assert!(!full.compatible);
    assert!(
        full.changes
            .iter()
            .any(|change| change.direction == compat::Direction::Forward
                && !change.change.compatible)
    );
    let counterexample = full.counterexample.expect("a checked counterexample");
    assert_eq!(counterexample.summary, "valid under v2, rejected by v1");
    assert!(
        counterexample
            .document
            .as_f64()
            .is_some_and(|number| number.fract() != 0.0)
    );
    assert!(none.compatible && none.changes.is_empty());
}

#[test]
fn the_report_serializes_as_the_cli_prints_it() {
    let (v1, v2) = (
        serde_json::json!({"type": "string"}),
        serde_json::json!({"type": "string", "maxLength": 3}),
    );
    let documents = no_documents();
    let schemas = Schemas::new(&documents);
    let history = [Version::new(1, &v1, V1)];
    let new = Version::new(2, &v2, V2);

    let report = compat::check(
        &history,
        &new,
        compat::Level::Backward,
        Policy::Strict,
        &schemas,
    );
    let json = serde_json::to_value(&report).expect("a report serializes");

    assert_eq!(json["compatible"], false);
    assert_eq!(json["level"], "backward");
    assert_eq!(json["changes"][0]["type"], "MAX_LENGTH_ADDED");
    assert_eq!(json["changes"][0]["path"], "#/maxLength");
    assert_eq!(json["changes"][0]["compatible"], false);
    assert_eq!(json["changes"][0]["direction"], "backward");
    assert_eq!(json["counterexample"]["valid_under"], 1);
    assert!(
        json["counterexample"]["document"]
            .as_str()
            .is_some_and(|text| text.len() > 3)
    );
}

#[test]
fn levels_parse_from_their_names_and_back() {
    for name in [
        "none",
        "backward",
        "backward-transitive",
        "forward",
        "forward-transitive",
        "full",
        "full-transitive",
    ] {
        assert_eq!(
            compat::Level::parse(name).map(compat::Level::as_str),
            Some(name)
        );
    }
    assert_eq!(compat::Level::parse("BACKWARD"), None);
}

/// `width` members per `anyOf`, nested `depth` deep, leaves all distinct.
fn nested_unions(width: usize, depth: usize, seed: &mut usize) -> Value {
    if depth == 0 {
        *seed += 1;
        return serde_json::json!({"type": "string", "maxLength": *seed});
    }
    let members: Vec<Value> = (0..width)
        .map(|_| nested_unions(width, depth - 1, seed))
        .collect();
    serde_json::json!({ "anyOf": members })
}

#[test]
fn deeply_nested_combinators_stop_at_the_budget_instead_of_hanging() {
    let (old, new) = (nested_unions(6, 4, &mut 0), nested_unions(6, 4, &mut 1000));
    let documents = no_documents();
    let schemas = Schemas::new(&documents);
    let started = std::time::Instant::now();

    let result = compat::diff(
        &Version::new(1, &old, V1),
        &Version::new(2, &new, V2),
        &schemas,
        Policy::Strict,
    );
    let report = compat::check(
        &[Version::new(1, &old, V1)],
        &Version::new(2, &new, V2),
        compat::Level::Backward,
        Policy::Strict,
        &schemas,
    );

    assert_eq!(result, Err(Undecided::TooComplex));
    assert!(
        !report.compatible
            && report
                .undecided
                .as_deref()
                .is_some_and(|reason| reason.contains("too complex"))
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A contract of the usual size: a dozen properties, a nested object, an enum, an array.
fn typical_contract(extra: bool) -> Value {
    let mut schema = serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["orderId", "placedAt", "lines", "customer"],
        "properties": {
            "orderId": {"type": "string", "format": "uuid"},
            "placedAt": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["placed", "paid", "shipped"]},
            "total": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "minLength": 3, "maxLength": 3},
            "note": {"type": ["string", "null"], "maxLength": 500},
            "customer": {"$ref": "#/$defs/customer"},
            "lines": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/line"}}
        },
        "$defs": {
            "customer": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"}, "email": {"type": "string", "format": "email"},
                "tier": {"enum": ["gold", "silver"]}}},
            "line": {"type": "object", "required": ["sku", "quantity"], "additionalProperties": false, "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"}, "quantity": {"type": "integer", "minimum": 1},
                "price": {"type": "number", "exclusiveMinimum": 0}}}
        }
    });
    if extra {
        schema["properties"]["channel"] =
            serde_json::json!({"type": "string", "enum": ["web", "shop"]});
        schema["$defs"]["customer"]["properties"]["tier"] =
            serde_json::json!({"enum": ["gold", "silver", "bronze"]});
    }
    schema
}

/// A typical contract's evolution gives exactly its two differences, and full-transitive sees the
/// forward break. (How fast: `cargo bench --bench evolution`.)
#[test]
fn a_typical_pair_gives_its_two_differences_every_time() {
    let (old, new) = (typical_contract(false), typical_contract(true));
    let documents = no_documents();
    let schemas = Schemas::new(&documents);
    let (old, new) = (Version::new(1, &old, V1), Version::new(2, &new, V2));
    let n_rounds = 200;
    let mut n_changes = 0;
    for _ in 0..n_rounds {
        n_changes += compat::diff(&old, &new, &schemas, Policy::Strict)
            .expect("decided")
            .len();
    }

    assert_eq!(
        n_changes,
        2 * n_rounds as usize,
        "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN + ENUM_ARRAY_EXTENDED"
    );
    let report = compat::check(
        &[old],
        &new,
        compat::Level::FullTransitive,
        Policy::Strict,
        &schemas,
    );
    assert!(
        !report.compatible,
        "forward: the new enum value is rejected by v1"
    );
}

/// `{"items": {"items": ...}}`, `depth` levels deep, built without recursion.
fn nested_arrays(depth: usize, leaf: &str) -> Value {
    let mut schema = serde_json::json!({ "type": leaf });
    for _ in 0..depth {
        let mut array = serde_json::Map::new();
        array.insert("type".into(), Value::from("array"));
        array.insert("items".into(), schema);
        schema = Value::Object(array);
    }
    schema
}

#[test]
fn very_deep_schemas_are_refused_rather_than_overflowing_the_stack() {
    // Dropping a 10 000-level value recurses too: give the test itself room.
    let test = std::thread::Builder::new().stack_size(256 << 20);
    let outcome = test
        .spawn(deep_schemas_are_decided_or_refused)
        .expect("a test thread");
    outcome.join().expect("no panic");
}

fn deep_schemas_are_decided_or_refused() {
    let too_deep = (
        nested_arrays(10_000, "string"),
        nested_arrays(10_000, "integer"),
    );
    let deep = (
        nested_arrays(1_000, "string"),
        nested_arrays(1_000, "integer"),
    );
    let shallow = (nested_arrays(100, "string"), nested_arrays(100, "integer"));
    let documents = no_documents();
    let schemas = Schemas::new(&documents);
    let diff = |(old, new): &(Value, Value)| {
        let old = Version::new(1, old, V1);
        let new = Version::new(2, new, V2);
        compat::diff(&old, &new, &schemas, Policy::Strict)
    };

    let (too_deep, deep, shallow) = (diff(&too_deep), diff(&deep), diff(&shallow));

    assert_eq!(too_deep, Err(Undecided::TooComplex));
    assert!(
        deep.is_ok_and(|changes| changes.len() == 1),
        "a thousand levels are decided"
    );
    let changes = shallow.expect("a hundred levels are decided");
    assert_eq!(changes.len(), 1);
    assert!(changes[0].path.ends_with("/items") && changes[0].kind.name() == "TYPE_CHANGED");
}
