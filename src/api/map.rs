//! `GET /v1/map`: the context map, behind the same tokens as the rest of the API. The operator
//! sees it whole; a context's token sees what [`Viewer::sees`] gives it: its own routes, and
//! every route that carries a type it may read (published, or its own), with only those types.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::map::{Format, Map, Viewer};

/// How to answer.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapQuery {
    /// `json` (the default), `mermaid`, `dot` or `svg`.
    #[serde(default)]
    pub format: Option<Format>,
}

impl From<&Caller> for Viewer {
    fn from(caller: &Caller) -> Self {
        match caller {
            Caller::Operator => Viewer::Operator,
            Caller::Context(context) => Viewer::Context(context.clone()),
        }
    }
}

/// The context map as the caller may see it: contexts as nodes, routes as edges with their
/// relationship (CF, OHS/PL, ACL, enrichment), upstream/downstream roles, message types and
/// whether they are ordered.
#[utoipa::path(
    get,
    path = "/v1/map",
    tag = "map",
    params(MapQuery),
    responses(
        (status = 200, description = "The map in the format asked for.", content(
            (Map = "application/json"),
            (String = "image/svg+xml"),
            (String = "text/vnd.graphviz"),
            (String = "text/vnd.mermaid"),
        )),
        super::openapi::Refusals,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<MapQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.unwrap_or(Format::Json);
    let pipeline = state.gateway.pipeline();
    let map = Map::of(pipeline.registry()).seen_by(&Viewer::from(&caller));
    let content_type = match format {
        Format::Json => "application/json",
        Format::Svg => "image/svg+xml",
        Format::Dot => "text/vnd.graphviz; charset=utf-8",
        Format::Mermaid => "text/vnd.mermaid; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], format.render(&map)).into_response())
}
