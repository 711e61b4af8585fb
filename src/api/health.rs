//! Liveness, readiness and Prometheus metrics. Live: the process answers. Ready: the registry is
//! loaded (it is, once the server is up; a broker connection will join this check).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

pub async fn live() -> &'static str {
    "ok\n"
}

pub async fn ready(State(state): State<AppState>) -> String {
    format!("ready: {}\n", state.gateway.pipeline().registry().summary())
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
