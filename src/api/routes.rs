//! Routes over HTTP: a route belongs to its downstream context (the one that receives), so that
//! context lists, reads, creates, replaces and deletes it; an open-host route can only name the
//! upstream's translator, which the registry checks when it loads.
//!
//! Routes live in `contextgate.toml` as `[[routes]]` tables. A write edits that file in place with
//! `toml_edit`, so comments and the operator's layout survive: a replaced route keeps its place
//! and the comments above it, a new one goes at the end, a deleted one leaves with its comments.
//! The file then goes through [`super::writes::apply`], as every registration does.
//!
//! Every route read carries an `ETag` (a digest of the route as stored). `PUT` and `DELETE`
//! honour `If-Match` (412 when the route changed since it was read) and `If-None-Match: *`
//! (412 when it exists): two teams' concurrent updates never mix, one wins and the other is told.
//! Without those headers the last write wins.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

use super::auth::Caller;
use super::{ApiError, AppState, route_name, writes};
use crate::registry::config::{ConfigFile, RouteFile};
use crate::registry::{ContextName, RouteName};
use crate::stages::Problem;

/// The registry file that holds the routes.
const CONFIG_FILE: &str = "contextgate.toml";

/// One route as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteSummary {
    pub name: String,
    pub upstream: String,
    pub downstream: String,
    pub mode: String,
    pub accepts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translator: Option<String>,
}

/// The routes the caller owns (all of them for the operator).
#[utoipa::path(
    get,
    path = "/v1/routes",
    tag = "routes",
    responses((status = 200, description = "The caller's routes.", body = Vec<RouteSummary>), super::openapi::Refusals)
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<RouteSummary>>, ApiError> {
    let pipeline = state.gateway.pipeline();
    Ok(Json(
        pipeline
            .registry()
            .routes
            .iter()
            .filter(|route| caller.may_act_for(&route.downstream).is_ok())
            .map(|route| RouteSummary {
                name: route.name.to_string(),
                upstream: route.upstream.to_string(),
                downstream: route.downstream.to_string(),
                mode: route.mode.as_str().to_owned(),
                accepts: route
                    .accepts
                    .iter()
                    .map(|version| version.id.to_string())
                    .collect(),
                translator: route
                    .translator
                    .as_ref()
                    .map(|translator| translator.id.to_string()),
            })
            .collect(),
    ))
}

/// One route as `contextgate.toml` holds it, with its `ETag`.
#[utoipa::path(
    get,
    path = "/v1/routes/{route}",
    tag = "routes",
    params(("route" = String, Path, description = "The route (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,63}$")),
    responses(
        (status = 200, description = "The route.", body = RouteFile<String>,
            headers(("ETag" = String, description = "Its entity tag, for If-Match."))),
        super::openapi::Refusals,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_route): UrlPath<String>,
) -> Result<Response, ApiError> {
    let name = route_name(&raw_route)?;
    let root = state.gateway.pipeline().registry().root.clone();
    let stored = stored_route(&root, &name)?
        .ok_or_else(|| ApiError::NotFound(format!("no route {name}")))?;
    caller.may_act_for(&owner(&stored)?)?;
    Ok(with_etag(StatusCode::OK, &stored))
}

/// Creates or replaces a route (the route's downstream context owns it). Refused when it names
/// what does not exist or breaks the ownership rules. `If-Match` / `If-None-Match: *` make
/// concurrent updates safe (412 when the route changed since it was read).
#[utoipa::path(
    put,
    path = "/v1/routes/{route}",
    tag = "routes",
    params(
        ("route" = String, Path, description = "The route (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,63}$"),
        ("If-Match" = Option<String>, Header, description = "Only if the route's ETag is one of these."),
        ("If-None-Match" = Option<String>, Header, description = "`*`: only if there is no such route."),
    ),
    request_body = RouteFile<Option<String>>,
    responses(
        (status = 201, description = "Created, written and applied.", body = RouteFile<String>,
            headers(("ETag" = String, description = "Its entity tag."))),
        (status = 200, description = "Replaced, written and applied.", body = RouteFile<String>,
            headers(("ETag" = String, description = "Its entity tag."))),
        (status = 409, description = "contextgate.toml keeps its routes in a form the API does not edit.", body = super::ProblemDocument, content_type = "application/problem+json"),
        (status = 412, description = "If-Match or If-None-Match did not hold.", body = super::ProblemDocument, content_type = "application/problem+json"),
        super::openapi::Refusals, super::openapi::BodyRefusals,
    )
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_route): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = route_name(&raw_route)?;
    super::require_json(&headers)?;
    let refused = || format!("route {name} was not registered");
    let route: RouteFile<Option<String>> =
        serde_json::from_slice(&body).map_err(|error| ApiError::Unprocessable {
            title: refused(),
            problems: vec![Problem::new(format!("the body is not a route: {error}"))],
        })?;
    if route
        .name
        .as_deref()
        .is_some_and(|named| named != name.as_str())
    {
        return Err(ApiError::Unprocessable {
            title: refused(),
            problems: vec![Problem::at(
                "/name",
                format!("the body names another route than the path ({name})"),
            )],
        });
    }
    let downstream =
        ContextName::parse(&route.downstream).map_err(|error| ApiError::Unprocessable {
            title: refused(),
            problems: vec![Problem::at("/downstream", error.to_string())],
        })?;
    caller.may_act_for(&downstream)?;
    let route = route.with_name(name.to_string());

    let one_at_a_time = writes::turn(&state.gateway).await?;
    let root = state.gateway.pipeline().registry().root.clone();
    let before = stored_route(&root, &name)?;
    if let Some(before) = &before {
        caller.may_act_for(&owner(before)?)?;
    }
    preconditions(&headers, before.as_ref())?;
    let path = root.join(CONFIG_FILE);
    let source = std::fs::read_to_string(&path).map_err(internal)?;
    let edited = edit_routes(&source, &name, Some(&route))?;
    writes::apply(
        &state.gateway,
        one_at_a_time,
        &root,
        vec![(path, edited.into_bytes())],
        writes::Authorship::new(&caller, format!("put route {name}")),
        refused,
    )
    .await?;
    let replaced = before.is_some();
    tracing::info!(?caller, route = %name, replaced, "Route registered.");
    Ok(with_etag(
        if replaced {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        &route,
    ))
}

/// Deletes a route. Its queue on RabbitMQ stays, with what it holds, for the operator.
#[utoipa::path(
    delete,
    path = "/v1/routes/{route}",
    tag = "routes",
    params(
        ("route" = String, Path, description = "The route (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,63}$"),
        ("If-Match" = Option<String>, Header, description = "Only if the route's ETag is one of these."),
    ),
    responses(
        (status = 204, description = "Deleted and applied."),
        (status = 412, description = "If-Match did not hold.", body = super::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The registry would not load without it.", body = super::ProblemDocument, content_type = "application/problem+json"),
        super::openapi::Refusals,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_route): UrlPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let name = route_name(&raw_route)?;
    let one_at_a_time = writes::turn(&state.gateway).await?;
    let root = state.gateway.pipeline().registry().root.clone();
    let before = stored_route(&root, &name)?
        .ok_or_else(|| ApiError::NotFound(format!("no route {name}")))?;
    caller.may_act_for(&owner(&before)?)?;
    preconditions(&headers, Some(&before))?;
    let path = root.join(CONFIG_FILE);
    let source = std::fs::read_to_string(&path).map_err(internal)?;
    let edited = edit_routes(&source, &name, None)?;
    writes::apply(
        &state.gateway,
        one_at_a_time,
        &root,
        vec![(path, edited.into_bytes())],
        writes::Authorship::new(&caller, format!("delete route {name}")),
        || format!("route {name} was not deleted"),
    )
    .await?;
    tracing::info!(?caller, route = %name, "Route deleted.");
    Ok(StatusCode::NO_CONTENT)
}

fn owner(route: &RouteFile<String>) -> Result<ContextName, ApiError> {
    // The stored registry loaded cleanly, so its downstream is a valid name.
    ContextName::parse(&route.downstream).map_err(|_| ApiError::Internal)
}

fn internal(error: std::io::Error) -> ApiError {
    tracing::error!(%error, "Reading {CONFIG_FILE} failed.");
    ApiError::Internal
}

/// The route named `name` as `contextgate.toml` holds it now.
fn stored_route(
    root: &std::path::Path,
    name: &RouteName,
) -> Result<Option<RouteFile<String>>, ApiError> {
    let path = root.join(CONFIG_FILE);
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(internal(error)),
    };
    let config: ConfigFile = toml::from_str(&source).map_err(|error| {
        tracing::error!(%error, "{CONFIG_FILE} no longer parses.");
        ApiError::Internal
    })?;
    let Some(route) = config
        .routes
        .into_iter()
        .find(|route| route.name.get_ref() == name.as_str())
    else {
        return Ok(None);
    };
    let stored_name = route.name.get_ref().clone();
    Ok(Some(route.with_name(stored_name)))
}

/// The entity tag of a route: a digest of its canonical JSON.
fn etag(route: &RouteFile<String>) -> String {
    let json = serde_json::to_vec(route).expect("routes serialize");
    let digest = Sha256::digest(json);
    format!("\"{}\"", crate::registry::hex(&digest[..16]))
}

fn with_etag(status: StatusCode, route: &RouteFile<String>) -> Response {
    let mut response = (status, Json(route)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(route)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `If-Match` (a list of tags, or `*`) must name the stored route's tag; `If-None-Match: *`
/// requires that there is none.
fn preconditions(headers: &HeaderMap, stored: Option<&RouteFile<String>>) -> Result<(), ApiError> {
    let current = stored.map(etag);
    if let Some(value) = headers.get(header::IF_MATCH) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::BadRequest("If-Match is not ASCII".into()))?;
        let holds = match &current {
            None => false,
            Some(_) if value.trim() == "*" => true,
            Some(tag) => value.split(',').any(|candidate| candidate.trim() == tag),
        };
        if !holds {
            return Err(ApiError::PreconditionFailed(
                "the route changed since it was read (If-Match): read it again".into(),
            ));
        }
    }
    if let Some(value) = headers.get(header::IF_NONE_MATCH)
        && value.as_bytes() == b"*"
        && current.is_some()
    {
        return Err(ApiError::PreconditionFailed(
            "the route exists (If-None-Match: *)".into(),
        ));
    }
    Ok(())
}

/// `contextgate.toml` with route `name` replaced by `route` (added at the end when there is none)
/// or removed (`None`), everything else kept as it was written.
fn edit_routes(
    source: &str,
    name: &RouteName,
    route: Option<&RouteFile<String>>,
) -> Result<String, ApiError> {
    let mut document: DocumentMut = source.parse().map_err(|error| {
        tracing::error!(%error, "{CONFIG_FILE} no longer parses.");
        ApiError::Internal
    })?;
    let routes = document
        .entry("routes")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or_else(|| ApiError::Conflict(format!(
            "{CONFIG_FILE} writes its routes in a form the API does not edit: use [[routes]] tables"
        )))?;
    let index = routes
        .iter()
        .position(|table| table.get("name").and_then(Item::as_str) == Some(name.as_str()));
    match (route, index) {
        (Some(route), Some(index)) => {
            let mut table = route_table(route)?;
            let old = routes.get_mut(index).expect("the index was just found");
            *table.decor_mut() = old.decor().clone();
            *old = table;
        }
        (Some(route), None) => {
            let mut table = route_table(route)?;
            table.decor_mut().set_prefix("\n");
            routes.push(table);
        }
        (None, Some(index)) => {
            routes.remove(index);
        }
        (None, None) => {}
    }
    Ok(document.to_string())
}

/// A route as a `[[routes]]` table, its keys in the order of [`RouteFile`].
fn route_table(route: &RouteFile<String>) -> Result<Table, ApiError> {
    let text = toml::to_string(route).map_err(|error| ApiError::Unprocessable {
        title: format!("route {} was not registered", route.name),
        problems: vec![Problem::new(format!(
            "the route cannot be written as TOML: {error}"
        ))],
    })?;
    let document: DocumentMut = text.parse().map_err(|_| ApiError::Internal)?;
    let mut table = document.as_table().clone();
    // Positions belong to the document the table was parsed from; the edited file places it.
    clear_positions(&mut table);
    Ok(table)
}

fn clear_positions(table: &mut Table) {
    table.set_position(None);
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(inner) => clear_positions(inner),
            Item::ArrayOfTables(array) => array.iter_mut().for_each(clear_positions),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"# The registry.
[contexts.orders]

# First route: kept as it is.
[[routes]]
name = "a"
upstream = "orders"
downstream = "payments"
mode = "conformist"
accepts = ["payments/AuthorizePayment@1"]

# Second route: about to change.
[[routes]]
name = "b"
upstream = "orders"
downstream = "shipping"
mode = "conformist"
accepts = ["orders/OrderPlaced@2"]
"#;

    fn route(name: &str) -> RouteFile<String> {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "upstream": "orders",
            "downstream": "shipping",
            "mode": "enrich",
            "accepts": ["orders/OrderPlaced@2"],
            "on_failure": {"enrich": "retry"},
            "lookups": [{"name": "customer", "url": "http://127.0.0.1:9100/c/{/customer_id}"}],
        }))
        .unwrap()
    }

    #[test]
    fn replacing_keeps_the_place_and_the_comments() {
        let name = RouteName::parse("b").unwrap();
        let edited = edit_routes(SOURCE, &name, Some(&route("b"))).unwrap();
        assert!(edited.starts_with("# The registry.\n[contexts.orders]\n\n# First route"));
        assert!(edited.contains("# Second route: about to change.\n[[routes]]\nname = \"b\""));
        assert!(edited.contains("[routes.on_failure]\nenrich = \"retry\""));
        assert!(edited.contains("[[routes.lookups]]\nname = \"customer\""));
        let config: ConfigFile = toml::from_str(&edited).unwrap();
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.routes[1].mode, "enrich");
        assert_eq!(config.routes[1].lookups.len(), 1);
    }

    #[test]
    fn adding_goes_last_and_deleting_takes_the_comments_along() {
        let added =
            edit_routes(SOURCE, &RouteName::parse("c").unwrap(), Some(&route("c"))).unwrap();
        let config: ConfigFile = toml::from_str(&added).unwrap();
        let names: Vec<_> = config
            .routes
            .iter()
            .map(|r| r.name.get_ref().as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);

        let deleted = edit_routes(&added, &RouteName::parse("b").unwrap(), None).unwrap();
        assert!(!deleted.contains("Second route"));
        let config: ConfigFile = toml::from_str(&deleted).unwrap();
        let names: Vec<_> = config
            .routes
            .iter()
            .map(|r| r.name.get_ref().as_str())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert!(deleted.contains("# First route: kept as it is."));
    }

    #[test]
    fn preconditions_compare_entity_tags() {
        let stored = route("b");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"nope\""));
        assert!(preconditions(&headers, Some(&stored)).is_err());
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_str(&etag(&stored)).unwrap(),
        );
        assert!(preconditions(&headers, Some(&stored)).is_ok());
        assert!(preconditions(&headers, None).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(preconditions(&headers, Some(&stored)).is_err());
        assert!(preconditions(&headers, None).is_ok());
    }
}
