//! Dead letters over HTTP, on either bus: a route's downstream context (or the operator) lists
//! its route's dead letters, reads one, deletes one after inspection, and redrives one or all
//! through the route as it is now (after a fix to a translator or a contract, say). The dead
//! letters that failed before any route was picked are the operator's: `GET /v1/dead-letters`.
//!
//! In process a redrive runs the pipeline at once and answers what became of each message
//! (`forward`, `drop`, `retry`, `dead-letter` again). On RabbitMQ it puts each one back on the
//! route's queue (`queued`), where the route's consumers take it as a first attempt; one that
//! fails again becomes a new dead letter with its new reason.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::bus::Bus;
use crate::bus::dead_letters::{
    DeadLetterPage, DeadLetterView, MAX_PAGE, PAGE_BYTES, Page, Redriven,
};
use crate::registry::{Route, RouteName};

/// The longest dead-letter id taken (ours are UUIDs).
const MAX_ID_LEN: usize = 64;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many to list at most (default 100, at most 1 000; a page also stops at about 4 MiB).
    #[serde(default)]
    pub max: Option<usize>,
    /// The page after the dead letter with this id: the `next` of the page before.
    #[serde(default)]
    #[param(pattern = "^[A-Za-z0-9-]{1,64}$")]
    pub after: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<Page, ApiError> {
        if let Some(after) = &self.after {
            dead_letter_id(after)?;
        }
        Ok(Page {
            after: self.after.clone(),
            max: self.max.unwrap_or(100).clamp(1, MAX_PAGE),
            max_bytes: PAGE_BYTES,
        })
    }
}

/// The dead letters that had no route (the operator's).
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead letters",
    params(ListQuery),
    responses((status = 200, description = "A page, oldest first, with the count of all and the next page's cursor.", body = DeadLetterPage), super::openapi::Refusals)
)]
pub async fn list_unrouted(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    caller.must_be_operator()?;
    Ok(Json(page(&state, None, query.page()?).await?))
}

/// A route's dead letters, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/routes/{route}/dead-letters",
    tag = "dead letters",
    params(("route" = String, Path, description = "The route.", pattern = "^[a-z][a-z0-9-]{0,63}$"), ListQuery),
    responses((status = 200, description = "A page, oldest first, with the count of all and the next page's cursor.", body = DeadLetterPage), super::openapi::Refusals)
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_route): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let route = owned_route(&state, &raw_route, &caller)?;
    Ok(Json(page(&state, Some(&route.name), query.page()?).await?))
}

/// One dead letter of a route.
#[utoipa::path(
    get,
    path = "/v1/routes/{route}/dead-letters/{id}",
    tag = "dead letters",
    params(("route" = String, Path, description = "The route.", pattern = "^[a-z][a-z0-9-]{0,63}$"), ("id" = String, Path, description = "The dead letter's id.", pattern = "^[A-Za-z0-9-]{1,64}$")),
    responses((status = 200, description = "The dead letter.", body = DeadLetterView), super::openapi::Refusals)
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw_route, id)): Path<(String, String)>,
) -> Result<Json<DeadLetterView>, ApiError> {
    let route = owned_route(&state, &raw_route, &caller)?;
    let id = dead_letter_id(&id)?;
    let found = match state.gateway.bus() {
        Bus::InProcess(bus) => bus
            .dead_letters(Some(&route.name), usize::MAX)
            .iter()
            .find(|kept| kept.id == id)
            .map(|kept| kept.view()),
        Bus::Amqp(bus) => {
            let (bus, route, id) = (bus.clone(), route.name.clone(), id.to_owned());
            detached(async move { Ok(bus.dead_letter(Some(&route), &id).await?) }).await?
        }
    };
    found.map(Json).ok_or_else(|| not_found(&route.name, id))
}

/// Deletes one dead letter (after inspection).
#[utoipa::path(
    delete,
    path = "/v1/routes/{route}/dead-letters/{id}",
    tag = "dead letters",
    params(("route" = String, Path, description = "The route.", pattern = "^[a-z][a-z0-9-]{0,63}$"), ("id" = String, Path, description = "The dead letter's id.", pattern = "^[A-Za-z0-9-]{1,64}$")),
    responses((status = 204, description = "Deleted."), super::openapi::Refusals)
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw_route, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let route = owned_route(&state, &raw_route, &caller)?;
    let id = dead_letter_id(&id)?;
    let deleted = match state.gateway.bus() {
        Bus::InProcess(bus) => !bus.take_dead_letters(&route.name, Some(id), 1).is_empty(),
        Bus::Amqp(bus) => {
            let (bus, route, id) = (bus.clone(), route.name.clone(), id.to_owned());
            detached(async move { Ok(bus.delete_dead_letter(Some(&route), &id).await?) }).await?
        }
    };
    if !deleted {
        return Err(not_found(&route.name, id));
    }
    tracing::info!(?caller, route = %route.name, id, "Dead letter deleted.");
    Ok(StatusCode::NO_CONTENT)
}

/// Runs one dead letter through the route as it is now.
#[utoipa::path(
    post,
    path = "/v1/routes/{route}/dead-letters/{id}/redrive",
    tag = "dead letters",
    params(("route" = String, Path, description = "The route.", pattern = "^[a-z][a-z0-9-]{0,63}$"), ("id" = String, Path, description = "The dead letter's id.", pattern = "^[A-Za-z0-9-]{1,64}$")),
    responses((status = 200, description = "What became of it.", body = Redriven), super::openapi::Refusals)
)]
pub async fn redrive_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw_route, id)): Path<(String, String)>,
) -> Result<Json<Redriven>, ApiError> {
    let route = owned_route(&state, &raw_route, &caller)?;
    let id = dead_letter_id(&id)?;
    let redriven = redrive(&state, &route, Some(id)).await?;
    if redriven.redriven == 0 {
        return Err(not_found(&route.name, id));
    }
    tracing::info!(?caller, route = %route.name, id, "Dead letter redriven.");
    Ok(Json(redriven))
}

/// Runs every dead letter of the route (up to 10 000 per request) through it as it is now.
#[utoipa::path(
    post,
    path = "/v1/routes/{route}/dead-letters/redrive",
    tag = "dead letters",
    params(("route" = String, Path, description = "The route.", pattern = "^[a-z][a-z0-9-]{0,63}$")),
    responses((status = 200, description = "How many, what became of them, how many are left.", body = Redriven), super::openapi::Refusals)
)]
pub async fn redrive_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_route): Path<String>,
) -> Result<Json<Redriven>, ApiError> {
    let route = owned_route(&state, &raw_route, &caller)?;
    let redriven = redrive(&state, &route, None).await?;
    tracing::info!(?caller, route = %route.name, redriven = redriven.redriven, "Dead letters redriven.");
    Ok(Json(redriven))
}

/// Runs in a task of its own, awaited: a request cancelled (a timeout, a client gone) must not
/// stop a redrive halfway, with dead letters taken and not yet run, or a queue read and not
/// given back.
async fn redrive(
    state: &AppState,
    route: &Arc<Route>,
    id: Option<&str>,
) -> Result<Redriven, ApiError> {
    let (gateway, route, id) = (state.gateway.clone(), route.clone(), id.map(str::to_owned));
    detached(async move {
        match gateway.bus() {
            Bus::InProcess(bus) => Ok(gateway.redrive_in_process(bus, &route, id.as_deref()).await),
            Bus::Amqp(bus) => Ok(bus
                .redrive(&route.name, id.as_deref())
                .await?
                .unwrap_or_default()),
        }
    })
    .await
}

/// Awaits `work` in a task of its own, so that it runs to its end whatever becomes of the request.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|error| {
        tracing::error!(%error, "A dead-letter task failed.");
        ApiError::Internal
    })?
}

async fn page(
    state: &AppState,
    route: Option<&RouteName>,
    page: Page,
) -> Result<DeadLetterPage, ApiError> {
    match state.gateway.bus() {
        // In process only routed inputs are kept (the sender is told of the others).
        Bus::InProcess(bus) => Ok(bus.dead_letter_page(route, &page)),
        Bus::Amqp(bus) => {
            let (bus, route) = (bus.clone(), route.cloned());
            detached(async move { Ok(bus.dead_letters(route.as_ref(), &page).await?) }).await
        }
    }
}

/// The route a path names, once the caller may act for its downstream (400, 404, then 403).
fn owned_route(state: &AppState, raw: &str, caller: &Caller) -> Result<Arc<Route>, ApiError> {
    let route = super::known_route(&state.gateway.pipeline(), raw)?;
    caller.may_act_for(&route.downstream)?;
    Ok(route)
}

fn dead_letter_id(raw: &str) -> Result<&str, ApiError> {
    if raw.is_empty()
        || raw.len() > MAX_ID_LEN
        || !raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    {
        return Err(ApiError::BadRequest(format!(
            "a dead-letter id is up to {MAX_ID_LEN} ASCII letters, digits and dashes"
        )));
    }
    Ok(raw)
}

fn not_found(route: &RouteName, id: &str) -> ApiError {
    ApiError::NotFound(format!("route {route} keeps no dead letter {id}"))
}
