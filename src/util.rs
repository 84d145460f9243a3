//! Small helpers: text made safe to print on one line, counts in messages, and the durable
//! files of the state, the run journal and the maintenance flag.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `text` on one line, safe on a terminal: line breaks written as `\n` and `\r`, and every
/// other control character (an escape sequence's ESC, a backspace, C1 controls) as
/// `\u{1b}`, so a name from the dump or a server's message can neither forge a line nor
/// drive the terminal.
pub fn one_line(text: &str) -> String {
    escaped(text, &[])
}

/// `text` safe on a terminal, as [`one_line`] makes it, its line breaks and tabs kept.
pub fn printable(text: &str) -> String {
    escaped(text, &['\n', '\t'])
}

fn escaped(text: &str, kept: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            _ if kept.contains(&c) || !c.is_control() => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.extend(c.escape_unicode()),
        }
    }
    out
}

/// `n` and `noun`, plural unless `n` is 1: "1 column", "4 columns".
pub fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A process id for people; `unknown` when a lock file did not name one.
pub fn shown_pid(pid: Option<u32>) -> String {
    pid.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
}

/// Who may read a file written here besides its owner.
#[derive(Debug, Clone, Copy)]
pub enum Readers {
    /// Its owner alone (mode 0600): the state file and the journal, which keep errors whose
    /// text came from the staging server.
    Owner,
    /// Everyone the directory lets in (mode 0644): the maintenance flag, which a web server
    /// may read.
    Everyone,
}

/// Writes `contents` to `path` atomically and durably, creating the directory: a temp file,
/// flushed to disk, renamed over `path`, and the directory flushed, so after a power cut the
/// file holds either the old contents or the new.
pub fn write_atomic(path: &Path, contents: &[u8], readers: Readers) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mode = match readers {
        Readers::Owner => 0o600,
        Readers::Everyone => 0o644,
    };
    // A temp file left by a crash keeps its mode: it is made anew.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `value` as pretty JSON with [`write_atomic`].
pub fn write_json(path: &Path, value: &impl Serialize, readers: Readers) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(value).expect("our types serialize");
    write_atomic(path, &json, readers)
}

/// Reads a JSON file; `Ok(None)` when it does not exist. The error is the message to show.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
