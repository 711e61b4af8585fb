//! Telemetry in one place: tracing set-up, the metric names, and the Prometheus recorder. Logs go
//! to stderr (stdout is for command output), filtered by `CONTEXTGATE_LOG` (tracing's
//! `EnvFilter` syntax, e.g. `info` or `contextgate=debug`), as text (coloured only when stderr
//! is a terminal) or as JSON, one object a line, for log shippers (`--log-format json`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

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
/// Messages pushed out of a full in-process inbox, by context.
pub const INBOX_OVERFLOW: &str = "contextgate_inbox_overflow_total";
/// In-process dead letters refused because the dead letters were at their bound, by route.
pub const DEAD_LETTERS_REFUSED: &str = "contextgate_dead_letters_refused_total";

/// Broker sessions lost and rebuilt.
pub const AMQP_RECONNECTS: &str = "contextgate_amqp_reconnects_total";
/// 1 while the broker blocks the publishing connection (a resource alarm), else 0.
pub const AMQP_BLOCKED: &str = "contextgate_amqp_blocked";

/// Installs the Prometheus recorder once per process and returns its handle for `/metrics`.
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application): keep it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
