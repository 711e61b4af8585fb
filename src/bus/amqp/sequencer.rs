//! The sequencer of an ordered route: the one place where the ordering key, which lives in the
//! data, becomes a routing key that the broker can hash.
//!
//! Every instance consumes the route's sequencer queue, which has a single active consumer: one
//! sequencer in the fleet takes its inputs, in queue order, on one channel. For each it decodes
//! just enough to read the key (`OrderingKey::of`), and republishes the delivery unchanged —
//! body, properties and headers, plus `x-gateway-via` (the exchange it came through) — to the
//! route's consistent-hash exchange with the key as routing key, on the session's one
//! publishing channel. Publishes on one channel reach a queue in the order they were sent, so
//! each shard receives a key's inputs in the order the sequencer queue held them. An input is
//! acked only after its republish is confirmed; confirms come back in order, so one `multiple`
//! ack covers every input confirmed so far (no task per input: the confirms wait in an ordered
//! queue of futures in this loop).
//!
//! A republish the broker refuses or returns ends the sequencer with an error (the session is
//! rebuilt): its channel closes and every unacked input goes back, ahead of the rest and in
//! order, to whichever sequencer is active next. An input may so be republished twice — a
//! repeat, never an overtake. On stop the sequencer takes nothing more, waits for the confirms
//! of what it sent, acks, and closes its channel without cancelling (see
//! `worker::consume_route` for why).
//!
//! A route that gets an ordering key had its inputs in `<p>route.<route>`: before it starts,
//! a sequencer moves what that queue holds into the shards and deletes it (one instance does;
//! see [`move_earlier_queue`]), so that earlier inputs of a key come out before later ones.
//!
//! Inputs without a key (it is absent, or the input does not decode: its shard will dead-letter
//! it) are hashed by their message id, or their delivery tag when they have none: they need no
//! order, and spread over the shards.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tokio::sync::watch;

use super::Session;
use super::publisher::Confirmed;
use super::wire::Taken;
use super::worker::{Release, next_delivery};
use crate::pipeline::Pipeline;
use crate::registry::{OrderingKey, Route, RouteName};
use crate::stages::receive;
use crate::telemetry;

/// The longest routing key AMQP carries; a longer key is hashed to 16 hex digits first.
const MAX_ROUTING_KEY: usize = 255;

type Confirming = Pin<Box<dyn Future<Output = (u64, lapin::Result<Confirmed>)> + Send>>;

/// Sequences route `name` until `stop` turns true or a channel fails.
pub async fn run(
    session: Arc<Session>,
    name: RouteName,
    channel: Channel,
    mut stop: watch::Receiver<bool>,
) -> lapin::Result<()> {
    channel
        .basic_qos(session.settings.prefetch, BasicQosOptions::default())
        .await?;
    let queue = session.names.sequencer_queue(name.as_str());
    let exchange = session.names.shard_exchange(name.as_str());
    let tag = format!("{}/{name}/sequencer", session.settings.instance);
    if !move_earlier_queue(&session, &name, &exchange, &mut stop).await? {
        return Ok(());
    }
    let mut consumer = super::consume(&channel, queue.as_str(), &tag).await?;
    let sequenced = metrics::counter!(telemetry::MESSAGES_SEQUENCED, "route" => name.to_string());
    let mut pipelines = session.pipelines.subscribe();
    let mut current = on(&name, &pipelines.borrow_and_update());
    let mut confirming: FuturesOrdered<Confirming> = FuturesOrdered::new();
    let mut acked = 0;
    // The highest tag whose republish (and every one before it) is confirmed.
    let mut confirmed = 0;
    let mut taking = true;
    let ended: lapin::Result<()> = loop {
        tokio::select! {
            taken = next_delivery(&session, &channel, &mut consumer, (&tag, Release::Close), &queue, &mut stop), if taking => {
                let taken = match taken {
                    Ok(Some(taken)) => taken,
                    Ok(None) => {
                        taking = false;
                        if confirming.is_empty() {
                            break Ok(());
                        }
                        continue;
                    }
                    Err(error) => break Err(error),
                };
                if pipelines.has_changed().unwrap_or(false) {
                    current = on(&name, &pipelines.borrow_and_update());
                }
                let routing_key = routing_key(current.as_ref(), &taken);
                let delivery_tag = taken.tag;
                let pending = match session
                    .publisher
                    .send_output(&exchange, &routing_key, &taken.body, taken.sequenced_properties())
                    .await
                {
                    Ok(pending) => pending,
                    Err(error) => break Err(error),
                };
                confirming.push_back(Box::pin(async move { (delivery_tag, pending.confirmed().await) }));
            }
            Some(first) = confirming.next(), if !confirming.is_empty() => {
                let mut through = None;
                let mut next = Some(first);
                let mut failed = None;
                while let Some((delivery_tag, confirmed)) = next {
                    match confirmed {
                        Ok(Confirmed::Delivered) => through = Some(delivery_tag),
                        Ok(other) => {
                            failed = Some(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                                lapin::ChannelState::Error,
                                "a sequenced input was not stored by its shard",
                            )));
                            tracing::error!(route = %name, ?other, "The broker did not take a sequenced input: the sequencer starts again.");
                            break;
                        }
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                    next = confirming.next().now_or_never().flatten();
                }
                if let Some(through) = through {
                    confirmed = through;
                }
                // One ack per `ACK_EVERY` confirmed inputs while more are in flight; at once
                // when none is, or before giving up.
                let due = confirmed - acked >= super::settle::ACK_EVERY
                    || confirming.is_empty()
                    || failed.is_some();
                if confirmed > acked && due {
                    let through = confirmed;
                    sequenced.increment(through - acked);
                    if let Err(error) = channel.basic_ack(through, BasicAckOptions { multiple: true }).await {
                        break Err(error);
                    }
                    acked = through;
                }
                if let Some(error) = failed {
                    break Err(error);
                }
                if !taking && confirming.is_empty() {
                    break Ok(());
                }
            }
        }
    };
    if ended.is_ok() {
        tokio::time::sleep(super::worker::SETTLE_GRACE).await;
        let _ = channel
            .close(200, "contextgate sequencer stops".into())
            .await;
    }
    ended
}

/// Moves what `<p>route.<route>` holds — the queue of this route before it had an ordering
/// key — into the shards, ahead of the sequencer queue, and deletes it. One instance does it:
/// the one holding the lock (the exclusive queue `<p>route.<route>.moving` on its own
/// connection), once no consumer reads the queue any more (the instances still on a registry
/// without the key let go of it when they take the new one); the others wait for the queue to
/// be gone. (Exclusive consumers are no fence here: quorum queues in 3.10 accepted one while
/// another consumer was still attached.) Every instance unbinds the queue as soon as it runs
/// the new registry, so nothing new arrives in it; what arrived in both queues meanwhile comes
/// out twice, the earlier copy first (a repeat, not an overtake). `false` when told to stop
/// meanwhile.
async fn move_earlier_queue(
    session: &Session,
    name: &RouteName,
    exchange: &str,
    stop: &mut watch::Receiver<bool>,
) -> lapin::Result<bool> {
    let earlier = session.names.route_queue(name.as_str());
    let tag = format!("{}/{name}/move", session.settings.instance);
    // Probes fail with channel errors, which would break the session's connections (lapin
    // reports them as connection errors): a connection of its own, closed after.
    let broker = super::Broker::new(&session.settings).map_err(|_| {
        lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
            lapin::ConnectionState::Error,
        ))
    })?;
    let connection = super::connect(
        &broker,
        &format!("contextgate {} move", session.settings.instance),
    )
    .await?;
    let (mut waiting, mut unbound) = (false, false);
    let moved = loop {
        if *stop.borrow() {
            break false;
        }
        // A classic queue of that name is declared: when there was none, it is new, empty and
        // deleted at once; the quorum queue of the route's earlier life refuses the classic
        // declaration (a channel error: one channel per try).
        let probe = connection.create_channel().await?;
        let mut classic = FieldTable::default();
        classic.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("classic".into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        if probe
            .queue_declare(earlier.as_str().into(), durable, classic)
            .await
            .is_ok()
        {
            // Another instance probing at the same moment may have deleted it already.
            let _ = probe
                .queue_delete(earlier.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = probe.close(200, "no earlier queue".into()).await;
            break true;
        }
        // Nothing new goes to it from now on (idempotent; every instance on the new registry
        // does it at once, so that what arrives meanwhile goes to the sequencer queue only).
        if !unbound {
            let unbinding = connection.create_channel().await?;
            if unbind_earlier(session, &unbinding, name, &earlier)
                .await
                .is_ok()
            {
                unbound = true;
                let _ = unbinding.close(200, "unbound".into()).await;
            }
        }
        // The lock: an exclusive queue belongs to one connection, and is gone with it (also when
        // its process dies). Another instance's declaration of it fails while this one holds it.
        let lock = connection.create_channel().await?;
        let locked = lock
            .queue_declare(
                format!("{earlier}.moving").as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok();
        if locked {
            // The queue stays with the connection.
            let _ = lock.close(200, "locked".into()).await;
        }
        let probe = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        // Every consumer of the queue (this version's and earlier ones', on any instance) must
        // be gone: until its channel closes, what it was delivered is not back in the queue.
        // (This version's consumers are never cancelled, so they count until then.)
        let consumers = if locked {
            probe
                .queue_declare(earlier.as_str().into(), passive, FieldTable::default())
                .await?
                .consumer_count()
        } else {
            0
        };
        if !locked || consumers > 0 {
            if !waiting {
                tracing::info!(route = %name, queue = %earlier, consumers, "Waiting to move the route's earlier queue (another instance moves it, or consumers still read it).");
                waiting = true;
            }
            let _ = probe.close(200, "waiting".into()).await;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = super::stopped(stop) => break false,
            }
            continue;
        }
        probe
            .basic_qos(session.settings.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = super::consume(&probe, earlier.as_str(), &tag).await?;
        tracing::info!(route = %name, queue = %earlier, "Moving the route's earlier queue into its shards.");
        let mut n_moved = 0_u64;
        // Publishes in flight, in delivery order; acked together once confirmed.
        let mut in_flight: std::collections::VecDeque<(u64, super::publisher::Pending)> =
            std::collections::VecDeque::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await;
            let delivery = match next {
                Ok(Some(delivery)) => delivery?,
                Ok(None) => break,
                Err(_) => {
                    n_moved += settle_moved(&probe, &mut in_flight).await?;
                    let left = probe
                        .queue_declare(earlier.as_str().into(), passive, FieldTable::default())
                        .await?
                        .message_count();
                    if left == 0 {
                        break;
                    }
                    continue;
                }
            };
            let taken = Taken::from_lapin(delivery);
            let current = on(name, &session.pipeline());
            let routing_key = routing_key(current.as_ref(), &taken);
            let pending = session
                .publisher
                .send_output(
                    exchange,
                    &routing_key,
                    &taken.body,
                    taken.sequenced_properties(),
                )
                .await?;
            in_flight.push_back((taken.tag, pending));
            if in_flight.len() >= 256 {
                n_moved += settle_moved(&probe, &mut in_flight).await?;
            }
        }
        n_moved += settle_moved(&probe, &mut in_flight).await?;
        // Empty, unbound, and read by nobody else: nothing can arrive in it any more (quorum
        // queues refuse `if-empty`).
        probe
            .queue_delete(earlier.as_str().into(), QueueDeleteOptions::default())
            .await?;
        let _ = probe.close(200, "earlier queue moved".into()).await;
        tracing::info!(route = %name, moved = n_moved, "The route's earlier queue was moved into its shards and deleted.");
        break true;
    };
    let _ = connection
        .close(200, "earlier queue looked for".into())
        .await;
    Ok(moved)
}

/// Waits for the confirms of what was moved, in order, and acks it all with one `multiple` ack:
/// how many. An input its shard did not take ends the move with an error (the session is
/// rebuilt; what was not acked goes back to the earlier queue, in order).
async fn settle_moved(
    channel: &Channel,
    in_flight: &mut std::collections::VecDeque<(u64, super::publisher::Pending)>,
) -> lapin::Result<u64> {
    let mut through = None;
    let mut n_settled = 0;
    while let Some((tag, pending)) = in_flight.pop_front() {
        if pending.confirmed().await? != Confirmed::Delivered {
            return Err(lapin::ErrorKind::InvalidChannelState(
                lapin::ChannelState::Error,
                "an input of the earlier queue was not stored by its shard",
            )
            .into());
        }
        through = Some(tag);
        n_settled += 1;
    }
    if let Some(through) = through {
        channel
            .basic_ack(through, BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(n_settled)
}

/// Unbinds the earlier queue of route `name` from everything the gateway bound it to.
async fn unbind_earlier(
    session: &Session,
    channel: &Channel,
    name: &RouteName,
    earlier: &str,
) -> lapin::Result<()> {
    let pipeline = session.pipeline();
    let Some(route) = pipeline.registry().route(name) else {
        return Ok(());
    };
    let outbound = session.names.outbound(&route.upstream);
    let types: std::collections::BTreeSet<String> = route
        .accepts
        .iter()
        .map(|version| version.id.name().event_type())
        .collect();
    for message_type in &types {
        channel
            .queue_unbind(
                earlier.into(),
                outbound.as_str().into(),
                message_type.as_str().into(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .queue_unbind(
            earlier.into(),
            session.names.retries().as_str().into(),
            name.as_str().into(),
            FieldTable::default(),
        )
        .await?;
    let mut retry_route = FieldTable::default();
    retry_route.insert(
        "x-match".into(),
        lapin::types::AMQPValue::LongString("all".into()),
    );
    retry_route.insert(
        super::topology::RETRY_ROUTE.into(),
        lapin::types::AMQPValue::LongString(name.as_str().into()),
    );
    channel
        .queue_unbind(
            earlier.into(),
            session.names.retry().as_str().into(),
            "".into(),
            retry_route,
        )
        .await
}

/// The route under `name` in `pipeline` (`None` once the route is gone).
fn on(name: &RouteName, pipeline: &Pipeline) -> Option<Arc<Route>> {
    pipeline.registry().route(name).cloned()
}

/// The routing key an input is hashed by: its ordering key, else its CloudEvents id (or AMQP
/// message id), else its delivery tag. Only what the key needs is decoded: the envelope, and
/// the data (parsed, not checked) only for a JSON-pointer key. The shard's consumer checks the
/// input fully; one that fails there is dead-lettered from its shard.
fn routing_key(current: Option<&Arc<Route>>, taken: &Taken) -> String {
    let delivery = taken.delivery();
    let message = receive::decode(
        delivery.content_type.as_deref(),
        delivery
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        delivery.body,
    )
    .ok();
    let key = current
        .and_then(|route| route.ordering_key.as_ref())
        .zip(message.as_ref())
        .and_then(|(ordering_key, message)| match ordering_key {
            OrderingKey::Subject => message.attributes.subject.clone(),
            OrderingKey::Pointer(_) => {
                let data: serde_json::Value = serde_json::from_slice(&message.data).ok()?;
                ordering_key.of(None, &data)
            }
        });
    let key = key
        .or_else(|| message.map(|message| message.attributes.id))
        .or_else(|| {
            taken
                .properties
                .message_id()
                .as_ref()
                .map(ToString::to_string)
        })
        .unwrap_or_else(|| taken.tag.to_string());
    if key.len() <= MAX_ROUTING_KEY {
        key
    } else {
        format!("{:016x}", stable_hash(key.as_bytes()))
    }
}

/// FNV-1a: the same on every instance and version.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
