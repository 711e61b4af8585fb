//! Liveness, readiness and Prometheus metrics. Live: the process answers. Ready: the registry is
//! loaded (it is, once the server is up) and, on RabbitMQ, the gateway is connected with its
//! topology declared and its consumers running; 503 otherwise.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", security(()),
    responses((status = 200, description = "Up.", body = String, content_type = "text/plain")))]
pub async fn live() -> &'static str {
    "ok\n"
}

/// Ready to take messages (on RabbitMQ: connected and consuming).
#[utoipa::path(get, path = "/health/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready.", body = String, content_type = "text/plain"),
        (status = 503, description = "Not connected to the broker.", body = String, content_type = "text/plain"),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    let summary = state.gateway.pipeline().registry().summary();
    if state.gateway.bus().is_ready() {
        (StatusCode::OK, format!("ready: {summary}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: not connected to the broker ({summary})\n"),
        )
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "The metrics, in the Prometheus text format.", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
