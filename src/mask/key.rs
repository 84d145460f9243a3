//! The masking key: every masked value is derived from HMAC-SHA256(key, production value),
//! so the same value masks the same way in every table and on every refresh, and nobody
//! without the key can tell which production value a masked one came from. Generated once
//! into `daemon.state_dir` (mode 0600), or read from `anonymize.mask_key_file`. Never
//! printed: `Debug` shows `[redacted]`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The generated key's file in `daemon.state_dir`.
pub const KEY_FILE: &str = "mask.key";
/// Shortest key accepted from a file, in bytes (a generated key is 64 hex digits).
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("masking key {path}: {message}")]
    File { path: PathBuf, message: String },
}

#[derive(Clone)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Key {
    /// The key in `key_file`, or the one generated into `state_dir` (created on first use).
    pub fn load(key_file: Option<&Path>, state_dir: &Path) -> Result<Key, KeyError> {
        match key_file {
            Some(path) => read(path),
            None => {
                let path = state_dir.join(KEY_FILE);
                if !path.exists() {
                    generate(&path)?;
                }
                read(&path)
            }
        }
    }

    /// A key for tests.
    #[cfg(test)]
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(bytes.to_vec())
    }

    /// HMAC-SHA256 of `parts` joined, under the key.
    pub fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

fn file_error(path: &Path, message: impl fmt::Display) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<Key, KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(file_error(
            path,
            "is readable or writable by every user; chmod o-rwx it",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let key = bytes.trim_ascii();
    if key.len() < MIN_KEY_BYTES {
        return Err(file_error(
            path,
            format!(
                "holds {} bytes; a key has at least {MIN_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    Ok(Key(key.to_vec()))
}

/// Writes 32 random bytes as hex, readable by the daemon's user only.
fn generate(path: &Path) -> Result<(), KeyError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| file_error(path, e))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    writeln!(file, "{}", hex::encode(secret))
        .and_then(|()| file.sync_all())
        .map_err(|e| file_error(path, e))?;
    tracing::info!(path = %path.display(), "generated the masking key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = Key::load(None, dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = Key::load(None, dir.path()).unwrap();
        assert_eq!(first.digest(&[b"x"]), again.digest(&[b"x"]));
        assert_eq!(format!("{first:?}"), "[redacted]");
    }

    #[test]
    fn a_short_or_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "too short\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Key::load(Some(&path), dir.path()).unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
        std::fs::write(&path, "k".repeat(40)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Key::load(Some(&path), dir.path()).unwrap_err().to_string();
        assert!(err.contains("every user"), "{err}");
    }
}
