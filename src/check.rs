//! `check`: is everything a refresh needs configured, reachable and opted in?
//! Each check is independent, so one problem does not hide the next.

use chrono::Utc;
use serde::Serialize;

use crate::config::Config;
use crate::snapshot::{Catalog, Selection, format_age};
use crate::store::SourceBucket;

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl CheckResult {
    fn from(name: &str, result: Result<String, String>) -> CheckResult {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        CheckResult {
            name: name.to_owned(),
            ok,
            detail,
        }
    }
}

/// Runs every check; the config itself was validated when it loaded.
pub async fn run(config: &Config) -> Vec<CheckResult> {
    vec![
        CheckResult::from("config", Ok("valid".into())),
        CheckResult::from("snapshot bucket", snapshot_bucket(config).await),
    ]
}

async fn snapshot_bucket(config: &Config) -> Result<String, String> {
    let bucket = SourceBucket::new(&config.snapshot.bucket_config());
    bucket.check().await.map_err(|e| e.to_string())?;
    let catalog = Catalog::list(&bucket, &config.snapshot, config.source_database())
        .await
        .map_err(|e| e.to_string())?;
    let newest = catalog
        .select(&Selection::Latest, Utc::now())
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} snapshots; newest {} ({} old)",
        catalog.snapshots.len(),
        newest.name,
        format_age(newest.age(Utc::now()))
    ))
}
