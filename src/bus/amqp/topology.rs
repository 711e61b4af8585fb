//! The AMQP topology the gateway declares at start (and again after every reconnect): its names,
//! all built from one prefix, and the declarations. docs/operations.md shows the same picture.
//!
//! - `<p><context>.out`: topic exchange a context publishes to, routing key = message type;
//!   what no route queue takes goes to its alternate exchange `<p>unrouted`.
//! - `<p><context>.in`: topic exchange a context receives on (its team binds its own queues).
//! - `<p>route.<route>`: the route's durable quorum queue, bound to the upstream's `.out` for
//!   every message type it accepts, and to `<p>retry` for retries of this route. Routes with an
//!   ordering key have instead:
//!   - `<p>route.<route>.sequencer`: bound the same way, with `x-single-active-consumer`: the
//!     sequencer input (a new name, because RabbitMQ cannot add that argument to an existing
//!     queue; what an earlier `<p>route.<route>` still holds is moved in, see `sequencer`);
//!   - `<p>route.<route>.shards`: an `x-consistent-hash` exchange the sequencer republishes to
//!     with the ordering key as routing key;
//!   - `<p>route.<route>.shard.<i>` for `i` in `0..shards`: quorum queues with
//!     `x-single-active-consumer`, each bound to the hash exchange with weight 1.
//! - `<p>route.<route>.dedup` (a route with `dedup`): a stream of the keys the route forwarded,
//!   kept for its window and a minute more, which every instance writes and reads (see
//!   `dedup`).
//! - `<p>fleet`: the fanout exchange of the instances' heartbeats (see `fleet`).
//! - `<p>delay.<ms>ms`: one delay queue per delay step, declared when a retry first needs it,
//!   shared by every route: its fixed `x-message-ttl` makes every message in it wait exactly that
//!   long (RabbitMQ expires messages only at a queue's head, so per-message TTLs in one queue
//!   would hold a short retry behind a long one). It dead-letters into `<p>retry`, a headers
//!   exchange that routes each retry to its route's queue by its `contextgate-retry-route` header.
//! - `<p>retries`: the direct exchange the per-route `delay.<route>` queues of earlier versions
//!   dead-letter into; still declared and bound so that what they hold comes back.
//! - `<p>dead-letters`: direct exchange; the stream `<p>dead-letters.<route>` per route,
//!   `<p>dead-letters._unrouted` for what failed before any route was picked (streams are read
//!   without being taken; see `dead_letters`).
//! - `<p>unrouted`: fanout exchange and quorum queue the gateway consumes to dead-letter (or,
//!   for an event no route takes, count) what no route queue took.
//! - `<p><context>.archive` (a context with `archive`): a stream with the context's retention,
//!   which only the gateway writes to. `<p><context>.archiving`, a quorum queue with
//!   `x-single-active-consumer` bound to `<p><context>.out` for every message type a route takes
//!   from it, feeds it (see `archiver`); the unrouted consumer appends the rest (see
//!   `declare_archives`).

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::registry::{ContextName, Policy, Registry, Route};

/// The dead-letter routing key (and queue suffix) of inputs that failed before routing.
pub const UNROUTED_KEY: &str = "_unrouted";
/// The exchange type of the shards (plugin `rabbitmq_consistent_hash_exchange`).
pub const CONSISTENT_HASH: &str = "x-consistent-hash";
/// The header that takes a retry from its delay queue back to its route's queue. Not an `x-`
/// header: RabbitMQ's headers exchange ignores those when matching.
pub const RETRY_ROUTE: &str = "contextgate-retry-route";

/// Every name of the topology, from one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix`, joined with a `.` unless it already ends with a separator (`.`,
    /// `-`, `_`, `:` or `/`): `orders` gives `orders.orders.out`, `staging-` gives
    /// `staging-orders.out`, and no prefix gives `orders.out`.
    pub fn new(prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        if !prefix.is_empty() && !prefix.ends_with(['.', '-', '_', ':', '/']) {
            prefix.push('.');
        }
        Self { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn outbound(&self, context: &ContextName) -> String {
        format!("{}{context}.out", self.prefix)
    }

    pub fn inbound(&self, context: &ContextName) -> String {
        format!("{}{context}.in", self.prefix)
    }

    /// The context whose outbound exchange this is.
    pub fn context_of_outbound<'a>(&self, exchange: &'a str) -> Option<&'a str> {
        exchange.strip_prefix(&self.prefix)?.strip_suffix(".out")
    }

    pub fn route_queue(&self, route: &str) -> String {
        format!("{}route.{route}", self.prefix)
    }

    /// The input queue of an ordered route, read by one sequencer at a time.
    pub fn sequencer_queue(&self, route: &str) -> String {
        format!("{}route.{route}.sequencer", self.prefix)
    }

    /// The consistent-hash exchange an ordered route's sequencer publishes to.
    pub fn shard_exchange(&self, route: &str) -> String {
        format!("{}route.{route}.shards", self.prefix)
    }

    /// One shard of an ordered route.
    pub fn shard_queue(&self, route: &str, shard: u16) -> String {
        format!("{}route.{route}.shard.{shard}", self.prefix)
    }

    /// The archive of a context's inputs: a stream the gateway appends to.
    pub fn archive(&self, context: &ContextName) -> String {
        format!("{}{context}.archive", self.prefix)
    }

    /// The stream of the keys an idempotent route forwarded, shared by the fleet.
    pub fn dedup(&self, route: &str) -> String {
        format!("{}route.{route}.dedup", self.prefix)
    }

    /// The quorum queue, bound to a context's outbound exchange, whose inputs the gateway
    /// appends to the context's archive.
    pub fn archiving(&self, context: &ContextName) -> String {
        format!("{}{context}.archiving", self.prefix)
    }

    /// The fanout exchange of the fleet's heartbeats.
    pub fn fleet(&self) -> String {
        format!("{}fleet", self.prefix)
    }

    /// The delay queue of one delay step.
    pub fn delay_queue(&self, step: Duration) -> String {
        format!("{}delay.{}ms", self.prefix, step.as_millis())
    }

    /// The headers exchange delay queues dead-letter into: it routes a retry to its route.
    pub fn retry(&self) -> String {
        format!("{}retry", self.prefix)
    }

    pub fn dead_letters(&self) -> String {
        format!("{}dead-letters", self.prefix)
    }

    /// The dead-letter stream of a route, or of what failed before routing (`None`).
    pub fn dead_letter_queue(&self, route: Option<&str>) -> String {
        format!(
            "{}dead-letters.{}",
            self.prefix,
            route.unwrap_or(UNROUTED_KEY)
        )
    }

    /// The quorum queue earlier versions kept a route's dead letters in.
    pub fn legacy_dead_letter_queue(&self, route: Option<&str>) -> String {
        format!("{}dead.{}", self.prefix, route.unwrap_or(UNROUTED_KEY))
    }

    /// The direct exchange of earlier versions' per-route delay queues (`delay.<route>`).
    pub fn retries(&self) -> String {
        format!("{}retries", self.prefix)
    }

    pub fn unrouted(&self) -> String {
        format!("{}unrouted", self.prefix)
    }
}

/// Settings of the declared queues.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// `x-delivery-limit` of route queues: the broker's backstop for a message that keeps
    /// failing without the gateway settling it (a crash, a lost connection).
    pub delivery_limit: u32,
}

/// Declares everything, idempotently. A queue that exists with other arguments makes the broker
/// refuse (`PRECONDITION_FAILED`): delete it, or use another prefix.
pub async fn declare(
    channel: &Channel,
    names: &Names,
    registry: &Registry,
    settings: QueueSettings,
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let dead_letters = names.dead_letters();
    let retries = names.retries();
    let retry = names.retry();
    let unrouted = names.unrouted();
    for (exchange, kind) in [
        (&dead_letters, ExchangeKind::Direct),
        (&retries, ExchangeKind::Direct),
        (&retry, ExchangeKind::Headers),
        (&unrouted, ExchangeKind::Fanout),
    ] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    declare_queue(channel, &unrouted, quorum(None)).await?;
    bind(channel, &unrouted, &unrouted, "").await?;
    let unrouted_dead = names.dead_letter_queue(None);
    declare_queue(channel, &unrouted_dead, stream()).await?;
    bind(channel, &unrouted_dead, &dead_letters, UNROUTED_KEY).await?;

    for context in registry.contexts.keys() {
        let mut arguments = FieldTable::default();
        arguments.insert("alternate-exchange".into(), string(&unrouted));
        channel
            .exchange_declare(
                names.outbound(context).into(),
                ExchangeKind::Topic,
                durable,
                arguments,
            )
            .await?;
        channel
            .exchange_declare(
                names.inbound(context).into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    for route in &registry.routes {
        declare_route(channel, names, route, settings).await?;
    }
    Ok(())
}

async fn declare_route(
    channel: &Channel,
    names: &Names,
    route: &Route,
    settings: QueueSettings,
) -> lapin::Result<()> {
    let name = route.name.as_str();
    let ordered = route.ordering_key.is_some();
    let queue = if ordered {
        names.sequencer_queue(name)
    } else {
        names.route_queue(name)
    };
    let route_arguments = |single_active: bool| {
        let mut arguments = quorum(Some((&names.dead_letters(), name)));
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(settings.delivery_limit).unwrap_or(i32::MAX)),
        );
        if single_active {
            arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        arguments
    };
    declare_queue(channel, &queue, route_arguments(ordered)).await?;
    if ordered {
        let exchange = names.shard_exchange(name);
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Custom(CONSISTENT_HASH.into()),
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        for shard in 0..route.shards {
            let shard_queue = names.shard_queue(name, shard);
            declare_queue(channel, &shard_queue, route_arguments(true)).await?;
            // The binding key of a consistent-hash exchange is the queue's weight.
            bind(channel, &shard_queue, &exchange, "1").await?;
        }
    }
    let types: BTreeSet<String> = route
        .accepts
        .iter()
        .map(|version| version.id.name().event_type())
        .collect();
    let outbound = names.outbound(&route.upstream);
    for message_type in &types {
        bind(channel, &queue, &outbound, message_type).await?;
    }
    bind(channel, &queue, &names.retries(), name).await?;
    let mut retry_route = FieldTable::default();
    retry_route.insert("x-match".into(), string("all"));
    retry_route.insert(RETRY_ROUTE.into(), string(name));
    channel
        .queue_bind(
            queue.as_str().into(),
            names.retry().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            retry_route,
        )
        .await?;

    let dead = names.dead_letter_queue(Some(name));
    declare_queue(channel, &dead, stream()).await?;
    bind(channel, &dead, &names.dead_letters(), name).await
}

/// Declares each context's archive: the stream, with the context's retention, and the queue
/// `archiving` that feeds it, bound to the context's outbound exchange for every message type a
/// route takes from it (the rest reaches the unrouted consumer, which appends it: a binding for
/// every type would leave the outbound exchange's alternate exchange nothing). Types of the
/// context's contracts that no route takes are unbound, so a route removed stops archiving its
/// types twice. A context with `archive = false` has every such binding removed; its stream
/// and queue, if any, are left as they are.
///
/// The stream itself is bound to nothing: RabbitMQ 3.10 closes the connection of a producer
/// whose message, routed to a stream, carries a decimal header. Earlier versions bound it to
/// the outbound exchange; those bindings are removed here.
///
/// Each context on a channel of its own: a stream declared before with other retention makes
/// the broker refuse (`PRECONDITION_FAILED`, which closes the channel) — then the stream is
/// kept as it is, with a warning (change it with a policy, or delete it).
pub async fn declare_archives(
    connection: &lapin::Connection,
    names: &Names,
    registry: &Registry,
) -> lapin::Result<()> {
    for (context, found) in &registry.contexts {
        let archive_stream = names.archive(context);
        let archiving = names.archiving(context);
        let outbound = names.outbound(context);
        let taken: BTreeSet<String> = registry
            .routes
            .iter()
            .filter(|route| &route.upstream == context)
            .flat_map(|route| route.accepts.iter())
            .map(|version| version.id.name().event_type())
            .collect();
        let all: BTreeSet<String> = registry
            .contracts
            .keys()
            .filter(|name| name.context() == context)
            .map(|name| name.event_type())
            .collect();
        let mut channel = connection.create_channel().await?;
        if let Some(archive) = found.archive {
            let mut arguments = stream();
            let age = archive.max_age.as_secs().max(1);
            arguments.insert("x-max-age".into(), string(&format!("{age}s")));
            arguments.insert(
                "x-max-length-bytes".into(),
                AMQPValue::LongLongInt(i64::try_from(archive.max_bytes).unwrap_or(i64::MAX)),
            );
            arguments.insert(
                "x-stream-max-segment-size-bytes".into(),
                AMQPValue::LongLongInt(archive_segment(archive.max_bytes)),
            );
            if let Err(error) = declare_queue(&channel, &archive_stream, arguments).await {
                tracing::warn!(%context, %archive_stream, %error, "The archive stream exists with other settings: it is kept as it is (change its retention with a policy, or delete it).");
                channel = connection.create_channel().await?;
            }
            let mut arguments = quorum(None);
            arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            declare_queue(&channel, &archiving, arguments).await?;
            for message_type in &taken {
                bind(&channel, &archiving, &outbound, message_type).await?;
            }
        }
        let unwanted = all
            .iter()
            .filter(|message_type| found.archive.is_none() || !taken.contains(*message_type))
            .map(|message_type| (&archiving, message_type));
        // Earlier versions bound the stream itself.
        let stream_bound = all
            .iter()
            .map(|message_type| (&archive_stream, message_type));
        for (queue, message_type) in unwanted.chain(stream_bound) {
            if let Err(error) = channel
                .queue_unbind(
                    queue.as_str().into(),
                    outbound.as_str().into(),
                    message_type.as_str().into(),
                    FieldTable::default(),
                )
                .await
            {
                // No such queue (never archived): nothing to unbind.
                tracing::debug!(%queue, %error, "Unbinding from an archive failed.");
                channel = connection.create_channel().await?;
            }
        }
        let _ = channel.close(200, "archive declared".into()).await;
    }
    Ok(())
}

/// Declares the stream of every idempotent route's forwarded keys (see `dedup`), kept for the
/// route's window and a minute more; one declared before with another window is kept as it is,
/// with a warning (followers read only what is within the window).
pub async fn declare_dedup(
    connection: &lapin::Connection,
    names: &Names,
    registry: &Registry,
) -> lapin::Result<()> {
    let mut channel = connection.create_channel().await?;
    for route in &registry.routes {
        let Some(window) = route.dedup else {
            continue;
        };
        let stream_name = names.dedup(route.name.as_str());
        let mut arguments = stream();
        let age = window.as_secs() + 60;
        arguments.insert("x-max-age".into(), string(&format!("{age}s")));
        arguments.insert(
            "x-stream-max-segment-size-bytes".into(),
            AMQPValue::LongLongInt(4 << 20),
        );
        if let Err(error) = declare_queue(&channel, &stream_name, arguments).await {
            tracing::warn!(route = %route.name, stream = %stream_name, %error, "The dedup stream exists with another window: it is kept as it is.");
            channel = connection.create_channel().await?;
        }
    }
    let _ = channel.close(200, "dedup streams declared".into()).await;
    Ok(())
}

/// A stream's segment size for an archive of `max_bytes`: an eighth of it, so that retention by
/// size (whole segments) keeps close to it, between 64 KiB and RabbitMQ's default 500 MB.
/// RabbitMQ applies retention, by size and by age, when a segment is full and the next begins.
fn archive_segment(max_bytes: u64) -> i64 {
    i64::try_from((max_bytes / 8).clamp(64 << 10, 500_000_000)).unwrap_or(500_000_000)
}

/// Declares the delay queue of `step`: every message waits `step` in it, then goes back to its
/// route through `<p>retry`.
pub async fn declare_delay(channel: &Channel, names: &Names, step: Duration) -> lapin::Result<()> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments.insert("x-dead-letter-exchange".into(), string(&names.retry()));
    arguments.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    arguments.insert("x-overflow".into(), string("reject-publish"));
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(step.as_millis()).unwrap_or(i64::MAX)),
    );
    declare_queue(channel, &names.delay_queue(step), arguments).await
}

/// The delay step a retry of a route with `policy` waits for `delay` in: the delay itself when
/// the policy's backoff gives it (those are few per route), otherwise — a `Retry-After` asked
/// for — the next step of [`LADDER`] at or above it, never past the policy's cap. A retry
/// never leaves before its delay, and at most half as long again after it.
pub fn delay_step(policy: &Policy, delay: Duration) -> Duration {
    let from_backoff =
        (2..=policy.max_attempts.max(2)).any(|attempt| policy.backoff(attempt, None) == delay);
    if from_backoff || delay >= policy.max_backoff {
        return delay.min(policy.max_backoff).max(Duration::from_millis(1));
    }
    let step = LADDER
        .iter()
        .map(|millis| Duration::from_millis(*millis))
        .find(|step| *step >= delay)
        .unwrap_or(policy.max_backoff);
    step.min(policy.max_backoff)
}

/// Every delay step a retry on `registry`'s routes can wait in (for clean-up: the queues are
/// declared only when first needed).
pub fn delay_steps(registry: &Registry) -> BTreeSet<Duration> {
    let mut steps = BTreeSet::new();
    for route in &registry.routes {
        let policy = &route.policy;
        for attempt in 2..=policy.max_attempts.max(2) {
            steps.insert(delay_step(policy, policy.backoff(attempt, None)));
        }
        for millis in LADDER {
            steps.insert(delay_step(policy, Duration::from_millis(millis)));
        }
    }
    steps
}

/// Delay steps for delays the backoff does not give (a `Retry-After`), each at most 1.5 times
/// the one before.
const LADDER: [u64; 32] = [
    100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000,
    15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 240_000, 300_000, 450_000,
    600_000, 900_000, 1_200_000, 1_800_000, 2_700_000, 3_600_000,
];

/// Quorum queue arguments; with a dead-letter target, at-least-once dead-lettering (which needs
/// `reject-publish` overflow).
fn quorum(dead_letter: Option<(&str, &str)>) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    if let Some((exchange, routing_key)) = dead_letter {
        arguments.insert("x-dead-letter-exchange".into(), string(exchange));
        arguments.insert("x-dead-letter-routing-key".into(), string(routing_key));
        arguments.insert("x-dead-letter-strategy".into(), string("at-least-once"));
        arguments.insert("x-overflow".into(), string("reject-publish"));
    }
    arguments
}

/// Stream arguments: no retention, so that no dead letter is ever dropped by the broker.
fn stream() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("stream"));
    arguments
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_queue(channel: &Channel, queue: &str, arguments: FieldTable) -> lapin::Result<()> {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map(drop)
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_the_backoff_gives_is_its_own_step_and_others_round_up_to_the_ladder() {
        let policy = Policy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: 8,
            ..Policy::default()
        };
        let step = |millis| delay_step(&policy, Duration::from_millis(millis)).as_millis();
        // The backoff: 1, 2, 4, 8, 16, 32, 60 s.
        for millis in [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000] {
            assert_eq!(step(millis), u128::from(millis));
        }
        // Asked for (Retry-After): the next step up, never earlier, never past the cap.
        assert_eq!(step(2_100), 3_000);
        assert_eq!(step(30_000), 30_000);
        assert_eq!(step(50_000), 60_000);
        assert_eq!(step(70_000), 60_000);
        assert_eq!(step(0), 100);
        for pair in LADDER.windows(2) {
            assert!(pair[1] * 2 <= pair[0] * 3, "{pair:?}");
        }
    }

    #[test]
    fn a_prefix_is_joined_to_the_names_with_a_separator() {
        let orders = ContextName::parse("orders").unwrap();
        assert_eq!(Names::new("orders").outbound(&orders), "orders.orders.out");
        assert_eq!(Names::new("orders.").outbound(&orders), "orders.orders.out");
        assert_eq!(Names::new("staging-").route_queue("a"), "staging-route.a");
        assert_eq!(Names::new("").inbound(&orders), "orders.in");
        assert_eq!(
            Names::new("orders").context_of_outbound("orders.orders.out"),
            Some("orders")
        );
    }
}
