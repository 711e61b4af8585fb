//! An instance of a fleet, following the registry store's head.
//!
//! The instance runs the registry from a working folder of its own (a temporary folder that
//! holds the running revision's files, never the operator's `--registry` folder, which only
//! seeds an empty store). It switches to a new head as a folder reload switches: the files are
//! written into the working folder, loaded (every schema and script compiled and checked, but not
//! the translator cases, which ran once on the instance that took the write:
//! `registry::load_committed`), and put in place with `Gateway::replace`.
//!
//! It learns of a new head from the store's notification ([`crate::store::CHANNEL`]) and, as a
//! safety net for notifications lost while the listening connection was away, from a poll every
//! [`POLL`]. Every switch happens holding the gateway's registration guard, so a registration on
//! this instance always starts from the head it just caught up with (`api::writes::turn`) and
//! commits with that head as its parent.
//!
//! While the store is unreachable the instance keeps running the registry it has (messages keep
//! moving), registrations are answered 503, readiness says so, and it catches up once the store
//! answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Gateway;
use crate::pipeline::Pipeline;
use crate::registry::{Registry, RegistryError};
use crate::store::{self, Authored, Commit, Files, Store, StoreError};
use crate::telemetry;

/// How often the head is polled besides the notifications.
pub const POLL: Duration = Duration::from_secs(2);
/// How long `serve` tries to reach the store at start before giving up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The instance's side of the store.
#[derive(Debug)]
pub struct Following {
    store: Store,
    instance: String,
    /// The working folder (removed when the process ends).
    folder: tempfile::TempDir,
    running: Mutex<Running>,
    reachable: AtomicBool,
    /// Since when the store has not answered, and why.
    unreachable: Mutex<Option<(Instant, String)>>,
    /// A committed revision that does not load on this instance, and why.
    refused: Mutex<Option<(i64, String)>>,
}

#[derive(Debug, Clone)]
struct Running {
    revision: i64,
    files: Files,
}

/// Why a registration was not committed.
#[derive(Debug, thiserror::Error)]
pub enum NotCommitted {
    #[error(
        "the registry changed on another instance (the head is now revision {head}); the change was not committed: send it again"
    )]
    HeadMoved { head: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the registry files could not be read back: {0}")]
    Folder(String),
}

/// What the instance reports about the store (readiness, metrics).
#[derive(Debug, Clone)]
pub struct FollowStatus {
    pub revision: i64,
    /// How long the store has not answered, and why (`None` while it answers).
    pub unreachable: Option<(Duration, String)>,
    /// A newer revision this instance could not load, and why.
    pub refused: Option<(i64, String)>,
}

impl Following {
    /// Connects to the store (retrying for up to [`START_TIMEOUT`]), seeds an empty store with
    /// the registry folder `seed` (which must load cleanly, cases included), and loads the head
    /// into a working folder of this instance's own.
    pub async fn start(
        url: &str,
        seed: &std::path::Path,
        instance: &str,
    ) -> anyhow::Result<(Arc<Self>, Registry)> {
        use anyhow::Context as _;
        // The recorder must be in place before the first gauge is set.
        let _ = telemetry::metrics();
        let deadline = Instant::now() + START_TIMEOUT;
        let store = loop {
            match Store::connect(url).await {
                Ok(store) => break store,
                Err(StoreError::Unavailable(cause)) if Instant::now() < deadline => {
                    tracing::warn!(%cause, "The registry store does not answer yet; trying again.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        let head = match store.head().await? {
            Some(head) => {
                tracing::info!(
                    head,
                    "The registry store has revisions: the instance runs its head (the folder only seeds an empty store)."
                );
                head
            }
            None => seed_store(&store, seed, instance).await?,
        };
        let files = store
            .files(head)
            .await?
            .with_context(|| format!("revision {head} vanished from the store"))?;
        let folder = tempfile::Builder::new()
            .prefix("contextgate-registry-")
            .tempdir()
            .context("cannot create the instance's working registry folder")?;
        let root = folder.path().to_path_buf();
        let written = files.clone();
        let registry = tokio::task::spawn_blocking(move || {
            store::files::materialize(&root, &written)?;
            crate::registry::load_committed(&root).map_err(anyhow::Error::from)
        })
        .await
        .context("loading the head failed")?
        .with_context(|| format!("revision {head} of the registry store does not load"))?;
        metrics::gauge!(telemetry::REGISTRY_REVISION).set(head as f64);
        metrics::gauge!(telemetry::REGISTRY_STORE_UP).set(1.0);
        let following = Arc::new(Self {
            store,
            instance: instance.to_owned(),
            folder,
            running: Mutex::new(Running {
                revision: head,
                files,
            }),
            reachable: AtomicBool::new(true),
            unreachable: Mutex::new(None),
            refused: Mutex::new(None),
        });
        Ok((following, registry))
    }

    /// The working folder the registry runs from.
    pub fn folder(&self) -> &std::path::Path {
        self.folder.path()
    }

    /// The revision this instance runs.
    pub fn revision(&self) -> i64 {
        self.running
            .lock()
            .expect("the running revision is only replaced whole")
            .revision
    }

    fn running(&self) -> Running {
        self.running
            .lock()
            .expect("the running revision is only replaced whole")
            .clone()
    }

    pub fn status(&self) -> FollowStatus {
        FollowStatus {
            revision: self.revision(),
            unreachable: self
                .unreachable
                .lock()
                .expect("a plain value")
                .as_ref()
                .map(|(since, why)| (since.elapsed(), why.clone())),
            refused: self.refused.lock().expect("a plain value").clone(),
        }
    }

    fn answered<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => {
                if !self.reachable.swap(true, Ordering::SeqCst) {
                    tracing::info!("The registry store answers again.");
                }
                *self.unreachable.lock().expect("a plain value") = None;
                metrics::gauge!(telemetry::REGISTRY_STORE_UP).set(1.0);
            }
            Err(error) => {
                if self.reachable.swap(false, Ordering::SeqCst) {
                    tracing::warn!(%error, "The registry store does not answer: the instance keeps running revision {} and refuses registrations until it is back.", self.revision());
                }
                self.unreachable
                    .lock()
                    .expect("a plain value")
                    .get_or_insert_with(|| (Instant::now(), error.to_string()));
                metrics::gauge!(telemetry::REGISTRY_STORE_UP).set(0.0);
            }
        }
        result
    }

    /// Switches `gateway` to the store's head if it moved. The caller holds the registration
    /// guard. `Ok(true)`: switched.
    pub async fn catch_up(&self, gateway: &Gateway) -> Result<bool, StoreError> {
        let head = self.answered(self.store.head().await)?;
        let running = self.revision();
        let Some(head) = head.filter(|head| *head > running) else {
            return Ok(false);
        };
        if self
            .refused
            .lock()
            .expect("a plain value")
            .as_ref()
            .is_some_and(|(refused, _)| *refused == head)
        {
            return Ok(false);
        }
        let Some(files) = self.answered(self.store.files(head).await)? else {
            return Ok(false);
        };
        let record = self.store.revision(head).await.ok().flatten();
        let root = self.folder.path().to_path_buf();
        let written = files.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            store::files::materialize(&root, &written)
                .map_err(|error| error.to_string())
                .and_then(|()| {
                    crate::registry::load_committed(&root).map_err(|error| describe(&error))
                })
        })
        .await
        .map_err(|error| error.to_string())
        .and_then(|loaded| loaded);
        match loaded {
            Ok(registry) => {
                gateway.replace(Pipeline::new(Arc::new(registry)));
                *self.running.lock().expect("a plain value") = Running {
                    revision: head,
                    files,
                };
                *self.refused.lock().expect("a plain value") = None;
                metrics::gauge!(telemetry::REGISTRY_REVISION).set(head as f64);
                let behind_ms = record.as_ref().map(|record| now_ms() - record.committed_ms);
                if let Some(behind_ms) = behind_ms {
                    metrics::histogram!(telemetry::REGISTRY_FOLLOW_SECONDS)
                        .record(behind_ms.max(0) as f64 / 1000.0);
                }
                tracing::info!(
                    revision = head,
                    by = record.as_ref().map(|record| record.author.as_str()),
                    on = record.as_ref().map(|record| record.instance.as_str()),
                    what = record.as_ref().map(|record| record.summary.as_str()),
                    behind_ms,
                    "Registry revision from the store put in place."
                );
                Ok(true)
            }
            Err(why) => {
                // Put the running revision's files back, so that the folder matches what runs
                // (registrations are written into it).
                let root = self.folder.path().to_path_buf();
                let files = self.running().files;
                let _ =
                    tokio::task::spawn_blocking(move || store::files::materialize(&root, &files))
                        .await;
                tracing::error!(revision = head, %why, "A committed registry revision does not load on this instance; it keeps running revision {running}.");
                *self.refused.lock().expect("a plain value") = Some((head, why));
                Ok(false)
            }
        }
    }

    /// Commits the registry now in the working folder (already loaded cleanly as `registry`) as
    /// the child of the running revision, and makes it the running revision. The caller holds
    /// the registration guard and puts the registry in place after this.
    pub async fn commit(
        &self,
        registry: &Registry,
        author: String,
        summary: String,
    ) -> Result<i64, NotCommitted> {
        let running = self.running();
        let root = self.folder.path().to_path_buf();
        let digest = crate::registry::hex(&registry.digest);
        let started = Instant::now();
        // The findings need the registry itself, which is only borrowed: computed here (a
        // compatibility check per changed contract: milliseconds).
        let findings = store::findings(registry, &running.files);
        tracing::debug!(took = ?started.elapsed(), "Compatibility findings against the parent.");
        let files = tokio::task::spawn_blocking(move || store::files::snapshot(&root))
            .await
            .map_err(|error| NotCommitted::Folder(error.to_string()))?
            .map_err(|error| NotCommitted::Folder(error.to_string()))?;
        let authored = Authored {
            author,
            instance: self.instance.clone(),
            summary,
            findings,
            digest,
        };
        let committed = self.answered(
            self.store
                .commit(Some(running.revision), &running.files, &files, &authored)
                .await,
        )?;
        match committed {
            Commit::Committed(number) => {
                *self.running.lock().expect("a plain value") = Running {
                    revision: number,
                    files,
                };
                metrics::gauge!(telemetry::REGISTRY_REVISION).set(number as f64);
                Ok(number)
            }
            Commit::HeadMoved { head } => Err(NotCommitted::HeadMoved {
                head: head.unwrap_or(running.revision),
            }),
        }
    }
}

/// Follows the store's head for as long as the gateway runs: on every notification, and every
/// [`POLL`].
pub async fn follow(gateway: Arc<Gateway>, following: Arc<Following>) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            match following.store.listen().await {
                Ok(listening) => listener = Some(listening),
                Err(error) => {
                    let _ = following.answered::<()>(Err(error));
                }
            }
        }
        let notified = match listener.as_mut() {
            Some(listening) => match tokio::time::timeout(POLL, listening.recv()).await {
                Ok(Ok(_)) | Err(_) => true,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "The registry store's notifications stopped; listening again.");
                    listener = None;
                    false
                }
            },
            None => {
                tokio::time::sleep(POLL).await;
                true
            }
        };
        if !notified {
            // The listening connection just failed: a breath before listening again.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _one_at_a_time = gateway.registering().await;
        if let Err(error) = following.catch_up(&gateway).await {
            tracing::debug!(%error, "Catching up with the registry store failed; trying again.");
        }
    }
}

/// Seeds an empty store with the folder `seed` as revision 1; the head's number.
async fn seed_store(store: &Store, seed: &std::path::Path, instance: &str) -> anyhow::Result<i64> {
    use anyhow::Context as _;
    let root = seed.to_path_buf();
    let (registry, files) = tokio::task::spawn_blocking(move || {
        let registry =
            crate::registry::load(&root).map_err(|error| anyhow::anyhow!(describe(&error)))?;
        let files = store::files::snapshot(&root)?;
        anyhow::Ok((registry, files))
    })
    .await
    .context("seeding failed")?
    .with_context(|| {
        format!(
            "the registry folder {} cannot seed the store",
            seed.display()
        )
    })?;
    let authored = Authored {
        author: "operator".to_owned(),
        instance: instance.to_owned(),
        summary: format!("seeded from the folder {}", seed.display()),
        findings: serde_json::Value::Array(Vec::new()),
        digest: crate::registry::hex(&registry.digest),
    };
    match store.commit(None, &Files::new(), &files, &authored).await? {
        Commit::Committed(number) => {
            tracing::info!(folder = %seed.display(), "The registry store was empty: seeded as revision 1.");
            Ok(number)
        }
        // Another instance seeded it at the same moment: run its revision.
        Commit::HeadMoved { head } => head.context("the store refused the seed and has no head"),
    }
}

/// Every problem of a registry that does not load, on one line each.
fn describe(error: &RegistryError) -> String {
    match error {
        RegistryError::Problems(problems) => problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
