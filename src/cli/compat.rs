//! `contextgate compat OLD.json NEW.json`: the compatibility checker on two schema files, the
//! way a schema registry answers "may I register this?". Exit 0 compatible, 1 incompatible, 2 when
//! it could not run (a file unreadable or not JSON, a `$ref` it cannot follow, too complex).
//!
//! The two files are versions 1 and 2 of one contract; `$ref`s resolve within each file (a
//! `$ref` to another file is not followed: register both in a registry and use `check`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS};
use crate::compat::{self, Level, Policy, Schemas, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompatFormat {
    Text,
    Json,
}

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{} is not JSON: {error}", path.display()))
}

pub fn run(old: &Path, new: &Path, level: Level, policy: Policy, format: CompatFormat) -> u8 {
    let (old_schema, new_schema) = match (read(old), read(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("contextgate compat: {error}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    const OLD_URI: &str = "contextgate://compat/v1.json";
    const NEW_URI: &str = "contextgate://compat/v2.json";
    let documents = BTreeMap::from([
        (OLD_URI.to_owned(), old_schema.clone()),
        (NEW_URI.to_owned(), new_schema.clone()),
    ]);
    let history = [Version::new(1, &old_schema, OLD_URI)];
    let update = Version::new(2, &new_schema, NEW_URI);
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
