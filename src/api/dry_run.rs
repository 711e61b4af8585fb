//! `POST /v1/routes/{route}/dry-run`: one message (a CloudEvent, as ingest takes it) through one
//! route, and the verdict as JSON — forward with the messages, drop, retry or dead letter with
//! the problems — without publishing anything. Look-ups are really made (as `contextgate
//! translate` does). The route's downstream (its owner), its upstream (whose messages it takes)
//! and the operator may run it.
//!
//! An enrich route's look-ups return the downstream's data (a customer record, say), which its
//! upstream may not read: for the upstream, a dry run of an enrich route stops after
//! validate-in. It makes no look-up and answers the validate-in verdict (a dead letter, or what
//! the route's policy makes of it) or, when the input passes, `"outcome": "accepted"` with
//! `"withheld"` saying why the rest is not shown.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;

use super::auth::Caller;
use super::{ApiError, AppState, ingest};
use crate::pipeline::Verdict;
use crate::registry::{Mode, RouteName};

/// What a dry run answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DryRun {
    /// The whole route's verdict (its downstream, the operator, or any caller on a route that
    /// discloses nothing of the downstream's).
    Verdict(Verdict),
    /// The input passed validate-in; the rest of the route is not run for this caller.
    Accepted(Withheld),
}

/// The answer to the upstream of an enrich route whose input passed validate-in.
#[derive(Debug, Serialize)]
pub struct Withheld {
    pub route: RouteName,
    /// Always `accepted`: the route takes this input.
    pub outcome: &'static str,
    /// Why the look-ups, the translator and validate-out were not run.
    pub withheld: &'static str,
}

const WITHHELD: &str = "the input passes validate-in; an enrich route's look-ups return its \
    downstream's data, so only the downstream or the operator dry-runs the rest";

/// Runs one message (a CloudEvent, as ingest takes it) through one route and returns the
/// verdict without publishing anything. For the upstream of an enrich route: up to validate-in
/// only, without look-ups.
#[utoipa::path(
    post,
    path = "/v1/routes/{route}/dry-run",
    tag = "routes",
    params(("route" = String, Path, description = "The route (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,63}$")),
    request_body(content = Object, content_type = "application/cloudevents+json"),
    responses(
        (status = 200, description = "The verdict: `outcome` (forward, drop, retry, dead-letter) with the messages or the failure; for the upstream of an enrich route, `accepted` once validate-in passes (nothing of the look-ups is shown).", body = Object),
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
) -> Result<Json<DryRun>, ApiError> {
    let pipeline = state.gateway.pipeline();
    let route = super::known_route(&pipeline, &raw_route)?;
    let owner = caller.may_act_for(&route.downstream).is_ok();
    if !owner {
        caller.may_act_for(&route.upstream)?;
    }
    let delivery = ingest::delivery(&headers, body);
    if owner || route.mode != Mode::Enrich {
        return Ok(Json(DryRun::Verdict(
            pipeline.process_on(&route, &delivery, 1).await,
        )));
    }
    Ok(Json(match pipeline.validate_on(&route, &delivery).await {
        Some(verdict) => DryRun::Verdict(verdict),
        None => DryRun::Accepted(Withheld {
            route: route.name.clone(),
            outcome: "accepted",
            withheld: WITHHELD,
        }),
    }))
}
