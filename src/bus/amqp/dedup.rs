//! Dedup windows shared by the instances of a fleet. Each idempotent route has a stream
//! `<p>route.<route>.dedup` kept for its window (and a minute more). Every instance:
//!
//! - sends the keys it confirmed there, gathered for [`SHARE_EVERY`] into one message per route
//!   ([`share`], from [`Windows::take_confirmed`]): 16 bytes a key, with the instant they were
//!   confirmed in the header [`CONFIRMED_AT`];
//! - reads the stream of every idempotent route from one window ago on ([`follow`]) into its own
//!   windows ([`Windows::seen`]): so a copy that reaches any instance after the first copy's key
//!   came through is a duplicate, and an instance that restarts has its windows back.
//!
//! The guarantee, as docs/archive-and-replay.md states it: a copy is dropped when the first
//! one was confirmed on any instance more than the sharing delay before (about
//! [`SHARE_EVERY`] plus the broker's round trip); two copies in flight at once on two instances
//! may both go through, unless the route's ordering key sends them to the same shard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use tokio::sync::watch;

use super::Session;
use super::publisher::Confirmed;
use super::worker::{Release, next_delivery};
use crate::dedup::{Key, Windows};
use crate::registry::RouteName;

/// How long confirmed keys gather before they are sent to the fleet.
pub const SHARE_EVERY: Duration = Duration::from_millis(50);

/// The header with the instant (milliseconds since the epoch) a message's keys were confirmed.
pub const CONFIRMED_AT: &str = "x-contextgate-confirmed-at";

/// The most keys in one message (64 KiB).
const KEYS_PER_MESSAGE: usize = 4096;

/// How many messages a follower takes before it acks (a stream consumer's credit).
const FOLLOW_PREFETCH: u16 = 200;

/// Sends the keys this instance confirmed to their routes' streams every [`SHARE_EVERY`], until
/// `stop` (then once more).
pub async fn share(session: Arc<Session>, mut stop: watch::Receiver<bool>) -> lapin::Result<()> {
    let mut every = tokio::time::interval(SHARE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = super::stopped(&mut stop) => true,
            _ = every.tick() => false,
        };
        send(&session, session.windows.take_confirmed()).await?;
        if stopping {
            return Ok(());
        }
    }
}

async fn send(session: &Session, confirmed: Vec<(RouteName, Key)>) -> lapin::Result<()> {
    if confirmed.is_empty() {
        return Ok(());
    }
    let mut by_route: BTreeMap<RouteName, Vec<u8>> = BTreeMap::new();
    for (route, key) in confirmed {
        by_route.entry(route).or_default().extend(key.to_bytes());
    }
    let mut headers = FieldTable::default();
    headers.insert(CONFIRMED_AT.into(), AMQPValue::LongLongInt(now_ms()));
    let properties = BasicProperties::default().with_headers(headers);
    let mut pending = Vec::new();
    for (route, keys) in by_route {
        let stream = session.names.dedup(route.as_str());
        for chunk in keys.chunks(16 * KEYS_PER_MESSAGE) {
            let body = Bytes::copy_from_slice(chunk);
            let sent = session
                .publisher
                .send("", &stream, &body, properties.clone())
                .await?;
            pending.push((route.clone(), sent));
        }
    }
    for (route, sent) in pending {
        match sent.confirmed().await? {
            Confirmed::Delivered => {}
            // The route lost its window meanwhile, or the broker refused: the other instances
            // are not told of these keys (this one still has them).
            other => {
                tracing::warn!(%route, ?other, "Dedup keys could not be shared with the fleet.");
            }
        }
    }
    Ok(())
}

/// Reads `route`'s dedup stream from one window ago on into this instance's windows, until
/// `stop`.
pub async fn follow(
    session: Arc<Session>,
    route: RouteName,
    channel: Channel,
    mut stop: watch::Receiver<bool>,
) -> lapin::Result<()> {
    let stream = session.names.dedup(route.as_str());
    let window = |session: &Session| {
        session
            .pipeline()
            .registry()
            .routes
            .iter()
            .find(|found| found.name == route)
            .and_then(|found| found.dedup)
    };
    let since = window(&session).unwrap_or_default() + Duration::from_secs(1);
    let start = SystemTime::now()
        .checked_sub(since)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    channel
        .basic_qos(FOLLOW_PREFETCH, BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), AMQPValue::Timestamp(start));
    let tag = format!("{}/dedup/{route}", session.settings.instance);
    let mut consumer = channel
        .basic_consume(
            stream.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await?;
    while let Some(taken) = next_delivery(
        &session,
        &channel,
        &mut consumer,
        (&tag, Release::Cancel),
        &stream,
        &mut stop,
    )
    .await?
    {
        channel
            .basic_ack(taken.tag, BasicAckOptions::default())
            .await?;
        let Some(window) = window(&session) else {
            continue;
        };
        let confirmed_at = taken
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(CONFIRMED_AT).cloned());
        let Some(AMQPValue::LongLongInt(confirmed_at)) = confirmed_at else {
            continue;
        };
        let age = Duration::from_millis(u64::try_from(now_ms() - confirmed_at).unwrap_or(0));
        seen(&session.windows, &route, &taken.body, age, window);
    }
    Ok(())
}

/// The keys of one shared message into `windows`.
fn seen(windows: &Windows, route: &RouteName, body: &[u8], age: Duration, window: Duration) {
    let keys = body
        .chunks_exact(16)
        .filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok())
        .map(Key::from_bytes);
    windows.seen_all(route, keys, age, window);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}
