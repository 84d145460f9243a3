//! The snapshot catalog: which production dumps exist, newest first.
//!
//! Dumps are named by db-backup as `pgsql_<db>_<host>_<YYYYMMDD-HHMMSS>.sql[.zst|.gz]`, with an
//! optional `<name>.md5` sidecar holding `<hex>  <name>`. Names are parsed from the right; the
//! database part is the configured production database name, so both it and the host may
//! contain `_`.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;

use crate::config::SnapshotConfig;
use crate::store::{SourceBucket, StoreError};

const SIDECAR_SUFFIX: &str = ".md5";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The file name, e.g. `pgsql_app_db1_20261125-030000.sql.zst`.
    pub name: String,
    pub key: String,
    pub database: String,
    pub host: String,
    pub taken_at: DateTime<Utc>,
    pub size: u64,
    pub compression: Compression,
    /// Key of the `.md5` sidecar, when there is one.
    pub checksum_key: Option<String>,
}

impl Snapshot {
    pub fn age(&self, now: DateTime<Utc>) -> Duration {
        (now - self.taken_at).to_std().unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

/// What a listing of the snapshot prefix found.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub bucket: String,
    pub prefix: String,
    /// Newest first.
    pub snapshots: Vec<Snapshot>,
    pub skipped: Vec<Skipped>,
    #[serde(skip)]
    max_age: Duration,
    #[serde(skip)]
    require_checksum: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot list snapshots: {0}")]
    Store(#[from] StoreError),
    #[error("no objects under s3://{bucket}/{prefix}: check snapshot.bucket and snapshot.prefix")]
    Empty { bucket: String, prefix: String },
    #[error(
        "no usable snapshot under s3://{bucket}/{prefix}: {skipped} objects skipped \
         (`staging-refresh snapshots --verbose` says why)"
    )]
    NoneUsable {
        bucket: String,
        prefix: String,
        skipped: usize,
    },
    #[error("snapshot {name} not found under s3://{bucket}/{prefix}")]
    NotFound {
        name: String,
        bucket: String,
        prefix: String,
    },
    #[error(
        "newest snapshot {name} was taken {age} ago, more than snapshot.max_age ({max_age}); \
         is the production backup running? Name a snapshot explicitly to restore it anyway"
    )]
    TooOld {
        name: String,
        age: String,
        max_age: String,
    },
    #[error("snapshot {name} has no .md5 sidecar and snapshot.require_checksum is set")]
    NoChecksum { name: String },
}

/// Which snapshot to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Latest,
    Named(String),
}

impl std::str::FromStr for Selection {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `now` is what `systemctl start staging-refresh@now` passes.
        Ok(if s == "latest" || s == "now" {
            Selection::Latest
        } else {
            Selection::Named(s.to_owned())
        })
    }
}

/// The parts of a dump's file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub database: String,
    pub host: String,
    pub taken_at: DateTime<Utc>,
    pub compression: Compression,
}

/// Parses a db-backup file name for `database`; the error says why the name does not fit.
pub fn parse_name(name: &str, database: &str) -> Result<ParsedName, String> {
    let (stem, compression) = if let Some(s) = name.strip_suffix(".sql.zst") {
        (s, Compression::Zstd)
    } else if let Some(s) = name.strip_suffix(".sql.gz") {
        (s, Compression::Gzip)
    } else if let Some(s) = name.strip_suffix(".sql") {
        (s, Compression::None)
    } else {
        return Err("unknown extension (expected .sql.zst, .sql.gz or .sql)".into());
    };
    let (rest, stamp) = stem
        .rsplit_once('_')
        .ok_or("no _<YYYYMMDD-HHMMSS> timestamp")?;
    let bad_stamp = || format!("bad timestamp {stamp:?} (expected YYYYMMDD-HHMMSS)");
    // chrono accepts unpadded fields; db-backup always writes exactly 15 characters.
    if stamp.len() != 15 {
        return Err(bad_stamp());
    }
    let taken_at = NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S")
        .map_err(|_| bad_stamp())?
        .and_utc();
    let rest = rest
        .strip_prefix("pgsql_")
        .ok_or("not a pgsql_ dump name")?;
    let host = rest
        .strip_prefix(database)
        .and_then(|h| h.strip_prefix('_'))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("not a dump of database {database:?}"))?;
    Ok(ParsedName {
        database: database.to_owned(),
        host: host.to_owned(),
        taken_at,
        compression,
    })
}

impl Catalog {
    /// Lists the snapshot prefix (every page) and builds the catalog for `database`.
    pub async fn list(
        bucket: &SourceBucket,
        cfg: &SnapshotConfig,
        database: &str,
    ) -> Result<Catalog, CatalogError> {
        let pattern = globset::Glob::new(&cfg.pattern)
            .expect("validated at config load")
            .compile_matcher();
        let mut dumps = Vec::new();
        let mut sidecars = HashSet::new();
        let mut skipped = Vec::new();
        let mut listed = 0usize;
        let mut objects = std::pin::pin!(bucket.list(&cfg.prefix));
        while let Some(object) = objects.try_next().await? {
            listed += 1;
            let name = object.key.rsplit('/').next().unwrap_or_default().to_owned();
            if let Some(dump) = name.strip_suffix(SIDECAR_SUFFIX) {
                sidecars.insert(dump.to_owned());
                continue;
            }
            let skip = |reason: String| Skipped {
                key: object.key.clone(),
                reason,
            };
            if !pattern.is_match(&name) {
                skipped.push(skip(format!(
                    "does not match snapshot.pattern {:?}",
                    cfg.pattern
                )));
                continue;
            }
            match parse_name(&name, database) {
                Ok(p) => dumps.push(Snapshot {
                    name,
                    key: object.key.clone(),
                    database: p.database,
                    host: p.host,
                    taken_at: p.taken_at,
                    size: object.size,
                    compression: p.compression,
                    checksum_key: None,
                }),
                Err(reason) => skipped.push(skip(reason)),
            }
        }
        if listed == 0 {
            return Err(CatalogError::Empty {
                bucket: bucket.name().to_owned(),
                prefix: cfg.prefix.clone(),
            });
        }
        for dump in &mut dumps {
            if sidecars.remove(&dump.name) {
                dump.checksum_key = Some(format!("{}{SIDECAR_SUFFIX}", dump.key));
            }
        }
        let mut orphans: Vec<_> = sidecars.into_iter().collect();
        orphans.sort();
        skipped.extend(orphans.into_iter().map(|dump| Skipped {
            key: format!("{}{dump}{SIDECAR_SUFFIX}", prefix_dir(&cfg.prefix)),
            reason: "checksum sidecar without its dump".into(),
        }));
        dumps.sort_by(|a, b| {
            b.taken_at
                .cmp(&a.taken_at)
                .then_with(|| b.name.cmp(&a.name))
        });
        Ok(Catalog {
            bucket: bucket.name().to_owned(),
            prefix: cfg.prefix.clone(),
            snapshots: dumps,
            skipped,
            max_age: cfg.max_age,
            require_checksum: cfg.require_checksum,
        })
    }

    /// Picks the snapshot to restore: the newest (refused when older than `max_age`) or one by
    /// name (its file name or full key).
    pub fn select(
        &self,
        selection: &Selection,
        now: DateTime<Utc>,
    ) -> Result<&Snapshot, CatalogError> {
        let snapshot = match selection {
            Selection::Latest => {
                let newest = self
                    .snapshots
                    .first()
                    .ok_or_else(|| CatalogError::NoneUsable {
                        bucket: self.bucket.clone(),
                        prefix: self.prefix.clone(),
                        skipped: self.skipped.len(),
                    })?;
                let age = newest.age(now);
                if age > self.max_age {
                    return Err(CatalogError::TooOld {
                        name: newest.name.clone(),
                        age: format_age(age),
                        max_age: format_age(self.max_age),
                    });
                }
                newest
            }
            Selection::Named(name) => self
                .snapshots
                .iter()
                .find(|s| &s.name == name || &s.key == name)
                .ok_or_else(|| CatalogError::NotFound {
                    name: name.clone(),
                    bucket: self.bucket.clone(),
                    prefix: self.prefix.clone(),
                })?,
        };
        if self.require_checksum && snapshot.checksum_key.is_none() {
            return Err(CatalogError::NoChecksum {
                name: snapshot.name.clone(),
            });
        }
        Ok(snapshot)
    }
}

/// The "directory" part of a prefix that sidecar keys share with their dumps.
fn prefix_dir(prefix: &str) -> &str {
    match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    }
}

/// Parses a `.md5` sidecar (`<32 hex>  <name>` or just the hex) into the digest.
pub fn parse_sidecar(text: &[u8]) -> Option<[u8; 16]> {
    let text = std::str::from_utf8(text).ok()?;
    let hex_digest = text.split_whitespace().next()?;
    let mut digest = [0u8; 16];
    hex::decode_to_slice(hex_digest, &mut digest).ok()?;
    Some(digest)
}

/// A short human age: `3d 4h`, `5h 12m`, `42s`.
pub fn format_age(age: Duration) -> String {
    let secs = age.as_secs();
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_from_the_right() {
        let p = parse_name(
            "pgsql_my_app_db_primary_1_20261125-030000.sql.zst",
            "my_app",
        )
        .unwrap();
        assert_eq!(p.database, "my_app");
        assert_eq!(p.host, "db_primary_1");
        assert_eq!(p.taken_at.to_rfc3339(), "2026-11-25T03:00:00+00:00");
        assert_eq!(p.compression, Compression::Zstd);
        assert_eq!(
            parse_name("pgsql_app_h_20260101-000000.sql.gz", "app")
                .unwrap()
                .compression,
            Compression::Gzip
        );
        assert_eq!(
            parse_name("pgsql_app_h_20260101-000000.sql", "app")
                .unwrap()
                .compression,
            Compression::None
        );
    }

    #[test]
    fn rejects_what_does_not_fit_with_a_reason() {
        let cases = [
            ("pgsql_app_h_20261325-030000.sql.zst", "bad timestamp"),
            ("pgsql_app_h_2026112-030000.sql.zst", "bad timestamp"),
            ("pgsql_app_h_20261125-030000.sql.bz2", "unknown extension"),
            ("pgsql_app_h_20261125-030000.tar", "unknown extension"),
            ("mysql_app_h_20261125-030000.sql", "not a pgsql_"),
            (
                "pgsql_other_h_20261125-030000.sql",
                "not a dump of database",
            ),
            ("pgsql_app_20261125-030000.sql", "not a dump of database"),
            (
                "pgsql_application_h_20261125-030000.sql",
                "not a dump of database",
            ),
        ];
        for (name, reason) in cases {
            let err = parse_name(name, "app").unwrap_err();
            assert!(err.contains(reason), "{name}: {err}");
        }
    }

    #[test]
    fn sidecars_parse_with_or_without_a_name() {
        let d = parse_sidecar(
            b"9e107d9d372bb6826bd81d3542a419d6  pgsql_app_h_20261125-030000.sql.zst\n",
        )
        .unwrap();
        assert_eq!(hex::encode(d), "9e107d9d372bb6826bd81d3542a419d6");
        assert!(parse_sidecar(b"9e107d9d372bb6826bd81d3542a419d6").is_some());
        assert!(parse_sidecar(b"not-hex").is_none());
        assert!(parse_sidecar(b"").is_none());
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(format_age(Duration::from_secs(42)), "42s");
        assert_eq!(format_age(Duration::from_secs(3 * 3600 + 120)), "3h 2m");
        assert_eq!(
            format_age(Duration::from_secs(2 * 86400 + 5 * 3600)),
            "2d 5h"
        );
    }
}
