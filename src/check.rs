//! `check`: is everything a refresh needs configured, reachable and opted in?
//! Each check is independent, so one problem does not hide the next.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::Utc;
use serde::Serialize;

use crate::config::{BucketConfig, Config};
use crate::database::{Server, markers};
use crate::media::{self, MARKER_KEY};
use crate::restore;
use crate::snapshot::{Catalog, Selection, Snapshot, format_age};
use crate::staging::redis;
use crate::store::{SourceBucket, TargetBucket};

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

/// Runs every check; the config itself (read from `path`) was validated when it loaded.
pub async fn run(config: &Config, path: &Path) -> Vec<CheckResult> {
    let mut results = vec![
        CheckResult::from("config", Ok("valid".into())),
        CheckResult::from("config file mode", config_mode(path)),
    ];
    results.extend(snapshots(config).await);
    results.extend(database(config).await);
    if let Some(url) = &config.redis.url {
        let reachable = redis::ping(url).await.map(|()| "reachable".to_owned());
        results.push(CheckResult::from(
            "redis",
            reachable.map_err(|e| e.to_string()),
        ));
    }
    if let (true, Some(source), Some(target)) = (
        config.media.enabled,
        &config.media.source,
        &config.media.target,
    ) {
        results.extend([
            CheckResult::from("media source bucket", media_bucket(source).await),
            CheckResult::from("media target bucket", media_bucket(target).await),
            CheckResult::from("media target marker", media_marker(target).await),
            CheckResult::from("media target != source", media_distinct(source, target)),
        ]);
    }
    results
}

/// The config holds secrets: other users must not read it (owner and group may: the
/// package gives it to root:staging-refresh, mode 0640).
fn config_mode(path: &Path) -> Result<String, String> {
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    Ok(if mode & 0o004 != 0 {
        format!(
            "warning: {} is mode {mode:04o}, readable by every user, and it holds secrets; \
             `chmod o-rwx {}`",
            path.display(),
            path.display()
        )
    } else {
        format!("{} is mode {mode:04o}", path.display())
    })
}

/// The staging server: reachable, the target marked, the role not a superuser.
async fn database(config: &Config) -> Vec<CheckResult> {
    let server = Server::new(&config.database.url);
    let client = match server.connect(None).await {
        Ok(client) => client,
        Err(e) => return vec![CheckResult::from("database", Err(e.to_string()))],
    };
    let name = &config.database.name;
    let reachable = match server.facts(&client).await {
        Ok((version, _)) => Ok(format!("{} (server version {version})", server.redacted())),
        Err(e) => Err(e.to_string()),
    };
    let marker = match markers::marked_at(&server, &client, name).await {
        Ok(Some(at)) => Ok(format!(
            "{name} marked as a refresh target on {}",
            at.format("%Y-%m-%d %H:%M UTC")
        )),
        Ok(None) => Err(format!(
            "{name} is not marked as a refresh target; run `staging-refresh init-target` to opt in"
        )),
        Err(e) => Err(e.to_string()),
    };
    let role = match server.is_superuser(&client).await {
        Ok(true) => Ok(
            "warning: the role is a superuser, and the dump runs with its rights; \
                        prefer a role with CREATEDB that is a member of database.owner"
                .to_owned(),
        ),
        Ok(false) => Ok("not a superuser".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    vec![
        CheckResult::from("database", reachable),
        CheckResult::from("target marker", marker),
        CheckResult::from("database role", role),
    ]
}

/// Listing is all `check` does, so the read-only bucket type serves for either side.
async fn media_bucket(cfg: &BucketConfig) -> Result<String, String> {
    let bucket = SourceBucket::new(cfg);
    bucket.check().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "s3://{} at {} can be listed",
        bucket.name(),
        bucket.endpoint()
    ))
}

async fn media_marker(target: &BucketConfig) -> Result<String, String> {
    let bucket = TargetBucket::new(target);
    match media::has_marker(&bucket).await {
        Ok(true) => Ok(format!("{MARKER_KEY} present")),
        Ok(false) => Err(format!(
            "{MARKER_KEY} missing: run `staging-refresh init-target` if s3://{} is staging's bucket",
            bucket.name()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn media_distinct(source: &BucketConfig, target: &BucketConfig) -> Result<String, String> {
    if media::same_bucket(source, target) {
        Err(format!(
            "media.target is media.source (s3://{}): the mirror would write to production",
            target.bucket
        ))
    } else {
        Ok(format!(
            "s3://{} is not s3://{}",
            target.bucket, source.bucket
        ))
    }
}

/// The snapshot bucket and its newest snapshot; an encrypted one must open with the
/// configured secret.
async fn snapshots(config: &Config) -> Vec<CheckResult> {
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
    let newest = match newest_snapshot(config, &bucket).await {
        Ok(newest) => newest,
        Err(e) => return vec![CheckResult::from("snapshot bucket", Err(e))],
    };
    let mut results = vec![CheckResult::from("snapshot bucket", Ok(newest.1))];
    let snapshot = newest.0;
    if snapshot.encrypted {
        let source = restore::Source {
            bucket: &bucket,
            decrypt: config.snapshot.decrypt.as_ref(),
        };
        let opened = restore::probe(source, &snapshot)
            .await
            .map(|()| format!("[snapshot.decrypt] opens {}", snapshot.name))
            .map_err(|e| e.to_string());
        results.push(CheckResult::from("snapshot decryption", opened));
    }
    results
}

async fn newest_snapshot(
    config: &Config,
    bucket: &SourceBucket,
) -> Result<(Snapshot, String), String> {
    bucket.check().await.map_err(|e| e.to_string())?;
    let catalog = Catalog::list(bucket, &config.snapshot, config.source_database())
        .await
        .map_err(|e| e.to_string())?;
    let newest = catalog
        .select(&Selection::Latest, Utc::now())
        .map_err(|e| e.to_string())?;
    let detail = format!(
        "{} snapshots; newest {} ({} old)",
        catalog.snapshots.len(),
        newest.name,
        format_age(newest.age(Utc::now()))
    );
    Ok((newest.clone(), detail))
}
