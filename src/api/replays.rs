//! Replay jobs over HTTP: start one (or a dry run of it), list, read, cancel.
//!
//! Who may: the operator, any replay. A context, a replay of its own archive (it is the
//! routes' upstream: every route, or the ones it names), or of another context's archive
//! through the routes it owns as downstream only (`downstream` = itself, or a `route` it owns).
//! A context sees and cancels only the jobs it started.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::registry::{ContextName, RouteName};
use crate::replay::{self, Job, Request, Spec, Survey, Target};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Only say what the window holds, per type and route; start nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Starts a replay job, or with `dry_run` says what its window holds.
#[utoipa::path(
    post,
    path = "/v1/replays",
    tag = "replays",
    params(StartQuery),
    request_body = Request,
    responses(
        (status = 201, description = "Started: the job.", body = Job),
        (status = 200, description = "Dry run: what the window holds.", body = Survey),
        (status = 415, description = "The body is not JSON (content-type)."),
        (status = 422, description = "The body is not a replay request."),
        super::openapi::Refusals
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<StartQuery>,
    Json(request): Json<Request>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let gateway = &state.gateway;
    let spec = Spec::check(&request, &gateway.pipeline(), std::time::SystemTime::now())
        .map_err(ApiError::BadRequest)?;
    may_replay(&caller, &spec, gateway)?;
    if let Some(why) = gateway.cannot_replay() {
        return Err(ApiError::BadRequest(why.to_owned()));
    }
    if query.dry_run {
        let survey = gateway.survey(&spec).await.map_err(ApiError::Broker)?;
        return Ok(Json(survey).into_response());
    }
    let job = gateway
        .start_replay(replay::new_job(spec, caller.author()))
        .map_err(ApiError::Unavailable)?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// The replay jobs the caller may see, newest first.
#[utoipa::path(
    get,
    path = "/v1/replays",
    tag = "replays",
    responses((status = 200, description = "The jobs.", body = Vec<Job>), super::openapi::Refusals)
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Vec<Job>> {
    let jobs = state.gateway.replays().list();
    Json(jobs.into_iter().filter(|job| sees(&caller, job)).collect())
}

/// One job: its status, progress and counts.
#[utoipa::path(
    get,
    path = "/v1/replays/{id}",
    tag = "replays",
    params(("id" = String, Path, description = "The job's id.", pattern = "^[A-Za-z0-9-]{1,64}$")),
    responses((status = 200, description = "The job.", body = Job), super::openapi::Refusals)
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    state
        .gateway
        .replays()
        .get(&id)
        .filter(|job| sees(&caller, job))
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

/// Cancels a job: it stops after the input it is on.
#[utoipa::path(
    delete,
    path = "/v1/replays/{id}",
    tag = "replays",
    params(("id" = String, Path, description = "The job's id.", pattern = "^[A-Za-z0-9-]{1,64}$")),
    responses((status = 200, description = "Cancelled (or already ended): the job.", body = Job), super::openapi::Refusals)
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let replays = state.gateway.replays();
    match replays.get(&id) {
        Some(job) if sees(&caller, &job) => {}
        _ => return Err(not_found(&id)),
    }
    replays.cancel(&id).map(Json).ok_or_else(|| not_found(&id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no replay job {}",
        crate::message::json::truncate(id, 64)
    ))
}

fn sees(caller: &Caller, job: &Job) -> bool {
    match caller {
        Caller::Operator => true,
        Caller::Context(_) => job.by == caller.author(),
    }
}

/// The operator may replay anything; a context its own archive, or another's into the routes
/// it owns as downstream.
fn may_replay(
    caller: &Caller,
    spec: &Spec,
    gateway: &crate::gateway::Gateway,
) -> Result<(), ApiError> {
    let Caller::Context(own) = caller else {
        return Ok(());
    };
    if *own == spec.context {
        return Ok(());
    }
    let owns = match &spec.target {
        Target::All => false,
        Target::Downstream(context) => ContextName::parse(context).is_ok_and(|c| &c == own),
        Target::Route(route) => RouteName::parse(route).is_ok_and(|name| {
            gateway
                .pipeline()
                .registry()
                .route(&name)
                .is_some_and(|route| &route.downstream == own)
        }),
    };
    if owns {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}
