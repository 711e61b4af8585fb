//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they take and return, so it cannot drift from the
//! code. Every error under `/v1` is an RFC 9457 problem document (`application/problem+json`),
//! whatever produced it (a handler, a body limit, a timeout, load shedding): see
//! [`super::problems_everywhere`].

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::ProblemDocument;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "contextgate",
        description = "An integration gateway between bounded contexts: contracts, translators, \
            routes, ingest and dead letters. Every request under /v1 carries `Authorization: \
            Bearer <token>`: a context's token acts for that context only, the operator's for all.",
    ),
    paths(
        super::ingest::post_message,
        super::ingest::take_inbox,
        super::contracts::list,
        super::contracts::get_version,
        super::contracts::put_version,
        super::translators::list,
        super::translators::get,
        super::translators::put,
        super::routes::list,
        super::routes::get,
        super::routes::put,
        super::routes::delete,
        super::dry_run::dry_run,
        super::dead_letters::list_unrouted,
        super::dead_letters::list,
        super::dead_letters::get,
        super::dead_letters::delete,
        super::dead_letters::redrive_one,
        super::dead_letters::redrive_all,
        super::replays::start,
        super::replays::list,
        super::replays::get,
        super::replays::cancel,
        super::map::get,
        super::compat::compare,
        super::translator_runs::run,
        super::route_stats::get,
        super::whoami::get,
        super::asyncapi::get,
        super::health::live,
        super::health::ready,
        super::health::metrics,
        openapi_json,
    ),
    modifiers(&BearerTokens),
    tags(
        (name = "ingest", description = "Messages in, and in-process inboxes."),
        (name = "contracts", description = "A context's message contracts, by version."),
        (name = "translators", description = "Rhai translators, owned per relationship mode."),
        (name = "routes", description = "Routes between contexts, owned by their downstream."),
        (name = "dead letters", description = "What could not be delivered, and its redrive."),
        (name = "replays", description = "A window of a context's archive through today's routes."),
        (name = "map", description = "The context map: who talks to whom, and how."),
        (name = "asyncapi", description = "A context's AsyncAPI 3.0 document."),
        (name = "operations", description = "Health, metrics, this document."),
    )
)]
pub struct ApiDoc;

/// The bearer scheme, required everywhere but where an operation says otherwise.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The answers every authenticated operation may give besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    /// A malformed name or parameter (lowercase ASCII ids; no `..`, NUL or over-long names).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDocument),
    /// No valid bearer token (missing, malformed or unknown: the answer never says which).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDocument),
    /// A valid token acting on what its context does not own.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDocument),
    /// No such context, contract, translator, route or dead letter.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDocument),
    /// The request took longer than the request timeout.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(ProblemDocument),
    /// Too many requests of this kind in flight (load shedding): retry after `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Overloaded(ProblemDocument),
}

/// The answers an operation with a JSON body may also give.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BodyRefusals {
    /// The body is over the size cap.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDocument),
    /// The body is not JSON (`Content-Type: application/json`).
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDocument),
    /// Refused, with every reason (and its JSON pointer or file and line).
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDocument),
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
