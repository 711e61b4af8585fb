//! `contextgate serve`: load the registry and the credentials, start the gateway on RabbitMQ
//! (with an AMQP URL) or on the in-process bus, serve the HTTP API until Ctrl-C or SIGTERM, then
//! stop consuming, finish or give back what is in flight within the shutdown timeout, and exit.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::{EXIT_COULD_NOT_RUN, EXIT_OK};
use crate::api::auth::Credentials;
use crate::api::{self, AppState, Limits};
use crate::bus::{AmqpBus, AmqpSettings, Bus, InProcessBus};
use crate::gateway::Gateway;
use crate::gateway::following::Following;
use crate::pipeline::Pipeline;
use crate::registry::Registry;

/// What `serve` keeps on this machine: how it logs, and its data directory.
#[derive(Debug, Clone, Copy)]
pub struct Local<'a> {
    pub log_format: crate::telemetry::LogFormat,
    /// `--data-dir`.
    pub data_dir: Option<&'a Path>,
}

pub async fn run(
    root: &Path,
    store: Option<&str>,
    instance: &crate::bus::amqp::InstanceId,
    listen: SocketAddr,
    credentials: Option<&Path>,
    amqp: Option<AmqpSettings>,
    local: Local<'_>,
) -> anyhow::Result<u8> {
    let Local {
        log_format,
        data_dir,
    } = local;
    // Traces when the environment names an OTLP endpoint; flushed once the gateway stopped.
    let traces = match crate::telemetry::trace::start(instance.as_str()) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("contextgate serve: {error}");
            return Ok(EXIT_COULD_NOT_RUN);
        }
    };
    if traces.is_some() {
        tracing::info!("Traces are exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT).");
    }
    let (registry, following) = match store {
        None => match super::load_registry(root, "serve") {
            Some(registry) => (registry, None),
            None => return Ok(EXIT_COULD_NOT_RUN),
        },
        Some(url) => match Following::start(url, root, instance.as_str()).await {
            Ok((following, registry)) => (registry, Some(following)),
            Err(error) => {
                eprintln!("contextgate serve: {error:#}");
                return Ok(EXIT_COULD_NOT_RUN);
            }
        },
    };
    let credentials = match load_credentials(credentials, &registry) {
        Ok(credentials) => Arc::new(credentials),
        Err(error) => {
            eprintln!("contextgate serve: {error:#}");
            return Ok(EXIT_COULD_NOT_RUN);
        }
    };
    if credentials.is_open() {
        tracing::warn!(
            "No credentials: the API is open, every request acts as the operator (see --credentials)."
        );
    }
    if let Some(settings) = &amqp
        && let Err(error) = settings.uri()
    {
        eprintln!("contextgate serve: {error}");
        return Ok(EXIT_COULD_NOT_RUN);
    }
    let summary = registry.summary();
    let pipeline = Pipeline::new(Arc::new(registry));
    let (stop, stopping) = watch::channel(false);
    let amqp = amqp.map(|settings| Arc::new(AmqpBus::new(settings)));
    let kind = match &amqp {
        None => "in-process bus".to_owned(),
        Some(bus) => format!("RabbitMQ, prefix {:?}", bus.names().prefix()),
    };
    let bus = match &amqp {
        None => Bus::InProcess(InProcessBus::default()),
        Some(bus) => Bus::Amqp(bus.clone()),
    };
    if let Some(dir) = data_dir
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "contextgate serve: cannot use the data directory {}: {error}",
            dir.display()
        );
        return Ok(EXIT_COULD_NOT_RUN);
    }
    let gateway = Gateway::with_options(
        pipeline,
        bus,
        following.clone(),
        crate::gateway::Options {
            data_dir: data_dir.map(Path::to_path_buf),
        },
    );
    if amqp.is_none() && data_dir.is_none() {
        tracing::info!(
            "No --data-dir: the in-process bus archives nothing, so replays are not available."
        );
    }
    if let Some(archives) = gateway.archives().cloned() {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::archive::contexts::ENFORCE_EVERY);
            loop {
                every.tick().await;
                let pipeline = gateway.pipeline();
                let archives = archives.clone();
                let _ = tokio::task::spawn_blocking(move || archives.enforce(&pipeline)).await;
            }
        });
    }
    gateway.resume_replays();
    // In a fleet the store is the registry (the folder only seeded it): followed, not watched.
    let _watching = match &following {
        Some(following) => {
            tokio::spawn(crate::gateway::following::follow(
                gateway.clone(),
                following.clone(),
            ));
            None
        }
        None => match crate::gateway::folder::watch(root, gateway.clone()) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "Cannot watch the registry folder: edits on disk need a restart (the API still applies registrations).");
                None
            }
        },
    };
    let summary = match &following {
        Some(following) => format!(
            "{summary}; registry store revision {}",
            following.revision()
        ),
        None => summary,
    };
    let consuming = amqp.map(|bus| {
        let pipelines = gateway.pipelines();
        tokio::spawn(async move { bus.run(pipelines, stopping).await })
    });
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener
        .local_addr()
        .context("the listener has no address")?;
    tracing::info!(%address, registry = %summary, bus = %kind, "Gateway started.");
    // Tests and scripts read this line to find a port chosen by the system (`--listen 127.0.0.1:0`);
    // with JSON logs they read `address` in the line above, and stderr stays JSON only.
    if log_format == crate::telemetry::LogFormat::Text {
        eprintln!("contextgate listening on http://{address} ({kind}; {summary})");
    }
    let shutdown = async move {
        shutdown_signal().await;
        stop.send_replace(true);
    };
    serve(listener, gateway, credentials, shutdown).await?;
    if let Some(consuming) = consuming {
        consuming
            .await
            .context("the broker task failed")?
            .context("the broker connection could not run")?;
    }
    if let Some(traces) = traces {
        traces.shutdown(TRACES_FLUSH_WITHIN).await;
    }
    tracing::info!("Stopped.");
    Ok(EXIT_OK)
}

/// The credentials from `--credentials FILE`, else from `CONTEXTGATE_CREDENTIALS`, else open;
/// every context they name must be one of the registry's.
fn load_credentials(file: Option<&Path>, registry: &Registry) -> anyhow::Result<Credentials> {
    let (text, source) = match file {
        Some(file) => (
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the credentials {}", file.display()))?,
            file.display().to_string(),
        ),
        None => match std::env::var(CREDENTIALS_ENV) {
            Ok(text) if !text.trim().is_empty() => (text, CREDENTIALS_ENV.to_owned()),
            _ => return Ok(Credentials::open()),
        },
    };
    Credentials::parse_for(&text, registry)
        .with_context(|| format!("the credentials in {source} were refused"))
}

/// How long a stop waits for the last traces to be exported.
const TRACES_FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The variable that may hold the credentials' TOML text.
pub const CREDENTIALS_ENV: &str = "CONTEXTGATE_CREDENTIALS";

/// Serves the API on `listener` with the default [`Limits`] until `shutdown` completes, then
/// lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    credentials: Arc<Credentials>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, gateway, credentials, Limits::default(), shutdown).await
}

/// Serves the API with `limits`: each connection through hyper with a header-read timeout, at
/// most `max_connections` at once. On `shutdown` it stops accepting and waits (up to the request
/// timeout) for the requests in flight.
pub async fn serve_with(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    credentials: Arc<Credentials>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState {
        gateway,
        metrics: crate::telemetry::metrics(),
        credentials,
    };
    let service = TowerToHyperService::new(api::router(state, limits));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "Accepting a connection failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out): nothing to do but close.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Requests still in flight at the end of the shutdown wait were cut.");
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("Shutting down: no new input; finishing what is in flight.");
}
