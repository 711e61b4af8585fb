//! `contextgate import` (the real binary) on collections written here in the shapes real ones
//! have: `$id`s keyed from the root (one holding `$`), `common/` and sibling-relative refs, a
//! code generator's keyword, nested `$id`s, draft-04 and 2019-09 files, a name over 64
//! characters, semver-named YAML versions declaring draft-07 by its https URI, and a git
//! history with a breaking step. Each is imported, checked, and given payloads of its own.

use std::path::Path;
use std::process::{Command, Output};

use contextgate::stages::{Reason, Stage};
use serde_json::{Value, json};

use crate::helpers::*;

fn contextgate(args: &[&str]) -> Output {
    run_binary(args)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json_file(root: &Path, path: &str, value: &Value) {
    write(root, path, &serde_json::to_string_pretty(value).unwrap());
}

fn import(registry: &Path, context: &str, source: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "import",
        "--registry",
        registry.to_str().unwrap(),
        "--context",
        context,
        source.to_str().unwrap(),
    ];
    args.extend(extra);
    contextgate(&args)
}

/// A route from `context` to the fixture's `down` taking `accepts`, so that the pipeline serves
/// the imported contracts.
fn route_from(registry: &Path, context: &str, accepts: &[&str]) {
    let config = std::fs::read_to_string(registry.join("contextgate.toml")).unwrap();
    let accepts: Vec<String> = accepts.iter().map(|id| format!("{id:?}")).collect();
    write(
        registry,
        "contextgate.toml",
        &format!(
            "{config}\n[[routes]]\nname = \"{context}-to-down\"\nupstream = \"{context}\"\n\
             downstream = \"down\"\nmode = \"conformist\"\naccepts = [{}]\n",
            accepts.join(", ")
        ),
    );
}

async fn served(
    pipeline: &contextgate::pipeline::Pipeline,
    context_name: &str,
    contract: &str,
    data: &Value,
) -> bool {
    let verdict = only(
        pipeline
            .process(&context(context_name), &event(contract, "e-1", data))
            .await,
    );
    match &verdict.outcome {
        contextgate::pipeline::Outcome::Forward { .. } => true,
        _ => {
            dead_letter(&verdict, Stage::ValidateIn, Reason::ContractViolation);
            false
        }
    }
}

const DRAFT_07: &str = "http://json-schema.org/draft-07/schema";

fn webhook_collection(root: &Path) {
    json_file(
        root,
        "common/user.schema.json",
        &json!({"$schema": DRAFT_07, "$id": "common/user.schema.json", "title": "User",
            "type": "object", "required": ["login", "id"],
            "properties": {"login": {"type": "string"}, "id": {"type": "integer"}},
            "additionalProperties": false, "tsAdditionalProperties": false}),
    );
    json_file(
        root,
        "common/label.schema.json",
        &json!({"$schema": DRAFT_07, "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "color": {"type": "string", "pattern": "^[0-9a-f]{6}$"}}}),
    );
    json_file(
        root,
        "common/issue.schema.json",
        &json!({"$schema": DRAFT_07, "$id": "common/issue.schema.json", "title": "Issue",
        "type": "object", "required": ["number", "user", "state"],
        "properties": {
            "number": {"type": "integer"},
            "user": {"$ref": "user.schema.json"},
            "assignee": {"oneOf": [{"$ref": "user.schema.json"}, {"type": "null"}]},
            "labels": {"type": "array", "items": {"$ref": "label.schema.json"}},
            "state": {"type": "string", "enum": ["open", "closed"]}
        }}),
    );
    json_file(
        root,
        "issues/opened.schema.json",
        &json!({"$schema": DRAFT_07, "$id": "issues$opened", "title": "issues opened event",
            "type": "object", "required": ["action", "issue", "sender"],
            "properties": {
                "action": {"type": "string", "enum": ["opened"]},
                "issue": {"allOf": [{"$ref": "common/issue.schema.json"},
                    {"type": "object", "properties": {"state": {"enum": ["open"]}}}]},
                "sender": {"$ref": "common/user.schema.json"}
            },
            "additionalProperties": false, "tsAdditionalProperties": false}),
    );
    // Nested `$id`s, draft 2019-09: a release and its assets; draft-04 refers to the asset.
    json_file(
        root,
        "release/published.schema.json",
        &json!({"$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": "release$published", "type": "object", "required": ["release"],
            "properties": {"release": {"type": "object", "properties": {
                "assets": {"type": "array", "items": {"$ref": "release-asset.json"}}}}},
            "$defs": {"asset": {"$id": "release-asset.json", "type": "object",
                "required": ["size"], "properties": {"size": {"type": "integer", "minimum": 0}}}}}),
    );
    json_file(
        root,
        "legacy/upload.json",
        &json!({"$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object", "required": ["asset", "id"],
            "properties": {"asset": {"$ref": "../release-asset.json"}, "id": {"type": "string"},
                "size": {"type": "number", "maximum": 10, "exclusiveMaximum": true}}}),
    );
    json_file(
        root,
        &format!(
            "{}/event.schema.json",
            "security-and-analysis-configuration-for-organization-repositories".repeat(3)
        ),
        &json!({"$schema": DRAFT_07, "type": "object"}),
    );
    // Not schemas: a package manifest, example payloads (in a folder of them, beside the
    // schemas, and one whose members look like keywords).
    json_file(
        root,
        "package.json",
        &json!({"name": "webhooks", "version": "1.0.0"}),
    );
    json_file(
        root,
        "issues/opened.example.json",
        &json!({"action": "opened", "issue": {"number": 1}}),
    );
    json_file(
        root,
        "payloads/ping.json",
        &json!({"type": "ping", "required": true, "properties": {"zen": "Keep it simple"}}),
    );
    json_file(
        root,
        "examples/issues/opened.json",
        &json!({"action": "opened", "type": "object"}),
    );
    write(root, "README.md", "# schemas\n");
}

#[tokio::test]
async fn a_webhook_collection_imports_without_edits_and_validates_its_payloads() {
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    let collection = tempfile::TempDir::new().unwrap();
    webhook_collection(collection.path());

    // The dry run prints the plan and writes nothing.
    let dry = import(registry, "github", collection.path(), &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let plan = text(&dry);
    for expected in [
        "+ context github",
        "+ github/IssuesOpened (event, published)",
        "v1 ← issues/opened.schema.json",
        "+ github/CommonUser (event, internal)",
        "+ github/CommonIssue (event, internal)",
        "+ github/CommonLabel (event, internal)",
        "+ github/ReleasePublished (event, published)",
        "+ github/LegacyUpload (event, published)",
        "- package.json skipped: not a JSON Schema",
        "- payloads/ping.json skipped: not a JSON Schema",
        "over 128 characters",
        "nothing written (--dry-run)",
    ] {
        assert!(plan.contains(expected), "{expected:?} in:\n{plan}");
    }
    assert!(
        !plan.contains("examples/") && !plan.contains("opened.example.json"),
        "examples are not read:\n{plan}"
    );
    assert!(!registry.join("contracts/github").exists());

    let imported = import(registry, "github", collection.path(), &[]);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
    let check = contextgate(&["check", "--registry", registry.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));

    // The schemas are stored as they were.
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(registry.join("contracts/github/IssuesOpened/v1.json")).unwrap(),
    )
    .unwrap();
    let original: Value = serde_json::from_str(
        &std::fs::read_to_string(collection.path().join("issues/opened.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stored, original);
    let long = std::fs::read_dir(registry.join("contracts/github"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("SecurityAndAnalysis"))
        .expect("the long-named contract");
    assert_eq!(long.len(), 128, "{long}");

    route_from(
        registry,
        "github",
        &[
            "github/IssuesOpened@1",
            "github/ReleasePublished@1",
            "github/LegacyUpload@1",
        ],
    );
    let pipeline = fixture.pipeline();
    let octocat = json!({"login": "octocat", "id": 1});
    let opened = json!({"action": "opened", "sender": octocat,
        "issue": {"number": 7, "user": octocat, "assignee": null, "state": "open",
            "labels": [{"name": "bug", "color": "d73a4a"}]}});
    let served_opened = |data: Value| {
        let pipeline = &pipeline;
        async move { served(pipeline, "github", "github/IssuesOpened@1", &data).await }
    };
    assert!(served_opened(opened.clone()).await);
    for (pointer, bad) in [
        ("/sender/login", json!(5)),
        ("/issue/user/extra", json!(1)),
        ("/issue/assignee", json!({"login": "x"})),
        ("/issue/labels/0/color", json!("red")),
        ("/issue/state", json!("closed")),
    ] {
        let mut data = opened.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        data.pointer_mut(parent).unwrap()[key] = bad;
        assert!(!served_opened(data).await, "{pointer} is checked");
    }
    let release = |size: i64| json!({"release": {"assets": [{"size": size}]}});
    assert!(
        served(
            &pipeline,
            "github",
            "github/ReleasePublished@1",
            &release(3)
        )
        .await
    );
    assert!(
        !served(
            &pipeline,
            "github",
            "github/ReleasePublished@1",
            &release(-1)
        )
        .await
    );
    let upload = |asset: Value, size: f64| json!({"id": "u-1", "asset": asset, "size": size});
    assert!(
        served(
            &pipeline,
            "github",
            "github/LegacyUpload@1",
            &upload(json!({"size": 1}), 9.5)
        )
        .await
    );
    assert!(
        !served(
            &pipeline,
            "github",
            "github/LegacyUpload@1",
            &upload(json!({}), 9.5)
        )
        .await,
        "the draft-04 file reaches the nested $id of the 2019-09 one"
    );
    assert!(
        !served(
            &pipeline,
            "github",
            "github/LegacyUpload@1",
            &upload(json!({"size": 1}), 10.0)
        )
        .await,
        "draft-04's exclusiveMaximum is a flag"
    );

    // Served over HTTP as `contextgate serve` runs it: a valid webhook is forwarded, an invalid
    // one dead-lettered with the reason.
    let gateway = contextgate::gateway::Gateway::new(
        fixture.pipeline(),
        contextgate::bus::Bus::InProcess(contextgate::bus::InProcessBus::default()),
    );
    let base = serve_gateway(gateway).await;
    let post = |data: Value| {
        let base = base.clone();
        async move {
            let answer = http()
                .post(format!("{base}/v1/contexts/github/messages"))
                .header("content-type", "application/cloudevents+json")
                .body(event_body(
                    "github/IssuesOpened@1",
                    "w-1",
                    &data.to_string(),
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 202);
            let report: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
            report["routes"][0]["outcome"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(post(opened.clone()).await, "forward");
    let mut closed = opened.clone();
    closed["issue"]["state"] = json!("closed");
    assert_eq!(post(closed).await, "dead-letter");

    // Importing the same collection again changes nothing.
    let again = import(registry, "github", collection.path(), &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("= github/IssuesOpened: has every version of the collection already")
            && text(&again).contains("0 contract(s) written, 0 new version(s)"),
        "{}",
        text(&again)
    );
    // A collection whose file changed would change a published version: refused.
    let mut changed = original.clone();
    changed["title"] = json!("renamed");
    json_file(collection.path(), "issues/opened.schema.json", &changed);
    let refused = import(registry, "github", collection.path(), &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("contracts/github/IssuesOpened exists, and its 1 version(s) are not the first versions of issues/opened.schema.json unchanged"),
        "{}",
        text(&refused)
    );
}

const DRAFT_07_HTTPS: &str = "https://json-schema.org/draft-07/schema#";

/// A version of the order-placed event: its `order_id` is a nested resource (`$id`) that every
/// version declares alike.
fn placed(extra: &str) -> String {
    format!(
        "$schema: \"{DRAFT_07_HTTPS}\"\n\
         title: Order placed\n\
         type: object\n\
         required: [order_id, total]\n\
         properties:\n  \
           order_id: {{$id: \"order-id.json\", type: string, minLength: 3}}\n  \
           total:\n    \
             $ref: \"../../common/money/1.0.0.yaml\"\n\
         {extra}"
    )
}

#[tokio::test]
async fn semver_yaml_versions_import_in_order_with_their_labels_and_breaking_steps_accepted() {
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    let collection = tempfile::TempDir::new().unwrap();
    let root = collection.path();
    write(
        root,
        "common/money/1.0.0.yaml",
        &format!(
            "$schema: \"{DRAFT_07_HTTPS}\"\ntype: object\nrequired: [amount, currency]\n\
             properties:\n  amount: {{type: number, minimum: 0}}\n  currency:\n    \
             $id: \"#currency\"\n    type: string\n    pattern: \"^[A-Z]{{3}}$\"\n"
        ),
    );
    write(root, "orders/placed/1.0.0.yaml", &placed(""));
    // Adds an optional property: breaking under the strict policy, accepted as imported.
    write(
        root,
        "orders/placed/1.9.0.yaml",
        &placed("additionalProperties: false\n"),
    );
    // 1.10.0 comes after 1.9.0, not after 1.0.0.
    write(
        root,
        "orders/placed/1.10.0.yaml",
        &placed("additionalProperties: false\nmaxProperties: 5\n"),
    );

    let imported = import(registry, "shop", root, &[]);
    let output = text(&imported);
    assert_eq!(imported.status.code(), Some(0), "{output}");
    for expected in [
        "+ shop/OrdersPlaced (event, published)",
        "v1 [1.0.0] ← orders/placed/1.0.0.yaml",
        "v2 [1.9.0] ← orders/placed/1.9.0.yaml — breaks the level, accepted as \"imported\"",
        "v3 [1.10.0] ← orders/placed/1.10.0.yaml — breaks the level",
        "+ shop/CommonMoney (event, internal)",
    ] {
        assert!(output.contains(expected), "{expected:?} in:\n{output}");
    }
    let check = contextgate(&["check", "--registry", registry.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let toml = std::fs::read_to_string(registry.join("contracts/shop/OrdersPlaced/contract.toml"))
        .unwrap();
    assert!(
        toml.contains("[versions.v3]\nsource = \"orders/placed/1.10.0.yaml\"\nlabel = \"1.10.0\"")
            && toml.contains("v2 = \"imported\""),
        "{toml}"
    );

    route_from(registry, "shop", &["shop/OrdersPlaced@3"]);
    let pipeline = fixture.pipeline();
    let order = |currency: &str| json!({"order_id": "o-1", "total": {"amount": 12.5, "currency": currency}});
    assert!(served(&pipeline, "shop", "shop/OrdersPlaced@3", &order("EUR")).await);
    assert!(!served(&pipeline, "shop", "shop/OrdersPlaced@3", &order("euro")).await);
    let mut extra = order("EUR");
    extra["note"] = json!("x");
    assert!(!served(&pipeline, "shop", "shop/OrdersPlaced@3", &extra).await);
    let mut short = order("EUR");
    short["order_id"] = json!("o");
    assert!(!served(&pipeline, "shop", "shop/OrdersPlaced@3", &short).await);
    let version = pipeline
        .registry()
        .contract_version(&contextgate::registry::ContractId::parse("shop/OrdersPlaced@3").unwrap())
        .unwrap();
    assert_eq!(version.label.as_deref(), Some("1.10.0"));

    // The collection gains a version: importing again adds it after the others, keeps what the
    // team wrote in contract.toml, and judges the new step.
    let metadata = registry.join("contracts/shop/OrdersPlaced/contract.toml");
    let edited = std::fs::read_to_string(&metadata).unwrap().replacen(
        "visibility = \"published\"\n",
        "visibility = \"published\"\ndescription = \"Orders, as the shop publishes them.\"\n",
        1,
    );
    std::fs::write(&metadata, edited).unwrap();
    // Fewer properties allowed: a break.
    write(
        root,
        "orders/placed/2.0.0.yaml",
        &placed("additionalProperties: false\nmaxProperties: 2\n"),
    );
    let again = import(registry, "shop", root, &[]);
    let output = text(&again);
    assert_eq!(again.status.code(), Some(0), "{output}");
    assert!(
        output.contains("> shop/OrdersPlaced (published): keeps its 3 version(s), adds")
            && output.contains("v4 [2.0.0] ← orders/placed/2.0.0.yaml — breaks the level")
            && output.contains("= shop/CommonMoney: has every version of the collection already"),
        "{output}"
    );
    let toml = std::fs::read_to_string(&metadata).unwrap();
    assert!(
        toml.contains("description = \"Orders, as the shop publishes them.\"")
            && toml.contains(
                "[versions.v4]\nsource = \"orders/placed/2.0.0.yaml\"\nlabel = \"2.0.0\""
            )
            && toml.contains("v4 = \"imported\""),
        "{toml}"
    );
    let check = contextgate(&["check", "--registry", registry.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));

    // The API lists each version's label beside its number.
    let gateway = contextgate::gateway::Gateway::new(
        fixture.pipeline(),
        contextgate::bus::Bus::InProcess(contextgate::bus::InProcessBus::default()),
    );
    let base = serve_gateway(gateway).await;
    let listed: Value = serde_json::from_slice(
        &http()
            .get(format!("{base}/v1/contexts/shop/contracts"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let placed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|contract| contract["name"] == "shop/OrdersPlaced")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(placed["versions"], json!([1, 2, 3, 4]));
    assert_eq!(
        placed["labels"],
        json!({"1": "1.0.0", "2": "1.9.0", "3": "1.10.0", "4": "2.0.0"})
    );
}

fn git(folder: &Path, args: &[&str]) {
    let output = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", text(&output));
}

#[test]
fn a_git_history_becomes_versions_and_a_revision_is_read_as_it_was() {
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    let repository = tempfile::TempDir::new().unwrap();
    let root = repository.path();
    git(root, &["init", "-q"]);
    let schemas = root.join("schemas");
    let commit = |schema: Value, message: &str| {
        json_file(&schemas, "payment/captured.json", &schema);
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", message]);
    };
    // A name git would quote in its line output.
    json_file(
        &schemas,
        "paiement/reçu.json",
        &json!({"type": "object", "properties": {"montant": {"type": "number"}}}),
    );
    commit(
        json!({"type": "object", "properties": {"amount": {"type": "number"}}}),
        "first",
    );
    // Breaking for backward compatibility: a new required property.
    commit(
        json!({"type": "object", "required": ["currency"],
            "properties": {"amount": {"type": "number"}, "currency": {"type": "string", "maxLength": 3}}}),
        "currency required",
    );
    // Compatible with the version before (commands are checked backward, not transitively):
    // a looser bound.
    commit(
        json!({"type": "object", "required": ["currency"],
            "properties": {"amount": {"type": "number"}, "currency": {"type": "string", "maxLength": 10}}}),
        "a looser cap",
    );
    let dry = import(
        registry,
        "payments",
        &schemas,
        &["--history", "--kind", "command", "--dry-run"],
    );
    let plan = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{plan}");
    assert!(
        plan.contains("+ payments/PaiementReU (command, published)")
            && plan.contains("← paiement/reçu.json"),
        "{plan}"
    );
    assert!(
        plan.contains("+ payments/PaymentCaptured (command, published)")
            && plan.contains("v2 [")
            && plan.contains("v3 ["),
        "three versions, labelled with their commits:\n{plan}"
    );
    assert!(
        plan.lines()
            .any(|line| line.contains("v2 [") && line.contains("accepted as \"imported\"")),
        "{plan}"
    );
    assert!(
        plan.lines()
            .any(|line| line.contains("v3 [") && !line.contains("breaks")),
        "{plan}"
    );

    // At a revision, without the history: the folder as it was then, one version.
    let at = import(registry, "payments", &schemas, &["--rev", "HEAD~2"]);
    assert_eq!(at.status.code(), Some(0), "{}", text(&at));
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(registry.join("contracts/payments/PaymentCaptured/v1.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored["properties"].as_object().unwrap().len(), 1);
    assert!(
        !registry
            .join("contracts/payments/PaymentCaptured/v2.json")
            .exists()
    );
}

#[test]
fn an_import_that_would_not_pass_check_writes_nothing_and_says_where() {
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    let collection = tempfile::TempDir::new().unwrap();
    json_file(
        collection.path(),
        "a/thing.json",
        &json!({"type": "object",
            "properties": {"part": {"$ref": "missing.json"}}}),
    );
    let before = std::fs::read_to_string(registry.join("contextgate.toml")).unwrap();
    let output = import(registry, "things", collection.path(), &[]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("contracts/things/AThing/v1.json:")
            && shown.contains("contextgate://registry/sources/things/a/missing.json"),
        "{shown}"
    );
    assert!(!registry.join("contracts/things").exists());
    assert_eq!(
        std::fs::read_to_string(registry.join("contextgate.toml")).unwrap(),
        before
    );
}

#[tokio::test]
async fn patterns_in_accepts_expand_at_load_and_check_shows_the_expansion() {
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    let collection = tempfile::TempDir::new().unwrap();
    webhook_collection(collection.path());
    let imported = import(registry, "github", collection.path(), &[]);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
    route_from(registry, "github", &["github/*"]);
    let check = contextgate(&["check", "--registry", registry.to_str().unwrap()]);
    let shown = text(&check);
    assert_eq!(check.status.code(), Some(0), "{shown}");
    let notice = shown
        .lines()
        .find(|line| line.contains("accepts \"github/*\""))
        .unwrap_or_else(|| panic!("the expansion is shown:\n{shown}"));
    assert!(
        notice.contains("route github-to-down: accepts \"github/*\" takes 4 version(s): ")
            && notice.contains("github/IssuesOpened@1")
            && notice.contains("github/LegacyUpload@1")
            && notice.contains(
                "left out 3: github/CommonIssue@1 (internal: only its own open-host routes read it)"
            ),
        "{notice}"
    );
    let pipeline = fixture.pipeline();
    let release = json!({"release": {"assets": [{"size": 3}]}});
    assert!(served(&pipeline, "github", "github/ReleasePublished@1", &release).await);

    // Names and versions: a glob in the name, a bound on the version.
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    write(
        registry,
        "contracts/up/Thing/v2.json",
        &json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}})
            .to_string(),
    );
    let config = std::fs::read_to_string(registry.join("contextgate.toml")).unwrap();
    let patterned = |accepts: &str| {
        write(
            registry,
            "contextgate.toml",
            &config.replace("accepts = [\"up/Thing@1\"]", accepts),
        );
        contextgate::registry::load(registry)
    };
    let loaded = patterned("accepts = [\"up/Th?ng@>=2\", \"up/Pub*\"]").unwrap();
    let accepted: Vec<String> = loaded.routes[0]
        .accepts
        .iter()
        .map(|version| version.id.to_string())
        .collect();
    assert_eq!(accepted, ["up/Thing@2", "up/Published@1"]);
    // A pattern that takes nothing the route may take is a problem, saying what it left out.
    assert!(patterned("accepts = [\"up/Internal*\"]").is_err());
    let left_out = problems(registry);
    assert!(
        left_out.iter().any(
            |p| p.contains("accepts \"up/Internal*\" takes no contract version")
                && p.contains("up/Internal@1: internal")
        ),
        "{left_out:?}"
    );
    assert!(patterned("accepts = [\"up/*@~1\"]").is_err());
    let malformed = problems(registry);
    assert!(
        malformed
            .iter()
            .any(|p| p.contains("is not a version selector")),
        "{malformed:?}"
    );
}

#[tokio::test]
async fn refs_from_an_absolute_id_to_files_without_one_resolve_by_path() {
    // Laid out for tools that load files by path: the `$ref` is relative to the `$id`'s URL by
    // the specification, but only the file beside it holds the schema.
    let fixture = Fixture::new("conformist", None, "");
    let registry = fixture.root();
    let collection = tempfile::TempDir::new().unwrap();
    json_file(
        collection.path(),
        "billing/invoice.json",
        &json!({"$schema": DRAFT_07, "$id": "https://schemas.example.com/billing/invoice",
            "type": "object", "required": ["total"],
            "properties": {"total": {"$ref": "money.json"},
                "lines": {"type": "array", "items": {"$ref": "shared/line.json#/definitions/line"}}}}),
    );
    json_file(
        collection.path(),
        "billing/money.json",
        &json!({"$schema": DRAFT_07, "type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer", "minimum": 0}}}),
    );
    json_file(
        collection.path(),
        "shared/line.json",
        &json!({"$schema": DRAFT_07, "definitions": {"line": {"type": "object",
            "required": ["sku"], "properties": {"sku": {"type": "string"}}}}}),
    );
    let imported = import(registry, "billing", collection.path(), &[]);
    let output = text(&imported);
    assert_eq!(imported.status.code(), Some(0), "{output}");
    assert!(
        output.contains("+ billing/BillingMoney (event, internal)")
            && output.contains("+ billing/SharedLine (event, internal)")
            && output.contains("+ billing/BillingInvoice (event, published)"),
        "{output}"
    );
    route_from(registry, "billing", &["billing/BillingInvoice@1"]);
    let pipeline = fixture.pipeline();
    let invoice =
        |amount: i64, sku: Value| json!({"total": {"amount": amount}, "lines": [{"sku": sku}]});
    assert!(
        served(
            &pipeline,
            "billing",
            "billing/BillingInvoice@1",
            &invoice(5, json!("a"))
        )
        .await
    );
    assert!(
        !served(
            &pipeline,
            "billing",
            "billing/BillingInvoice@1",
            &invoice(-5, json!("a"))
        )
        .await
    );
    assert!(
        !served(
            &pipeline,
            "billing",
            "billing/BillingInvoice@1",
            &invoice(5, json!(1))
        )
        .await
    );
}
