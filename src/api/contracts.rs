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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::{ApiError, AppState, known_context};
use crate::pipeline::Pipeline;
use crate::registry::{ContextName, ContractName, MessageKind, RegistryError, Visibility};
use crate::stages::Problem;

/// One contract as listed.
#[derive(Debug, Serialize)]
pub struct ContractSummary {
    pub name: String,
    pub kind: MessageKind,
    pub visibility: Visibility,
    pub versions: Vec<u32>,
}

/// What a registration did.
#[derive(Debug, Serialize)]
pub struct Registered {
    pub contract: String,
    /// False when the same content was registered again.
    pub created: bool,
}

#[derive(Debug, Deserialize)]
pub struct NewContract {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
}

/// The context of the path, once the caller may act for it.
fn context(state: &AppState, raw: &str, caller: &Caller) -> Result<ContextName, ApiError> {
    let name = known_context(state, raw)?;
    caller.may_act_for(&name)?;
    Ok(name)
}

fn contract_name(context: ContextName, raw: &str) -> Result<ContractName, ApiError> {
    ContractName::new(context, raw).map_err(|error| ApiError::BadRequest(error.to_string()))
}

fn version_number(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| ApiError::BadRequest(format!("{raw:?} is not a version number (1, 2, ...)")))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_context): UrlPath<String>,
) -> Result<Json<Vec<ContractSummary>>, ApiError> {
    let context = context(&state, &raw_context, &caller)?;
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
        })
        .collect();
    Ok(Json(contracts))
}

pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name, raw_version)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let context = context(&state, &raw_context, &caller)?;
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

pub async fn put_version(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name, raw_version)): UrlPath<(String, String, String)>,
    Query(new): Query<NewContract>,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let context = context(&state, &raw_context, &caller)?;
    let name = contract_name(context, &raw_name)?;
    let version = version_number(&raw_version)?;
    let refused = |message: String| ApiError::Unprocessable {
        title: format!("{name}@{version} was not registered"),
        problems: vec![Problem::new(message)],
    };
    let schema: Value = serde_json::from_slice(&body)
        .map_err(|error| refused(format!("the schema is not JSON: {error}")))?;

    let _one_at_a_time = state.registration.lock().await;
    let pipeline = state.gateway.pipeline();
    let registry = pipeline.registry();
    let contract = registry.contracts.get(&name);
    let id = name.version(version);
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
                "{id} is published and immutable; register version {} instead",
                contract.map_or(1, |contract| contract
                    .versions
                    .keys()
                    .max()
                    .map_or(1, |v| v + 1))
            )))
        };
    }
    let next = contract.map_or(1, |contract| {
        contract.versions.keys().max().map_or(1, |last| last + 1)
    });
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
    let mut written = Vec::new();
    if contract.is_none() {
        let Some(kind @ ("event" | "command")) = new.kind.as_deref() else {
            return Err(refused(
                "a new contract needs ?kind=event or ?kind=command".into(),
            ));
        };
        let visibility = match new.visibility.as_deref() {
            None => "published",
            Some(visibility @ ("published" | "internal")) => visibility,
            Some(_) => {
                return Err(refused("visibility is published or internal".into()));
            }
        };
        std::fs::create_dir_all(&folder).map_err(internal)?;
        let metadata = folder.join("contract.toml");
        write_atomically(
            &metadata,
            format!("kind = \"{kind}\"\nvisibility = \"{visibility}\"\n").as_bytes(),
        )
        .map_err(internal)?;
        written.push(metadata);
    }
    let file = folder.join(format!("v{version}.json"));
    write_atomically(&file, &body).map_err(internal)?;
    written.push(file);

    match crate::registry::load(&registry.root) {
        Ok(loaded) => {
            state.gateway.replace(Pipeline::new(Arc::new(loaded)));
            tracing::info!(?caller, contract = %id, "Contract version registered.");
            Ok((
                StatusCode::CREATED,
                Json(Registered {
                    contract: id.to_string(),
                    created: true,
                }),
            ))
        }
        Err(error) => {
            take_back(&written, contract.is_none().then_some(folder.as_path()));
            let problems = match error {
                RegistryError::Problems(problems) => problems
                    .into_iter()
                    .map(|problem| {
                        let file = problem
                            .file
                            .strip_prefix(&registry.root)
                            .unwrap_or(&problem.file)
                            .display()
                            .to_string();
                        let place = match (problem.line, problem.column) {
                            (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
                            (Some(line), None) => format!("{file}:{line}"),
                            _ => file,
                        };
                        Problem::new(format!("{place}: {}", problem.message))
                    })
                    .collect(),
                other => vec![Problem::new(other.to_string())],
            };
            Err(ApiError::Unprocessable {
                title: format!("{id} was not registered"),
                problems,
            })
        }
    }
}

fn internal(error: std::io::Error) -> ApiError {
    tracing::error!(%error, "Writing the registry failed.");
    ApiError::Internal
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary: PathBuf = path.with_extension("tmp-contextgate");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Removes what a refused registration wrote (and the contract's folder if it was new).
fn take_back(written: &[PathBuf], new_folder: Option<&Path>) {
    for file in written {
        if let Err(error) = std::fs::remove_file(file) {
            tracing::error!(%error, file = %file.display(), "Could not take back a refused registration.");
        }
    }
    if let Some(folder) = new_folder {
        let _ = std::fs::remove_dir(folder);
    }
}
