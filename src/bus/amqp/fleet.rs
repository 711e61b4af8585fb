//! A fleet of gateways on one broker and prefix: who this instance is, who else is alive, and
//! which shards of each ordered route it holds.
//!
//! - [`InstanceId`]: `--instance-id` (default the host name), in consumer tags, connection
//!   names, log lines (a span field) and metrics (the global label `instance`).
//! - Membership through RabbitMQ itself: every instance publishes a heartbeat (its id) every
//!   [`HEARTBEAT`] to the fanout exchange `<p>fleet`, and reads everyone's on an exclusive,
//!   auto-delete queue of its own bound there. An instance is live while heard within
//!   [`LIVE_FOR`]; a stopping instance says so (`leaving`) and is dropped at once. Nothing is
//!   stored: a broker restart or a new session starts the view again.
//! - [`assign`]: a deterministic, balanced assignment of a route's shards over the sorted live
//!   set (rendezvous ranking; each instance holds `floor(shards / live)`, and the first
//!   `shards mod live` to fill up one more), so that
//!   every instance that sees the same live set computes the same owners without talking.
//!   Two instances that disagree for a moment may both subscribe to a shard: its queue's
//!   single active consumer keeps one of them processing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ExchangeKind};
use tokio::sync::watch;

use super::Names;

/// How often an instance says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long an instance counts as live after its last heartbeat: three heartbeats.
pub const LIVE_FOR: Duration = Duration::from_secs(3);
/// How long a new member listens before it takes any shard: long enough to hear every live
/// instance once, so that it does not take (and at once give back) every shard on its own.
pub const LISTEN_FIRST: Duration = Duration::from_millis(1_500);

/// One gateway of a fleet: ASCII letters, digits, `.`, `_` and `-`, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "instance id {text:?}: 1 to 64 ASCII letters, digits, '.', '_' or '-'"
            ))
        }
    }

    /// The host name (`/proc/sys/kernel/hostname`, else `HOSTNAME`), with anything an id may
    /// not hold replaced by `-`; `contextgate` when there is none.
    pub fn from_host() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let cleaned: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        Self::parse(&cleaned).unwrap_or_else(|_| Self("contextgate".to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shards of one route with `shards` shards that `me` holds when `live` (sorted, without
/// repeats, `me` among them) are the live instances. Every shard goes to exactly one live
/// instance, and each holds `floor` or `ceil` of `shards / live`.
pub fn assign(route: &str, shards: u16, live: &[InstanceId], me: &InstanceId) -> Vec<u16> {
    if live.is_empty() {
        return Vec::new();
    }
    // Each holds `floor` shards, and `extra` of them one more: the first to reach it keep it.
    let floor = usize::from(shards) / live.len();
    let mut extra = usize::from(shards) % live.len();
    let mut held = vec![0_usize; live.len()];
    let mut mine = Vec::new();
    for shard in 0..shards {
        let mut ranked: Vec<(u64, usize)> = live
            .iter()
            .enumerate()
            .map(|(index, instance)| (score(route, shard, instance), index))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let owner = ranked
            .iter()
            .map(|(_, index)| *index)
            .find(|index| held[*index] < floor || (held[*index] == floor && extra > 0))
            .expect("the instances' room adds up to the shards");
        if held[owner] == floor {
            extra -= 1;
        }
        held[owner] += 1;
        if &live[owner] == me {
            mine.push(shard);
        }
    }
    mine
}

/// A rank that every build and platform computes alike (FNV-1a, then a SplitMix64 finish), so
/// that instances of different versions agree during a rolling upgrade.
fn score(route: &str, shard: u16, instance: &InstanceId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = route
        .bytes()
        .chain([0])
        .chain(instance.as_str().bytes())
        .chain([0])
        .chain(shard.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The header a heartbeat carries when its instance is stopping.
const LEAVING: &str = "contextgate-leaving";

/// Keeps this instance's membership until `stop`: heartbeats out, everyone's heartbeats in,
/// and the sorted live set in `live` (`None` until [`LISTEN_FIRST`] has passed). On stop it
/// says `leaving`, so that the others take its shards over without waiting for [`LIVE_FOR`].
/// An error means a channel failed: the session is broken.
pub async fn run(
    connection: &Connection,
    names: &Names,
    me: InstanceId,
    live: watch::Sender<Option<Vec<InstanceId>>>,
    mut stop: watch::Receiver<bool>,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    let exchange = names.fleet();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    // A heartbeat older than this says nothing any more (a frozen reader thawing).
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongInt(i32::try_from(LIVE_FOR.as_millis()).unwrap_or(i32::MAX)),
    );
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let tag = format!("{me}/fleet");
    let mut heartbeats = channel
        .basic_consume(
            queue.name().clone(),
            tag.as_str().into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let mut heard: BTreeMap<InstanceId, Instant> = BTreeMap::new();
    let mut beat = tokio::time::interval(HEARTBEAT / 4);
    let mut last_beat: Option<Instant> = None;
    loop {
        tokio::select! {
            () = super::stopped(&mut stop) => break,
            next = heartbeats.next() => {
                let Some(delivery) = next else {
                    return Err(lapin::ErrorKind::InvalidChannelState(lapin::ChannelState::Closed, "fleet heartbeats").into());
                };
                let delivery = delivery?;
                let Ok(id) = InstanceId::parse(&String::from_utf8_lossy(&delivery.data)) else {
                    continue;
                };
                let leaving = delivery
                    .properties
                    .headers()
                    .as_ref()
                    .is_some_and(|headers| headers.inner().contains_key(LEAVING));
                if leaving {
                    if id != me {
                        tracing::info!(instance = %id, "A fleet member is leaving.");
                    }
                    heard.remove(&id);
                } else {
                    heard.insert(id, Instant::now());
                }
            }
            _ = beat.tick() => {
                if last_beat.is_none_or(|at| at.elapsed() >= HEARTBEAT) {
                    // While the broker blocks the publishing connection (an alarm) the heartbeat
                    // waits at most a beat: this instance then falls silent, and the others take
                    // its shards over (its single active consumers keep them fenced meanwhile).
                    if let Ok(published) = tokio::time::timeout(HEARTBEAT, publish(&channel, &exchange, &me, false)).await {
                        published?;
                    }
                    last_beat = Some(Instant::now());
                }
            }
        }
        if started.elapsed() >= LISTEN_FIRST {
            let now = Instant::now();
            let mut members: Vec<InstanceId> = heard
                .iter()
                .filter(|(_, at)| now.duration_since(**at) < LIVE_FOR)
                .map(|(id, _)| id.clone())
                .collect();
            if !members.contains(&me) {
                members.push(me.clone());
                members.sort();
            }
            live.send_if_modified(|current| {
                if current.as_ref() == Some(&members) {
                    false
                } else {
                    tracing::info!(live = ?members.iter().map(InstanceId::as_str).collect::<Vec<_>>(), "The fleet changed.");
                    *current = Some(members);
                    true
                }
            });
        }
    }
    let _ = publish(&channel, &exchange, &me, true).await;
    let _ = channel
        .close(200, "contextgate leaves the fleet".into())
        .await;
    Ok(())
}

async fn publish(
    channel: &lapin::Channel,
    exchange: &str,
    me: &InstanceId,
    leaving: bool,
) -> lapin::Result<()> {
    let mut properties = BasicProperties::default()
        .with_expiration(LIVE_FOR.as_millis().to_string().into())
        .with_content_type("text/plain".into());
    if leaving {
        let mut headers = FieldTable::default();
        headers.insert(
            LEAVING.into(),
            AMQPValue::LongString(LongString::from("true")),
        );
        properties = properties.with_headers(headers);
    }
    channel
        .basic_publish(
            exchange.into(),
            "".into(),
            BasicPublishOptions::default(),
            me.as_str().as_bytes(),
            properties,
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<InstanceId> {
        names
            .iter()
            .map(|n| InstanceId::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn every_shard_has_one_owner_and_each_instance_a_fair_share() {
        for n_live in 1..=5 {
            let live = ids(&["a", "b", "c", "d", "e"][..n_live]);
            for shards in [1_u16, 7, 12, 64] {
                let mut owners = vec![0; usize::from(shards)];
                for me in &live {
                    let mine = assign("orders-to-billing", shards, &live, me);
                    let fair = usize::from(shards) / n_live;
                    assert!(
                        (fair..=fair + 1).contains(&mine.len()),
                        "{me} holds {} of {shards} among {n_live}",
                        mine.len()
                    );
                    for shard in mine {
                        owners[usize::from(shard)] += 1;
                    }
                }
                assert!(owners.iter().all(|n| *n == 1), "{owners:?}");
            }
        }
    }

    #[test]
    fn three_instances_hold_four_of_twelve_and_the_survivors_take_the_dead_ones_shards() {
        let three = ids(&["gw-1", "gw-2", "gw-3"]);
        let before: Vec<Vec<u16>> = three.iter().map(|me| assign("r", 12, &three, me)).collect();
        assert!(before.iter().all(|mine| mine.len() == 4), "{before:?}");
        let two = ids(&["gw-1", "gw-3"]);
        let after: Vec<Vec<u16>> = two.iter().map(|me| assign("r", 12, &two, me)).collect();
        assert_eq!(after[0].len() + after[1].len(), 12);
        assert!(after.iter().all(|mine| mine.len() == 6), "{after:?}");
    }

    #[test]
    fn instance_ids_are_short_and_plain() {
        assert!(InstanceId::parse("gw-1.eu_west").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(65), "é"] {
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!InstanceId::from_host().as_str().is_empty());
    }
}
