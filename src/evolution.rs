//! Schema evolution against a baseline, for CI: what `contextgate check --against REV|DIR` and
//! the registration API ask of a new contract version.
//!
//! - A published version is immutable: its content changed (`version-changed`) or its file gone
//!   (`version-removed`, `contract-removed`) is an error. Gaps in the numbering are the loader's
//!   error already (`contextgate check`).
//! - Each version the baseline does not have is checked against the earlier ones at its
//!   contract's level and policy (`crate::compat`); an incompatible one is an error
//!   (`incompatible`) — unless the contract's metadata accepts that breaking change with a reason
//!   (`[accept_breaking] v3 = "why"`), which is reported as a notice (`breaking-accepted`), never
//!   silently.
//! - Translators that read the version before a new one run on the new version's examples: one
//!   that fails there is a warning (`translator-on-new-version`): it will need a change before its
//!   route can accept the new version; routes still pinned to the older version are a notice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::compat::{self, Report, Schemas, Version};
use crate::registry::contract::schema_uri;
use crate::registry::{Contract, ContractId, Registry};
use crate::stages::{Stage, translate, validate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Notice,
}

/// One thing `check --against` found.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// What kind of finding: `version-changed`, `incompatible`, `breaking-accepted`, ...
    pub rule: &'static str,
    /// Relative to the registry folder.
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
    /// The checker's report, for `incompatible` and `breaking-accepted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Report>,
}

impl Finding {
    /// A notice: something worth knowing that refuses nothing.
    pub fn notice(rule: &'static str, file: String, message: String) -> Self {
        Self::new(Severity::Notice, rule, file, message)
    }

    pub fn new(severity: Severity, rule: &'static str, file: String, message: String) -> Self {
        Self {
            severity,
            rule,
            file,
            line: None,
            column: None,
            message,
            compatibility: None,
        }
    }
}

/// Every schema of the registry (resolved, see `registry::resources`) by each URI `$ref`s may
/// name it with.
pub fn documents(registry: &Registry) -> BTreeMap<String, Value> {
    registry.schemas.documents()
}

/// A candidate version `id` as `compat` compares it: resolved the way the registry will read it
/// (its `$id`s and `$ref`s absolute), and added to `documents` under every URI it will be known
/// by. A schema the registry will refuse is compared as it is (the load that follows says why).
pub fn candidate(
    registry: &Registry,
    id: &crate::registry::ContractId,
    schema: &Value,
    documents: &mut BTreeMap<String, Value>,
) -> Value {
    let draft = crate::registry::contract::draft_of(schema, registry.default_draft)
        .unwrap_or(registry.default_draft);
    let registry_uri = crate::registry::resources::registry_uri(id);
    match crate::registry::resources::read(schema, draft, id.context(), registry_uri, None) {
        Ok(resource) => {
            for name in &resource.names {
                if let Some(named) = resource.resolved.pointer(&name.pointer) {
                    documents.insert(name.uri.clone(), named.clone());
                }
            }
            resource.resolved
        }
        Err(_) => {
            documents.insert(schema_uri(id), schema.clone());
            schema.clone()
        }
    }
}

/// `schema` (resolved, as [`candidate`] gives it) as version `number` of `contract`, checked against the contract's earlier versions
/// at its level and policy. `documents` must hold `schema` under its URI when it refers to
/// itself.
pub fn check_version(
    contract: &Contract,
    number: u32,
    schema: &Value,
    documents: &BTreeMap<String, Value>,
) -> Report {
    let candidate_uri = schema_uri(&contract.name.version(number));
    let history: Vec<Version<'_>> = contract
        .versions
        .iter()
        .filter(|(n, _)| **n < number)
        .map(|(n, version)| Version {
            validator: Some(&version.validator),
            ..Version::new(*n, &version.resolved, &version.base)
        })
        .collect();
    // A registered version brings its validator; a candidate's is compiled only if needed.
    let new = Version {
        validator: contract
            .versions
            .get(&number)
            .map(|version| &version.validator),
        ..Version::new(
            number,
            schema,
            contract
                .versions
                .get(&number)
                .map_or(&candidate_uri, |version| &version.base),
        )
    };
    compat::check(
        &history,
        &new,
        contract.compatibility,
        contract.policy,
        &Schemas::new(documents),
    )
}

/// The registry's contract folder of `contract`, relative to the registry.
fn contract_dir(id: &crate::registry::ContractName) -> PathBuf {
    PathBuf::from("contracts")
        .join(id.context().as_str())
        .join(id.name())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Compares `registry` (loaded cleanly) with the registry folder at `baseline`.
pub fn against(registry: &Registry, baseline: &Path) -> Vec<Finding> {
    let documents = documents(registry);
    let mut findings = Vec::new();
    let baseline_versions = read_baseline(baseline);
    for name in baseline_versions.keys() {
        let present = registry
            .contracts
            .values()
            .any(|contract| contract.name.to_string() == *name);
        if !present {
            findings.push(Finding::new(
                Severity::Error,
                "contract-removed",
                format!("contracts/{name}"),
                format!(
                    "contract {name} was published and is gone: published versions are immutable"
                ),
            ));
        }
    }
    for contract in registry.contracts.values() {
        let dir = contract_dir(&contract.name);
        let old = baseline_versions
            .get(&contract.name.to_string())
            .cloned()
            .unwrap_or_default();
        for (number, old_schema) in &old {
            let file = display(&dir.join(format!("v{number}.json")));
            match contract.versions.get(number) {
                None => findings.push(Finding::new(
                    Severity::Error,
                    "version-removed",
                    file,
                    format!(
                        "version {number} of {} was published and is gone: versions are immutable",
                        contract.name
                    ),
                )),
                Some(version) if &version.schema != old_schema => findings.push(Finding::new(
                    Severity::Error,
                    "version-changed",
                    file,
                    format!(
                        "version {number} of {} was published and its content changed: versions \
                         are immutable, register version {} instead",
                        contract.name,
                        contract.versions.keys().max().copied().unwrap_or(*number) + 1
                    ),
                )),
                Some(_) => {}
            }
        }
        for (number, version) in &contract.versions {
            if old.contains_key(number) || *number == 1 {
                continue;
            }
            findings.extend(judge(contract, *number, version, &documents));
            findings.extend(consumers_of_previous(
                registry,
                contract,
                *number,
                examples_of(registry, &dir, *number),
            ));
        }
    }
    findings.sort_by(|a, b| (a.severity, &a.file).cmp(&(b.severity, &b.file)));
    findings
}

/// Version `number` of `contract` against its earlier versions at the contract's level: an
/// error when it breaks them, a notice when the break is accepted in `contract.toml`, nothing
/// when it is compatible.
fn judge(
    contract: &Contract,
    number: u32,
    version: &crate::registry::ContractVersion,
    documents: &BTreeMap<String, Value>,
) -> Option<Finding> {
    let file = display(&contract_dir(&contract.name).join(format!("v{number}.json")));
    let report = check_version(contract, number, &version.resolved, documents);
    let mut finding = match (&report.compatible, contract.accepted_breaking.get(&number)) {
        (true, _) => None,
        (false, Some(reason)) => Some(Finding::new(
            Severity::Notice,
            "breaking-accepted",
            file,
            format!(
                "version {number} of {} breaks {} compatibility, accepted in contract.toml: {reason}",
                contract.name,
                contract.compatibility.as_str()
            ),
        )),
        (false, None) => Some(Finding::new(
            Severity::Error,
            "incompatible",
            file,
            format!(
                "version {number} of {} is not {} compatible ({} policy): {}",
                contract.name,
                contract.compatibility.as_str(),
                policy_name(contract.policy),
                summary(&report)
            ),
        )),
    }?;
    finding.compatibility = Some(report);
    Some(finding)
}

/// The history inside the registry: every version from 2 on against its contract's earlier
/// versions, at the contract's level and policy (what `check` judges without `--against`).
pub fn history(registry: &Registry) -> Vec<Finding> {
    let documents = documents(registry);
    let mut findings: Vec<Finding> = registry
        .contracts
        .values()
        .flat_map(|contract| {
            let documents = &documents;
            contract
                .versions
                .iter()
                .skip(1)
                .filter_map(move |(number, version)| judge(contract, *number, version, documents))
        })
        .collect();
    findings.sort_by(|a, b| (a.severity, &a.file).cmp(&(b.severity, &b.file)));
    findings
}

fn policy_name(policy: compat::Policy) -> &'static str {
    match policy {
        compat::Policy::Strict => "strict",
        compat::Policy::Lenient => "lenient",
    }
}

/// The incompatible changes, and the counterexample when there is one, in one line.
pub fn summary(report: &Report) -> String {
    let mut parts: Vec<String> = report
        .changes
        .iter()
        .filter(|change| !change.change.compatible)
        .map(|change| {
            format!(
                "{} at {} (against v{}, {:?})",
                change.change.kind.name(),
                change.change.path,
                change.against,
                change.direction
            )
        })
        .collect();
    if let Some(why) = &report.undecided {
        parts.push(why.clone());
    }
    let mut text = parts.join("; ");
    if let Some(example) = &report.counterexample {
        text.push_str(&format!(
            "; for example {} is {}",
            example.document, example.summary
        ));
    }
    text
}

/// The examples of version `number` (`examples/v<N>/*.json` in the contract's folder).
fn examples_of(registry: &Registry, dir: &Path, number: u32) -> Vec<(String, Value)> {
    let folder = registry
        .root
        .join(dir)
        .join("examples")
        .join(format!("v{number}"));
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut examples: Vec<(String, Value)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let value = serde_json::from_str(&text).ok()?;
            let relative = path.strip_prefix(&registry.root).unwrap_or(&path);
            Some((display(relative), value))
        })
        .collect();
    examples.sort_by(|a, b| a.0.cmp(&b.0));
    examples
}

/// Translators reading version `number - 1` run on version `number`'s examples; routes that
/// take only `number - 1` are named.
fn consumers_of_previous(
    registry: &Registry,
    contract: &Contract,
    number: u32,
    examples: Vec<(String, Value)>,
) -> Vec<Finding> {
    let previous: ContractId = contract.name.version(number - 1);
    let current: ContractId = contract.name.version(number);
    let mut findings = Vec::new();
    for translator in registry.translators.values() {
        if translator.input.id != previous {
            continue;
        }
        let file = display(
            &PathBuf::from("translators")
                .join(translator.id.context().as_str())
                .join(format!("{}.rhai", translator.id.name())),
        );
        for (example, data) in &examples {
            let meta = translate::Meta::from_case(&serde_json::Map::new());
            let outcome = translate::run(translator, data, &meta).and_then(|outputs| {
                outputs
                    .iter()
                    .try_for_each(|output| {
                        validate::against(&translator.output, output, Stage::ValidateOut)
                    })
                    .map(|()| outputs.len())
            });
            if let Err(failure) = outcome {
                findings.push(Finding::new(
                    Severity::Warning,
                    "translator-on-new-version",
                    file.clone(),
                    format!(
                        "translator {} reads {previous}; on {current}'s example {example} it fails: {failure}",
                        translator.id
                    ),
                ));
            }
        }
    }
    for route in &registry.routes {
        let takes = |id: &ContractId| route.accepts.iter().any(|version| &version.id == id);
        if takes(&previous) && !takes(&current) {
            findings.push(Finding::new(
                Severity::Notice,
                "route-on-previous-version",
                "contextgate.toml".to_owned(),
                format!(
                    "route {} takes {previous} but not {current}: messages of the new version do not reach it until it accepts them",
                    route.name
                ),
            ));
        }
    }
    findings
}

/// The baseline's contract versions: `<ctx>/<Name>` → version → schema. A missing or unreadable
/// baseline file counts as absent; the current registry is the one checked for readability.
fn read_baseline(root: &Path) -> BTreeMap<String, BTreeMap<u32, Value>> {
    let mut contracts = BTreeMap::new();
    let Ok(contexts) = std::fs::read_dir(root.join("contracts")) else {
        return contracts;
    };
    for context in contexts.filter_map(Result::ok) {
        let Ok(names) = std::fs::read_dir(context.path()) else {
            continue;
        };
        for name in names.filter_map(Result::ok) {
            let Ok(files) = std::fs::read_dir(name.path()) else {
                continue;
            };
            let mut versions = BTreeMap::new();
            for file in files.filter_map(Result::ok) {
                let file_name = file.file_name().to_string_lossy().into_owned();
                // Only the registry's own spelling: `v1.json`, not `v01.json`.
                let Some(number) = file_name
                    .strip_prefix('v')
                    .and_then(|rest| rest.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| file_name == format!("v{n}.json"))
                else {
                    continue;
                };
                let Some(schema) = std::fs::read_to_string(file.path())
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                else {
                    continue;
                };
                versions.insert(number, schema);
            }
            if !versions.is_empty() {
                contracts.insert(
                    format!(
                        "{}/{}",
                        context.file_name().to_string_lossy(),
                        name.file_name().to_string_lossy()
                    ),
                    versions,
                );
            }
        }
    }
    contracts
}
