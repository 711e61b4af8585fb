//! Dead letters on RabbitMQ, kept in a stream per route: `dead-letters.<route>` (and
//! `dead-letters._unrouted` for what failed before any route was picked). A stream is read
//! without being taken, so listing neither reorders, holds nor hides what it reads (reading a
//! quorum queue with `basic.get` and putting the messages back shuffles it, and holds them from
//! every other reader meanwhile).
//!
//! A stream is append-only, so what is settled is written after it: deleting or redriving a
//! dead letter appends a *tombstone* naming its offset (`x-gateway-settles`). A dead letter's
//! id is its offset in the stream: stable, unique, and in order, so it is also the cursor of a
//! paginated listing.
//!
//! Each gateway instance keeps an index of every stream the API reads: the offsets of the live
//! dead letters (kept minus tombstoned) and their sizes, built by a reader that follows the
//! stream from its first offset for as long as the session lasts — so other instances' dead
//! letters and tombstones show up, too. A reader that starts appends a *marker* and serves
//! requests once it has read up to it: by then it has seen everything the stream held when it
//! started. Listings count from the index (true counts, no scan) and read only their page's
//! records from the stream.
//!
//! Deleting appends a tombstone once the dead letter is known to be live; redriving publishes
//! the dead letter's input (with confirms) to the route's queue as a first attempt, then appends
//! its tombstone. One instance runs one write per stream at a time, so it never redrives a dead
//! letter twice; two instances redriving the same stream at once may both send one (at least
//! once, like every delivery of the gateway). A redrive whose copy was confirmed but whose
//! tombstone was not leaves the dead letter live: a later redrive sends it again.
//!
//! Earlier versions kept dead letters in quorum queues `dead.<route>`; at the start of the
//! first session those are unbound and their messages moved into the streams ([`migrate`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::watch;

use super::publisher::{Confirmed, PUBLISH_TOKEN, Publisher};
use super::wire::{DEAD_LETTER_MARKER, SETTLED_HOW, SETTLES, Taken};
use super::{AmqpBus, IngestError, Names, Session};
use crate::bus::dead_letters::{DeadLetterPage, DeadLetterView, MAX_SCAN, Page, Redriven};
use crate::registry::{Registry, RouteName};

/// How long a request waits for a stream's reader to catch up, or for a record to be read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries a stream reader may hold unacknowledged (streams need a prefetch).
const STREAM_PREFETCH: u16 = 500;
/// A page's records are read in runs; past this many records between two of them, the next
/// run starts a consumer at its first offset instead of reading through.
const RUN_GAP: u64 = 64;

impl AmqpBus {
    /// A page of the dead letters of `route` (`None`: those that had no route), oldest first.
    pub async fn dead_letters(
        &self,
        route: Option<&RouteName>,
        page: &Page,
    ) -> Result<DeadLetterPage, IngestError> {
        let session = self.current_session()?;
        let tail = session.dead_letters.tail(&session, route).await?;
        let (chosen, total, more) = tail.page(page);
        let records = tail.read(&session, &chosen).await?;
        let dead_letters: Vec<DeadLetterView> = records
            .iter()
            .map(|(offset, taken)| taken.dead_letter_view(offset.to_string(), route_name(route)))
            .collect();
        // From what was chosen, not what is shown: a page whose records were all settled while
        // it was read is empty, and the listing goes on after it.
        let next = match (more, chosen.last()) {
            (true, Some(last)) => Some(last.to_string()),
            _ => None,
        };
        Ok(DeadLetterPage {
            total,
            next,
            dead_letters,
        })
    }

    /// The dead letter `id` of `route`, while it is kept.
    pub async fn dead_letter(
        &self,
        route: Option<&RouteName>,
        id: &str,
    ) -> Result<Option<DeadLetterView>, IngestError> {
        let session = self.current_session()?;
        let tail = session.dead_letters.tail(&session, route).await?;
        let Some(offset) = tail.live(id) else {
            return Ok(None);
        };
        let mut records = tail.read(&session, &[offset]).await?;
        Ok(records
            .pop()
            .map(|(offset, taken)| taken.dead_letter_view(offset.to_string(), route_name(route))))
    }

    /// Deletes the dead letter `id` of `route`; `false` when there is none.
    pub async fn delete_dead_letter(
        &self,
        route: Option<&RouteName>,
        id: &str,
    ) -> Result<bool, IngestError> {
        let session = self.current_session()?;
        let tail = session.dead_letters.tail(&session, route).await?;
        let _writing = tail.writes.lock().await;
        let Some(offset) = tail.live(id) else {
            return Ok(false);
        };
        tail.settle(&session.publisher, offset, "deleted").await?;
        Ok(true)
    }

    /// Puts the dead letters of `route` (the one with `id`, or the oldest [`MAX_SCAN`] of those
    /// kept now) back on the route's queue. `None` when `id` names none.
    pub async fn redrive(
        &self,
        route: &RouteName,
        id: Option<&str>,
    ) -> Result<Option<Redriven>, IngestError> {
        let session = self.current_session()?;
        let tail = session.dead_letters.tail(&session, Some(route)).await?;
        let _writing = tail.writes.lock().await;
        let chosen: Vec<u64> = match id {
            Some(id) => match tail.live(id) {
                Some(offset) => vec![offset],
                None => return Ok(None),
            },
            // Only what is kept now: one that fails again comes back at a later offset.
            None => tail.offsets(MAX_SCAN),
        };
        // An ordered route's inputs enter through its sequencer.
        let ordered = session
            .pipeline()
            .registry()
            .route(route)
            .is_some_and(|route| route.ordering_key.is_some());
        let target = if ordered {
            session.names.sequencer_queue(route.as_str())
        } else {
            session.names.route_queue(route.as_str())
        };
        let mut redriven = Redriven::default();
        let outcome = async {
            for chunk in chosen.chunks(100) {
                for (offset, taken) in tail.read(&session, chunk).await? {
                    let confirmed = session
                        .publisher
                        .send("", &target, &taken.body, taken.redrive_properties())
                        .await
                        .map_err(broker)?
                        .confirmed_in_time()
                        .await
                        .map_err(broker)?;
                    if let Confirmed::Unroutable(why) | Confirmed::Refused(why) = confirmed {
                        return Err(IngestError::NotConfirmed(format!(
                            "the route's queue {target} did not take the redriven message: {why}"
                        )));
                    }
                    tail.settle(&session.publisher, offset, "redriven").await?;
                    redriven.count("queued");
                }
            }
            Ok::<_, IngestError>(())
        }
        .await;
        redriven.remaining = tail.count();
        tracing::info!(%route, redriven = redriven.redriven, remaining = redriven.remaining, "Dead letters redriven to the route's queue.");
        outcome.map(|()| Some(redriven))
    }
}

fn route_name(route: Option<&RouteName>) -> Option<&str> {
    route.map(RouteName::as_str)
}

/// The dead-letter streams one session has read, each with its index.
#[derive(Debug, Default)]
pub struct DeadLetterStreams {
    tails: Mutex<HashMap<String, Arc<Tail>>>,
    /// Turns true when the session ends: the readers stop.
    ended: watch::Sender<bool>,
}

impl DeadLetterStreams {
    /// Stops every reader (the session ends).
    pub fn end(&self) {
        self.ended.send_replace(true);
    }

    /// The index of `route`'s stream, caught up with what the stream held when its reader
    /// started (started now if it is not running). Requests for other streams never wait for
    /// this one.
    async fn tail(
        &self,
        session: &Session,
        route: Option<&RouteName>,
    ) -> Result<Arc<Tail>, IngestError> {
        let stream = session.names.dead_letter_queue(route_name(route));
        let (tail, started) = {
            let mut tails = self
                .tails
                .lock()
                .expect("no code panics while holding the dead-letter streams");
            match tails.get(&stream) {
                Some(tail) if tail.failed.borrow().is_none() => (tail.clone(), false),
                _ => {
                    let tail = Arc::new(Tail::new(stream.clone()));
                    tails.insert(stream.clone(), tail.clone());
                    (tail, true)
                }
            }
        };
        if started && let Err(error) = self.start(session, &tail).await {
            tail.failed.send_replace(Some(error.to_string()));
            return Err(error);
        }
        let mut caught_up = tail.caught_up.subscribe();
        let mut failed = tail.failed.subscribe();
        tokio::select! {
            waited = tokio::time::timeout(READ_TIMEOUT, caught_up.wait_for(|up| *up)) => {
                if !waited.is_ok_and(|done| done.is_ok()) {
                    return Err(IngestError::NotConfirmed(format!(
                        "the dead-letter stream {stream} was not read within {}",
                        humantime::format_duration(READ_TIMEOUT)
                    )));
                }
            }
            why = failed.wait_for(Option::is_some) => {
                let why = why.ok().and_then(|why| why.clone()).unwrap_or_default();
                return Err(IngestError::NotConfirmed(why));
            }
        }
        Ok(tail)
    }

    /// Starts `tail`'s reader and appends its marker.
    async fn start(&self, session: &Session, tail: &Arc<Tail>) -> Result<(), IngestError> {
        let channel = session.admin.create_channel().await.map_err(broker)?;
        let marker = uuid::Uuid::new_v4().to_string();
        tokio::spawn(follow(
            tail.clone(),
            channel,
            marker.clone(),
            self.ended.subscribe(),
        ));
        let mut headers = FieldTable::default();
        headers.insert(DEAD_LETTER_MARKER.into(), long_string(&marker));
        append(&session.publisher, &tail.stream, headers, "a marker").await
    }
}

/// The index of one dead-letter stream, kept by its reader.
#[derive(Debug)]
struct Tail {
    stream: String,
    /// The live dead letters: offset → approximate size in bytes.
    live: Mutex<BTreeMap<u64, usize>>,
    /// The reader read up to its start marker.
    caught_up: watch::Sender<bool>,
    /// Why the reader stopped, when it failed.
    failed: watch::Sender<Option<String>>,
    /// One delete or redrive at a time on this stream (in this instance).
    writes: tokio::sync::Mutex<()>,
}

impl Tail {
    fn new(stream: String) -> Self {
        Self {
            stream,
            live: Mutex::default(),
            caught_up: watch::Sender::new(false),
            failed: watch::Sender::new(None),
            writes: tokio::sync::Mutex::default(),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        self.live
            .lock()
            .expect("no code panics while holding a dead-letter index")
    }

    fn count(&self) -> usize {
        self.index().len()
    }

    /// The offset `id` names, if it is a live dead letter.
    fn live(&self, id: &str) -> Option<u64> {
        let offset: u64 = id.parse().ok()?;
        self.index().contains_key(&offset).then_some(offset)
    }

    /// The oldest `max` live offsets.
    fn offsets(&self, max: usize) -> Vec<u64> {
        self.index().keys().take(max).copied().collect()
    }

    /// The offsets of one page, the count of all, and whether more follow the page.
    fn page(&self, page: &Page) -> (Vec<u64>, usize, bool) {
        let index = self.index();
        let after = page
            .after
            .as_deref()
            .and_then(|after| after.parse::<u64>().ok());
        let rest = match after {
            Some(after) => index.range(after.saturating_add(1)..),
            None => index.range(..),
        };
        let mut chosen = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (offset, size) in rest {
            if chosen.len() == page.max || (!chosen.is_empty() && bytes + size > page.max_bytes) {
                more = true;
                break;
            }
            chosen.push(*offset);
            bytes += size;
        }
        (chosen, index.len(), more)
    }

    /// Appends the tombstone of `offset` and drops it from the index.
    async fn settle(
        &self,
        publisher: &Publisher,
        offset: u64,
        how: &str,
    ) -> Result<(), IngestError> {
        let mut headers = FieldTable::default();
        headers.insert(
            SETTLES.into(),
            AMQPValue::LongLongInt(i64::try_from(offset).unwrap_or(i64::MAX)),
        );
        headers.insert(SETTLED_HOW.into(), long_string(how));
        append(publisher, &self.stream, headers, "a tombstone").await?;
        self.index().remove(&offset);
        Ok(())
    }

    /// The records at `offsets` (ascending) that are still live, read from the stream. Offsets
    /// close together are read in one run; a run starts anew past a gap of more than
    /// [`RUN_GAP`] records (settled dead letters, tombstones, markers), so a page reads its own
    /// records and few others however much was settled between them.
    async fn read(
        &self,
        session: &Session,
        offsets: &[u64],
    ) -> Result<Vec<(u64, Taken)>, IngestError> {
        if offsets.is_empty() {
            return Ok(Vec::new());
        }
        let channel = session.admin.create_channel().await.map_err(broker)?;
        let read = async {
            let mut records = Vec::with_capacity(offsets.len());
            for run in offsets.chunk_by(|before, after| after - before <= RUN_GAP) {
                let (first, last) = (run[0], run[run.len() - 1]);
                let mut consumer = consume_from(
                    &channel,
                    &self.stream,
                    AMQPValue::LongLongInt(i64::try_from(first).unwrap_or(i64::MAX)),
                )
                .await?;
                while let Some(delivery) = consumer.next().await {
                    let delivery = delivery?;
                    let tag = delivery.delivery_tag;
                    let Some(offset) = stream_offset(&delivery.properties) else {
                        continue;
                    };
                    let done = offset >= last;
                    if run.binary_search(&offset).is_ok() {
                        records.push((offset, Taken::from_lapin(delivery)));
                    }
                    channel.basic_ack(tag, BasicAckOptions::default()).await?;
                    if done {
                        break;
                    }
                }
                channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await?;
            }
            Ok::<_, lapin::Error>(records)
        };
        let records = tokio::time::timeout(READ_TIMEOUT, read).await;
        let _ = channel.close(200, "dead letters read".into()).await;
        let records = records
            .map_err(|_| {
                IngestError::NotConfirmed(format!(
                    "the dead-letter stream {} was not read within {}",
                    self.stream,
                    humantime::format_duration(READ_TIMEOUT)
                ))
            })?
            .map_err(broker)?;
        let index = self.index();
        Ok(records
            .into_iter()
            .filter(|(offset, _)| index.contains_key(offset))
            .collect())
    }
}

/// Appends one of the gateway's own records (an empty body with `headers`: a marker, a
/// tombstone) to `stream`, once the broker confirmed it.
async fn append(
    publisher: &Publisher,
    stream: &str,
    headers: FieldTable,
    what: &str,
) -> Result<(), IngestError> {
    let confirmed = publisher
        .send(
            "",
            stream,
            &Bytes::new(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .map_err(broker)?
        .confirmed_in_time()
        .await
        .map_err(broker)?;
    match confirmed {
        Confirmed::Delivered => Ok(()),
        Confirmed::Unroutable(why) | Confirmed::Refused(why) => Err(IngestError::NotConfirmed(
            format!("the dead-letter stream {stream} did not take {what}: {why}"),
        )),
    }
}

/// Reads a dead-letter stream from its first offset for as long as the session lasts, keeping
/// `tail`'s index: a dead letter is added, a tombstone drops the one it names, the marker says
/// it caught up.
async fn follow(
    tail: Arc<Tail>,
    channel: Channel,
    marker: String,
    mut ended: watch::Receiver<bool>,
) {
    let stream = tail.stream.clone();
    let read = async {
        let mut consumer =
            consume_from(&channel, &stream, AMQPValue::LongString("first".into())).await?;
        loop {
            let delivery = tokio::select! {
                delivery = consumer.next() => delivery,
                () = super::stopped(&mut ended) => return Ok(()),
            };
            let Some(delivery) = delivery else {
                return Err(lapin::ErrorKind::InvalidChannelState(
                    lapin::ChannelState::Closed,
                    "dead-letter stream reader",
                )
                .into());
            };
            let delivery = delivery?;
            let properties = &delivery.properties;
            // Markers and tombstones are the gateway's own: empty, with its publish token, and
            // never dead-lettered by the broker (which keeps a producer's headers as they were,
            // and adds `x-first-death-reason`; a stream drops its `x-death` array).
            let gateways = delivery.data.is_empty()
                && header_of(properties, PUBLISH_TOKEN).is_some()
                && header_of(properties, "x-first-death-reason").is_none();
            let header = |name: &str| gateways.then(|| header_of(properties, name)).flatten();
            match (
                stream_offset(properties),
                header(DEAD_LETTER_MARKER),
                header(SETTLES),
            ) {
                (_, Some(seen), _) => {
                    if text_of(&seen).is_some_and(|seen| seen == marker) {
                        tail.caught_up.send_replace(true);
                    }
                }
                (_, None, Some(settles)) => {
                    if let Some(offset) = integer_of(&settles) {
                        tail.index().remove(&offset);
                    }
                }
                (Some(offset), None, None) => {
                    tail.index().insert(offset, weight(&delivery));
                }
                (None, None, None) => {}
            }
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                .await?;
        }
    };
    let outcome: lapin::Result<()> = read.await;
    if let Err(error) = outcome {
        tracing::warn!(%stream, %error, "A dead-letter stream reader stopped.");
        tail.failed
            .send_replace(Some(format!("reading {stream} failed: {error}")));
    }
    let _ = channel.close(200, "dead-letter reader stops".into()).await;
}

async fn consume_from(
    channel: &Channel,
    stream: &str,
    offset: AMQPValue,
) -> lapin::Result<lapin::Consumer> {
    channel
        .basic_qos(STREAM_PREFETCH, BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), offset);
    channel
        .basic_consume(
            stream.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
}

/// About how many bytes a dead letter weighs in a listing: its body, its headers, and what the
/// API adds around them.
fn weight(delivery: &lapin::message::Delivery) -> usize {
    let headers: usize = delivery
        .properties
        .headers()
        .as_ref()
        .map(|headers| {
            headers
                .inner()
                .iter()
                .map(|(name, value)| name.as_str().len() + value_weight(value))
                .sum()
        })
        .unwrap_or(0);
    delivery.data.len() + headers + 512
}

fn value_weight(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::LongString(text) => text.as_bytes().len(),
        AMQPValue::ShortString(text) => text.as_str().len(),
        AMQPValue::ByteArray(bytes) => bytes.as_slice().len(),
        AMQPValue::FieldArray(values) => values.as_slice().iter().map(value_weight).sum(),
        AMQPValue::FieldTable(table) => table
            .inner()
            .iter()
            .map(|(name, value)| name.as_str().len() + value_weight(value))
            .sum(),
        _ => 8,
    }
}

fn header_of(properties: &BasicProperties, name: &str) -> Option<AMQPValue> {
    properties.headers().as_ref()?.inner().get(name).cloned()
}

/// The offset RabbitMQ gives each delivery from a stream.
pub(super) fn stream_offset(properties: &BasicProperties) -> Option<u64> {
    integer_of(
        properties
            .headers()
            .as_ref()?
            .inner()
            .get("x-stream-offset")?,
    )
}

fn integer_of(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        _ => None,
    }
}

fn text_of(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Moves the dead letters of earlier versions' quorum queues `dead.<route>` (and
/// `dead._unrouted`) into the streams: each queue is unbound first (so nothing new arrives),
/// each message published to the stream with confirms and only then acknowledged, and the
/// drained queue left in place (unbound; an earlier version's reader may still hold some of its
/// messages, which come back to it). It runs on a connection of its own (to `broker`): finding an earlier
/// version's queue closes a channel with an error, which on the session's connections would end
/// the session; the connection is opened again if an error closed it.
pub async fn migrate(
    broker: &super::Broker,
    publisher: &Publisher,
    names: &Names,
    registry: &Registry,
) -> lapin::Result<()> {
    let routes = registry
        .routes
        .iter()
        .map(|route| Some(route.name.as_str()))
        .chain([None]);
    let mut connection: Option<Connection> = None;
    for route in routes {
        let open = match connection.take() {
            Some(open) if open.status().connected() => open,
            _ => super::connect(broker, "contextgate dead-letter migration").await?,
        };
        let probe = open.create_channel().await?;
        let legacy = names.legacy_dead_letter_queue(route);
        // A passive declare of a queue that is not there fails loudly (lapin logs every channel
        // error). A classic queue of that name is declared instead: when there was none, it is
        // new, empty, and deleted at once (cheap: no Raft group); the quorum queue of an earlier
        // version refuses the classic declaration — then its dead letters are moved.
        let mut classic = FieldTable::default();
        classic.insert("x-queue-type".into(), long_string("classic"));
        let declared = probe
            .queue_declare(
                legacy.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                classic,
            )
            .await;
        if declared.is_ok() {
            probe
                .queue_delete(legacy.as_str().into(), QueueDeleteOptions::default())
                .await?;
            let _ = probe.close(200, "no legacy dead letters".into()).await;
        } else {
            let mover = open.create_channel().await?;
            move_legacy(&mover, publisher, names, route, &legacy).await?;
            let _ = mover.close(200, "migrated".into()).await;
        }
        connection = Some(open);
    }
    if let Some(connection) = connection {
        let _ = connection.close(200, "dead letters migrated".into()).await;
    }
    Ok(())
}

async fn move_legacy(
    probe: &Channel,
    publisher: &Publisher,
    names: &Names,
    route: Option<&str>,
    legacy: &str,
) -> lapin::Result<()> {
    let key = route.unwrap_or(super::topology::UNROUTED_KEY);
    probe
        .queue_unbind(
            legacy.into(),
            names.dead_letters().as_str().into(),
            key.into(),
            FieldTable::default(),
        )
        .await?;
    let stream = names.dead_letter_queue(route);
    let mut moved = 0_usize;
    while let Some(message) = probe
        .basic_get(legacy.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        let delivery = message.delivery;
        let tag = delivery.delivery_tag;
        let body = Bytes::from(delivery.data);
        let confirmed = publisher
            .send(
                "",
                &stream,
                &body,
                super::wire::for_stream(delivery.properties),
            )
            .await?
            .confirmed()
            .await?;
        if confirmed != Confirmed::Delivered {
            tracing::error!(queue = %legacy, ?confirmed, "A dead letter could not be moved to its stream; the rest stay in their queue.");
            return Ok(());
        }
        probe.basic_ack(tag, BasicAckOptions::default()).await?;
        moved += 1;
    }
    // The queue is left: what another reader holds unacknowledged (an earlier version's
    // listing) is in no count and would go with it. Emptied and unbound, it costs nothing; a
    // later start moves whatever comes back to it.
    tracing::info!(queue = %legacy, %stream, moved, "Dead letters of an earlier version moved to their stream; delete the emptied queue once no earlier gateway runs.");
    Ok(())
}

fn broker(error: lapin::Error) -> IngestError {
    IngestError::NotConfirmed(error.to_string())
}
