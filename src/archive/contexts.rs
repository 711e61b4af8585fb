//! The in-process bus's archives: one [`FileArchive`] per context under
//! `<data-dir>/archive/<context>/`, opened when first used, with the retention the registry
//! gives the context now (a registry change applies at the next append).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::file::{FileArchive, Retention};
use crate::pipeline::{Delivery, Pipeline};
use crate::registry::{Archive, ContextName};
use crate::replay::{Archived, Source};

/// Every context's file archive under one data directory.
#[derive(Debug)]
pub struct Archives {
    dir: PathBuf,
    open: Mutex<HashMap<ContextName, Arc<FileArchive>>>,
}

impl Archives {
    /// Archives under `<data_dir>/archive`.
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            dir: data_dir.join("archive"),
            open: Mutex::default(),
        }
    }

    /// The archive of `context`, opened with `archive`'s retention (or given it).
    pub fn of(&self, context: &ContextName, archive: Archive) -> std::io::Result<Arc<FileArchive>> {
        self.open_with(context, Some(Retention::from(archive)))
    }

    /// The open archive of `context`, or opened now; `retention` given to it when set (a
    /// reader passes none, and an archive it opens has the default until the next append or
    /// `enforce` gives it the registry's).
    fn open_with(
        &self,
        context: &ContextName,
        retention: Option<Retention>,
    ) -> std::io::Result<Arc<FileArchive>> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = open.get(context) {
            if let Some(retention) = retention {
                found.set_retention(retention);
            }
            return Ok(found.clone());
        }
        let opened = Arc::new(FileArchive::open(
            &self.dir.join(context.as_str()),
            retention.unwrap_or_else(|| Retention::from(Archive::default())),
        )?);
        open.insert(context.clone(), opened.clone());
        Ok(opened)
    }

    /// Appends an input of `context` as it arrived, when the registry archives the context.
    pub fn append(&self, pipeline: &Pipeline, context: &ContextName, delivery: &Delivery) {
        let Some(archive) = pipeline
            .registry()
            .contexts
            .get(context)
            .and_then(|found| found.archive)
        else {
            return;
        };
        match self
            .of(context, archive)
            .and_then(|file| file.append(delivery, SystemTime::now()))
        {
            Ok(_) => {
                metrics::counter!(crate::telemetry::ARCHIVED, "context" => context.to_string())
                    .increment(1);
            }
            Err(error) => {
                // The input itself goes on: the archive is a copy for replays.
                tracing::error!(%context, %error, "An input could not be archived.");
            }
        }
    }

    /// Applies every open archive's retention now, as `pipeline`'s registry sets it (called
    /// once a minute by `serve`).
    pub fn enforce(&self, pipeline: &Pipeline) {
        let open: Vec<_> = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(context, file)| (context.clone(), file.clone()))
            .collect();
        for (context, file) in open {
            if let Some(archive) = pipeline
                .registry()
                .contexts
                .get(&context)
                .and_then(|found| found.archive)
            {
                file.set_retention(Retention::from(archive));
            }
            if let Err(error) = file.enforce(SystemTime::now()) {
                tracing::warn!(%context, %error, "The archive's retention could not be applied.");
            }
        }
    }

    /// The archive of `context` for reading (empty if it never archived anything).
    fn existing(&self, context: &ContextName) -> Result<Arc<FileArchive>, String> {
        self.open_with(context, None).map_err(|error| {
            format!(
                "cannot open {}: {error}",
                self.dir.join(context.as_str()).display()
            )
        })
    }
}

impl From<Archive> for Retention {
    fn from(archive: Archive) -> Self {
        Retention {
            max_age: archive.max_age,
            max_bytes: archive.max_bytes,
        }
    }
}

impl Source for Archives {
    async fn window(
        &self,
        context: &ContextName,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<(u64, u64), String> {
        let file = self.existing(context)?;
        let first = file.offset_at(from).map_err(|error| error.to_string())?;
        let end = file.offset_at(to).map_err(|error| error.to_string())?;
        Ok((first, end.max(first)))
    }

    async fn read(
        &self,
        context: &ContextName,
        from: u64,
        end: u64,
        max: usize,
    ) -> Result<(Vec<Archived>, u64), String> {
        let file = self.existing(context)?;
        let wanted = usize::try_from(end.saturating_sub(from)).unwrap_or(usize::MAX);
        let records = file
            .read(from, max.min(wanted))
            .map_err(|error| error.to_string())?;
        let records: Vec<Archived> = records
            .into_iter()
            .filter(|record| record.offset < end)
            .map(|record| Archived {
                offset: record.offset,
                delivery: record.delivery,
                raw: None,
            })
            .collect();
        let after = records.last().map_or(from, |record| record.offset + 1);
        Ok((records, after))
    }
}

/// How often `serve` applies the archives' retention.
pub const ENFORCE_EVERY: Duration = Duration::from_secs(60);
