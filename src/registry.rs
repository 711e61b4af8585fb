//! The registry: the folder of contexts, contracts, translators and routes, loaded and checked
//! as a whole and compiled once (schemas to validators, scripts to ASTs).
//!
//! # Layout
//! - [`names`]: context slugs, contract ids, translator and route names, parsed into types.
//! - [`config`]: the raw file shapes serde reads.
//! - [`contract`]: contracts, their versions and compiled validators.
//! - [`resources`]: the URIs each schema is known by (`$id`s, source paths) and where `$ref`s lead.
//! - [`translator`]: translators, their compiled scripts and test cases.
//! - [`route`]: routes, modes, failure policies and look-ups.
//! - [`load`]: reads the folder and reports every problem with its file and line.
//! - [`cases`]: translator test cases, run within a count cap and a time budget, their passing
//!   verdicts remembered so that a load runs only the cases a change can affect.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub mod config;
pub mod names;
//
pub mod cases;
pub mod contract;
pub mod load;
pub mod resources;
pub mod route;
pub mod translator;

pub use contract::{Contract, ContractVersion, MessageKind, Visibility};
pub use load::{load, load_committed};
pub use names::{ContextName, ContractId, ContractName, RouteName, TranslatorId};
pub use route::{Action, Lookup, Mode, OrderingKey, Policy, Route, Wire};
pub use translator::Translator;

/// Bytes (a digest) in lowercase hex, as the registry, the credentials and the store show them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The compiled, checked registry.
#[derive(Debug)]
pub struct Registry {
    /// The folder it was loaded from.
    pub root: PathBuf,
    /// SHA-256 over every file it was loaded from: the same folder gives the same digest, so a
    /// reload that changes nothing is seen as such.
    pub digest: [u8; 32],
    /// The JSON Schema draft of a contract without `$schema` (`default_draft` in
    /// `contextgate.toml`, 2020-12 unless set).
    pub default_draft: jsonschema::Draft,
    pub contexts: BTreeMap<ContextName, Context>,
    pub contracts: BTreeMap<ContractName, Contract>,
    /// Every contract version's schema by each URI it is known by (what `$ref`s resolve to).
    pub schemas: Arc<resources::Index>,
    pub translators: BTreeMap<TranslatorId, Arc<Translator>>,
    /// In the order `contextgate.toml` lists them.
    pub routes: Vec<Arc<Route>>,
}

/// A bounded context as the gateway knows it.
#[derive(Debug, Clone)]
pub struct Context {
    pub name: ContextName,
    pub description: Option<String>,
    /// Base URLs this context's enrich look-ups may query.
    pub lookup_allow: Vec<url::Url>,
    /// How long and how much of its inputs are archived for replays; `None`: not archived.
    pub archive: Option<Archive>,
}

/// A context's archive retention (`archive` in `contextgate.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archive {
    /// Inputs older than this go (whole segments at a time).
    pub max_age: std::time::Duration,
    /// The archive's size cap: the oldest segments go first.
    pub max_bytes: u64,
}

impl Default for Archive {
    /// Seven days, at most 1 GiB.
    fn default() -> Self {
        Self {
            max_age: std::time::Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
        }
    }
}

/// A size such as `1GiB`, `512MiB`, `64KiB`, `10MB` or `1048576` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as \"1GiB\" or \"512MiB\""))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unit {other:?} is not B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl Registry {
    /// One contract version, if the registry has it.
    pub fn contract_version(&self, id: &ContractId) -> Option<&Arc<ContractVersion>> {
        self.contracts.get(id.name())?.version(id.version())
    }

    pub fn route(&self, name: &RouteName) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| &route.name == name)
    }

    /// Counts for a one-line summary.
    pub fn summary(&self) -> String {
        let n_versions: usize = self.contracts.values().map(|c| c.versions.len()).sum();
        let n_cases: usize = self.translators.values().map(|t| t.cases.len()).sum();
        format!(
            "{} contexts, {} contracts ({} versions), {} translators ({} cases), {} routes",
            self.contexts.len(),
            self.contracts.len(),
            n_versions,
            self.translators.len(),
            n_cases,
            self.routes.len()
        )
    }
}

/// Something wrong in the registry folder, with the file (relative to the registry root) and,
/// where there is one, the line and column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RegistryProblem {
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

impl RegistryProblem {
    pub fn new(file: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self {
            file: file.as_ref().to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: Option<usize>, column: Option<usize>) -> Self {
        self.line = line;
        self.column = column;
        self
    }
}

impl fmt::Display for RegistryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a registry could not be used: every problem found.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the registry at {path}: {cause}")]
    Unreadable { path: PathBuf, cause: String },
    #[error("the registry has {} problem(s)", .0.len())]
    Problems(Vec<RegistryProblem>),
}
