//! The registry store of a fleet: every revision of the registry, in PostgreSQL.
//!
//! A revision is the registry's whole set of files (`files::Files`, each kept once by its
//! SHA-256 in `contextgate_blobs`) plus who committed it, when, what changed, and the
//! compatibility findings against its parent. History is linear: a commit names its parent and
//! lands only if the parent is still the head (`Commit::HeadMoved` otherwise), so two instances
//! that validated a change on the same head cannot both commit. Every commit notifies the channel
//! [`CHANNEL`] in the same transaction; instances follow the head with LISTEN and a poll
//! (`gateway::following`).
//!
//! The gateway creates and migrates its tables itself (`sqlx::migrate!`, the files in
//! `store/migrations/`). One database (or one `search_path` schema) holds one registry.
//!
//! # Layout
//! - [`files`]: a registry as a set of files, read from and written into a folder, compared.

pub mod files;

use std::str::FromStr as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::types::Json;

pub use files::{Change, ChangeKind, Files};

/// The channel every commit notifies, with the new revision's number as its payload.
pub const CHANNEL: &str = "contextgate_registry";
/// How long an operation waits for a connection: a store that is away is reported quickly,
/// and the request that needed it answered 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A registry store (a pool of connections to PostgreSQL).
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not a PostgreSQL URL sqlx accepts.
    #[error("the registry store URL was refused: {0}")]
    Url(String),
    /// The store could not be reached or answered with an error.
    #[error("the registry store is not available: {0}")]
    Unavailable(String),
    /// The tables could not be created or migrated.
    #[error("the registry store's tables could not be migrated: {0}")]
    Migration(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// What a commit came to.
#[derive(Debug)]
pub enum Commit {
    /// Committed as this revision.
    Committed(i64),
    /// The parent is no longer the head: someone committed first. Nothing was written.
    HeadMoved { head: Option<i64> },
}

/// What a commit says about itself.
#[derive(Debug, Clone)]
pub struct Authored {
    /// "operator", "context orders", or what `registry push --author` names.
    pub author: String,
    /// The instance (or "cli") that commits.
    pub instance: String,
    /// One line: what the change was.
    pub summary: String,
    /// The compatibility findings against the parent (a JSON array).
    pub findings: Value,
    /// The loader's digest of the whole registry, in hex.
    pub digest: String,
}

/// One revision as `registry log` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Revision {
    pub number: i64,
    pub parent: Option<i64>,
    pub author: String,
    pub instance: String,
    /// RFC 3339, UTC, milliseconds.
    pub committed: String,
    /// Milliseconds since the Unix epoch (for measuring how fast instances follow).
    #[serde(skip)]
    pub committed_ms: i64,
    pub summary: String,
    #[sqlx(json)]
    pub changes: Vec<Change>,
    #[sqlx(json)]
    pub findings: Value,
    pub digest: String,
}

impl Store {
    /// Connects (the URL may carry `sslmode`, `sslrootcert`, `sslcert`, `sslkey` as libpq's do)
    /// and creates or migrates the tables.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Url(error.to_string()))?
            .application_name("contextgate");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        sqlx::migrate!("src/store/migrations")
            .run(&pool)
            .await
            .map_err(|error| match error {
                sqlx::migrate::MigrateError::Execute(error) => {
                    StoreError::Unavailable(error.to_string())
                }
                other => StoreError::Migration(other.to_string()),
            })?;
        Ok(Self { pool })
    }

    /// The head revision's number; `None` for an empty store.
    pub async fn head(&self) -> Result<Option<i64>, StoreError> {
        let (head,): (Option<i64>,) =
            sqlx::query_as("SELECT max(number) FROM contextgate_revisions")
                .fetch_one(&self.pool)
                .await?;
        Ok(head)
    }

    /// A revision's files; `None` when there is no such revision.
    pub async fn files(&self, revision: i64) -> Result<Option<Files>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let exists: Option<(i64,)> =
            sqlx::query_as("SELECT number FROM contextgate_revisions WHERE number = $1")
                .bind(revision)
                .fetch_optional(&mut *transaction)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT f.path, b.content FROM contextgate_files f \
             JOIN contextgate_blobs b ON b.digest = f.digest \
             WHERE f.revision = $1 ORDER BY f.path",
        )
        .bind(revision)
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(rows.into_iter().collect()))
    }

    /// Commits `files` as the child of `parent` (`None`: the first revision), if `parent` is
    /// still the head. `before` are the parent's files (for the list of changes).
    pub async fn commit(
        &self,
        parent: Option<i64>,
        before: &Files,
        files: &Files,
        authored: &Authored,
    ) -> Result<Commit, StoreError> {
        let number = parent.map_or(1, |parent| parent + 1);
        let changes = files::changes(before, files);
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO contextgate_revisions \
             (number, parent, author, instance, summary, changes, findings, digest) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(number)
        .bind(parent)
        .bind(&authored.author)
        .bind(&authored.instance)
        .bind(&authored.summary)
        .bind(Json(&changes))
        .bind(Json(&authored.findings))
        .bind(&authored.digest)
        .execute(&mut *transaction)
        .await;
        if let Err(error) = inserted {
            let taken = error
                .as_database_error()
                .and_then(|error| error.code())
                .is_some_and(|code| code == "23505" || code == "23503");
            if taken {
                drop(transaction);
                return Ok(Commit::HeadMoved {
                    head: self.head().await?,
                });
            }
            return Err(error.into());
        }
        let (paths, digests, contents): (Vec<&str>, Vec<String>, Vec<&[u8]>) = files
            .iter()
            .map(|(path, content)| (path.as_str(), files::digest(content), content.as_slice()))
            .fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |(mut paths, mut digests, mut contents), (path, digest, content)| {
                    paths.push(path);
                    digests.push(digest);
                    contents.push(content);
                    (paths, digests, contents)
                },
            );
        sqlx::query(
            "INSERT INTO contextgate_blobs (digest, content) \
             SELECT * FROM UNNEST($1::text[], $2::bytea[]) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digests)
        .bind(&contents)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO contextgate_files (revision, path, digest) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[])",
        )
        .bind(number)
        .bind(&paths)
        .bind(&digests)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(number.to_string())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(Commit::Committed(number))
    }

    /// Revisions, newest first: at most `limit`, below `before` when given.
    pub async fn log(&self, limit: i64, before: Option<i64>) -> Result<Vec<Revision>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT number, parent, author, instance, \
             to_char(committed AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS committed, \
             (extract(epoch FROM committed) * 1000)::bigint AS committed_ms, \
             summary, changes, findings, digest \
             FROM contextgate_revisions WHERE number < coalesce($2, 9223372036854775807) \
             ORDER BY number DESC LIMIT $1",
        )
        .bind(limit)
        .bind(before)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One revision's record.
    pub async fn revision(&self, number: i64) -> Result<Option<Revision>, StoreError> {
        Ok(self
            .log(1, Some(number + 1))
            .await?
            .into_iter()
            .next()
            .filter(|revision| revision.number == number))
    }

    /// A listener on [`CHANNEL`] (it reconnects by itself; notifications sent while it was
    /// away are lost, which the follower's poll makes up for).
    pub async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}

/// The compatibility findings of `registry` against a parent revision's files, as `check
/// --against` reports them (a JSON array; empty when the parent's contracts cannot be written to
/// a temporary folder, which is logged).
pub fn findings(registry: &crate::registry::Registry, parent: &Files) -> Value {
    let folder = match tempfile::Builder::new()
        .prefix("contextgate-parent-")
        .tempdir()
    {
        Ok(folder) => folder,
        Err(error) => {
            tracing::warn!(%error, "No temporary folder for the compatibility findings.");
            return Value::Array(Vec::new());
        }
    };
    let contracts: Files = parent
        .iter()
        .filter(|(path, _)| path.starts_with("contracts/"))
        .map(|(path, content)| (path.clone(), content.clone()))
        .collect();
    let written = contracts.iter().try_for_each(|(path, content)| {
        let target = files::place(folder.path(), path)
            .ok_or_else(|| std::io::Error::other(format!("{path:?} is not a registry path")))?;
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(target, content)
    });
    if let Err(error) = written {
        tracing::warn!(%error, "The parent's contracts could not be written for the compatibility findings.");
        return Value::Array(Vec::new());
    }
    let mut findings = crate::evolution::against(registry, folder.path());
    // `check --against` is silent on what is fine; the log also says which versions came in
    // and that they passed.
    for contract in registry.contracts.values() {
        for number in contract.versions.keys() {
            let file = format!(
                "contracts/{}/{}/v{number}.json",
                contract.name.context(),
                contract.name.name()
            );
            if parent.contains_key(&file) || findings.iter().any(|finding| finding.file == file) {
                continue;
            }
            let message = if *number == 1 {
                format!("{} is a new contract", contract.name)
            } else {
                format!(
                    "version {number} of {} is {} compatible with the versions before it",
                    contract.name,
                    contract.compatibility.as_str()
                )
            };
            findings.push(crate::evolution::Finding::notice(
                "compatible",
                file,
                message,
            ));
        }
    }
    serde_json::to_value(findings).unwrap_or(Value::Array(Vec::new()))
}
