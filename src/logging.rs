//! Log output: the journal (with structured fields) when stderr goes there, otherwise human
//! lines or JSON lines on stderr.

use std::future::Future;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use tracing::Span;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::report::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The journal when systemd connected stderr to it (JOURNAL_STREAM), plain lines otherwise.
    Auto,
    /// Plain lines (colored on a terminal).
    Plain,
    /// One JSON object per line, for log shippers.
    Json,
    /// Straight to journald, with RUN_ID, PHASE and SNAPSHOT fields and a priority per level.
    Journald,
}

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by `verbose`.
pub fn init(format: LogFormat, verbose: bool) {
    let default = if verbose {
        "staging_refresh=debug,info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Plain,
        other => other,
    };
    // A subscriber already installed (tests calling twice) is fine: results are dropped.
    if format == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal =
                    journal
                        .with_field_prefix(None)
                        .with_priority_mappings(PriorityMappings {
                            info: Priority::Informational,
                            debug: Priority::Debug,
                            ..PriorityMappings::new()
                        });
                drop(
                    tracing_subscriber::registry()
                        .with(filter)
                        .with(journal)
                        .try_init(),
                );
                return;
            }
            Err(e) => eprintln!("journald is not reachable ({e}); logging to stderr"),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine(Vec::new()))
        .with_target(false);
    drop(match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        _ => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    });
}

/// One log line on stderr, written when dropped, with the line breaks inside it escaped: a
/// value from outside (a snapshot name, a media key, a server's message) cannot forge a line.
/// (JSON lines escape them anyway; the journal keeps a message whole.)
struct OneLine(Vec<u8>);

impl std::io::Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for OneLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let line = one_line_colored(text.strip_suffix('\n').unwrap_or(&text));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
    }
}

pub use crate::util::{one_line, printable};

/// [`one_line`], keeping the colours the formatter writes on a terminal (SGR sequences,
/// `ESC [ 1;31 m`: at worst a name from the dump colours a log line).
fn one_line_colored(text: &str) -> String {
    static SGR: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new("\x1b\\[[0-9;]*m").expect("valid regex"));
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for colour in SGR.find_iter(text) {
        out.push_str(&one_line(&text[last..colour.start()]));
        out.push_str(colour.as_str());
        last = colour.end();
    }
    out.push_str(&one_line(&text[last..]));
    out
}

/// Whether stderr is the journal stream systemd connected: it names that stream's device and
/// inode in `JOURNAL_STREAM` (a child whose stderr was redirected inherits the variable, so
/// the variable alone says nothing).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(stderr).metadata() {
        Ok(m) => names_stream(&stream.to_string_lossy(), m.dev(), m.ino()),
        Err(_) => false,
    }
}

/// `JOURNAL_STREAM` is `<device>:<inode>`, both decimal.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    value.split_once(':').is_some_and(|(d, i)| {
        d.parse::<u64>().is_ok_and(|d| d == dev) && i.parse::<u64>().is_ok_and(|i| i == ino)
    })
}

/// The run a log line belongs to: a `refresh` span with `run_id`, `phase` and `snapshot`
/// (journal fields RUN_ID, PHASE, SNAPSHOT) that the run's observer replaces as it goes.
/// [`RunFields::scope`] polls the run inside whichever span is current, so every line the run
/// logs from its own task carries them.
pub struct RunFields(Mutex<Span>);

impl Default for RunFields {
    fn default() -> Self {
        RunFields(Mutex::new(Span::none()))
    }
}

impl RunFields {
    pub fn set(&self, run_id: &str, phase: Phase, snapshot: Option<&str>) {
        // A root span: the one it replaces is entered right now and must not become its parent.
        let span = tracing::info_span!(
            parent: None,
            "refresh",
            run_id,
            phase = %phase,
            snapshot = tracing::field::Empty
        );
        if let Some(snapshot) = snapshot {
            span.record("snapshot", snapshot);
        }
        *self.0.lock().expect("run span") = span;
    }

    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            let span = self.0.lock().expect("run span").clone();
            let _entered = span.enter();
            future.as_mut().poll(cx)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_break_inside_a_log_line_is_escaped() {
        assert_eq!(
            one_line("snapshot x\n2026-01-01 INFO forged\r"),
            "snapshot x\\n2026-01-01 INFO forged\\r"
        );
    }

    #[test]
    fn terminal_control_characters_are_escaped() {
        let name = "public.t\u{1b}]0;pwned\u{7}\u{9b}2J\u{8}x";
        assert_eq!(
            one_line(name),
            "public.t\\u{1b}]0;pwned\\u{7}\\u{9b}2J\\u{8}x"
        );
        assert_eq!(printable("a\tb\nc\u{1b}[2J"), "a\tb\nc\\u{1b}[2J");
        assert_eq!(
            one_line_colored("\u{1b}[31mERROR\u{1b}[0m t\u{1b}[2J\n"),
            "\u{1b}[31mERROR\u{1b}[0m t\\u{1b}[2J\\n"
        );
    }

    #[test]
    fn journal_stream_must_name_this_very_stream() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("9:12345", 8, 12345));
        assert!(!names_stream("garbage", 8, 12345));
        assert!(!names_stream("", 8, 12345));
    }
}
