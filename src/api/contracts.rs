//! Contracts over HTTP: a context lists, reads and registers the versions of its own contracts.
//!
//! `PUT /v1/contexts/{context}/contracts/{Name}/versions/{N}` with the JSON Schema as the body
//! registers version N: it must be the next one (1 for a new contract, which also needs
//! `?kind=event|command`, and may say `&visibility=published|internal`). The schema is written
//! into the registry folder (the layout `contextgate check` reads, written atomically), the
//! whole registry is loaded again, and only if it loads cleanly does the running gateway switch
//! to it; otherwise the files are taken back and the answer is 422 with every problem. A
//! published version is immutable: the same content again is 200, other content 409.
//! Registrations run one at a time; each applied one is logged with who made it.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::writes;
use super::{ApiError, AppState, owned_context};
use crate::registry::{ContextName, ContractName, MessageKind, Visibility};
use crate::stages::Problem;

/// One contract as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContractSummary {
    pub name: String,
    pub kind: MessageKind,
    pub visibility: Visibility,
    pub versions: Vec<u32>,
    /// What the collection a version was imported from called it (its semver, or the commit),
    /// by version number; only versions that have one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<u32, String>,
}

/// What a registration did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub contract: String,
    /// False when the same content was registered again.
    pub created: bool,
}

/// What a contract's first version must say about the contract.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewContract {
    /// `event` or `command`: required with a contract's first version.
    #[serde(default)]
    pub kind: Option<String>,
    /// `published` (default) or `internal`.
    #[serde(default)]
    pub visibility: Option<String>,
    /// Registers a version that breaks the contract's compatibility level on purpose: the reason
    /// is recorded in `contract.toml` (`[accept_breaking]`) and reported by `check --against`.
    #[serde(default)]
    pub accept_breaking: Option<String>,
}

/// The problems of an incompatible report: each incompatible change at its schema path, the
/// counterexample, and why a comparison could not be decided.
fn incompatibilities(report: &crate::compat::Report) -> Vec<Problem> {
    let mut problems: Vec<Problem> = report
        .changes
        .iter()
        .filter(|change| !change.change.compatible)
        .map(|change| {
            Problem::at(
                change.change.path.clone(),
                format!(
                    "{} (against version {}, {:?})",
                    change.change.kind.name(),
                    change.against,
                    change.direction
                ),
            )
        })
        .collect();
    if let Some(example) = &report.counterexample {
        problems.push(Problem::new(format!(
            "for example {} is {}",
            example.document, example.summary
        )));
    }
    if let Some(why) = &report.undecided {
        problems.push(Problem::new(why.clone()));
    }
    problems
}

/// `contract.toml` with `[accept_breaking] v<version> = reason` added, the rest as written.
fn accept_breaking(
    path: &std::path::Path,
    version: u32,
    reason: &str,
) -> Result<Vec<u8>, ApiError> {
    let source = std::fs::read_to_string(path).map_err(|error| {
        tracing::error!(%error, file = %path.display(), "Reading contract.toml failed.");
        ApiError::Internal
    })?;
    let mut document: toml_edit::DocumentMut = source.parse().map_err(|_| ApiError::Internal)?;
    let accepted = document
        .entry("accept_breaking")
        .or_insert_with(toml_edit::table)
        .as_table_like_mut()
        .ok_or_else(|| {
            ApiError::Conflict(
                "contract.toml has an accept_breaking that is not a table: fix it by hand".into(),
            )
        })?;
    accepted.insert(&format!("v{version}"), toml_edit::value(reason));
    Ok(document.to_string().into_bytes())
}

fn contract_name(context: ContextName, raw: &str) -> Result<ContractName, ApiError> {
    ContractName::new(context, raw).map_err(|error| ApiError::BadRequest(error.to_string()))
}

/// The version in a path, spelled as the registry spells it (`1`, `2`, ..., never `01` or `+1`).
fn version_number(raw: &str) -> Result<u32, ApiError> {
    crate::registry::names::parse_version(raw).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{:?} is not a version number: decimal digits from 1, without sign or leading zero",
            crate::message::json::truncate(raw, 20)
        ))
    })
}

/// The contracts `context` owns, with their versions.
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/contracts",
    tag = "contracts",
    params(("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$")),
    responses((status = 200, description = "The context's contracts.", body = Vec<ContractSummary>), super::openapi::Refusals)
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_context): UrlPath<String>,
) -> Result<Json<Vec<ContractSummary>>, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let pipeline = state.gateway.pipeline();
    let contracts = pipeline
        .registry()
        .contracts
        .values()
        .filter(|contract| contract.name.context() == &context)
        .map(|contract| ContractSummary {
            name: contract.name.to_string(),
            kind: contract.kind,
            visibility: contract.visibility,
            versions: contract.versions.keys().copied().collect(),
            labels: contract
                .versions
                .iter()
                .filter_map(|(number, version)| Some((*number, version.label.clone()?)))
                .collect(),
        })
        .collect();
    Ok(Json(contracts))
}

/// One version of a contract: its JSON Schema.
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/contracts/{name}/versions/{version}",
    tag = "contracts",
    params(
        ("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$"),
        ("name" = String, Path, description = "The contract (PascalCase).", pattern = "^[A-Z][A-Za-z0-9]{0,127}$"),
        ("version" = u32, Path, description = "The version, from 1.", minimum = 1),
    ),
    responses(
        (status = 200, description = "The schema.", body = Object, content_type = "application/schema+json"),
        super::openapi::Refusals,
    )
)]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name, raw_version)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let name = contract_name(context, &raw_name)?;
    let version = version_number(&raw_version)?;
    let pipeline = state.gateway.pipeline();
    let found = pipeline
        .registry()
        .contracts
        .get(&name)
        .and_then(|contract| contract.version(version))
        .ok_or_else(|| ApiError::NotFound(format!("no version {version} of {name}")))?;
    let body = serde_json::to_vec(&found.schema).expect("a JSON value always serializes");
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], body).into_response())
}

/// Registers the next version of a contract (the body is its JSON Schema).
///
/// Refused with every reason when the schema does not compile, has a `$ref` outside the
/// registry, or is not the next version. A published version is immutable: the same content
/// again is 200 (idempotent), other content is 409.
#[utoipa::path(
    put,
    path = "/v1/contexts/{context}/contracts/{name}/versions/{version}",
    tag = "contracts",
    params(
        ("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$"),
        ("name" = String, Path, description = "The contract (PascalCase).", pattern = "^[A-Z][A-Za-z0-9]{0,127}$"),
        ("version" = u32, Path, description = "The next version.", minimum = 1),
        NewContract,
    ),
    request_body(content = Object, content_type = "application/json", description = "The JSON Schema."),
    responses(
        (status = 201, description = "Registered, written and applied.", body = Registered),
        (status = 200, description = "That version exists with the same content.", body = Registered),
        (status = 409, description = "That version exists with other content (versions are immutable).", body = super::ProblemDocument, content_type = "application/problem+json"),
        super::openapi::Refusals, super::openapi::BodyRefusals,
    )
)]
pub async fn put_version(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name, raw_version)): UrlPath<(String, String, String)>,
    Query(new): Query<NewContract>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let name = contract_name(context, &raw_name)?;
    let version = version_number(&raw_version)?;
    super::require_json(&headers)?;
    let refused = |message: String| ApiError::Unprocessable {
        title: format!("{name}@{version} was not registered"),
        problems: vec![Problem::new(message)],
    };
    let schema: Value = serde_json::from_slice(&body)
        .map_err(|error| refused(format!("the schema is not JSON: {error}")))?;

    let one_at_a_time = writes::turn(&state.gateway).await?;
    let pipeline = state.gateway.pipeline();
    let registry = pipeline.registry();
    let contract = registry.contracts.get(&name);
    let id = name.version(version);
    let next = contract.map_or(1, |contract| {
        contract.versions.keys().max().map_or(1, |last| last + 1)
    });
    if let Some(existing) = contract.and_then(|contract| contract.version(version)) {
        return if existing.schema == schema {
            Ok((
                StatusCode::OK,
                Json(Registered {
                    contract: id.to_string(),
                    created: false,
                }),
            ))
        } else {
            Err(ApiError::Conflict(format!(
                "{id} is published and immutable; register version {next} instead"
            )))
        };
    }
    if version != next {
        return Err(refused(format!(
            "the next version of {name} is {next}, not {version}: versions have no gaps"
        )));
    }
    let folder = registry
        .root
        .join("contracts")
        .join(name.context().as_str())
        .join(name.name());
    let mut files = Vec::new();
    if let Some(contract) = contract {
        let mut documents = crate::evolution::documents(registry);
        let resolved = crate::evolution::candidate(registry, &id, &schema, &mut documents);
        let report = crate::evolution::check_version(contract, version, &resolved, &documents);
        let accepted = contract.accepted_breaking.contains_key(&version);
        let reason = new.accept_breaking.as_deref().map(str::trim);
        match (report.compatible || accepted, reason) {
            (true, _) => {}
            (false, Some(reason)) if !reason.is_empty() => {
                files.push((
                    folder.join("contract.toml"),
                    accept_breaking(&folder.join("contract.toml"), version, reason)?,
                ));
                tracing::warn!(?caller, contract = %id, reason, "A breaking change is registered on purpose.");
            }
            (false, _) => {
                return Err(ApiError::Incompatible {
                    title: format!(
                        "{id} is not {} compatible with the versions before it",
                        contract.compatibility.as_str()
                    ),
                    problems: incompatibilities(&report),
                    report: serde_json::to_value(&report).map_err(|_| ApiError::Internal)?,
                });
            }
        }
    }
    if contract.is_none() {
        let Some(kind @ ("event" | "command")) = new.kind.as_deref() else {
            return Err(refused(
                "a new contract needs ?kind=event or ?kind=command".into(),
            ));
        };
        let visibility = match new.visibility.as_deref() {
            None => "published",
            Some(visibility @ ("published" | "internal")) => visibility,
            Some(_) => return Err(refused("visibility is published or internal".into())),
        };
        files.push((
            folder.join("contract.toml"),
            format!("kind = \"{kind}\"\nvisibility = \"{visibility}\"\n").into_bytes(),
        ));
    }
    files.push((folder.join(format!("v{version}.json")), body.to_vec()));
    let authorship = writes::Authorship::new(&caller, format!("register contract {id}"));
    writes::apply(
        &state.gateway,
        one_at_a_time,
        &registry.root,
        files,
        authorship,
        || format!("{id} was not registered"),
    )
    .await?;
    tracing::info!(?caller, contract = %id, "Contract version registered.");
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            contract: id.to_string(),
            created: true,
        }),
    ))
}
