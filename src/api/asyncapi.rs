//! `GET /v1/contexts/{context}/asyncapi`: a context's AsyncAPI 3.0 document, behind the same
//! tokens as the rest of the API. Any caller may ask for any context's document, and gets what
//! [`crate::asyncapi`] gives its viewer: the operator everything; a context (this one or another)
//! only published contracts and its own, never another context's internal contracts; of the
//! routes into the context, those the caller sees on the context map. The server is the broker
//! of `--amqp-url` (never its credentials); on the in-process bus, a placeholder.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::auth::Caller;
use super::{ApiError, AppState, known_context};
use crate::asyncapi::{AsyncApiError, Broker, Server, document};
use crate::bus::Bus;
use crate::bus::amqp::topology::Names;
use crate::map::Viewer;

/// The context's AsyncAPI 3.0 document as the caller may see it: its exchanges and the route
/// queues that feed it (AMQP 0.9.1 bindings), a message per contract version (its schema by
/// `$ref`, CloudEvents headers as the trait `cloudEventsBinary`), and the send and receive
/// operations its routes make.
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/asyncapi",
    tag = "asyncapi",
    params(("context" = String, Path, description = "The context described.", pattern = "^[a-z][a-z0-9-]{0,31}$")),
    responses(
        (status = 200, description = "The AsyncAPI 3.0.0 document.", body = Object),
        super::openapi::Refusals,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_context): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let context = known_context(&state, &raw_context)?;
    let pipeline = state.gateway.pipeline();
    let broker = broker_of(state.gateway.bus());
    document(
        pipeline.registry(),
        &context,
        &Viewer::from(&caller),
        &broker,
    )
    .map(Json)
    .map_err(|error| match error {
        AsyncApiError::UnknownContext(_) => ApiError::NotFound(error.to_string()),
    })
}

/// The broker the gateway runs on: its URL's server (a URL it could not read, or the in-process
/// bus: a placeholder) and its names.
fn broker_of(bus: &Bus) -> Broker {
    match bus {
        Bus::Amqp(bus) => Broker {
            server: Server::from_url(&bus.settings().url).ok(),
            names: bus.names().clone(),
        },
        Bus::InProcess(_) => Broker {
            server: None,
            names: Names::new(""),
        },
    }
}
