//! The command line: `contextgate serve`, `contextgate check` and `contextgate translate`. Each command returns an
//! [`ExitCode`]-like number; `main` only parses arguments and maps errors.
//!
//! Exit codes: 0 clean, 1 problems found (check) or a message that would not be delivered
//! (translate), 2 could not run (bad arguments, unreadable registry or input).
//!
//! # Layout
//! - [`check`]: load the registry and report every problem.
//! - [`serve`]: run the gateway and its HTTP API on the in-process bus.
//! - [`translate`]: a dry run of one message through one route.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod check;
pub mod serve;
pub mod translate;

/// contextgate: an integration gateway between bounded contexts.
#[derive(Debug, Parser)]
#[command(name = "contextgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway on the embedded in-process bus, with its HTTP API.
    Serve {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// Where the HTTP API listens; port 0 lets the system choose (printed at start).
        #[arg(long, default_value = "127.0.0.1:8080", env = "CONTEXTGATE_LISTEN")]
        listen: std::net::SocketAddr,
    },
    /// Load the registry and report every problem: schemas, examples, scripts, test cases, routes.
    Check {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Dry-run one message (a structured CloudEvent) through one route and print the outcome.
    Translate {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// The route's name.
        #[arg(long)]
        route: String,
        /// The CloudEvent file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and found problems.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: the command could not run.
pub const EXIT_COULD_NOT_RUN: u8 = 2;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve { registry, listen } => serve::run(&registry, listen).await,
        Command::Check { registry, format } => Ok(check::run(&registry, format)),
        Command::Translate {
            registry,
            route,
            file,
        } => translate::run(&registry, &route, file.as_deref()).await,
    }
}

/// Loads the registry for a command that needs a clean one; prints why not and gives `None`.
fn load_registry(root: &std::path::Path, command: &str) -> Option<crate::registry::Registry> {
    use crate::registry::RegistryError;
    match crate::registry::load(root) {
        Ok(registry) => Some(registry),
        Err(RegistryError::Problems(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "contextgate {command}: the registry has {} problem(s); run contextgate check",
                problems.len()
            );
            None
        }
        Err(error) => {
            eprintln!("contextgate {command}: {error}");
            None
        }
    }
}
