//! The HTTP API: `router(state)` builds it, and tests call it directly. Errors are RFC 9457
//! problem documents (`application/problem+json`) that never leak internals.
//!
//! # Layout
//! - [`auth`]: credentials and the [`auth::Caller`] extractor (401 / 403).
//! - [`contracts`]: list, read and register contract versions.
//! - [`translators`]: list, read, register and replace translators.
//! - [`routes`]: list, read, create, replace and delete routes (`If-Match` for concurrent edits).
//! - [`dry_run`]: one message through one route, the verdict, nothing published.
//! - [`writes`]: registry changes, all or nothing: written, loaded again, applied or put back.
//! - [`ingest`]: post messages, read in-process inboxes.
//! - [`dead_letters`]: list, read, delete and redrive dead letters, on either bus.
//! - [`map`]: the context map, as much of it as the caller may see.
//! - [`asyncapi`]: a context's AsyncAPI 3.0 document, as much of it as the caller may see.
//! - [`health`]: liveness, readiness, Prometheus metrics (open to everyone).
//! - [`openapi`]: `GET /openapi.json`, generated from the handlers.
//! - [`ui`]: the web console at `/ui`, its files compiled in.
//! - [`compat`], [`translator_runs`], [`route_stats`], [`whoami`]: what the console asks
//!   besides the rest: two contract versions compared, a translator case run, a route's
//!   counters, who a token is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower::limit::{ConcurrencyLimitLayer, GlobalConcurrencyLimitLayer};
use tower::load_shed::LoadShedLayer;
use tower_http::timeout::TimeoutLayer;

use crate::gateway::Gateway;
use crate::message::MAX_MESSAGE_BYTES;
use crate::stages::Problem;

pub mod asyncapi;
pub mod auth;
pub mod contracts;
pub mod dead_letters;
pub mod dry_run;
pub mod health;
pub mod ingest;
pub mod map;
pub mod openapi;
pub mod replays;
pub mod routes;
pub mod translators;
pub mod writes;

pub mod compat;
pub mod route_stats;
pub mod translator_runs;
pub mod ui;
pub mod whoami;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub metrics: PrometheusHandle,
    pub credentials: Arc<auth::Credentials>,
}

/// Bounds on what clients can take from the API (RELIABILITY A5, A6, A8, O2).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request that takes longer is answered 408.
    pub request_timeout: Duration,
    /// A connection that has not sent its request headers within this is closed (slowloris).
    pub header_read_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// Ingest requests in flight at most, once their bodies arrived; more are answered 503 at
    /// once (load shedding).
    pub ingest_concurrency: usize,
    /// Ingest requests in flight at most per sending context, from the headers to the answer
    /// (body included); more are answered 503 at once. Taken before the body is read, so that
    /// one context's slow or heavy requests use its share only, never the others'.
    pub ingest_per_context: usize,
    /// An ingest request's whole body must arrive within this after its headers: 408 otherwise,
    /// and the context's share is given back (slow bodies, well before `request_timeout`).
    pub body_read_timeout: Duration,
    /// Requests in flight at most on everything else under `/v1` (registration, dry runs, dead
    /// letters), counted apart from ingest so that one cannot starve the other.
    pub admin_concurrency: usize,
    /// Requests per second at most on that admin side (bursts up to as many); more are answered
    /// 503 at once. Cheap requests never fill the concurrency limit, so this is what keeps a
    /// flood of them from taking the CPU the data plane needs (RELIABILITY A9).
    pub admin_rate: u32,
    /// Bytes of request bodies held at once, on ingest and the admin side together, from their
    /// headers to their answer: each reserves its declared length (the body cap when it declares
    /// none, as a chunked body does) before it is read, and a request that finds no room is
    /// answered 503 at once. Bodies are read before the concurrency limits, so without this
    /// their memory would be bounded only by `max_connections` times the body cap. At least one
    /// body at the cap.
    pub body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1_024,
            ingest_concurrency: 256,
            ingest_per_context: 64,
            body_read_timeout: Duration::from_secs(10),
            admin_concurrency: 32,
            admin_rate: 500,
            body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The gateway's HTTP API.
pub fn router(state: AppState, limits: Limits) -> Router {
    let shed = || {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                ApiError::Overloaded.into_response()
            }))
            .layer(LoadShedLayer::new())
    };
    let budget = BodyBudget::new(limits.body_bytes);
    let shares = Arc::new(IngestShares::new(limits, budget.clone()));
    let ingest = Router::new().route(
        "/v1/contexts/{context}/messages",
        post(ingest::post_message)
            .route_layer(shed().layer(ConcurrencyLimitLayer::new(limits.ingest_concurrency.max(1))))
            // Outermost: the caller and the context first, then the context's share, then the
            // body within its deadline; only then a slot of the global limit.
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                move |State(state): State<AppState>,
                      caller: auth::Caller,
                      Path(raw_context): Path<String>,
                      request: axum::extract::Request,
                      next: axum::middleware::Next| {
                    let shares = shares.clone();
                    async move {
                        shares
                            .admit(&state, &caller, &raw_context, request, next)
                            .await
                    }
                },
            )),
    );
    Router::new()
        .merge(ingest)
        .merge(
            // Outermost first: the rate, then the body within its deadline (a slow body holds
            // no slot), then a slot of the admin side's concurrency.
            admin()
                .route_layer(shed().layer(GlobalConcurrencyLimitLayer::new(
                    limits.admin_concurrency.max(1),
                )))
                .route_layer(axum::middleware::from_fn_with_state(
                    (limits.body_read_timeout, budget),
                    body_within,
                ))
                .route_layer(axum::middleware::from_fn_with_state(
                    Arc::new(TokenBucket::new(limits.admin_rate)),
                    within_rate,
                )),
        )
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(ui::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn(problems_everywhere))
        .with_state(state)
}

/// The largest request body: a message may be up to the gateway's cap, and a structured
/// envelope takes a little more.
pub const MAX_BODY_BYTES: usize = MAX_MESSAGE_BYTES + 64 * 1024;

/// Each sending context's share of ingest, and the deadline of a request's body.
#[derive(Debug)]
struct IngestShares {
    per_context: usize,
    body_read_timeout: Duration,
    /// Shared with the admin side.
    budget: BodyBudget,
    /// One semaphore per context that posted (only contexts of the registry: the name is
    /// checked first).
    shares: std::sync::Mutex<HashMap<crate::registry::ContextName, Arc<Semaphore>>>,
}

impl IngestShares {
    fn new(limits: Limits, budget: BodyBudget) -> Self {
        Self {
            per_context: limits.ingest_per_context.max(1),
            body_read_timeout: limits.body_read_timeout,
            budget,
            shares: std::sync::Mutex::default(),
        }
    }

    /// Checks who posts for which context (401, 400, 404, 403), takes one of the context's
    /// share (503 at once when it has none left), reads the body within its budget and deadline
    /// (503, 408, or 413 past the cap), and holds the share and the body's bytes until the
    /// answer.
    async fn admit(
        &self,
        state: &AppState,
        caller: &auth::Caller,
        raw_context: &str,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> Response {
        let context = match owned_context(state, raw_context, caller) {
            Ok(context) => context,
            Err(error) => return error.into_response(),
        };
        let share = self
            .shares
            .lock()
            .expect("no code panics while holding the shares")
            .entry(context)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_context)))
            .clone();
        let Ok(_share) = share.try_acquire_owned() else {
            return ApiError::Overloaded.into_response();
        };
        match read_within(self.body_read_timeout, &self.budget, request).await {
            Ok((request, _bytes)) => next.run(request).await,
            Err(refusal) => refusal,
        }
    }
}

/// The bytes of request bodies held at once, on ingest and the admin side together
/// ([`Limits::body_bytes`]): one permit a byte.
#[derive(Debug, Clone)]
struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    fn new(bytes: usize) -> Self {
        // At least one body at the cap, so that every body within the cap can be read.
        let bytes = bytes.clamp(MAX_BODY_BYTES, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
        }
    }

    /// Reserves what `body` may weigh: its declared length (nothing for a request without a
    /// body), or the cap when it declares none (chunked); `None` when that much is not left.
    fn reserve(&self, body: &axum::body::Body) -> Option<tokio::sync::OwnedSemaphorePermit> {
        use axum::body::HttpBody as _;
        let cap = MAX_BODY_BYTES as u64;
        let bytes = body.size_hint().exact().unwrap_or(cap).min(cap);
        let bytes = u32::try_from(bytes).expect("the body cap fits in u32");
        self.bytes.clone().try_acquire_many_owned(bytes).ok()
    }
}

/// The request with its body read whole within `deadline`, and the body's bytes reserved in
/// `budget` (held until the answer, by the caller): 503 when the budget has no room for it, 408
/// when it did not arrive in time, 413 past the cap.
async fn read_within(
    deadline: Duration,
    budget: &BodyBudget,
    request: axum::extract::Request,
) -> Result<(axum::extract::Request, tokio::sync::OwnedSemaphorePermit), Response> {
    let (parts, body) = request.into_parts();
    if declared_length(&parts.headers).is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let Some(mut reserved) = budget.reserve(&body) else {
        return Err(ApiError::Overloaded.into_response());
    };
    match tokio::time::timeout(deadline, read_body(&parts.headers, body)).await {
        Ok(Ok(body)) => {
            // A chunked body gives back what it reserved and did not use.
            let unused = reserved.num_permits().saturating_sub(body.len());
            drop(reserved.split(unused));
            Ok((
                axum::extract::Request::from_parts(parts, axum::body::Body::from(body)),
                reserved,
            ))
        }
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(deadline)
            ),
        )
            .into_response()),
    }
}

/// The admin side's body deadline and budget: a registration body must arrive whole within it,
/// its bytes reserved, before the request takes an admin slot.
async fn body_within(
    axum::extract::State((deadline, budget)): axum::extract::State<(Duration, BodyBudget)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match read_within(deadline, &budget, request).await {
        Ok((request, _bytes)) => next.run(request).await,
        Err(refusal) => refusal,
    }
}

/// The length a request's headers declare for its body.
fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
}

/// 413: the body is over [`MAX_BODY_BYTES`].
fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over the cap of {MAX_BODY_BYTES} bytes"),
    )
        .into_response()
}

/// A request body, whole: 413 past [`MAX_BODY_BYTES`] (at once when its length says so), 400
/// when the client broke it off.
async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<bytes::Bytes, Response> {
    use futures_util::StreamExt as _;
    let declared = declared_length(headers);
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|_| (StatusCode::BAD_REQUEST, "the request body broke off").into_response())?;
        if buffer.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(bytes::Bytes::from(buffer))
}

/// A token bucket shared by every request it guards: `rate` tokens a second, as many at most.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    /// Tokens left, and when they were counted.
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            state: std::sync::Mutex::new((rate, std::time::Instant::now())),
        }
    }

    /// Takes a token if there is one.
    fn admit(&self) -> bool {
        let mut state = self
            .state
            .lock()
            .expect("no code panics while holding the bucket");
        let now = std::time::Instant::now();
        let (tokens, counted) = *state;
        let tokens =
            (tokens + now.duration_since(counted).as_secs_f64() * self.rate).min(self.rate);
        let admitted = tokens >= 1.0;
        *state = (if admitted { tokens - 1.0 } else { tokens }, now);
        admitted
    }
}

/// 503 at once (with `Retry-After`) past the admin side's rate.
async fn within_rate(
    axum::extract::State(bucket): axum::extract::State<Arc<TokenBucket>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if bucket.admit() {
        next.run(request).await
    } else {
        ApiError::Overloaded.into_response()
    }
}

/// Everything under `/v1` but ingest: one concurrency limit and one rate for all of it.
fn admin() -> Router<AppState> {
    Router::new()
        .route("/v1/contexts/{context}/inbox", get(ingest::take_inbox))
        .route("/v1/contexts/{context}/contracts", get(contracts::list))
        .route(
            "/v1/contexts/{context}/contracts/{name}/versions/{version}",
            get(contracts::get_version).put(contracts::put_version),
        )
        .route("/v1/contexts/{context}/translators", get(translators::list))
        .route(
            "/v1/contexts/{context}/translators/{name}",
            get(translators::get).put(translators::put),
        )
        .route("/v1/routes", get(routes::list))
        .route(
            "/v1/routes/{route}",
            get(routes::get).put(routes::put).delete(routes::delete),
        )
        .route("/v1/routes/{route}/dry-run", post(dry_run::dry_run))
        .route("/v1/dead-letters", get(dead_letters::list_unrouted))
        .route("/v1/routes/{route}/dead-letters", get(dead_letters::list))
        .route(
            "/v1/routes/{route}/dead-letters/redrive",
            post(dead_letters::redrive_all),
        )
        .route(
            "/v1/routes/{route}/dead-letters/{id}",
            get(dead_letters::get).delete(dead_letters::delete),
        )
        .route(
            "/v1/routes/{route}/dead-letters/{id}/redrive",
            post(dead_letters::redrive_one),
        )
        .route("/v1/map", get(map::get))
        .route(
            "/v1/contexts/{context}/contracts/{name}/compat",
            get(compat::compare),
        )
        .route(
            "/v1/contexts/{context}/translators/{name}/run",
            post(translator_runs::run),
        )
        .route("/v1/routes/{route}/stats", get(route_stats::get))
        .route("/v1/whoami", get(whoami::get))
        .route("/v1/contexts/{context}/asyncapi", get(asyncapi::get))
        .route("/v1/replays", post(replays::start).get(replays::list))
        .route(
            "/v1/replays/{id}",
            get(replays::get).delete(replays::cancel),
        )
}

/// Turns every error answer under `/v1` that is not a problem document yet (a body over the
/// limit, a timeout, a query that does not parse, a method not allowed) into one with the same
/// status and headers, so that clients meet one error format.
async fn problems_everywhere(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let under_v1 = request.uri().path().starts_with("/v1/");
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == b"application/problem+json");
    if !under_v1 || status.as_u16() < 400 || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4 * 1024)
        .await
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .filter(|text| !text.is_empty());
    let title = status.canonical_reason().unwrap_or("error").to_lowercase();
    let document = ProblemDocument::new(status, &title, detail, &[]);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&document).expect("problem documents serialize");
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A request body must say it is JSON (`application/json` or `application/<something>+json`):
/// 415 otherwise (RELIABILITY A6).
fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// The context a path names: 400 when the name is malformed, 404 when the registry has none.
fn known_context(state: &AppState, raw: &str) -> Result<crate::registry::ContextName, ApiError> {
    let name = crate::registry::ContextName::parse(raw)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    if state
        .gateway
        .pipeline()
        .registry()
        .contexts
        .contains_key(&name)
    {
        Ok(name)
    } else {
        Err(ApiError::NotFound(format!("no context {name}")))
    }
}

/// A route name from a path: 400 when it is malformed.
fn route_name(raw: &str) -> Result<crate::registry::RouteName, ApiError> {
    crate::registry::RouteName::parse(raw).map_err(|error| ApiError::BadRequest(error.to_string()))
}

/// The route of `pipeline` a path names: 400 when the name is malformed, 404 when there is none.
fn known_route(
    pipeline: &crate::pipeline::Pipeline,
    raw: &str,
) -> Result<Arc<crate::registry::Route>, ApiError> {
    let name = route_name(raw)?;
    pipeline
        .registry()
        .route(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no route {name}")))
}

/// The context a path names, once the caller may act for it (400, 404, then 403).
fn owned_context(
    state: &AppState,
    raw: &str,
    caller: &auth::Caller,
) -> Result<crate::registry::ContextName, ApiError> {
    let name = known_context(state, raw)?;
    caller.may_act_for(&name)?;
    Ok(name)
}

/// An error answered as `application/problem+json`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the message was refused: {title}")]
    Refused {
        title: String,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    NotFound(String),
    /// The broker did not confirm: try again later, with the same message id.
    #[error("{0}")]
    Unavailable(String),
    /// The broker did not answer an operation on dead letters: try again later.
    #[error("{0}")]
    Broker(String),
    /// In process: the message's dead letter could not be kept (the dead letters are full).
    #[error("{0}")]
    DeadLettersFull(String),
    /// No valid credential: missing, malformed or unknown (the answer never says which).
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A valid credential acting on what it does not own.
    #[error("this credential may not do that")]
    Forbidden,
    /// Too many requests of this kind in flight: try again shortly.
    #[error("too many requests in flight")]
    Overloaded,
    /// A registration refused, with every reason.
    #[error("{title}")]
    Unprocessable {
        title: String,
        problems: Vec<Problem>,
    },
    /// A contract version that breaks its contract's compatibility level: every incompatible
    /// change, the counterexample, and the checker's whole report as `compatibility`.
    #[error("{title}")]
    Incompatible {
        title: String,
        problems: Vec<Problem>,
        report: serde_json::Value,
    },
    /// It would change what is immutable.
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` / `If-None-Match` did not hold: someone else changed it first.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body is not JSON.
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// In a fleet: the registry store did not answer; nothing was registered.
    #[error("{0}")]
    StoreUnavailable(String),
    /// Our fault (the registry folder could not be written); details are in the log.
    #[error("internal error")]
    Internal,
}

impl From<crate::bus::amqp::IngestError> for ApiError {
    fn from(error: crate::bus::amqp::IngestError) -> Self {
        ApiError::Broker(error.to_string())
    }
}

/// An RFC 9457 problem document: every error under `/v1` is one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDocument {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every reason, each with its JSON pointer (or file and line) where there is one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// For an incompatible contract version: the compatibility checker's report (the level, every
    /// difference with its type, path and verdict, a counterexample).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub compatibility: Option<serde_json::Value>,
}

impl ProblemDocument {
    fn new(status: StatusCode, title: &str, detail: Option<String>, problems: &[Problem]) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            problems: problems.to_vec(),
            compatibility: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title, detail, problems): (StatusCode, &str, Option<String>, &[Problem]) =
            match &self {
                ApiError::BadRequest(detail) => (
                    StatusCode::BAD_REQUEST,
                    "bad request",
                    Some(detail.clone()),
                    &[],
                ),
                ApiError::Refused { title, problems } => {
                    (StatusCode::BAD_REQUEST, title.as_str(), None, problems)
                }
                ApiError::NotFound(detail) => (
                    StatusCode::NOT_FOUND,
                    "not found",
                    Some(detail.clone()),
                    &[],
                ),
                ApiError::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "a valid bearer token is required",
                    None,
                    &[],
                ),
                ApiError::Forbidden => (
                    StatusCode::FORBIDDEN,
                    "this credential may not do that",
                    None,
                    &[],
                ),
                ApiError::Unprocessable { title, problems }
                | ApiError::Incompatible {
                    title, problems, ..
                } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    title.as_str(),
                    None,
                    problems,
                ),
                ApiError::Conflict(detail) => {
                    (StatusCode::CONFLICT, "conflict", Some(detail.clone()), &[])
                }
                ApiError::PreconditionFailed(detail) => (
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed",
                    Some(detail.clone()),
                    &[],
                ),
                ApiError::Internal => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    None,
                    &[],
                ),
                ApiError::Overloaded => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many requests in flight; retry shortly",
                    None,
                    &[],
                ),
                ApiError::UnsupportedMediaType => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the body must be JSON (Content-Type: application/json)",
                    None,
                    &[],
                ),
                ApiError::Broker(detail) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the broker is not available; retry shortly",
                    Some(detail.clone()),
                    &[],
                ),
                ApiError::DeadLettersFull(detail) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the message failed on a route and its dead letter could not be kept; retry later with the same id",
                    Some(detail.clone()),
                    &[],
                ),
                ApiError::StoreUnavailable(detail) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the registry store is not reachable; nothing was registered, retry later",
                    Some(detail.clone()),
                    &[],
                ),
                ApiError::Unavailable(detail) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the broker did not confirm the message; retry with the same id",
                    Some(detail.clone()),
                    &[],
                ),
            };
        let mut document = ProblemDocument::new(status, title, detail, problems);
        if let ApiError::Incompatible { report, .. } = &self {
            document.compatibility = Some(report.clone());
        }
        let body = serde_json::to_vec(&document).expect("problem documents serialize");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // A store that is away takes longer to come back than a busy moment.
            let after = if matches!(self, ApiError::StoreUnavailable(_)) {
                "5"
            } else {
                "1"
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static(after));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
