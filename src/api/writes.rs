//! Changing the registry folder from the API, all or nothing: the files are written atomically
//! (a temporary file renamed over the old one), the whole folder is loaded again as
//! `contextgate check` would, and only a clean load switches the running gateway; otherwise every
//! file is put back as it was and the answer is 422 with every problem, placed by file and line.
//! That work runs on a blocking thread holding the registration guard, so it neither stalls the
//! runtime's workers nor stops halfway when the request is cancelled.
//!
//! Every registration is decided well within the request timeout (30 s), so that its answer
//! says what happened: it waits at most [`TURN_TIMEOUT`] for its turn (503, nothing written,
//! when another change holds it longer); a translator's cases run before its turn, within their
//! time budget (`registry::cases`), and the load in its turn runs only the cases it changed;
//! once applied, it waits at most [`SETTLE_TIMEOUT`] for RabbitMQ.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use super::ApiError;
use crate::gateway::{Gateway, Registering};
use crate::pipeline::Pipeline;
use crate::registry::{RegistryError, RegistryProblem};
use crate::stages::Problem;

/// How long a registration waits for its turn (another change in progress) before it is
/// answered 503 with nothing written.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a registration waits for RabbitMQ to run on it before answering.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for this registration's turn: registry changes run one at a time. After
/// [`TURN_TIMEOUT`], 503 (`Retry-After`): nothing was written.
pub async fn turn(gateway: &Gateway) -> Result<Registering, ApiError> {
    tokio::time::timeout(TURN_TIMEOUT, gateway.registering())
        .await
        .map_err(|_| {
            tracing::warn!(
                waited = ?TURN_TIMEOUT,
                "A registration was turned away: another change held the registry too long."
            );
            ApiError::Overloaded
        })
}

/// Writes `files` (paths under `root`) and applies the registry they make. `title` heads a 422.
/// It answers once the bus runs on the new registry, so that a route just created takes the
/// next message (on RabbitMQ: its queue declared and bound), or after [`SETTLE_TIMEOUT`] when
/// the broker is away (the consumers start on it when the broker is back).
pub async fn apply(
    gateway: &Arc<Gateway>,
    one_at_a_time: Registering,
    root: &Path,
    files: Vec<(PathBuf, Vec<u8>)>,
    title: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    // Files, a whole registry load and the switch: off the runtime's workers, which the
    // consumers need, and done to the end even if the request is cancelled meanwhile (the
    // guard goes with the work, so no other change starts before it is over).
    let folder = root.to_path_buf();
    let switched = gateway.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = one_at_a_time;
        let registry = write_and_load(&folder, &files)?;
        switched.replace(Pipeline::new(Arc::new(registry)));
        Ok(())
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "The registration task failed.");
        ApiError::Internal
    })?;
    match loaded {
        Ok(()) => {
            if !gateway.settled(SETTLE_TIMEOUT).await {
                tracing::warn!(
                    "The registration is applied; the broker consumers will run on it once connected."
                );
            }
            Ok(())
        }
        Err(None) => Err(ApiError::Internal),
        Err(Some(RegistryError::Problems(problems))) => Err(unprocessable(title(), root, problems)),
        Err(Some(other)) => Err(ApiError::Unprocessable {
            title: title(),
            problems: vec![Problem::new(other.to_string())],
        }),
    }
}

/// A 422 with every problem placed by file (relative to `root`), line and column.
pub fn unprocessable(title: String, root: &Path, problems: Vec<RegistryProblem>) -> ApiError {
    let problems = problems
        .into_iter()
        .map(|problem| {
            let file = problem
                .file
                .strip_prefix(root)
                .unwrap_or(&problem.file)
                .display()
                .to_string();
            let place = match (problem.line, problem.column) {
                (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
                (Some(line), None) => format!("{file}:{line}"),
                _ => file,
            };
            Problem::new(format!("{place}: {}", problem.message))
        })
        .collect();
    ApiError::Unprocessable { title, problems }
}

/// Writes `files` and loads the folder; a write that fails or a registry that does not load puts
/// every file back. `Err(None)`: a write failed (logged); `Err(Some(_))`: the registry refused.
fn write_and_load(
    root: &Path,
    files: &[(PathBuf, Vec<u8>)],
) -> Result<crate::registry::Registry, Option<RegistryError>> {
    let mut before: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::with_capacity(files.len());
    let mut created_folders = Vec::new();
    let written = files.iter().try_for_each(|(path, bytes)| {
        if let Some(folder) = path.parent()
            && !folder.exists()
        {
            std::fs::create_dir_all(folder)?;
            created_folders.push(folder.to_path_buf());
        }
        let old = match std::fs::read(path) {
            Ok(old) => Some(old),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            // A file that exists but cannot be read could not be put back: write nothing.
            Err(error) => return Err(error),
        };
        before.push((path.clone(), old));
        write_atomically(path, bytes)
    });
    if let Err(error) = written {
        put_back(&before, &created_folders);
        tracing::error!(%error, "Writing the registry failed.");
        return Err(None);
    }
    crate::registry::load(root).map_err(|error| {
        put_back(&before, &created_folders);
        Some(error)
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp-contextgate");
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Puts every file back as it was (removing the new ones), newest first, and the new folders.
fn put_back(before: &[(PathBuf, Option<Vec<u8>>)], created_folders: &[PathBuf]) {
    for (path, old) in before.iter().rev() {
        let restored = match old {
            Some(bytes) => write_atomically(path, bytes),
            None => std::fs::remove_file(path),
        };
        if let Err(error) = restored {
            tracing::error!(%error, file = %path.display(), "Could not put back a refused registration.");
        }
    }
    for folder in created_folders.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
}
