//! The snapshot catalog: which production dumps exist, newest first.
//!
//! Dumps are named by db-backup as `pgsql_<db>_<host>_<YYYYMMDD-HHMMSS>.sql[.zst|.gz|.bz2|.xz]`,
//! then `.gpg` when encrypted, with an optional `<name>.md5` or `<name>.sha1` sidecar holding
//! `<hex>  <name>`. Names are parsed from the right; the database part is the configured
//! production database name, so both it and the host may contain `_`. Cluster dumps
//! (`pgsql_all_...`, `pgsql_globals_...`) are listed for what they are and never restored.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;

use crate::config::SnapshotConfig;
use crate::store::{SourceBucket, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    Bzip2,
    Xz,
    None,
}

impl Compression {
    const ALL: [Compression; 5] = [
        Compression::Zstd,
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::None,
    ];

    /// The end of a dump's name (before `.gpg`) that says this compression.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".sql.zst",
            Compression::Gzip => ".sql.gz",
            Compression::Bzip2 => ".sql.bz2",
            Compression::Xz => ".sql.xz",
            Compression::None => ".sql",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::None => "none",
        })
    }
}

/// What a dump holds, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// `pgsql_<db>_...`: `pg_dump` of the production database.
    Database,
    /// `pgsql_all_...`: `pg_dumpall` of every database on the server.
    Cluster,
    /// `pgsql_globals_...`: `pg_dumpall --globals-only` (roles, tablespaces).
    Globals,
}

impl Content {
    pub fn describe(self) -> &'static str {
        match self {
            Content::Database => "database dump",
            Content::Cluster => "cluster dump (pg_dumpall)",
            Content::Globals => "globals dump (roles, tablespaces)",
        }
    }
}

/// The kind of a checksum sidecar, by its suffix; stronger kinds sort later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumKind {
    Md5,
    Sha1,
}

impl ChecksumKind {
    const ALL: [ChecksumKind; 2] = [ChecksumKind::Md5, ChecksumKind::Sha1];

    pub fn suffix(self) -> &'static str {
        match self {
            ChecksumKind::Md5 => ".md5",
            ChecksumKind::Sha1 => ".sha1",
        }
    }

    /// The digest's length in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            ChecksumKind::Md5 => 32,
            ChecksumKind::Sha1 => 40,
        }
    }
}

impl fmt::Display for ChecksumKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.suffix()[1..])
    }
}

/// A dump's checksum sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sidecar {
    pub kind: ChecksumKind,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The file name, e.g. `pgsql_app_db1_20261125-030000.sql.zst`.
    pub name: String,
    pub key: String,
    pub content: Content,
    pub database: String,
    pub host: String,
    pub taken_at: DateTime<Utc>,
    pub size: u64,
    pub compression: Compression,
    /// Named `.gpg`: OpenPGP-encrypted.
    pub encrypted: bool,
    /// The `.md5` or `.sha1` sidecar, when there is one (the stronger when both are).
    pub checksum: Option<Sidecar>,
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
    #[error("snapshot {name} has no .md5 or .sha1 sidecar and snapshot.require_checksum is set")]
    NoChecksum { name: String },
    #[error(
        "snapshot {name} is a {}: only single-database dumps restore; set db-backup to dump \
         the production database on its own (DBnn_NAME set to it, or DBnn_SPLIT_DB=TRUE with \
         ALL), which writes pgsql_<db>_<host>_<time>.sql files",
        .content.describe()
    )]
    NotADatabase { name: String, content: Content },
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
    pub content: Content,
    pub database: String,
    pub host: String,
    pub taken_at: DateTime<Utc>,
    pub compression: Compression,
    pub encrypted: bool,
}

/// Parses a db-backup file name for `database`; the error says why the name does not fit.
pub fn parse_name(name: &str, database: &str) -> Result<ParsedName, String> {
    let (unencrypted, encrypted) = match name.strip_suffix(".gpg") {
        Some(s) => (s, true),
        None => (name, false),
    };
    let (stem, compression) = Compression::ALL
        .into_iter()
        .find_map(|c| unencrypted.strip_suffix(c.suffix()).map(|s| (s, c)))
        .ok_or("unknown extension (expected .sql, .sql.zst, .sql.gz, .sql.bz2 or .sql.xz, each optionally .gpg)")?;
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
    let host_after = |prefix: &str| {
        rest.strip_prefix(prefix)
            .and_then(|h| h.strip_prefix('_'))
            .filter(|h| !h.is_empty())
    };
    let (content, host) = if let Some(host) = host_after(database) {
        (Content::Database, host)
    } else if let Some(host) = host_after("all") {
        (Content::Cluster, host)
    } else if let Some(host) = host_after("globals") {
        (Content::Globals, host)
    } else {
        return Err(format!("not a dump of database {database:?}"));
    };
    Ok(ParsedName {
        content,
        database: database.to_owned(),
        host: host.to_owned(),
        taken_at,
        compression,
        encrypted,
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
        // Dump name → the strongest sidecar kind listed for it.
        let mut sidecars: HashMap<String, ChecksumKind> = HashMap::new();
        let mut skipped = Vec::new();
        let mut listed = 0usize;
        let mut objects = std::pin::pin!(bucket.list(&cfg.prefix));
        while let Some(object) = objects.try_next().await? {
            listed += 1;
            let name = object.key.rsplit('/').next().unwrap_or_default().to_owned();
            if let Some((dump, kind)) = ChecksumKind::ALL
                .into_iter()
                .find_map(|k| name.strip_suffix(k.suffix()).map(|d| (d, k)))
            {
                let strongest = sidecars.entry(dump.to_owned()).or_insert(kind);
                *strongest = (*strongest).max(kind);
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
                    content: p.content,
                    database: p.database,
                    host: p.host,
                    taken_at: p.taken_at,
                    size: object.size,
                    compression: p.compression,
                    encrypted: p.encrypted,
                    checksum: None,
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
            if let Some(kind) = sidecars.remove(&dump.name) {
                dump.checksum = Some(Sidecar {
                    kind,
                    key: format!("{}{}", dump.key, kind.suffix()),
                });
            }
        }
        let mut orphans: Vec<_> = sidecars.into_iter().collect();
        orphans.sort();
        skipped.extend(orphans.into_iter().map(|(dump, kind)| Skipped {
            key: format!("{}{dump}{}", prefix_dir(&cfg.prefix), kind.suffix()),
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

    /// Picks the snapshot to restore: the newest database or cluster dump (refused when older
    /// than `max_age`; a globals dump, written beside per-database ones, is never the newest)
    /// or one by name (its file name or full key). Only a database dump is restored.
    pub fn select(
        &self,
        selection: &Selection,
        now: DateTime<Utc>,
    ) -> Result<&Snapshot, CatalogError> {
        let snapshot = match selection {
            Selection::Latest => {
                let newest = self
                    .snapshots
                    .iter()
                    .find(|s| s.content != Content::Globals)
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
        if snapshot.content != Content::Database {
            return Err(CatalogError::NotADatabase {
                name: snapshot.name.clone(),
                content: snapshot.content,
            });
        }
        if self.require_checksum && snapshot.checksum.is_none() {
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
        for (name, compression, encrypted) in [
            ("pgsql_app_h_20260101-000000.sql", Compression::None, false),
            (
                "pgsql_app_h_20260101-000000.sql.bz2",
                Compression::Bzip2,
                false,
            ),
            (
                "pgsql_app_h_20260101-000000.sql.xz.gpg",
                Compression::Xz,
                true,
            ),
            (
                "pgsql_app_h_20260101-000000.sql.gpg",
                Compression::None,
                true,
            ),
        ] {
            let p = parse_name(name, "app").unwrap();
            assert_eq!(
                (p.compression, p.encrypted),
                (compression, encrypted),
                "{name}"
            );
            assert_eq!(
                (p.content, p.host.as_str()),
                (Content::Database, "h"),
                "{name}"
            );
        }
    }

    #[test]
    fn cluster_dumps_are_named_for_what_they_are() {
        let all = parse_name("pgsql_all_db_1_20260101-000000.sql.zst", "app").unwrap();
        assert_eq!((all.content, all.host.as_str()), (Content::Cluster, "db_1"));
        let globals = parse_name("pgsql_globals_db_20260101-000000.sql.gz", "app").unwrap();
        assert_eq!(globals.content, Content::Globals);
    }

    #[test]
    fn rejects_what_does_not_fit_with_a_reason() {
        let cases = [
            ("pgsql_app_h_20261325-030000.sql.zst", "bad timestamp"),
            ("pgsql_app_h_2026112-030000.sql.zst", "bad timestamp"),
            ("pgsql_app_h_20261125-030000.sql.lz4", "unknown extension"),
            (
                "pgsql_app_h_20261125-030000.sql.zst.gpg.gz",
                "unknown extension",
            ),
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
    fn ages_read_naturally() {
        assert_eq!(format_age(Duration::from_secs(42)), "42s");
        assert_eq!(format_age(Duration::from_secs(3 * 3600 + 120)), "3h 2m");
        assert_eq!(
            format_age(Duration::from_secs(2 * 86400 + 5 * 3600)),
            "2d 5h"
        );
    }
}
