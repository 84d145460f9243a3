//! The maintenance flag: a JSON file present exactly while staging is being cut over, for
//! the web server's maintenance page and for `status`. Written atomically (temp file and
//! rename), so a reader never sees half of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagContents {
    pub run_id: String,
    pub since: DateTime<Utc>,
    /// What is being put in place: a snapshot name, or "rollback".
    pub snapshot: String,
}

/// The raised flag; [`Flag::lower`] removes it.
#[derive(Debug)]
pub struct Flag {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("maintenance flag {path}: {source}")]
pub struct FlagError {
    pub path: String,
    pub source: std::io::Error,
}

fn flag_error(path: &Path) -> impl Fn(std::io::Error) -> FlagError + '_ {
    move |source| FlagError {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `contents` to `path` atomically and durably, creating the directory: a temp file,
/// flushed to disk, renamed over `path`, and the directory flushed, so after a power cut the
/// file holds either the old contents or the new.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Flag {
    pub fn raise(path: &Path, contents: &FlagContents) -> Result<Flag, FlagError> {
        let json = serde_json::to_vec_pretty(contents).expect("serializable");
        write_atomic(path, &json).map_err(flag_error(path))?;
        tracing::info!(flag = %path.display(), "maintenance flag raised");
        Ok(Flag {
            path: path.to_owned(),
        })
    }

    pub fn lower(self) -> Result<(), FlagError> {
        std::fs::remove_file(&self.path).map_err(flag_error(&self.path))?;
        tracing::info!(flag = %self.path.display(), "maintenance flag removed");
        Ok(())
    }
}

/// The flag's contents when it is raised (`None` when absent; unreadable counts as raised).
pub fn read(path: &Path) -> Option<Result<FlagContents, String>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(e.to_string())),
    }
}
