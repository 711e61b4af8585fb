//! The gateway: the pipeline joined to a bus, for what comes in over HTTP.
//!
//! On the in-process bus it takes an input, gets a verdict per route from the pipeline, and acts
//! on each: forwards go to the downstream context's inbox, dead letters are kept with their
//! failure, retries are scheduled after their backoff, drops are counted. On RabbitMQ it checks
//! the input at the edge and publishes it to its context's outbound exchange, as any producer
//! would; the route consumers of `bus::amqp` take it from there. Every outcome is counted in the
//! metrics of `telemetry`.

pub mod folder;
pub mod following;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use crate::archive::contexts::Archives;
use crate::bus::amqp::IngestError;
use crate::bus::dead_letters::{MAX_SCAN, Redriven};
use crate::bus::{Bus, DeadLettersFull, InProcessBus};
use crate::dedup::{self, Claim, Key};
use crate::pipeline::{Delivery, Outcome, Pipeline, Verdict};
use crate::registry::{ContextName, Route, RouteName};
use crate::replay::{self, Acted, Replays};
use crate::stages::Failure;
use crate::stages::receive::Input;
use crate::telemetry::trace::{Carrier, RouteSpan, System};
use crate::telemetry::{self, Counted};

#[derive(Debug)]
pub struct Gateway {
    /// The current pipeline; a registration replaces it, and the AMQP bus follows.
    pipeline: watch::Sender<Pipeline>,
    bus: Bus,
    /// Registry changes (from the API, the folder or the store) run one at a time.
    registration: Arc<tokio::sync::Mutex<()>>,
    /// In a fleet: the registry store this instance follows and commits registrations to.
    following: Option<Arc<following::Following>>,
    /// What each route forwarded within its dedup window (on RabbitMQ, the bus's own).
    windows: Arc<dedup::Windows>,
    /// Replay jobs.
    replays: Arc<Replays>,
    /// In process with a data directory: every context's inputs, kept for replays.
    archives: Option<Arc<Archives>>,
}

/// Where a gateway keeps what outlives the process.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--data-dir`: the in-process archives and the replay jobs' state.
    pub data_dir: Option<std::path::PathBuf>,
}

/// Held while the registry changes; owned, so that work it guards can outlive a cancelled request.
pub type Registering = tokio::sync::OwnedMutexGuard<()>;

/// What became of one input.
#[derive(Debug)]
pub enum Ingested {
    /// It was routed: one verdict per route (none for an event no route takes).
    Routed(Vec<Verdict>),
    /// It failed before any route was picked (not a CloudEvent, unknown contract, a command no
    /// route or several routes take); the sender is told and nothing is kept.
    Refused(Failure),
    /// On RabbitMQ: the broker confirmed it on the context's outbound exchange; these routes
    /// will take it.
    Published(Vec<RouteName>),
    /// On RabbitMQ: the broker did not confirm it (not connected, blocked, refused, timed out).
    /// It may still have been stored: the sender retries with the same id.
    Unavailable(IngestError),
    /// In process: a route dead-lettered it, but the dead letters are full, so it was not kept
    /// (what other routes forwarded was delivered): the sender retries later with the same id.
    NotKept(DeadLettersFull),
}

impl Gateway {
    pub fn new(pipeline: Pipeline, bus: Bus) -> Arc<Self> {
        Self::with_store(pipeline, bus, None)
    }

    /// A gateway whose registry is the registry store's head (`following`), or its folder's.
    pub fn with_store(
        pipeline: Pipeline,
        bus: Bus,
        following: Option<Arc<following::Following>>,
    ) -> Arc<Self> {
        Self::with_options(pipeline, bus, following, Options::default())
    }

    /// A gateway with a data directory (`--data-dir`) for its archives and replay jobs.
    pub fn with_options(
        pipeline: Pipeline,
        bus: Bus,
        following: Option<Arc<following::Following>>,
        options: Options,
    ) -> Arc<Self> {
        telemetry::declare(pipeline.registry(), transport(&bus));
        let windows = match &bus {
            Bus::Amqp(bus) => bus.windows().clone(),
            Bus::InProcess(_) => Arc::default(),
        };
        let archives = match (&bus, &options.data_dir) {
            (Bus::InProcess(_), Some(dir)) => Some(Arc::new(Archives::new(dir))),
            _ => None,
        };
        Arc::new(Self {
            pipeline: watch::Sender::new(pipeline),
            bus,
            registration: Arc::default(),
            following,
            replays: Arc::new(Replays::new(options.data_dir.as_deref(), windows.clone())),
            windows,
            archives,
        })
    }

    /// Replay jobs.
    pub fn replays(&self) -> &Arc<Replays> {
        &self.replays
    }

    /// In process: the file archives (with a data directory).
    pub fn archives(&self) -> Option<&Arc<Archives>> {
        self.archives.as_ref()
    }

    /// Why this gateway cannot replay, if it cannot: in process without a data directory
    /// there is no archive.
    pub fn cannot_replay(&self) -> Option<&'static str> {
        match (&self.bus, &self.archives) {
            (Bus::InProcess(_), None) => Some(
                "the in-process bus archives nothing without a data directory (serve --data-dir)",
            ),
            _ => None,
        }
    }

    /// Starts a replay job (new, or stored by an earlier process) in a task of its own.
    pub fn start_replay(self: &Arc<Self>, job: replay::Job) -> Result<replay::Job, String> {
        if let Some(why) = self.cannot_replay() {
            return Err(why.to_owned());
        }
        let running = self.replays.start(job)?;
        let shown = running.job();
        let gateway = self.clone();
        tokio::spawn(async move {
            let pipelines = {
                let gateway = gateway.clone();
                move || gateway.pipeline()
            };
            match (&gateway.bus, &gateway.archives) {
                (Bus::InProcess(_), Some(archives)) => {
                    let sink = InProcessSink(gateway.clone());
                    gateway
                        .replays
                        .run(running, pipelines, archives.as_ref(), &sink)
                        .await;
                }
                (Bus::Amqp(bus), _) => {
                    let (source, sink) = crate::bus::amqp::replay::ends(bus);
                    gateway
                        .replays
                        .run(running, pipelines, &source, &sink)
                        .await;
                }
                (Bus::InProcess(_), None) => {}
            }
        });
        Ok(shown)
    }

    /// Resumes the replay jobs an earlier process left running (with a data directory).
    pub fn resume_replays(self: &Arc<Self>) {
        for mut job in self.replays.stored() {
            if job.status != replay::Status::Running {
                let _ = self.replays.start(job);
                continue;
            }
            job.resumed += 1;
            tracing::info!(job = %job.id, next = job.next, "A replay job resumes.");
            if let Err(error) = self.start_replay(job) {
                tracing::error!(%error, "A stored replay job could not resume.");
            }
        }
    }

    /// A dry run of a replay: what its window holds.
    pub async fn survey(&self, spec: &replay::Spec) -> Result<replay::Survey, String> {
        if let Some(why) = self.cannot_replay() {
            return Err(why.to_owned());
        }
        const DRY_RUN_LIMIT: u64 = 1_000_000;
        let pipeline = self.pipeline();
        match (&self.bus, &self.archives) {
            (Bus::InProcess(_), Some(archives)) => {
                replay::survey(spec, &pipeline, archives.as_ref(), DRY_RUN_LIMIT).await
            }
            (Bus::Amqp(bus), _) => {
                let (source, _) = crate::bus::amqp::replay::ends(bus);
                replay::survey(spec, &pipeline, &source, DRY_RUN_LIMIT).await
            }
            (Bus::InProcess(_), None) => Err("no archive".into()),
        }
    }

    /// The registry store this instance follows, in a fleet.
    pub fn following(&self) -> Option<&Arc<following::Following>> {
        self.following.as_ref()
    }

    /// The pipeline now (a cheap clone: the registry is shared).
    pub fn pipeline(&self) -> Pipeline {
        self.pipeline.borrow().clone()
    }

    /// Follows the pipeline as registrations replace it.
    pub fn pipelines(&self) -> watch::Receiver<Pipeline> {
        self.pipeline.subscribe()
    }

    /// Puts a new pipeline (a new registry) in place: new inputs use it at once; on RabbitMQ the
    /// consumers finish what they hold and start again on it.
    pub fn replace(&self, pipeline: Pipeline) {
        telemetry::declare(pipeline.registry(), transport(&self.bus));
        self.pipeline.send_replace(pipeline);
    }

    /// Returns once the bus runs on the current registry: at once in process; on RabbitMQ once
    /// the consumers started again on it (new routes' queues declared and bound), or after
    /// `timeout` (`false`) when the broker is away.
    pub async fn settled(&self, timeout: std::time::Duration) -> bool {
        match &self.bus {
            Bus::InProcess(_) => true,
            Bus::Amqp(bus) => {
                let digest = self.pipeline().registry().digest;
                bus.status().wait_running(digest, timeout).await
            }
        }
    }

    /// Held while the registry changes: one change at a time, each from the one before.
    pub async fn registering(&self) -> Registering {
        self.registration.clone().lock_owned().await
    }

    /// Loads the registry folder again and puts it in place if it changed (an operator's edit
    /// on disk). `Ok(false)`: nothing changed. A folder that does not load leaves the running
    /// registry as it is.
    pub async fn reload(&self) -> Result<bool, crate::registry::RegistryError> {
        let _one_at_a_time = self.registering().await;
        let current = self.pipeline();
        let root = current.registry().root.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::registry::load(&root))
            .await
            .map_err(|error| crate::registry::RegistryError::Unreadable {
                path: current.registry().root.clone(),
                cause: error.to_string(),
            })??;
        if loaded.digest == current.registry().digest {
            return Ok(false);
        }
        self.replace(Pipeline::new(Arc::new(loaded)));
        Ok(true)
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Takes one input from context `from`: in process, acts on every verdict before returning;
    /// on RabbitMQ, returns once the broker confirmed it.
    pub async fn ingest(self: &Arc<Self>, from: &ContextName, delivery: Delivery) -> Ingested {
        let bus = match &self.bus {
            Bus::InProcess(bus) => bus,
            Bus::Amqp(bus) => {
                return match self.pipeline().accept(from, &delivery) {
                    Err(failure) => Ingested::Refused(failure),
                    Ok((input, routes)) => match bus
                        .publish_input(from, &input.message, &delivery.headers)
                        .await
                    {
                        Ok(()) => Ingested::Published(
                            routes.iter().map(|route| route.name.clone()).collect(),
                        ),
                        Err(error) => Ingested::Unavailable(error),
                    },
                };
            }
        };
        let started = Instant::now();
        let arrived = telemetry::trace::enabled().then(SystemTime::now);
        metrics::counter!(telemetry::MESSAGES_IN, "context" => from.to_string()).increment(1);
        let pipeline = self.pipeline();
        // Decoding with a script permit, as the routes' runs take theirs (`modes::run`): one
        // runtime worker always stays free for I/O and the health probes.
        let permit = crate::scripting::script_permit().await;
        let accepted = pipeline.accept(from, &delivery);
        drop(permit);
        let (input, routes) = match accepted {
            Ok(accepted) => accepted,
            Err(failure) => {
                tracing::warn!(stage = %failure.stage, reason = %failure.reason, "Message failed before routing.");
                metrics::counter!(telemetry::MESSAGES_DEAD_LETTERED, "route" => "none", "stage" => failure.stage.as_str())
                    .increment(1);
                return Ingested::Refused(failure);
            }
        };
        if let Some(archives) = &self.archives {
            archives.append(&pipeline, from, &delivery);
        }
        let _in_flight: Vec<Counted> = routes
            .iter()
            .map(|route| {
                Counted::enter(
                    &metrics::gauge!(telemetry::IN_FLIGHT, "route" => route.name.to_string()),
                )
            })
            .collect();
        let mut spans = match arrived {
            Some(arrived) => route_spans(&delivery, &input, &routes, arrived),
            None => Vec::new(),
        };
        let mut verdicts = if spans.is_empty() {
            pipeline.run_routes(&input, routes).await
        } else {
            pipeline.run_routes_traced(&input, routes, &mut spans).await
        };
        let delivery = Arc::new(delivery);
        let mut not_kept = None;
        let mut spans = spans.into_iter();
        for verdict in &mut verdicts {
            let mut span = spans.next();
            let Some(route) = verdict
                .route
                .as_ref()
                .and_then(|name| pipeline.registry().route(name).cloned())
            else {
                continue;
            };
            let window = route
                .dedup
                .filter(|_| matches!(verdict.outcome, Outcome::Forward { .. }));
            if let Some(window) = window {
                let key = Key::of(&input.message.attributes);
                if self.windows.claim(&route.name, key) == Claim::Duplicate {
                    verdict.outcome = dedup::duplicate(&route);
                    if let Some(span) = span {
                        span.end_dropped("duplicate");
                    }
                    continue;
                }
                // In process a forward is delivered as it is acted on.
                self.windows.confirm(&route.name, key, window);
            }
            if let (Some(span), Outcome::Forward { messages }) = (&span, &mut verdict.outcome) {
                span.stamp(messages);
            }
            // A forward's outputs go into the inbox: its publish stage.
            let publishing = (span.is_some() && matches!(verdict.outcome, Outcome::Forward { .. }))
                .then(SystemTime::now);
            if let Err(full) = self
                .act(bus, &route, verdict.outcome.clone(), &delivery, 1)
                .await
            {
                not_kept = Some(full);
            }
            if let Outcome::Forward { .. } = verdict.outcome {
                record_forward(&route, started, input.message.attributes.time.as_deref());
            }
            if let (Some(span), Some(start)) = (&mut span, publishing) {
                span.mark("publish", start, SystemTime::now());
            }
            if let Some(span) = span {
                end_span(span, &verdict.outcome);
            }
        }
        metrics::histogram!(telemetry::PROCESSING_SECONDS).record(started.elapsed().as_secs_f64());
        match not_kept {
            Some(full) => Ingested::NotKept(full),
            None => Ingested::Routed(verdicts),
        }
    }

    /// Runs a message on one route on the current pipeline (a redrive); the pipeline takes the
    /// script permits.
    async fn process_on(&self, route: &Route, delivery: &Delivery, attempt: u32) -> Verdict {
        self.pipeline().process_on(route, delivery, attempt).await
    }

    /// In process: runs the dead letters of `route` (the one with `id`, or those kept when it
    /// starts, as many as one request may) through the route as it is now, as a first attempt,
    /// one at a time. Each holds its room while it runs, so one that fails again is kept anew in
    /// it; should its new failure not fit, it is put back as it was (`unchanged`): never lost.
    pub async fn redrive_in_process(
        self: &Arc<Self>,
        bus: &InProcessBus,
        route: &Arc<Route>,
        id: Option<&str>,
    ) -> Redriven {
        let mut redriven = Redriven::default();
        let ids = match id {
            Some(id) => vec![id.to_owned()],
            None => bus.dead_letter_ids(&route.name, MAX_SCAN),
        };
        for id in ids {
            // Gone since (deleted, or taken by another redrive).
            let Some(redriving) = bus.redrive(&route.name, &id) else {
                continue;
            };
            let input = redriving.input().clone();
            let verdict = self.process_on(route, &input, 1).await;
            match verdict.outcome {
                Outcome::DeadLetter { failure } => {
                    let stage = failure.stage.as_str();
                    match redriving.keep_again(failure, 1) {
                        Ok(()) => {
                            metrics::counter!(telemetry::MESSAGES_DEAD_LETTERED, "route" => route.name.to_string(), "stage" => stage)
                                .increment(1);
                            redriven.count("dead-letter");
                        }
                        Err(full) => {
                            tracing::warn!(route = %route.name, %id, error = %full, "A redriven dead letter failed again and was kept as it was.");
                            redriven.count("unchanged");
                        }
                    }
                }
                outcome => {
                    redriven.count(outcome.name());
                    match self.act(bus, route, outcome, &input, 1).await {
                        Ok(()) => redriving.settle(),
                        // Only a dead letter can be refused, and those are kept above.
                        Err(_) => drop(redriving),
                    }
                }
            }
        }
        redriven.remaining = bus.dead_letters(Some(&route.name), usize::MAX).len();
        tracing::info!(route = %route.name, redriven = redriven.redriven, outcomes = ?redriven.outcomes, "Dead letters redriven.");
        redriven
    }

    /// Acts on one route's outcome; `Err` when it is a dead letter the bus could not keep.
    async fn act(
        self: &Arc<Self>,
        bus: &InProcessBus,
        route: &Arc<Route>,
        outcome: Outcome,
        delivery: &Arc<Delivery>,
        attempt: u32,
    ) -> Result<(), DeadLettersFull> {
        let name = route.name.to_string();
        match outcome {
            Outcome::Forward { messages } => {
                metrics::counter!(telemetry::MESSAGES_FORWARDED, "route" => name)
                    .increment(messages.len() as u64);
                bus.publish(&route.downstream, messages);
            }
            Outcome::Drop { .. } => {
                metrics::counter!(telemetry::MESSAGES_DROPPED, "route" => name).increment(1);
            }
            Outcome::DeadLetter { failure } => {
                let stage = failure.stage.as_str();
                bus.dead_letter(Some(&route.name), delivery, failure, attempt)?;
                // Counted once kept: a refused one is counted as refused by the bus.
                metrics::counter!(telemetry::MESSAGES_DEAD_LETTERED, "route" => name, "stage" => stage)
                    .increment(1);
            }
            Outcome::Retry {
                attempt,
                delay,
                failure,
            } => {
                metrics::counter!(telemetry::MESSAGES_RETRIED, "route" => name, "stage" => failure.stage.as_str())
                    .increment(1);
                self.schedule_retry(route.clone(), delivery.clone(), attempt, delay);
            }
        }
        Ok(())
    }

    /// On the in-process bus a retry waits in a task (lost on restart, like everything in this
    /// bus); on RabbitMQ it waits in the route's delay queue instead.
    fn schedule_retry(
        self: &Arc<Self>,
        route: Arc<Route>,
        delivery: Arc<Delivery>,
        attempt: u32,
        delay: std::time::Duration,
    ) {
        let gateway = self.clone();
        // Waiting out its backoff, it is what the route's queue holds in process.
        let waiting = Counted::enter(
            &metrics::gauge!(telemetry::QUEUE_DEPTH, "route" => route.name.to_string()),
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            drop(waiting);
            let started = Instant::now();
            let _in_flight = Counted::enter(
                &metrics::gauge!(telemetry::IN_FLIGHT, "route" => route.name.to_string()),
            );
            let (mut outcome, time, mut span) = gateway.retry_on(&route, &delivery, attempt).await;
            if let (Some(span), Outcome::Forward { messages }) = (&span, &mut outcome) {
                span.stamp(messages);
            }
            // What the span ends with (a copy, made only when tracing).
            let ending = span.as_ref().map(|_| outcome.clone());
            let forwarded = matches!(outcome, Outcome::Forward { .. });
            let publishing = (span.is_some() && forwarded).then(SystemTime::now);
            if let Bus::InProcess(bus) = &gateway.bus
                && let Err(full) =
                    Box::pin(gateway.act(bus, &route, outcome, &delivery, attempt)).await
            {
                // The sender was answered long ago: this input is lost, loudly.
                tracing::error!(route = %route.name, attempt, error = %full, "A retried input failed for good and could not be kept as a dead letter.");
            }
            if forwarded {
                record_forward(&route, started, time.as_deref());
            }
            if let (Some(span), Some(start)) = (&mut span, publishing) {
                span.mark("publish", start, SystemTime::now());
            }
            if let (Some(span), Some(outcome)) = (span, ending) {
                end_span(span, &outcome);
            }
        });
    }

    /// A retry's attempt on the current pipeline, its span child of the input's trace context
    /// (as every attempt on RabbitMQ is): the outcome, the input's CloudEvents `time`, the span.
    async fn retry_on(
        &self,
        route: &Route,
        delivery: &Delivery,
        attempt: u32,
    ) -> (Outcome, Option<String>, Option<RouteSpan>) {
        let arrived = telemetry::trace::enabled().then(SystemTime::now);
        let pipeline = self.pipeline();
        let received = {
            let _permit = crate::scripting::script_permit().await;
            pipeline.receive_on(route, delivery)
        };
        let input = received.as_ref().ok();
        let mut span = arrived.and_then(|arrived| {
            route_span(delivery, input, route, attempt, arrived, SystemTime::now())
        });
        let outcome = match (&received, span.as_mut()) {
            (Ok(input), None) => pipeline.run_on(route, input, attempt).await,
            (Ok(input), Some(span)) => pipeline.run_on_traced(route, input, attempt, span).await,
            (Err(failure), _) => Outcome::DeadLetter {
                failure: failure.clone(),
            },
        };
        let time = input.and_then(|input| input.message.attributes.time.clone());
        (outcome, time, span)
    }
}

/// A replay's outcomes acted on in process, as a live input's are.
struct InProcessSink(Arc<Gateway>);

impl replay::Sink for InProcessSink {
    async fn act(
        &self,
        route: &Arc<Route>,
        outcome: Outcome,
        archived: &replay::Archived,
        _contract: &crate::registry::ContractId,
    ) -> Result<replay::Acting, String> {
        let delivery = Arc::new(archived.delivery.clone());
        let Bus::InProcess(bus) = &self.0.bus else {
            return Err("the in-process sink runs on the in-process bus only".into());
        };
        let acted = match &outcome {
            Outcome::Forward { .. } => Acted::Forwarded,
            Outcome::Drop { .. } => Acted::Dropped,
            Outcome::DeadLetter { .. } => Acted::DeadLettered,
            Outcome::Retry { .. } => Acted::Retried,
        };
        self.0
            .act(bus, route, outcome, &delivery, 1)
            .await
            .map_err(|full| full.to_string())?;
        Ok(replay::acted(acted))
    }
}

/// In process: the span of each route an accepted input goes to, its decoding (from the
/// request's arrival) their first stage.
fn route_spans(
    delivery: &Delivery,
    input: &Input,
    routes: &[Arc<Route>],
    arrived: SystemTime,
) -> Vec<RouteSpan> {
    let decoded = SystemTime::now();
    routes
        .iter()
        .filter_map(|route| route_span(delivery, Some(input), route, 1, arrived, decoded))
        .collect()
}

/// In process: the span of an input (`None`: it did not decode) on one route, child of the
/// trace context in its headers or its CloudEvents extensions, its decoding the first stage.
fn route_span(
    delivery: &Delivery,
    input: Option<&Input>,
    route: &Route,
    attempt: u32,
    arrived: SystemTime,
    decoded: SystemTime,
) -> Option<RouteSpan> {
    let carrier = Carrier::from_headers(
        delivery
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )
    .or_extensions(input.map(|input| &input.message.attributes.extensions));
    let mut span = RouteSpan::start(route, carrier, input, attempt, System::InProcess, arrived)?;
    span.mark("decode", arrived, decoded);
    Some(span)
}

/// In process: a forward's latencies on its route (see `telemetry::record_forward`).
fn record_forward(route: &Route, started: Instant, time: Option<&str>) {
    let name = route.name.to_string();
    telemetry::record_forward(
        &metrics::histogram!(telemetry::ROUTE_LATENCY_SECONDS, "route" => name.clone()),
        &metrics::histogram!(telemetry::END_TO_END_SECONDS, "route" => name),
        started,
        time,
    );
}

/// Ends a route's span with the route's outcome.
fn end_span(span: RouteSpan, outcome: &Outcome) {
    match outcome {
        Outcome::Forward { messages } => span.end("forward", messages.len(), None),
        Outcome::Drop { reason } => span.end_dropped(reason),
        Outcome::Retry { failure, .. } => span.end("retry", 0, Some(failure)),
        Outcome::DeadLetter { failure } => span.end("dead-letter", 0, Some(failure)),
    }
}

fn transport(bus: &Bus) -> telemetry::Transport {
    match bus {
        Bus::InProcess(_) => telemetry::Transport::InProcess,
        Bus::Amqp(_) => telemetry::Transport::Amqp,
    }
}
