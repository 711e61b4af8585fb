//! `POST /v1/contexts/{context}/translators/{name}/run`: one test case through one of a
//! context's translators, as `contextgate check` and a registration run them: in the sandbox
//! (the one hardened engine, its limits and deadline; a translator never sees the network or the
//! disk), the input checked against the input contract, the outputs against the output contract.
//! The answer says what the translator returned and whether the case passed; nothing is written
//! or published. The console's "run" button on a translator's case.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use serde_json::Value;

use super::auth::Caller;
use super::{ApiError, AppState, owned_context};
use crate::registry::TranslatorId;
use crate::registry::cases::{self, CaseRun};
use crate::stages::Problem;

/// Runs one case (as `<name>.cases.json` holds them: `name`, `input`, `meta`, and exactly one of
/// `expect`, `expect_many`, `expect_drop: true`, `expect_error`).
#[utoipa::path(
    post,
    path = "/v1/contexts/{context}/translators/{name}/run",
    tag = "translators",
    params(
        ("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$"),
        ("name" = String, Path, description = "The translator (snake_case).", pattern = "^[a-z][a-z0-9_]{0,63}$"),
    ),
    request_body(content = Object, content_type = "application/json", description = "One test case."),
    responses(
        (status = 200, description = "What the translator did, and whether the case passed.", body = CaseRun),
        super::openapi::Refusals, super::openapi::BodyRefusals,
    )
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name)): UrlPath<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<CaseRun>, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let id = TranslatorId::new(context, &raw_name)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    super::require_json(&headers)?;
    let refused = |message: String| ApiError::Unprocessable {
        title: "the case was not run".to_owned(),
        problems: vec![Problem::new(message)],
    };
    let case: Value = serde_json::from_slice(&body)
        .map_err(|error| refused(format!("the body is not JSON: {error}")))?;
    let (mut parsed, problems) = cases::parse(Value::Array(vec![case]));
    if let Some(problem) = problems.into_iter().next() {
        return Err(refused(problem));
    }
    let case = parsed
        .pop()
        .ok_or_else(|| refused("the body is not a test case".to_owned()))?;
    let pipeline = state.gateway.pipeline();
    let translator = pipeline
        .registry()
        .translators
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no translator {id}")))?;
    // The script runs within the sandbox's deadline; off the runtime's threads all the same.
    tokio::task::spawn_blocking(move || cases::try_case(&translator, &case))
        .await
        .map(Json)
        .map_err(|error| {
            tracing::error!(%error, "A translator case failed to run.");
            ApiError::Internal
        })
}
