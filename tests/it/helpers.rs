//! Shared test set-up: copies of the shipped registry, small fixture registries written to a
//! temporary folder, CloudEvents to feed the pipeline, and a pipeline loaded from a folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use contextgate::pipeline::{Delivery, Outcome, Pipeline, Verdict};
use contextgate::registry::{self, ContextName, RegistryError};
use contextgate::stages::{Failure, Reason, Stage};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The repository root, where the shipped registry lives.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the shipped registry in a temporary folder, to be changed by a test.
pub(crate) fn shipped_registry_copy() -> TempDir {
    let dir = TempDir::new().unwrap();
    copy_dir(&repo().join("contracts"), &dir.path().join("contracts"));
    copy_dir(&repo().join("translators"), &dir.path().join("translators"));
    std::fs::copy(
        repo().join("contextgate.toml"),
        dir.path().join("contextgate.toml"),
    )
    .unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Writes `contents` at `relative` under `root`, creating folders.
pub(crate) fn write(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Serves the HTTP API of `gateway`, open (no credentials), on a free port of 127.0.0.1 until
/// the test ends; its base URL.
pub(crate) async fn serve_gateway(gateway: Arc<contextgate::gateway::Gateway>) -> String {
    serve_gateway_with(gateway, contextgate::api::auth::Credentials::open()).await
}

/// The same with credentials.
pub(crate) async fn serve_gateway_with(
    gateway: Arc<contextgate::gateway::Gateway>,
    credentials: contextgate::api::auth::Credentials,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(contextgate::cli::serve::serve(
        listener,
        gateway,
        Arc::new(credentials),
        std::future::pending(),
    ));
    base
}

/// Runs the real binary with `args`, standard input closed, and waits for it.
pub(crate) fn run_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Loads a registry folder into a pipeline; panics with every problem if it does not load.
pub(crate) fn pipeline(root: &Path) -> Pipeline {
    match registry::load(root) {
        Ok(registry) => Pipeline::new(Arc::new(registry)),
        Err(RegistryError::Problems(problems)) => {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!("the registry has problems:\n{}", lines.join("\n"))
        }
        Err(error) => panic!("{error}"),
    }
}

/// The problems a registry folder has, as `file: message` lines (panics if it loads cleanly).
pub(crate) fn problems(root: &Path) -> Vec<String> {
    match registry::load(root) {
        Ok(_) => panic!("the registry loaded without problems"),
        Err(RegistryError::Problems(problems)) => {
            problems.iter().map(ToString::to_string).collect()
        }
        Err(error) => panic!("{error}"),
    }
}

/// A structured CloudEvent for `contract` (`orders/OrderPlaced@2`) with `data`.
pub(crate) fn event(contract: &str, id: &str, data: &Value) -> Delivery {
    Delivery::structured(event_body(contract, id, &data.to_string()))
}

/// The structured body of an event whose data is the raw JSON text `data`.
pub(crate) fn event_body(contract: &str, id: &str, data: &str) -> String {
    let (name, _) = contract.split_once('@').unwrap();
    let (context, message_type) = name.split_once('/').unwrap();
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/{context}","type":"{context}.{message_type}","dataschema":"contextgate:{contract}","subject":"s-1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{data}}}"#
    )
}

pub(crate) fn context(name: &str) -> ContextName {
    ContextName::parse(name).unwrap()
}

/// An example payload of the shipped registry.
pub(crate) fn example(relative: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("contracts").join(relative)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The one verdict of a single-route input.
pub(crate) fn only(verdicts: Vec<Verdict>) -> Verdict {
    assert_eq!(verdicts.len(), 1, "expected one verdict, got {verdicts:#?}");
    verdicts.into_iter().next().unwrap()
}

/// The verdict for one route among several.
pub(crate) fn on_route(verdicts: Vec<Verdict>, route: &str) -> Verdict {
    verdicts
        .into_iter()
        .find(|verdict| {
            verdict
                .route
                .as_ref()
                .is_some_and(|name| name.as_str() == route)
        })
        .unwrap_or_else(|| panic!("no verdict for route {route}"))
}

/// The failure of a dead-letter verdict, checked to be at `stage` for `reason`.
#[track_caller]
pub(crate) fn dead_letter(verdict: &Verdict, stage: Stage, reason: Reason) -> Failure {
    match &verdict.outcome {
        Outcome::DeadLetter { failure } => {
            assert_eq!(
                (failure.stage, failure.reason),
                (stage, reason),
                "{failure}"
            );
            failure.clone()
        }
        other => panic!("expected a dead letter at {stage} ({reason}), got {other:#?}"),
    }
}

/// Whether a failure lists a problem at `pointer`.
pub(crate) fn names_pointer(failure: &Failure, pointer: &str) -> bool {
    failure
        .problems
        .iter()
        .any(|problem| problem.pointer.as_deref() == Some(pointer))
}

/// The data of each forwarded message, parsed.
#[track_caller]
pub(crate) fn forwarded(verdict: &Verdict) -> Vec<Value> {
    match &verdict.outcome {
        Outcome::Forward { messages } => messages
            .iter()
            .map(|message| serde_json::from_slice(&message.data).unwrap())
            .collect(),
        other => panic!("expected a forward, got {other:#?}"),
    }
}

/// A minimal registry: contexts `up` and `down`; an event `up/Thing@1` {id, n} and a command
/// `down/Act@1` {id, total}; one route `up-to-down` of `mode` with `script` as
/// `down/map` (or `up/map` for open-host) when the mode translates. Extra TOML is appended
/// to the route.
pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
}

impl Fixture {
    pub(crate) fn new(mode: &str, script: Option<&str>, route_extra: &str) -> Self {
        let dir = TempDir::new().unwrap();
        let root = dir.path();
        let translator_owner = if mode == "open-host" { "up" } else { "down" };
        let output = if mode == "open-host" {
            "up/Published@1"
        } else {
            "down/Act@1"
        };
        let translator_line = match script {
            Some(_) => format!("translator = \"{translator_owner}/map\"\n"),
            None => String::new(),
        };
        let accepts = if mode == "open-host" {
            "up/Internal@1"
        } else {
            "up/Thing@1"
        };
        write(
            root,
            "contextgate.toml",
            &format!(
                r#"
[contexts.up]
[contexts.down]
lookup_allow = ["http://127.0.0.1/"]

[[routes]]
name = "up-to-down"
upstream = "up"
downstream = "down"
mode = "{mode}"
accepts = ["{accepts}"]
{translator_line}{route_extra}
"#
            ),
        );
        let thing = json!({
            "type": "object",
            "required": ["id", "n"],
            "properties": {"id": {"type": "string"}, "n": {"type": "number"}}
        });
        for (contract, kind, visibility, schema) in [
            ("up/Thing", "event", "published", thing.clone()),
            ("up/Internal", "event", "internal", thing.clone()),
            ("up/Published", "event", "published", thing),
            (
                "down/Act",
                "command",
                "published",
                json!({
                    "type": "object",
                    "required": ["id", "total"],
                    "additionalProperties": false,
                    "properties": {"id": {"type": "string"}, "total": {"type": "integer", "maximum": 1000}}
                }),
            ),
        ] {
            write(
                root,
                &format!("contracts/{contract}/contract.toml"),
                &format!("kind = \"{kind}\"\nvisibility = \"{visibility}\"\n"),
            );
            write(
                root,
                &format!("contracts/{contract}/v1.json"),
                &schema.to_string(),
            );
        }
        if let Some(script) = script {
            let input = accepts;
            write(
                root,
                &format!("translators/{translator_owner}/map.rhai"),
                script,
            );
            write(
                root,
                &format!("translators/{translator_owner}/map.toml"),
                &format!("input = \"{input}\"\noutput = \"{output}\"\n"),
            );
            write(
                root,
                &format!("translators/{translator_owner}/map.cases.json"),
                "[]",
            );
        }
        Self { dir }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn pipeline(&self) -> Pipeline {
        pipeline(self.root())
    }

    /// Runs one `up` event with `data` through the fixture's route.
    pub(crate) async fn run(&self, data: &Value) -> Verdict {
        let contract = if self.root().join("translators/up/map.rhai").exists() {
            "up/Internal@1"
        } else {
            "up/Thing@1"
        };
        let pipeline = self.pipeline();
        only(
            pipeline
                .process(&context("up"), &event(contract, "e-1", data))
                .await,
        )
    }
}

impl Fixture {
    /// Lets the `down` context's look-ups query `base` (e.g. a stub server's URL).
    pub(crate) fn allow(&self, base: &str) {
        let path = self.root().join("contextgate.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let start = config
            .find("lookup_allow = [")
            .expect("the fixture has a lookup_allow line");
        let end = start + config[start..].find('\n').unwrap();
        let config = format!(
            "{}lookup_allow = [{base:?}]{}",
            &config[..start],
            &config[end..]
        );
        std::fs::write(path, config).unwrap();
    }

    /// Sets `archive = false` on `context` (archives are on by default).
    pub(crate) fn not_archived(&self, context: &str) {
        let path = self.root().join("contextgate.toml");
        let header = format!("[contexts.{context}]\n");
        let config = std::fs::read_to_string(&path).unwrap().replacen(
            &header,
            &format!("{header}archive = false\n"),
            1,
        );
        std::fs::write(path, config).unwrap();
    }

    /// Appends TOML to `contextgate.toml`.
    pub(crate) fn append(&self, toml: &str) {
        let path = self.root().join("contextgate.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str(toml);
        std::fs::write(path, config).unwrap();
    }
}

/// Starts `command` (the real binary's `serve --listen 127.0.0.1:0 …`) with its standard error
/// piped, waits for the line that says where it listens, and drains the rest in a thread: the
/// child and its base URL.
pub(crate) fn serve_binary(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

/// Version `version` of the shipped `orders/OrderPlaced` in the registry at `dir`.
pub(crate) fn order_placed(dir: &Path, version: u32) -> Value {
    let text =
        std::fs::read_to_string(dir.join(format!("contracts/orders/OrderPlaced/v{version}.json")))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A backward-compatible v3 of the shipped `orders/OrderPlaced`: v2 with `shipping_address` no
/// longer required.
pub(crate) fn compatible_order_placed_v3(dir: &Path) -> Value {
    let mut schema = order_placed(dir, 2);
    schema["required"] = json!([
        "order_id",
        "customer_id",
        "placed_at",
        "currency",
        "total_minor",
        "lines"
    ]);
    schema
}

/// An HTTP client for the tests. reqwest is built with rustls and no default crypto provider
/// (the gateway gives its look-up clients a rustls config of its own), so ring is installed as
/// the process's default first.
/// `GET {base}{path}` with `token` (none: no `authorization`): the status, the content type and
/// the body.
pub(crate) async fn get_as(base: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = http().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A child process that is killed and reaped when the test ends, failed assertions included.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
