//! The registry folder, watched: when the operator edits it on disk (a `git pull`, an editor), the
//! gateway loads it again and switches to it as a registration through the API would. Changes
//! come in bursts (an editor writes a temporary file and renames it; a pull touches many files),
//! so the watcher waits until the folder has been quiet for [`QUIET`] before it loads.
//!
//! A folder that does not load is logged with every problem and the running registry stays; a
//! load that changes nothing (the API's own writes, which it has applied already) is ignored.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Gateway;
use crate::registry::RegistryError;

/// How long the folder must stay quiet before it is loaded again.
pub const QUIET: Duration = Duration::from_millis(300);

/// Watches `root` for as long as the returned watcher lives.
pub fn watch(root: &Path, gateway: Arc<Gateway>) -> notify::Result<RecommendedWatcher> {
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => !event.kind.is_access(),
            Err(error) => {
                // Rare: the inotify watch limit reached, or the events could not be read.
                tracing::warn!(%error, "Watching the registry folder failed; it is loaded again.");
                true
            }
        };
        if relevant {
            // Full means a reload is already due: this change will be in it.
            let _ = changed.try_send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Wait for quiet: every change within QUIET of the last one joins this reload.
            while tokio::time::timeout(QUIET, changes.recv())
                .await
                .is_ok_and(|more| more.is_some())
            {}
            match gateway.reload().await {
                Ok(true) => {
                    let pipeline = gateway.pipeline();
                    tracing::info!(
                        by = "operator (registry folder edited on disk)",
                        registry = %pipeline.registry().summary(),
                        "Registry reloaded."
                    );
                }
                Ok(false) => {}
                Err(RegistryError::Problems(problems)) => {
                    for problem in &problems {
                        tracing::error!(%problem, "Registry folder edit refused.");
                    }
                    tracing::error!(
                        problems = problems.len(),
                        "The registry folder does not load; the gateway keeps the registry it runs."
                    );
                }
                Err(error) => {
                    tracing::error!(%error, "The registry folder does not load; the gateway keeps the registry it runs.");
                }
            }
        }
    });
    Ok(watcher)
}
