//! Liveness, readiness and Prometheus metrics. Live: the process answers. Ready: the registry is
//! loaded (it is, once the server is up) and, on RabbitMQ, the gateway is connected with its
//! topology declared and its consumers running; 503 otherwise. In a fleet it also says which
//! registry revision the instance runs and whether the registry store answers.

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
    let mut summary = state.gateway.pipeline().registry().summary();
    if let Some(following) = state.gateway.following() {
        summary.push_str(&store_line(&following.status()));
    }
    if state.gateway.bus().is_ready() {
        (StatusCode::OK, format!("ready: {summary}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: not connected to the broker ({summary})\n"),
        )
    }
}

/// What readiness says of the registry store. A store that is away does not make the instance
/// unready: it keeps moving messages on the revision it runs; only registrations wait for it.
fn store_line(status: &crate::gateway::following::FollowStatus) -> String {
    let mut line = format!("; registry revision {}", status.revision);
    match &status.unreachable {
        None => line.push_str(" (registry store reachable)"),
        Some((away, why)) => line.push_str(&format!(
            " (registry store unreachable for {} s: registrations answer 503 until it is back; {why})",
            away.as_secs()
        )),
    }
    if let Some((revision, why)) = &status.refused {
        line.push_str(&format!(
            "; revision {revision} does not load on this instance: {}",
            why.lines().next().unwrap_or_default()
        ));
    }
    line
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
