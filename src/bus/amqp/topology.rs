//! The AMQP topology the gateway declares at start (and again after every reconnect): its names,
//! all built from one prefix, and the declarations. README.md shows the same picture.
//!
//! - `<p><context>.out`: topic exchange a context publishes to, routing key = message type;
//!   what no route queue takes goes to its alternate exchange `<p>unrouted`.
//! - `<p><context>.in`: topic exchange a context receives on (its team binds its own queues).
//! - `<p>route.<route>`: the route's durable quorum queue, bound to the upstream's `.out` for
//!   every message type it accepts, and to `<p>retries` with the route's name.
//! - `<p>delay.<route>`: the route's delay queue; a retry waits there for its per-message TTL,
//!   then dead-letters back through `<p>retries` into the route queue.
//! - `<p>dead-letters`: direct exchange; `<p>dead.<route>` per route, `<p>dead._unrouted` for
//!   what failed before any route was picked.
//! - `<p>unrouted`: fanout exchange and quorum queue the gateway consumes to dead-letter (or,
//!   for an event no route takes, count) what no route queue took.

use std::collections::BTreeSet;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::registry::{ContextName, Registry, Route};

/// The dead-letter routing key (and queue suffix) of inputs that failed before routing.
pub const UNROUTED_KEY: &str = "_unrouted";

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

    pub fn delay_queue(&self, route: &str) -> String {
        format!("{}delay.{route}", self.prefix)
    }

    pub fn dead_letters(&self) -> String {
        format!("{}dead-letters", self.prefix)
    }

    /// The dead-letter queue of a route, or of what failed before routing (`None`).
    pub fn dead_letter_queue(&self, route: Option<&str>) -> String {
        format!("{}dead.{}", self.prefix, route.unwrap_or(UNROUTED_KEY))
    }

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
    let unrouted = names.unrouted();
    for (exchange, kind) in [
        (&dead_letters, ExchangeKind::Direct),
        (&retries, ExchangeKind::Direct),
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
    declare_queue(channel, &unrouted_dead, quorum(None)).await?;
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
    let queue = names.route_queue(name);
    let mut arguments = quorum(Some((&names.dead_letters(), name)));
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(i32::try_from(settings.delivery_limit).unwrap_or(i32::MAX)),
    );
    declare_queue(channel, &queue, arguments).await?;
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

    let delay = names.delay_queue(name);
    declare_queue(channel, &delay, quorum(Some((&names.retries(), name)))).await?;

    let dead = names.dead_letter_queue(Some(name));
    declare_queue(channel, &dead, quorum(None)).await?;
    bind(channel, &dead, &names.dead_letters(), name).await
}

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
