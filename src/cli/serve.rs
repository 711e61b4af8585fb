//! `contextgate serve`: load the registry, start the gateway on the in-process bus, serve the HTTP
//! API until Ctrl-C or SIGTERM, then finish the requests in flight and exit.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK};
use crate::api::{self, AppState};
use crate::bus::{Bus, InProcessBus};
use crate::gateway::Gateway;
use crate::pipeline::Pipeline;

pub async fn run(root: &Path, listen: SocketAddr) -> anyhow::Result<u8> {
    let Some(registry) = super::load_registry(root, "serve") else {
        return Ok(EXIT_COULD_NOT_RUN);
    };
    let summary = registry.summary();
    let gateway = Gateway::new(
        Pipeline::new(Arc::new(registry)),
        Bus::InProcess(InProcessBus::default()),
    );
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener
        .local_addr()
        .context("the listener has no address")?;
    tracing::info!(%address, registry = %summary, "Gateway started on the in-process bus.");
    // Tests and scripts read this line to find a port chosen by the system (`--listen 127.0.0.1:0`).
    eprintln!("contextgate listening on http://{address} (in-process bus; {summary})");
    serve(listener, gateway, shutdown_signal()).await?;
    Ok(EXIT_OK)
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState {
        gateway,
        metrics: crate::telemetry::metrics(),
    };
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await
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
    tracing::info!("Shutting down: finishing the requests in flight.");
}
