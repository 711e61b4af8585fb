//! RabbitMQ for the tests: a client that publishes with confirms and reads queues, the gateway's
//! AMQP bus started in the test process under a prefix of its own, clean-up of everything a test
//! declared (also when it panics), and a private broker node for faults that would disturb
//! other users of the shared one.
//!
//! The shared broker is `CONTEXTGATE_TEST_AMQP_URL` or guest@127.0.0.1:5672. A test that cannot
//! reach it fails with that address in the message; it never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::{AmqpBus, AmqpSettings, Names, topology};
use contextgate::pipeline::Pipeline;
use contextgate::registry::{ContextName, Registry};
use futures_util::StreamExt;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The shared broker's URL.
pub(crate) fn amqp_url() -> String {
    std::env::var("CONTEXTGATE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A name prefix no other test (or run) uses.
pub(crate) fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "test.{test}.{}.{}.{nanos}.",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain AMQP client, as a producing or consuming team would have.
pub(crate) struct Client {
    /// Kept open as long as the client lives.
    _connection: Connection,
    pub(crate) channel: Channel,
}

impl Client {
    pub(crate) async fn connect(url: &str) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| {
                panic!("RabbitMQ is not reachable at {url}: {error}. Start it (./scripts/test does) and run again.")
            });
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            _connection: connection,
            channel,
        }
    }

    /// Publishes persistent and mandatory; the broker's answer.
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> lapin::Result<Confirmation> {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties.with_delivery_mode(2),
            )
            .await?
            .await
    }

    /// Publishes and checks the broker stored it.
    pub(crate) async fn publish_stored(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let confirmation = self
            .publish(exchange, routing_key, body, properties)
            .await
            .unwrap();
        assert_eq!(
            confirmation,
            Confirmation::Ack(None),
            "the broker did not store it"
        );
    }

    /// Declares a queue bound to `exchange` for every routing key, as a subscribing team would.
    pub(crate) async fn subscribe(&self, queue: &str, exchange: &str) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    /// Messages ready in a queue.
    pub(crate) async fn count(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Takes (and acks) `n` messages from a queue, waiting up to `within` for them.
    pub(crate) async fn take(
        &self,
        queue: &str,
        n: usize,
        within: Duration,
    ) -> Vec<BasicGetMessage> {
        let deadline = Instant::now() + within;
        let mut taken = Vec::with_capacity(n);
        while taken.len() < n {
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .unwrap()
            {
                Some(message) => {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .unwrap();
                    taken.push(message);
                }
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => panic!(
                    "{queue}: expected {n} messages within {within:?}, got {}",
                    taken.len()
                ),
            }
        }
        taken
    }

    /// Asserts a queue stays empty for `wait`.
    pub(crate) async fn assert_empty(&self, queue: &str, wait: Duration) {
        tokio::time::sleep(wait).await;
        assert_eq!(self.count(queue).await, 0, "{queue} should be empty");
    }
}

/// A header as text (strings) or its debug form.
pub(crate) fn header(message: &BasicGetMessage, name: &str) -> Option<String> {
    let value = message
        .delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(name)?;
    Some(match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

/// Binary-mode CloudEvents headers for an event of `contract` (`up/Thing@1`).
pub(crate) fn binary_event(contract: &str, id: &str) -> BasicProperties {
    let (name, _) = contract.split_once('@').unwrap();
    let (context, message_type) = name.split_once('/').unwrap();
    let mut headers = FieldTable::default();
    for (attribute, value) in [
        ("specversion", "1.0".to_owned()),
        ("id", id.to_owned()),
        ("source", format!("/{context}")),
        ("type", format!("{context}.{message_type}")),
        ("dataschema", format!("contextgate:{contract}")),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        ),
    ] {
        headers.insert(
            format!("cloudEvents_{attribute}").into(),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(id.into())
        .with_headers(headers)
}

/// Deletes what a test declared when it is dropped, also after a panic.
pub(crate) struct Cleanup {
    url: String,
    queues: Mutex<Vec<String>>,
    exchanges: Vec<String>,
}

impl Cleanup {
    /// Everything the gateway declares for `registry` under `names`.
    pub(crate) fn new(url: &str, names: &Names, registry: &Registry) -> Self {
        let mut queues = vec![names.unrouted(), names.dead_letter_queue(None)];
        let mut exchanges = Vec::new();
        for route in &registry.routes {
            let shards = route.shards;
            let route = route.name.as_str();
            queues.push(names.route_queue(route));
            queues.push(names.dead_letter_queue(Some(route)));
            queues.push(names.dedup(route));
            queues.push(names.sequencer_queue(route));
            for shard in 0..shards {
                queues.push(names.shard_queue(route, shard));
            }
            exchanges.push(names.shard_exchange(route));
        }
        // Routes added later (over HTTP) retry with the default policy.
        let mut steps = topology::delay_steps(registry);
        let default = contextgate::registry::Policy::default();
        steps.extend((2..=default.max_attempts).map(|attempt| default.backoff(attempt, None)));
        for step in steps {
            queues.push(names.delay_queue(step));
        }
        exchanges.extend([
            names.dead_letters(),
            names.retries(),
            names.retry(),
            names.unrouted(),
            names.fleet(),
        ]);
        for context in registry.contexts.keys() {
            exchanges.push(names.outbound(context));
            exchanges.push(names.inbound(context));
            queues.push(names.archive(context));
            queues.push(names.archiving(context));
        }
        Self {
            url: url.to_owned(),
            queues: Mutex::new(queues),
            exchanges,
        }
    }

    /// Also deletes this queue.
    pub(crate) fn queue(&self, name: &str) {
        self.queues.lock().unwrap().push(name.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let url = self.url.clone();
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        let exchanges = std::mem::take(&mut self.exchanges);
        // A runtime of its own: drop may run inside or outside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(connection) =
                    Connection::connect(&url, ConnectionProperties::default()).await
                else {
                    return;
                };
                for queue in queues {
                    if let Ok(channel) = connection.create_channel().await {
                        let deleted = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                        if deleted.is_ok() {
                            // Quorum queues deleted in a burst can crash 3.10's log writer.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                for exchange in exchanges {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = channel
                            .exchange_delete(
                                exchange.as_str().into(),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                }
                let _ = connection.close(200, "clean-up done".into()).await;
            });
        })
        .join();
    }
}

/// The gateway's AMQP bus running in this process.
pub(crate) struct Running {
    pub(crate) bus: Arc<AmqpBus>,
    pub(crate) names: Names,
    /// Replacing the pipeline here is what a registration does.
    pub(crate) pipeline: watch::Sender<Pipeline>,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Settings for tests: short timeouts, the given prefix.
pub(crate) fn settings(url: &str, prefix: &str) -> AmqpSettings {
    let mut settings = AmqpSettings::new(url);
    settings.prefix = prefix.to_owned();
    settings.confirm_timeout = Duration::from_secs(5);
    settings.shutdown_timeout = Duration::from_secs(5);
    settings
}

/// Starts the bus and waits until it is ready (connected, declared, consuming).
pub(crate) async fn start(pipeline: Pipeline, settings: AmqpSettings) -> Running {
    let names = Names::new(settings.prefix.clone());
    let url = settings.url.clone();
    let bus = Arc::new(AmqpBus::new(settings));
    let (stop, stopping) = watch::channel(false);
    let (pipeline, pipelines) = watch::channel(pipeline);
    let running = bus.clone();
    let task = tokio::spawn(async move { running.run(pipelines, stopping).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bus.status().is_ready() {
        assert!(
            Instant::now() < deadline && !task.is_finished(),
            "the gateway did not get ready on RabbitMQ at {url} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        bus,
        names,
        pipeline,
        stop,
        task,
    }
}

impl Running {
    /// Stops consuming, lets what is in flight finish, and checks the bus ended cleanly.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the gateway stops within its shutdown timeout")
            .unwrap()
            .unwrap();
    }
}

/// Publishes `n` events `up/Thing@1` `{"id": "<tag>-<i>", "n": <i>}` to `up`'s outbound
/// exchange, in batches of confirmed publishes: the ids the broker accepted (all of them).
pub(crate) async fn publish_backlog(
    client: &Client,
    names: &Names,
    tag: &str,
    n: usize,
) -> BTreeSet<String> {
    let exchange = names.outbound(&context("up"));
    let mut accepted = BTreeSet::new();
    for batch in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let mut pending = Vec::with_capacity(batch.len());
        for &i in batch {
            let id = format!("{tag}-{i}");
            let data = format!(r#"{{"id":"{id}","n":{i}}}"#);
            let confirm = client
                .channel
                .basic_publish(
                    exchange.as_str().into(),
                    "up.Thing".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    data.as_bytes(),
                    binary_event("up/Thing@1", &id).with_delivery_mode(2),
                )
                .await
                .unwrap();
            pending.push((id, confirm));
        }
        for (id, confirm) in pending {
            if confirm.await.unwrap() == Confirmation::Ack(None) {
                accepted.insert(id);
            }
        }
    }
    assert_eq!(accepted.len(), n, "the broker accepted the whole backlog");
    accepted
}

/// How many times each `data.id` comes out of `queue`: read (without acks) until `expected`
/// messages came and nothing more for `settle`, or nothing at all for `idle`.
pub(crate) async fn ids_in(
    url: &str,
    queue: &str,
    expected: usize,
    settle: Duration,
    idle: Duration,
) -> BTreeMap<String, usize> {
    let connection = connect_retrying(url).await;
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = 0;
    loop {
        let wait = if seen >= expected { settle } else { idle };
        let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await else {
            break;
        };
        let delivery = delivery.unwrap();
        let data: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        let id = data["id"].as_str().expect("every message has data.id");
        *counts.entry(id.to_owned()).or_default() += 1;
        seen += 1;
    }
    let _ = connection.close(200, "read".into()).await;
    counts
}

/// The dead letters kept in a dead-letter stream, oldest first: its records without the
/// gateway's markers and tombstones and without those a tombstone settled. Read from the first
/// offset until at least `expected` came and nothing more for `settle`, or nothing at all for
/// `idle`.
pub(crate) async fn kept_dead_letters(
    url: &str,
    stream: &str,
    expected: usize,
    settle: Duration,
    idle: Duration,
) -> Vec<BasicGetMessage> {
    let connection = connect_retrying(url).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(1_000, lapin::options::BasicQosOptions::default())
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let mut consumer = channel
        .basic_consume(
            stream.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .unwrap_or_else(|error| panic!("cannot read the stream {stream}: {error}"));
    let mut kept: Vec<(i64, BasicGetMessage)> = Vec::new();
    loop {
        let live = kept.len();
        let wait = if live >= expected { settle } else { idle };
        let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await else {
            break;
        };
        let delivery = delivery.unwrap();
        channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await
            .unwrap();
        let number = |name: &str| match header_value(&delivery.properties, name)? {
            AMQPValue::LongLongInt(n) => Some(n),
            _ => None,
        };
        let offset = number("x-stream-offset").expect("a stream gives every record its offset");
        if let Some(settled) = number("x-gateway-settles") {
            kept.retain(|(kept, _)| *kept != settled);
        } else if header_value(&delivery.properties, "x-gateway-marker").is_none() {
            kept.push((
                offset,
                BasicGetMessage {
                    delivery,
                    message_count: 0,
                },
            ));
        }
    }
    let _ = connection.close(200, "read".into()).await;
    kept.into_iter().map(|(_, message)| message).collect()
}

fn header_value(properties: &BasicProperties, name: &str) -> Option<AMQPValue> {
    properties.headers().as_ref()?.inner().get(name).cloned()
}

/// How many times each `data.id` is among the dead letters of `route` (`None`: those that had
/// no route), read as [`kept_dead_letters`] reads.
pub(crate) async fn dead_letter_ids(
    url: &str,
    names: &Names,
    route: Option<&str>,
    expected: usize,
    settle: Duration,
) -> BTreeMap<String, usize> {
    let stream = names.dead_letter_queue(route);
    let mut counts = BTreeMap::new();
    for message in kept_dead_letters(url, &stream, expected, settle, Duration::from_secs(30)).await
    {
        let data: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
        let id = data["id"].as_str().expect("every message has data.id");
        *counts.entry(id.to_owned()).or_default() += 1;
    }
    counts
}

/// A connection to `url`, retried for up to a minute (the broker may be restarting after a
/// fault); the test fails with the address if none comes.
pub(crate) async fn connect_retrying(url: &str) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Connection::connect(url, ConnectionProperties::default()).await {
            Ok(connection) => return connection,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot reconnect to {url}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Asserts every id of `accepted` is in `counts` exactly once, and nothing else is.
pub(crate) fn assert_exactly_once(
    accepted: &BTreeSet<String>,
    counts: &BTreeMap<String, usize>,
    what: &str,
) {
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected: Vec<&String> = counts.keys().filter(|id| !accepted.contains(*id)).collect();
    eprintln!(
        "{what}: {} of {} ids, lost {}, repeated {}, unexpected {}",
        counts.len(),
        accepted.len(),
        lost.len(),
        repeated.len(),
        unexpected.len()
    );
    assert!(
        lost.is_empty() && repeated.is_empty() && unexpected.is_empty(),
        "{what}: every input exactly once; lost {lost:?}, repeated {repeated:?}, unexpected {unexpected:?}"
    );
}

/// Declares the gateway's topology without starting it (to pre-load a backlog).
pub(crate) async fn declare(client: &Client, names: &Names, registry: &Registry) {
    topology::declare(
        &client.channel,
        names,
        registry,
        topology::QueueSettings { delivery_limit: 20 },
    )
    .await
    .unwrap();
}

pub(crate) fn context(name: &str) -> ContextName {
    ContextName::parse(name).unwrap()
}

/// A RabbitMQ node of the test's own, on its own ports and folders, for faults that would
/// disturb other users of the shared broker (stop_app, close_all_connections). Stopped and
/// removed on drop.
pub(crate) struct PrivateNode {
    pub(crate) name: String,
    pub(crate) port: u16,
    home: tempfile::TempDir,
}

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl PrivateNode {
    pub(crate) fn start(tag: &str, port: u16) -> Self {
        Self::start_full(tag, port, None, "")
    }

    /// Starts a node whose `rabbitmq.conf` is `config` (e.g. a TLS listener:
    /// `listeners.ssl.default`, `ssl_options.*`).
    pub(crate) fn start_with(tag: &str, port: u16, config: &str) -> Self {
        Self::start_full(tag, port, None, config)
    }

    /// A node whose Erlang cookie is `cookie` (nodes that share one can form a cluster).
    fn start_with_cookie(tag: &str, port: u16, cookie: Option<&str>) -> Self {
        Self::start_full(tag, port, cookie, "")
    }

    fn start_full(tag: &str, port: u16, cookie: Option<&str>, config: &str) -> Self {
        let home = tempfile::TempDir::new().unwrap();
        let name = format!("cg-{tag}-{}@localhost", std::process::id());
        if let Some(cookie) = cookie {
            use std::os::unix::fs::PermissionsExt as _;
            let path = home.path().join(".erlang.cookie");
            std::fs::write(&path, cookie).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        // The shards of ordered routes hang off a consistent-hash exchange.
        std::fs::write(
            home.path().join("enabled_plugins"),
            "[rabbitmq_consistent_hash_exchange].\n",
        )
        .unwrap();
        std::fs::write(home.path().join("rabbitmq.conf"), config).unwrap();
        let node = Self { name, port, home };
        let status = node
            .command("rabbitmq-server")
            .arg("-detached")
            .status()
            .unwrap_or_else(|error| panic!("cannot run {RABBITMQ_BIN}/rabbitmq-server: {error}"));
        assert!(status.success(), "rabbitmq-server -detached failed");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if node.ctl(&["await_startup", "--timeout", "30"]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ node {} did not start within 90 s (logs in {})",
                node.name,
                node.home.path().display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        node
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f?heartbeat=5", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let home = self.home.path();
        let mut command = Command::new(PathBuf::from(RABBITMQ_BIN).join(program));
        command
            .env("HOME", home)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", (self.port + 20_000).to_string())
            .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                home.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", home.join("log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }

    /// The OS process id of the node's Erlang VM (to stop and continue it).
    pub(crate) fn os_pid(&self) -> String {
        let output = self
            .command("rabbitmqctl")
            .args(["-q", "-n", &self.name, "eval", "os:getpid()."])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&output.stdout)
            .trim()
            .trim_matches('"')
            .to_owned();
        assert!(
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()),
            "no pid: {pid:?}"
        );
        pid
    }

    /// Runs `rabbitmqctl -q -n <node> args…`; what it printed.
    pub(crate) fn ctl_output(&self, args: &[&str]) -> String {
        let output = self
            .command("rabbitmqctl")
            .arg("-q")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `rabbitmqctl -n <node> args…`; whether it succeeded.
    pub(crate) fn ctl(&self, args: &[&str]) -> bool {
        self.command("rabbitmqctl")
            .arg("-q")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        self.ctl(&["stop"]);
    }
}

/// Three private RabbitMQ nodes joined in one cluster, on ports `port`, `port + 1` and
/// `port + 2`: quorum queues declared on it have a replica on each. Stopped on drop.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<PrivateNode>,
}

impl Cluster {
    pub(crate) fn start(tag: &str, port: u16) -> Self {
        let cookie = format!("CONTEXTGATETEST{}{tag}", std::process::id()).to_uppercase();
        // The three boot side by side; then two join the first.
        let nodes: Vec<PrivateNode> = std::thread::scope(|scope| {
            let booting: Vec<_> = (0..3_u16)
                .map(|i| {
                    let cookie = &cookie;
                    scope.spawn(move || {
                        PrivateNode::start_with_cookie(&format!("{tag}{i}"), port + i, Some(cookie))
                    })
                })
                .collect();
            booting
                .into_iter()
                .map(|node| node.join().expect("a node started"))
                .collect()
        });
        for node in &nodes[1..] {
            assert!(node.ctl(&["stop_app"]), "{}: stop_app", node.name);
            assert!(
                node.ctl(&["join_cluster", &nodes[0].name]),
                "{} could not join {}",
                node.name,
                nodes[0].name
            );
            assert!(node.ctl(&["start_app"]), "{}: start_app", node.name);
        }
        let status = nodes[0].ctl_output(&["cluster_status", "--formatter", "json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(
            status["running_nodes"].as_array().map(Vec::len),
            Some(3),
            "three running nodes: {status}"
        );
        Self { nodes }
    }

    /// The nodes that hold a replica of `queue` (quorum queues: its members).
    pub(crate) fn members(&self, queue: &str) -> Vec<String> {
        let listed =
            self.nodes[0].ctl_output(&["list_queues", "name", "members", "--formatter", "json"]);
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["name"] == queue)
            .and_then(|entry| entry["members"].as_array())
            .map(|members| {
                members
                    .iter()
                    .filter_map(|member| member.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}
