//! Reads a registry folder and checks it as a whole, reporting every problem with its file and,
//! where there is one, its line — never just the first.
//!
//! ```text
//! contextgate.toml                                  contexts and routes
//! contracts/<context>/<Name>/contract.toml          kind, visibility, compatibility, description,
//!                                                   [versions.vN] source and label (imported)
//! contracts/<context>/<Name>/v<N>.json              JSON Schema of version N (1, 2, ... no gaps;
//!                                                   `$id`s and `$ref`s: see `resources`)
//! contracts/<context>/<Name>/examples/v<N>/*.json   example data, valid against version N
//! translators/<context>/<name>.rhai                 the script: fn translate(data[, meta])
//! translators/<context>/<name>.toml                 input and output contract versions
//! translators/<context>/<name>.cases.json           input → expected output, drop or error
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cases;
use super::config::{ArchiveFile, ConfigFile, ContractFile, LookupFile, RouteFile, TranslatorFile};
use super::contract::{self, Contract, ContractVersion, MAX_SCHEMA_BYTES, MessageKind, Visibility};
use super::names::{ContextName, ContractId, ContractName, RouteName, TranslatorId};
use super::resources;
use super::route::{
    AcceptPattern, Action, Breaker, DEFAULT_SHARDS, Expansion, Lookup, MAX_LOOKUP_BYTES,
    MAX_LOOKUP_TIMEOUT, MAX_SHARDS, Mode, OrderingKey, Policy, Route, UrlTemplate, Wire,
};
use super::translator::{self, Case, Translator};
use super::{Archive, Context, Registry, RegistryError, RegistryProblem};
use crate::compat::{self, Level};
use crate::message::json::{parse_strict, truncate};

/// The gateway's file at the registry root.
pub const CONFIG_FILE: &str = "contextgate.toml";
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_MAX_OUTPUTS: usize = 100;
/// The longest dedup window a route may keep (its keys are held in memory, see `dedup`).
const MAX_DEDUP: Duration = Duration::from_secs(7 * 24 * 3600);
/// The smallest archive: a segment is an eighth of it, at least 4 KiB (`archive::file`).
const MIN_ARCHIVE_BYTES: u64 = 64 * 1024;

/// Loads and checks the registry at `root`, translator cases included.
pub fn load(root: &Path) -> Result<Registry, RegistryError> {
    load_with(root, true)
}

/// Loads a registry that was checked, cases included, by the instance that committed it to the
/// registry store: everything is compiled and checked again except the translator cases, so
/// that a follower never refuses a committed revision because its cases ran slower here.
pub fn load_committed(root: &Path) -> Result<Registry, RegistryError> {
    load_with(root, false)
}

fn load_with(root: &Path, run_cases: bool) -> Result<Registry, RegistryError> {
    let config_path = root.join(CONFIG_FILE);
    let config_source =
        fs::read_to_string(&config_path).map_err(|error| RegistryError::Unreadable {
            path: config_path.clone(),
            cause: error.to_string(),
        })?;
    let mut loader = Loader {
        root: root.to_path_buf(),
        problems: Vec::new(),
        digest: Sha256::new(),
        run_cases,
        default_draft: contract::DEFAULT_DRAFT,
        schemas: Arc::default(),
        broken: BTreeSet::new(),
        skipped: BTreeMap::new(),
        tomls: BTreeMap::new(),
    };
    loader.digest.update(config_source.as_bytes());
    let registry = loader.load(&config_source);
    if loader.problems.is_empty() {
        Ok(registry)
    } else {
        let mut problems = loader.problems;
        problems.sort();
        problems.dedup();
        Err(RegistryError::Problems(problems))
    }
}

struct Loader {
    root: PathBuf,
    problems: Vec<RegistryProblem>,
    /// Every file read, by name and content, in the (sorted) order read.
    digest: Sha256,
    /// Whether translator cases run (not for a revision committed to the store).
    run_cases: bool,
    /// The draft of a contract without `$schema` (`contextgate.toml`'s `default_draft`).
    default_draft: jsonschema::Draft,
    /// Every schema by each URI it is known by, once the contracts are read.
    schemas: Arc<resources::Index>,
    /// What did not load because of problems of its own (contract versions `ctx/Name@N`,
    /// contracts `ctx/Name`, translators `ctx/name`): what names it is skipped, not refused
    /// again, and one line says so.
    broken: BTreeSet<String>,
    /// What each broken thing made skip: the routes (and translators) that name it.
    skipped: BTreeMap<String, Vec<String>>,
    /// The text of each TOML file read (`contract.toml`, translator declarations), by its path
    /// relative to the root: a problem about one of its keys is placed at that key's line.
    tomls: BTreeMap<PathBuf, String>,
}

impl Loader {
    fn problem(&mut self, file: impl AsRef<Path>, message: impl Into<String>) {
        let message = message.into();
        let line = self
            .tomls
            .get(file.as_ref())
            .and_then(|text| key_line(text, &message));
        self.problems
            .push(RegistryProblem::new(file, message).at(line, line.map(|_| 1)));
    }

    /// Whether `id` did not load because of problems of its own (or its contract did not).
    fn is_broken(&self, id: &ContractId) -> bool {
        self.broken.contains(&id.to_string()) || self.broken.contains(&id.name().to_string())
    }

    /// Notes that `what` was skipped because `cause` is broken.
    fn skip(&mut self, cause: &str, what: String) {
        let skipped = self.skipped.entry(cause.to_owned()).or_default();
        if !skipped.contains(&what) {
            skipped.push(what);
        }
    }

    fn load(&mut self, config_source: &str) -> Registry {
        let config = match toml::from_str::<ConfigFile>(config_source) {
            Ok(config) => Some(config),
            Err(error) => {
                let (line, column) = error
                    .span()
                    .map(|span| line_column(config_source, span.start))
                    .unzip();
                self.problems.push(
                    RegistryProblem::new(CONFIG_FILE, error.message().to_owned()).at(line, column),
                );
                None
            }
        };
        if let Some(named) = config
            .as_ref()
            .and_then(|config| config.default_draft.as_ref())
        {
            match contract::draft_by_name(named.get_ref()) {
                Some(draft) => self.default_draft = draft,
                None => {
                    let (line, column) = line_column(config_source, named.span().start);
                    self.problems.push(
                        RegistryProblem::new(
                            CONFIG_FILE,
                            format!(
                                "default_draft {:?} is not a draft the gateway supports: {}",
                                named.get_ref(),
                                contract::DRAFTS.map(|(short, _)| short).join(", ")
                            ),
                        )
                        .at(Some(line), Some(column)),
                    );
                }
            }
        }
        let contexts = self.contexts(config.as_ref());
        let contracts = self.contracts(&contexts);
        let translators = self.translators(&contexts, &contracts);
        let routes = match &config {
            Some(config) => self.routes(
                config_source,
                &config.routes,
                &contexts,
                &contracts,
                &translators,
            ),
            None => Vec::new(),
        };
        for (cause, skipped) in std::mem::take(&mut self.skipped) {
            self.problem(
                CONFIG_FILE,
                format!(
                    "{} skipped: {cause} did not load (its own problems are reported at its files)",
                    skipped.join(", ")
                ),
            );
        }
        let run_cases = self.run_cases;
        for translator in translators.values().filter(|_| run_cases) {
            for problem in cases::run(translator) {
                self.problem(cases::file(&translator.id), problem);
            }
        }
        Registry {
            root: self.root.clone(),
            digest: std::mem::take(&mut self.digest).finalize().into(),
            default_draft: self.default_draft,
            contexts,
            contracts,
            schemas: self.schemas.clone(),
            translators,
            routes,
        }
    }

    // ---- contexts -------------------------------------------------------------------------

    fn contexts(&mut self, config: Option<&ConfigFile>) -> BTreeMap<ContextName, Context> {
        let mut contexts = BTreeMap::new();
        let Some(config) = config else {
            return contexts;
        };
        for (slug, file) in &config.contexts {
            let name = match ContextName::parse(slug) {
                Ok(name) => name,
                Err(error) => {
                    self.problem(CONFIG_FILE, error.to_string());
                    continue;
                }
            };
            let mut lookup_allow = Vec::new();
            for base in &file.lookup_allow {
                match url::Url::parse(base) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https")
                            && url.as_str().ends_with('/')
                            && url.as_str() == base =>
                    {
                        lookup_allow.push(url);
                    }
                    _ => self.problem(
                        CONFIG_FILE,
                        format!(
                            "context {name}: lookup_allow entry {base:?} must be a normalized \
                             http(s) URL ending with '/'"
                        ),
                    ),
                }
            }
            let archive = self.archive(&name, file.archive.as_ref());
            contexts.insert(
                name.clone(),
                Context {
                    name,
                    description: file.description.clone(),
                    lookup_allow,
                    archive,
                },
            );
        }
        contexts
    }

    /// A context's archive: on with the defaults unless `archive = false`; each setting checked.
    fn archive(&mut self, name: &ContextName, file: Option<&ArchiveFile>) -> Option<Archive> {
        let table = match file {
            Some(ArchiveFile::On(false)) => return None,
            None | Some(ArchiveFile::On(true)) => return Some(Archive::default()),
            Some(ArchiveFile::Kept(table)) => table,
        };
        let mut archive = Archive::default();
        if let Some(text) = &table.max_age {
            match humantime::parse_duration(text) {
                Ok(age) if age >= Duration::from_secs(1) => archive.max_age = age,
                Ok(_) => self.problem(
                    CONFIG_FILE,
                    format!("context {name}: archive.max_age {text:?} must be at least 1s"),
                ),
                Err(error) => self.problem(
                    CONFIG_FILE,
                    format!(
                        "context {name}: archive.max_age {text:?} is not a duration such as \"7d\": {error}"
                    ),
                ),
            }
        }
        if let Some(text) = &table.max_bytes {
            match crate::registry::parse_bytes(text) {
                Ok(bytes) if bytes >= MIN_ARCHIVE_BYTES => archive.max_bytes = bytes,
                Ok(_) => self.problem(
                    CONFIG_FILE,
                    format!("context {name}: archive.max_bytes {text:?} must be at least 64KiB"),
                ),
                Err(error) => self.problem(
                    CONFIG_FILE,
                    format!("context {name}: archive.max_bytes {error}"),
                ),
            }
        }
        Some(archive)
    }

    // ---- contracts ------------------------------------------------------------------------

    fn contracts(
        &mut self,
        contexts: &BTreeMap<ContextName, Context>,
    ) -> BTreeMap<ContractName, Contract> {
        // First pass: read every file; second: build the $ref registry; third: compile.
        let mut pending: Vec<PendingContract> = Vec::new();
        for (context, context_dir) in self.context_dirs("contracts", contexts) {
            for entry in self.sorted_entries(&context_dir) {
                let relative = self.relative(&entry);
                let file_name = file_name(&entry);
                if !entry.is_dir() {
                    self.problem(
                        &relative,
                        "unexpected file: contracts/<context>/ holds one folder per contract",
                    );
                    continue;
                }
                let name = match ContractName::new(context.clone(), &file_name) {
                    Ok(name) => name,
                    Err(error) => {
                        self.problem(&relative, error.to_string());
                        continue;
                    }
                };
                match self.read_contract(name.clone(), &entry) {
                    Some(contract) => pending.push(contract),
                    None => {
                        self.broken.insert(name.to_string());
                    }
                }
            }
        }

        let (index, read) = self.resources(&mut pending);
        let index = Arc::new(index);
        let patterns = jsonschema::PatternCache::new();
        let mut contracts = BTreeMap::new();
        for pending in pending {
            let mut versions = BTreeMap::new();
            for document in pending.documents {
                if document.refused {
                    self.broken.insert(document.id.to_string());
                    continue;
                }
                let Some(resource) = read.get(&document.id) else {
                    continue;
                };
                let draft = resource.draft;
                let base = resource.retrieval.as_str();
                let resolved = &index.resources[resource.position].resolved;
                let retriever = || resources::Retriever {
                    index: index.clone(),
                    owner: pending.name.context().clone(),
                };
                let compiled = contract::compile(resolved, draft, base, retriever(), &patterns)
                    .and_then(|validator| {
                        let for_documents =
                            contract::compile(resolved, draft, base, retriever(), &patterns)?;
                        Ok((validator, for_documents))
                    });
                match compiled {
                    Ok((validator, document_validator)) => {
                        let fingerprint = fingerprint(resource.position, &read, &index);
                        let version = Arc::new(ContractVersion {
                            id: document.id.clone(),
                            kind: pending.kind,
                            visibility: pending.visibility,
                            schema: document.schema,
                            resolved: resolved.clone(),
                            base: base.to_owned(),
                            source: document.source,
                            label: document.label,
                            validator,
                            document_validator,
                            fingerprint,
                        });
                        self.check_examples(&version, &pending.dir);
                        versions.insert(document.id.version(), version);
                    }
                    Err(message) => {
                        self.broken.insert(document.id.to_string());
                        // Every way it breaks its meta-schema, where there are any: all of a
                        // file's problems in one run.
                        let every = contract::meta_errors(draft, &document.schema);
                        if every.is_empty() {
                            self.compile_problem(&document, message);
                        } else {
                            for (pointer, message) in every {
                                self.compile_problem(&document, (Some(pointer), message));
                            }
                        }
                    }
                }
            }
            contracts.insert(
                pending.name.clone(),
                Contract {
                    name: pending.name,
                    kind: pending.kind,
                    visibility: pending.visibility,
                    compatibility: pending.evolution.level,
                    policy: pending.evolution.policy,
                    accepted_breaking: pending.evolution.accepted_breaking,
                    description: pending.description,
                    versions,
                },
            );
        }
        self.schemas = index;
        contracts
    }

    /// Reads every version as a resource (its `$id`s and references, see [`resources`]) and
    /// indexes them by every URI they are known by; refuses the ones with a problem, with the
    /// line and column of each, a clash naming both files, and a reference to no schema of the
    /// registry (or to another context's internal one).
    fn resources(
        &mut self,
        pending: &mut [PendingContract],
    ) -> (resources::Index, BTreeMap<ContractId, ReadResource>) {
        let mut index = resources::Index::default();
        let mut read: BTreeMap<ContractId, ReadResource> = BTreeMap::new();
        let mut references: BTreeMap<ContractId, Vec<resources::Reference>> = BTreeMap::new();
        for contract in pending.iter_mut() {
            let owner = contract.name.context().clone();
            for document in &mut contract.documents {
                let mut problems = Vec::new();
                let draft = match contract::draft_of(&document.schema, self.default_draft) {
                    Ok(draft) => draft,
                    Err(message) => {
                        problems.push(resources::SchemaProblem {
                            pointer: "/$schema".into(),
                            message,
                        });
                        self.default_draft
                    }
                };
                let source = match document
                    .source
                    .as_deref()
                    .map(|path| resources::source_uri(&owner, path))
                {
                    Some(Ok(uri)) => Some(uri),
                    Some(Err(message)) => {
                        self.problem(&contract.metadata_file, message);
                        document.refused = true;
                        continue;
                    }
                    None => None,
                };
                let registry = resources::registry_uri(&document.id);
                let resource = resources::read(&document.schema, draft, &owner, registry, source)
                    .map_err(|more| problems.extend(more));
                let resource = match resource {
                    Ok(resource) if problems.is_empty() => resource,
                    _ => {
                        self.schema_problems(document, problems);
                        document.refused = true;
                        continue;
                    }
                };
                let indexed = resources::Indexed {
                    contract: contract.name.to_string(),
                    owner: owner.clone(),
                    visibility: contract.visibility,
                    file: document.file.clone(),
                    registry: resource.registry.to_string(),
                    resolved: Arc::new(resource.resolved),
                };
                match index.add(indexed, &resource.names) {
                    Ok(position) => {
                        references.insert(document.id.clone(), resource.references);
                        read.insert(
                            document.id.clone(),
                            ReadResource {
                                position,
                                draft,
                                retrieval: resource.retrieval,
                                reaches: BTreeSet::new(),
                            },
                        );
                    }
                    Err(clashes) => {
                        let problems = clashes
                            .into_iter()
                            .map(|clash| {
                                let (first, first_pointer) = &clash.first;
                                let other = index
                                    .resources
                                    .get(*first)
                                    .map_or(&document.file, |first| &first.file);
                                // At the `$id` (or draft-04 `id`) that claims it.
                                let id = ["$id", "id"].into_iter().find(|keyword| {
                                    document
                                        .schema
                                        .pointer(&clash.pointer)
                                        .and_then(|schema| schema.get(keyword))
                                        .is_some_and(Value::is_string)
                                });
                                resources::SchemaProblem {
                                    pointer: match id {
                                        Some(keyword) => format!("{}/{keyword}", clash.pointer),
                                        None => clash.pointer,
                                    },
                                    message: format!(
                                        "{} is claimed twice: here and in {}{}",
                                        clash.uri,
                                        other.display(),
                                        if first_pointer.is_empty() {
                                            String::new()
                                        } else {
                                            format!(" at {first_pointer}")
                                        }
                                    ),
                                }
                            })
                            .collect();
                        self.schema_problems(document, problems);
                        document.refused = true;
                    }
                }
            }
        }
        // Every reference must name a schema of the registry that its context may read.
        for contract in pending.iter_mut() {
            for document in &mut contract.documents {
                let Some(references) = references.get(&document.id) else {
                    continue;
                };
                let mut problems = Vec::new();
                let mut reaches = BTreeSet::new();
                let source = document
                    .source
                    .as_deref()
                    .and_then(|path| resources::source_uri(contract.name.context(), path).ok());
                for reference in references {
                    let shown = truncate(&reference.text, 200);
                    match index.resolve(reference, contract.name.context(), source.as_ref()) {
                        None => problems.push(resources::SchemaProblem {
                            pointer: reference.pointer.clone(),
                            message: format!(
                                "$ref {shown:?} ({}) names no schema of this registry: \
                                 references resolve inside the registry only, by $id, source \
                                 path or registry URI (nothing is fetched or read from disk)",
                                truncate(&reference.target, 200)
                            ),
                        }),
                        Some(position) => {
                            let target = &index.resources[position];
                            if target.visibility == Visibility::Internal
                                && &target.owner != contract.name.context()
                            {
                                problems.push(resources::SchemaProblem {
                                    pointer: reference.pointer.clone(),
                                    message: format!(
                                        "$ref {shown:?} names a contract internal to {}: a \
                                         schema refers to its own context's contracts and to \
                                         other contexts' published ones only",
                                        target.owner
                                    ),
                                });
                            } else {
                                reaches.insert(position);
                            }
                        }
                    }
                }
                if problems.is_empty() {
                    if let Some(read) = read.get_mut(&document.id) {
                        read.reaches = reaches;
                    }
                } else {
                    self.schema_problems(document, problems);
                    document.refused = true;
                    read.remove(&document.id);
                }
            }
        }
        (index, read)
    }

    /// A schema that did not compile: at the place in it the compiler names, when it names one.
    fn compile_problem(
        &mut self,
        document: &PendingDocument,
        (pointer, message): (Option<String>, String),
    ) {
        let (line, column) = pointer
            .and_then(|pointer| resources::position(&document.text, &pointer))
            .unzip();
        self.problems
            .push(RegistryProblem::new(&document.file, message).at(line, column));
    }

    /// Problems at pointers into one schema file, with their lines and columns.
    fn schema_problems(
        &mut self,
        document: &PendingDocument,
        problems: Vec<resources::SchemaProblem>,
    ) {
        for problem in problems {
            let (line, column) = resources::position(&document.text, &problem.pointer).unzip();
            self.problems
                .push(RegistryProblem::new(&document.file, problem.message).at(line, column));
        }
    }

    fn read_contract(&mut self, name: ContractName, dir: &Path) -> Option<PendingContract> {
        let metadata_path = dir.join("contract.toml");
        let relative = self.relative(&metadata_path);
        let metadata: Option<ContractFile> = self.read_toml(&metadata_path);
        let mut documents = Vec::new();
        for entry in self.sorted_entries(dir) {
            let file = file_name(&entry);
            if file == "contract.toml" || (file == "examples" && entry.is_dir()) {
                continue;
            }
            let version = file
                .strip_prefix('v')
                .and_then(|rest| rest.strip_suffix(".json"))
                .and_then(|number| ContractId::parse(&format!("{name}@{number}")).ok());
            let Some(id) = version else {
                self.problem(
                    self.relative(&entry),
                    "unexpected file: a contract folder holds contract.toml, v<N>.json and examples/",
                );
                continue;
            };
            if let Some((schema, text)) = self.read_json_text(&entry, MAX_SCHEMA_BYTES as u64) {
                documents.push(PendingDocument {
                    id,
                    schema,
                    text,
                    source: None,
                    label: None,
                    file: self.relative(&entry),
                    refused: false,
                });
            }
        }
        documents.sort_by_key(|document| document.id.version());
        for (expected, document) in (1..).zip(&documents) {
            if document.id.version() != expected {
                self.problem(
                    &document.file,
                    format!(
                        "version {} follows version {}: versions go 1, 2, 3 ... without gaps",
                        document.id.version(),
                        expected - 1
                    ),
                );
                break;
            }
        }
        if documents.is_empty() {
            self.problem(
                self.relative(dir),
                "the contract has no version: add v1.json",
            );
        }
        let metadata = metadata?;
        let kind = match metadata.kind.as_str() {
            "event" => MessageKind::Event,
            "command" => MessageKind::Command,
            other => {
                self.problem(&relative, format!("kind {other:?} is not event or command"));
                return None;
            }
        };
        let visibility = match metadata.visibility.as_deref() {
            None | Some("published") => Visibility::Published,
            Some("internal") => Visibility::Internal,
            Some(other) => {
                self.problem(
                    &relative,
                    format!("visibility {other:?} is not published or internal"),
                );
                return None;
            }
        };
        let evolution = self.evolution(&relative, &metadata, kind)?;
        for (key, version) in &metadata.versions {
            let number = key.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
            match documents
                .iter_mut()
                .find(|document| Some(document.id.version()) == number)
            {
                Some(document) => {
                    document.source = version.source.clone();
                    document.label = version.label.clone();
                }
                None => self.problem(
                    &relative,
                    format!(
                        "versions.{key}: the contract has no such version (v1.json, v2.json, ...)"
                    ),
                ),
            }
        }
        Some(PendingContract {
            name,
            dir: dir.to_path_buf(),
            metadata_file: relative.clone(),
            kind,
            visibility,
            evolution,
            description: metadata.description,
            documents,
        })
    }

    /// The level (by default backward-transitive for events, backward for commands: see
    /// docs/compatibility.md), the policy (strict by default) and the breaking changes
    /// accepted on purpose (`[accept_breaking] v3 = "why"`, each with a reason).
    fn evolution(
        &mut self,
        relative: &Path,
        metadata: &ContractFile,
        kind: MessageKind,
    ) -> Option<Evolution> {
        let level = match metadata.compatibility.as_deref() {
            None => match kind {
                MessageKind::Event => Level::BackwardTransitive,
                MessageKind::Command => Level::Backward,
            },
            Some(level) => match Level::parse(level) {
                Some(level) => level,
                None => {
                    self.problem(
                        relative,
                        format!(
                            "compatibility {level:?} is not a known level (none, backward, \
                             backward-transitive, forward, forward-transitive, full, full-transitive)"
                        ),
                    );
                    return None;
                }
            },
        };
        let policy = match metadata.compatibility_policy.as_deref() {
            None | Some("strict") => compat::Policy::Strict,
            Some("lenient") => compat::Policy::Lenient,
            Some(other) => {
                self.problem(
                    relative,
                    format!("compatibility_policy {other:?} is not strict or lenient"),
                );
                return None;
            }
        };
        let mut accepted_breaking = BTreeMap::new();
        for (key, reason) in &metadata.accept_breaking {
            let version = key
                .strip_prefix('v')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n >= 2);
            match version {
                Some(version) if !reason.trim().is_empty() => {
                    accepted_breaking.insert(version, reason.trim().to_owned());
                }
                Some(_) => self.problem(
                    relative,
                    format!("accept_breaking.{key}: say why the breaking change is accepted"),
                ),
                None => self.problem(
                    relative,
                    format!("accept_breaking.{key}: keys are versions from 2 on, as v2, v3, ..."),
                ),
            }
        }
        Some(Evolution {
            level,
            policy,
            accepted_breaking,
        })
    }

    fn check_examples(&mut self, version: &ContractVersion, contract_dir: &Path) {
        let examples = contract_dir
            .join("examples")
            .join(format!("v{}", version.id.version()));
        if !examples.is_dir() {
            return;
        }
        for entry in self.sorted_entries(&examples) {
            if entry
                .extension()
                .is_none_or(|extension| extension != "json")
            {
                self.problem(
                    self.relative(&entry),
                    "unexpected file: examples are .json files",
                );
                continue;
            }
            let Some((example, text)) = self.read_json_text(&entry, MAX_FILE_BYTES) else {
                continue;
            };
            for error in version.validator.iter_errors(&example).take(20) {
                let (line, column) =
                    resources::position(&text, &error.instance_path().to_string()).unzip();
                self.problems.push(
                    RegistryProblem::new(
                        self.relative(&entry),
                        format!(
                            "example is invalid against {}: {}",
                            version.id,
                            describe(&error)
                        ),
                    )
                    .at(line, column),
                );
            }
        }
    }

    // ---- translators ----------------------------------------------------------------------

    fn translators(
        &mut self,
        contexts: &BTreeMap<ContextName, Context>,
        contracts: &BTreeMap<ContractName, Contract>,
    ) -> BTreeMap<TranslatorId, Arc<Translator>> {
        let mut translators = BTreeMap::new();
        for (context, dir) in self.context_dirs("translators", contexts) {
            let mut stems: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
            for entry in self.sorted_entries(&dir) {
                let file = file_name(&entry);
                let kind = [".rhai", ".toml", ".cases.json"]
                    .into_iter()
                    .find(|suffix| file.ends_with(suffix));
                match kind {
                    Some(suffix) if entry.is_file() => {
                        let stem = file[..file.len() - suffix.len()].to_owned();
                        stems.entry(stem).or_default().insert(suffix);
                    }
                    _ => self.problem(
                        self.relative(&entry),
                        "unexpected file: translators/<context>/ holds <name>.rhai, <name>.toml and <name>.cases.json",
                    ),
                }
            }
            for (stem, files) in stems {
                let script_path = dir.join(format!("{stem}.rhai"));
                if !files.contains(".rhai") {
                    self.problem(
                        self.relative(&dir.join(format!("{stem}.toml"))),
                        format!("no script {stem}.rhai beside this file"),
                    );
                    continue;
                }
                let id = match TranslatorId::new(context.clone(), &stem) {
                    Ok(id) => id,
                    Err(error) => {
                        self.problem(self.relative(&script_path), error.to_string());
                        continue;
                    }
                };
                match self.read_translator(id.clone(), &dir, &files, contracts) {
                    Some(translator) => {
                        translators.insert(id, Arc::new(translator));
                    }
                    None => {
                        self.broken.insert(id.to_string());
                    }
                }
            }
        }
        translators
    }

    fn read_translator(
        &mut self,
        id: TranslatorId,
        dir: &Path,
        files: &BTreeSet<&'static str>,
        contracts: &BTreeMap<ContractName, Contract>,
    ) -> Option<Translator> {
        let stem = id.name().to_owned();
        let script_path = dir.join(format!("{stem}.rhai"));
        let script_file = self.relative(&script_path);
        let declaration_path = dir.join(format!("{stem}.toml"));
        let cases_path = dir.join(format!("{stem}.cases.json"));

        let source = self.read_text(&script_path, MAX_FILE_BYTES);
        let compiled =
            source
                .as_ref()
                .and_then(|source| match crate::scripting::engine().compile(source) {
                    Ok(ast) => match translator::entry_point(&ast) {
                        Ok(takes_meta) => Some((ast, takes_meta)),
                        Err(message) => {
                            self.problem(&script_file, message);
                            None
                        }
                    },
                    Err(error) => {
                        let position = error.position();
                        self.problems.push(
                            RegistryProblem::new(
                                &script_file,
                                format!("script does not compile: {}", error.err_type()),
                            )
                            .at(position.line(), position.position()),
                        );
                        None
                    }
                });

        let declaration: Option<TranslatorFile> = if files.contains(".toml") {
            self.read_toml(&declaration_path)
        } else {
            self.problem(
                &script_file,
                format!(
                    "no {stem}.toml beside the script declaring its input and output contracts"
                ),
            );
            None
        };
        let cases = if files.contains(".cases.json") {
            self.read_cases(&cases_path)
        } else {
            self.problem(
                &script_file,
                format!("no {stem}.cases.json beside the script: every translator has test cases"),
            );
            Vec::new()
        };
        let declaration = declaration?;
        let declaration_file = self.relative(&declaration_path);
        let translator_id = id.to_string();
        let mut contract = |field: &str, text: &str| -> Option<Arc<ContractVersion>> {
            let parsed = ContractId::parse(text).map_err(|error| error.to_string());
            let found = parsed.clone().and_then(|id| {
                contracts
                    .get(id.name())
                    .and_then(|contract| contract.version(id.version()))
                    .cloned()
                    .ok_or_else(|| format!("{field} names {id}, which the registry does not have"))
            });
            match (found, parsed) {
                (Ok(version), _) => Some(version),
                (Err(_), Ok(id)) if self.is_broken(&id) => {
                    self.skip(&id.to_string(), format!("translator {translator_id}"));
                    None
                }
                (Err(message), _) => {
                    self.problem(&declaration_file, message);
                    None
                }
            }
        };
        let input = contract("input", &declaration.input);
        let output = contract("output", &declaration.output);
        let (ast, takes_meta) = compiled?;
        let source = source.expect("compiled scripts were read");
        Some(Translator {
            id,
            description: declaration.description,
            input: input?,
            output: output?,
            reads: crate::scripting::reads(&ast),
            ast: Arc::new(ast),
            takes_meta,
            content_hash: translator::content_hash(&source),
            cases,
        })
    }

    fn read_cases(&mut self, path: &Path) -> Vec<Case> {
        let Some(value) = self.read_json(path, MAX_FILE_BYTES) else {
            return Vec::new();
        };
        let (cases, problems) = cases::parse(value);
        for problem in problems {
            self.problem(self.relative(path), problem);
        }
        cases
    }

    // ---- routes ---------------------------------------------------------------------------

    fn routes(
        &mut self,
        source: &str,
        files: &[RouteFile],
        contexts: &BTreeMap<ContextName, Context>,
        contracts: &BTreeMap<ContractName, Contract>,
        translators: &BTreeMap<TranslatorId, Arc<Translator>>,
    ) -> Vec<Arc<Route>> {
        let mut routes: Vec<Arc<Route>> = Vec::new();
        let mut names = BTreeSet::new();
        for file in files {
            let (line, column) = line_column(source, file.name.span().start);
            let mut check = RouteCheck {
                loader: self,
                line,
                column,
                label: format!("route {:?}", truncate(file.name.get_ref(), 64)),
            };
            if let Some(route) = check.route(file, contexts, contracts, translators) {
                if !names.insert(route.name.clone()) {
                    check.problem(format!("the name {} is used by another route", route.name));
                    continue;
                }
                routes.push(Arc::new(route));
            }
        }
        // A command goes to exactly one route: two routes taking the same command from the same
        // sender would dead-letter every one of them.
        let mut seen: BTreeMap<(&ContextName, &ContractId), &RouteName> = BTreeMap::new();
        for route in &routes {
            for version in route
                .accepts
                .iter()
                .filter(|version| version.kind == MessageKind::Command)
            {
                if let Some(other) = seen.insert((&route.upstream, &version.id), &route.name) {
                    self.problem(
                        CONFIG_FILE,
                        format!(
                            "routes {other} and {} both take the command {} from {}: a command goes to exactly one route",
                            route.name, version.id, route.upstream
                        ),
                    );
                }
            }
        }
        routes
    }

    // ---- files ----------------------------------------------------------------------------

    /// `<kind>/<context>/` folders; a folder for an unknown context is a problem.
    fn context_dirs(
        &mut self,
        kind: &str,
        contexts: &BTreeMap<ContextName, Context>,
    ) -> Vec<(ContextName, PathBuf)> {
        let dir = self.root.join(kind);
        if !dir.is_dir() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for entry in self.sorted_entries(&dir) {
            let relative = self.relative(&entry);
            if !entry.is_dir() {
                self.problem(
                    &relative,
                    format!("unexpected file: {kind}/ holds one folder per context"),
                );
                continue;
            }
            match ContextName::parse(&file_name(&entry)) {
                Ok(context) if contexts.contains_key(&context) => found.push((context, entry)),
                Ok(context) => self.problem(
                    &relative,
                    format!("context {context} is not declared in {CONFIG_FILE}"),
                ),
                Err(error) => self.problem(&relative, error.to_string()),
            }
        }
        found
    }

    fn sorted_entries(&mut self, dir: &Path) -> Vec<PathBuf> {
        match fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| !file_name(path).starts_with('.'))
                    .collect();
                paths.sort();
                paths
            }
            Err(error) => {
                self.problem(
                    self.relative(dir),
                    format!("cannot read the folder: {error}"),
                );
                Vec::new()
            }
        }
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }

    fn read_text(&mut self, path: &Path, max: u64) -> Option<String> {
        let relative = self.relative(path);
        match fs::metadata(path) {
            Ok(metadata) if metadata.len() > max => {
                self.problem(
                    &relative,
                    format!(
                        "the file is {} bytes, over the cap of {max}",
                        metadata.len()
                    ),
                );
                return None;
            }
            Ok(_) => {}
            Err(error) => {
                self.problem(&relative, format!("cannot read the file: {error}"));
                return None;
            }
        }
        let text = fs::read_to_string(path)
            .map_err(|error| self.problem(&relative, format!("cannot read the file: {error}")))
            .ok()?;
        self.digest.update(relative.to_string_lossy().as_bytes());
        self.digest.update([0]);
        self.digest.update(text.len().to_le_bytes());
        self.digest.update(text.as_bytes());
        Some(text)
    }

    fn read_json(&mut self, path: &Path, max: u64) -> Option<Value> {
        self.read_json_text(path, max).map(|(value, _)| value)
    }

    /// A JSON file, parsed, and its text.
    fn read_json_text(&mut self, path: &Path, max: u64) -> Option<(Value, String)> {
        let text = self.read_text(path, max)?;
        match parse_strict(text.as_bytes()) {
            Ok(parsed) => Some((parsed.value, text)),
            Err(error) => {
                let line = (error.line() > 0).then_some(error.line());
                let column = (error.column() > 0).then_some(error.column());
                self.problems.push(
                    RegistryProblem::new(self.relative(path), format!("invalid JSON: {error}"))
                        .at(line, column),
                );
                None
            }
        }
    }

    fn read_toml<T: serde::de::DeserializeOwned>(&mut self, path: &Path) -> Option<T> {
        let text = self.read_text(path, MAX_FILE_BYTES)?;
        if path.file_name().is_some_and(|name| name != CONFIG_FILE) {
            self.tomls.insert(self.relative(path), text.clone());
        }
        match toml::from_str(&text) {
            Ok(value) => Some(value),
            Err(error) => {
                let (line, column) = error
                    .span()
                    .map(|span| line_column(&text, span.start))
                    .unzip();
                self.problems.push(
                    RegistryProblem::new(self.relative(path), error.message().to_owned())
                        .at(line, column),
                );
                None
            }
        }
    }
}

struct PendingContract {
    name: ContractName,
    dir: PathBuf,
    /// Its `contract.toml`, relative to the root.
    metadata_file: PathBuf,
    kind: MessageKind,
    visibility: Visibility,
    evolution: Evolution,
    description: Option<String>,
    documents: Vec<PendingDocument>,
}

/// How a contract's versions may evolve, from its metadata.
struct Evolution {
    level: Level,
    policy: compat::Policy,
    accepted_breaking: BTreeMap<u32, String>,
}

struct PendingDocument {
    id: ContractId,
    schema: Value,
    /// The file's text, for the positions of problems in it.
    text: String,
    /// `[versions.vN] source` and `label`.
    source: Option<String>,
    label: Option<String>,
    file: PathBuf,
    refused: bool,
}

/// A version read as a resource and indexed.
struct ReadResource {
    /// In the index.
    position: usize,
    draft: jsonschema::Draft,
    retrieval: url::Url,
    /// The resources its references name directly.
    reaches: BTreeSet<usize>,
}

/// Checks one `[[routes]]` entry; every problem points at the route's `name` line.
struct RouteCheck<'a> {
    loader: &'a mut Loader,
    line: usize,
    column: usize,
    label: String,
}

impl RouteCheck<'_> {
    fn problem(&mut self, message: impl AsRef<str>) {
        let problem =
            RegistryProblem::new(CONFIG_FILE, format!("{}: {}", self.label, message.as_ref()))
                .at(Some(self.line), Some(self.column));
        self.loader.problems.push(problem);
    }

    fn route(
        &mut self,
        file: &RouteFile,
        contexts: &BTreeMap<ContextName, Context>,
        contracts: &BTreeMap<ContractName, Contract>,
        translators: &BTreeMap<TranslatorId, Arc<Translator>>,
    ) -> Option<Route> {
        let problems_before = self.loader.problems.len();
        let name = RouteName::parse(file.name.get_ref())
            .map_err(|e| self.problem(e.to_string()))
            .ok();
        let mut context = |field: &str, slug: &str| -> Option<&Context> {
            match ContextName::parse(slug) {
                Ok(name) => contexts.get(&name).or_else(|| {
                    self.problem(format!("{field} {name} is not a context of {CONFIG_FILE}"));
                    None
                }),
                Err(error) => {
                    self.problem(error.to_string());
                    None
                }
            }
        };
        let upstream = context("upstream", &file.upstream).map(|context| context.name.clone());
        let downstream = context("downstream", &file.downstream);
        let mode = Mode::parse(&file.mode);
        if mode.is_none() {
            self.problem(format!(
                "mode {:?} is not conformist, open-host, anti-corruption or enrich",
                truncate(&file.mode, 40)
            ));
        }
        if let (Some(upstream), Some(downstream)) = (&upstream, downstream)
            && *upstream == downstream.name
        {
            self.problem("upstream and downstream are the same context");
        }

        let skipped_before = self.loader.skipped.values().map(Vec::len).sum::<usize>();
        let route_label = format!("route {}", truncate(file.name.get_ref(), 64));
        let version = |text: &str| -> Result<Arc<ContractVersion>, String> {
            let id = ContractId::parse(text).map_err(|error| error.to_string())?;
            contracts
                .get(id.name())
                .and_then(|contract| contract.version(id.version()))
                .cloned()
                .ok_or_else(|| format!("contract {id} does not exist in the registry"))
        };
        // A contract or translator that is broken itself is not reported again per route.
        let broken_version = |loader: &Loader, text: &str| {
            ContractId::parse(text).is_ok_and(|id| loader.is_broken(&id))
        };
        let translator = match &file.translator {
            Some(text) => match TranslatorId::parse(text) {
                Ok(id) => match translators.get(&id) {
                    Some(translator) => Some(translator.clone()),
                    None if self.loader.broken.contains(&id.to_string()) => {
                        self.loader
                            .skip(&format!("translator {id}"), route_label.clone());
                        None
                    }
                    None => {
                        self.problem(format!("translator {id} does not exist (or did not load)"));
                        None
                    }
                },
                Err(error) => {
                    self.problem(error.to_string());
                    None
                }
            },
            None => None,
        };
        let mut accepts: Vec<Arc<ContractVersion>> = Vec::new();
        let mut expansions = Vec::new();
        for text in &file.accepts {
            match AcceptPattern::parse(text) {
                None => match version(text) {
                    Ok(version) => accepts.push(version),
                    Err(_) if broken_version(self.loader, text) => {
                        self.loader.skip(text, route_label.clone());
                    }
                    Err(message) => self.problem(message),
                },
                Some(Err(message)) => self.problem(format!("accepts {text:?}: {message}")),
                Some(Ok(pattern)) => {
                    let expansion = expand(
                        text,
                        &pattern,
                        contracts,
                        upstream.as_ref(),
                        downstream.map(|context| &context.name),
                        mode,
                    );
                    if expansion.taken.is_empty() {
                        self.problem(format!(
                            "accepts {text:?} takes no contract version the route may take{}",
                            if expansion.left_out.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " ({} matched but left out, e.g. {}: {})",
                                    expansion.left_out.len(),
                                    expansion.left_out[0].0,
                                    expansion.left_out[0].1
                                )
                            }
                        ));
                    }
                    for id in &expansion.taken {
                        if let Ok(version) = version(&id.to_string())
                            && !accepts.iter().any(|taken| taken.id == version.id)
                        {
                            accepts.push(version);
                        }
                    }
                    expansions.push(expansion);
                }
            }
        }
        let output = match &file.output {
            Some(text) => match version(text) {
                Ok(version) => Some(version),
                Err(_) if broken_version(self.loader, text) => {
                    self.loader.skip(text, route_label.clone());
                    None
                }
                Err(message) => {
                    self.problem(message);
                    None
                }
            },
            None => None,
        };
        let ordering_key = match file.ordering_key.as_deref() {
            None => None,
            Some("subject") => Some(OrderingKey::Subject),
            Some(pointer) if pointer.starts_with('/') => {
                Some(OrderingKey::Pointer(pointer.to_owned()))
            }
            Some(other) => {
                self.problem(format!("ordering_key {other:?} must be \"subject\" or a JSON pointer such as \"/order_id\""));
                None
            }
        };
        let shards = file.shards.unwrap_or(DEFAULT_SHARDS);
        if !(1..=MAX_SHARDS).contains(&shards) {
            self.problem(format!("shards must be between 1 and {MAX_SHARDS}"));
        }
        if file.shards.is_some() && ordering_key.is_none() {
            self.problem(
                "shards applies only to a route with an ordering_key (the others are shared by competing consumers)",
            );
        }
        let wire = match file.wire.as_deref() {
            None | Some("binary") => Wire::Binary,
            Some("structured") => Wire::Structured,
            Some(other) => {
                self.problem(format!(
                    "wire {other:?} must be \"binary\" or \"structured\""
                ));
                Wire::Binary
            }
        };
        let max_outputs = file.max_outputs.unwrap_or(1);
        if !(1..=MAX_MAX_OUTPUTS).contains(&max_outputs) {
            self.problem(format!(
                "max_outputs must be between 1 and {MAX_MAX_OUTPUTS}"
            ));
        }
        let policy = self.policy(file);
        let dedup = match file.dedup.as_deref() {
            None => None,
            Some(text) => match self.duration("dedup", text) {
                Some(window) if (Duration::from_secs(1)..=MAX_DEDUP).contains(&window) => {
                    Some(window)
                }
                Some(_) => {
                    self.problem(format!(
                        "dedup {text:?} must be between 1s and {}",
                        humantime::format_duration(MAX_DEDUP)
                    ));
                    None
                }
                None => None,
            },
        };

        let (Some(name), Some(upstream), Some(downstream), Some(mode)) =
            (name, upstream, downstream, mode)
        else {
            return None;
        };
        // Skipped because of something broken: the one line after the routes says so.
        if self.loader.skipped.values().map(Vec::len).sum::<usize>() != skipped_before {
            return None;
        }
        let downstream_name = downstream.name.clone();
        let lookups = self.lookups(&name, mode, &file.lookups, downstream);
        let route = self.shape(
            Route {
                name,
                description: file.description.clone(),
                upstream,
                downstream: downstream_name,
                mode,
                accepts,
                translator,
                output,
                max_outputs,
                ordering_key,
                shards,
                wire,
                policy: policy?,
                lookups,
                expansions,
                dedup,
            },
            file.translator.is_some(),
            !file.accepts.is_empty(),
        );
        (self.loader.problems.len() == problems_before).then_some(route)
    }

    /// The rules of each mode: who owns the translator, which contracts go in and out.
    fn shape(&mut self, mut route: Route, translator_named: bool, accepts_named: bool) -> Route {
        match (route.mode, &route.translator) {
            (Mode::Conformist, Some(_)) => self.problem("a conformist route has no translator"),
            (Mode::OpenHost | Mode::AntiCorruption, None) if !translator_named => {
                self.problem(format!("an {} route needs a translator", route.mode.as_str()));
            }
            (Mode::Enrich, None) if route.output.is_none() && !translator_named => self.problem(
                "an enrich route needs a translator, or an output contract to merge its look-ups into",
            ),
            _ => {}
        }
        if route.mode == Mode::Conformist && route.accepts.is_empty() && !accepts_named {
            self.problem("a conformist route must list the contract versions it accepts");
        }
        if route.output.is_some() && (route.mode != Mode::Enrich || route.translator.is_some()) {
            self.problem("output is only for enrich routes that merge (without a translator)");
        }
        if route.mode != Mode::Enrich && !route.lookups.is_empty() {
            self.problem("only enrich routes have look-ups");
        }
        if route.mode == Mode::Enrich && route.lookups.is_empty() {
            self.problem("an enrich route needs at least one look-up");
        }
        if let Some(translator) = route.translator.clone() {
            let owner = match route.mode {
                Mode::OpenHost => &route.upstream,
                _ => &route.downstream,
            };
            if translator.id.context() != owner {
                self.problem(format!(
                    "translator {} belongs to {}, but an {} route's translator belongs to its {} context ({owner})",
                    translator.id,
                    translator.id.context(),
                    route.mode.as_str(),
                    if route.mode == Mode::OpenHost { "upstream" } else { "downstream" },
                ));
            }
            if route.accepts.is_empty() {
                route.accepts.push(translator.input.clone());
            } else if route.accepts.len() != 1 || route.accepts[0].id != translator.input.id {
                self.problem(format!(
                    "accepts must be [\"{}\"], the input of translator {}",
                    translator.input.id, translator.id
                ));
            }
            if route.mode == Mode::OpenHost {
                let output = &translator.output;
                if output.id.context() != &route.upstream
                    || output.kind != MessageKind::Event
                    || output.visibility != Visibility::Published
                {
                    self.problem(format!(
                        "an open-host translator must write a published event of {}: {} is not one",
                        route.upstream, output.id
                    ));
                }
            }
        }
        let output = route
            .translator
            .as_ref()
            .map(|translator| translator.output.clone())
            .or_else(|| route.output.clone());
        if let Some(output) = &output
            && route.mode != Mode::OpenHost
            && output.id.context() != &route.downstream
        {
            self.problem(format!(
                "the output {} must be a contract of the downstream context {}",
                output.id, route.downstream
            ));
        }
        route.output = output;
        let upstream = route.upstream.clone();
        let downstream = route.downstream.clone();
        let internal_allowed = route.mode == Mode::OpenHost;
        for version in route.accepts.clone() {
            let owner_ok = match version.kind {
                MessageKind::Event => version.id.context() == &upstream,
                MessageKind::Command => version.id.context() == &downstream,
            };
            if !owner_ok {
                self.problem(format!(
                    "{} is {} owned by {}: a route takes events of its upstream ({upstream}) and commands of its downstream ({downstream})",
                    version.id,
                    match version.kind {
                        MessageKind::Event => "an event",
                        MessageKind::Command => "a command",
                    },
                    version.id.context()
                ));
            }
            if version.visibility == Visibility::Internal && !internal_allowed {
                self.problem(format!(
                    "{} is internal to {}: only its own open-host routes may read it",
                    version.id,
                    version.id.context()
                ));
            }
        }
        route
    }

    fn policy(&mut self, file: &RouteFile) -> Option<Policy> {
        let mut policy = Policy::default();
        let mut ok = true;
        let mut action = |field: &str, value: &Option<String>, slot: &mut Action| {
            if let Some(value) = value {
                match Action::parse(value) {
                    Some(action) => *slot = action,
                    None => {
                        ok = false;
                        self.problem(format!(
                            "on_failure.{field} {value:?} is not dead-letter, drop or retry"
                        ));
                    }
                }
            }
        };
        action(
            "validate-in",
            &file.on_failure.validate_in,
            &mut policy.validate_in,
        );
        action(
            "translate",
            &file.on_failure.translate,
            &mut policy.translate,
        );
        action("enrich", &file.on_failure.enrich, &mut policy.enrich);
        action(
            "validate-out",
            &file.on_failure.validate_out,
            &mut policy.validate_out,
        );
        if let Some(retry) = &file.retry {
            if let Some(max_attempts) = retry.max_attempts {
                if (1..=100).contains(&max_attempts) {
                    policy.max_attempts = max_attempts;
                } else {
                    ok = false;
                    self.problem("retry.max_attempts must be between 1 and 100");
                }
            }
            for (field, value, slot) in [
                (
                    "initial_backoff",
                    &retry.initial_backoff,
                    &mut policy.initial_backoff,
                ),
                ("max_backoff", &retry.max_backoff, &mut policy.max_backoff),
            ] {
                if let Some(value) = value {
                    match self.duration(field, value) {
                        Some(duration) => *slot = duration,
                        None => ok = false,
                    }
                }
            }
        }
        ok.then_some(policy)
    }

    fn duration(&mut self, field: &str, value: &str) -> Option<Duration> {
        humantime::parse_duration(value)
            .map_err(|error| {
                self.problem(format!(
                    "{field} {value:?} is not a duration such as \"500ms\" or \"2s\": {error}"
                ))
            })
            .ok()
    }

    /// A look-up's timeouts and answer size within the caps (`route::MAX_LOOKUP_TIMEOUT`,
    /// `route::MAX_LOOKUP_BYTES`); each one over is a problem.
    fn within_lookup_caps(
        &mut self,
        label: &str,
        timeout: Duration,
        connect_timeout: Duration,
        max_bytes: usize,
    ) -> bool {
        let mut within = true;
        for (field, value) in [("timeout", timeout), ("connect_timeout", connect_timeout)] {
            if value > MAX_LOOKUP_TIMEOUT {
                self.problem(format!(
                    "{label}: {field} {} is over the cap of {}",
                    humantime::format_duration(value),
                    humantime::format_duration(MAX_LOOKUP_TIMEOUT)
                ));
                within = false;
            }
        }
        if max_bytes > MAX_LOOKUP_BYTES {
            self.problem(format!(
                "{label}: max_bytes {max_bytes} is over the cap of {MAX_LOOKUP_BYTES} (16 MiB)"
            ));
            within = false;
        }
        within
    }

    fn lookups(
        &mut self,
        route: &RouteName,
        mode: Mode,
        files: &[LookupFile],
        downstream: &Context,
    ) -> Vec<Lookup> {
        let mut lookups: Vec<Lookup> = Vec::new();
        if mode != Mode::Enrich {
            if !files.is_empty() {
                self.problem("only enrich routes have look-ups");
            }
            return lookups;
        }
        for file in files {
            let label = format!("look-up {:?}", truncate(&file.name, 40));
            let valid_name = !file.name.is_empty()
                && file.name.len() <= 64
                && file
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_name {
                self.problem(format!("{label}: names are ASCII letters, digits and _"));
                continue;
            }
            if lookups.iter().any(|lookup| lookup.name == file.name) {
                self.problem(format!("{label}: the name is used twice"));
                continue;
            }
            let template = match UrlTemplate::parse(&file.url, &downstream.lookup_allow) {
                Ok(template) => template,
                Err(message) => {
                    self.problem(format!("{label}: {message}"));
                    continue;
                }
            };
            let mut duration = |field: &str, value: &Option<String>, default: Duration| match value
            {
                Some(value) => self.duration(field, value),
                None => Some(default),
            };
            let timeout = duration("timeout", &file.timeout, Duration::from_secs(2));
            let connect_timeout = duration(
                "connect_timeout",
                &file.connect_timeout,
                Duration::from_millis(500),
            );
            let cache_ttl = duration("cache_ttl", &file.cache_ttl, Duration::from_secs(60));
            let breaker_cooldown = duration(
                "breaker_cooldown",
                &file.breaker_cooldown,
                Duration::from_secs(30),
            );
            let (Some(timeout), Some(connect_timeout), Some(cache_ttl), Some(breaker_cooldown)) =
                (timeout, connect_timeout, cache_ttl, breaker_cooldown)
            else {
                continue;
            };
            let max_bytes = file.max_bytes.unwrap_or(256 * 1024);
            if !self.within_lookup_caps(&label, timeout, connect_timeout, max_bytes) {
                continue;
            }
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(crate::tls::lookup_config())
                .connect_timeout(connect_timeout)
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("contextgate/", env!("CARGO_PKG_VERSION")))
                .build();
            let client = match client {
                Ok(client) => client,
                Err(error) => {
                    self.problem(format!("{label}: cannot build the HTTP client: {error}"));
                    continue;
                }
            };
            let cache = moka::future::Cache::builder()
                .name(&format!("{route}/{}", file.name))
                .max_capacity(file.cache_bytes.unwrap_or(16 * 1024 * 1024))
                .weigher(|url: &String, value: &Arc<Value>| {
                    let size = url.len() + value.to_string().len();
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_live(cache_ttl.max(Duration::from_nanos(1)))
                .build();
            lookups.push(Lookup {
                name: file.name.clone(),
                template,
                timeout,
                connect_timeout,
                cache_ttl,
                max_bytes,
                client,
                cache,
                breaker: Breaker::new(file.breaker_failures.unwrap_or(5), breaker_cooldown),
            });
        }
        lookups
    }
}

/// A pattern of `accepts` expanded against the registry: every version whose contract name and
/// number it takes and that the route may take (an event of its upstream or a command of its
/// downstream; internal contracts only on open-host routes); the others it matched are left
/// out, with why.
fn expand(
    text: &str,
    pattern: &AcceptPattern,
    contracts: &BTreeMap<ContractName, Contract>,
    upstream: Option<&ContextName>,
    downstream: Option<&ContextName>,
    mode: Option<Mode>,
) -> Expansion {
    let mut expansion = Expansion {
        pattern: text.to_owned(),
        taken: Vec::new(),
        left_out: Vec::new(),
    };
    for contract in contracts
        .values()
        .filter(|contract| pattern.takes_name(&contract.name))
    {
        for number in contract
            .versions
            .keys()
            .copied()
            .filter(|number| pattern.versions.take(*number))
        {
            let id = contract.name.version(number);
            let owner = contract.name.context();
            let why = match contract.kind {
                MessageKind::Event if Some(owner) != upstream => {
                    Some("an event not of the route's upstream")
                }
                MessageKind::Command if Some(owner) != downstream => {
                    Some("a command not of the route's downstream")
                }
                _ if contract.visibility == Visibility::Internal
                    && mode != Some(Mode::OpenHost) =>
                {
                    Some("internal: only its own open-host routes read it")
                }
                _ => None,
            };
            match why {
                Some(why) => expansion.left_out.push((id, why)),
                None => expansion.taken.push(id),
            }
        }
    }
    expansion
}

/// SHA-256 of the schema at `position` and of every schema it reaches through `$ref`s, by
/// registry URI: the same schemas give the same fingerprint.
fn fingerprint(
    position: usize,
    read: &BTreeMap<ContractId, ReadResource>,
    index: &resources::Index,
) -> [u8; 32] {
    let reaches: BTreeMap<usize, &BTreeSet<usize>> = read
        .values()
        .map(|resource| (resource.position, &resource.reaches))
        .collect();
    let mut reached = BTreeSet::new();
    let mut pending = vec![position];
    while let Some(next) = pending.pop() {
        if next != position && !reached.insert(next) {
            continue;
        }
        pending.extend(
            reaches
                .get(&next)
                .into_iter()
                .flat_map(|targets| targets.iter())
                .filter(|target| **target != position && !reached.contains(*target)),
        );
    }
    let mut documents: Vec<&resources::Indexed> = reached
        .iter()
        .map(|position| &index.resources[*position])
        .collect();
    documents.sort_by(|a, b| a.registry.cmp(&b.registry));
    let mut fingerprint = Sha256::new();
    for document in std::iter::once(&index.resources[position]).chain(documents) {
        fingerprint.update(document.registry.as_bytes());
        fingerprint.update([0]);
        fingerprint.update(
            serde_json::to_vec(document.resolved.as_ref()).expect("a JSON value always serializes"),
        );
        fingerprint.update([0]);
    }
    fingerprint.finalize().into()
}

/// The line of the key a problem message about a TOML file starts with: `kind "x" is ...` →
/// the `kind =` line; `accept_breaking.v3: ...` → `v3 =` under `[accept_breaking]`;
/// `versions.v4: ...` → `[versions.v4]`; `input names ...` → the `input =` line.
fn key_line(text: &str, message: &str) -> Option<usize> {
    let first = message.split([' ', ':']).next()?;
    let starts_key = |line: &str, key: &str| {
        line.trim_start()
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let numbered = || {
        text.lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line))
    };
    match first.split_once('.') {
        Some((table, key)) => {
            let header = format!("[{table}.{key}]");
            numbered()
                .find(|(_, line)| line.trim() == header)
                .map(|(number, _)| number)
                .or_else(|| {
                    let mut inside = false;
                    numbered().find_map(|(number, line)| {
                        let trimmed = line.trim();
                        if trimmed.starts_with('[') {
                            inside = trimmed == format!("[{table}]");
                            None
                        } else {
                            (inside && starts_key(line, key)).then_some(number)
                        }
                    })
                })
        }
        None => numbered()
            .find(|(_, line)| starts_key(line, first))
            .map(|(number, _)| number),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |newline| before.len() - newline - 1)
        + 1;
    (line, column)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A validation error as `pointer: message (keyword)`.
pub fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    let pointer = error.instance_path().to_string();
    let pointer = if pointer.is_empty() {
        "(root)".to_owned()
    } else {
        pointer
    };
    format!(
        "{pointer}: {} ({})",
        crate::stages::validate::explain(error),
        error.kind().keyword()
    )
}
