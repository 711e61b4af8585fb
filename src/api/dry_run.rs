//! `POST /v1/routes/{route}/dry-run`: one message (a CloudEvent, as ingest takes it) through one
//! route, and the verdict as JSON — forward with the messages, drop, retry or dead letter with
//! the problems — without publishing anything. Look-ups are really made (as `contextgate
//! translate` does). The route's downstream (its owner), its upstream (whose messages it takes)
//! and the operator may run it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;

use super::auth::Caller;
use super::{ApiError, AppState, ingest};
use crate::pipeline::Verdict;

/// Runs one message (a CloudEvent, as ingest takes it) through one route and returns the
/// verdict without publishing anything.
#[utoipa::path(
    post,
    path = "/v1/routes/{route}/dry-run",
    tag = "routes",
    params(("route" = String, Path, description = "The route (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,63}$")),
    request_body(content = Object, content_type = "application/cloudevents+json"),
    responses(
        (status = 200, description = "The verdict: `outcome` (forward, drop, retry, dead-letter) with the messages or the failure.", body = Object),
        (status = 413, description = "The body is over the message size cap.", body = super::ProblemDocument, content_type = "application/problem+json"),
        super::openapi::Refusals,
    )
)]
pub async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Verdict>, ApiError> {
    let pipeline = state.gateway.pipeline();
    let route = super::known_route(&pipeline, &raw_route)?;
    if caller.may_act_for(&route.downstream).is_err() {
        caller.may_act_for(&route.upstream)?;
    }
    let delivery = ingest::delivery(&headers, body);
    Ok(Json(pipeline.process_on(&route, &delivery, 1).await))
}
