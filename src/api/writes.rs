//! Changing the registry folder from the API, all or nothing: the files are written atomically
//! (a temporary file renamed over the old one), the whole folder is loaded again as
//! `contextgate check` would, and only a clean load switches the running gateway; otherwise every
//! file is put back as it was and the answer is 422 with every problem, placed by file and line.
//! That work runs in a task of its own holding the registration guard (the files and the load on a
//! blocking thread), so it neither stalls the runtime's workers nor stops halfway when the
//! request is cancelled.
//!
//! Every registration is decided well within the request timeout (30 s), so that its answer
//! says what happened: it waits at most [`TURN_TIMEOUT`] for its turn (503, nothing written,
//! when another change holds it longer); a translator's cases run before its turn, within their
//! time budget (`registry::cases`), and the load in its turn runs only the cases it changed;
//! once applied, it waits at most [`SETTLE_TIMEOUT`] for RabbitMQ.
//!
//! In a fleet (`serve --registry-store`) the folder is the instance's working copy of the store's
//! head: the turn first catches up with the head, and a clean load is committed to the store as
//! the head's child before it is put in place (`gateway::following`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use super::ApiError;
use super::auth::Caller;
use crate::gateway::following::NotCommitted;
use crate::gateway::{Gateway, Registering};
use crate::pipeline::Pipeline;
use crate::registry::{RegistryError, RegistryProblem};
use crate::stages::Problem;
use crate::store::files::write_atomically;

/// How long a registration waits for its turn (another change in progress) before it is
/// answered 503 with nothing written.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a registration waits for RabbitMQ to run on it before answering.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for this registration's turn: registry changes run one at a time. After
/// [`TURN_TIMEOUT`], 503 (`Retry-After`): nothing was written. In a fleet, the instance then
/// catches up with the registry store's head, so that the change is validated on the head and
/// committed as its child; a store that does not answer is a 503 too.
pub async fn turn(gateway: &Gateway) -> Result<Registering, ApiError> {
    let one_at_a_time = tokio::time::timeout(TURN_TIMEOUT, gateway.registering())
        .await
        .map_err(|_| {
            tracing::warn!(
                waited = ?TURN_TIMEOUT,
                "A registration was turned away: another change held the registry too long."
            );
            ApiError::Overloaded
        })?;
    if let Some(following) = gateway.following() {
        following
            .catch_up(gateway)
            .await
            .map_err(|error| ApiError::StoreUnavailable(error.to_string()))?;
    }
    Ok(one_at_a_time)
}

/// Who made a change and what it was, as the registry store's log keeps it.
#[derive(Debug, Clone)]
pub struct Authorship {
    pub author: String,
    pub summary: String,
}

impl Authorship {
    pub fn new(caller: &Caller, summary: impl Into<String>) -> Self {
        Self {
            author: caller.author(),
            summary: summary.into(),
        }
    }
}

/// Why a registration did not go through.
enum Refusal {
    /// A file could not be written (logged).
    Write,
    Registry(RegistryError),
    Store(NotCommitted),
}

/// Writes `files` (paths under `root`) and applies the registry they make. `title` heads a 422.
/// In a fleet the registry is committed to the store (as the child of the head this instance
/// caught up with in [`turn`]) before it is put in place; a commit refused because the head moved
/// is a 409, a store that does not answer a 503, and either puts every file back.
/// It answers once the bus runs on the new registry, so that a route just created takes the
/// next message (on RabbitMQ: its queue declared and bound), or after [`SETTLE_TIMEOUT`] when
/// the broker is away (the consumers start on it when the broker is back).
pub async fn apply(
    gateway: &Arc<Gateway>,
    one_at_a_time: Registering,
    root: &Path,
    files: Vec<(PathBuf, Vec<u8>)>,
    authorship: Authorship,
    title: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    // Files, a whole registry load, the commit and the switch: done to the end even if the
    // request is cancelled meanwhile (a task of its own, holding the guard, so that no other
    // change starts before it is over); files and loading off the runtime's workers.
    let task = tokio::spawn(apply_to_the_end(
        gateway.clone(),
        one_at_a_time,
        root.to_path_buf(),
        files,
        authorship,
    ));
    let applied = task.await.map_err(|error| {
        tracing::error!(%error, "The registration task failed.");
        ApiError::Internal
    })?;
    match applied {
        Ok(()) => {
            if !gateway.settled(SETTLE_TIMEOUT).await {
                tracing::warn!(
                    "The registration is applied; the broker consumers will run on it once connected."
                );
            }
            Ok(())
        }
        Err(Refusal::Write) => Err(ApiError::Internal),
        Err(Refusal::Registry(RegistryError::Problems(problems))) => {
            Err(unprocessable(title(), root, problems))
        }
        Err(Refusal::Registry(other)) => Err(ApiError::Unprocessable {
            title: title(),
            problems: vec![Problem::new(other.to_string())],
        }),
        Err(Refusal::Store(NotCommitted::Store(error))) => {
            Err(ApiError::StoreUnavailable(error.to_string()))
        }
        Err(Refusal::Store(conflict @ NotCommitted::HeadMoved { .. })) => {
            Err(ApiError::Conflict(conflict.to_string()))
        }
        Err(Refusal::Store(NotCommitted::Folder(error))) => {
            tracing::error!(%error, "The registration could not be read back for the store.");
            Err(ApiError::Internal)
        }
    }
}

async fn apply_to_the_end(
    gateway: Arc<Gateway>,
    one_at_a_time: Registering,
    root: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
    authorship: Authorship,
) -> Result<(), Refusal> {
    let _one_at_a_time = one_at_a_time;
    let folder = root.clone();
    let started = std::time::Instant::now();
    let (registry, written) = tokio::task::spawn_blocking(move || write_and_load(&folder, &files))
        .await
        .map_err(|error| {
            tracing::error!(%error, "Writing and loading the registry failed.");
            Refusal::Write
        })??;
    tracing::debug!(took = ?started.elapsed(), "Registration written and loaded.");
    if let Some(following) = gateway.following()
        && let Err(refused) = following
            .commit(&registry, authorship.author, authorship.summary)
            .await
    {
        let _ = tokio::task::spawn_blocking(move || written.put_back()).await;
        return Err(Refusal::Store(refused));
    }
    gateway.replace(Pipeline::new(Arc::new(registry)));
    Ok(())
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

/// The files a registration wrote, as they were before: enough to put them back.
struct Written {
    before: Vec<(PathBuf, Option<Vec<u8>>)>,
    created_folders: Vec<PathBuf>,
}

impl Written {
    /// Puts every file back as it was (removing the new ones), newest first, and the new
    /// folders.
    fn put_back(&self) {
        for (path, old) in self.before.iter().rev() {
            let restored = match old {
                Some(bytes) => write_atomically(path, bytes),
                None => std::fs::remove_file(path),
            };
            if let Err(error) = restored {
                tracing::error!(%error, file = %path.display(), "Could not put back a refused registration.");
            }
        }
        for folder in self.created_folders.iter().rev() {
            let _ = std::fs::remove_dir(folder);
        }
    }
}

/// Writes `files` and loads the folder; a write that fails or a registry that does not load puts
/// every file back.
fn write_and_load(
    root: &Path,
    files: &[(PathBuf, Vec<u8>)],
) -> Result<(crate::registry::Registry, Written), Refusal> {
    let mut written = Written {
        before: Vec::with_capacity(files.len()),
        created_folders: Vec::new(),
    };
    let wrote = files.iter().try_for_each(|(path, bytes)| {
        if let Some(folder) = path.parent()
            && !folder.exists()
        {
            std::fs::create_dir_all(folder)?;
            written.created_folders.push(folder.to_path_buf());
        }
        let old = match std::fs::read(path) {
            Ok(old) => Some(old),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            // A file that exists but cannot be read could not be put back: write nothing.
            Err(error) => return Err(error),
        };
        written.before.push((path.clone(), old));
        write_atomically(path, bytes)
    });
    if let Err(error) = wrote {
        written.put_back();
        tracing::error!(%error, "Writing the registry failed.");
        return Err(Refusal::Write);
    }
    match crate::registry::load(root) {
        Ok(registry) => Ok((registry, written)),
        Err(error) => {
            written.put_back();
            Err(Refusal::Registry(error))
        }
    }
}
