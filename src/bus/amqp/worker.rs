//! Consuming: one consumer per route queue — or, for a route with an ordering key, per shard
//! this instance holds (see `sequencer` and `fleet`) — on its own channel of the consume
//! connection.
//!
//! The consumer receives in queue order, decodes each delivery, and hands it to a lane: the lane
//! of its ordering key (so that one key's messages run one after another), or, without a key,
//! the lane the previous one went to until a few wait there. A lane runs the pipeline and
//! *sends* the outputs, dead letter or retry in order; it hands the consumer's settler a future
//! per input that waits for the broker's confirms, and the settler settles the input when it
//! resolves (see `settle`). So one key's outputs reach the downstream exchange in input order,
//! while confirms overlap.
//! Prefetch bounds the inputs in flight, and so the memory.
//!
//! Each delivery runs on the registry that is current when it is taken, and stays on it to the
//! end: a registration swaps the pipeline under a running consumer, which neither stops nor
//! puts anything back.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicQosOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::Session;
use super::publisher::{Confirmed, Pending};
use super::settle::{self, Settle, Settler, Settling};
use super::wire::{self, DeadLetterInfo, Taken};
use crate::dedup::Key;
use crate::pipeline::{Outcome, Pipeline};
use crate::registry::{ContextName, Route, RouteName};
use crate::stages::receive::Input;
use crate::stages::{Failure, Problem, Reason, Stage};
use crate::telemetry::trace::{Carrier, RouteSpan, System};
use crate::telemetry::{self, Counted};

/// How long a stopped consumer keeps its channel open after its last ack, before closing it.
/// RabbitMQ settles acks on a quorum queue asynchronously; seen here on 3.10.8, a channel
/// dropped right after its last acks had those inputs redelivered (3 and 4 runs in 25 of a
/// reload test), and none in 25 when it stayed open a moment longer.
pub(super) const SETTLE_GRACE: Duration = Duration::from_millis(500);

/// How many inputs without a key wait in a lane before the next ones go to the next lane.
const LANE_BACKLOG: usize = 4;

/// One input of a route on its way through a lane, with the registry it runs on.
struct Queued {
    work: Arc<RouteWork>,
    job: Job,
}

/// One input.
struct Job {
    taken: Taken,
    received: Result<Input, Failure>,
    attempt: u32,
    started: Instant,
    /// Its span on the route, when tracing is on (boxed: a job without one stays small).
    span: Option<Box<RouteSpan>>,
    /// Counted in flight on its route until it is dropped (once its settlement is decided).
    _in_flight: Option<Counted>,
}

impl Job {
    /// The input's CloudEvents `time`, if it was decoded and has one.
    fn time(&self) -> Option<&str> {
        self.received
            .as_ref()
            .ok()?
            .message
            .attributes
            .time
            .as_deref()
    }

    fn contract(&self) -> Option<String> {
        self.received
            .as_ref()
            .ok()
            .map(|input| input.contract.to_string())
    }
}

/// What the inputs of one route share, built once per registry: the registry's pipeline, the
/// route, its downstream's inbound exchange, and its metric handles (so that no input looks
/// them up again).
struct RouteWork {
    pipeline: Pipeline,
    route: Arc<Route>,
    exchange: String,
    messages_in: metrics::Counter,
    forwarded: metrics::Counter,
    dropped: metrics::Counter,
    processing: metrics::Histogram,
    latency: metrics::Histogram,
    end_to_end: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl RouteWork {
    /// The work of route `name` on `pipeline`; `None` when the route is gone from it (its
    /// consumer is about to be stopped).
    fn on(session: &Session, name: &RouteName, pipeline: Pipeline) -> Option<Arc<Self>> {
        let route = pipeline.registry().route(name)?.clone();
        Some(Arc::new(Self::new(session, pipeline, route)))
    }

    fn new(session: &Session, pipeline: Pipeline, route: Arc<Route>) -> Self {
        let name = route.name.to_string();
        Self {
            pipeline,
            exchange: session.names.inbound(&route.downstream),
            messages_in: metrics::counter!(telemetry::MESSAGES_IN, "context" => route.upstream.to_string()),
            forwarded: metrics::counter!(telemetry::MESSAGES_FORWARDED, "route" => name.clone()),
            dropped: metrics::counter!(telemetry::MESSAGES_DROPPED, "route" => name.clone()),
            processing: metrics::histogram!(telemetry::PROCESSING_SECONDS),
            latency: metrics::histogram!(telemetry::ROUTE_LATENCY_SECONDS, "route" => name.clone()),
            end_to_end: metrics::histogram!(telemetry::END_TO_END_SECONDS, "route" => name.clone()),
            in_flight: metrics::gauge!(telemetry::IN_FLIGHT, "route" => name),
            route,
        }
    }

    /// Records the input's processing time and hands its settlement to the settler.
    fn finish(&self, job: &Job, settle: Settle, settler: &Settler) {
        self.processing.record(job.started.elapsed().as_secs_f64());
        // The settler is gone only when the session is: the broker then redelivers the input.
        let _ = settler.send(Settling::Now(settle));
    }

    /// Hands the settler what the input still waits for (confirms, a dead letter's or a
    /// retry's publish); the settler polls it and records the processing time when it is done.
    fn finish_later(
        &self,
        started: Instant,
        settler: &Settler,
        finishing: impl Future<Output = Settle> + Send + 'static,
    ) {
        let processing = self.processing.clone();
        // The settler is gone only when the session is: the broker then redelivers the input.
        let _ = settler.send(Settling::Later(Box::pin(async move {
            let settle = finishing.await;
            processing.record(started.elapsed().as_secs_f64());
            settle
        })));
    }
}

/// Which queue of a route a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The route's own queue: a route without an ordering key, whose consumers (one per
    /// instance) compete.
    Route,
    /// One shard of an ordered route, behind its sequencer; its queue has a single active
    /// consumer in the whole fleet.
    Shard(u16),
}

/// Consumes the queue of route `name` (its own or one of its shards) until `stop` turns true
/// (then finishes and settles what is in flight) or the channel fails.
///
/// The consumer is never cancelled: when it stops it only stops handing deliveries to its
/// lanes, lets them finish and settle, and closes the channel. The broker then puts back what
/// was delivered but not taken, ahead of the rest, and only then activates the next consumer of
/// a shard, so that a key's next input is never processed before the ones this consumer took.
/// (A `basic.cancel` would activate the next consumer at once, while what was delivered here
/// stays unacked until the channel closes: the next one would overtake it.) A route queue's
/// consumer lets go the same way, so that the sequencer of a route that got an ordering key
/// (whose exclusive consumer the broker refuses while another consumer exists) moves its queue
/// only once nothing is held elsewhere.
pub async fn consume_route(
    session: Arc<Session>,
    name: RouteName,
    source: Source,
    channel: Channel,
    mut stop: watch::Receiver<bool>,
) -> lapin::Result<()> {
    channel
        .basic_qos(session.settings.prefetch, BasicQosOptions::default())
        .await?;
    let mut pipelines = session.pipelines.subscribe();
    let mut current = RouteWork::on(&session, &name, pipelines.borrow_and_update().clone());
    let instance = &session.settings.instance;
    let (queue, tag) = match source {
        Source::Route => (
            session.names.route_queue(name.as_str()),
            format!("{instance}/{name}"),
        ),
        Source::Shard(shard) => (
            session.names.shard_queue(name.as_str(), shard),
            format!("{instance}/{name}/shard.{shard}"),
        ),
    };
    // What came through the sequencer names the exchange it first came through.
    let shard_exchange = session.names.shard_exchange(name.as_str());
    let mut consumer = super::consume(&channel, queue.as_str(), &tag).await?;
    let (settler, settled) = mpsc::unbounded_channel();
    let acker = tokio::spawn(settle::run(channel.clone(), settled));
    let n_lanes = session.settings.lanes.max(1);
    let capacity = (usize::from(session.settings.prefetch) / n_lanes).max(1);
    let mut lanes = Vec::with_capacity(n_lanes);
    let mut lane_tasks = JoinSet::new();
    for _ in 0..n_lanes {
        let (jobs, receiver) = mpsc::channel(capacity);
        lanes.push(jobs);
        lane_tasks.spawn(run_lane(session.clone(), receiver, settler.clone()));
    }
    let retry_exchanges = [session.names.retry(), session.names.retries()];
    let mut next_lane = 0;
    let ended = loop {
        let mut taken = match next_delivery(
            &session,
            &channel,
            &mut consumer,
            (&tag, Release::Close),
            &queue,
            &mut stop,
        )
        .await
        {
            Ok(Some(taken)) => taken,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        if taken.exchange == shard_exchange {
            taken.exchange = taken.via().unwrap_or_default();
        }
        let started = Instant::now();
        if pipelines.has_changed().unwrap_or(false) {
            current = RouteWork::on(&session, &name, pipelines.borrow_and_update().clone());
        }
        let Some(work) = current.clone() else {
            // The route is gone: the input waits in its queue (as when the route is deleted).
            let _ = settler.send(Settling::Now(Settle::Requeue(taken.tag)));
            continue;
        };
        let route = &work.route;
        work.messages_in.increment(1);
        let in_flight = Counted::enter(&work.in_flight);
        let attempt = taken.attempt(&retry_exchanges);
        let (received, span) = {
            let headers = taken.header_texts();
            let received = work.pipeline.receive_parts_on(
                route,
                taken.content_type(),
                headers.iter().map(|(name, value)| (*name, value.as_ref())),
                taken.body.clone(),
            );
            let span = start_span(route, &headers, &received, attempt, started);
            (received, span)
        };
        let keyed = match (&received, &route.ordering_key) {
            (Ok(input), Some(key)) => key
                .of(input.message.attributes.subject.as_deref(), &input.data)
                .map(|key| lane_of(&key, n_lanes)),
            _ => None,
        };
        // An input without a key goes to the lane the last one went to until that lane has a
        // few waiting: a lane that keeps up takes them one after another without being woken
        // for each, and work that waits (look-ups) still spreads over every lane.
        let lane = keyed.unwrap_or_else(|| {
            let queue = &lanes[next_lane];
            if queue.max_capacity() - queue.capacity() >= LANE_BACKLOG.min(capacity) {
                next_lane = (next_lane + 1) % n_lanes;
            }
            next_lane
        });
        let queued = Queued {
            work,
            job: Job {
                taken,
                received,
                attempt,
                started,
                span,
                _in_flight: Some(in_flight),
            },
        };
        if lanes[lane].send(queued).await.is_err() {
            break Ok(());
        }
    };
    drop(lanes);
    while lane_tasks.join_next().await.is_some() {}
    drop(settler);
    let acked = acker.await.unwrap_or(Ok(()));
    if ended.is_ok() && acked.is_ok() {
        tokio::time::sleep(SETTLE_GRACE).await;
        let _ = channel
            .close(200, "contextgate consumer stops".into())
            .await;
    }
    ended.and(acked)
}

/// The input's span on `route` when tracing is on (`None` at once when off): from its arrival,
/// child of the trace context in its headers or its CloudEvents extensions, its decoding the
/// first stage.
fn start_span(
    route: &Route,
    headers: &[(&str, std::borrow::Cow<'_, str>)],
    received: &Result<Input, Failure>,
    attempt: u32,
    started: Instant,
) -> Option<Box<RouteSpan>> {
    if !telemetry::trace::enabled() {
        return None;
    }
    let input = received.as_ref().ok();
    let carrier =
        Carrier::from_headers(headers.iter().map(|(name, value)| (*name, value.as_ref())))
            .or_extensions(input.map(|input| &input.message.attributes.extensions));
    let arrived = SystemTime::now()
        .checked_sub(started.elapsed())
        .unwrap_or_else(SystemTime::now);
    let mut span = RouteSpan::start(route, carrier, input, attempt, System::Rabbitmq, arrived)?;
    span.mark("decode", arrived, SystemTime::now());
    Some(Box::new(span))
}

fn lane_of(key: &str, n_lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % n_lanes as u64) as usize
}

async fn run_lane(session: Arc<Session>, mut jobs: mpsc::Receiver<Queued>, settler: Settler) {
    while let Some(Queued { work, mut job }) = jobs.recv().await {
        let (pipeline, route) = (&work.pipeline, &work.route);
        // The route's run takes a script permit of its own (`modes::run`).
        let outcome = match &job.received {
            Ok(input) => match job.span.as_deref_mut() {
                None => pipeline.run_on(route, input, job.attempt).await,
                Some(span) => {
                    pipeline
                        .run_on_traced(route, input, job.attempt, span)
                        .await
                }
            },
            Err(failure) => Outcome::DeadLetter {
                failure: failure.clone(),
            },
        };
        act(&session, &work, job, outcome, &settler).await;
    }
}

/// Sends what an outcome needs, in the lane; a task waits for the confirms and settles.
async fn act(
    session: &Arc<Session>,
    work: &Arc<RouteWork>,
    mut job: Job,
    outcome: Outcome,
    settler: &Settler,
) {
    let route = &work.route;
    let tag = job.taken.tag;
    match outcome {
        Outcome::Forward { mut messages } => {
            // An idempotent route: the input's key is held now, kept once the outputs are
            // confirmed, released otherwise — also when the session breaks and its tasks are
            // aborted (the guard is dropped), so the redelivery is not taken for a duplicate.
            let mut held = None;
            if let (Some(window), Ok(input)) = (route.dedup, &job.received) {
                match session
                    .windows
                    .hold(&route.name, Key::of(&input.message.attributes))
                {
                    Some(guard) => held = Some((window, guard)),
                    None => {
                        let _ = crate::dedup::duplicate(route);
                        tracing::debug!(route = %route.name, "Input dropped as a duplicate.");
                        if let Some(span) = job.span.take() {
                            span.end_dropped("duplicate");
                        }
                        work.finish(&job, Settle::Ack(tag), settler);
                        return;
                    }
                }
            }
            let exchange = &work.exchange;
            let publishing = job.span.as_ref().map(|span| {
                span.stamp(&mut messages);
                SystemTime::now()
            });
            let mut pending = Vec::with_capacity(messages.len());
            for message in &messages {
                let trace = job
                    .span
                    .as_ref()
                    .map(|span| (span.traceparent(), span.tracestate()));
                let (body, properties) = wire::output(
                    message,
                    route.wire,
                    job.taken.properties.headers().as_ref(),
                    trace,
                );
                match session
                    .publisher
                    .send_output(exchange, &message.attributes.event_type, &body, properties)
                    .await
                {
                    Ok(sent) => pending.push(sent),
                    Err(error) => {
                        session.fail(format!("publishing to {exchange} failed: {error}"));
                        let _ = settler.send(Settling::Now(Settle::Requeue(tag)));
                        return;
                    }
                }
            }
            let mut span = job.span.take();
            if let (Some(span), Some(start)) = (&mut span, publishing) {
                span.mark("publish", start, SystemTime::now());
            }
            let session = session.clone();
            let work = work.clone();
            let started = job.started;
            work.clone().finish_later(started, settler, async move {
                let route = &work.route;
                let exchange = &work.exchange;
                let count = pending.len() as u64;
                let confirming = span.as_ref().map(|_| SystemTime::now());
                let confirmed = confirm_all(pending).await;
                if let (Some(span), Some(start)) = (&mut span, confirming) {
                    span.mark("confirm", start, SystemTime::now());
                }
                if let (Some((window, guard)), Ok(Confirmed::Delivered)) = (held, &confirmed) {
                    guard.confirm(window);
                }
                match confirmed {
                    Ok(Confirmed::Delivered) => {
                        work.forwarded.increment(count);
                        telemetry::record_forward(
                            &work.latency,
                            &work.end_to_end,
                            job.started,
                            job.time(),
                        );
                        if let Some(span) = span {
                            span.end("forward", count as usize, None);
                        }
                        Settle::Ack(tag)
                    }
                    Ok(Confirmed::Unroutable(text)) => {
                        let failure = Failure::one(
                            Stage::Publish,
                            Reason::Unroutable,
                            Problem::new(format!(
                                "no queue is bound to exchange {exchange} for the output's type ({text}): the downstream context has not subscribed"
                            )),
                        );
                        let settle = dead_letter(&session, Some(route), &job, &failure).await;
                        if let Some(span) = span {
                            span.end("dead-letter", 0, Some(&failure));
                        }
                        settle
                    }
                    Ok(Confirmed::Refused(text)) => {
                        let failure =
                            Failure::one(Stage::Publish, Reason::PublishFailed, Problem::new(text))
                                .transient(None);
                        let (settle, outcome) = if job.attempt < route.policy.max_attempts {
                            let attempt = job.attempt + 1;
                            let delay = route.policy.backoff(attempt, None);
                            let settle =
                                retry(&session, route, &job, attempt, delay, &failure).await;
                            (settle, "retry")
                        } else {
                            let settle = dead_letter(&session, Some(route), &job, &failure).await;
                            (settle, "dead-letter")
                        };
                        if let Some(span) = span {
                            span.end(outcome, 0, Some(&failure));
                        }
                        settle
                    }
                    Err(error) => {
                        session.fail(format!("waiting for confirms failed: {error}"));
                        Settle::Requeue(tag)
                    }
                }
            });
        }
        Outcome::Drop { reason } => {
            tracing::debug!(route = %route.name, %reason, "Input dropped.");
            work.dropped.increment(1);
            if let Some(span) = job.span.take() {
                span.end_dropped(&reason);
            }
            work.finish(&job, Settle::Ack(tag), settler);
        }
        Outcome::DeadLetter { failure } => {
            let sent = send_dead_letter(session, Some(route), &job, &failure).await;
            let session = session.clone();
            let route = work.route.clone();
            let span = job.span.take();
            work.finish_later(job.started, settler, async move {
                let settle = settle_after(&session, tag, sent).await;
                if settle == Settle::Ack(tag) {
                    count_dead_letter(Some(&route), &failure);
                }
                if let Some(span) = span {
                    span.end("dead-letter", 0, Some(&failure));
                }
                // Counted in flight until settled.
                drop(job);
                settle
            });
        }
        Outcome::Retry {
            attempt,
            delay,
            failure,
        } => {
            let session = session.clone();
            let route = work.route.clone();
            let span = job.span.take();
            work.finish_later(job.started, settler, async move {
                let settle = retry(&session, &route, &job, attempt, delay, &failure).await;
                if let Some(span) = span {
                    span.end("retry", 0, Some(&failure));
                }
                settle
            });
        }
    }
}

/// Every confirm of one input's outputs: delivered only if all were.
async fn confirm_all(pending: Vec<Pending>) -> lapin::Result<Confirmed> {
    let mut worst = Confirmed::Delivered;
    for sent in pending {
        match sent.confirmed().await? {
            Confirmed::Delivered => {}
            other @ Confirmed::Unroutable(_) => worst = other,
            other @ Confirmed::Refused(_) => {
                if worst == Confirmed::Delivered {
                    worst = other;
                }
            }
        }
    }
    Ok(worst)
}

async fn send_dead_letter(
    session: &Session,
    route: Option<&Route>,
    job: &Job,
    failure: &Failure,
) -> lapin::Result<Pending> {
    let info = DeadLetterInfo {
        route,
        failure,
        contract: job.contract(),
        attempt: job.attempt,
    };
    let properties = wire::dead_letter(&job.taken, &info);
    let key = route.map_or(super::topology::UNROUTED_KEY, |route| route.name.as_str());
    session
        .publisher
        .send(
            &session.names.dead_letters(),
            key,
            &job.taken.body,
            properties,
        )
        .await
}

/// Keeps the input as a dead letter and says how to settle it.
async fn dead_letter(
    session: &Session,
    route: Option<&Route>,
    job: &Job,
    failure: &Failure,
) -> Settle {
    let sent = send_dead_letter(session, route, job, failure).await;
    let settle = settle_after(session, job.taken.tag, sent).await;
    if settle == Settle::Ack(job.taken.tag) {
        count_dead_letter(route, failure);
    }
    settle
}

fn count_dead_letter(route: Option<&Route>, failure: &Failure) {
    let route = route.map_or_else(|| "none".to_owned(), |route| route.name.to_string());
    tracing::warn!(%route, stage = %failure.stage, reason = %failure.reason, "Input dead-lettered.");
    metrics::counter!(telemetry::MESSAGES_DEAD_LETTERED, "route" => route, "stage" => failure.stage.as_str())
        .increment(1);
}

/// Puts the input in the delay queue of its delay's step as attempt number `attempt`.
async fn retry(
    session: &Session,
    route: &Route,
    job: &Job,
    attempt: u32,
    delay: std::time::Duration,
    failure: &Failure,
) -> Settle {
    let properties = wire::retry(&job.taken, attempt, route);
    let step = super::topology::delay_step(&route.policy, delay);
    let sent = match session.delay_queue(step).await {
        Ok(queue) => {
            session
                .publisher
                .send("", &queue, &job.taken.body, properties)
                .await
        }
        Err(error) => Err(error),
    };
    let settle = settle_after(session, job.taken.tag, sent).await;
    if settle == Settle::Ack(job.taken.tag) {
        tracing::info!(route = %route.name, attempt, ?delay, reason = %failure.reason, "Input will be retried.");
        metrics::counter!(telemetry::MESSAGES_RETRIED, "route" => route.name.to_string(), "stage" => failure.stage.as_str())
            .increment(1);
    }
    settle
}

/// An input whose dead letter or retry the broker did not store goes back to its queue.
async fn settle_after(session: &Session, tag: u64, sent: lapin::Result<Pending>) -> Settle {
    let confirmed = match sent {
        Ok(pending) => pending.confirmed().await,
        Err(error) => Err(error),
    };
    match confirmed {
        Ok(Confirmed::Delivered) => Settle::Ack(tag),
        Ok(other) => {
            tracing::error!(
                ?other,
                "The broker did not take a dead letter or a retry; the input goes back to its queue."
            );
            Settle::Requeue(tag)
        }
        Err(error) => {
            session.fail(format!(
                "publishing a dead letter or a retry failed: {error}"
            ));
            Settle::Requeue(tag)
        }
    }
}

/// Consumes the queue behind every outbound exchange's alternate exchange: what no route queue
/// took. Each is first appended to its context's archive (when the context has one); then an
/// event that no route takes is counted and let go, and everything else is a dead letter (not
/// a CloudEvent, an unknown contract, a command no route takes, a routing key that is not the
/// message type).
pub async fn consume_unrouted(
    session: Arc<Session>,
    channel: Channel,
    mut stop: watch::Receiver<bool>,
) -> lapin::Result<()> {
    channel
        .basic_qos(
            session.settings.prefetch.min(64),
            BasicQosOptions::default(),
        )
        .await?;
    let queue = session.names.unrouted();
    let tag = format!("{}/unrouted", session.settings.instance);
    let mut consumer = super::consume(&channel, queue.as_str(), &tag).await?;
    while let Some(taken) = next_delivery(
        &session,
        &channel,
        &mut consumer,
        (&tag, Release::Cancel),
        &queue,
        &mut stop,
    )
    .await?
    {
        // Inputs no route queue took are archived here (the archive stream is bound only to
        // the types routes take, so that the outbound exchange's alternate exchange still
        // sees these); an input whose copy the broker did not store goes back to the queue.
        if !archive_unrouted(&session, &taken).await {
            settle::requeue(&channel, taken.tag).await?;
            continue;
        }
        let settle = match unrouted_failure(&session, &taken) {
            None => {
                metrics::counter!(telemetry::MESSAGES_DROPPED, "route" => "none").increment(1);
                Settle::Ack(taken.tag)
            }
            Some(failure) => {
                let job = Job {
                    received: Err(failure.clone()),
                    attempt: 1,
                    started: Instant::now(),
                    taken,
                    span: None,
                    _in_flight: None,
                };
                dead_letter(&session, None, &job, &failure).await
            }
        };
        match settle {
            Settle::Ack(tag) => channel.basic_ack(tag, BasicAckOptions::default()).await?,
            Settle::Requeue(tag) => settle::requeue(&channel, tag).await?,
        }
    }
    Ok(())
}

/// Appends an unrouted input to its context's archive, if the context has one; `false` when
/// the broker did not store the copy.
async fn archive_unrouted(session: &Session, taken: &Taken) -> bool {
    let Some(context) = session
        .names
        .context_of_outbound(&taken.exchange)
        .and_then(|context| ContextName::parse(context).ok())
    else {
        return true;
    };
    if session
        .pipeline()
        .registry()
        .contexts
        .get(&context)
        .and_then(|found| found.archive)
        .is_none()
    {
        return true;
    }
    let stream = session.names.archive(&context);
    let sent = super::archiver::send_copy(session, &stream, taken).await;
    super::archiver::stored(session, &context, sent).await
}

/// How a consumer lets go of its queue when told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// `basic.cancel` at once: nothing more is delivered (the unrouted consumer).
    Cancel,
    /// No cancel: the channel's close returns the rest (route queues, shards, sequencers; see
    /// [`consume_route`]).
    Close,
}

/// The next delivery; `None` once `stop` is true (the consumer is then cancelled, or left to
/// its channel's close) or when the broker cancelled the consumer (the queue was deleted: the
/// session is marked broken, and the next one declares the queue again). Waits while the
/// broker blocks publishing.
pub(super) async fn next_delivery(
    session: &Session,
    channel: &Channel,
    consumer: &mut lapin::Consumer,
    (tag, release): (&str, Release),
    queue: &str,
    stop: &mut watch::Receiver<bool>,
) -> lapin::Result<Option<Taken>> {
    let next = tokio::select! {
        biased;
        () = super::stopped(stop) => {
            if release == Release::Cancel {
                let _ = channel.basic_cancel(tag.into(), BasicCancelOptions::default()).await;
            }
            return Ok(None);
        }
        next = consumer.next() => next,
    };
    match next {
        Some(Ok(delivery)) => {
            session.status.wait_unblocked().await;
            Ok(Some(Taken::from_lapin(delivery)))
        }
        Some(Err(error)) => Err(error),
        None => {
            session.fail(format!("the consumer of {queue} was cancelled"));
            Ok(None)
        }
    }
}

/// Why an unrouted delivery is a dead letter; `None` for an event that no route takes.
fn unrouted_failure(session: &Session, taken: &Taken) -> Option<Failure> {
    let unroutable =
        |text: String| Failure::one(Stage::Decode, Reason::Unroutable, Problem::new(text));
    let Some(from) = session
        .names
        .context_of_outbound(&taken.exchange)
        .and_then(|context| ContextName::parse(context).ok())
    else {
        return Some(unroutable(format!(
            "published to exchange {:?}, which is no context's outbound exchange",
            taken.exchange
        )));
    };
    match session.pipeline().accept(&from, &taken.delivery()) {
        Err(failure) => Some(failure),
        Ok((_, routes)) if routes.is_empty() => None,
        Ok((input, _)) => Some(unroutable(format!(
            "published with routing key {:?}; route queues are bound by message type, here {:?}",
            crate::message::json::truncate(&taken.routing_key, 100),
            input.message.attributes.event_type
        ))),
    }
}
