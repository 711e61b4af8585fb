//! A registry as a set of files: read from a folder (`snapshot`), written into one (`materialize`),
//! and compared (`changes`). A revision in the store is exactly such a set, each file named by
//! its path relative to the registry root (always with `/`) and kept by its SHA-256 digest.
//!
//! What belongs to a registry: `contextgate.toml` and every regular file under `contracts/` and
//! `translators/`, except hidden ones (a name starting with `.`) and the API's temporary files.
//! Anything else in the folder (a README, `.git`, the credentials) is not the registry's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::registry::load::CONFIG_FILE;

/// The folders under the root that hold registry files.
const FOLDERS: [&str; 2] = ["contracts", "translators"];
/// What the API writes before renaming it over a file (`api::writes`).
pub const TEMPORARY_EXTENSION: &str = "tmp-contextgate";
/// A bound on what one registry may hold, so that a folder pointed at by mistake (a home
/// directory) is refused rather than read whole.
pub const MAX_FILES: usize = 100_000;

/// A registry's files: relative path → content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// The SHA-256 of a file's content, in hex: how the store names it.
pub fn digest(content: &[u8]) -> String {
    crate::registry::hex(&Sha256::digest(content))
}

/// Reads the registry files under `root`.
pub fn snapshot(root: &Path) -> std::io::Result<Files> {
    let mut files = Files::new();
    files.insert(
        CONFIG_FILE.to_owned(),
        std::fs::read(root.join(CONFIG_FILE))?,
    );
    for folder in FOLDERS {
        let path = root.join(folder);
        if path.is_dir() {
            walk(root, &path, &mut files)?;
        }
    }
    Ok(files)
}

fn walk(root: &Path, folder: &Path, files: &mut Files) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(folder)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with(TEMPORARY_EXTENSION) {
            continue;
        }
        let path = entry.path();
        // Symbolic links are followed as the loader follows them.
        let metadata = std::fs::metadata(&path)?;
        if metadata.is_dir() {
            walk(root, &path, files)?;
        } else if metadata.is_file() {
            if files.len() >= MAX_FILES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_FILES} files under {}: is this a registry folder?",
                    root.display()
                )));
            }
            files.insert(relative(root, &path), std::fs::read(&path)?);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where a stored path goes under `root`; `None` for a path that would leave it or is not a
/// registry file (a store is trusted, but a folder is only ever written inside its root).
pub fn place(root: &Path, path: &str) -> Option<PathBuf> {
    let inside = path == CONFIG_FILE
        || FOLDERS.iter().any(|folder| {
            path.strip_prefix(folder)
                .is_some_and(|rest| rest.starts_with('/'))
        });
    let clean = path
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
    (inside && clean).then(|| root.join(path))
}

/// Makes the registry files under `root` exactly `files`: writes what differs (atomically),
/// removes registry files that are not in it (and folders left empty). Other files stay.
pub fn materialize(root: &Path, files: &Files) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    let present = if root.join(CONFIG_FILE).exists() {
        snapshot(root)?
    } else {
        Files::new()
    };
    for (path, content) in files {
        if present.get(path) == Some(content) {
            continue;
        }
        let target = place(root, path).ok_or_else(|| {
            std::io::Error::other(format!("{path:?} is not a registry file's path"))
        })?;
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)?;
        }
        write_atomically(&target, content)?;
    }
    for path in present.keys().filter(|path| !files.contains_key(*path)) {
        if let Some(target) = place(root, path) {
            std::fs::remove_file(&target)?;
            let mut folder = target.parent();
            while let Some(dir) = folder.filter(|dir| *dir != root) {
                if std::fs::remove_dir(dir).is_err() {
                    break;
                }
                folder = dir.parent();
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(TEMPORARY_EXTENSION);
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// One file's change from a revision to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Change {
    pub path: String,
    pub change: ChangeKind,
    /// The new content's digest (none for a removed file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
}

/// What changed from `before` to `after`, by path.
pub fn changes(before: &Files, after: &Files) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, content) in after {
        let change = match before.get(path) {
            None => ChangeKind::Added,
            Some(old) if old != content => ChangeKind::Modified,
            Some(_) => continue,
        };
        changes.push(Change {
            path: path.clone(),
            change,
            digest: Some(digest(content)),
        });
    }
    for path in before.keys().filter(|path| !after.contains_key(*path)) {
        changes.push(Change {
            path: path.clone(),
            change: ChangeKind::Removed,
            digest: None,
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(files: &[(&str, &str)]) -> Files {
        files
            .iter()
            .map(|(path, text)| ((*path).to_owned(), text.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_folder_made_from_files_reads_back_as_those_files_and_keeps_what_is_not_the_registry_s() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("README.md"), "mine").unwrap();
        let first = registry(&[
            ("contextgate.toml", "[contexts.a]\n"),
            ("contracts/a/X/v1.json", "{}"),
            ("translators/a/t.rhai", "fn translate(d) { d }"),
        ]);
        materialize(folder.path(), &first).unwrap();
        assert_eq!(snapshot(folder.path()).unwrap(), first);

        let second = registry(&[
            ("contextgate.toml", "[contexts.a]\n# changed\n"),
            ("contracts/a/Y/v1.json", "{}"),
        ]);
        materialize(folder.path(), &second).unwrap();
        assert_eq!(snapshot(folder.path()).unwrap(), second);
        assert!(
            !folder.path().join("contracts/a/X").exists(),
            "emptied folders go"
        );
        assert!(!folder.path().join("translators").exists());
        assert_eq!(
            std::fs::read_to_string(folder.path().join("README.md")).unwrap(),
            "mine"
        );
        assert_eq!(
            changes(&first, &second)
                .iter()
                .map(|change| (change.path.as_str(), change.change))
                .collect::<Vec<_>>(),
            [
                ("contextgate.toml", ChangeKind::Modified),
                ("contracts/a/X/v1.json", ChangeKind::Removed),
                ("contracts/a/Y/v1.json", ChangeKind::Added),
                ("translators/a/t.rhai", ChangeKind::Removed),
            ]
        );
    }

    #[test]
    fn a_stored_path_never_leaves_the_registry_root() {
        let root = Path::new("/r");
        assert_eq!(
            place(root, "contracts/a/X/v1.json"),
            Some(PathBuf::from("/r/contracts/a/X/v1.json"))
        );
        for path in [
            "../etc/passwd",
            "contracts/../../x",
            "contracts//x",
            "/etc/passwd",
            "credentials.toml",
            "contracts",
            "contractsx/a",
            "contracts/a\\..\\b",
        ] {
            assert_eq!(place(root, path), None, "{path}");
        }
    }
}
