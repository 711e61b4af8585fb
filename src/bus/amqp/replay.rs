//! Replays on RabbitMQ: each context's archive is the stream `<p><context>.archive` (see
//! `topology::declare_archives`), read from an offset by one consumer per job that goes on
//! from batch to batch (opened again after a fault, at the job's stored offset). A replay's
//! outcomes are published as a live route's are — outputs to the downstream's inbound
//! exchange, dead letters to the route's dead-letter stream, retries to the delay queues — and
//! a batch's confirms are awaited together before the job counts it and stores its offset.
//!
//! Finding a window: RabbitMQ indexes a stream's time per chunk and takes a start time as a
//! whole second (`x-stream-offset` of type timestamp), so the window's first offset is the first
//! delivered to a consumer started at `from`'s second, and its end the first delivered at the
//! second after `to` — the window is rounded outward to whole seconds. A job without `to` ends
//! at a marker it appends to the stream when it starts (a message with the header
//! [`MARKER`], which replays and dry runs skip), so nothing of the last second is cut off.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};

use super::dead_letters::stream_offset;
use super::publisher::{Confirmed, Pending};
use super::wire::{self, DeadLetterInfo, Taken};
use super::{AmqpBus, Session};
use crate::pipeline::Outcome;
use crate::registry::{ContextName, ContractId, Route};
use crate::replay::{self, Acted, Acting, Archived, Sink, Source};
use crate::stages::{Failure, Problem, Reason, Stage};

/// The header of the markers replays append to an archive (skipped when read).
pub const MARKER: &str = "x-contextgate-marker";
/// How long a read waits for the next record of a window it knows is there.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The archive streams and the publisher of the bus's current session.
pub fn ends(bus: &Arc<AmqpBus>) -> (Streams, Publish) {
    (
        Streams {
            bus: bus.clone(),
            reader: tokio::sync::Mutex::new(None),
        },
        Publish(bus.clone()),
    )
}

/// Reads archives (a job's own: it keeps the job's reader open between batches).
#[derive(Debug)]
pub struct Streams {
    bus: Arc<AmqpBus>,
    reader: tokio::sync::Mutex<Option<Reader>>,
}

/// Acts on replays' outcomes.
#[derive(Debug)]
pub struct Publish(Arc<AmqpBus>);

fn session(bus: &AmqpBus) -> Result<Arc<Session>, String> {
    bus.current_session().map_err(|error| error.to_string())
}

impl Source for Streams {
    async fn window(
        &self,
        context: &ContextName,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<(u64, u64), String> {
        let session = session(&self.bus)?;
        let stream = session.names.archive(context);
        let marker = uuid::Uuid::new_v4().to_string();
        let now = SystemTime::now();
        // The marker goes in first: every probe below then finds at least one record.
        append_marker(&session, &stream, &marker).await?;
        let channel = session
            .admin
            .create_channel()
            .await
            .map_err(|error| error.to_string())?;
        let result = async {
            let first = first_offset_at(&channel, &stream, seconds(from)).await?;
            let end = if to + Duration::from_secs(1) >= now {
                marker_offset(&channel, &stream, seconds(to).saturating_sub(1), &marker).await?
            } else {
                first_offset_at(&channel, &stream, seconds(to) + 1).await?
            };
            Ok((first, end.max(first)))
        }
        .await;
        let _ = channel.close(200, "window found".into()).await;
        result
    }

    async fn read(
        &self,
        context: &ContextName,
        from: u64,
        end: u64,
        max: usize,
    ) -> Result<(Vec<Archived>, u64), String> {
        let wanted = usize::try_from(end.saturating_sub(from))
            .unwrap_or(usize::MAX)
            .min(max);
        if wanted == 0 {
            return Ok((Vec::new(), from));
        }
        let mut slot = self.reader.lock().await;
        let mut reader = match slot.take() {
            Some(reader) if reader.continues(context, from) => reader,
            stale => {
                if let Some(stale) = stale {
                    stale.close().await;
                }
                Reader::open(&*session(&self.bus)?, context, from, max).await?
            }
        };
        match reader.read(from, end, wanted).await {
            Ok(read) => {
                *slot = Some(reader);
                Ok(read)
            }
            Err(error) => {
                reader.close().await;
                Err(error)
            }
        }
    }
}

/// A job's open reader of an archive: one consumer that goes on from batch to batch, so the
/// broker seeks into the stream once per job (and after a fault), not once per batch — a
/// consumer started at an offset starts at the head of the chunk that holds it.
struct Reader {
    context: ContextName,
    stream: String,
    channel: Channel,
    consumer: lapin::Consumer,
    tag: String,
    /// The offset of the next record to hand out.
    position: u64,
    /// A record read past a window's end, handed out first by the next read.
    peeked: Option<lapin::message::Delivery>,
    prefetch: u16,
}

/// A stream consumer's acks are its credit: without them the broker stops at the prefetch —
/// and a consumer started at an offset or a time first delivers the rest of a chunk the reader
/// skips. So every delivery is acked, in groups of half the prefetch.
struct Credit {
    prefetch: u16,
    unacked: u16,
    last: Option<u64>,
}

impl Credit {
    fn new(prefetch: u16) -> Self {
        Self {
            prefetch,
            unacked: 0,
            last: None,
        }
    }

    async fn took(
        &mut self,
        channel: &Channel,
        delivery: &lapin::message::Delivery,
        stream: &str,
    ) -> Result<(), String> {
        self.last = Some(delivery.delivery_tag);
        self.unacked += 1;
        if self.unacked >= (self.prefetch / 2).max(1) {
            self.give(channel, stream).await?;
        }
        Ok(())
    }

    async fn give(&mut self, channel: &Channel, stream: &str) -> Result<(), String> {
        if let Some(tag) = self.last.take() {
            self.unacked = 0;
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|error| format!("reading {stream} failed: {error}"))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("stream", &self.stream)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Reader {
    async fn open(
        session: &Session,
        context: &ContextName,
        from: u64,
        max: usize,
    ) -> Result<Self, String> {
        let stream = session.names.archive(context);
        let channel = session
            .admin
            .create_channel()
            .await
            .map_err(|error| error.to_string())?;
        let offset = AMQPValue::LongLongInt(i64::try_from(from).unwrap_or(i64::MAX));
        // Two batches ahead: the broker reads on while the job acts on a batch.
        let prefetch = u16::try_from(max.saturating_mul(2).clamp(1, 1_000)).unwrap_or(1_000);
        let (consumer, tag) = match consumer(&channel, &stream, offset, prefetch).await {
            Ok(opened) => opened,
            Err(error) => {
                let _ = channel.close(200, "cannot read".into()).await;
                return Err(error);
            }
        };
        Ok(Self {
            context: context.clone(),
            stream,
            channel,
            consumer,
            tag,
            position: from,
            peeked: None,
            prefetch,
        })
    }

    /// Whether this reader goes on at `from` of `context` (on a channel still open).
    fn continues(&self, context: &ContextName, from: u64) -> bool {
        self.context == *context && self.position == from && self.channel.status().connected()
    }

    async fn close(self) {
        let _ = self
            .channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let _ = self.channel.close(200, "replay read".into()).await;
    }

    /// Up to `wanted` records from `from` (the reader's position) to before `end`.
    async fn read(
        &mut self,
        from: u64,
        end: u64,
        wanted: usize,
    ) -> Result<(Vec<Archived>, u64), String> {
        let mut records = Vec::with_capacity(wanted);
        let mut after = from;
        let mut seen = 0;
        let mut credit = Credit::new(self.prefetch);
        while seen < wanted {
            let delivery = match self.peeked.take() {
                Some(delivery) => delivery,
                None => {
                    let delivery = next(&mut self.consumer, &self.stream).await?;
                    credit.took(&self.channel, &delivery, &self.stream).await?;
                    delivery
                }
            };
            let Some(offset) = stream_offset(&delivery.properties) else {
                return Err(format!("{} gave no offset", self.stream));
            };
            if offset < from {
                // A stream starts at the chunk that holds `from`.
                continue;
            }
            if offset >= end {
                self.peeked = Some(delivery);
                break;
            }
            seen += 1;
            after = offset + 1;
            let is_marker = delivery
                .properties
                .headers()
                .as_ref()
                .is_some_and(|headers| headers.inner().contains_key(MARKER));
            if !is_marker {
                let taken = Taken::from_lapin(delivery);
                records.push(Archived {
                    offset,
                    delivery: taken.delivery(),
                    raw: Some(Arc::new(taken)),
                });
            }
            if after >= end {
                break;
            }
        }
        credit.give(&self.channel, &self.stream).await?;
        self.position = self
            .peeked
            .as_ref()
            .and_then(|delivery| stream_offset(&delivery.properties))
            .unwrap_or(after);
        Ok((records, after))
    }
}

/// The whole seconds since the epoch at `time`, as a stream takes a start time.
fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

async fn append_marker(session: &Session, stream: &str, marker: &str) -> Result<(), String> {
    let mut headers = FieldTable::default();
    headers.insert(
        MARKER.into(),
        AMQPValue::LongString(LongString::from(marker)),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let pending = session
        .publisher
        .send("", stream, &bytes::Bytes::new(), properties)
        .await
        .map_err(|error| error.to_string())?;
    match pending
        .confirmed()
        .await
        .map_err(|error| error.to_string())?
    {
        Confirmed::Delivered => Ok(()),
        Confirmed::Unroutable(_) => Err(format!(
            "the archive stream {stream} does not exist (is the context archived?)"
        )),
        Confirmed::Refused(why) => Err(format!("the archive {stream} refused a marker: {why}")),
    }
}

async fn consumer(
    channel: &Channel,
    stream: &str,
    offset: AMQPValue,
    prefetch: u16,
) -> Result<(lapin::Consumer, String), String> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), offset);
    let tag = format!("replay-{}", uuid::Uuid::new_v4());
    let consumer = channel
        .basic_consume(
            stream.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .map_err(|error| format!("cannot read {stream}: {error}"))?;
    Ok((consumer, tag))
}

async fn next(
    consumer: &mut lapin::Consumer,
    stream: &str,
) -> Result<lapin::message::Delivery, String> {
    match tokio::time::timeout(READ_TIMEOUT, consumer.next()).await {
        Ok(Some(Ok(delivery))) => Ok(delivery),
        Ok(Some(Err(error))) => Err(format!("reading {stream} failed: {error}")),
        Ok(None) => Err(format!("the consumer of {stream} was cancelled")),
        Err(_) => Err(format!(
            "{stream} delivered nothing within {}s",
            READ_TIMEOUT.as_secs()
        )),
    }
}

/// The offset of the first record at or after the whole second `second`.
async fn first_offset_at(channel: &Channel, stream: &str, second: u64) -> Result<u64, String> {
    let (mut consumer, tag) = consumer(channel, stream, AMQPValue::Timestamp(second), 1).await?;
    let delivery = next(&mut consumer, stream).await?;
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    stream_offset(&delivery.properties).ok_or_else(|| format!("{stream} gave no offset"))
}

/// The offset of the marker `marker`, read from the whole second `second` on.
async fn marker_offset(
    channel: &Channel,
    stream: &str,
    second: u64,
    marker: &str,
) -> Result<u64, String> {
    const PREFETCH: u16 = 500;
    let (mut consumer, tag) =
        consumer(channel, stream, AMQPValue::Timestamp(second), PREFETCH).await?;
    let mut credit = Credit::new(PREFETCH);
    let found = loop {
        let delivery = next(&mut consumer, stream).await?;
        credit.took(channel, &delivery, stream).await?;
        let is_ours = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(MARKER).cloned())
            .is_some_and(
                |value| matches!(value, AMQPValue::LongString(text) if text.to_string() == marker),
            );
        if is_ours {
            break stream_offset(&delivery.properties)
                .ok_or_else(|| format!("{stream} gave no offset"));
        }
    };
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    found
}

impl Sink for Publish {
    async fn act(
        &self,
        route: &Arc<Route>,
        outcome: Outcome,
        archived: &Archived,
        contract: &ContractId,
    ) -> Result<Acting, String> {
        let session = session(&self.0)?;
        let taken = archived
            .raw
            .clone()
            .and_then(|raw| raw.downcast::<Taken>().ok())
            .ok_or("a replay on RabbitMQ reads its inputs from the archive stream")?;
        let failed = |error: lapin::Error| error.to_string();
        let (route, contract) = (route.clone(), contract.clone());
        match outcome {
            Outcome::Forward { messages } => {
                let exchange = session.names.inbound(&route.downstream);
                let mut pending = Vec::with_capacity(messages.len());
                for message in &messages {
                    let (body, properties) = wire::output(
                        message,
                        route.wire,
                        taken.properties.headers().as_ref(),
                        None,
                    );
                    pending.push(
                        session
                            .publisher
                            .send_output(
                                &exchange,
                                &message.attributes.event_type,
                                &body,
                                properties,
                            )
                            .await
                            .map_err(failed)?,
                    );
                }
                Ok(Box::pin(async move {
                    let mut unroutable = None;
                    for sent in pending {
                        match sent.confirmed().await.map_err(failed)? {
                            Confirmed::Delivered => {}
                            Confirmed::Unroutable(text) => unroutable = Some(text),
                            Confirmed::Refused(text) => {
                                return Err(format!("the broker refused an output: {text}"));
                            }
                        }
                    }
                    let Some(text) = unroutable else {
                        return Ok(Acted::Forwarded);
                    };
                    let failure = Failure::one(
                        Stage::Publish,
                        Reason::Unroutable,
                        Problem::new(format!(
                            "no queue is bound to exchange {exchange} for the output's type ({text}): the downstream context has not subscribed"
                        )),
                    );
                    let sent =
                        send_dead_letter(&session, &route, &taken, &contract, &failure).await?;
                    confirmed(sent, "a dead letter").await?;
                    Ok(Acted::DeadLettered)
                }))
            }
            Outcome::Drop { .. } => Ok(replay::acted(Acted::Dropped)),
            Outcome::DeadLetter { failure } => {
                let sent = send_dead_letter(&session, &route, &taken, &contract, &failure).await?;
                Ok(Box::pin(async move {
                    confirmed(sent, "a dead letter").await?;
                    Ok(Acted::DeadLettered)
                }))
            }
            Outcome::Retry { attempt, delay, .. } => {
                let properties = wire::retry(&taken, attempt, &route);
                let step = super::topology::delay_step(&route.policy, delay);
                let queue = session.delay_queue(step).await.map_err(failed)?;
                let sent = session
                    .publisher
                    .send("", &queue, &taken.body, properties)
                    .await
                    .map_err(failed)?;
                Ok(Box::pin(async move {
                    confirmed(sent, "a retry").await?;
                    Ok(Acted::Retried)
                }))
            }
        }
    }
}

/// Waits for the broker to store `what`.
async fn confirmed(sent: Pending, what: &str) -> Result<(), String> {
    match sent.confirmed().await.map_err(|error| error.to_string())? {
        Confirmed::Delivered => Ok(()),
        other => Err(format!("the broker did not take {what}: {other:?}")),
    }
}

/// Sends a replayed input's dead letter, as the live route would.
async fn send_dead_letter(
    session: &Session,
    route: &Route,
    taken: &Taken,
    contract: &ContractId,
    failure: &Failure,
) -> Result<Pending, String> {
    let info = DeadLetterInfo {
        route: Some(route),
        failure,
        contract: Some(contract.to_string()),
        attempt: 1,
    };
    let properties = wire::dead_letter(taken, &info);
    session
        .publisher
        .send(
            &session.names.dead_letters(),
            route.name.as_str(),
            &taken.body,
            properties,
        )
        .await
        .map_err(|error| error.to_string())
}
