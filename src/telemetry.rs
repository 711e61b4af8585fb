//! Telemetry in one place: tracing set-up, the metric names, and the Prometheus recorder. Logs go
//! to stderr (stdout is for command output), filtered by `CONTEXTGATE_LOG` (tracing's
//! `EnvFilter` syntax, e.g. `info` or `contextgate=debug`), as text (coloured only when stderr
//! is a terminal) or as JSON, one object a line, for log shippers (`--log-format json`). Every
//! metric has HELP text, and every series of the registry's contexts and routes is declared at
//! zero when a registry is put in place ([`declare`]), so that `/metrics` is complete from the
//! start.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::registry::Registry;
use crate::stages::Stage;

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
    }
}
