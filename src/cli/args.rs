//! The command line of the operator contract: commands and flags (`main.rs` parses it,
//! `examples/package_docs.rs` renders it as man pages and completions).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::logging::LogFormat;
use crate::snapshot::Selection;

/// Keeps a staging environment a fresh, anonymized copy of production.
#[derive(Debug, Parser)]
#[command(name = "staging-refresh", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "STAGING_REFRESH_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print one JSON document instead of text (snapshots, plan, rules, status, run).
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more: debug logs, and why listed objects were skipped.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "STAGING_REFRESH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List snapshots, newest first: name, taken at, age, size, compression, encryption, checksum.
    Snapshots {
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Verify config, credentials, reachability and opt-in markers; non-zero exit on any problem.
    Check,
    /// One full refresh in the foreground, holding the lock.
    Run {
        /// `latest`, or a snapshot's file name or key.
        #[arg(long, default_value = "latest")]
        snapshot: Selection,
        /// Only show what would be done (the same as `plan`).
        #[arg(long)]
        dry_run: bool,
        /// Refresh the database only; leave the media bucket alone.
        #[arg(long, conflicts_with = "skip_db")]
        skip_media: bool,
        /// Mirror the media bucket only; leave the database alone.
        #[arg(long)]
        skip_db: bool,
    },
    /// Dry run: stream the dump through checksum, decoding and the filter, and show what
    /// would be restored, anonymized, created, renamed and dropped. Changes nothing.
    Plan {
        #[arg(long, default_value = "latest")]
        snapshot: Selection,
    },
    /// Every column of the snapshot that could hold personal data, with its masking rule, or
    /// a suggested mask and the evidence (name, value shapes: counts, never a value). Reads
    /// the snapshot like `plan`, without the staging server. Exit 1 when a column is
    /// unclassified.
    Rules {
        #[arg(long, default_value = "latest")]
        snapshot: Selection,
        /// Print `[[anonymize.column]]` rules for the unclassified columns, to review and
        /// paste (instead of the list, or its `--json`).
        #[arg(long)]
        toml: bool,
    },
    /// Mark the staging database and media bucket as refresh targets (the opt-in markers a run requires).
    InitTarget,
    /// Swap the kept previous database back in, under the maintenance flag.
    Rollback,
    /// The current and last run, the daemon's schedule, the maintenance flag, the kept
    /// previous database.
    Status,
    /// Run the scheduler and the control socket (systemd Type=notify service).
    Daemon,
    /// Ask the daemon for a refresh; when no daemon is listening, run it here like `run`.
    Trigger {
        /// Follow the refresh and exit with its outcome (0 ok, 1 failed, 3 refused, 4 busy).
        #[arg(long)]
        wait: bool,
        /// `latest` (or `now`), or a snapshot's file name or key.
        #[arg(default_value = "latest")]
        snapshot: Selection,
    },
}
