//! Untrusted schemas: each is written into a fixture registry as `up/Thing@1` and must be
//! refused with its file named (or compile), never fetch anything and never crash.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

fn refused(schema: &str) -> Vec<String> {
    let fixture = Fixture::new("conformist", None, "");
    write(fixture.root(), "contracts/up/Thing/v1.json", schema);
    let started = Instant::now();
    let problems = problems(fixture.root());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("contracts/up/Thing/v1.json")),
        "the schema file is named: {problems:?}"
    );
    problems
}

#[test]
fn a_ref_to_the_network_is_refused_without_connecting() {
    // C1
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let problems = refused(&format!(r#"{{"$ref": "http://127.0.0.1:{port}/x"}}"#));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("resolve inside the registry only")),
        "{problems:?}"
    );
    assert_eq!(
        listener.accept().map_err(|error| error.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "the listener saw a connection"
    );
}

#[test]
fn refs_to_files_get_the_same_answer_whether_or_not_they_exist() {
    // C2: no existence oracle, no content echo.
    let existing = refused(r#"{"$ref": "file:///etc/passwd"}"#);
    let missing = refused(r#"{"$ref": "file:///etc/does-not-exist"}"#);
    let strip = |problems: Vec<String>| -> Vec<String> {
        problems
            .into_iter()
            .map(|p| p.replace("does-not-exist", "passwd"))
            .collect()
    };
    assert_eq!(strip(existing.clone()), strip(missing));
    assert!(
        !existing.iter().any(|p| p.contains("root:")),
        "no content echoed: {existing:?}"
    );
}

#[test]
fn backtracking_patterns_are_refused() {
    // C3
    refused(r#"{"type": "string", "pattern": "^(?=(a+)+b)"}"#);
    refused(r#"{"type": "string", "pattern": "^(a|aa)+\\1$"}"#);
}

#[test]
fn pathological_schemas_compile_or_are_refused_but_never_crash() {
    // C4
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        r#"{"$ref": ""}"#,
    );
    let started = Instant::now();
    let _ = contextgate::registry::load(fixture.root());
    assert!(started.elapsed() < Duration::from_secs(1));

    refused(&format!(
        "{}{}",
        r#"{"items":"#.repeat(10_000),
        "}".repeat(10_000)
    ));
    refused(&format!(
        r#"{{"description": "{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    ));
    refused(&format!(
        "{}true{}",
        r#"{"items":"#.repeat(100),
        "}".repeat(100)
    ));
}

#[test]
fn circular_refs_between_contracts_terminate() {
    // C4
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        r#"{"$ref": "../Internal/v1.json"}"#,
    );
    write(
        fixture.root(),
        "contracts/up/Internal/v1.json",
        r#"{"$ref": "../Thing/v1.json"}"#,
    );
    let started = Instant::now();
    let _ = contextgate::registry::load(fixture.root());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn refs_between_contracts_resolve_inside_the_registry() {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        r#"{"type": "object", "properties": {"n": {"$ref": "../../down/Act/v1.json#/properties/total"}}}"#,
    );
    let pipeline = fixture.pipeline();
    let version = pipeline
        .registry()
        .contract_version(&contextgate::registry::ContractId::parse("up/Thing@1").unwrap())
        .unwrap();
    assert!(version.validator.is_valid(&serde_json::json!({"n": 5})));
    assert!(
        !version.validator.is_valid(&serde_json::json!({"n": 5000})),
        "the referenced maximum applies"
    );
}

#[test]
fn refs_name_their_own_context_s_contracts_or_others_published_ones_only() {
    // down refers to up's internal contract: refused, naming the file and the owner.
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/down/Act/v1.json",
        r#"{"type": "object", "properties": {"id": {"$ref": "../../up/Internal/v1.json#/properties/id"}}}"#,
    );
    let relative = problems(fixture.root());
    assert!(
        relative
            .iter()
            .any(|p| p.starts_with("contracts/down/Act/v1.json") && p.contains("internal to up")),
        "{relative:?}"
    );
    // The absolute URI is the same contract.
    write(
        fixture.root(),
        "contracts/down/Act/v1.json",
        r#"{"$ref": "contextgate://registry/contracts/up/Internal/v1.json"}"#,
    );
    let absolute = problems(fixture.root());
    assert!(
        absolute.iter().any(|p| p.contains("internal to up")),
        "{absolute:?}"
    );

    // up refers to its own internal contract, down to up's published one: both load.
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        r#"{"type": "object", "properties": {"id": {"$ref": "../Internal/v1.json#/properties/id"}, "n": {"type": "number"}}}"#,
    );
    write(
        fixture.root(),
        "contracts/down/Act/v1.json",
        r#"{"type": "object", "properties": {"id": {"$ref": "../../up/Published/v1.json#/properties/id"}}}"#,
    );
    fixture.pipeline();
}

#[test]
fn unknown_formats_and_unsupported_drafts_are_refused() {
    // C5
    refused(r#"{"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"}"#);
    refused(r#"{"$schema": "https://example.com/my-draft", "type": "object"}"#);
}

#[test]
fn draft_07_schemas_are_taken_when_they_say_so() {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        r#"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["id"]}"#,
    );
    fixture.pipeline();
}

#[test]
fn invalid_examples_are_reported_with_their_pointer() {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/examples/v1/bad.json",
        r#"{"id": 5, "n": 1}"#,
    );
    let problems = problems(fixture.root());
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("contracts/up/Thing/examples/v1/bad.json") && p.contains("/id")),
        "{problems:?}"
    );
}

/// Loads `up/Thing@1` written as `schema`, with `top` put before the fixture's
/// `contextgate.toml`: the pipeline, or the problems.
fn thing_with(
    schema: &Value,
    top: &str,
) -> (
    Fixture,
    Result<contextgate::pipeline::Pipeline, Vec<String>>,
) {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        &schema.to_string(),
    );
    let config = std::fs::read_to_string(fixture.root().join("contextgate.toml")).unwrap();
    write(
        fixture.root(),
        "contextgate.toml",
        &format!("{top}\n{config}"),
    );
    let loaded = match contextgate::registry::load(fixture.root()) {
        Ok(registry) => Ok(contextgate::pipeline::Pipeline::new(std::sync::Arc::new(
            registry,
        ))),
        Err(_) => Err(problems(fixture.root())),
    };
    (fixture, loaded)
}

fn valid(pipeline: &contextgate::pipeline::Pipeline, instance: Value) -> bool {
    pipeline
        .registry()
        .contract_version(&contextgate::registry::ContractId::parse("up/Thing@1").unwrap())
        .unwrap()
        .validator
        .is_valid(&instance)
}

/// `contextgate check` on the fixture: it must pass; what it printed.
fn check_passes(fixture: &Fixture) -> String {
    let output = run_binary(&["check", "--registry", fixture.root().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    text
}

/// The four spellings of a draft's URI.
fn spellings(path: &str) -> [String; 4] {
    [
        format!("http://json-schema.org/{path}#"),
        format!("http://json-schema.org/{path}"),
        format!("https://json-schema.org/{path}#"),
        format!("https://json-schema.org/{path}"),
    ]
}

#[test]
fn every_draft_is_taken_in_every_spelling_of_its_uri_and_validates_as_that_draft() {
    // Draft 04: `exclusiveMaximum` is a flag beside `maximum`.
    for uri in spellings("draft-04/schema") {
        let schema = json!({"$schema": uri, "type": "object",
            "properties": {"n": {"type": "number", "maximum": 10, "exclusiveMaximum": true}}});
        let (_fixture, loaded) = thing_with(&schema, "");
        let pipeline = loaded.unwrap_or_else(|problems| panic!("{uri}: {problems:?}"));
        assert!(valid(&pipeline, json!({"n": 9})), "{uri}");
        assert!(
            !valid(&pipeline, json!({"n": 10})),
            "{uri}: the maximum is exclusive"
        );
    }
    // Drafts 06, 07 and 2019-09: `items` as an array is a tuple; 2020-12 says `prefixItems`.
    for (path, keyword) in [
        ("draft-06/schema", "items"),
        ("draft-07/schema", "items"),
        ("draft/2019-09/schema", "items"),
        ("draft/2020-12/schema", "prefixItems"),
    ] {
        for uri in spellings(path) {
            let schema = json!({"$schema": uri, "type": "object",
                "properties": {"t": {"type": "array", keyword: [{"type": "string"}]}}});
            let (_fixture, loaded) = thing_with(&schema, "");
            let pipeline = loaded.unwrap_or_else(|problems| panic!("{uri}: {problems:?}"));
            assert!(valid(&pipeline, json!({"t": ["a", 1]})), "{uri}");
            assert!(
                !valid(&pipeline, json!({"t": [1]})),
                "{uri}: the first item is a string"
            );
        }
    }
}

#[test]
fn the_version_less_meta_schema_uri_names_the_current_draft() {
    for uri in spellings("schema") {
        let schema = json!({"$schema": uri, "type": "object",
            "properties": {"t": {"type": "array", "prefixItems": [{"type": "string"}]}}});
        let (_fixture, loaded) = thing_with(&schema, "");
        let pipeline = loaded.unwrap_or_else(|problems| panic!("{uri}: {problems:?}"));
        assert!(
            !valid(&pipeline, json!({"t": [1]})),
            "{uri}: read as 2020-12"
        );
    }
}

#[test]
fn a_schema_without_schema_is_read_as_the_default_draft_and_check_says_so() {
    let tuple = json!({"type": "object",
        "properties": {"t": {"type": "array", "items": [{"type": "string"}]}}});
    // 2020-12 unless told: `items` must be one schema there.
    let (_fixture, loaded) = thing_with(&tuple, "");
    let problems = loaded.expect_err("an items array is no 2020-12 schema");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("contracts/up/Thing/v1.json")),
        "{problems:?}"
    );
    for (top, label) in [
        ("default_draft = \"07\"", "07"),
        ("default_draft = \"draft-07\"", "07"),
        ("default_draft = \"2019-09\"", "2019-09"),
    ] {
        let (fixture, loaded) = thing_with(&tuple, top);
        let pipeline = loaded.unwrap_or_else(|problems| panic!("{top}: {problems:?}"));
        assert!(valid(&pipeline, json!({"t": ["a", 1]})), "{top}");
        assert!(!valid(&pipeline, json!({"t": [1]})), "{top}");
        let text = check_passes(&fixture);
        assert!(
            text.contains("contract version(s) declare no $schema")
                && text.contains(&format!("read as draft {label}")),
            "{text}"
        );
    }
    let (_fixture, loaded) = thing_with(&tuple, "default_draft = \"05\"");
    let problems = loaded.expect_err("draft 05 does not exist");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("contextgate.toml:1:") && p.contains("default_draft \"05\"")),
        "{problems:?}"
    );
}

// ---- `$id` and references, as JSON Schema defines them ---------------------------------------

/// Writes `up/<name>@1` with `schema`, its `contract.toml` giving `toml` besides the kind.
fn contract(fixture: &Fixture, name: &str, toml: &str, schema: &Value) {
    write(
        fixture.root(),
        &format!("contracts/up/{name}/contract.toml"),
        &format!("kind = \"event\"\n{toml}"),
    );
    write(
        fixture.root(),
        &format!("contracts/up/{name}/v1.json"),
        &serde_json::to_string_pretty(schema).unwrap(),
    );
}

/// `file:line:column` of the first `needle` in a fixture's file (1-based, as `check` prints).
fn at(fixture: &Fixture, file: &str, needle: &str) -> String {
    let text = std::fs::read_to_string(fixture.root().join(file)).unwrap();
    let (number, line) = text
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle} in {file}"));
    // The position is the value's: after `"key": `.
    let column = line.find(needle).unwrap() + needle.len() + 3;
    format!("{file}:{}:{column}:", number + 1)
}

fn validator_of<'a>(
    pipeline: &'a contextgate::pipeline::Pipeline,
    id: &str,
) -> &'a jsonschema::Validator {
    &pipeline
        .registry()
        .contract_version(&contextgate::registry::ContractId::parse(id).unwrap())
        .unwrap_or_else(|| panic!("{id} is loaded"))
        .validator
}

/// A webhook-style collection: `$id`s keyed from the collection's root (one holding `$`),
/// shared parts named `common/<x>.schema.json` from the events and sibling-relative
/// (`user.schema.json`) from each other, a keyword of a code generator, draft-07 in its https
/// spelling.
fn webhook_collection() -> Fixture {
    let fixture = Fixture::new("conformist", None, "");
    let draft = "https://json-schema.org/draft-07/schema#";
    contract(
        &fixture,
        "CommonUser",
        "visibility = \"internal\"\n[versions.v1]\nsource = \"common/user.schema.json\"\n",
        &json!({"$schema": draft, "$id": "common/user.schema.json", "type": "object",
            "required": ["login"], "properties": {"login": {"type": "string"}},
            "tsAdditionalProperties": false}),
    );
    contract(
        &fixture,
        "CommonLabel",
        "visibility = \"internal\"\n[versions.v1]\nsource = \"common/label.schema.json\"\n",
        &json!({"$schema": draft, "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "maxLength": 10}}}),
    );
    contract(
        &fixture,
        "CommonIssue",
        "visibility = \"internal\"\n[versions.v1]\nsource = \"common/issue.schema.json\"\n",
        &json!({"$schema": draft, "$id": "common/issue.schema.json", "type": "object",
        "required": ["number", "user"],
        "properties": {
            "number": {"type": "integer"},
            "user": {"$ref": "user.schema.json"},
            "labels": {"type": "array", "items": {"$ref": "label.schema.json"}}
        }}),
    );
    contract(
        &fixture,
        "IssuesOpened",
        "[versions.v1]\nsource = \"issues/opened.schema.json\"\n",
        &json!({"$schema": draft, "$id": "issues$opened", "type": "object",
            "required": ["action", "issue", "sender"],
            "properties": {
                "action": {"type": "string", "enum": ["opened"]},
                "issue": {"$ref": "common/issue.schema.json"},
                "sender": {"$ref": "common/user.schema.json"}
            },
            "additionalProperties": false,
            "tsAdditionalProperties": false}),
    );
    fixture
}

#[test]
fn ids_and_relative_refs_of_a_webhook_collection_resolve_without_edits() {
    let fixture = webhook_collection();
    let pipeline = fixture.pipeline();
    let opened = validator_of(&pipeline, "up/IssuesOpened@1");
    let user = json!({"login": "octocat"});
    let payload = json!({"action": "opened", "sender": user,
        "issue": {"number": 1, "user": user, "labels": [{"name": "bug"}]}});
    assert!(opened.is_valid(&payload));
    // Each shared part applies, through the `common/` ref and through the sibling-relative one.
    let mut no_login = payload.clone();
    no_login["sender"] = json!({});
    assert!(
        !opened.is_valid(&no_login),
        "common/user.schema.json applies"
    );
    let mut issue_user = payload.clone();
    issue_user["issue"]["user"] = json!({"login": 5});
    assert!(
        !opened.is_valid(&issue_user),
        "user.schema.json from common/ applies"
    );
    let mut long_label = payload.clone();
    long_label["issue"]["labels"][0]["name"] = json!("a label far too long");
    assert!(
        !opened.is_valid(&long_label),
        "label.schema.json (no $id: its source path) applies"
    );
    // The code generator's keyword is an annotation.
    let mut extra = payload;
    extra["extra"] = json!(1);
    assert!(!opened.is_valid(&extra), "additionalProperties still holds");
    // The contract keeps its file's schema as written.
    let version = pipeline
        .registry()
        .contract_version(&contextgate::registry::ContractId::parse("up/IssuesOpened@1").unwrap())
        .unwrap();
    assert_eq!(version.schema["$id"], "issues$opened");
    assert_eq!(version.source.as_deref(), Some("issues/opened.schema.json"));
}

#[test]
fn a_nested_id_names_a_resource_that_other_schemas_refer_to() {
    let fixture = Fixture::new("conformist", None, "");
    contract(
        &fixture,
        "Release",
        "",
        &json!({"$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": "https://example.com/schemas/release.json",
        "type": "object",
        "properties": {"assets": {"type": "array", "items": {"$ref": "asset.json"}}},
        "$defs": {
            "asset": {
                "$id": "asset.json",
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"$ref": "#/$defs/size"}},
                "$defs": {"size": {"type": "integer", "minimum": 0}}
            }
        }}),
    );
    contract(
        &fixture,
        "Upload",
        "",
        &json!({"$schema": "http://json-schema.org/draft-04/schema#",
            "id": "https://example.com/schemas/upload.json",
            "type": "object",
            "properties": {"asset": {"$ref": "asset.json"}}}),
    );
    let pipeline = fixture.pipeline();
    let release = validator_of(&pipeline, "up/Release@1");
    assert!(release.is_valid(&json!({"assets": [{"size": 3}]})));
    assert!(
        !release.is_valid(&json!({"assets": [{"size": -1}]})),
        "#/$defs/size is the nested resource's own"
    );
    let upload = validator_of(&pipeline, "up/Upload@1");
    assert!(upload.is_valid(&json!({"asset": {"size": 3}})));
    assert!(
        !upload.is_valid(&json!({"asset": {}})),
        "a draft-04 schema reaches the nested $id of a 2019-09 one"
    );
}

#[test]
fn an_id_claimed_twice_names_both_files_with_their_positions() {
    let fixture = Fixture::new("conformist", None, "");
    contract(
        &fixture,
        "First",
        "",
        &json!({"$id": "https://example.com/same.json", "type": "object"}),
    );
    contract(
        &fixture,
        "Second",
        "",
        &json!({"type": "object", "$defs": {"part": {"$id": "https://example.com/same.json"}}}),
    );
    let problems = problems(fixture.root());
    // The second file is read after the first (contracts load in name order).
    let clash = problems
        .iter()
        .find(|p| p.contains("claimed twice"))
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(
        clash.starts_with(&at(&fixture, "contracts/up/Second/v1.json", "\"$id\""))
            && clash.contains("https://example.com/same.json")
            && clash.contains("contracts/up/First/v1.json"),
        "{clash}"
    );
}

#[test]
fn an_id_may_not_take_over_a_uri_of_the_registry() {
    // Claiming another contract's registry URI would reroute every ref to it.
    let fixture = Fixture::new("conformist", None, "");
    contract(
        &fixture,
        "Thief",
        "",
        &json!({"$id": "contextgate://registry/contracts/down/Act/v1.json", "type": "object"}),
    );
    let problems = problems(fixture.root());
    assert!(
        problems.iter().any(|p| p.starts_with(&at(
            &fixture,
            "contracts/up/Thief/v1.json",
            "\"$id\""
        )) && p.contains("registry's own namespace")),
        "{problems:?}"
    );
}

#[test]
fn an_unresolved_ref_is_reported_at_its_line_and_column() {
    let fixture = webhook_collection();
    contract(
        &fixture,
        "IssuesClosed",
        "",
        &json!({"$id": "issues$closed", "type": "object",
            "properties": {"issue": {"$ref": "common/missing.schema.json"}}}),
    );
    let problems = problems(fixture.root());
    assert!(
        problems.iter().any(|p| p.starts_with(&at(
            &fixture,
            "contracts/up/IssuesClosed/v1.json",
            "\"$ref\""
        )) && p
            .contains("contextgate://registry/sources/up/common/missing.schema.json")),
        "{problems:?}"
    );
}

#[test]
fn an_unknown_format_is_an_annotation_and_check_warns_of_it_where_it_is() {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        "{\"$schema\": \"http://json-schema.org/draft-07/schema#\",\n \"type\": \"object\",\n \
         \"properties\": {\"id\": {\"type\": \"string\", \"format\": \"uuid\"},\n  \
         \"n\": {\"type\": \"string\", \"format\": \"emial\"},\n  \
         \"at\": {\"type\": \"string\", \"format\": \"date-time\"},\n  \
         \"mail\": {\"type\": \"string\", \"format\": \"idn-email\"}}}",
    );
    let pipeline = fixture.pipeline();
    // uuid is a 2019-09 format: under draft-07 it is not checked (as Python's jsonschema).
    assert!(valid(&pipeline, json!({"id": "not-a-uuid", "n": "x@"})));
    assert!(
        !valid(&pipeline, json!({"at": "yesterday"})),
        "known formats are checked"
    );
    assert!(
        !valid(&pipeline, json!({"mail": "no at sign"})),
        "idn-email is checked"
    );
    let text = check_passes(&fixture);
    for (line, format) in [(3, "uuid"), (4, "emial")] {
        assert!(
            text.lines().any(
                |l| l.contains(&format!("contracts/up/Thing/v1.json:{line}:"))
                    && l.contains(&format!(
                        "format \"{format}\" is not one the gateway checks under draft 07"
                    ))
            ),
            "{format} at line {line}: {text}"
        );
    }
    assert!(!text.contains("\"date-time\" is not"), "{text}");
}

#[test]
fn check_reports_every_problem_of_a_schema_in_one_run_each_at_its_line_and_column() {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        "{\"type\": \"objekt\",\n \"properties\": {\"a\": {\"minimum\": \"x\"},\n  \"b\": {\"required\": 5}}}",
    );
    write(
        fixture.root(),
        "contracts/up/Published/examples/v1/bad.json",
        "{\"id\": \"p-1\",\n \"n\": \"five\"}",
    );
    let problems = problems(fixture.root());
    for expected in [
        "contracts/up/Thing/v1.json:1:10: invalid schema: at /type",
        "contracts/up/Thing/v1.json:2:34: invalid schema: at /properties/a/minimum",
        "contracts/up/Thing/v1.json:3:21: invalid schema: at /properties/b/required",
        "contracts/up/Published/examples/v1/bad.json:2:7: example is invalid against up/Published@1",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} in {problems:?}"
        );
    }
    // The route that takes the broken contract is not reported once more on its own: one line
    // says it was skipped and why.
    assert!(
        problems.iter().any(|p| p
            == "contextgate.toml: route up-to-down skipped: up/Thing@1 did not load (its own problems are reported at its files)"),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("does not exist")),
        "no knock-on line: {problems:?}"
    );
}

#[tokio::test]
async fn a_failed_one_of_says_what_failed_in_each_branch_closest_first() {
    use contextgate::stages::{Reason, Stage};
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/v1.json",
        &json!({"type": "object", "required": ["id", "n"],
        "properties": {"id": {"type": "string"}, "n": {"type": "number"},
            "assignee": {"oneOf": [
                {"type": "null"},
                {"type": "object", "required": ["login"],
                 "properties": {"login": {"type": "string", "minLength": 2}}}
            ]}}})
        .to_string(),
    );
    let verdict = fixture
        .run(&json!({"id": "t-1", "n": 1, "assignee": {"login": "x"}}))
        .await;
    let failure = dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
    let problem = failure
        .problems
        .iter()
        .find(|problem| problem.pointer.as_deref() == Some("/assignee"))
        .unwrap_or_else(|| panic!("{failure}"));
    assert_eq!(
        problem.message,
        "no branch of oneOf holds; closest first — branch 2: at /login: \"x\" is shorter than 2 \
         characters | branch 1: {\"login\":\"x\"} is not of type \"null\""
    );
}

#[test]
fn problems_in_contract_toml_are_placed_at_their_key() {
    let fixture = Fixture::new("conformist", None, "");
    write(
        fixture.root(),
        "contracts/up/Thing/contract.toml",
        "# a comment\nkind = \"evnt\"\nvisibility = \"published\"\n",
    );
    write(
        fixture.root(),
        "contracts/up/Published/contract.toml",
        "kind = \"event\"\n\n[accept_breaking]\nv1 = \"too early\"\n\n[versions.v4]\nsource = \"x.json\"\n",
    );
    let problems = problems(fixture.root());
    for expected in [
        "contracts/up/Thing/contract.toml:2:1: kind \"evnt\" is not event or command",
        "contracts/up/Published/contract.toml:4:1: accept_breaking.v1: keys are versions from 2 on",
        "contracts/up/Published/contract.toml:6:1: versions.v4: the contract has no such version",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} in {problems:?}"
        );
    }
}
