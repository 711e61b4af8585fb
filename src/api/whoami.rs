//! `GET /v1/whoami`: who the caller's token acts as, so that a client (the console) shows what
//! that caller may see, and knows whether the API is open (no credentials configured).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::auth::Caller;

/// Who the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// `operator` (may do everything) or `context` (acts for `context` only).
    pub role: String,
    /// The context a context's token acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// True when no credentials are configured: every request acts as the operator.
    pub open: bool,
}

/// Who the caller's token acts as.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "operations",
    responses((status = 200, description = "The caller.", body = Identity), super::openapi::Refusals)
)]
pub async fn get(State(state): State<AppState>, caller: Caller) -> Json<Identity> {
    let open = state.credentials.is_open();
    Json(match caller {
        Caller::Operator => Identity {
            role: "operator".to_owned(),
            context: None,
            open,
        },
        Caller::Context(context) => Identity {
            role: "context".to_owned(),
            context: Some(context.to_string()),
            open,
        },
    })
}
