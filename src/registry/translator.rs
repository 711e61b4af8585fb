//! Translators: Rhai scripts owned by one context that map a message of one contract to
//! another. Each is compiled once, at load, by the one hardened engine, and carries the test
//! cases that `contextgate check` runs.

use std::sync::Arc;

use serde_json::Value;

use super::contract::ContractVersion;
use super::names::TranslatorId;

/// The function every translator defines: `fn translate(data)` or `fn translate(data, meta)`.
pub const ENTRY_POINT: &str = "translate";

#[derive(Debug)]
pub struct Translator {
    pub id: TranslatorId,
    pub description: Option<String>,
    pub input: Arc<ContractVersion>,
    pub output: Arc<ContractVersion>,
    pub ast: Arc<rhai::AST>,
    /// Whether `translate` takes `meta` as its second parameter.
    pub takes_meta: bool,
    /// What `translate` reads of its input: only that much is converted for it.
    pub reads: crate::scripting::Reads,
    /// SHA-256 of the script source, hex: which script made a dead letter.
    pub content_hash: String,
    pub cases: Vec<Case>,
}

/// One input → expected outcome of a translator.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub input: Value,
    /// The `meta` map the script sees (id, source, type, subject, time, lookups).
    pub meta: serde_json::Map<String, Value>,
    pub expect: Expectation,
    /// SHA-256 of the case as its file holds it: with the script and the contracts, what its
    /// verdict depends on (see `registry::cases`).
    pub digest: [u8; 32],
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    One(Value),
    Many(Vec<Value>),
    Drop,
    /// The script fails with a message containing this text.
    Error(String),
}

/// SHA-256 of a script's source, hex: a translator's `content_hash`.
pub fn content_hash(source: &str) -> String {
    use sha2::Digest;
    super::hex(&sha2::Sha256::digest(source.as_bytes()))
}

/// Finds `translate` in a compiled script: whether it exists and takes `meta`.
pub fn entry_point(ast: &rhai::AST) -> Result<bool, String> {
    let mut arities = ast
        .iter_functions()
        .filter(|function| function.name == ENTRY_POINT)
        .map(|function| function.params.len());
    match (arities.next(), arities.next()) {
        (Some(1), None) => Ok(false),
        (Some(2), None) => Ok(true),
        (Some(n), None) => Err(format!(
            "fn {ENTRY_POINT} takes {n} parameters: expected (data) or (data, meta)"
        )),
        (Some(_), Some(_)) => Err(format!("fn {ENTRY_POINT} is defined more than once")),
        (None, _) => Err(format!(
            "the script defines no fn {ENTRY_POINT}(data) or fn {ENTRY_POINT}(data, meta)"
        )),
    }
}
