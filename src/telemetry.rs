//! Tracing set-up in one place. Logs go to stderr (stdout is for command output), filtered by
//! `CONTEXTGATE_LOG` (tracing's `EnvFilter` syntax, e.g. `info` or `contextgate=debug`).

use tracing_subscriber::EnvFilter;

/// The variable that sets the log filter.
pub const LOG_ENV: &str = "CONTEXTGATE_LOG";

/// Installs the global subscriber; `default` is the filter when `CONTEXTGATE_LOG` is unset.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
