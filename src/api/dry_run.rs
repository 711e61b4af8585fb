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
use crate::registry::RouteName;

pub async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Verdict>, ApiError> {
    let name =
        RouteName::parse(&raw_route).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let pipeline = state.gateway.pipeline();
    let route = pipeline
        .registry()
        .route(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no route {name}")))?;
    if caller.may_act_for(&route.downstream).is_err() {
        caller.may_act_for(&route.upstream)?;
    }
    let delivery = ingest::delivery(&headers, body);
    Ok(Json(pipeline.process_on(&route, &delivery, 1).await))
}
