//! Route queue depth (consumer lag): every [`EVERY`], the messages ready in each route's queue —
//! an ordered route's sequencer and shards together — read with a passive `queue.declare` on a
//! channel of its own, into the gauge `contextgate_route_queue_depth{route}`. It never uses a
//! consumer's channel and never waits on one: a slow or failed answer only delays or skips that
//! route's next value. Unacked deliveries (prefetched, in flight) are not counted here: they are
//! `contextgate_in_flight`.
//!
//! The depth is the queue's, not this instance's: every instance of a fleet reports the same
//! value (take the `max` across instances, not the sum).

use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::sync::watch;

use super::Session;
use crate::telemetry;

/// How often the depths are read.
pub const EVERY: Duration = Duration::from_secs(2);
/// How long one passive declare may take before the poll gives up on it.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Reads every route's queue depth until `stop` turns true. Never fails the session: a channel
/// the broker closed (a queue that is gone) is opened again at the next read.
pub async fn poll(session: Arc<Session>, mut stop: watch::Receiver<bool>) -> lapin::Result<()> {
    let mut channel = None;
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = super::stopped(&mut stop) => return Ok(()),
            _ = every.tick() => {}
        }
        let registry = session.pipeline().registry().clone();
        for route in &registry.routes {
            let name = route.name.as_str();
            let queues = match route.ordering_key {
                None => vec![session.names.route_queue(name)],
                Some(_) => std::iter::once(session.names.sequencer_queue(name))
                    .chain((0..route.shards).map(|shard| session.names.shard_queue(name, shard)))
                    .collect(),
            };
            let mut depth = None;
            for queue in &queues {
                if let Some(ready) = ready(&session, &mut channel, queue).await {
                    depth = Some(depth.unwrap_or(0) + u64::from(ready));
                }
            }
            if let Some(depth) = depth {
                metrics::gauge!(telemetry::QUEUE_DEPTH, "route" => name.to_owned())
                    .set(depth as f64);
            }
        }
    }
}

/// The messages ready in `queue`; `None` when it could not be read (the channel is then
/// dropped, to be opened again).
async fn ready(session: &Session, channel: &mut Option<Channel>, queue: &str) -> Option<u32> {
    if !channel
        .as_ref()
        .is_some_and(|open| open.status().connected())
    {
        *channel = session.admin.create_channel().await.ok();
    }
    let open = channel.as_ref()?;
    let declared = tokio::time::timeout(
        ANSWER_WITHIN,
        open.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    match declared {
        Ok(Ok(queue)) => Some(queue.message_count()),
        _ => {
            *channel = None;
            None
        }
    }
}
