//! `snapshots`: the usable snapshots, newest first, each with its compression, encryption and
//! checksum kind, and how many objects were skipped.

use anyhow::Context;
use chrono::Utc;
use indicatif::HumanBytes;

use crate::cli::print_json;
use crate::config::Config;
use crate::error::Exit;
use crate::snapshot::{Catalog, Content, format_age};
use crate::store::SourceBucket;

pub async fn run(
    config: &Config,
    limit: Option<usize>,
    json: bool,
    verbose: bool,
) -> anyhow::Result<Exit> {
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
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
    say!(
        "{:<width$}  {:<19}  {:>7}  {:>10}  {:<11}  {:<10}  CHECKSUM",
        "NAME",
        "TAKEN AT (UTC)",
        "AGE",
        "SIZE",
        "COMPRESSION",
        "ENCRYPTION"
    );
    for s in &catalog.snapshots {
        let mut notes = String::new();
        if s.content != Content::Database {
            notes.push_str(&format!(" ({}: not restorable)", s.content.describe()));
        }
        if s.age(now) > config.snapshot.max_age {
            notes.push_str(" (older than max_age)");
        }
        say!(
            "{:<width$}  {:<19}  {:>7}  {:>10}  {:<11}  {:<10}  {}{notes}",
            s.name,
            s.taken_at.format("%Y-%m-%d %H:%M:%S"),
            format_age(s.age(now)),
            HumanBytes(s.size).to_string(),
            s.compression.to_string(),
            if s.encrypted { "gpg" } else { "none" },
            s.checksum
                .as_ref()
                .map_or("none".to_owned(), |c| c.kind.to_string()),
        );
    }
    if catalog.snapshots.is_empty() {
        say!("(no usable snapshot)");
    }
    if verbose {
        for skipped in &catalog.skipped {
            say!("skipped {}: {}", skipped.key, skipped.reason);
        }
    } else if !catalog.skipped.is_empty() {
        say!(
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
