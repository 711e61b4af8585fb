//! Telemetry in one place: tracing set-up, the metric names, the Prometheus recorder and (in
//! [`trace`]) OpenTelemetry traces. Logs go to stderr (stdout is for command output), filtered by
//! `CONTEXTGATE_LOG` (tracing's `EnvFilter` syntax, e.g. `info` or `contextgate=debug`), as text
//! (coloured only when stderr is a terminal) or as JSON, one object a line, for log shippers
//! (`--log-format json`). Every metric has HELP text, and every series of the registry's contexts
//! and routes is declared at zero when a registry is put in place ([`declare`]), so that `/metrics`
//! is complete from the start.
//!
//! # Layout
//! - [`trace`]: OpenTelemetry traces, a span per input per route, exported over OTLP/HTTP.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::registry::Registry;
use crate::stages::Stage;

pub mod trace;

/// The variable that sets the log filter.
pub const LOG_ENV: &str = "CONTEXTGATE_LOG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event; coloured only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields` with `message`).
    Json,
}

/// Installs the global subscriber; `default` is the filter when `CONTEXTGATE_LOG` is unset.
pub fn init(default: &str, format: LogFormat) {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|directives| EnvFilter::try_new(quiet_watcher(&directives)).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet_watcher(default)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// The filter `directives` with the folder watcher's own log lines (notify's) kept to errors,
/// unless they name notify themselves: it logs one line per watch it drops, which is hundreds
/// when a checkout replaces the registry folder, and what matters of it (a watch that could not
/// be added) reaches `gateway::folder` as an error anyway.
fn quiet_watcher(directives: &str) -> String {
    if directives.contains("notify") {
        directives.to_owned()
    } else {
        format!("{directives},notify=error")
    }
}

/// Messages that entered the gateway, by sending context.
pub const MESSAGES_IN: &str = "contextgate_messages_in_total";
/// Messages forwarded, by route.
pub const MESSAGES_FORWARDED: &str = "contextgate_messages_forwarded_total";
/// Inputs dropped (by the translator or by policy), by route; `none` for an event no route takes.
pub const MESSAGES_DROPPED: &str = "contextgate_messages_dropped_total";
/// Inputs scheduled for another attempt, by route and stage.
pub const MESSAGES_RETRIED: &str = "contextgate_messages_retried_total";
/// Inputs dead-lettered, by route (`none` before routing) and stage.
pub const MESSAGES_DEAD_LETTERED: &str = "contextgate_messages_dead_lettered_total";
/// Seconds from receiving an input to acting on all its verdicts.
pub const PROCESSING_SECONDS: &str = "contextgate_processing_seconds";
/// Inputs dropped as duplicates within their route's dedup window, by route (also counted as
/// dropped).
pub const MESSAGES_DUPLICATE: &str = "contextgate_messages_duplicate_total";
/// Dedup keys that left a window early because it held `dedup::MAX_KEYS`.
pub const DEDUP_EVICTED: &str = "contextgate_dedup_evicted_total";
/// Inputs appended to a context's archive, by context (in process; on RabbitMQ the stream is
/// bound to the outbound exchange and only unrouted inputs are appended by the gateway).
pub const ARCHIVED: &str = "contextgate_archived_total";
/// Archived inputs a replay job took, by job outcome (`forwarded`, `dropped`, `dead-lettered`,
/// `duplicate`, `retried`, `skipped`).
pub const REPLAYED: &str = "contextgate_replayed_total";
/// Messages pushed out of a full in-process inbox, by context.
pub const INBOX_OVERFLOW: &str = "contextgate_inbox_overflow_total";
/// In-process dead letters refused because the dead letters were at their bound, by route.
pub const DEAD_LETTERS_REFUSED: &str = "contextgate_dead_letters_refused_total";

/// The registry revision this instance runs (with a registry store).
pub const REGISTRY_REVISION: &str = "contextgate_registry_revision";
/// 1 while the registry store answers, else 0 (with a registry store).
pub const REGISTRY_STORE_UP: &str = "contextgate_registry_store_up";
/// Seconds from a revision's commit (on any instance) to this instance running it.
pub const REGISTRY_FOLLOW_SECONDS: &str = "contextgate_registry_follow_seconds";
/// Inputs of ordered routes republished to their shards by this instance's sequencer, by route.
pub const MESSAGES_SEQUENCED: &str = "contextgate_messages_sequenced_total";
/// Shards of an ordered route this instance subscribes to (holds), by route.
pub const SHARDS_HELD: &str = "contextgate_shards_held";
/// Live instances of the fleet as this one sees them (itself included).
pub const FLEET_LIVE: &str = "contextgate_fleet_live";

/// Seconds from an input's arrival at the gateway to its outputs confirmed, by route (forwards
/// only).
pub const ROUTE_LATENCY_SECONDS: &str = "contextgate_route_latency_seconds";
/// Seconds from an input's CloudEvents `time` to its outputs confirmed, by route (forwards of
/// inputs that have a `time` only).
pub const END_TO_END_SECONDS: &str = "contextgate_end_to_end_seconds";
/// Inputs taken by a route and not settled yet, by route.
pub const IN_FLIGHT: &str = "contextgate_in_flight";
/// Inputs waiting for a route, by route: on RabbitMQ the ready messages of its queue (an
/// ordered route's sequencer and shards together); in process the retries waiting out their
/// backoff.
pub const QUEUE_DEPTH: &str = "contextgate_route_queue_depth";

/// Broker sessions lost and rebuilt.
pub const AMQP_RECONNECTS: &str = "contextgate_amqp_reconnects_total";
/// 1 while the broker blocks the publishing connection (a resource alarm), else 0.
pub const AMQP_BLOCKED: &str = "contextgate_amqp_blocked";

/// The bucket bounds of every histogram (`contextgate_processing_seconds`), in seconds: from a
/// millisecond to the 30 s request timeout. Histograms rather than summaries, so that the
/// buckets of a fleet's instances can be added up.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The instance id every series carries as the label `instance` (see [`set_instance`]).
static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process's instance in every metric (the global label `instance`). Call it before
/// anything records a metric: the recorder takes it when it is installed; later calls change
/// nothing.
pub fn set_instance(instance: &str) {
    let _ = INSTANCE.set(instance.to_owned());
}

/// How often the recorder folds histogram samples into its buckets when nobody scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the Prometheus recorder once per process (with a thread that keeps its histograms
/// from growing) and returns its handle for `/metrics`.
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .expect("the bucket list is not empty");
            if let Some(instance) = INSTANCE.get() {
                builder = builder.add_global_label("instance", instance.clone());
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // A histogram keeps every sample until the next render or upkeep: without a scrape
            // of `/metrics` they would pile up (8 bytes a message, without bound).
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            // Another recorder may already be installed (an embedding application): keep it.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// The HELP text of every series.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        MESSAGES_IN,
        Unit::Count,
        "Inputs taken, by sending context (on RabbitMQ once per route that takes them)."
    );
    describe_counter!(
        MESSAGES_FORWARDED,
        Unit::Count,
        "Messages forwarded to the downstream context, by route."
    );
    describe_counter!(
        MESSAGES_DROPPED,
        Unit::Count,
        "Inputs dropped by the translator or by policy, by route (none: an event no route takes)."
    );
    describe_counter!(
        MESSAGES_RETRIED,
        Unit::Count,
        "Inputs scheduled for another attempt, by route and failing stage."
    );
    describe_counter!(
        MESSAGES_DEAD_LETTERED,
        Unit::Count,
        "Inputs dead-lettered, by route (none: before routing) and failing stage."
    );
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "Seconds from taking an input to acting on all its verdicts."
    );
    describe_histogram!(
        ROUTE_LATENCY_SECONDS,
        Unit::Seconds,
        "Seconds from an input's arrival at the gateway (taken from the route's queue, or the HTTP request) to its outputs confirmed by the broker (in process: in the inbox), by route; forwarded inputs only."
    );
    describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "Seconds from an input's CloudEvents time attribute to its outputs confirmed (in process: in the inbox), by route; forwarded inputs that have a time only, the producer's clock against the gateway's (negative as 0)."
    );
    describe_gauge!(
        IN_FLIGHT,
        "Inputs a route took and has not settled yet (acked, or answered in process), by route."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Inputs waiting for a route (consumer lag), by route: on RabbitMQ its queue's ready messages (an ordered route's sequencer and shards together), polled every 2 s; in process the retries waiting out their backoff."
    );
    describe_counter!(
        MESSAGES_DUPLICATE,
        Unit::Count,
        "Inputs dropped as duplicates within their route's dedup window, by route (also counted as dropped)."
    );
    describe_counter!(
        DEDUP_EVICTED,
        Unit::Count,
        "Dedup keys that left a route's window early because it was full."
    );
    describe_counter!(
        ARCHIVED,
        Unit::Count,
        "Inputs the gateway appended to a context's archive, by context."
    );
    describe_counter!(
        REPLAYED,
        Unit::Count,
        "Archived inputs taken by replay jobs, by outcome."
    );
    describe_counter!(
        INBOX_OVERFLOW,
        Unit::Count,
        "In process: messages pushed out of a full inbox, by context."
    );
    describe_counter!(
        DEAD_LETTERS_REFUSED,
        Unit::Count,
        "In process: dead letters refused because the dead letters were full, by route."
    );
    describe_counter!(
        MESSAGES_SEQUENCED,
        Unit::Count,
        "RabbitMQ: inputs of an ordered route republished to its shards by this instance, by route."
    );
    describe_gauge!(
        SHARDS_HELD,
        "RabbitMQ: shards of an ordered route this instance holds (subscribes to), by route."
    );
    describe_gauge!(
        FLEET_LIVE,
        "RabbitMQ: live instances of the fleet as this one sees them, itself included."
    );
    describe_counter!(
        AMQP_RECONNECTS,
        Unit::Count,
        "RabbitMQ: broker sessions lost and rebuilt."
    );
    describe_gauge!(
        AMQP_BLOCKED,
        "RabbitMQ: 1 while the broker blocks the publishing connection (a resource alarm), else 0."
    );
    describe_gauge!(
        REGISTRY_REVISION,
        "Registry store: the revision this instance runs."
    );
    describe_gauge!(
        REGISTRY_STORE_UP,
        "Registry store: 1 while it answers, else 0 (registrations are refused with 503)."
    );
    describe_histogram!(
        REGISTRY_FOLLOW_SECONDS,
        Unit::Seconds,
        "Registry store: seconds from a revision's commit to this instance running it."
    );
}

/// Which transport's own series to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    InProcess,
    Amqp,
}

/// Declares every series of `registry` at zero — each context's and each route's (every stage
/// for the per-stage counters), the processing histogram, and the transport's own — so that
/// `/metrics` lists them before the first message, and the series of routes a registry change
/// adds as soon as it is applied. Series already counting keep their values.
pub fn declare(registry: &Registry, transport: Transport) {
    // The recorder must be in place, or these would go nowhere.
    let _ = metrics();
    let _registered = metrics::histogram!(PROCESSING_SECONDS);
    for context in registry.contexts.keys() {
        metrics::counter!(MESSAGES_IN, "context" => context.to_string()).increment(0);
        if transport == Transport::InProcess {
            metrics::counter!(INBOX_OVERFLOW, "context" => context.to_string()).increment(0);
        }
    }
    let routes = registry.routes.iter().map(|route| route.name.to_string());
    for route in routes.chain(["none".to_owned()]) {
        if route != "none" {
            metrics::counter!(MESSAGES_FORWARDED, "route" => route.clone()).increment(0);
            let _registered = metrics::histogram!(ROUTE_LATENCY_SECONDS, "route" => route.clone());
            let _registered = metrics::histogram!(END_TO_END_SECONDS, "route" => route.clone());
            metrics::gauge!(IN_FLIGHT, "route" => route.clone()).increment(0.0);
            metrics::gauge!(QUEUE_DEPTH, "route" => route.clone()).increment(0.0);
            if transport == Transport::InProcess {
                metrics::counter!(DEAD_LETTERS_REFUSED, "route" => route.clone()).increment(0);
            }
        }
        metrics::counter!(MESSAGES_DROPPED, "route" => route.clone()).increment(0);
        if route != "none" {
            metrics::counter!(MESSAGES_DUPLICATE, "route" => route.clone()).increment(0);
        }
        for stage in Stage::ALL {
            metrics::counter!(MESSAGES_DEAD_LETTERED, "route" => route.clone(), "stage" => stage.as_str())
                .increment(0);
            if route != "none" {
                metrics::counter!(MESSAGES_RETRIED, "route" => route.clone(), "stage" => stage.as_str())
                    .increment(0);
            }
        }
    }
    if transport == Transport::Amqp {
        for route in registry
            .routes
            .iter()
            .filter(|route| route.ordering_key.is_some())
        {
            metrics::counter!(MESSAGES_SEQUENCED, "route" => route.name.to_string()).increment(0);
            metrics::gauge!(SHARDS_HELD, "route" => route.name.to_string()).increment(0.0);
        }
        metrics::counter!(AMQP_RECONNECTS).increment(0);
        metrics::gauge!(AMQP_BLOCKED).increment(0.0);
        metrics::gauge!(FLEET_LIVE).increment(0.0);
    }
}

/// One input counted in a gauge (its route's [`IN_FLIGHT`] or [`QUEUE_DEPTH`]) until it is dropped.
#[derive(Debug)]
pub struct Counted(metrics::Gauge);

impl Counted {
    pub fn enter(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Records a forwarded input's latencies on its route: from its arrival ([`ROUTE_LATENCY_SECONDS`])
/// and from its CloudEvents `time` when it has one ([`END_TO_END_SECONDS`]).
pub fn record_forward(
    latency: &metrics::Histogram,
    end_to_end: &metrics::Histogram,
    arrived: std::time::Instant,
    time: Option<&str>,
) {
    latency.record(arrived.elapsed().as_secs_f64());
    if let Some(occurred) = time.and_then(parse_time) {
        let age = std::time::SystemTime::now()
            .duration_since(occurred)
            .unwrap_or_default();
        end_to_end.record(age.as_secs_f64());
    }
}

/// An RFC 3339 date-time (as CloudEvents' `time`), with `Z` or a numeric offset.
fn parse_time(time: &str) -> Option<std::time::SystemTime> {
    // humantime reads `Z` only (and ignores an offset): `…+02:00` is read as UTC, then moved.
    let offset = time
        .len()
        .checked_sub(6)
        .and_then(|at| time.get(at..).map(|offset| (at, offset)))
        .filter(|(_, offset)| {
            let bytes = offset.as_bytes();
            matches!(bytes[0], b'+' | b'-') && bytes[3] == b':'
        });
    let Some((at, offset)) = offset else {
        return humantime::parse_rfc3339_weak(time).ok();
    };
    let hours: u64 = offset.get(1..3)?.parse().ok()?;
    let minutes: u64 = offset.get(4..)?.parse().ok()?;
    let shift = std::time::Duration::from_secs(hours * 3600 + minutes * 60);
    // `<local>Z` on the stack: no allocation per input.
    let local = &time.as_bytes()[..at];
    let mut buffer = [0u8; 40];
    let text = buffer.get_mut(..=local.len())?;
    text[..local.len()].copy_from_slice(local);
    text[local.len()] = b'Z';
    let as_utc = humantime::parse_rfc3339_weak(std::str::from_utf8(text).ok()?).ok()?;
    if offset.starts_with('+') {
        as_utc.checked_sub(shift)
    } else {
        as_utc.checked_add(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_with_an_offset_is_the_same_instant_as_in_utc() {
        let utc = parse_time("2026-12-01T03:00:00.250Z").unwrap();
        assert_eq!(parse_time("2026-12-01T05:00:00.250+02:00"), Some(utc));
        assert_eq!(parse_time("2026-12-01T00:30:00.250-02:30"), Some(utc));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn an_input_in_flight_is_counted_until_it_is_dropped() {
        let _ = metrics();
        let gauge = metrics::gauge!(IN_FLIGHT, "route" => "unit-test-in-flight");
        let first = Counted::enter(&gauge);
        let second = Counted::enter(&gauge);
        drop(first);
        let rendered = metrics().render();
        assert!(
            rendered.contains("contextgate_in_flight{route=\"unit-test-in-flight\"} 1"),
            "{rendered}"
        );
        drop(second);
        assert!(
            metrics()
                .render()
                .contains("contextgate_in_flight{route=\"unit-test-in-flight\"} 0")
        );
    }
}
