//! `contextgate compat OLD.json NEW.json`: the compatibility checker on two schema files, the
//! way a schema registry answers "may I register this?". Exit 0 compatible, 1 incompatible, 2 when
//! it could not run (a file unreadable or not JSON, a `$ref` it cannot follow, too complex).
//!
//! The two files are versions 1 and 2 of one contract. Each is known by the `file://` URI of its
//! absolute path, and its relative `$ref`s are read from its own folder: the files they reach
//! (and the files those reach, at most [`MAX_FILES`] in all) are loaded as the checker's other
//! documents, as long as they lie in the tree of that folder's parent. Nothing is fetched
//! from the network: a `$ref` to an `http(s)` URI stays unresolved, and the answer undecided.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS};
use crate::compat::{self, Level, Policy, Schemas, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompatFormat {
    Text,
    Json,
}

/// The most files one schema's `$ref`s may reach, itself included.
pub const MAX_FILES: usize = 256;

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{} is not JSON: {error}", path.display()))
}

/// Reads a schema file and every file its relative `$ref`s reach into `documents`, each by the
/// `file://` URI its referrer names it by; returns the schema's own URI.
fn load(path: &Path, documents: &mut BTreeMap<String, Value>) -> Result<String, String> {
    let cannot_read =
        |path: &Path, error: std::io::Error| format!("cannot read {}: {error}", path.display());
    let absolute = std::fs::canonicalize(path).map_err(|error| cannot_read(path, error))?;
    let folder = absolute
        .parent()
        .map_or_else(|| absolute.clone(), Path::to_path_buf);
    let uri = url::Url::from_file_path(&absolute)
        .map_err(|()| format!("{} has no file URI", absolute.display()))?;
    let mut pending: Vec<(url::Url, PathBuf)> = vec![(uri.clone(), absolute)];
    let mut n_files = 0;
    while let Some((uri, file)) = pending.pop() {
        if documents.contains_key(uri.as_str()) {
            continue;
        }
        n_files += 1;
        if n_files > MAX_FILES {
            return Err(format!(
                "{}: its $refs reach more than {MAX_FILES} files",
                path.display()
            ));
        }
        let schema = read(&file)?;
        for reference in compat::references(&schema) {
            let Ok(mut target) = uri.join(reference) else {
                continue;
            };
            target.set_fragment(None);
            if target.scheme() != "file" || target == uri {
                continue;
            }
            let Ok(target_path) = target.to_file_path() else {
                continue;
            };
            let target_path = std::fs::canonicalize(&target_path).map_err(|error| {
                format!(
                    "{}: $ref {reference:?}: {}",
                    file.display(),
                    cannot_read(&target_path, error)
                )
            })?;
            if !is_near(&folder, &target_path) {
                return Err(format!(
                    "{}: $ref {reference:?} leaves the tree of {}'s parent folder",
                    file.display(),
                    folder.display()
                ));
            }
            pending.push((target, target_path));
        }
        documents.insert(uri.to_string(), schema);
    }
    Ok(uri.to_string())
}

/// Whether `file` lies in the tree of `folder`'s parent: the file's own folder, a sibling
/// folder (`../common/money.json`) or the parent itself (`../money.json`).
fn is_near(folder: &Path, file: &Path) -> bool {
    file.starts_with(folder.parent().unwrap_or(folder))
}

pub fn run(old: &Path, new: &Path, level: Level, policy: Policy, format: CompatFormat) -> u8 {
    let mut documents = BTreeMap::new();
    let (old_uri, new_uri) = match (load(old, &mut documents), load(new, &mut documents)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("contextgate compat: {error}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let (Some(old_schema), Some(new_schema)) = (documents.get(&old_uri), documents.get(&new_uri))
    else {
        eprintln!("contextgate compat: a schema file was not loaded");
        return EXIT_COULD_NOT_RUN;
    };
    let history = [Version::new(1, old_schema, &old_uri)];
    let update = Version::new(2, new_schema, &new_uri);
    let report = compat::check(&history, &update, level, policy, &Schemas::new(&documents));
    let mut stdout = std::io::stdout().lock();
    let text = match format {
        CompatFormat::Json => format!(
            "{}\n",
            json!({
                "compatible": report.compatible,
                "level": level.as_str(),
                "policy": report.policy,
                "changes": report.changes.iter().map(|change| json!({
                    "type": change.change.kind.name(),
                    "path": change.change.path,
                    "compatible": change.change.compatible,
                    "direction": change.direction,
                })).collect::<Vec<_>>(),
                "counterexample": report.counterexample,
                "undecided": report.undecided,
            })
        ),
        CompatFormat::Text => {
            let mut text = String::new();
            let verdict = if report.undecided.is_some() {
                "undecided"
            } else if report.compatible {
                "compatible"
            } else {
                "incompatible"
            };
            text.push_str(&format!(
                "{verdict} ({}, {} policy): {} change(s), {} incompatible\n",
                level.as_str(),
                if policy == Policy::Lenient {
                    "lenient"
                } else {
                    "strict"
                },
                report.changes.len(),
                report
                    .changes
                    .iter()
                    .filter(|c| !c.change.compatible)
                    .count()
            ));
            for change in &report.changes {
                text.push_str(&format!(
                    "  {:<12} {:<8} {} {}\n",
                    if change.change.compatible {
                        "compatible"
                    } else {
                        "INCOMPATIBLE"
                    },
                    format!("{:?}", change.direction).to_lowercase(),
                    change.change.path,
                    change.change.kind.name()
                ));
            }
            if let Some(example) = &report.counterexample {
                text.push_str(&format!(
                    "counterexample ({}): {}\n",
                    example.summary, example.document
                ));
            }
            if let Some(why) = &report.undecided {
                text.push_str(&format!("could not decide: {why}\n"));
            }
            text
        }
    };
    let _ = stdout.write_all(text.as_bytes());
    if report.undecided.is_some() {
        EXIT_COULD_NOT_RUN
    } else if report.compatible {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    }
}
