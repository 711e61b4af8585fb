//! Replay jobs: a window of one context's archive sent again through the routes as they are
//! now (after a translator was fixed, for a new route, to rebuild a read model).
//!
//! A job reads the archived inputs of its window in arrival order, at a bounded rate, and runs
//! each on the routes it targets — every route of the context as upstream, the routes into one
//! downstream context, or one route — as a first attempt. Outputs keep the ids they had the
//! first time (`message::output_id`) and carry the extension attribute [`REPLAY_ATTRIBUTE`]
//! naming the job. With `dedup` (the default) each route's dedup window is consulted (the
//! route's own `dedup`, or [`dedup::REPLAY_WINDOW`]): an input the route already forwarded
//! within it is counted as a `duplicate` and not sent again.
//!
//! The job's state — its window's offsets, the next offset to read, its counts — moves on after
//! every batch whose effects the transport confirmed, and is written to
//! `<data-dir>/replays/<id>.json` at most once a second (off the runtime's threads), at the
//! window's start and at the end. A job cut off by the transport (broker restart, a closed
//! connection) goes on from its last batch; a job cut off with the gateway (killed) resumes
//! from its last written state, at most a second behind: inputs in between may go again (the
//! same ids; dedup drops those confirmed), none is skipped. Without a data directory jobs live
//! in memory only.
//!
//! A job goes no faster than its `rate`; an adaptive job (the default) also slows down while
//! the transport takes longer than usual to hold what it sends, so live traffic keeps its
//! latency ([`pace`]).
//!
//! The transports provide the [`Source`] (the in-process file archive, or the RabbitMQ stream)
//! and the [`Sink`] (acting on one route's outcome); this module owns the loop, the pace, the
//! counts and the state.

mod pace;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::dedup::{self, Key};
use crate::pipeline::{Delivery, Outcome, Pipeline};
use crate::registry::{ContextName, ContractId, Route, RouteName};
use crate::telemetry;

/// The CloudEvents extension attribute that names the replay job on its outputs (in binary
/// mode on RabbitMQ, the header `cloudEvents_contextgatereplay`).
pub const REPLAY_ATTRIBUTE: &str = "contextgatereplay";
/// Inputs per second unless the request says.
pub const DEFAULT_RATE: u32 = 500;
/// The highest rate a job may ask for.
pub const MAX_RATE: u32 = 50_000;
/// Archived inputs read (and checkpointed) at a time.
const BATCH: usize = 100;
/// How often a running job's offset is stored.
const STORE_EVERY: Duration = Duration::from_secs(1);
/// Jobs kept (finished ones are forgotten oldest first past this).
const MAX_JOBS: usize = 1_000;

/// What a caller asks for (`POST /v1/replays`, `contextgate replay`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The context whose archive is read (the routes' upstream).
    pub context: String,
    /// The window's start: RFC 3339 (`2026-11-30T10:00:00Z`) or a duration ago (`90m`).
    pub from: String,
    /// The window's end (default: when the job starts); the same forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only these message types (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Only this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only the routes into this context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<String>,
    /// Inputs per second at most (default 500, at most 50 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Slow down below `rate` while the transport takes longer than usual to hold the replay's
    /// outputs, so live traffic keeps its latency (default true); false keeps exactly `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<bool>,
    /// Drop what a route already forwarded within its dedup window (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<bool>,
}

/// Which routes a job runs its inputs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum Target {
    /// Every route whose upstream is the context.
    All,
    Route(String),
    Downstream(String),
}

impl Target {
    /// The routes of `pipeline` this target takes, among those an input goes to.
    fn takes(&self, route: &Route) -> bool {
        match self {
            Target::All => true,
            Target::Route(name) => route.name.as_str() == name,
            Target::Downstream(context) => route.downstream.as_str() == context,
        }
    }
}

/// A checked request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Spec {
    #[schema(value_type = String)]
    pub context: ContextName,
    /// Unix milliseconds.
    pub from_ms: i64,
    pub to_ms: i64,
    pub types: Vec<String>,
    pub target: Target,
    /// Inputs per second at most.
    pub rate: u32,
    /// Slower than `rate` while the transport is loaded (jobs stored before this existed were
    /// adaptive too: it was not there to turn off).
    #[serde(default = "adaptive_by_default")]
    pub adaptive: bool,
    pub dedup: bool,
}

fn adaptive_by_default() -> bool {
    true
}

impl Spec {
    /// Checks a request against the registry now; `now` fills `to` and reads durations ago.
    pub fn check(request: &Request, pipeline: &Pipeline, now: SystemTime) -> Result<Self, String> {
        let registry = pipeline.registry();
        let context =
            ContextName::parse(&request.context).map_err(|error| format!("context: {error}"))?;
        let Some(found) = registry.contexts.get(&context) else {
            return Err(format!("context {context} is not in the registry"));
        };
        if found.archive.is_none() {
            return Err(format!(
                "context {context} has no archive (archive = false in contextgate.toml)"
            ));
        }
        let from = time(&request.from, now).map_err(|error| format!("from: {error}"))?;
        let to = match &request.to {
            Some(text) => time(text, now).map_err(|error| format!("to: {error}"))?,
            None => now,
        };
        if to < from {
            return Err("to is before from".into());
        }
        let target = match (&request.route, &request.downstream) {
            (Some(_), Some(_)) => return Err("give route or downstream, not both".into()),
            (Some(route), None) => {
                let name = RouteName::parse(route).map_err(|error| format!("route: {error}"))?;
                match registry.route(&name) {
                    Some(found) if found.upstream == context => Target::Route(route.clone()),
                    Some(_) => {
                        return Err(format!("route {route} does not take {context}'s messages"));
                    }
                    None => return Err(format!("route {route} is not in the registry")),
                }
            }
            (None, Some(downstream)) => {
                if !registry.routes.iter().any(|route| {
                    route.upstream == context && route.downstream.as_str() == downstream
                }) {
                    return Err(format!("no route goes from {context} to {downstream}"));
                }
                Target::Downstream(downstream.clone())
            }
            (None, None) => Target::All,
        };
        let rate = request.rate.unwrap_or(DEFAULT_RATE);
        if !(1..=MAX_RATE).contains(&rate) {
            return Err(format!(
                "rate must be between 1 and {MAX_RATE} inputs a second"
            ));
        }
        if request.types.len() > 100 || request.types.iter().any(|kind| kind.len() > 256) {
            return Err("types: at most 100, each at most 256 characters".into());
        }
        Ok(Self {
            context,
            from_ms: millis(from),
            to_ms: millis(to),
            types: request.types.clone(),
            target,
            rate,
            adaptive: request.adaptive.unwrap_or(true),
            dedup: request.dedup.unwrap_or(true),
        })
    }

    pub fn from(&self) -> SystemTime {
        at(self.from_ms)
    }

    pub fn to(&self) -> SystemTime {
        at(self.to_ms)
    }

    /// The routes of `pipeline` one input goes to in this job, or why none.
    fn routes_for(
        &self,
        pipeline: &Pipeline,
        delivery: &Delivery,
    ) -> Result<(crate::stages::receive::Input, Vec<Arc<Route>>), Skipped> {
        let (input, routes) = pipeline
            .accept(&self.context, delivery)
            .map_err(|_| Skipped::Refused)?;
        if !self.types.is_empty() && !self.types.contains(&input.message.attributes.event_type) {
            return Err(Skipped::Filtered);
        }
        let routes: Vec<_> = routes
            .into_iter()
            .filter(|route| self.target.takes(route))
            .collect();
        if routes.is_empty() {
            return Err(Skipped::NoRoute);
        }
        Ok((input, routes))
    }
}

/// Why an archived input went to no route.
#[derive(Debug, Clone, Copy)]
enum Skipped {
    /// Not a CloudEvent, an unknown contract, a command no route or several take: it failed
    /// before routing the first time too, and its dead letter is still kept.
    Refused,
    /// Not one of the job's types.
    Filtered,
    /// None of the job's routes takes it.
    NoRoute,
}

/// RFC 3339, or a duration ago.
fn time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-30T10:00:00Z) nor a duration ago (90m)"
        )),
    }
}

pub fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

pub fn at(millis: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// What became of the archived inputs a job read, per route outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    /// Archived inputs read.
    pub read: u64,
    /// Route runs that forwarded.
    pub forwarded: u64,
    /// Route runs that dropped (the translator or policy).
    pub dropped: u64,
    /// Route runs that dead-lettered.
    pub dead_lettered: u64,
    /// Route runs that found the input already forwarded within the route's dedup window.
    pub duplicate: u64,
    /// Route runs that went to the route's retry (later attempts are the live route's).
    pub retried: u64,
    /// Inputs no route of the job took: other types, other routes, or failing before routing.
    pub skipped: u64,
}

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Running,
    Done,
    Cancelled,
    Failed,
}

/// A job as the API shows it, and as it is stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub spec: Spec,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The window's archive offsets, once found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The next offset to read: everything before it is done.
    pub next: u64,
    pub counts: Counts,
    /// Who asked (`operator` or a context).
    pub by: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Times the job resumed after a fault or a restart.
    pub resumed: u32,
    /// Inputs per second the job goes at now: its rate, or less while it adapts.
    #[serde(default)]
    pub pace: u32,
}

/// A window's offsets in its archive: `[first, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Window {
    pub first: u64,
    pub end: u64,
}

impl Job {
    /// Archive records in the window (markers included on RabbitMQ), once found.
    pub fn total(&self) -> Option<u64> {
        self.window
            .map(|window| window.end.saturating_sub(window.first))
    }
}

/// What a dry run found in a window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Survey {
    /// Archived inputs in the window (markers and the broker's own records not counted).
    pub total: u64,
    /// Inputs the job would take, per message type.
    pub by_type: BTreeMap<String, u64>,
    /// Route runs the job would make, per route.
    pub by_route: BTreeMap<String, u64>,
    /// Inputs no route of the job takes.
    pub skipped: u64,
}

/// An archived input.
#[derive(Clone)]
pub struct Archived {
    pub offset: u64,
    pub delivery: Delivery,
    /// The transport's own form of it (on RabbitMQ the delivery with its typed headers, which
    /// a dead letter keeps unchanged).
    pub raw: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Archived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archived")
            .field("offset", &self.offset)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// Where a job reads (a context's archive).
pub trait Source: Send + Sync {
    /// The offsets `[first, end)` of what arrived from `from` to before `to`.
    fn window(
        &self,
        context: &ContextName,
        from: SystemTime,
        to: SystemTime,
    ) -> impl Future<Output = Result<(u64, u64), String>> + Send;
    /// Up to `max` archived inputs from offset `from` (only below `end`), in order, and the
    /// offset to read next (past what was read, markers included; `from` when nothing was).
    fn read(
        &self,
        context: &ContextName,
        from: u64,
        end: u64,
        max: usize,
    ) -> impl Future<Output = Result<(Vec<Archived>, u64), String>> + Send;
}

/// What became of one route's run, acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    Forwarded,
    Dropped,
    DeadLettered,
    Retried,
}

/// What an outcome still waits for once its messages are sent: the transport holding them (on
/// RabbitMQ, the broker's confirms). `Err`: the transport failed.
pub type Acting = Pin<Box<dyn Future<Output = Result<Acted, String>> + Send>>;

/// An outcome the transport already holds.
pub fn acted(acted: Acted) -> Acting {
    Box::pin(std::future::ready(Ok(acted)))
}

/// Where a job's outcomes go (the transport).
pub trait Sink: Send + Sync {
    /// Acts on one route's outcome of one input as the live route would: what it sends is sent,
    /// in the order of the calls, when this returns; the [`Acting`] resolves once the transport
    /// holds it. So a batch's confirms are awaited together, not one round trip per input.
    /// `Err`: the transport failed; the job resumes from its last batch.
    fn act(
        &self,
        route: &Arc<Route>,
        outcome: Outcome,
        archived: &Archived,
        contract: &ContractId,
    ) -> impl Future<Output = Result<Acting, String>> + Send;
}

/// A replayed input's dedup key held on one route while its outputs wait for the transport,
/// with the route's own window (`None`: the route has none; the key is kept on this instance).
type Claim = (Option<Duration>, dedup::Held);

/// Counts one route's outcome of a replayed input.
fn count(counts: &mut Counts, acted: Acted) {
    let (slot, name) = match acted {
        Acted::Forwarded => (&mut counts.forwarded, "forwarded"),
        Acted::Dropped => (&mut counts.dropped, "dropped"),
        Acted::DeadLettered => (&mut counts.dead_lettered, "dead-lettered"),
        Acted::Retried => (&mut counts.retried, "retried"),
    };
    *slot += 1;
    metrics::counter!(telemetry::REPLAYED, "outcome" => name).increment(1);
}

/// One job's handle: its state and its cancel switch.
#[derive(Debug)]
pub struct Running {
    state: Mutex<Job>,
    cancel: AtomicBool,
    /// Held while the job's file is written, so the last write holds the newest state.
    writing: Mutex<()>,
}

impl Running {
    pub fn job(&self) -> Job {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Job> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every job of this process, and where their state is kept.
#[derive(Debug, Default)]
pub struct Replays {
    jobs: Mutex<HashMap<String, Arc<Running>>>,
    /// `<data-dir>/replays`, when there is a data directory.
    dir: Option<PathBuf>,
    windows: Arc<dedup::Windows>,
}

impl Replays {
    /// Jobs kept under `data_dir` (`None`: in memory only), checking dedup in `windows`.
    pub fn new(data_dir: Option<&std::path::Path>, windows: Arc<dedup::Windows>) -> Self {
        Self {
            jobs: Mutex::default(),
            dir: data_dir.map(|dir| dir.join("replays")),
            windows,
        }
    }

    /// The jobs a previous process left running (to resume), read from the data directory.
    pub fn stored(&self) -> Vec<Job> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut jobs = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|error| error.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Job>(&bytes).map_err(|error| error.to_string())
                }) {
                Ok(job) => jobs.push(job),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "A stored replay job could not be read; it is left as it is.");
                }
            }
        }
        jobs.sort_by_key(|job| job.created_ms);
        jobs
    }

    /// Registers a new job (or a stored one being resumed) and returns its handle.
    pub fn start(&self, job: Job) -> Result<Arc<Running>, String> {
        let running = Arc::new(Running {
            state: Mutex::new(job.clone()),
            cancel: AtomicBool::new(false),
            writing: Mutex::new(()),
        });
        store(self.dir.as_deref(), &job)?;
        let mut jobs = self.lock();
        if jobs.len() >= MAX_JOBS {
            let mut finished: Vec<_> = jobs
                .iter()
                .map(|(id, running)| (id.clone(), running.job()))
                .filter(|(_, job)| job.status != Status::Running)
                .map(|(id, job)| (job.updated_ms, id))
                .collect();
            finished.sort();
            for (_, id) in finished.iter().take(jobs.len() + 1 - MAX_JOBS) {
                jobs.remove(id);
            }
            if jobs.len() >= MAX_JOBS {
                return Err(format!(
                    "{MAX_JOBS} replay jobs are running; wait for one to end"
                ));
            }
        }
        jobs.insert(job.id.clone(), running.clone());
        Ok(running)
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().get(id).map(|running| running.job())
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.lock().values().map(|running| running.job()).collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.created_ms));
        jobs
    }

    /// Asks a job to stop; it does after its current input. `None`: no such job.
    pub fn cancel(&self, id: &str) -> Option<Job> {
        let running = self.lock().get(id).cloned()?;
        running.cancel.store(true, Ordering::Relaxed);
        {
            let mut job = running.lock();
            if job.status != Status::Running {
                return Some(job.clone());
            }
            job.status = Status::Cancelled;
            job.updated_ms = millis(SystemTime::now());
        }
        let _ = persist(self.dir.as_deref(), &running);
        Some(running.job())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Running>>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a job to its end (done, cancelled, failed), resuming after transport faults from
    /// its last stored batch. `pipelines` gives the registry now at each input.
    pub async fn run<S: Source, K: Sink>(
        &self,
        running: Arc<Running>,
        pipelines: impl Fn() -> Pipeline + Send + Sync,
        source: &S,
        sink: &K,
    ) {
        let (id, spec) = {
            let job = running.lock();
            (job.id.clone(), job.spec.clone())
        };
        let context = &spec.context;
        let mut backoff = Duration::from_millis(200);
        let mut pace = pace::Pace::new(spec.rate, spec.adaptive);
        running.lock().pace = pace.rate().round() as u32;
        let mut next_at = Instant::now();
        let mut stored = Instant::now();
        loop {
            if running.cancel.load(Ordering::Relaxed) {
                return;
            }
            let window = running.lock().window;
            let Window { first, end } = match window {
                Some(window) => window,
                None => match source.window(context, spec.from(), spec.to()).await {
                    Ok((first, end)) => {
                        let window = Window { first, end };
                        let mut job = running.lock();
                        job.window = Some(window);
                        job.next = job.next.max(first);
                        job.updated_ms = millis(SystemTime::now());
                        drop(job);
                        let _ = persist(self.dir.as_deref(), &running);
                        window
                    }
                    Err(error) => {
                        self.fault(&running, &error, &mut backoff).await;
                        continue;
                    }
                },
            };
            let next = running.lock().next.max(first);
            if next >= end {
                self.finish(&running, Status::Done, None);
                tracing::info!(job = %id, "Replay done.");
                return;
            }
            let (batch, after) = match source.read(context, next, end, BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    self.fault(&running, &error, &mut backoff).await;
                    continue;
                }
            };
            if after <= next {
                // The archive lost the rest of the window (retention): nothing more to read.
                self.finish(&running, Status::Done, None);
                return;
            }
            let mut counts = Counts::default();
            let mut acting = Vec::new();
            let mut failed = None;
            for archived in batch {
                if running.cancel.load(Ordering::Relaxed) {
                    return;
                }
                // The pace: never faster than the rate, so live traffic keeps its share. A
                // fixed pace catches up on a late second; an adaptive one does not (a burst
                // is what it avoids).
                next_at += pace.interval();
                let now = Instant::now();
                if next_at > now {
                    tokio::time::sleep(next_at - now).await;
                } else if spec.adaptive || now - next_at > Duration::from_secs(1) {
                    next_at = now;
                }
                if let Err(error) = self
                    .one(
                        &spec,
                        &id,
                        &pipelines(),
                        archived,
                        sink,
                        &mut counts,
                        &mut acting,
                    )
                    .await
                {
                    failed = Some(error);
                    break;
                }
            }
            // The batch's confirms, awaited together; a key is kept once its outputs are held.
            // How long they took after the last send is the pace's signal.
            let last_sent = Instant::now();
            for (held, acted) in acting {
                match acted.await {
                    Ok(acted) => {
                        if let (Some((own, guard)), Acted::Forwarded) = (held, acted) {
                            match own {
                                Some(window) => guard.confirm(window),
                                None => guard.confirm_here(dedup::REPLAY_WINDOW),
                            }
                        }
                        count(&mut counts, acted);
                    }
                    Err(error) => {
                        failed.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = failed {
                // The batch goes again from its first input: what it forwarded is in the dedup
                // windows, what it dead-lettered may be kept twice (with the same input).
                self.fault(&running, &error, &mut backoff).await;
                continue;
            }
            backoff = Duration::from_millis(200);
            if counts.forwarded + counts.dead_lettered + counts.retried > 0 {
                let now = Instant::now();
                let delay = now - last_sent;
                pace.observe(delay, now);
                tracing::debug!(job = %id, delay_us = delay.as_micros(), pace = pace.rate(), "A replay's batch is held.");
            }
            {
                let mut job = running.lock();
                if job.status != Status::Running {
                    return;
                }
                job.pace = pace.rate().round() as u32;
                add(&mut job.counts, &counts);
                job.next = after;
                job.updated_ms = millis(SystemTime::now());
            }
            // The offset is stored at most once a second, off the runtime's threads (a file
            // synced to disk can take a while under load): a restart goes over at most that
            // second again, and dedup makes what it forwarded again duplicates.
            if stored.elapsed() >= STORE_EVERY {
                stored = Instant::now();
                let (dir, running) = (self.dir.clone(), running.clone());
                let written =
                    tokio::task::spawn_blocking(move || persist(dir.as_deref(), &running)).await;
                if let Ok(Err(error)) = written {
                    tracing::warn!(job = %id, %error, "A replay's progress could not be stored.");
                }
            }
        }
    }

    /// One archived input through the job's routes: what each route's outcome sends is sent;
    /// what it still waits for goes to `acting`, with the dedup claim it holds meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn one<K: Sink>(
        &self,
        spec: &Spec,
        id: &str,
        pipeline: &Pipeline,
        archived: Archived,
        sink: &K,
        counts: &mut Counts,
        acting: &mut Vec<(Option<Claim>, Acting)>,
    ) -> Result<(), String> {
        counts.read += 1;
        let permit = crate::scripting::script_permit().await;
        let routed = spec.routes_for(pipeline, &archived.delivery);
        drop(permit);
        let Ok((input, routes)) = routed else {
            counts.skipped += 1;
            metrics::counter!(telemetry::REPLAYED, "outcome" => "skipped").increment(1);
            return Ok(());
        };
        let key = Key::of(&input.message.attributes);
        for route in routes {
            let mut outcome = pipeline.run_on(&route, &input, 1).await;
            // Held while the route's outcome is acted on: kept once forwarded, released
            // otherwise (the guard dropped), like a live input's key.
            let mut held = None;
            if let Outcome::Forward { messages } = &mut outcome {
                if spec.dedup {
                    match self.windows.hold(&route.name, key) {
                        Some(guard) => held = Some((route.dedup, guard)),
                        None => {
                            counts.duplicate += 1;
                            metrics::counter!(telemetry::REPLAYED, "outcome" => "duplicate")
                                .increment(1);
                            metrics::counter!(telemetry::MESSAGES_DUPLICATE, "route" => route.name.to_string())
                                .increment(1);
                            continue;
                        }
                    }
                }
                for message in messages {
                    message
                        .attributes
                        .extensions
                        .insert(REPLAY_ATTRIBUTE.to_owned(), id.to_owned());
                }
            }
            let sent = sink
                .act(&route, outcome, &archived, &input.contract)
                .await?;
            acting.push((held, sent));
        }
        Ok(())
    }

    async fn fault(&self, running: &Running, error: &str, backoff: &mut Duration) {
        {
            let mut job = running.lock();
            tracing::warn!(job = %job.id, %error, ?backoff, "A replay paused on a fault; it goes on from its last batch.");
            job.error = Some(error.to_owned());
            job.resumed += 1;
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(10));
    }

    fn finish(&self, running: &Running, status: Status, error: Option<String>) {
        {
            let mut job = running.lock();
            if job.status != Status::Running {
                return;
            }
            job.status = status;
            // A job that ended done keeps no error of a fault it got over.
            job.error = match status {
                Status::Done => None,
                _ => error.or(job.error.take()),
            };
            job.updated_ms = millis(SystemTime::now());
        }
        if let Err(error) = persist(self.dir.as_deref(), running) {
            tracing::warn!(job = %running.job().id, %error, "A replay's end could not be stored.");
        }
    }
}

/// Writes a job's state atomically (a temporary file renamed over the old one).
fn store(dir: Option<&std::path::Path>, job: &Job) -> Result<(), String> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", job.id));
        let temporary = dir.join(format!(".{}.json.tmp", job.id));
        let bytes = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
        std::fs::write(&temporary, bytes)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &path)
    };
    write().map_err(|error| format!("cannot store replay job {}: {error}", job.id))
}

/// Writes a running job's state as it is now: the newest state is the last written.
fn persist(dir: Option<&std::path::Path>, running: &Running) -> Result<(), String> {
    let _writing = running
        .writing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    store(dir, &running.job())
}

fn add(total: &mut Counts, batch: &Counts) {
    total.read += batch.read;
    total.forwarded += batch.forwarded;
    total.dropped += batch.dropped;
    total.dead_lettered += batch.dead_lettered;
    total.duplicate += batch.duplicate;
    total.retried += batch.retried;
    total.skipped += batch.skipped;
}

/// A new job for `spec`, asked by `by`.
pub fn new_job(spec: Spec, by: String) -> Job {
    let now = millis(SystemTime::now());
    Job {
        id: uuid::Uuid::new_v4().to_string(),
        spec,
        status: Status::Running,
        error: None,
        window: None,
        next: 0,
        counts: Counts::default(),
        by,
        created_ms: now,
        updated_ms: now,
        resumed: 0,
        pace: 0,
    }
}

/// A dry run: how many inputs the window holds, per type and per route the job would take.
pub async fn survey<S: Source>(
    spec: &Spec,
    pipeline: &Pipeline,
    source: &S,
    limit: u64,
) -> Result<Survey, String> {
    let context = &spec.context;
    let (first, end) = source.window(context, spec.from(), spec.to()).await?;
    let span = end.saturating_sub(first);
    if span > limit {
        return Err(format!(
            "the window holds about {span} inputs, more than a dry run reads ({limit}): narrow it"
        ));
    }
    let mut survey = Survey::default();
    let mut next = first;
    while next < end {
        let (batch, after) = source.read(context, next, end, 1_000).await?;
        if after <= next {
            break;
        }
        // Decoding a thousand inputs is CPU work: with a script permit, like any decoding.
        let _permit = crate::scripting::script_permit().await;
        for archived in batch {
            survey.total += 1;
            match spec.routes_for(pipeline, &archived.delivery) {
                Ok((input, routes)) => {
                    *survey
                        .by_type
                        .entry(input.message.attributes.event_type.clone())
                        .or_default() += 1;
                    for route in routes {
                        *survey.by_route.entry(route.name.to_string()).or_default() += 1;
                    }
                }
                Err(_) => survey.skipped += 1,
            }
        }
        next = after;
    }
    Ok(survey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            time("90m", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(10_000 - 5_400)
        );
        assert_eq!(millis(time("1970-01-01T00:00:01.5Z", now).unwrap()), 1_500);
        assert!(time("yesterday", now).unwrap_err().contains("RFC 3339"));
        assert_eq!(millis(at(1_234)), 1_234);
    }
}
