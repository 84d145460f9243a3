//! One refresh at a time: an exclusive `flock` on `daemon.lock_file`, held for the whole run
//! and released by the kernel when the process ends, however it ends. The holder writes its
//! pid and run id into the file, so a second refresh can say who holds it, and empties it when
//! it lets go: a lock taken over a file that still names someone was left by a process that
//! died holding it.

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
    file: File,
    path: PathBuf,
    stale: Option<Holder>,
}

/// Who a lock file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `None` when the file's first word is not a pid.
    pub pid: Option<u32>,
    pub run_id: String,
}

impl Holder {
    fn parse(text: &str) -> Option<Holder> {
        let mut fields = text.split_whitespace();
        Some(Holder {
            pid: fields.next()?.parse().ok(),
            run_id: fields.next().unwrap_or("unknown").to_owned(),
        })
    }
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
        let locked = fs4::FileExt::try_lock(&file);
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = Holder::parse(&holder);
        match locked {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let holder = holder.unwrap_or(Holder {
                    pid: None,
                    run_id: "unknown".into(),
                });
                return Err(Locked {
                    path: path.display().to_string(),
                    pid: holder.pid,
                    run_id: holder.run_id,
                }
                .into());
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{} {run_id}", std::process::id()).map_err(io)?;
        Ok(RunLock {
            file,
            path: path.to_owned(),
            stale: holder,
        })
    }

    /// Who held the lock before and died holding it (the file still named them).
    pub fn stale(&self) -> Option<&Holder> {
        self.stale.as_ref()
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

impl Drop for RunLock {
    fn drop(&mut self) {
        // Still held: nobody reads a half-emptied file. A failure only costs a stale report.
        let _ = self.file.set_len(0);
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
        let released = RunLock::acquire(&path, "run-3").unwrap();
        assert_eq!(released.stale(), None, "a released lock names nobody");
        // A holder that died without letting go: the kernel released its flock, the file
        // still names it.
        drop(released);
        std::fs::write(&path, "4242 run-dead\n").unwrap();
        let taken_over = RunLock::acquire(&path, "run-4").unwrap();
        assert_eq!(
            taken_over.stale(),
            Some(&Holder {
                pid: Some(4242),
                run_id: "run-dead".into()
            })
        );
    }
}
