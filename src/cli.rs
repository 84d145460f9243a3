//! The command line of the operator contract, and how each command prints its result.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::check;
use crate::config::{self, Config};
use crate::error::Exit;
use crate::logging::LogFormat;
use crate::snapshot::{Catalog, format_age};
use crate::store::SourceBucket;

/// Keeps a staging environment a fresh, anonymized copy of production.
#[derive(Debug, Parser)]
#[command(name = "staging-refresh", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "STAGING_REFRESH_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print one JSON document instead of text (snapshots, plan, status, run).
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
        default_value = "plain",
        env = "STAGING_REFRESH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List snapshots, newest first: name, taken at, age, size, checksum present.
    Snapshots {
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Verify config, credentials, reachability and opt-in markers; non-zero exit on any problem.
    Check,
}

/// Runs one command; the returned code is the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Snapshots { limit } => snapshots(&config, limit, cli.json, cli.verbose).await,
        Command::Check => check(&config, cli.json).await,
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn snapshots(
    config: &Config,
    limit: Option<usize>,
    json: bool,
    verbose: bool,
) -> anyhow::Result<Exit> {
    let bucket = SourceBucket::new(&config.snapshot.bucket_config());
    let mut catalog = Catalog::list(&bucket, &config.snapshot, config.source_database())
        .await
        .context("listing snapshots")?;
    if let Some(limit) = limit {
        catalog.snapshots.truncate(limit);
    }
    if json {
        print_json(&catalog)?;
        return Ok(Exit::Success);
    }
    let now = Utc::now();
    let width = catalog
        .snapshots
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<19}  {:>7}  {:>10}  CHECKSUM",
        "NAME", "TAKEN AT (UTC)", "AGE", "SIZE"
    );
    for s in &catalog.snapshots {
        let too_old = if s.age(now) > config.snapshot.max_age {
            " (older than max_age)"
        } else {
            ""
        };
        println!(
            "{:<width$}  {:<19}  {:>7}  {:>10}  {}{too_old}",
            s.name,
            s.taken_at.format("%Y-%m-%d %H:%M:%S"),
            format_age(s.age(now)),
            HumanBytes(s.size).to_string(),
            if s.checksum_key.is_some() {
                "md5"
            } else {
                "none"
            },
        );
    }
    if catalog.snapshots.is_empty() {
        println!("(no usable snapshot)");
    }
    if verbose {
        for skipped in &catalog.skipped {
            println!("skipped {}: {}", skipped.key, skipped.reason);
        }
    } else if !catalog.skipped.is_empty() {
        println!(
            "{} objects skipped (--verbose says why)",
            catalog.skipped.len()
        );
    }
    Ok(if catalog.snapshots.is_empty() {
        Exit::Failed
    } else {
        Exit::Success
    })
}

async fn check(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let results = check::run(config).await;
    if json {
        print_json(&results)?;
    } else {
        for r in &results {
            println!(
                "{:<4}  {:<20}  {}",
                if r.ok { "ok" } else { "FAIL" },
                r.name,
                r.detail
            );
        }
    }
    Ok(if results.iter().all(|r| r.ok) {
        Exit::Success
    } else {
        Exit::Failed
    })
}
