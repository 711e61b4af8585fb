//! Contracts: one message type of one owning context, as a series of immutable JSON Schema
//! versions, each compiled once into a validator.
//!
//! Schemas are untrusted. Compilation is offline (`$ref` resolves only to schemas of the
//! registry, already loaded: see [`resources`](super::resources)), `pattern` uses the linear `regex` engine, formats
//! are validated (a format the validator does not know is an annotation, as the specification
//! says; `check` warns of it), and size and depth are capped before compiling.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::names::{ContractId, ContractName};

/// The largest schema file taken.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// The deepest nesting a schema document may have.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Where contract versions live for `$ref`: `contextgate://registry/contracts/<ctx>/<Name>/v<N>.json`.
pub const SCHEMA_URI_BASE: &str = "contextgate://registry/contracts/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// Something happened; owned by its single producer; zero or many consumers.
    Event,
    /// A request to act; owned by its single consumer; many senders; exactly one route.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Part of the context's published language: anyone may consume it.
    Published,
    /// The owner's internal model: only the owner's open-host translators read it.
    Internal,
}

/// One contract and all its versions.
#[derive(Debug)]
pub struct Contract {
    pub name: ContractName,
    pub kind: MessageKind,
    pub visibility: Visibility,
    /// How its versions may evolve (`crate::evolution` and the registration API check it).
    pub compatibility: crate::compat::Level,
    /// Which differences count as compatible.
    pub policy: crate::compat::Policy,
    /// Breaking changes accepted on purpose, by version, with the reason.
    pub accepted_breaking: BTreeMap<u32, String>,
    pub description: Option<String>,
    pub versions: BTreeMap<u32, Arc<ContractVersion>>,
}

impl Contract {
    pub fn version(&self, version: u32) -> Option<&Arc<ContractVersion>> {
        self.versions.get(&version)
    }
}

/// One immutable version of a contract, compiled.
pub struct ContractVersion {
    pub id: ContractId,
    pub kind: MessageKind,
    pub visibility: Visibility,
    /// As its file has it.
    pub schema: Value,
    /// As the validator reads it: `$id`s and `$ref`s absolute, `$schema` naming its draft (see
    /// [`resources`](super::resources)); what `compat` compares.
    pub resolved: Arc<Value>,
    /// The URI it is read from: its source URI when it was imported, else its registry URI.
    pub base: String,
    /// Its path in the collection it was imported from (`[versions.vN] source`).
    pub source: Option<String>,
    /// What the collection called it (`[versions.vN] label`: a semver, a commit).
    pub label: Option<String>,
    pub validator: jsonschema::Validator,
    /// The same schema compiled for a parsed [`Document`](crate::message::document::Document):
    /// what inputs are checked with, in place.
    pub document_validator: jsonschema::Validator<crate::message::document::Doc>,
    /// SHA-256 of its schema and of every schema it reaches through `$ref`: what its validator's
    /// verdicts depend on (translator case verdicts are remembered by it).
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractVersion")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The URI a contract version is known by inside the registry.
pub fn schema_uri(id: &ContractId) -> String {
    format!(
        "{SCHEMA_URI_BASE}{}/{}/v{}.json",
        id.context(),
        id.name().name(),
        id.version()
    )
}

/// The JSON Schema drafts the validator supports, by the short names `contextgate.toml`'s
/// `default_draft` takes and `check` prints.
pub const DRAFTS: [(&str, jsonschema::Draft); 5] = [
    ("2020-12", jsonschema::Draft::Draft202012),
    ("2019-09", jsonschema::Draft::Draft201909),
    ("07", jsonschema::Draft::Draft7),
    ("06", jsonschema::Draft::Draft6),
    ("04", jsonschema::Draft::Draft4),
];

/// The draft a schema without `$schema` is read as, unless `contextgate.toml` says otherwise.
pub const DEFAULT_DRAFT: jsonschema::Draft = jsonschema::Draft::Draft202012;

/// The draft a `$schema` URI names, in any of its spellings: `http` or `https`, with or without
/// the trailing `#` (or `/`). `None` for a URI that names no supported draft.
pub fn draft_named(uri: &str) -> Option<jsonschema::Draft> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let path = rest
        .strip_prefix("json-schema.org/")?
        .trim_end_matches('#')
        .trim_end_matches('/');
    Some(match path {
        "draft/2020-12/schema" => jsonschema::Draft::Draft202012,
        "draft/2019-09/schema" => jsonschema::Draft::Draft201909,
        "draft-07/schema" => jsonschema::Draft::Draft7,
        "draft-06/schema" => jsonschema::Draft::Draft6,
        "draft-04/schema" => jsonschema::Draft::Draft4,
        // The version-less URI names the current draft (as the validator's resolver reads it).
        "schema" => jsonschema::Draft::Draft202012,
        _ => return None,
    })
}

/// A draft by its short name (`2020-12`, `2019-09`, `07`, `06`, `04`; `draft-07`, `7` and
/// `draft/2020-12` are taken too).
pub fn draft_by_name(name: &str) -> Option<jsonschema::Draft> {
    let name = name
        .trim()
        .trim_start_matches("draft")
        .trim_start_matches(['-', '/']);
    let name = if name.len() == 1 {
        format!("0{name}")
    } else {
        name.to_owned()
    };
    DRAFTS
        .iter()
        .find(|(short, _)| *short == name)
        .map(|(_, draft)| *draft)
}

/// The short name of a draft (`2020-12`, `07`, ...).
pub fn draft_label(draft: jsonschema::Draft) -> &'static str {
    DRAFTS
        .iter()
        .find(|(_, known)| *known == draft)
        .map_or("2020-12", |(short, _)| short)
}

/// Every way `schema` breaks its draft's meta-schema (at most 50), each at its JSON pointer:
/// what `check` reports for a schema that does not compile, so that a file's problems come in
/// one run rather than one a run.
pub fn meta_errors(draft: jsonschema::Draft, schema: &Value) -> Vec<(String, String)> {
    let validator = match draft {
        jsonschema::Draft::Draft4 => jsonschema::draft4::meta::validator(),
        jsonschema::Draft::Draft6 => jsonschema::draft6::meta::validator(),
        jsonschema::Draft::Draft7 => jsonschema::draft7::meta::validator(),
        jsonschema::Draft::Draft201909 => jsonschema::draft201909::meta::validator(),
        _ => jsonschema::draft202012::meta::validator(),
    };
    validator
        .iter_errors(schema)
        .take(50)
        .map(|error| {
            let pointer = error.instance_path().to_string();
            let text = crate::message::json::truncate(&error.to_string(), 300).to_owned();
            let message = if pointer.is_empty() {
                format!("invalid schema: {text}")
            } else {
                format!("invalid schema: at {pointer}: {text}")
            };
            (pointer, message)
        })
        .collect()
}

/// Whether the validator checks `format` `name` under `draft` (others are annotations). As
/// jsonschema's own list, with the idna feature.
pub fn format_checked(draft: jsonschema::Draft, name: &str) -> bool {
    use jsonschema::Draft::{Draft6, Draft7, Draft201909};
    match name {
        "date" | "date-time" | "email" | "hostname" | "idn-email" | "ipv4" | "ipv6" | "regex"
        | "time" | "uri" => true,
        "json-pointer" | "uri-reference" | "uri-template" => draft >= Draft6,
        "idn-hostname" | "iri" | "iri-reference" | "relative-json-pointer" => draft >= Draft7,
        "duration" | "uuid" => draft >= Draft201909,
        _ => false,
    }
}

/// The draft a contract is read as: the one its `$schema` names, or `default` when it has none.
pub fn draft_of(schema: &Value, default: jsonschema::Draft) -> Result<jsonschema::Draft, String> {
    match schema.get("$schema") {
        None => Ok(default),
        Some(Value::String(declared)) => draft_named(declared).ok_or_else(|| {
            format!(
                "$schema {:?} names no draft the gateway supports: 2020-12, 2019-09, draft-07, \
                 draft-06 or draft-04 (http or https, with or without #)",
                crate::message::json::truncate(declared, 100)
            )
        }),
        Some(_) => Err("$schema must be a string".into()),
    }
}

/// Compiles one schema (its resolved form, see [`resources`](super::resources)) as read from
/// `base`; every schema it refers to comes from `retriever`, the registry's own. `F` is the
/// representation the validator reads: `serde_json::Value` or a parsed
/// [`Document`](crate::message::document::Document). An error says what is wrong, and where
/// in the schema (a JSON pointer) when the compiler names a place.
pub fn compile<F: jsonschema::json::Json>(
    resolved: &Value,
    draft: jsonschema::Draft,
    base: &str,
    retriever: super::resources::Retriever,
    patterns: &jsonschema::PatternCache,
) -> Result<jsonschema::Validator<F>, (Option<String>, String)> {
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jsonschema::options_for::<F>()
            .with_retriever(retriever)
            .with_draft(draft)
            .with_base_uri(base)
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20),
            )
            .with_pattern_cache(patterns.clone())
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .build(resolved)
    }));
    match built {
        Ok(Ok(validator)) => Ok(validator),
        Ok(Err(error)) => {
            let text = crate::message::json::truncate(&error.to_string(), 300).to_owned();
            let pointer = error.instance_path().to_string();
            Err(if pointer.is_empty() {
                (None, format!("invalid schema: {text}"))
            } else {
                (
                    Some(pointer.clone()),
                    format!("invalid schema: at {pointer}: {text}"),
                )
            })
        }
        Err(_) => Err((
            None,
            "invalid schema: the schema compiler failed on it".into(),
        )),
    }
}
