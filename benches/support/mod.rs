//! What the benches share: the bench registry, its ~1 KB event as a binary-mode delivery, a
//! stub customers service for the enrich route, and polling a future that is ready at once;
//! `broker` holds what the benches on RabbitMQ share.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use std::sync::Arc;

use bytes::Bytes;
use contextgate::pipeline::{Delivery, Pipeline, Verdict};
use contextgate::registry::{self, Registry, Route, RouteName};

// Only the benches on a broker (`amqp`, `fleet`) use it.
#[allow(dead_code)]
pub(crate) mod broker;
#[allow(dead_code)]
pub(crate) mod latency;

/// Everything a bench needs: a runtime, the bench registry loaded with its look-up pointed at a
/// stub customers service, the pipeline, and the event as binary-mode deliveries.
pub(crate) struct Bench {
    pub(crate) runtime: tokio::runtime::Runtime,
    /// Holds the registry copy on disk while the bench runs.
    _registry_dir: tempfile::TempDir,
    pub(crate) registry: Arc<Registry>,
    pub(crate) pipeline: Pipeline,
    pub(crate) data: Bytes,
    /// The event as `shop/OrderPlaced@1` (conformist, anti-corruption, enrich).
    pub(crate) placed: Delivery,
    /// The event as the shop's internal `shop/OrderRecorded@1` (open-host).
    pub(crate) recorded: Delivery,
}

impl Bench {
    pub(crate) fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The customers service the enrich route looks up (answers are cached after the first).
        let base = spawn_customers(&runtime);
        let registry_dir = registry_with_lookup_base(&base);
        let registry =
            Arc::new(registry::load(registry_dir.path()).expect("the bench registry loads"));
        let data = event_data();
        Self {
            runtime,
            _registry_dir: registry_dir,
            pipeline: Pipeline::new(registry.clone()),
            registry,
            placed: delivery("shop/OrderPlaced@1", &data),
            recorded: delivery("shop/OrderRecorded@1", &data),
            data,
        }
    }

    pub(crate) fn route(&self, name: &str) -> Arc<Route> {
        self.registry
            .route(&RouteName::parse(name).unwrap())
            .unwrap()
            .clone()
    }

    /// One route per mode, with the delivery it takes.
    pub(crate) fn modes(&self) -> [(&'static str, Arc<Route>, &Delivery); 4] {
        [
            ("conformist", self.route("shop-to-audit"), &self.placed),
            (
                "anti-corruption",
                self.route("shop-to-warehouse"),
                &self.placed,
            ),
            ("open-host", self.route("shop-published"), &self.recorded),
            (
                "enrich (cached look-up)",
                self.route("shop-to-billing"),
                &self.placed,
            ),
        ]
    }

    /// One delivery through one route, as a transport would run it.
    pub(crate) fn run(&self, route: &Route, delivery: &Delivery) -> Verdict {
        ready(&self.runtime, self.pipeline.process_on(route, delivery, 1))
    }
}

pub(crate) fn bench_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/registry")
}

/// Polls a future that is expected to be ready at once (no I/O); a cached look-up may still
/// yield, in which case the runtime finishes it.
fn ready<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    let _inside = runtime.enter();
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => runtime.block_on(future),
    }
}

/// Binary-mode delivery of `contract` with the bench event as data, as it comes off AMQP.
fn delivery(contract: &str, data: &Bytes) -> Delivery {
    let (name, _) = contract.split_once('@').unwrap();
    let event_type = name.replace('/', ".");
    Delivery {
        content_type: Some("application/json".into()),
        headers: vec![
            ("cloudEvents_specversion".into(), "1.0".into()),
            (
                "cloudEvents_id".into(),
                "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            ),
            ("cloudEvents_source".into(), "/shop".into()),
            ("cloudEvents_type".into(), event_type),
            (
                "cloudEvents_dataschema".into(),
                format!("contextgate:{contract}"),
            ),
            ("cloudEvents_time".into(), "2026-11-27T10:15:00Z".into()),
            (
                "cloudEvents_traceparent".into(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            ),
        ],
        body: data.clone(),
    }
}

/// A copy of the bench registry whose look-up points at `base`.
fn registry_with_lookup_base(base: &str) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    copy_dir(&bench_root(), dir.path());
    let path = dir.path().join("contextgate.toml");
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1/", base);
    std::fs::write(path, config).unwrap();
    dir
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
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

/// Starts the customers service the enrich route looks up; its base URL.
fn spawn_customers(runtime: &tokio::runtime::Runtime) -> String {
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/customers/{id}",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"name": "Ada Lovelace", "tier": "gold"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    })
}

/// The bench event's data, compact.
pub(crate) fn event_data() -> Bytes {
    let text = std::fs::read_to_string(bench_root().join("event.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    Bytes::from(serde_json::to_vec(&value).unwrap())
}

/// The naive reference pipeline the targets are stated against: `serde_json::from_slice` →
/// `is_valid` → `rhai::serde::to_dynamic` → `Engine::call_fn` → `rhai::serde::from_dynamic` →
/// `is_valid` → `serde_json::to_vec`, with a default `Engine` and the anti-corruption route's
/// schemas and script.
pub(crate) struct Naive {
    input: jsonschema::Validator,
    output: jsonschema::Validator,
    pub(crate) engine: rhai::Engine,
    pub(crate) ast: rhai::AST,
}

impl Naive {
    pub(crate) fn new() -> Self {
        let schema = |path: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(bench_root().join(path)).unwrap()).unwrap()
        };
        let engine = rhai::Engine::new();
        let script =
            std::fs::read_to_string(bench_root().join("translators/warehouse/pick_list.rhai"))
                .unwrap();
        Self {
            input: jsonschema::validator_for(&schema("contracts/shop/OrderPlaced/v1.json"))
                .unwrap(),
            output: jsonschema::validator_for(&schema("contracts/warehouse/PickList/v1.json"))
                .unwrap(),
            ast: engine.compile(&script).unwrap(),
            engine,
        }
    }

    pub(crate) fn run(&self, bytes: &[u8]) -> Vec<u8> {
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert!(self.input.is_valid(&value));
        let dynamic = rhai::serde::to_dynamic(&value).unwrap();
        let result: rhai::Dynamic = self
            .engine
            .call_fn(&mut rhai::Scope::new(), &self.ast, "translate", (dynamic,))
            .unwrap();
        let output: serde_json::Value = rhai::serde::from_dynamic(&result).unwrap();
        assert!(self.output.is_valid(&output));
        serde_json::to_vec(&output).unwrap()
    }
}
