//! `GET /v1/contexts/{context}/contracts/{name}/compat?from=V&to=W`: the differences between two
//! versions of one of a context's contracts, in both directions, with the verdict at the
//! contract's own compatibility level and, for each incompatible direction, a counterexample (a
//! document the real validators accept under one version and reject under the other). What the
//! console's contract diff shows; the same checker (`crate::compat`) that `contextgate compat`,
//! `check --against` and the registration API use.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, AppState, owned_context};
use crate::compat::{self, Direction, Schemas, Version};
use crate::registry::ContractName;

/// The two versions to compare.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompatQuery {
    /// The earlier version (the one documents were written for).
    #[param(minimum = 1)]
    pub from: u32,
    /// The later version.
    #[param(minimum = 1)]
    pub to: u32,
}

/// Two versions compared.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub contract: String,
    pub from: u32,
    pub to: u32,
    /// The contract's compatibility level (`none`, `backward`, `full-transitive`, ...).
    pub level: String,
    /// `strict` or `lenient`.
    pub policy: String,
    /// `compatible`, `incompatible` or `undecided`: `to` after `from` at the contract's level
    /// (only the directions the level checks count; `none` is always compatible).
    pub verdict: String,
    /// Backward (documents of `from` stay valid under `to`) and forward (documents of `to` are
    /// valid under `from`), whatever the level.
    pub directions: Vec<DirectionReport>,
}

/// One direction of a comparison.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DirectionReport {
    /// `backward` or `forward`.
    pub direction: String,
    /// Whether the contract's level checks this direction.
    pub checked_by_level: bool,
    /// `compatible`, `incompatible` or `undecided`.
    pub verdict: String,
    pub changes: Vec<ChangeView>,
    /// A document valid under one version and rejected by the other, checked with the real
    /// validators; when the direction is incompatible and one was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub counterexample: Option<compat::Counterexample>,
    /// Why it could not be decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
}

/// One difference, as Confluent's checker names it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    /// The difference type (`PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Where, as `#/properties/...`.
    pub path: String,
    pub compatible: bool,
}

/// Compares two versions of a contract the caller's context owns.
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/contracts/{name}/compat",
    tag = "contracts",
    params(
        ("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$"),
        ("name" = String, Path, description = "The contract (PascalCase).", pattern = "^[A-Z][A-Za-z0-9]{0,127}$"),
        CompatQuery,
    ),
    responses((status = 200, description = "The differences, the verdict and counterexamples.", body = Comparison), super::openapi::Refusals)
)]
pub async fn compare(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name)): UrlPath<(String, String)>,
    Query(query): Query<CompatQuery>,
) -> Result<Json<Comparison>, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let name = ContractName::new(context, &raw_name)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let pipeline = state.gateway.pipeline();
    let contract = pipeline
        .registry()
        .contracts
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no contract {name}")))?;
    for version in [query.from, query.to] {
        if contract.version(version).is_none() {
            return Err(ApiError::NotFound(format!(
                "no version {version} of {name}"
            )));
        }
    }
    // Comparing and searching a counterexample is CPU work within a budget: off the runtime.
    let registry = pipeline.registry().clone();
    tokio::task::spawn_blocking(move || compare_versions(&registry, &name, query.from, query.to))
        .await
        .map_err(|error| {
            tracing::error!(%error, "A contract comparison failed.");
            ApiError::Internal
        })?
        .map(Json)
}

fn compare_versions(
    registry: &crate::registry::Registry,
    name: &ContractName,
    from: u32,
    to: u32,
) -> Result<Comparison, ApiError> {
    let contract = registry
        .contracts
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no contract {name}")))?;
    let version = |number: u32| {
        contract.version(number).map(|version| Version {
            validator: Some(&version.validator),
            ..Version::new(number, &version.resolved, &version.base)
        })
    };
    let (Some(earlier), Some(later)) = (version(from), version(to)) else {
        return Err(ApiError::NotFound(format!("no such version of {name}")));
    };
    let documents = crate::evolution::documents(registry);
    let schemas = Schemas::new(&documents);
    let checked = contract.compatibility.directions();
    let directions: Vec<DirectionReport> = [Direction::Backward, Direction::Forward]
        .into_iter()
        .map(|direction| {
            let (original, update) = match direction {
                Direction::Backward => (&earlier, &later),
                Direction::Forward => (&later, &earlier),
            };
            let checked_by_level = checked.contains(&direction);
            let direction_name = match direction {
                Direction::Backward => "backward",
                Direction::Forward => "forward",
            };
            match compat::diff(original, update, &schemas, contract.policy) {
                Ok(changes) => {
                    let compatible = changes.iter().all(|change| change.compatible);
                    DirectionReport {
                        direction: direction_name.to_owned(),
                        checked_by_level,
                        verdict: if compatible {
                            "compatible"
                        } else {
                            "incompatible"
                        }
                        .to_owned(),
                        counterexample: (!compatible)
                            .then(|| compat::counterexample(original, update, &schemas))
                            .flatten(),
                        changes: changes
                            .into_iter()
                            .map(|change| ChangeView {
                                kind: change.kind.name().to_owned(),
                                path: change.path,
                                compatible: change.compatible,
                            })
                            .collect(),
                        undecided: None,
                    }
                }
                Err(undecided) => DirectionReport {
                    direction: direction_name.to_owned(),
                    checked_by_level,
                    verdict: "undecided".to_owned(),
                    changes: Vec::new(),
                    counterexample: None,
                    undecided: Some(undecided.to_string()),
                },
            }
        })
        .collect();
    let counted = directions.iter().filter(|report| report.checked_by_level);
    let verdict = if counted
        .clone()
        .any(|report| report.verdict == "incompatible")
    {
        "incompatible"
    } else if counted.clone().any(|report| report.verdict == "undecided") {
        "undecided"
    } else {
        "compatible"
    };
    Ok(Comparison {
        contract: name.to_string(),
        from,
        to,
        level: contract.compatibility.as_str().to_owned(),
        policy: match contract.policy {
            compat::Policy::Strict => "strict",
            compat::Policy::Lenient => "lenient",
        }
        .to_owned(),
        verdict: verdict.to_owned(),
        directions,
    })
}
