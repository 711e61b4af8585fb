//! The `contextgate` binary: parse the command line, set up logging, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;
use contextgate::cli::{self, Cli, EXIT_COULD_NOT_RUN};

/// mimalloc instead of glibc's malloc: the gateway allocates and frees small objects on several
/// threads per message (JSON values, AMQP frames, headers); glibc spent a fifth of the CPU on
/// that and kept per-thread arenas resident (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

thread_local! {
    /// The `serve` span a runtime thread stays in from its start to its stop.
    static THREAD_SPAN: std::cell::RefCell<Option<tracing::span::EnteredSpan>> =
        const { std::cell::RefCell::new(None) };
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                EXIT_COULD_NOT_RUN
            } else {
                0
            });
        }
    };
    contextgate::telemetry::init(
        match &cli.command {
            cli::Command::Serve { .. } => "info,lapin=off",
            _ => "warn",
        },
        cli.log_format,
    );
    // `serve` names its instance on every log line: each runtime thread (and the main thread)
    // runs inside a `serve{instance=…}` span for its whole life, so that the events of every
    // task carry the field, whichever spawned it.
    let span = cli
        .instance()
        .map(|instance| tracing::info_span!("serve", instance = %instance));
    let _entered = span.clone().map(tracing::Span::entered);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(span) = span {
        builder
            .on_thread_start(move || {
                THREAD_SPAN.with(|slot| *slot.borrow_mut() = Some(span.clone().entered()));
            })
            .on_thread_stop(|| {
                THREAD_SPAN.with(|slot| drop(slot.borrow_mut().take()));
            });
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("contextgate: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_COULD_NOT_RUN);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("contextgate: {error:#}");
            ExitCode::from(EXIT_COULD_NOT_RUN)
        }
    }
}
