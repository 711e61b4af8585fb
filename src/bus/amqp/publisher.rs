//! Publishing with confirms on the publish connection's channel. Every publish is persistent and
//! `mandatory`; only the broker's ack, with no `basic.return` of that very message, counts as
//! delivered. While the broker blocks the connection (a memory or disk alarm) a confirm is waited
//! for as long as the block lasts: work pauses, nothing is given up.
//!
//! # Which publish a `basic.return` belongs to
//! The broker returns an unroutable message (`basic.return`) before it acks it, but lapin hands
//! each returned message to whichever confirm it resolves next, whatever its delivery tag (and a
//! `multiple` ack resolves its confirms in hash-map order). So the confirm that carries a return
//! says nothing about which publish was returned. The [`Ledger`] attributes returns itself:
//! - every publish gets a sequence number, taken in the same critical section where lapin
//!   registers its delivery tag and queues its frames, so both orders agree;
//! - every confirm is awaited (never dropped), and any return it carries is filed by the key of
//!   the returned message — the `x-gateway-publish` token the gateway puts on what it keeps
//!   (dead letters, retries, redrives), or the message id of an output;
//! - a publish is answered once every publish that existed when its own confirm arrived has had
//!   its confirm, too — or [`GRACE`] after its own confirm, whichever comes first. Returns come in
//!   publish order and each is taken by a confirm resolved no later than the last confirm of the
//!   publishes up to its own. The broker confirms an unroutable message as soon as it returns it,
//!   so in practice the confirm that takes a return is resolved in the same step as the returned
//!   publish's own, or before it; the confirm task files it within scheduling delay. A publish whose
//!   confirm does not come (a queue that lost its quorum) so holds the others back by the grace
//!   at most, not until it comes.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::message::BasicReturnMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use tokio::sync::{mpsc, oneshot};

use super::Status;

/// The header that names one publish of a message the gateway keeps (a dead letter, a retry, a
/// redrive), so that a `basic.return` of it is attributed to exactly that publish.
pub const PUBLISH_TOKEN: &str = "x-gateway-publish";

/// The routing key of a message whose own is longer than AMQP allows: nothing is bound to it,
/// so the broker returns the message.
const TOO_LONG: &str = "contextgate.routing-key-too-long";

/// What the broker said about one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Stored (or, for a quorum queue, accepted by a quorum).
    Delivered,
    /// No queue was bound for it: `basic.return` with this reply text.
    Unroutable(String),
    /// The broker refused it (`basic.nack`) or did not answer within the confirm timeout: it
    /// may still have been stored.
    Refused(String),
}

#[derive(Debug)]
pub struct Publisher {
    channel: Channel,
    confirm_timeout: Duration,
    status: Arc<Status>,
    ledger: Arc<Mutex<Ledger>>,
    /// Unique per publisher: the `x-gateway-publish` tokens.
    tokens: AtomicU64,
    /// Every publish, after its first poll, to the task that waits for its confirm.
    confirming: mpsc::UnboundedSender<(u64, Sending)>,
}

/// A publish whose frames are queued: it resolves once lapin wrote them, to its confirm.
type Sending = Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send>>;

impl Publisher {
    pub async fn open(
        connection: &Connection,
        confirm_timeout: Duration,
        status: Arc<Status>,
    ) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        // Answers publishes whose grace ran out while no other confirm came; ends with the
        // publisher.
        let ticking = Arc::downgrade(&ledger);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(GRACE / 4);
            loop {
                ticks.tick().await;
                let Some(ledger) = ticking.upgrade() else {
                    return;
                };
                ledger
                    .lock()
                    .expect("the ledger never panics")
                    .tick(Instant::now());
            }
        });
        let (confirming, publishes) = mpsc::unbounded_channel();
        tokio::spawn(confirm(ledger.clone(), publishes));
        Ok(Self {
            channel,
            confirm_timeout,
            status,
            ledger,
            tokens: AtomicU64::new(0),
            confirming,
        })
    }

    /// Sends a message the gateway keeps (a dead letter, a retry, a redrive): it carries an
    /// `x-gateway-publish` token of its own. The returned [`Pending`] resolves to the broker's
    /// answer. Messages sent one after another on this publisher reach a queue in that order.
    pub async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &Bytes,
        properties: BasicProperties,
    ) -> lapin::Result<Pending> {
        let token = format!("{}", self.tokens.fetch_add(1, Ordering::Relaxed));
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            PUBLISH_TOKEN.into(),
            AMQPValue::LongString(LongString::from(token.clone())),
        );
        let key = ReturnKey {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            id: Id::Token(token),
        };
        self.publish(key, body, properties.with_headers(headers))
            .await
    }

    /// Sends a message that leaves the gateway (an output, an input posted over HTTP) as it
    /// is: a return of it is attributed by its message id. Two messages in flight with the same
    /// id, exchange and routing key are the same message (a duplicate input's output), so
    /// either may take the other's return.
    pub async fn send_output(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &Bytes,
        properties: BasicProperties,
    ) -> lapin::Result<Pending> {
        let key = ReturnKey {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            id: Id::MessageId(
                properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned()),
            ),
        };
        self.publish(key, body, properties).await
    }

    async fn publish(
        &self,
        mut key: ReturnKey,
        body: &Bytes,
        properties: BasicProperties,
    ) -> lapin::Result<Pending> {
        let routing_key = ShortString::try_new(key.routing_key.as_str()).unwrap_or_else(|_| {
            // Longer than AMQP allows: nothing can be bound to it, so the broker returns it.
            key.routing_key = TOO_LONG.to_owned();
            ShortString::from(TOO_LONG)
        });
        let (channel, exchange, body) = (
            self.channel.clone(),
            ShortString::from(key.exchange.as_str()),
            body.clone(),
        );
        let mut publish: Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send>> =
            Box::pin(async move {
                channel
                    .basic_publish(
                        exchange,
                        routing_key,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        properties,
                    )
                    .await
            });
        let (answer, answered) = oneshot::channel();
        let (seq, first) = {
            let mut ledger = self.ledger.lock().expect("the ledger never panics");
            let seq = ledger.open(key, answer);
            // The first poll registers the delivery tag and queues the frames: inside the
            // lock, so that sequence numbers and delivery tags are in the same order.
            let first = publish
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            if let Poll::Ready(Err(error)) = &first {
                ledger.record(seq, Err(error.clone()), Instant::now());
            }
            (seq, first)
        };
        let sending = match first {
            Poll::Ready(Err(error)) => return Err(error),
            Poll::Ready(Ok(confirm)) => Box::pin(std::future::ready(Ok(confirm))),
            Poll::Pending => publish,
        };
        if let Err(mpsc::error::SendError((seq, _))) = self.confirming.send((seq, sending)) {
            // The confirming task ends only with the runtime.
            let gone = lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                lapin::ChannelState::Closed,
                "publisher confirms",
            ));
            self.ledger.lock().expect("the ledger never panics").record(
                seq,
                Err(gone),
                Instant::now(),
            );
        }
        Ok(Pending {
            answered,
            timeout: self.confirm_timeout,
            status: self.status.clone(),
        })
    }
}

/// Waits for the confirm of every publish handed over on `publishes` and records it in the
/// ledger: one task for all of them (not one per publish), recording every confirm that is in
/// under one lock. Ends once the publisher is gone and every publish it sent has its answer.
async fn confirm(
    ledger: Arc<Mutex<Ledger>>,
    mut publishes: mpsc::UnboundedReceiver<(u64, Sending)>,
) {
    let mut waiting = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(first) = waiting.next(), if !waiting.is_empty() => {
                let now = Instant::now();
                let mut ledger = ledger.lock().expect("the ledger never panics");
                let mut next = Some(first);
                while let Some((seq, answer)) = next {
                    ledger.record(seq, answer, now);
                    next = waiting.next().now_or_never().flatten();
                }
            }
            publish = publishes.recv(), if open => match publish {
                Some((seq, sending)) => waiting.push(async move {
                    let answer = match sending.await {
                        Ok(confirm) => confirm.await,
                        Err(error) => Err(error),
                    };
                    (seq, answer)
                }),
                None => open = false,
            },
            else => return,
        }
    }
}

/// A publish waiting for the broker's confirm.
#[derive(Debug)]
pub struct Pending {
    answered: oneshot::Receiver<lapin::Result<Confirmed>>,
    timeout: Duration,
    status: Arc<Status>,
}

impl Pending {
    /// The broker's answer, waiting as long as the broker blocks us (the data plane: pausing
    /// loses nothing).
    pub async fn confirmed(self) -> lapin::Result<Confirmed> {
        self.wait(true).await
    }

    /// The broker's answer within the confirm timeout, blocked or not (HTTP ingest: the client
    /// gets its 503 and retries).
    pub async fn confirmed_in_time(self) -> lapin::Result<Confirmed> {
        self.wait(false).await
    }

    async fn wait(self, through_blocks: bool) -> lapin::Result<Confirmed> {
        let mut answered = self.answered;
        loop {
            match tokio::time::timeout(self.timeout, &mut answered).await {
                Ok(Ok(answer)) => return answer,
                Ok(Err(_)) => {
                    // The ledger answers every publish; it is gone only with its channel.
                    return Err(lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed,
                        "publisher ledger",
                    )
                    .into());
                }
                Err(_) if through_blocks && self.status.is_blocked() => {
                    tracing::debug!("Still waiting for a confirm: the broker blocks publishing.");
                }
                Err(_) => {
                    return Ok(Confirmed::Refused(format!(
                        "the broker did not confirm the message within {}",
                        humantime::format_duration(self.timeout)
                    )));
                }
            }
        }
    }
}

/// What names a published message in a `basic.return`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReturnKey {
    exchange: String,
    routing_key: String,
    id: Id,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    Token(String),
    MessageId(Option<String>),
}

impl ReturnKey {
    fn of(returned: &BasicReturnMessage) -> Self {
        let delivery = &returned.delivery;
        let token = delivery.properties.headers().as_ref().and_then(|headers| {
            match headers.inner().get(PUBLISH_TOKEN)? {
                AMQPValue::LongString(text) => {
                    Some(String::from_utf8_lossy(text.as_bytes()).into_owned())
                }
                AMQPValue::ShortString(text) => Some(text.to_string()),
                _ => None,
            }
        });
        Self {
            exchange: delivery.exchange.to_string(),
            routing_key: delivery.routing_key.to_string(),
            id: match token {
                Some(token) => Id::Token(token),
                None => Id::MessageId(
                    delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(ToString::to_string),
                ),
            },
        }
    }
}

/// How one publish's confirm came back (any return it carried is filed apart).
#[derive(Debug)]
enum Answer {
    Ack,
    Nack,
    Failed(lapin::Error),
}

/// How long after its own confirm a publish waits at most for the confirms of the publishes
/// that existed then: any of them that could carry its return was resolved by lapin no later
/// than its own, and is filed within scheduling delay.
pub const GRACE: Duration = Duration::from_secs(1);

/// One publish on its way.
#[derive(Debug)]
struct Entry {
    key: ReturnKey,
    answer: Option<Answer>,
    reply: Option<oneshot::Sender<lapin::Result<Confirmed>>>,
}

/// The publishes in flight on one channel, by sequence number (the delivery tags' order), and
/// the returns not yet given to their publish.
#[derive(Debug, Default)]
struct Ledger {
    /// The next sequence number.
    next: u64,
    /// Publishes not answered yet.
    entries: std::collections::BTreeMap<u64, Entry>,
    /// Every publish below this one has its confirm.
    confirmed_below: u64,
    /// Publishes with their confirm, waiting for every publish below the key to have its own.
    waiting: std::collections::BTreeMap<u64, Vec<u64>>,
    /// Publishes with their confirm, in the order their confirms came: each is answered at the
    /// latest [`GRACE`] after.
    expiring: VecDeque<(Instant, u64)>,
    /// Returns filed by key, with how many of each and the broker's reply text.
    returned: Keyed<(usize, String)>,
    /// How many publishes not answered yet have each key (a return whose publish was answered
    /// already has nobody to go to).
    open_keys: Keyed<usize>,
}

/// A map by [`ReturnKey`], hashed by foldhash (seeded per map) rather than SipHash: every
/// publish hashes its key (two names and an id, ~100 bytes) on the way in and out, which cost
/// ~2.7 k instructions per message with SipHash.
type Keyed<V> = HashMap<ReturnKey, V, foldhash::fast::RandomState>;

impl Ledger {
    fn open(&mut self, key: ReturnKey, reply: oneshot::Sender<lapin::Result<Confirmed>>) -> u64 {
        let seq = self.next;
        self.next += 1;
        *self.open_keys.entry(key.clone()).or_default() += 1;
        self.entries.insert(
            seq,
            Entry {
                key,
                answer: None,
                reply: Some(reply),
            },
        );
        seq
    }

    /// Records the confirm of publish `seq`, and answers every publish that may be answered now.
    fn record(&mut self, seq: u64, confirmation: lapin::Result<Confirmation>, now: Instant) {
        let answer = match confirmation {
            Ok(Confirmation::Ack(returned)) => {
                self.file(returned);
                Answer::Ack
            }
            Ok(Confirmation::NotRequested) => Answer::Ack,
            Ok(Confirmation::Nack(returned)) => {
                self.file(returned);
                Answer::Nack
            }
            Err(error) => Answer::Failed(error),
        };
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        entry.answer = Some(answer);
        while self.confirmed_below < self.next
            && self
                .entries
                .get(&self.confirmed_below)
                .is_none_or(|entry| entry.answer.is_some())
        {
            self.confirmed_below += 1;
        }
        let need = self.next;
        if self.confirmed_below >= need {
            self.answer(seq);
        } else {
            self.waiting.entry(need).or_default().push(seq);
            self.expiring.push_back((now, seq));
        }
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.confirmed_below {
                break;
            }
            for seq in entry.remove() {
                self.answer(seq);
            }
        }
        self.tick(now);
    }

    /// Answers the publishes whose confirm came [`GRACE`] or longer ago.
    fn tick(&mut self, now: Instant) {
        while let Some(&(recorded, seq)) = self.expiring.front() {
            if now.duration_since(recorded) < GRACE {
                break;
            }
            self.expiring.pop_front();
            self.answer(seq);
        }
    }

    /// Files a return under its message's key, whichever confirm carried it.
    fn file(&mut self, returned: Option<BasicReturnMessage>) {
        let Some(returned) = returned else { return };
        let key = ReturnKey::of(&returned);
        if self.open_keys.get(&key).copied().unwrap_or(0) == 0 {
            tracing::warn!(exchange = %key.exchange, routing_key = %key.routing_key, "A returned message came after its publish was answered; it is counted as delivered.");
            return;
        }
        let filed = self.returned.entry(key).or_insert((0, String::new()));
        filed.0 += 1;
        filed.1 = returned.reply_text.to_string();
    }

    /// Gives publish `seq` its answer, with its return if one was filed for it (nothing when it
    /// was answered already).
    fn answer(&mut self, seq: u64) {
        let Some(entry) = self.entries.remove(&seq) else {
            return;
        };
        // Keys are nearly always unique: taking the count out hashes the key once.
        if let Some(open) = self.open_keys.remove(&entry.key)
            && open > 1
        {
            self.open_keys.insert(entry.key.clone(), open - 1);
        }
        let mut unroutable = || {
            if self.returned.is_empty() {
                return None;
            }
            let filed = self.returned.get_mut(&entry.key)?;
            filed.0 -= 1;
            let text = filed.1.clone();
            if filed.0 == 0 {
                self.returned.remove(&entry.key);
            }
            Some(text)
        };
        let confirmed = match entry.answer {
            Some(Answer::Ack) => Ok(match unroutable() {
                Some(text) => Confirmed::Unroutable(text),
                None => Confirmed::Delivered,
            }),
            Some(Answer::Nack) => {
                unroutable();
                Ok(Confirmed::Refused(
                    "the broker refused the message (basic.nack)".into(),
                ))
            }
            Some(Answer::Failed(error)) => Err(error),
            None => unreachable!("only publishes with their confirm are answered"),
        };
        if let Some(reply) = entry.reply {
            // The waiter may have given up (a confirm timeout): nobody to tell.
            let _ = reply.send(confirmed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ReturnKey {
        ReturnKey {
            exchange: "down.in".into(),
            routing_key: "t".into(),
            id: Id::MessageId(Some(id.into())),
        }
    }

    fn returned(id: &str) -> BasicReturnMessage {
        let mut delivery =
            lapin::message::Delivery::mock(0, "down.in".into(), "t".into(), false, Vec::new());
        delivery.properties = BasicProperties::default().with_message_id(id.into());
        BasicReturnMessage {
            delivery,
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
        }
    }

    fn open(ledger: &mut Ledger, id: &str) -> oneshot::Receiver<lapin::Result<Confirmed>> {
        let (reply, replied) = oneshot::channel();
        ledger.open(key(id), reply);
        replied
    }

    fn now(replied: &mut oneshot::Receiver<lapin::Result<Confirmed>>) -> Option<Confirmed> {
        replied.try_recv().ok().map(Result::unwrap)
    }

    #[test]
    fn a_confirm_that_never_comes_holds_the_others_back_by_the_grace_at_most() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let mut stuck = open(&mut ledger, "stuck");
        let mut replies: Vec<_> = (0..1_000)
            .map(|i| open(&mut ledger, &i.to_string()))
            .collect();
        for seq in 1..=1_000 {
            ledger.record(seq, Ok(Confirmation::Ack(None)), t0);
        }
        ledger.tick(t0 + GRACE / 2);
        assert!(replies.iter_mut().all(|reply| now(reply).is_none()));
        ledger.tick(t0 + GRACE);
        assert!(
            replies
                .iter_mut()
                .all(|reply| now(reply) == Some(Confirmed::Delivered))
        );
        assert_eq!(now(&mut stuck), None);
        assert_eq!(
            ledger.entries.len(),
            1,
            "only the one without its confirm is held"
        );
    }

    #[test]
    fn a_return_that_comes_after_its_publish_was_answered_goes_to_nobody_else() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let mut a = open(&mut ledger, "a");
        let mut b = open(&mut ledger, "b");
        ledger.record(0, Ok(Confirmation::Ack(None)), t0);
        ledger.tick(t0 + GRACE);
        assert_eq!(now(&mut a), Some(Confirmed::Delivered));
        ledger.record(1, Ok(Confirmation::Ack(Some(returned("a")))), t0 + GRACE);
        assert_eq!(now(&mut b), Some(Confirmed::Delivered));
        assert!(ledger.returned.is_empty() && ledger.open_keys.is_empty());
    }

    #[test]
    fn publishes_sharing_a_key_keep_it_open_until_the_last_is_answered() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let mut first = open(&mut ledger, "same");
        let mut second = open(&mut ledger, "same");
        assert_eq!(ledger.open_keys.get(&key("same")), Some(&2));
        // The first's confirm, and no other: it is answered after the grace.
        ledger.record(0, Ok(Confirmation::Ack(None)), t0);
        ledger.tick(t0 + GRACE);
        assert_eq!(now(&mut first), Some(Confirmed::Delivered));
        assert_eq!(ledger.open_keys.get(&key("same")), Some(&1));
        // The second is still open under the key: its return is filed and given to it.
        ledger.record(1, Ok(Confirmation::Ack(Some(returned("same")))), t0 + GRACE);
        assert_eq!(
            now(&mut second),
            Some(Confirmed::Unroutable("NO_ROUTE".into()))
        );
        assert!(ledger.returned.is_empty() && ledger.open_keys.is_empty());
    }

    #[test]
    fn a_return_carried_by_another_publishes_confirm_goes_to_its_own_publish() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let mut a = open(&mut ledger, "a");
        let mut b = open(&mut ledger, "b");
        // b was returned, but lapin handed the return to a's confirm.
        ledger.record(0, Ok(Confirmation::Ack(Some(returned("b")))), t0);
        assert_eq!(now(&mut a), None, "b may still carry a's return");
        ledger.record(1, Ok(Confirmation::Ack(None)), t0);
        assert_eq!(now(&mut a), Some(Confirmed::Delivered));
        assert_eq!(now(&mut b), Some(Confirmed::Unroutable("NO_ROUTE".into())));
    }

    #[test]
    fn a_publish_waits_for_those_that_existed_when_its_confirm_came() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let mut a = open(&mut ledger, "a");
        let mut b = open(&mut ledger, "b");
        ledger.record(0, Ok(Confirmation::Ack(None)), t0);
        // b's confirm may carry a's return: a waits for it.
        assert_eq!(now(&mut a), None);
        let mut c = open(&mut ledger, "c");
        ledger.record(1, Ok(Confirmation::Ack(Some(returned("a")))), t0);
        assert_eq!(now(&mut a), Some(Confirmed::Unroutable("NO_ROUTE".into())));
        // b's confirm came while c existed: b waits for c.
        assert_eq!(now(&mut b), None);
        ledger.record(2, Ok(Confirmation::Nack(None)), t0);
        assert_eq!(now(&mut b), Some(Confirmed::Delivered));
        assert!(matches!(now(&mut c), Some(Confirmed::Refused(_))));
        assert!(ledger.entries.is_empty() && ledger.returned.is_empty());
    }

    #[test]
    fn confirms_out_of_order_are_answered_in_order_once_all_came() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let mut replies: Vec<_> = (0..4).map(|i| open(&mut ledger, &i.to_string())).collect();
        for seq in [3, 1, 2] {
            ledger.record(seq, Ok(Confirmation::Ack(None)), t0);
        }
        assert!(replies.iter_mut().all(|reply| now(reply).is_none()));
        ledger.record(0, Ok(Confirmation::Ack(Some(returned("2")))), t0);
        let answers: Vec<_> = replies
            .iter_mut()
            .map(|reply| now(reply).unwrap())
            .collect();
        assert_eq!(
            answers,
            [
                Confirmed::Delivered,
                Confirmed::Delivered,
                Confirmed::Unroutable("NO_ROUTE".into()),
                Confirmed::Delivered
            ]
        );
    }
}
