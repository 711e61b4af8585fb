//! `contextgate import`: a folder of existing JSON Schemas — JSON or YAML, as it is, at a git
//! revision, or through its git history — becomes one context's contracts, with no edit to the
//! schemas.
//!
//! # The rules
//! - **Files.** Every `.json`, `.yaml` and `.yml` file under the folder, except in hidden
//!   folders, `node_modules`, and folders named `examples` or `example`, and example files
//!   (`example*`, `*.example.*`). A file is a schema when its `$schema` names a draft, or when it
//!   has a schema keyword at the top (`type`, `properties`, `$ref`, `allOf`, ...) and each such
//!   keyword has a value of the keyword's shape (`"type": "order"` is data), or when another
//!   schema refers to it; anything else is skipped, and the plan says so. YAML is stored as the same value in JSON.
//! - **Versions.** A file named by a semver (`placed/1.2.0.yaml`) is one version of the
//!   contract its folder names; versions go in semver order, and each keeps its semver as its
//!   label. With `--history`, each change of a file in the git history (up to `--rev`, or
//!   `HEAD`) is a version, labelled with its commit. Otherwise a file is one version.
//! - **Names.** From the path (`issues/opened.schema.json` → `IssuesOpened`; the folder for
//!   semver files), or with `--names title` from the schema's `title` where it has one: words
//!   split at every character that is not an ASCII letter or digit (`$`, `-`, `_`, `.`, `/`),
//!   each capitalised, joined. A name that would start with a digit gets `N` in front; a name
//!   over 128 characters keeps its first 120 and 8 hex digits of a hash of the whole; names that
//!   come out the same get `2`, `3`, ... in path order.
//! - **Visibility.** A schema another imported contract refers to at its root (`common/user.json`,
//!   `defs.json#/definitions/x`) is `internal`: a shared part. A reference to a nested `$id`
//!   inside it does not make it one. The others are `published`. All are `--kind` (events by
//!   default).
//! - **Where each came from.** `[versions.vN] source` keeps the file's path (so its relative
//!   `$ref`s resolve as they did, see `registry::resources`) and `label` its semver or commit.
//! - **History.** Each version is checked against the earlier ones at the contract's level; a
//!   breaking step is recorded as `[accept_breaking] vN = "imported"`.
//! - **Again.** A contract the context has already takes the versions the collection gained
//!   after the ones it has, if those are the collection's first versions unchanged; otherwise
//!   the import is refused (published versions are immutable).
//! - **All or nothing.** The result is written to a copy of the registry and loaded there;
//!   only a registry that loads without a problem is written back. `--dry-run` prints the plan
//!   and the check, and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::registry::names::{ContextName, ContractName};
use crate::registry::{self, MessageKind, RegistryError, Visibility, resources};

/// How contract names are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Naming {
    /// From the file's path.
    Path,
    /// From the schema's `title`, or the path when it has none.
    Title,
}

/// What to import, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The registry folder (holds contextgate.toml).
    pub registry: PathBuf,
    pub context: ContextName,
    /// The collection's folder.
    pub source: PathBuf,
    /// Read the folder as it is at this git revision.
    pub rev: Option<String>,
    /// Versions from the git history of each file.
    pub history: bool,
    pub naming: Naming,
    pub kind: MessageKind,
    pub dry_run: bool,
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Unusable(String),
    /// The imported registry would not load: every problem, as `check` prints them.
    #[error("the imported registry has {} problem(s)", .0.len())]
    Problems(Vec<registry::RegistryProblem>, Box<Plan>),
}

/// One file read from the collection.
#[derive(Debug, Clone)]
struct Read {
    /// Relative to the collection's folder, `/`-separated.
    path: String,
    schema: Value,
    /// The commit it was read at, with `--history`.
    commit: Option<String>,
}

/// One contract to create, or to add versions to.
#[derive(Debug, Clone)]
pub struct PlannedContract {
    pub name: ContractName,
    pub visibility: Visibility,
    /// Every version, those the registry has already included (they come first).
    pub versions: Vec<PlannedVersion>,
    /// How many of `versions` the registry has already (0 for a new contract): an import adds
    /// the versions a collection gained since the last one.
    pub existing: usize,
    /// Versions whose step breaks the contract's level, accepted with the reason "imported".
    pub breaking: BTreeSet<u32>,
}

#[derive(Debug, Clone)]
pub struct PlannedVersion {
    pub source: String,
    pub label: Option<String>,
    pub schema: Value,
}

/// What an import does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub context: ContextName,
    pub kind: MessageKind,
    /// Whether `contextgate.toml` gets the context.
    pub adds_context: bool,
    pub contracts: Vec<PlannedContract>,
    /// Contracts the registry has with every version the collection has.
    pub up_to_date: Vec<ContractName>,
    /// Files not taken, and why.
    pub skipped: Vec<(String, String)>,
    /// Names changed to keep them apart, or to fit: (path, name given, why).
    pub renamed: Vec<(String, String, String)>,
}

/// Plans, checks and (unless a dry run) writes an import.
pub fn run(options: &Options) -> Result<Plan, ImportError> {
    let current = registry::load(&options.registry).map_err(|error| {
        ImportError::Unusable(format!(
            "the registry at {} must load before an import: {}",
            options.registry.display(),
            describe(&error)
        ))
    })?;
    let files = read_collection(options)?;
    let mut plan = plan(options, &current, files)?;
    let staged = tempfile::TempDir::new()
        .map_err(|error| ImportError::Unusable(format!("cannot make a staging folder: {error}")))?;
    for part in ["contextgate.toml", "contracts", "translators"] {
        copy(&options.registry.join(part), &staged.path().join(part))?;
    }
    write_plan(staged.path(), &plan)?;
    // The history's breaking steps, judged as `check --against` judges a new version.
    let loaded = match registry::load(staged.path()) {
        Ok(loaded) => loaded,
        Err(RegistryError::Problems(problems)) => {
            return Err(ImportError::Problems(problems, Box::new(plan)));
        }
        Err(error) => return Err(ImportError::Unusable(error.to_string())),
    };
    let documents = crate::evolution::documents(&loaded);
    for planned in &mut plan.contracts {
        let Some(contract) = loaded.contracts.get(&planned.name) else {
            continue;
        };
        let first_new = planned.existing.max(1);
        for (number, version) in contract.versions.iter().skip(first_new) {
            let report =
                crate::evolution::check_version(contract, *number, &version.resolved, &documents);
            if !report.compatible {
                planned.breaking.insert(*number);
            }
        }
    }
    // Loaded again only when breaking steps were written into the contracts' metadata.
    if plan
        .contracts
        .iter()
        .any(|contract| !contract.breaking.is_empty())
    {
        write_plan(staged.path(), &plan)?;
        if let Err(error) = registry::load(staged.path()) {
            return match error {
                RegistryError::Problems(problems) => {
                    Err(ImportError::Problems(problems, Box::new(plan)))
                }
                other => Err(ImportError::Unusable(other.to_string())),
            };
        }
    }
    if !options.dry_run {
        write_plan(&options.registry, &plan)?;
    }
    Ok(plan)
}

fn describe(error: &RegistryError) -> String {
    match error {
        RegistryError::Problems(problems) => format!(
            "{} problem(s), the first: {}",
            problems.len(),
            problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

// ---- reading the collection -------------------------------------------------------------

const SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "$ref",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "enum",
    "const",
    "items",
    "required",
    "definitions",
    "$defs",
    "additionalProperties",
    "patternProperties",
];

const SKIPPED_FOLDERS: &[&str] = &["node_modules", "examples", "example"];

fn is_candidate(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let (file, folders) = segments
        .split_last()
        .expect("split gives one segment at least");
    let hidden = |segment: &&str| segment.starts_with('.');
    !folders.iter().any(hidden)
        && !folders
            .iter()
            .any(|folder| SKIPPED_FOLDERS.contains(folder))
        && !hidden(file)
        && !is_example(file)
        && [".json", ".yaml", ".yml"]
            .iter()
            .any(|extension| file.ends_with(extension))
}

/// Example payloads kept beside schemas: `placed.example.json`, `example.json`,
/// `examples.yaml`, `1.2.0.example.yaml`.
fn is_example(file: &str) -> bool {
    let file = file.to_ascii_lowercase();
    file.starts_with("example") || file.contains(".example.") || file.contains(".examples.")
}

/// Parses a file's text as JSON, or YAML by its extension.
fn parse(path: &str, text: &str) -> Result<Value, String> {
    // A byte-order mark some editors write is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if path.ends_with(".json") {
        crate::message::json::parse_strict(text.as_bytes())
            .map(|parsed| parsed.value)
            .map_err(|error| format!("not JSON: {error}"))
    } else {
        yaml_serde::from_str::<Value>(text).map_err(|error| format!("not YAML: {error}"))
    }
}

fn git(folder: &Path, args: &[&str]) -> Result<Vec<u8>, ImportError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .map_err(|error| ImportError::Unusable(format!("cannot run git: {error}")))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(ImportError::Unusable(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn read_collection(options: &Options) -> Result<Vec<Read>, ImportError> {
    let source = &options.source;
    if !source.is_dir() {
        return Err(ImportError::Unusable(format!(
            "{} is not a folder",
            source.display()
        )));
    }
    if options.rev.is_none() && !options.history {
        let mut files = Vec::new();
        walk(source, "", &mut files)?;
        return Ok(files);
    }
    let rev = options.rev.as_deref().unwrap_or("HEAD");
    // NUL-separated: git quotes names with other characters when it writes lines.
    let listed = git(
        source,
        &["ls-tree", "-r", "-z", "--name-only", rev, "--", "."],
    )?;
    let mut files = Vec::new();
    for path in String::from_utf8_lossy(&listed)
        .split('\0')
        .filter(|path| !path.is_empty())
    {
        if !is_candidate(path) {
            continue;
        }
        let commits: Vec<Option<String>> = if options.history && !is_semver_file(path) {
            let log = git(
                source,
                &["log", "--reverse", "--format=%h", rev, "--", path],
            )?;
            String::from_utf8_lossy(&log)
                .lines()
                .map(|commit| Some(commit.to_owned()))
                .collect()
        } else {
            vec![None]
        };
        let mut last: Option<Value> = None;
        for commit in commits {
            let at = commit.as_deref().unwrap_or(rev);
            // A commit that deleted the file has nothing to show.
            let Ok(text) = git(source, &["show", &format!("{at}:./{path}")]) else {
                continue;
            };
            let text = String::from_utf8_lossy(&text);
            let schema = match parse(path, &text) {
                Ok(schema) => schema,
                Err(_) if commit.is_some() => continue,
                Err(why) => {
                    files.push(Read {
                        path: path.to_owned(),
                        schema: Value::String(why),
                        commit: None,
                    });
                    continue;
                }
            };
            if last.as_ref() == Some(&schema) {
                continue;
            }
            last = Some(schema.clone());
            files.push(Read {
                path: path.to_owned(),
                schema,
                commit,
            });
        }
    }
    Ok(files)
}

/// Reads every candidate file under `folder` (`prefix` is its path in the collection). A file
/// that does not parse is kept as a string saying why (planned as skipped).
fn walk(folder: &Path, prefix: &str, files: &mut Vec<Read>) -> Result<(), ImportError> {
    let mut entries: Vec<_> = std::fs::read_dir(folder)
        .map_err(|error| {
            ImportError::Unusable(format!("cannot read {}: {error}", folder.display()))
        })?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(|error| {
            ImportError::Unusable(format!("cannot read {}: {error}", entry.path().display()))
        })?;
        if kind.is_dir() {
            if !name.starts_with('.') && !SKIPPED_FOLDERS.contains(&name.as_str()) {
                walk(&entry.path(), &format!("{path}/"), files)?;
            }
        } else if kind.is_file() && is_candidate(&path) {
            let schema = match std::fs::read_to_string(entry.path()) {
                Ok(text) => parse(&path, &text).unwrap_or_else(Value::String),
                Err(error) => Value::String(format!("cannot read it: {error}")),
            };
            files.push(Read {
                path,
                schema,
                commit: None,
            });
        }
    }
    Ok(())
}

// ---- planning ---------------------------------------------------------------------------

/// The file name without its extension (`.schema.json`, `.json`, `.yaml`, `.yml`).
fn stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    for extension in [
        ".schema.json",
        ".schema.yaml",
        ".schema.yml",
        ".json",
        ".yaml",
        ".yml",
    ] {
        if let Some(stem) = file.strip_suffix(extension) {
            return stem;
        }
    }
    file
}

fn semver_of(path: &str) -> Option<semver::Version> {
    let stem = stem(path);
    semver::Version::parse(stem.strip_prefix('v').unwrap_or(stem)).ok()
}

fn is_semver_file(path: &str) -> bool {
    semver_of(path).is_some()
}

/// The path a contract is named from: the folder of a semver file, the path without its
/// extension otherwise.
fn contract_path(path: &str) -> String {
    if is_semver_file(path) {
        path.rsplit_once('/')
            .map_or_else(|| "versions".to_owned(), |(folder, _)| folder.to_owned())
    } else {
        match path.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/{}", stem(path)),
            None => stem(path).to_owned(),
        }
    }
}

const MAX_NAME: usize = 128;

/// PascalCase from any text: words split at every character that is not an ASCII letter or
/// digit, each capitalised; cut to [`MAX_NAME`] (see [`fit`]).
pub fn pascal_case(text: &str) -> String {
    fit(pascal_words(text))
}

/// The capitalised words of `text`, joined, whatever their length (`N` in front of a leading
/// digit, `Schema` for no word at all).
fn pascal_words(text: &str) -> String {
    let mut name = String::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars);
        }
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'N');
    }
    if name.is_empty() {
        name.push_str("Schema");
    }
    name
}

/// A name over [`MAX_NAME`] characters keeps its first 120 and 8 hex digits of a hash of the
/// whole (lowercase hex is allowed in PascalCase), so that long names stay apart.
fn fit(mut name: String) -> String {
    if name.len() > MAX_NAME {
        let digest = crate::registry::hex(&Sha256::digest(name.as_bytes()));
        name.truncate(MAX_NAME - 8);
        name.push_str(&digest[..8]);
    }
    name
}

/// Whether a file's value is a JSON Schema rather than data (an example payload may well have a
/// `type` or `properties` member): its `$schema` names a draft, or it has a schema keyword at the
/// top and every schema keyword there has a value of the shape the keyword takes.
fn looks_like_schema(schema: &Value) -> bool {
    const TYPES: [&str; 7] = [
        "null", "boolean", "object", "array", "number", "string", "integer",
    ];
    let Some(object) = schema.as_object() else {
        return false;
    };
    if object
        .get("$schema")
        .and_then(Value::as_str)
        .is_some_and(|uri| registry::contract::draft_named(uri).is_some())
    {
        return true;
    }
    let a_schema = |value: &Value| value.is_object() || value.is_boolean();
    let shaped = |keyword: &str, value: &Value| match keyword {
        "type" => match value {
            Value::String(name) => TYPES.contains(&name.as_str()),
            Value::Array(names) => names
                .iter()
                .all(|name| name.as_str().is_some_and(|name| TYPES.contains(&name))),
            _ => false,
        },
        "properties" | "patternProperties" | "definitions" | "$defs" => value
            .as_object()
            .is_some_and(|members| members.values().all(a_schema)),
        "required" => value
            .as_array()
            .is_some_and(|names| names.iter().all(Value::is_string)),
        "enum" => value.is_array(),
        "$ref" | "$id" => value.is_string(),
        "allOf" | "anyOf" | "oneOf" => value
            .as_array()
            .is_some_and(|members| !members.is_empty() && members.iter().all(a_schema)),
        "items" => {
            a_schema(value)
                || value
                    .as_array()
                    .is_some_and(|items| items.iter().all(a_schema))
        }
        "not" | "additionalProperties" => a_schema(value),
        _ => true,
    };
    let mut present = SCHEMA_KEYWORDS
        .iter()
        .chain(&["$id"])
        .filter_map(|keyword| object.get(*keyword).map(|value| (*keyword, value)))
        .peekable();
    present.peek().is_some() && present.all(|(keyword, value)| shaped(keyword, value))
}

fn plan(
    options: &Options,
    current: &registry::Registry,
    files: Vec<Read>,
) -> Result<Plan, ImportError> {
    let context = &options.context;
    let mut skipped = Vec::new();
    // Group into contracts, by the path each is named from.
    let mut groups: BTreeMap<String, Vec<Read>> = BTreeMap::new();
    for file in files {
        if let Value::String(why) = &file.schema {
            skipped.push((file.path.clone(), why.clone()));
            continue;
        }
        groups
            .entry(contract_path(&file.path))
            .or_default()
            .push(file);
    }
    for versions in groups.values_mut() {
        // Semver files by semver; history in commit order (kept as read).
        if versions.iter().all(|file| is_semver_file(&file.path)) {
            versions.sort_by_key(|file| semver_of(&file.path));
        }
    }
    // Which files other schemas refer to: they are schemas even without a schema keyword,
    // and internal when another contract refers to them.
    let draft = current.default_draft;
    let mut index = resources::Index::default();
    let mut references: Vec<(String, Option<url::Url>, Vec<resources::Reference>)> = Vec::new();
    for (position, (group, versions)) in groups.iter().enumerate() {
        for (number, file) in (1..).zip(versions) {
            let Ok(source) = resources::source_uri(context, &file.path) else {
                continue;
            };
            let draft = registry::contract::draft_of(&file.schema, draft).unwrap_or(draft);
            // Each planned version needs a name of its own; the real ones come at load.
            let registry_uri = url::Url::parse(&format!(
                "contextgate://registry/planned/{position}/{number}"
            ))
            .expect("a planned URI parses");
            if let Ok(resource) = resources::read(
                &file.schema,
                draft,
                context,
                registry_uri,
                Some(source.clone()),
            ) {
                let indexed = resources::Indexed {
                    contract: group.clone(),
                    owner: context.clone(),
                    visibility: Visibility::Published,
                    file: PathBuf::from(&file.path),
                    registry: String::new(),
                    resolved: std::sync::Arc::new(Value::Null),
                };
                let _ = index.add(indexed, &resource.names);
                references.push((group.clone(), Some(source), resource.references));
            }
        }
    }
    // A schema referred to whole (at its root, with or without a fragment) is a shared part;
    // one whose nested `$id` is referred to stays what it is.
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for (group, source, targets) in &references {
        for reference in targets {
            let Some(position) = index.resolve(reference, context, source.as_ref()) else {
                continue;
            };
            let whole = index
                .get(&reference.target)
                .is_some_and(|(_, pointer)| pointer.is_empty());
            let target_group = &index.resources[position].contract;
            if whole && target_group != group {
                referenced.insert(target_group.clone());
            }
        }
    }
    groups.retain(|group, versions| {
        let keep = referenced.contains(group)
            || versions.iter().any(|file| looks_like_schema(&file.schema));
        if !keep {
            for file in versions.iter() {
                skipped.push((
                    file.path.clone(),
                    "not a JSON Schema (no $schema naming a draft, no schema keywords of their \
                     shapes at the top, and no schema refers to it)"
                        .into(),
                ));
            }
        }
        keep
    });

    // Names.
    // Apart from each other; a name the context has already is refused below.
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut renamed = Vec::new();
    let mut contracts = Vec::new();
    for (group, versions) in groups {
        let title = versions
            .last()
            .and_then(|file| file.schema.get("title"))
            .and_then(Value::as_str)
            .filter(|_| options.naming == Naming::Title);
        let whole = pascal_words(title.unwrap_or(&group));
        let cut = whole.len() > MAX_NAME;
        let wanted = fit(whole);
        let mut name = wanted.clone();
        let mut n = 2;
        while taken.contains(&name) {
            let suffix = n.to_string();
            name = format!(
                "{}{suffix}",
                &wanted[..wanted.len().min(MAX_NAME - suffix.len())]
            );
            n += 1;
        }
        if name != wanted {
            renamed.push((group.clone(), name.clone(), format!("{wanted} was taken")));
        }
        if cut {
            renamed.push((
                group.clone(),
                name.clone(),
                format!(
                    "the name from the {} is over {MAX_NAME} characters",
                    if title.is_some() { "title" } else { "path" }
                ),
            ));
        }
        taken.insert(name.clone());
        let name = ContractName::new(context.clone(), &name)
            .map_err(|error| ImportError::Unusable(format!("{group}: {error}")))?;
        let visibility = if referenced.contains(&group) {
            Visibility::Internal
        } else {
            Visibility::Published
        };
        contracts.push(PlannedContract {
            name,
            visibility,
            versions: versions
                .into_iter()
                .map(|file| PlannedVersion {
                    label: semver_of(&file.path)
                        .map(|version| version.to_string())
                        .or(file.commit),
                    source: file.path,
                    schema: file.schema,
                })
                .collect(),
            breaking: BTreeSet::new(),
            existing: 0,
        });
    }
    // A contract the context has already takes the versions the collection gained since, as
    // long as the ones it has are the collection's first ones, unchanged.
    let mut up_to_date = Vec::new();
    for contract in &mut contracts {
        let folder = options
            .registry
            .join("contracts")
            .join(context.as_str())
            .join(contract.name.name());
        let Some(existing) = current.contracts.get(&contract.name) else {
            if folder.exists() {
                return Err(ImportError::Unusable(format!(
                    "contracts/{context}/{} exists but did not load",
                    contract.name.name()
                )));
            }
            continue;
        };
        let kept = existing.versions.len();
        let same = kept <= contract.versions.len()
            && existing
                .versions
                .values()
                .zip(&contract.versions)
                .all(|(version, planned)| version.schema == planned.schema);
        if !same {
            return Err(ImportError::Unusable(format!(
                "contracts/{context}/{} exists, and its {kept} version(s) are not the first \
                 versions of {} unchanged: an import creates contracts, or adds the versions \
                 a collection gained since",
                contract.name.name(),
                contract.versions[0].source
            )));
        }
        contract.existing = kept;
        contract.visibility = existing.visibility;
        if kept == contract.versions.len() {
            up_to_date.push(contract.name.clone());
        }
    }
    contracts.retain(|contract| !up_to_date.contains(&contract.name));
    Ok(Plan {
        context: context.clone(),
        kind: options.kind,
        adds_context: !current.contexts.contains_key(context),
        contracts,
        up_to_date,
        skipped,
        renamed,
    })
}

// ---- writing ----------------------------------------------------------------------------

fn copy(from: &Path, to: &Path) -> Result<(), ImportError> {
    let failed = |error: std::io::Error| {
        ImportError::Unusable(format!("cannot copy {}: {error}", from.display()))
    };
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(failed)?;
        for entry in std::fs::read_dir(from).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if from.is_file() {
        std::fs::copy(from, to).map_err(failed)?;
    }
    Ok(())
}

fn contract_toml(contract: &PlannedContract, kind: MessageKind) -> String {
    let mut text = String::from("# Imported by contextgate import.\n");
    let kind = match kind {
        MessageKind::Event => "event",
        MessageKind::Command => "command",
    };
    let visibility = match contract.visibility {
        Visibility::Published => "published",
        Visibility::Internal => "internal",
    };
    let _ = writeln!(text, "kind = \"{kind}\"\nvisibility = \"{visibility}\"");
    let quoted = |text: &str| toml_edit::Value::from(text).to_string();
    for (number, version) in (1..).zip(&contract.versions) {
        let _ = writeln!(
            text,
            "\n[versions.v{number}]\nsource = {}",
            quoted(&version.source).trim()
        );
        if let Some(label) = &version.label {
            let _ = writeln!(text, "label = {}", quoted(label).trim());
        }
    }
    if !contract.breaking.is_empty() {
        text.push_str("\n[accept_breaking]\n");
        for number in &contract.breaking {
            let _ = writeln!(text, "v{number} = \"imported\"");
        }
    }
    text
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| {
            ImportError::Unusable(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    crate::store::files::write_atomically(path, bytes)
        .map_err(|error| ImportError::Unusable(format!("cannot write {}: {error}", path.display())))
}

/// `contract.toml` of a contract the registry has, as written, with the new versions' sources
/// and labels and their breaking steps added.
fn added_versions(path: &Path, contract: &PlannedContract) -> Result<String, ImportError> {
    let unusable =
        |error: String| ImportError::Unusable(format!("cannot read {}: {error}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|error| unusable(error.to_string()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .map_err(|error: toml_edit::TomlError| unusable(error.to_string()))?;
    let implicit = || {
        let mut table = toml_edit::Table::new();
        table.set_implicit(true);
        toml_edit::Item::Table(table)
    };
    for (number, version) in (1..).zip(&contract.versions).skip(contract.existing) {
        let mut table = toml_edit::Table::new();
        table.insert("source", toml_edit::value(version.source.as_str()));
        if let Some(label) = &version.label {
            table.insert("label", toml_edit::value(label.as_str()));
        }
        if let Some(versions) = document
            .entry("versions")
            .or_insert_with(implicit)
            .as_table_like_mut()
        {
            versions.insert(&format!("v{number}"), toml_edit::Item::Table(table));
        }
    }
    for number in &contract.breaking {
        if let Some(accepted) = document
            .entry("accept_breaking")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_like_mut()
        {
            accepted.insert(&format!("v{number}"), toml_edit::value("imported"));
        }
    }
    Ok(document.to_string())
}

/// Writes the plan's contracts (and the context, if new) into the registry at `root`.
fn write_plan(root: &Path, plan: &Plan) -> Result<(), ImportError> {
    if plan.adds_context {
        let path = root.join(registry::load::CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            ImportError::Unusable(format!("cannot read {}: {error}", path.display()))
        })?;
        let mut document: toml_edit::DocumentMut = text.parse().map_err(|error| {
            ImportError::Unusable(format!("cannot read {}: {error}", path.display()))
        })?;
        let contexts = document
            .entry("contexts")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        if let Some(contexts) = contexts.as_table_like_mut()
            && contexts.get(plan.context.as_str()).is_none()
        {
            let mut table = toml_edit::Table::new();
            table.insert(
                "description",
                toml_edit::value("Imported by contextgate import."),
            );
            contexts.insert(plan.context.as_str(), toml_edit::Item::Table(table));
        }
        write_file(&path, document.to_string().as_bytes())?;
    }
    for contract in &plan.contracts {
        let folder = root
            .join("contracts")
            .join(plan.context.as_str())
            .join(contract.name.name());
        let metadata = folder.join("contract.toml");
        let text = if contract.existing == 0 {
            contract_toml(contract, plan.kind)
        } else {
            added_versions(&metadata, contract)?
        };
        write_file(&metadata, text.as_bytes())?;
        for (number, version) in (1..).zip(&contract.versions).skip(contract.existing) {
            let mut text = serde_json::to_string_pretty(&version.schema)
                .expect("a JSON value always serializes");
            text.push('\n');
            write_file(&folder.join(format!("v{number}.json")), text.as_bytes())?;
        }
    }
    Ok(())
}

/// The plan as the CLI prints it.
pub fn describe_plan(plan: &Plan) -> String {
    let kind = plan.kind;
    let mut text = String::new();
    if plan.adds_context {
        let _ = writeln!(text, "+ context {} (contextgate.toml)", plan.context);
    }
    let kind = match kind {
        MessageKind::Event => "event",
        MessageKind::Command => "command",
    };
    for contract in &plan.contracts {
        let visibility = match contract.visibility {
            Visibility::Published => "published",
            Visibility::Internal => "internal",
        };
        if contract.existing == 0 {
            let _ = writeln!(text, "+ {} ({kind}, {visibility})", contract.name);
        } else {
            let _ = writeln!(
                text,
                "> {} ({visibility}): keeps its {} version(s), adds",
                contract.name, contract.existing
            );
        }
        for (number, version) in (1..).zip(&contract.versions).skip(contract.existing) {
            let label = version
                .label
                .as_deref()
                .map(|label| format!(" [{label}]"))
                .unwrap_or_default();
            let breaking = if contract.breaking.contains(&number) {
                " — breaks the level, accepted as \"imported\""
            } else {
                ""
            };
            let _ = writeln!(text, "    v{number}{label} ← {}{breaking}", version.source);
        }
    }
    for name in &plan.up_to_date {
        let _ = writeln!(
            text,
            "= {name}: has every version of the collection already"
        );
    }
    for (path, name, why) in &plan.renamed {
        let _ = writeln!(text, "~ {path} is named {name}: {why}");
    }
    for (path, why) in &plan.skipped {
        let _ = writeln!(text, "- {path} skipped: {why}");
    }
    let versions: usize = plan
        .contracts
        .iter()
        .map(|c| c.versions.len() - c.existing)
        .sum();
    let breaking: usize = plan.contracts.iter().map(|c| c.breaking.len()).sum();
    let _ = writeln!(
        text,
        "{} contract(s) written, {versions} new version(s) ({breaking} breaking step(s) \
         accepted as imported), {} file(s) skipped",
        plan.contracts.len(),
        plan.skipped.len()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(pascal_case("issues/opened"), "IssuesOpened");
        assert_eq!(pascal_case("issues$opened"), "IssuesOpened");
        assert_eq!(
            pascal_case("common/pull_request-review"),
            "CommonPullRequestReview"
        );
        assert_eq!(pascal_case("2fa/enabled"), "N2faEnabled");
        let long = pascal_case(&"very-long-segment/".repeat(12));
        assert_eq!(long.len(), 128);
        assert!(long.starts_with("VeryLongSegmentVeryLong"));
        assert_ne!(long, pascal_case(&"very-long-segment/".repeat(13)));
        assert_eq!(
            contract_path("events/order/placed/1.2.0.yaml"),
            "events/order/placed"
        );
        assert_eq!(contract_path("common/user.schema.json"), "common/user");
        assert!(semver_of("placed/1.10.0.yaml") > semver_of("placed/1.9.0.yaml"));
    }
}
