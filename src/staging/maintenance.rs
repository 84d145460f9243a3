//! The maintenance flag: a JSON file present exactly while staging is being cut over, for
//! the web server's maintenance page and for `status`. Written atomically (temp file and
//! rename), so a reader never sees half of it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::util;

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

impl Flag {
    pub fn raise(path: &Path, contents: &FlagContents) -> Result<Flag, FlagError> {
        util::write_json(path, contents, util::Readers::Everyone).map_err(flag_error(path))?;
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
    util::read_json(path).transpose()
}
