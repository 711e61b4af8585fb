//! Ingest over HTTP: `POST /v1/contexts/{context}/messages` takes one CloudEvent — structured
//! (`application/cloudevents+json`) or binary (`ce-` headers, JSON body: the CloudEvents HTTP
//! binding) — from that context and answers once every route has acted on it: 202 with what
//! happened on each route, or 400 with the problems (and their JSON pointers) when it is refused
//! before routing. On RabbitMQ, 202 once the broker confirmed the message on the context's
//! outbound exchange, 503 with `Retry-After` when it did not (the message may still have been
//! stored: retry with the same id). `GET /v1/contexts/{context}/inbox?max=N` takes the messages
//! delivered to a context out of its in-process inbox.
//! Posting as a context and reading its inbox take that context's token (or the operator's).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, AppState, owned_context};
use crate::bus::Bus;
use crate::gateway::Ingested;
use crate::message::Message;
use crate::message::cloudevents;
use crate::pipeline::{Delivery, Outcome};

/// What happened to a posted message on one route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteReport {
    pub route: String,
    pub outcome: &'static str,
    /// Messages forwarded (forward only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    /// Why it was dropped, retried or dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub routes: Vec<RouteReport>,
}

/// A delivery from an HTTP request: its content type, the headers that describe the message
/// (CloudEvents attributes and extensions, trace context) as text, its body. The request's own
/// headers (credentials, cookies, hop-by-hop) are left behind: a dead letter keeps its input's
/// headers, and the route's downstream reads them.
pub(super) fn delivery(headers: &HeaderMap, body: Bytes) -> Delivery {
    Delivery {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        headers: headers
            .iter()
            .filter(|(name, _)| cloudevents::describes_message(name.as_str()))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body,
    }
}

/// Posts one CloudEvent from `context`.
///
/// Structured (`Content-Type: application/cloudevents+json`) or binary (`ce-` headers, the
/// data as the body). In process: 202 once every route acted on it. On RabbitMQ: 202 once the
/// broker confirmed it; 503 with `Retry-After` when it did not (which does not prove it was not
/// stored: retry with the same id).
#[utoipa::path(
    post,
    path = "/v1/contexts/{context}/messages",
    tag = "ingest",
    params(("context" = String, Path, description = "The sending context (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,31}$")),
    request_body(content = Object, content_type = "application/cloudevents+json",
        description = "A structured-mode CloudEvent whose `type` and `dataschema` name a contract version."),
    responses(
        (status = 202, description = "Taken: what each route did with it (or will do).", body = Accepted),
        (status = 413, description = "The body is over the message size cap.", body = super::ProblemDocument, content_type = "application/problem+json"),
        super::openapi::Refusals,
    )
)]
pub async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_context): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let from = owned_context(&state, &raw_context, &caller)?;
    let delivery = delivery(&headers, body);
    match state.gateway.ingest(&from, delivery).await {
        Ingested::Refused(failure) => Err(ApiError::Refused {
            title: format!("{} failed ({})", failure.stage, failure.reason),
            problems: failure.problems,
        }),
        Ingested::Published(routes) => Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                routes: routes
                    .into_iter()
                    .map(|route| RouteReport {
                        route: route.to_string(),
                        outcome: "published",
                        messages: None,
                        reason: None,
                    })
                    .collect(),
            }),
        )),
        Ingested::Unavailable(error) => Err(ApiError::Unavailable(error.to_string())),
        Ingested::NotKept(full) => Err(ApiError::DeadLettersFull(full.to_string())),
        Ingested::Routed(verdicts) => {
            let routes = verdicts
                .into_iter()
                .map(|verdict| {
                    let route = verdict
                        .route
                        .map(|name| name.to_string())
                        .unwrap_or_default();
                    match verdict.outcome {
                        Outcome::Forward { messages } => RouteReport {
                            route,
                            outcome: "forward",
                            messages: Some(messages.len()),
                            reason: None,
                        },
                        Outcome::Drop { reason } => RouteReport {
                            route,
                            outcome: "drop",
                            messages: None,
                            reason: Some(reason),
                        },
                        Outcome::Retry { failure, .. } => RouteReport {
                            route,
                            outcome: "retry",
                            messages: None,
                            reason: Some(failure.to_string()),
                        },
                        Outcome::DeadLetter { failure } => RouteReport {
                            route,
                            outcome: "dead-letter",
                            messages: None,
                            reason: Some(failure.to_string()),
                        },
                    }
                })
                .collect();
            Ok((StatusCode::ACCEPTED, Json(Accepted { routes })))
        }
    }
}

/// The most bytes of messages one inbox read answers with (the oldest message is always taken,
/// whatever it weighs); the rest waits for the next read.
pub const MAX_INBOX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// How many messages to take at most (default 100, at most 1 000; and no more than 8 MiB).
    #[serde(default)]
    pub max: Option<usize>,
}

/// Takes the messages delivered to `context` out of its in-process inbox, oldest first (on
/// RabbitMQ: 404, the messages are on the context's inbound exchange).
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/inbox",
    tag = "ingest",
    params(("context" = String, Path, description = "The receiving context.", pattern = "^[a-z][a-z0-9-]{0,31}$"), InboxQuery),
    responses(
        (status = 200, description = "The messages taken (CloudEvents, structured).", body = Vec<Object>),
        super::openapi::Refusals,
    )
)]
pub async fn take_inbox(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_context): Path<String>,
    Query(query): Query<InboxQuery>,
) -> Result<Json<Vec<Message>>, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let max = query.max.unwrap_or(100).min(1_000);
    match state.gateway.bus() {
        Bus::InProcess(bus) => Ok(Json(bus.take(&context, max, MAX_INBOX_ANSWER_BYTES))),
        Bus::Amqp(bus) => Err(ApiError::NotFound(format!(
            "on RabbitMQ a context's messages are on exchange {}: bind a queue to it",
            bus.names().inbound(&context)
        ))),
    }
}
