//! `check`: one line per verified thing; fails when any is not ok.

use std::path::Path;

use crate::check;
use crate::cli::print_json;
use crate::config::Config;
use crate::error::Exit;

pub async fn run(config: &Config, path: &Path, json: bool) -> anyhow::Result<Exit> {
    let results = check::run(config, path).await;
    if json {
        print_json(&results)?;
    } else {
        for r in &results {
            say!(
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
