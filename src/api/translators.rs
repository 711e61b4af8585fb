//! Translators over HTTP: a context lists, reads, registers and replaces the translators in its
//! own folder (open-host translators are the upstream's, anti-corruption and enrich ones the
//! downstream's; the routes that use a translator check that at load).
//!
//! `PUT /v1/contexts/{context}/translators/{name}` takes
//! `{"input", "output", "script", "cases", "description"}` and writes `<name>.rhai`,
//! `<name>.toml` and `<name>.cases.json` through [`super::writes::apply`]: the folder is loaded
//! again, so a script that does not compile (with its line), a case that fails, or an output that
//! breaks the output contract is a 422 and nothing changes. 201 when new, 200 when replaced.
//! Its cases run first, before it waits for its turn (`registry::cases::rehearse`), so that no
//! registration waits on another's cases.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::{ApiError, AppState, owned_context, writes};
use crate::registry::{ContextName, TranslatorId};

/// A translator as registered and read back.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranslatorBody {
    /// The contract version it reads: `orders/OrderPlaced@2`.
    pub input: String,
    /// The contract version it writes.
    pub output: String,
    /// The Rhai script: `fn translate(data)` or `fn translate(data, meta)`.
    pub script: String,
    /// Test cases, as in `<name>.cases.json`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub cases: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One translator as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TranslatorSummary {
    pub name: String,
    pub input: String,
    pub output: String,
    /// SHA-256 of the script, as dead letters carry it.
    pub content_hash: String,
}

#[derive(Serialize)]
struct Declaration<'a> {
    input: &'a str,
    output: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// The file's bytes as they are when they say what `new` says (a translator put back as it was
/// read, whose cases come back with their keys sorted), else `new`: a registration that changes
/// nothing leaves every file byte-identical, its key order, layout and comments as written.
fn unchanged_or(path: &std::path::Path, new: Vec<u8>, same: fn(&[u8], &[u8]) -> bool) -> Vec<u8> {
    match std::fs::read(path) {
        Ok(old) if same(&old, &new) => old,
        _ => new,
    }
}

fn same_json(old: &[u8], new: &[u8]) -> bool {
    match (
        serde_json::from_slice::<Value>(old),
        serde_json::from_slice::<Value>(new),
    ) {
        (Ok(old), Ok(new)) => old == new,
        _ => false,
    }
}

fn same_toml(old: &[u8], new: &[u8]) -> bool {
    let parse = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| toml::from_str::<toml::Table>(text).ok())
    };
    matches!((parse(old), parse(new)), (Some(old), Some(new)) if old == new)
}

fn translator_id(context: ContextName, raw: &str) -> Result<TranslatorId, ApiError> {
    TranslatorId::new(context, raw).map_err(|error| ApiError::BadRequest(error.to_string()))
}

/// The translators in `context`'s folder.
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/translators",
    tag = "translators",
    params(("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$")),
    responses((status = 200, description = "The context's translators.", body = Vec<TranslatorSummary>), super::openapi::Refusals)
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_context): UrlPath<String>,
) -> Result<Json<Vec<TranslatorSummary>>, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let pipeline = state.gateway.pipeline();
    Ok(Json(
        pipeline
            .registry()
            .translators
            .values()
            .filter(|translator| translator.id.context() == &context)
            .map(|translator| TranslatorSummary {
                name: translator.id.to_string(),
                input: translator.input.id.to_string(),
                output: translator.output.id.to_string(),
                content_hash: translator.content_hash.clone(),
            })
            .collect(),
    ))
}

/// One translator: its contracts, script and cases.
#[utoipa::path(
    get,
    path = "/v1/contexts/{context}/translators/{name}",
    tag = "translators",
    params(
        ("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$"),
        ("name" = String, Path, description = "The translator (snake_case).", pattern = "^[a-z][a-z0-9_]{0,63}$"),
    ),
    responses((status = 200, description = "The translator.", body = TranslatorBody), super::openapi::Refusals)
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name)): UrlPath<(String, String)>,
) -> Result<Json<TranslatorBody>, ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let id = translator_id(context, &raw_name)?;
    let pipeline = state.gateway.pipeline();
    let translator = pipeline
        .registry()
        .translators
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no translator {id}")))?;
    let folder = pipeline
        .registry()
        .root
        .join("translators")
        .join(id.context().as_str());
    let read =
        |suffix: &str| std::fs::read_to_string(folder.join(format!("{}{suffix}", id.name())));
    let script = read(".rhai").map_err(|_| ApiError::Internal)?;
    let cases = read(".cases.json")
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    Ok(Json(TranslatorBody {
        input: translator.input.id.to_string(),
        output: translator.output.id.to_string(),
        script,
        cases,
        description: translator.description.clone(),
    }))
}

/// Registers or replaces a translator: refused (with the line) when it does not compile, when one
/// of its cases fails, or when an output breaks its output contract.
#[utoipa::path(
    put,
    path = "/v1/contexts/{context}/translators/{name}",
    tag = "translators",
    params(
        ("context" = String, Path, description = "The owning context.", pattern = "^[a-z][a-z0-9-]{0,31}$"),
        ("name" = String, Path, description = "The translator (snake_case).", pattern = "^[a-z][a-z0-9_]{0,63}$"),
    ),
    request_body = TranslatorBody,
    responses(
        (status = 201, description = "Registered, written and applied.", body = TranslatorSummary),
        (status = 200, description = "Replaced, written and applied.", body = TranslatorSummary),
        super::openapi::Refusals, super::openapi::BodyRefusals,
    )
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw_context, raw_name)): UrlPath<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TranslatorSummary>), ApiError> {
    let context = owned_context(&state, &raw_context, &caller)?;
    let id = translator_id(context, &raw_name)?;
    super::require_json(&headers)?;
    let translator: TranslatorBody =
        serde_json::from_slice(&body).map_err(|error| ApiError::Unprocessable {
            title: format!("{id} was not registered"),
            problems: vec![crate::stages::Problem::new(format!(
                "the body is not a translator ({{\"input\", \"output\", \"script\", \"cases\", \"description\"}}): {error}"
            ))],
        })?;
    // Its cases run first, outside the one-at-a-time turn: a registration waits on no other
    // translator's cases, and its own load in its turn finds their verdicts remembered.
    let rehearsed = state.gateway.pipeline();
    let rehearsal = {
        let registry = rehearsed.registry().clone();
        let id = id.clone();
        let (script, input, output) = (
            translator.script.clone(),
            translator.input.clone(),
            translator.output.clone(),
        );
        let cases = translator.cases.clone();
        tokio::task::spawn_blocking(move || {
            crate::registry::cases::rehearse(&registry, &id, &script, &input, &output, cases)
        })
    };
    let problems = rehearsal.await.map_err(|error| {
        tracing::error!(%error, "The rehearsal of a translator's cases failed.");
        ApiError::Internal
    })?;
    if !problems.is_empty() {
        return Err(writes::unprocessable(
            format!("{id} was not registered"),
            &rehearsed.registry().root,
            problems,
        ));
    }
    let one_at_a_time = writes::turn(&state.gateway).await?;
    let pipeline = state.gateway.pipeline();
    let registry = pipeline.registry();
    let existed = registry.translators.contains_key(&id);
    let folder = registry
        .root
        .join("translators")
        .join(id.context().as_str());
    let path = |suffix: &str| folder.join(format!("{}{suffix}", id.name()));
    let declaration = toml::to_string(&Declaration {
        input: &translator.input,
        output: &translator.output,
        description: translator.description.as_deref(),
    })
    .map_err(|_| ApiError::Internal)?;
    let cases = serde_json::to_vec_pretty(&translator.cases).expect("JSON values always serialize");
    let files = vec![
        (path(".rhai"), translator.script.clone().into_bytes()),
        (
            path(".toml"),
            unchanged_or(&path(".toml"), declaration.into_bytes(), same_toml),
        ),
        (
            path(".cases.json"),
            unchanged_or(&path(".cases.json"), cases, same_json),
        ),
    ];
    let authorship = writes::Authorship::new(&caller, format!("register translator {id}"));
    writes::apply(
        &state.gateway,
        one_at_a_time,
        &registry.root,
        files,
        authorship,
        || format!("{id} was not registered"),
    )
    .await?;
    let pipeline = state.gateway.pipeline();
    let applied = pipeline
        .registry()
        .translators
        .get(&id)
        .ok_or(ApiError::Internal)?;
    tracing::info!(?caller, translator = %id, hash = %applied.content_hash, replaced = existed, "Translator registered.");
    Ok((
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(TranslatorSummary {
            name: id.to_string(),
            input: applied.input.id.to_string(),
            output: applied.output.id.to_string(),
            content_hash: applied.content_hash.clone(),
        }),
    ))
}
