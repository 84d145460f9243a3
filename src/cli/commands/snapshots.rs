//! `snapshots`: the usable snapshots, newest first, and how many objects were skipped.

use anyhow::Context;
use chrono::Utc;
use indicatif::HumanBytes;

use crate::cli::print_json;
use crate::config::Config;
use crate::error::Exit;
use crate::snapshot::{Catalog, format_age};
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
