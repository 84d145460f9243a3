//! One refresh at a time: an exclusive `flock` on `daemon.lock_file`, held for the whole run
//! and released by the kernel when the process ends, however it ends. The holder writes its
//! pid and run id into the file, so a second refresh can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::Locked;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Locked(#[from] Locked),
    #[error("lock file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock at once or fails naming the holder.
    pub fn acquire(path: &Path, run_id: &str) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let mut fields = holder.split_whitespace();
                return Err(Locked {
                    path: path.display().to_string(),
                    pid: fields.next().unwrap_or("unknown").to_owned(),
                    run_id: fields.next().unwrap_or("unknown").to_owned(),
                }
                .into());
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{} {run_id}", std::process::id()).map_err(io)?;
        Ok(RunLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Whether someone holds the lock now (without taking it for long).
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        match fs4::FileExt::try_lock_shared(&file) {
            Ok(()) => false,
            Err(fs4::TryLockError::WouldBlock) => true,
            Err(fs4::TryLockError::Error(_)) => false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/refresh.lock");
        let held = RunLock::acquire(&path, "run-1").unwrap();
        assert!(RunLock::is_held(&path));
        let err = RunLock::acquire(&path, "run-2").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&std::process::id().to_string()) && text.contains("run-1"),
            "{text}"
        );
        drop(held);
        assert!(!RunLock::is_held(&path));
        RunLock::acquire(&path, "run-3").unwrap();
    }
}
