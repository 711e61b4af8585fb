//! RabbitMQ over AMQP 0.9.1 (lapin): at-least-once delivery between contexts.
//!
//! A *session* is one pair of connections — one to consume, one to publish, so that a broker
//! that blocks publishers (a memory or disk alarm) never stops the acks — with the topology
//! declared and a consumer per route. [`AmqpBus::run`] keeps a session up: when a connection
//! fails (broker restart, connections closed, heartbeats missed, a consumer cancelled) it drops
//! the session, whose unacked deliveries the broker puts back, and builds a new one after a
//! backoff. On stop it stops the consumers (route queues' are cancelled; shards and sequencers
//! only close their channels, see `worker::consume_route`), lets the inputs in flight finish
//! within the shutdown timeout, and closes the connections; what did not finish is redelivered
//! later.
//!
//! Routes without an ordering key are read from their own queue by every instance of a fleet
//! (competing consumers). An ordered route is read through its sequencer and shards: every
//! instance subscribes to the sequencer queue (one is active) and to the shards the fleet's
//! membership assigns it ([`fleet`]); see ARCHITECTURE.md, "A key's path through the shards".
//!
//! A new registry does not end the session: its topology is declared, the consumers take their
//! next deliveries on it, routes it adds get a consumer, and routes it removes have theirs
//! stopped like on a stop. Nothing in flight goes back to a queue, so nothing runs twice.
//!
//! # Layout
//! - [`topology`]: the names (one prefix) and their declaration.
//! - [`worker`]: a consumer per route (or shard), ordering lanes, acting on verdicts.
//! - [`sequencer`]: an ordered route's inputs republished to its shards by ordering key.
//! - [`fleet`]: the instance id, the fleet's membership, the assignment of shards.
//! - [`publisher`]: persistent, mandatory publishes and their confirms.
//! - [`settle`]: acks after confirms, batched with `multiple`.
//! - [`wire`]: CloudEvents binary and structured mode, the gateway's headers.
//! - [`depth`]: each route queue's depth (consumer lag), polled for the metrics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::message::Message;
use crate::pipeline::Pipeline;
use crate::registry::{ContextName, Registry, RouteName, Wire};
use crate::telemetry;

pub mod archiver;
pub mod dead_letters;
pub mod dedup;
pub mod depth;
pub mod fleet;
pub mod publisher;
pub mod replay;
pub mod sequencer;
pub mod settle;
pub mod topology;
pub mod wire;
pub mod worker;

pub use fleet::InstanceId;
pub use publisher::Confirmed;
pub use topology::Names;

/// The largest AMQP frame the gateway asks for unless the URL says (`?frame_max=`).
pub const FRAME_MAX: u32 = 32 * 1024;

/// How the gateway talks to RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost`; `?heartbeat=` defaults to 10 s, `?frame_max=`
    /// to 32 KiB.
    pub url: String,
    /// Put before every exchange and queue name.
    pub prefix: String,
    /// Unacked deliveries per route consumer.
    pub prefetch: u16,
    /// Inputs of one route processed in parallel (one ordering key stays in one lane).
    pub lanes: usize,
    /// How long a publish waits for the broker's confirm (longer while the broker blocks us).
    pub confirm_timeout: Duration,
    /// `x-delivery-limit` of the route queues.
    pub delivery_limit: u32,
    /// How long a stop waits for the inputs in flight.
    pub shutdown_timeout: Duration,
    /// The CA and client certificate of an `amqps://` URL (none: the system's roots only).
    pub tls: AmqpTls,
    /// This gateway among a fleet sharing one broker and prefix: in consumer tags, connection
    /// names, heartbeats and the assignment of ordered routes' shards.
    pub instance: InstanceId,
}

/// What an `amqps://` connection trusts and shows, read and checked at start (`crate::tls`).
#[derive(Debug, Clone, Default)]
pub struct AmqpTls {
    /// Trusted in addition to the system's roots (`--amqp-ca-file`).
    pub ca: Option<crate::tls::Certificates>,
    /// Sent when the broker asks for a client certificate (`--amqp-client-cert`/`-key`).
    pub identity: Option<crate::tls::ClientIdentity>,
}

impl AmqpTls {
    /// Whether any TLS file was given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.identity.is_some()
    }

    /// lapin's form of it.
    fn lapin_config(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self.identity.as_ref().map(|identity| OwnedIdentity::PKCS8 {
                pem: identity.certificate_pem().as_bytes().to_vec(),
                key: identity.key_pem().as_bytes().to_vec(),
            }),
            cert_chain: self.ca.as_ref().map(|ca| ca.pem().to_owned()),
        }
    }
}

impl AmqpSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: String::new(),
            prefetch: 500,
            lanes: 16,
            confirm_timeout: Duration::from_secs(10),
            delivery_limit: 20,
            shutdown_timeout: Duration::from_secs(10),
            tls: AmqpTls::default(),
            instance: InstanceId::from_host(),
        }
    }

    /// The URL with the gateway's defaults filled in; an error names what is wrong with it.
    pub fn uri(&self) -> Result<AMQPUri, String> {
        let mut uri: AMQPUri = self
            .url
            .parse()
            .map_err(|error| format!("the AMQP URL is invalid: {error}"))?;
        if uri.scheme == AMQPScheme::AMQP && self.tls.is_set() {
            return Err(
                "TLS files were given (--amqp-ca-file, --amqp-client-cert) but the AMQP \
                 URL is amqp://, which does not use TLS: use amqps:// (RabbitMQ's TLS port, \
                 5671 by default)"
                    .to_owned(),
            );
        }
        uri.query.heartbeat.get_or_insert(10);
        // lapin keeps 32 frames of read and of write buffer per connection: at RabbitMQ's
        // 128 KiB default that is 16 MiB for the two connections; bigger messages are only
        // split into more frames.
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        uri.query.connection_timeout.get_or_insert(5_000);
        Ok(uri)
    }
}

/// What the rest of the gateway can see of the broker connection.
#[derive(Debug)]
pub struct Status {
    ready: AtomicBool,
    /// Sessions lost and built again since the bus started.
    reconnects: std::sync::atomic::AtomicU64,
    blocked: watch::Sender<bool>,
    /// The digest of the registry the consumers run on (its topology declared).
    running: watch::Sender<[u8; 32]>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
            reconnects: std::sync::atomic::AtomicU64::new(0),
            blocked: watch::Sender::new(false),
            running: watch::Sender::new([0; 32]),
        }
    }
}

impl Status {
    /// Connected, topology declared, consumers running.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// How many times this bus lost its session and built a new one.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The broker blocks our publishing connection (a resource alarm).
    pub fn is_blocked(&self) -> bool {
        *self.blocked.borrow()
    }

    /// Returns at once unless the broker blocks us; then when it stops.
    pub async fn wait_unblocked(&self) {
        if self.is_blocked() {
            tracing::warn!("The broker blocks publishing; consumption pauses.");
            let _ = self.blocked.subscribe().wait_for(|blocked| !blocked).await;
        }
    }

    /// Waits until the consumers run on the registry with `digest` (its queues declared and
    /// bound), at most `timeout`; `false` if they do not by then (the broker is away: they
    /// will once it is back).
    pub async fn wait_running(&self, digest: [u8; 32], timeout: Duration) -> bool {
        let mut running = self.running.subscribe();
        tokio::time::timeout(timeout, running.wait_for(|now| *now == digest))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    fn set_blocked(&self, blocked: bool) {
        self.blocked.send_replace(blocked);
        metrics::gauge!(telemetry::AMQP_BLOCKED).set(if blocked { 1.0 } else { 0.0 });
    }
}

/// What the consumers of one session share.
#[derive(Debug)]
pub struct Session {
    /// The registry deliveries are taken on from now on.
    pub pipelines: watch::Sender<Pipeline>,
    pub names: Names,
    pub settings: AmqpSettings,
    pub publisher: publisher::Publisher,
    /// The publish connection, where the API opens channels of its own (dead letters).
    pub admin: Arc<Connection>,
    pub status: Arc<Status>,
    /// The dead-letter streams the API has read in this session, with their indexes.
    pub dead_letters: dead_letters::DeadLetterStreams,
    /// What each route forwarded within its dedup window (the bus's, kept across sessions).
    pub windows: Arc<crate::dedup::Windows>,
    /// The delay steps whose queues this session declared (each when a retry first needs it).
    delays: tokio::sync::Mutex<HashSet<Duration>>,
    broken: watch::Sender<Option<String>>,
}

impl Session {
    /// The registry now.
    pub fn pipeline(&self) -> Pipeline {
        self.pipelines.borrow().clone()
    }

    /// The delay queue of `step`, declared the first time this session needs it.
    pub async fn delay_queue(&self, step: Duration) -> lapin::Result<String> {
        let mut declared = self.delays.lock().await;
        if !declared.contains(&step) {
            let channel = self.admin.create_channel().await?;
            topology::declare_delay(&channel, &self.names, step).await?;
            let _ = channel.close(200, "delay queue declared".into()).await;
            declared.insert(step);
        }
        Ok(self.names.delay_queue(step))
    }

    /// Marks the session as broken: it is dropped and a new one is built.
    pub fn fail(&self, why: String) {
        mark_broken(&self.broken, why);
    }
}

/// Keeps the first reason a session broke; later ones change nothing.
fn mark_broken(broken: &watch::Sender<Option<String>>, why: String) {
    broken.send_if_modified(|slot| {
        if slot.is_none() {
            *slot = Some(why);
            true
        } else {
            false
        }
    });
}

/// The RabbitMQ bus.
#[derive(Debug)]
pub struct AmqpBus {
    settings: AmqpSettings,
    names: Names,
    status: Arc<Status>,
    current: RwLock<Option<Arc<Session>>>,
    /// Earlier versions' dead-letter queues were looked for (once per process).
    migrated: AtomicBool,
    /// What each route forwarded within its dedup window.
    windows: Arc<crate::dedup::Windows>,
}

/// Why HTTP ingest could not hand a message to the broker.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the gateway is not connected to the broker")]
    NotConnected,
    #[error("{0}")]
    NotConfirmed(String),
}

enum Ended {
    Stopped,
    Broken(String),
}

/// What one consumer task reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    /// The queue of a route without an ordering key (every instance competes for it).
    Route(RouteName),
    /// The sequencer queue of an ordered route (every instance subscribes; one is active).
    Sequencer(RouteName),
    /// One shard of an ordered route, while the fleet's assignment gives it to this instance.
    Shard(RouteName, u16),
    /// The archiving queue of a context (every instance subscribes; one is active).
    Archive(ContextName),
    /// The dedup stream of an idempotent route (every instance reads it).
    Dedup(RouteName),
}

/// The consumers this instance runs on `registry` when `live` are the live instances of the
/// fleet (`None` while it is still listening: no shard yet).
fn wanted(registry: &Registry, live: Option<&[InstanceId]>, me: &InstanceId) -> HashSet<Part> {
    let mut parts = HashSet::new();
    for route in &registry.routes {
        let name = route.name.clone();
        if route.ordering_key.is_none() {
            parts.insert(Part::Route(name));
            continue;
        }
        if let Some(live) = live {
            for shard in fleet::assign(name.as_str(), route.shards, live, me) {
                parts.insert(Part::Shard(name.clone(), shard));
            }
        }
        parts.insert(Part::Sequencer(name));
    }
    for route in registry.routes.iter().filter(|route| route.dedup.is_some()) {
        parts.insert(Part::Dedup(route.name.clone()));
    }
    for (name, context) in &registry.contexts {
        if context.archive.is_some() {
            parts.insert(Part::Archive(name.clone()));
        }
    }
    parts
}

/// The consumer tasks of one session: one per route queue, sequencer and held shard of the
/// current registry, one for what no route takes, the fleet membership, and the consumers
/// told to stop until they have finished what they held.
struct Consumers {
    tasks: JoinSet<lapin::Result<()>>,
    running: HashMap<Part, (tokio::task::Id, watch::Sender<bool>)>,
    retired: HashSet<tokio::task::Id>,
    /// Stops the unrouted consumer and the fleet membership.
    others: watch::Sender<bool>,
}

impl Consumers {
    fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
            running: HashMap::new(),
            retired: HashSet::new(),
            others: watch::Sender::new(false),
        }
    }

    /// A consumer for every part of `wanted` that has none.
    async fn follow(
        &mut self,
        session: &Arc<Session>,
        consume: &Connection,
        wanted: &HashSet<Part>,
    ) -> lapin::Result<()> {
        for part in wanted {
            if self.running.contains_key(part) {
                continue;
            }
            let channel = consume.create_channel().await?;
            let (stop, stopping) = watch::channel(false);
            let session = session.clone();
            let task = match part {
                Part::Route(name) => self.tasks.spawn(worker::consume_route(
                    session,
                    name.clone(),
                    worker::Source::Route,
                    channel,
                    stopping,
                )),
                Part::Shard(name, shard) => {
                    tracing::info!(route = %name, shard, "This instance takes a shard.");
                    self.tasks.spawn(worker::consume_route(
                        session,
                        name.clone(),
                        worker::Source::Shard(*shard),
                        channel,
                        stopping,
                    ))
                }
                Part::Sequencer(name) => {
                    self.tasks
                        .spawn(sequencer::run(session, name.clone(), channel, stopping))
                }
                Part::Archive(context) => {
                    self.tasks
                        .spawn(archiver::run(session, context.clone(), channel, stopping))
                }
                Part::Dedup(name) => {
                    self.tasks
                        .spawn(dedup::follow(session, name.clone(), channel, stopping))
                }
            };
            self.running.insert(part.clone(), (task.id(), stop));
        }
        Ok(())
    }

    /// Tells the consumers of what `wanted` no longer has to stop: a removed route, a shard
    /// the fleet gives to another instance. Each finishes and settles what it took first.
    fn retire(&mut self, wanted: &HashSet<Part>) {
        let gone: Vec<Part> = self
            .running
            .keys()
            .filter(|part| !wanted.contains(*part))
            .cloned()
            .collect();
        for part in gone {
            if let Some((id, stop)) = self.running.remove(&part) {
                match &part {
                    Part::Shard(name, shard) => {
                        tracing::info!(route = %name, shard, "This instance hands a shard over.");
                    }
                    Part::Route(name) | Part::Sequencer(name) => {
                        tracing::info!(route = %name, "The route is gone: its consumer stops.");
                    }
                    Part::Archive(context) => {
                        tracing::info!(%context, "The context is no longer archived: its archiver stops.");
                    }
                    Part::Dedup(name) => {
                        tracing::info!(route = %name, "The route has no dedup window any more: its follower stops.");
                    }
                }
                stop.send_replace(true);
                self.retired.insert(id);
            }
        }
    }

    /// Sets `contextgate_shards_held` for every ordered route of `registry`.
    fn report_held(&self, registry: &Registry) {
        for route in registry
            .routes
            .iter()
            .filter(|route| route.ordering_key.is_some())
        {
            let held = self
                .running
                .keys()
                .filter(|part| matches!(part, Part::Shard(name, _) if *name == route.name))
                .count();
            metrics::gauge!(telemetry::SHARDS_HELD, "route" => route.name.to_string())
                .set(held as f64);
        }
    }

    /// Why the session is broken when this task finished; `None` for a consumer that was told
    /// to stop.
    fn finished(
        &mut self,
        finished: Result<(tokio::task::Id, lapin::Result<()>), tokio::task::JoinError>,
    ) -> Option<String> {
        let (id, outcome) = match finished {
            Ok((id, outcome)) => (id, outcome.map_err(|error| error.to_string())),
            Err(error) => (error.id(), Err(format!("a consumer task failed: {error}"))),
        };
        if self.retired.remove(&id) {
            if let Err(why) = outcome {
                tracing::warn!(%why, "A stopped consumer ended with an error; what it held goes back to its queue.");
            }
            return None;
        }
        Some(match outcome {
            Ok(()) => "a consumer stopped".to_owned(),
            Err(why) => format!("a consumer failed: {why}"),
        })
    }

    /// Tells every consumer to stop.
    fn stop(&self) {
        for (_, stop) in self.running.values() {
            stop.send_replace(true);
        }
        self.others.send_replace(true);
    }
}

impl AmqpBus {
    pub fn new(settings: AmqpSettings) -> Self {
        let names = Names::new(settings.prefix.clone());
        Self {
            settings,
            names,
            status: Arc::default(),
            current: RwLock::default(),
            migrated: AtomicBool::new(false),
            windows: {
                // Confirmed keys go to the fleet (`dedup::share`).
                let windows = Arc::new(crate::dedup::Windows::default());
                windows.share();
                windows
            },
        }
    }

    /// What each route forwarded within its dedup window, in this process.
    pub fn windows(&self) -> &Arc<crate::dedup::Windows> {
        &self.windows
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The settings it was started with (the AsyncAPI document names its broker from them).
    pub fn settings(&self) -> &AmqpSettings {
        &self.settings
    }

    /// The session now, while connected.
    pub(crate) fn current_session(&self) -> Result<Arc<Session>, IngestError> {
        self.current
            .read()
            .expect("no code panics while holding the session lock")
            .clone()
            .ok_or(IngestError::NotConnected)
    }

    /// Publishes an input of context `from` to its outbound exchange, as a producer would, and
    /// waits for the broker's confirm. Trace context among `headers` (the transport's, already
    /// filtered to what describes the message) goes along as headers.
    pub async fn publish_input(
        &self,
        from: &ContextName,
        message: &Message,
        headers: &[(String, String)],
    ) -> Result<(), IngestError> {
        let session = self.current_session()?;
        if self.status.is_blocked() {
            return Err(IngestError::NotConfirmed(
                "the broker blocks publishing (a memory or disk alarm)".into(),
            ));
        }
        let trace = wire::trace_headers(headers);
        let (body, properties) = wire::output(message, Wire::Binary, Some(&trace), None);
        let not_confirmed = |error: lapin::Error| IngestError::NotConfirmed(error.to_string());
        let confirmed = session
            .publisher
            .send_output(
                &self.names.outbound(from),
                &message.attributes.event_type,
                &body,
                properties,
            )
            .await
            .map_err(not_confirmed)?
            .confirmed_in_time()
            .await
            .map_err(not_confirmed)?;
        match confirmed {
            // Unroutable cannot happen (the alternate exchange takes everything); both are stored.
            Confirmed::Delivered | Confirmed::Unroutable(_) => Ok(()),
            Confirmed::Refused(why) => Err(IngestError::NotConfirmed(why)),
        }
    }

    /// Keeps a session up until `stop` turns true, reconnecting with backoff, on the pipeline
    /// `pipelines` holds; when it changes, the session finishes what it holds and a new one
    /// starts on the new pipeline (nothing lost, nothing processed twice).
    pub async fn run(
        &self,
        mut pipelines: watch::Receiver<Pipeline>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let broker = Broker::new(&self.settings).map_err(anyhow::Error::msg)?;
        const FIRST_BACKOFF: Duration = Duration::from_millis(200);
        let mut backoff = FIRST_BACKOFF;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let started = Instant::now();
            let pipeline = pipelines.borrow_and_update().clone();
            let ended = self
                .session(&broker, &pipeline, &mut pipelines, stop.clone())
                .await;
            *self
                .current
                .write()
                .expect("no code panics while holding the session lock") = None;
            self.status.ready.store(false, Ordering::Relaxed);
            self.status.set_blocked(false);
            let why = match ended {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::Broken(why)) => why,
                Err(error) => error.to_string(),
            };
            metrics::counter!(telemetry::AMQP_RECONNECTS).increment(1);
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
            if started.elapsed() > Duration::from_secs(30) {
                backoff = FIRST_BACKOFF;
            }
            tracing::warn!(%why, ?backoff, "Broker session lost; reconnecting.");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stopped(&mut stop) => return Ok(()),
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn session(
        &self,
        broker: &Broker,
        pipeline: &Pipeline,
        pipelines: &mut watch::Receiver<Pipeline>,
        mut stop: watch::Receiver<bool>,
    ) -> lapin::Result<Ended> {
        let instance = &self.settings.instance;
        let consume = connect(broker, &format!("contextgate {instance} consume")).await?;
        let publish = Arc::new(connect(broker, &format!("contextgate {instance} publish")).await?);
        let (broken, mut broken_changed) = watch::channel(None);
        watch_events(&consume, "consume", None, broken.clone());
        watch_events(
            &publish,
            "publish",
            Some(self.status.clone()),
            broken.clone(),
        );

        self.declare(&publish, pipeline.registry()).await?;
        let publisher = publisher::Publisher::open(
            &publish,
            self.settings.confirm_timeout,
            self.status.clone(),
        )
        .await?;
        if !self.migrated.load(Ordering::Relaxed) {
            dead_letters::migrate(broker, &publisher, &self.names, pipeline.registry()).await?;
            self.migrated.store(true, Ordering::Relaxed);
        }
        let session = Arc::new(Session {
            pipelines: watch::Sender::new(pipeline.clone()),
            names: self.names.clone(),
            settings: self.settings.clone(),
            publisher,
            admin: publish.clone(),
            status: self.status.clone(),
            delays: tokio::sync::Mutex::default(),
            dead_letters: dead_letters::DeadLetterStreams::default(),
            windows: self.windows.clone(),
            broken,
        });
        let mut consumers = Consumers::new();
        let (live, mut live_changed) = watch::channel(None);
        let me = self.settings.instance.clone();
        {
            let (publish, names, me) = (publish.clone(), self.names.clone(), me.clone());
            let stopping = consumers.others.subscribe();
            consumers
                .tasks
                .spawn(async move { fleet::run(&publish, &names, me, live, stopping).await });
        }
        let wanted_now = wanted(pipeline.registry(), None, &me);
        consumers.follow(&session, &consume, &wanted_now).await?;
        consumers.report_held(pipeline.registry());
        let channel = consume.create_channel().await?;
        consumers.tasks.spawn(worker::consume_unrouted(
            session.clone(),
            channel,
            consumers.others.subscribe(),
        ));
        consumers
            .tasks
            .spawn(dedup::share(session.clone(), consumers.others.subscribe()));
        consumers
            .tasks
            .spawn(depth::poll(session.clone(), consumers.others.subscribe()));
        *self
            .current
            .write()
            .expect("no code panics while holding the session lock") = Some(session.clone());
        self.status.ready.store(true, Ordering::Relaxed);
        self.status.running.send_replace(pipeline.registry().digest);
        tracing::info!(routes = pipeline.registry().routes.len(), prefix = %self.names.prefix(), "Connected to the broker; topology declared; consuming.");

        let ended = loop {
            tokio::select! {
                () = stopped(&mut stop) => break Ended::Stopped,
                () = changed(pipelines) => {
                    let pipeline = pipelines.borrow_and_update().clone();
                    let live = live_changed.borrow().clone();
                    if let Err(error) = self.switch(&session, &publish, &consume, &mut consumers, pipeline, live.as_deref()).await {
                        break Ended::Broken(format!("taking on the new registry failed: {error}"));
                    }
                }
                Ok(()) = live_changed.changed() => {
                    let live = live_changed.borrow_and_update().clone();
                    if let Some(members) = &live {
                        metrics::gauge!(telemetry::FLEET_LIVE).set(members.len() as f64);
                    }
                    let registry = session.pipeline().registry().clone();
                    let wanted_now = wanted(&registry, live.as_deref(), &me);
                    consumers.retire(&wanted_now);
                    if let Err(error) = consumers.follow(&session, &consume, &wanted_now).await {
                        break Ended::Broken(format!("taking shards failed: {error}"));
                    }
                    consumers.report_held(&registry);
                }
                _ = broken_changed.changed() => {
                    break Ended::Broken(broken_changed.borrow().clone().unwrap_or_default());
                }
                Some(finished) = consumers.tasks.join_next_with_id() => {
                    if let Some(why) = consumers.finished(finished) {
                        break Ended::Broken(why);
                    }
                }
            }
        };
        self.status.ready.store(false, Ordering::Relaxed);
        session.dead_letters.end();
        if matches!(ended, Ended::Stopped) {
            consumers.stop();
            let drain = async { while consumers.tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(self.settings.shutdown_timeout, drain)
                .await
                .is_err()
            {
                tracing::warn!(
                    "Inputs still in flight at the shutdown timeout go back to their queues."
                );
            }
        }
        consumers.tasks.abort_all();
        for connection in [&consume, &*publish] {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                connection.close(200, "contextgate session ends".into()),
            )
            .await;
        }
        Ok(ended)
    }

    /// Declares the topology of `registry` on a channel of its own.
    async fn declare(&self, publish: &Connection, registry: &Registry) -> lapin::Result<()> {
        let declaring = publish.create_channel().await?;
        topology::declare(
            &declaring,
            &self.names,
            registry,
            topology::QueueSettings {
                delivery_limit: self.settings.delivery_limit,
            },
        )
        .await?;
        let _ = declaring.close(200, "topology declared".into()).await;
        topology::declare_archives(publish, &self.names, registry).await?;
        topology::declare_dedup(publish, &self.names, registry).await
    }

    /// Runs the session on a new registry: its topology declared, removed routes' consumers
    /// stopped, then the other consumers take their next deliveries on it and added routes get
    /// a consumer.
    async fn switch(
        &self,
        session: &Arc<Session>,
        publish: &Connection,
        consume: &Connection,
        consumers: &mut Consumers,
        pipeline: Pipeline,
        live: Option<&[InstanceId]>,
    ) -> lapin::Result<()> {
        warn_of_changed_shards(session.pipeline().registry(), pipeline.registry());
        self.declare(publish, pipeline.registry()).await?;
        let digest = pipeline.registry().digest;
        let routes = pipeline.registry().routes.len();
        let wanted_now = wanted(pipeline.registry(), live, &self.settings.instance);
        // Removed routes' consumers stop first, so that they take nothing on the new registry.
        consumers.retire(&wanted_now);
        session.pipelines.send_replace(pipeline.clone());
        consumers.follow(session, consume, &wanted_now).await?;
        consumers.report_held(pipeline.registry());
        self.status.running.send_replace(digest);
        tracing::info!(
            routes,
            "The registry changed: consumers take the next deliveries on the new one."
        );
        Ok(())
    }
}

/// Warns of ordered routes whose shards changed — keys move to other shards (inputs in flight
/// may be overtaken), and shards past a lowered count stay bound until deleted — and of routes
/// that lost their ordering key (docs/fleet.md).
fn warn_of_changed_shards(before: &Registry, after: &Registry) {
    for route in after
        .routes
        .iter()
        .filter(|route| route.ordering_key.is_none())
    {
        if before
            .route(&route.name)
            .is_some_and(|earlier| earlier.ordering_key.is_some())
        {
            tracing::warn!(
                route = %route.name,
                "The route lost its ordering key: its sequencer queue stays bound and, with its shards, keeps what it holds; move that to the route's queue and delete them (docs/fleet.md)."
            );
        }
    }
    for route in after
        .routes
        .iter()
        .filter(|route| route.ordering_key.is_some())
    {
        let Some(earlier) = before
            .route(&route.name)
            .filter(|earlier| earlier.ordering_key.is_some())
        else {
            continue;
        };
        if earlier.shards != route.shards {
            tracing::warn!(
                route = %route.name,
                before = earlier.shards,
                after = route.shards,
                "The route's shards changed: keys move to other shards, so inputs in flight may be overtaken; shards past a lowered count stay bound until their queues are deleted."
            );
        }
    }
}

/// Returns when the pipeline changes; never when nobody can change it any more.
async fn changed(pipelines: &mut watch::Receiver<Pipeline>) {
    if pipelines.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Returns once `stop` is true.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Where the connections go and how: the URL with the gateway's defaults, and for `amqps://`
/// what TLS trusts and shows.
#[derive(Debug, Clone)]
pub struct Broker {
    uri: AMQPUri,
    tls: OwnedTLSConfig,
}

impl Broker {
    fn new(settings: &AmqpSettings) -> Result<Self, String> {
        Ok(Self {
            uri: settings.uri()?,
            tls: settings.tls.lapin_config(),
        })
    }
}

/// Opens a connection named `name`. Over `amqps://` a certificate the roots do not vouch for (or
/// a missing client certificate the broker asks for) fails here, as an I/O error that says so.
async fn connect(broker: &Broker, name: &str) -> lapin::Result<Connection> {
    Connection::connect_uri_with_config(
        broker.uri.clone(),
        ConnectionProperties::default().with_connection_name(name.into()),
        broker.tls.clone(),
        lapin::runtime::default_runtime()?,
    )
    .await
}

/// Consumes `queue` (with acks) under the consumer tag `tag`.
async fn consume(channel: &Channel, queue: &str, tag: &str) -> lapin::Result<lapin::Consumer> {
    channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Follows a connection's events: errors break the session; on the publish connection, blocks
/// and unblocks pause and resume the work.
fn watch_events(
    connection: &Connection,
    role: &'static str,
    status: Option<Arc<Status>>,
    broken: watch::Sender<Option<String>>,
) {
    let mut events = Box::pin(connection.events_listener());
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = broken.closed() => return,
            };
            let Some(event) = event else { return };
            match event {
                Event::ConnectionBlocked(reason) => {
                    tracing::warn!(role, %reason, "The broker blocks the connection.");
                    if let Some(status) = &status {
                        status.set_blocked(true);
                    }
                }
                Event::ConnectionUnblocked => {
                    tracing::info!(role, "The broker unblocked the connection.");
                    if let Some(status) = &status {
                        status.set_blocked(false);
                    }
                }
                Event::Error(error) => {
                    mark_broken(&broken, format!("the {role} connection failed: {error}"));
                    return;
                }
                _ => {}
            }
        }
    });
}
