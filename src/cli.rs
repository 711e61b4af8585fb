//! The command line: `contextgate serve`, `check`, `compat`, `translate`, `map` and `registry`. Each command returns an
//! [`ExitCode`]-like number; `main` only parses arguments and maps errors.
//!
//! Exit codes: 0 clean, 1 problems found (check) or a message that would not be delivered
//! (translate), 2 could not run (bad arguments, unreadable registry or input).
//!
//! # Layout
//! - [`check`]: load the registry and report every problem; `--against` a baseline.
//! - [`compat`]: the compatibility checker on two schema files.
//! - `import` (here, over [`crate::import`]): a folder of existing schemas into one context.
//! - [`map`]: the context map as Mermaid, DOT, SVG or JSON.
//! - [`asyncapi`]: one context's AsyncAPI 3.0 document as JSON.
//! - [`registry`]: `registry push`, `pull` and `log` on a fleet's registry store.
//! - [`serve`]: run the gateway and its HTTP API, on RabbitMQ or the in-process bus.
//! - [`translate`]: a dry run of one message through one route.
//!
//! `hash-token` prints the digest of a token for the credentials file.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod asyncapi;
pub mod check;
pub mod compat;
pub mod map;
pub mod registry;
pub mod replay;
pub mod serve;
pub mod translate;

/// contextgate: an integration gateway between bounded contexts.
#[derive(Debug, Parser)]
#[command(name = "contextgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written on standard error: text (coloured only on a terminal) or
    /// json (one object a line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = crate::telemetry::LogFormat::Text, env = "CONTEXTGATE_LOG_FORMAT")]
    pub log_format: crate::telemetry::LogFormat,
}

impl Cli {
    /// The instance id of `serve` (`--instance-id`, else the host name); `None` for the other
    /// commands.
    pub fn instance(&self) -> Option<crate::bus::amqp::InstanceId> {
        match &self.command {
            Command::Serve { instance_id, .. } => Some(
                instance_id
                    .clone()
                    .unwrap_or_else(crate::bus::amqp::InstanceId::from_host),
            ),
            _ => None,
        }
    }
}

// Parsed once per process: the size of the largest variant (serve's settings) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with its HTTP API: on RabbitMQ with --amqp-url, otherwise on the
    /// embedded in-process bus.
    Serve {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// Where the HTTP API listens; port 0 lets the system choose (printed at start).
        #[arg(long, default_value = "127.0.0.1:8080", env = "CONTEXTGATE_LISTEN")]
        listen: std::net::SocketAddr,
        /// The credentials file (SHA-256 digests of each context's and the operator's bearer
        /// tokens); its TOML text may instead be in CONTEXTGATE_CREDENTIALS. Without either,
        /// the API is open.
        // Help never shows the variable's value (it could be mistaken for the text).
        #[arg(long, env = "CONTEXTGATE_CREDENTIALS_FILE", hide_env_values = true)]
        credentials: Option<PathBuf>,
        /// A registry store shared by a fleet of instances: postgres://user@host/db (libpq's
        /// sslmode, sslrootcert, sslcert and sslkey parameters are honoured). The store keeps
        /// every revision; an empty store is seeded from --registry, which is otherwise unused.
        // Help never shows the variable's value: it may hold a password.
        #[arg(long, env = "CONTEXTGATE_REGISTRY_STORE", hide_env_values = true)]
        registry_store: Option<String>,
        /// This gateway among a fleet sharing one broker (default: the host name): in log
        /// lines, metrics (label `instance`), consumer tags and connection names; the fleet
        /// assigns the shards of ordered routes by it, so each instance needs its own.
        #[arg(long, env = "CONTEXTGATE_INSTANCE_ID", value_parser = crate::bus::amqp::InstanceId::parse)]
        instance_id: Option<crate::bus::amqp::InstanceId>,
        #[command(flatten)]
        amqp: AmqpArgs,
        /// PEM file of the CA(s) that signed the look-up services' certificates, trusted for
        /// https look-ups in addition to the system's roots (an internal CA).
        #[arg(long, value_name = "PEM", env = "CONTEXTGATE_LOOKUP_CA_FILE")]
        lookup_ca_file: Option<PathBuf>,
        /// Where the gateway keeps what outlives it: the in-process bus's archives (replays
        /// need one) and every bus's replay jobs, which resume from here after a restart.
        #[arg(long, value_name = "DIR", env = "CONTEXTGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Replay a window of a context's archive through the routes as they are now, on a running
    /// gateway: start the job and show its progress until it ends.
    Replay(replay::ReplayArgs),
    /// The registry store of a fleet: publish a checked folder as its next revision, fetch a
    /// revision into a folder, read the log of revisions.
    Registry {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
    /// Print the SHA-256 digest of a bearer token read from standard input, as the credentials
    /// file stores it.
    HashToken,
    /// Load the registry and report every problem: schemas, examples, scripts, test cases, routes.
    Check {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also compare with a baseline: a git revision (`origin/main`) of the repository the
        /// registry is in, or a registry folder. Published versions must be unchanged and new
        /// versions compatible at their contract's level.
        #[arg(long, value_name = "REV|DIR")]
        against: Option<String>,
    },
    /// Check two versions of a schema for compatibility: exit 0 compatible, 1 incompatible,
    /// 2 when it could not run.
    Compat {
        /// The earlier version's JSON Schema.
        old: PathBuf,
        /// The new version's JSON Schema.
        new: PathBuf,
        /// none, backward, backward-transitive, forward, forward-transitive, full, full-transitive.
        #[arg(long, default_value = "backward", value_parser = parse_level)]
        level: crate::compat::Level,
        /// strict (Confluent's default) or lenient (also accepts adding and removing optional
        /// properties of open content models).
        #[arg(long, default_value = "strict", value_parser = parse_policy)]
        policy: crate::compat::Policy,
        #[arg(long, value_enum, default_value_t = compat::CompatFormat::Text)]
        format: compat::CompatFormat,
    },
    /// Import a folder of existing JSON or YAML schemas as one context's contracts, with no
    /// edit to the schemas: names from paths (or titles), versions from semver file names or
    /// git history, shared schemas as internal contracts, breaking steps of the history
    /// accepted as "imported". Written only if the result passes check.
    Import {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// The context the contracts belong to (added to contextgate.toml if new).
        #[arg(long, value_parser = crate::registry::ContextName::parse)]
        context: crate::registry::ContextName,
        /// The folder of schemas.
        source: PathBuf,
        /// Read the folder as it is at this git revision of its repository.
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
        /// One version per change of each file in its git history (up to --rev, or HEAD).
        #[arg(long)]
        history: bool,
        /// Where contract names come from.
        #[arg(long, value_enum, default_value_t = crate::import::Naming::Path)]
        names: crate::import::Naming,
        /// The kind of every imported contract: event or command.
        #[arg(long, default_value = "event", value_parser = parse_kind)]
        kind: crate::registry::MessageKind,
        /// Print the plan and the check, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the context map: contexts as nodes, routes as edges with their relationship (CF,
    /// OHS/PL, ACL, enrichment), upstream/downstream roles, message types and whether they are
    /// ordered.
    Map {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// mermaid, dot, svg (drawn by contextgate itself) or json.
        #[arg(long, default_value = "mermaid", value_parser = parse_map_format)]
        format: crate::map::Format,
    },
    /// Print one context's AsyncAPI 3.0 document as JSON: its exchanges and the route queues
    /// that feed it (AMQP 0.9.1 bindings), its messages (contracts by reference, CloudEvents
    /// headers as a trait), and the send and receive operations its routes make.
    Asyncapi {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        /// The context to describe.
        #[arg(long, value_parser = crate::registry::ContextName::parse)]
        context: crate::registry::ContextName,
        /// The broker named as the server (its user and password are never printed); without
        /// it, a placeholder.
        // Help never shows the variable's value: it holds a password.
        #[arg(long, env = "CONTEXTGATE_AMQP_URL", hide_env_values = true)]
        amqp_url: Option<String>,
        /// The prefix of every exchange and queue name, as `serve --amqp-prefix`.
        #[arg(long, default_value = "", env = "CONTEXTGATE_AMQP_PREFIX")]
        amqp_prefix: String,
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
        /// PEM file of the CA(s) trusted for https look-ups in addition to the system's roots,
        /// as `serve --lookup-ca-file`.
        #[arg(long, value_name = "PEM", env = "CONTEXTGATE_LOOKUP_CA_FILE")]
        lookup_ca_file: Option<PathBuf>,
    },
}

/// The RabbitMQ settings of `serve`.
#[derive(Debug, clap::Args)]
pub struct AmqpArgs {
    /// RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/%2f; without it the gateway runs on
    /// the in-process bus.
    // Help never shows the variable's value: it holds a password.
    #[arg(long, env = "CONTEXTGATE_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Put before every exchange and queue name the gateway declares, joined with a `.` unless
    /// it ends with `.`, `-`, `_`, `:` or `/` (`staging` gives `staging.orders.out`).
    #[arg(long, default_value = "", env = "CONTEXTGATE_AMQP_PREFIX")]
    pub amqp_prefix: String,
    /// Unacked deliveries per route.
    #[arg(long, default_value_t = 500, env = "CONTEXTGATE_PREFETCH")]
    pub prefetch: u16,
    /// Inputs of one route processed in parallel; one ordering key stays in one lane.
    #[arg(long, default_value_t = 16, env = "CONTEXTGATE_LANES")]
    pub lanes: usize,
    /// How long a publish waits for the broker's confirm.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub confirm_timeout: std::time::Duration,
    /// How long a stop waits for the inputs in flight.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// PEM file of the CA(s) that signed the broker's certificate, trusted for amqps:// in
    /// addition to the system's roots.
    #[arg(long, value_name = "PEM", env = "CONTEXTGATE_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) shown to a broker that asks for one;
    /// with --amqp-client-key.
    #[arg(
        long,
        value_name = "PEM",
        env = "CONTEXTGATE_AMQP_CLIENT_CERT",
        requires = "amqp_client_key"
    )]
    pub amqp_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted);
    /// with --amqp-client-cert.
    #[arg(
        long,
        value_name = "PEM",
        env = "CONTEXTGATE_AMQP_CLIENT_KEY",
        requires = "amqp_client_cert"
    )]
    pub amqp_client_key: Option<PathBuf>,
}

impl AmqpArgs {
    /// The bus settings of instance `instance`, or `None` for the in-process bus; an error names
    /// the TLS file that cannot be used and why.
    pub fn settings(
        &self,
        instance: &crate::bus::amqp::InstanceId,
    ) -> Result<Option<crate::bus::AmqpSettings>, String> {
        let tls = self.tls().map_err(|error| error.to_string())?;
        let Some(url) = self.amqp_url.as_ref().filter(|url| !url.is_empty()) else {
            if tls.is_set() {
                return Err(
                    "TLS files for RabbitMQ were given but no --amqp-url (CONTEXTGATE_AMQP_URL)"
                        .to_owned(),
                );
            }
            return Ok(None);
        };
        let mut settings = crate::bus::AmqpSettings::new(url.clone());
        settings.instance = instance.clone();
        settings.prefix = self.amqp_prefix.clone();
        settings.prefetch = self.prefetch.max(1);
        settings.lanes = self.lanes.max(1);
        settings.confirm_timeout = self.confirm_timeout;
        settings.shutdown_timeout = self.shutdown_timeout;
        settings.tls = tls;
        Ok(Some(settings))
    }

    /// The TLS files, read and checked.
    fn tls(&self) -> Result<crate::bus::amqp::AmqpTls, crate::tls::TlsError> {
        let ca = self
            .amqp_ca_file
            .as_deref()
            .map(crate::tls::Certificates::read)
            .transpose()?;
        let identity = match (&self.amqp_client_cert, &self.amqp_client_key) {
            (Some(certificate), Some(key)) => {
                Some(crate::tls::ClientIdentity::read(certificate, key)?)
            }
            // clap requires both or neither.
            _ => None,
        };
        Ok(crate::bus::amqp::AmqpTls { ca, identity })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `file:line: error: message`.
    Text,
    Json,
    /// GitHub Actions workflow annotations.
    Github,
    /// JUnit XML.
    Junit,
}

fn parse_kind(input: &str) -> Result<crate::registry::MessageKind, String> {
    match input {
        "event" => Ok(crate::registry::MessageKind::Event),
        "command" => Ok(crate::registry::MessageKind::Command),
        _ => Err("event or command".to_owned()),
    }
}

fn parse_level(input: &str) -> Result<crate::compat::Level, String> {
    crate::compat::Level::parse(input).ok_or_else(|| {
        "one of none, backward, backward-transitive, forward, forward-transitive, full, full-transitive"
            .to_owned()
    })
}

fn parse_map_format(input: &str) -> Result<crate::map::Format, String> {
    crate::map::Format::parse(input).ok_or_else(|| "mermaid, dot, svg or json".to_owned())
}

fn parse_policy(input: &str) -> Result<crate::compat::Policy, String> {
    match input {
        "strict" => Ok(crate::compat::Policy::Strict),
        "lenient" => Ok(crate::compat::Policy::Lenient),
        _ => Err("strict or lenient".to_owned()),
    }
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
        Command::Serve {
            registry,
            listen,
            credentials,
            registry_store,
            instance_id,
            amqp,
            lookup_ca_file,
            data_dir,
        } => {
            let instance = instance_id.unwrap_or_else(crate::bus::amqp::InstanceId::from_host);
            // Before anything records a metric: every series carries it.
            crate::telemetry::set_instance(instance.as_str());
            let settings = amqp.settings(&instance).and_then(|settings| {
                trust_for_lookups(lookup_ca_file.as_deref()).map_err(|error| error.to_string())?;
                Ok(settings)
            });
            let settings = match settings {
                Ok(settings) => settings,
                Err(error) => {
                    eprintln!("contextgate serve: {error}");
                    return Ok(EXIT_COULD_NOT_RUN);
                }
            };
            serve::run(
                &registry,
                registry_store.as_deref().filter(|url| !url.is_empty()),
                &instance,
                listen,
                credentials.as_deref(),
                settings,
                serve::Local {
                    log_format: cli.log_format,
                    data_dir: data_dir.as_deref(),
                },
            )
            .await
        }
        Command::Replay(args) => replay::run(args).await,
        Command::Registry { command } => registry::run(command).await,
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            if token.trim().is_empty() {
                eprintln!("contextgate hash-token: no token on standard input");
                return Ok(EXIT_COULD_NOT_RUN);
            }
            print(&format!("{}\n", crate::api::auth::hash_token(&token)));
            Ok(EXIT_OK)
        }
        Command::Check {
            registry,
            format,
            against,
        } => Ok(check::run(&registry, format, against.as_deref())),
        Command::Compat {
            old,
            new,
            level,
            policy,
            format,
        } => Ok(compat::run(&old, &new, level, policy, format)),
        Command::Import {
            registry,
            context,
            source,
            rev,
            history,
            names,
            kind,
            dry_run,
        } => Ok(import(crate::import::Options {
            registry,
            context,
            source,
            rev,
            history,
            naming: names,
            kind,
            dry_run,
        })),
        Command::Map { registry, format } => Ok(map::run(&registry, format)),
        Command::Asyncapi {
            registry,
            context,
            amqp_url,
            amqp_prefix,
        } => Ok(asyncapi::run(
            &registry,
            &context,
            amqp_url.as_deref(),
            &amqp_prefix,
        )),
        Command::Translate {
            registry,
            route,
            file,
            lookup_ca_file,
        } => {
            if let Err(error) = trust_for_lookups(lookup_ca_file.as_deref()) {
                eprintln!("contextgate translate: {error}");
                return Ok(EXIT_COULD_NOT_RUN);
            }
            translate::run(&registry, &route, file.as_deref()).await
        }
    }
}

/// `contextgate import`: the plan, then what was written (or every problem of the result).
fn import(options: crate::import::Options) -> u8 {
    use crate::import::{ImportError, describe_plan, run};
    match run(&options) {
        Ok(plan) => {
            print(&describe_plan(&plan));
            if options.dry_run {
                print(
                    "check: the imported registry loads without problems; nothing written (--dry-run)\n",
                );
            } else {
                print(&format!(
                    "check: the imported registry loads without problems; written to {}\n",
                    options.registry.display()
                ));
            }
            EXIT_OK
        }
        Err(ImportError::Problems(problems, plan)) => {
            print(&describe_plan(&plan));
            for problem in &problems {
                print(&format!("{problem}\n"));
            }
            eprintln!(
                "contextgate import: the imported registry would have {} problem(s); nothing written",
                problems.len()
            );
            EXIT_PROBLEMS
        }
        Err(ImportError::Unusable(why)) => {
            eprintln!("contextgate import: {why}");
            EXIT_COULD_NOT_RUN
        }
    }
}

/// Trusts the CA file of `--lookup-ca-file` for the look-ups, before the registry loads.
fn trust_for_lookups(file: Option<&std::path::Path>) -> Result<(), crate::tls::TlsError> {
    match file {
        Some(file) => crate::tls::trust_for_lookups(crate::tls::Certificates::read(file)?),
        None => Ok(()),
    }
}

/// Writes a command's output to standard output. A reader that has gone (`| head -1`) is not an
/// error: the output is simply not wanted any more, and the command ends quietly with its own
/// exit code, as Unix tools do (`println!` would panic there).
fn print(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
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
