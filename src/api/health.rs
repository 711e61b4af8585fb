//! Liveness, readiness and Prometheus metrics. Live: the process answers. Ready: the registry is
//! loaded (it is, once the server is up) and, on RabbitMQ, the gateway is connected with its
//! topology declared and its consumers running; 503 otherwise.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;

pub async fn live() -> &'static str {
    "ok\n"
}

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

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
