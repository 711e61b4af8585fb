//! `contextgate registry push | pull | log`: the registry store from the command line.
//!
//! `push` is the CI path: the folder is loaded and checked as `contextgate check` does (cases
//! included), compared with the store's head as `check --against` does (an error finding, such
//! as a changed published version or an incompatible new one, refuses the push; the first
//! revision of an empty store has no baseline and its findings are only logged), and committed as
//! the head's child. `--expect-revision N` refuses it when the head is not N: the revision CI
//! checked against has been superseded. `pull` writes a revision's files into a folder;
//! `log` shows who changed what, when, with the compatibility findings of each change.
//!
//! Exit codes: 0 done (or nothing to push), 1 refused (problems, findings, head moved),
//! 2 could not run (the store is unreachable, a folder cannot be read or written).

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS, print};
use crate::evolution::Severity;
use crate::store::{self, Authored, Commit, Files, Revision, Store};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Publish a registry folder as the store's next revision (it must pass `check`, and
    /// `check --against` the head).
    Push {
        /// The registry folder (holds contextgate.toml).
        #[arg(long, default_value = ".", env = "CONTEXTGATE_REGISTRY")]
        registry: PathBuf,
        #[command(flatten)]
        store: StoreArg,
        /// Refuse unless the store's head is this revision (0: the store is empty): the
        /// baseline CI checked against.
        #[arg(long, value_name = "N")]
        expect_revision: Option<i64>,
        /// Who publishes, for the log.
        #[arg(long, default_value = "operator (registry push)")]
        author: String,
        /// One line on what the change is, for the log.
        #[arg(long, default_value = "registry push")]
        summary: String,
    },
    /// Write a revision's files (the head by default) into a folder.
    Pull {
        #[command(flatten)]
        store: StoreArg,
        /// The revision; the head without it.
        #[arg(long, value_name = "N")]
        revision: Option<i64>,
        /// The folder: new, empty, or a registry folder (its registry files are replaced).
        dir: PathBuf,
    },
    /// Show the revisions, newest first: who changed what, when, and the findings.
    Log {
        #[command(flatten)]
        store: StoreArg,
        /// How many revisions.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        format: LogFormat,
    },
}

#[derive(Debug, clap::Args)]
pub struct StoreArg {
    /// The registry store: postgres://user@host/db (libpq's sslmode and ssl files honoured).
    // Help never shows the variable's value: it may hold a password.
    #[arg(
        long = "store",
        env = "CONTEXTGATE_REGISTRY_STORE",
        hide_env_values = true
    )]
    url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub async fn run(command: RegistryCommand) -> anyhow::Result<u8> {
    match command {
        RegistryCommand::Push {
            registry,
            store,
            expect_revision,
            author,
            summary,
        } => push(&registry, &store.url, expect_revision, author, summary).await,
        RegistryCommand::Pull {
            store,
            revision,
            dir,
        } => pull(&store.url, revision, &dir).await,
        RegistryCommand::Log {
            store,
            limit,
            format,
        } => log(&store.url, limit, format).await,
    }
}

async fn connect(url: &str, command: &str) -> Option<Store> {
    match Store::connect(url).await {
        Ok(store) => Some(store),
        Err(error) => {
            eprintln!("contextgate registry {command}: {error}");
            None
        }
    }
}

async fn push(
    root: &Path,
    url: &str,
    expect: Option<i64>,
    author: String,
    summary: String,
) -> anyhow::Result<u8> {
    let folder = root.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        let registry = super::load_registry(&folder, "registry push")?;
        match store::files::snapshot(&folder) {
            Ok(files) => Some((registry, files)),
            Err(error) => {
                eprintln!(
                    "contextgate registry push: cannot read {}: {error}",
                    folder.display()
                );
                None
            }
        }
    })
    .await?;
    let Some((registry, files)) = loaded else {
        return Ok(EXIT_PROBLEMS);
    };
    let Some(store) = connect(url, "push").await else {
        return Ok(EXIT_COULD_NOT_RUN);
    };
    let head = match store.head().await {
        Ok(head) => head,
        Err(error) => {
            eprintln!("contextgate registry push: {error}");
            return Ok(EXIT_COULD_NOT_RUN);
        }
    };
    if let Some(expected) = expect
        && head.unwrap_or(0) != expected
    {
        eprintln!(
            "contextgate registry push: refused: the store's head is revision {}, not {expected}: \
             it moved since the baseline was checked; check against the new head and push again",
            head.unwrap_or(0)
        );
        return Ok(EXIT_PROBLEMS);
    }
    let parent = match head {
        None => Files::new(),
        Some(head) => match store.files(head).await {
            Ok(Some(files)) => files,
            Ok(None) => {
                eprintln!("contextgate registry push: revision {head} vanished; push again");
                return Ok(EXIT_COULD_NOT_RUN);
            }
            Err(error) => {
                eprintln!("contextgate registry push: {error}");
                return Ok(EXIT_COULD_NOT_RUN);
            }
        },
    };
    if head.is_some() && parent == files {
        print(&format!(
            "nothing to push: revision {} holds exactly these files\n",
            head.unwrap_or(0)
        ));
        return Ok(EXIT_OK);
    }
    let findings = store::findings(&registry, &parent);
    // The first revision has no baseline: its findings are logged, as a seed's are, not held
    // against it (what was published before the store is not the store's to refuse).
    let errors: Vec<&serde_json::Value> = findings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|finding| {
            head.is_some() && finding["severity"] == serde_json::json!(Severity::Error)
        })
        .collect();
    if !errors.is_empty() {
        for finding in &errors {
            eprintln!("{}", finding_line(finding));
        }
        eprintln!(
            "contextgate registry push: refused: {} finding(s) against revision {}",
            errors.len(),
            head.unwrap_or(0)
        );
        return Ok(EXIT_PROBLEMS);
    }
    let authored = Authored {
        author,
        instance: "cli".to_owned(),
        summary,
        findings,
        digest: crate::registry::hex(&registry.digest),
    };
    match store.commit(head, &parent, &files, &authored).await {
        Ok(Commit::Committed(number)) => {
            print(&format!(
                "revision {number} ({} changed file(s))\n",
                store::files::changes(&parent, &files).len()
            ));
            Ok(EXIT_OK)
        }
        Ok(Commit::HeadMoved { head: now }) => {
            eprintln!(
                "contextgate registry push: refused: the head moved to revision {} while pushing; push again",
                now.unwrap_or(0)
            );
            Ok(EXIT_PROBLEMS)
        }
        Err(error) => {
            eprintln!("contextgate registry push: {error}");
            Ok(EXIT_COULD_NOT_RUN)
        }
    }
}

async fn pull(url: &str, revision: Option<i64>, dir: &Path) -> anyhow::Result<u8> {
    let Some(store) = connect(url, "pull").await else {
        return Ok(EXIT_COULD_NOT_RUN);
    };
    let revision = match revision {
        Some(revision) => revision,
        None => match store.head().await {
            Ok(Some(head)) => head,
            Ok(None) => {
                eprintln!("contextgate registry pull: the store is empty");
                return Ok(EXIT_PROBLEMS);
            }
            Err(error) => {
                eprintln!("contextgate registry pull: {error}");
                return Ok(EXIT_COULD_NOT_RUN);
            }
        },
    };
    let files = match store.files(revision).await {
        Ok(Some(files)) => files,
        Ok(None) => {
            eprintln!("contextgate registry pull: there is no revision {revision}");
            return Ok(EXIT_PROBLEMS);
        }
        Err(error) => {
            eprintln!("contextgate registry pull: {error}");
            return Ok(EXIT_COULD_NOT_RUN);
        }
    };
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied && !dir.join(crate::registry::load::CONFIG_FILE).exists() {
        eprintln!(
            "contextgate registry pull: {} is neither empty nor a registry folder: nothing written",
            dir.display()
        );
        return Ok(EXIT_COULD_NOT_RUN);
    }
    if let Err(error) = store::files::materialize(dir, &files) {
        eprintln!(
            "contextgate registry pull: cannot write {}: {error}",
            dir.display()
        );
        return Ok(EXIT_COULD_NOT_RUN);
    }
    print(&format!(
        "revision {revision}: {} file(s) in {}\n",
        files.len(),
        dir.display()
    ));
    Ok(EXIT_OK)
}

async fn log(url: &str, limit: i64, format: LogFormat) -> anyhow::Result<u8> {
    let Some(store) = connect(url, "log").await else {
        return Ok(EXIT_COULD_NOT_RUN);
    };
    let revisions = match store.log(limit.max(1), None).await {
        Ok(revisions) => revisions,
        Err(error) => {
            eprintln!("contextgate registry log: {error}");
            return Ok(EXIT_COULD_NOT_RUN);
        }
    };
    match format {
        LogFormat::Json => print(&format!("{}\n", serde_json::to_string_pretty(&revisions)?)),
        LogFormat::Text => print(&revisions.iter().map(text).collect::<String>()),
    }
    Ok(EXIT_OK)
}

/// A revision as `registry log` prints it.
fn text(revision: &Revision) -> String {
    let mut out = format!(
        "revision {}{}  {}  by {} on {}\n    {}\n",
        revision.number,
        revision
            .parent
            .map(|parent| format!(" (parent {parent})"))
            .unwrap_or_default(),
        revision.committed,
        revision.author,
        revision.instance,
        revision.summary
    );
    for change in &revision.changes {
        let kind = match change.change {
            store::ChangeKind::Added => "added",
            store::ChangeKind::Modified => "modified",
            store::ChangeKind::Removed => "removed",
        };
        out.push_str(&format!("    {kind:<8} {}\n", change.path));
    }
    for finding in revision.findings.as_array().into_iter().flatten() {
        out.push_str(&format!("    {}\n", finding_line(finding)));
    }
    out
}

/// `file: severity rule: message`.
fn finding_line(finding: &serde_json::Value) -> String {
    format!(
        "{}: {} {}: {}",
        finding["file"].as_str().unwrap_or("?"),
        finding["severity"].as_str().unwrap_or("?"),
        finding["rule"].as_str().unwrap_or("?"),
        finding["message"].as_str().unwrap_or("?")
    )
}
