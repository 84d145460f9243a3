//! Configuration: one TOML file, overridden by `STAGING_REFRESH__SECTION__KEY` environment
//! variables, secrets optionally read from `<key>_file`. Validated once at load; every
//! error names the key at fault.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub const DEFAULT_PATH: &str = "/etc/staging-refresh/config.toml";
const ENV_PREFIX: &str = "STAGING_REFRESH";
/// Keys holding secrets: each may instead be given as `<key>_file`, a path to read it from.
const SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "access_key_id",
    "url",
    "admin_password",
    "smtp_url",
];
/// Environment keys parsed as comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "notify.to",
    "anonymize.extra_sql",
    "backend.stop",
    "backend.start",
];
/// Suffixes the refresh appends to `database.name`; PostgreSQL names stop at 63 bytes.
const LONGEST_DB_SUFFIX: usize = "__previous".len();

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_error(key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.to_string(),
    }
}

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub snapshot: SnapshotConfig,
    pub database: DatabaseConfig,
    pub anonymize: AnonymizeConfig,
    #[serde(default)]
    pub restore: RestoreConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub backend: BackendConfig,
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    pub notify: Option<NotifyConfig>,
    #[serde(default)]
    pub daemon: DaemonConfig,
}

/// Where an S3-compatible bucket is and how to reach it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    /// Production database name in the dump file names; defaults to `database.name`.
    pub database: Option<String>,
    #[serde(default = "default_pattern")]
    pub pattern: String,
    #[serde(default = "default_max_age", deserialize_with = "de_duration")]
    pub max_age: Duration,
    #[serde(default)]
    pub require_checksum: bool,
}

impl SnapshotConfig {
    pub fn bucket_config(&self) -> BucketConfig {
        BucketConfig {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Maintenance connection (e.g. `postgres://refresh@host/postgres`), never the app DB.
    pub url: Secret,
    #[serde(default = "default_db_name")]
    pub name: String,
    pub owner: Option<String>,
    #[serde(default = "yes")]
    pub keep_previous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHash {
    /// A unique, well-formed bcrypt string no password hashes to.
    Unusable,
    /// A real bcrypt cost-12 hash of a random secret nobody knows (slow: ~0.2 s per user).
    Bcrypt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnmaskedPii {
    Warn,
    Fail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymizeConfig {
    #[serde(default = "default_prod_admin_email")]
    pub prod_admin_email: String,
    pub admin_email: String,
    pub admin_password: Secret,
    #[serde(default = "default_password_hash")]
    pub password_hash: PasswordHash,
    #[serde(default = "default_email_domain")]
    pub email_domain: String,
    #[serde(default = "default_on_unmasked_pii")]
    pub on_unmasked_pii: OnUnmaskedPii,
    #[serde(default)]
    pub extra_sql: Vec<PathBuf>,
}

/// How many staging-only media objects a run may delete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDelete {
    Count(u64),
    Percent(f64),
}

impl MaxDelete {
    /// The largest number of deletes allowed in a target holding `target_objects`.
    pub fn limit(self, target_objects: u64) -> u64 {
        match self {
            MaxDelete::Count(n) => n,
            MaxDelete::Percent(p) => (target_objects as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl FromStr for MaxDelete {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("expected a count like 500 or a percentage like \"10%\", got {s:?}");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxDelete::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(MaxDelete::Count).map_err(|_| bad()),
        }
    }
}

impl<'de> Deserialize<'de> for MaxDelete {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(MaxDelete::Count(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_media_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_max_delete")]
    pub max_delete: MaxDelete,
    /// Objects larger than this are copied in parts (S3 copies at most 5 GiB in one request).
    #[serde(default = "default_multipart_threshold", deserialize_with = "de_size")]
    pub multipart_threshold: u64,
    /// The size of every part but the last of a multipart copy (R2 wants them equal).
    #[serde(default = "default_part_size", deserialize_with = "de_size")]
    pub part_size: u64,
    pub source: Option<BucketConfig>,
    pub target: Option<BucketConfig>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: false,
            concurrency: default_media_concurrency(),
            max_delete: default_max_delete(),
            multipart_threshold: default_multipart_threshold(),
            part_size: default_part_size(),
            source: None,
            target: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Absent: no Redis flush at cutover.
    pub url: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// argv run to stop the staging backend at cutover (empty: nothing to stop).
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub start: Vec<String>,
    pub health_url: Option<String>,
    #[serde(default = "default_health_timeout", deserialize_with = "de_duration")]
    pub health_timeout: Duration,
    /// Limit for each of `stop` and `start`; a command still running is killed.
    #[serde(default = "default_command_timeout", deserialize_with = "de_duration")]
    pub command_timeout: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            stop: Vec::new(),
            start: Vec::new(),
            health_url: None,
            health_timeout: default_health_timeout(),
            command_timeout: default_command_timeout(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// Sessions the post-data statements (indexes, constraints, ...) run on at once; unset:
    /// the staging server's CPU count as it reports it, at least 2.
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Defaults to `<daemon.state_dir>/maintenance.json`.
    pub flag_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default = "default_cron")]
    pub cron: String,
    #[serde(default = "default_time_zone", deserialize_with = "de_time_zone")]
    pub time_zone: chrono_tz::Tz,
    #[serde(default = "yes")]
    pub catch_up: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: default_cron(),
            time_zone: default_time_zone(),
            catch_up: true,
        }
    }
}

impl ScheduleConfig {
    /// The parsed 6-field (seconds first) cron expression.
    pub fn parsed_cron(&self) -> Result<croner::Cron, croner::errors::CronError> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&self.cron)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `smtp://`, `smtps://` (implicit TLS) or `smtp://...?tls=required` (STARTTLS).
    pub smtp_url: Secret,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Defaults to `<state_dir>/refresh.lock`.
    pub lock_file: Option<PathBuf>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            control_socket: default_control_socket(),
            state_dir: default_state_dir(),
            lock_file: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_region() -> String {
    "auto".into()
}
fn default_pattern() -> String {
    "pgsql_*".into()
}
fn default_max_age() -> Duration {
    Duration::from_secs(26 * 3600)
}
fn default_db_name() -> String {
    "app".into()
}
fn default_prod_admin_email() -> String {
    "info@shootify.io".into()
}
fn default_password_hash() -> PasswordHash {
    PasswordHash::Unusable
}
fn default_email_domain() -> String {
    "staging.invalid".into()
}
fn default_on_unmasked_pii() -> OnUnmaskedPii {
    OnUnmaskedPii::Warn
}
fn default_media_concurrency() -> usize {
    32
}
fn default_max_delete() -> MaxDelete {
    MaxDelete::Percent(10.0)
}
fn default_multipart_threshold() -> u64 {
    5 * GIB
}
fn default_part_size() -> u64 {
    512 * MIB
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_cron() -> String {
    "0 0 3 * * *".into()
}
fn default_time_zone() -> chrono_tz::Tz {
    chrono_tz::UTC
}
fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9797))
}
fn default_control_socket() -> PathBuf {
    "/run/staging-refresh/control.sock".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/staging-refresh".into()
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); use a form like \"26h\" or \"90s\""
        ))
    })
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// S3's limits on one part of a multipart upload (and on one CopyObject).
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * GIB;

/// A size in bytes: a plain number, or a number with a unit such as "512MiB", "5 GiB", "64MB".
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000 * 1000,
        "g" | "gb" => 1000 * 1000 * 1000,
        "t" | "tb" => 1000 * 1000 * 1000 * 1000,
        "kib" => 1024,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => 1024 * GIB,
        _ => {
            return Err(format!(
                "unknown size unit in {text:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n >= 0.0 && n.is_finite() => Ok((n * multiplier as f64).round() as u64),
        _ => Err(format!(
            "invalid size {text:?}; use a form like \"512MiB\" or \"5GiB\""
        )),
    }
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn de_time_zone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {text:?}; use an IANA name like \"Europe/Rome\""
        ))
    })
}

impl Config {
    /// Loads the file at `path`, applies environment overrides and `_file` secrets, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Like [`Config::load`], with the environment given explicitly (tests) or taken from the process.
    pub fn load_with_env(
        path: &Path,
        env: Option<config::Map<String, String>>,
    ) -> Result<Config, ConfigError> {
        let file_error = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(env);
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let merged = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(environment)
            .build()
            .map_err(|e| file_error(e.to_string()))?;
        let mut tree = merged
            .cache
            .into_table()
            .map_err(|e| file_error(e.to_string()))?;
        read_secret_files(&mut tree, "")?;
        let value = config::Value::new(None, config::ValueKind::Table(tree));
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            key_error(
                if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                e.inner(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The staging database name the refresh restores into before cutover.
    pub fn scratch_db(&self) -> String {
        format!("{}__refresh", self.database.name)
    }

    /// The name the replaced database is kept under for `rollback`.
    pub fn previous_db(&self) -> String {
        format!("{}__previous", self.database.name)
    }

    /// The production database whose snapshots are restored.
    pub fn source_database(&self) -> &str {
        self.snapshot
            .database
            .as_deref()
            .unwrap_or(&self.database.name)
    }

    pub fn lock_file(&self) -> PathBuf {
        self.daemon
            .lock_file
            .clone()
            .unwrap_or_else(|| self.daemon.state_dir.join("refresh.lock"))
    }

    pub fn flag_file(&self) -> PathBuf {
        self.maintenance
            .flag_file
            .clone()
            .unwrap_or_else(|| self.daemon.state_dir.join("maintenance.json"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_bucket("snapshot", &self.snapshot.bucket_config())?;
        globset::Glob::new(&self.snapshot.pattern)
            .map_err(|e| key_error("snapshot.pattern", format!("invalid glob: {e}")))?;
        if self.snapshot.max_age.is_zero() {
            return Err(key_error("snapshot.max_age", "must be greater than zero"));
        }

        tokio_postgres::Config::from_str(self.database.url.expose()).map_err(|_| {
            key_error(
                "database.url",
                "not a PostgreSQL connection URL (postgres://user@host:port/postgres)",
            )
        })?;
        validate_identifier("database.name", &self.database.name, LONGEST_DB_SUFFIX)?;
        if let Some(owner) = &self.database.owner {
            validate_identifier("database.owner", owner, 0)?;
        }
        if let Some(source) = &self.snapshot.database {
            validate_identifier("snapshot.database", source, 0)?;
        }

        if let Some(jobs) = self.restore.jobs
            && !(1..=64).contains(&jobs)
        {
            return Err(key_error("restore.jobs", "must be between 1 and 64"));
        }

        let anonymize = &self.anonymize;
        for (key, email) in [
            ("anonymize.admin_email", &anonymize.admin_email),
            ("anonymize.prod_admin_email", &anonymize.prod_admin_email),
        ] {
            if !looks_like_email(email) {
                return Err(key_error(key, format!("{email:?} is not an email address")));
            }
        }
        if anonymize.admin_password.expose().chars().count() < 8 {
            return Err(key_error(
                "anonymize.admin_password",
                "must be at least 8 characters",
            ));
        }
        if anonymize.admin_password.expose().len() > 72 {
            return Err(key_error(
                "anonymize.admin_password",
                "bcrypt uses at most 72 bytes; choose a shorter password",
            ));
        }
        let domain = &anonymize.email_domain;
        if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
            return Err(key_error(
                "anonymize.email_domain",
                format!("{domain:?} is not a domain name"),
            ));
        }
        if anonymize.admin_email.ends_with(&format!("@{domain}")) {
            return Err(key_error(
                "anonymize.admin_email",
                "must not be in anonymize.email_domain (verification tells the admin apart by it)",
            ));
        }
        for (i, path) in anonymize.extra_sql.iter().enumerate() {
            std::fs::metadata(path).map_err(|e| {
                key_error(
                    format!("anonymize.extra_sql[{i}]"),
                    format!("{}: {e}", path.display()),
                )
            })?;
        }

        if self.media.enabled {
            for (key, bucket) in [
                ("media.source", &self.media.source),
                ("media.target", &self.media.target),
            ] {
                match bucket {
                    Some(b) => validate_bucket(key, b)?,
                    None => {
                        return Err(key_error(
                            key,
                            "missing; set it, or media.enabled = false to skip the media mirror",
                        ));
                    }
                }
            }
            if self.media.concurrency == 0 || self.media.concurrency > 1024 {
                return Err(key_error("media.concurrency", "must be between 1 and 1024"));
            }
            for (key, size) in [
                ("media.multipart_threshold", self.media.multipart_threshold),
                ("media.part_size", self.media.part_size),
            ] {
                if !(MIN_PART..=MAX_PART).contains(&size) {
                    return Err(key_error(
                        key,
                        format!(
                            "{size} bytes is outside S3's limits for one part or copy: 5MiB to 5GiB"
                        ),
                    ));
                }
            }
        }

        if let Some(url) = &self.redis.url {
            redis_url_scheme(url.expose()).ok_or_else(|| {
                key_error(
                    "redis.url",
                    "expected redis://host:port[/db] or rediss://...",
                )
            })?;
        }
        if let Some(url) = &self.backend.health_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(key_error(
                "backend.health_url",
                "expected an http:// or https:// URL",
            ));
        }

        self.schedule.parsed_cron().map_err(|e| {
            key_error(
                "schedule.cron",
                format!(
                    "invalid 6-field cron expression {:?}: {e}",
                    self.schedule.cron
                ),
            )
        })?;

        if let Some(notify) = &self.notify {
            let scheme = notify.smtp_url.expose().split("://").next().unwrap_or("");
            if !["smtp", "smtps"].contains(&scheme) {
                return Err(key_error(
                    "notify.smtp_url",
                    "expected smtp://host:port or smtps://host:port",
                ));
            }
            if !looks_like_email(&notify.from) {
                return Err(key_error(
                    "notify.from",
                    format!("{:?} is not an email address", notify.from),
                ));
            }
            if notify.to.is_empty() {
                return Err(key_error("notify.to", "needs at least one address"));
            }
            for (i, to) in notify.to.iter().enumerate() {
                if !looks_like_email(to) {
                    return Err(key_error(
                        format!("notify.to[{i}]"),
                        format!("{to:?} is not an email address"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn redis_url_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    (["redis", "rediss", "unix", "redis+unix"].contains(&scheme) && !rest.is_empty())
        .then_some(scheme)
}

fn validate_bucket(key: &str, bucket: &BucketConfig) -> Result<(), ConfigError> {
    if bucket.bucket.trim().is_empty() {
        return Err(key_error(format!("{key}.bucket"), "missing bucket name"));
    }
    match &bucket.endpoint {
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            return Err(key_error(
                format!("{key}.endpoint"),
                format!("{e:?} is not an http(s) URL"),
            ));
        }
        None if bucket.region == "auto" => {
            return Err(key_error(
                format!("{key}.endpoint"),
                "required when region is \"auto\" (R2 and other S3-compatible stores)",
            ));
        }
        _ => {}
    }
    if bucket.access_key_id.is_some() != bucket.secret_access_key.is_some() {
        return Err(key_error(
            format!("{key}.secret_access_key"),
            "access_key_id and secret_access_key go together",
        ));
    }
    Ok(())
}

fn validate_identifier(key: &str, name: &str, room_for_suffix: usize) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() + room_for_suffix <= 63
        && !name.contains('\0')
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(key_error(
            key,
            format!(
                "{name:?} is not a usable PostgreSQL name (1 to {} bytes, no surrounding spaces)",
                63 - room_for_suffix
            ),
        ))
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !s.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Replaces every `<secret key>_file = "path"` with `<secret key> = <file contents>`.
fn read_secret_files(
    table: &mut config::Map<String, config::Value>,
    parent: &str,
) -> Result<(), ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let full = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        if let config::ValueKind::Table(_) = table[&key].kind {
            let value = table.get_mut(&key).expect("key listed above");
            if let config::ValueKind::Table(inner) = &mut value.kind {
                read_secret_files(inner, &full)?;
            }
            continue;
        }
        let Some(stem) = key.strip_suffix("_file") else {
            continue;
        };
        if !SECRET_KEYS.contains(&stem) {
            continue;
        }
        if table.contains_key(stem) {
            return Err(key_error(
                full,
                format!("both `{stem}` and `{key}` are set; keep one"),
            ));
        }
        let path = table[&key]
            .clone()
            .into_string()
            .map_err(|e| key_error(&full, e))?;
        let secret = std::fs::read_to_string(&path)
            .map_err(|e| key_error(&full, format!("cannot read {path}: {e}")))?;
        let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
        table.remove(&key);
        table.insert(
            stem.to_owned(),
            config::Value::new(None, config::ValueKind::String(secret)),
        );
    }
    Ok(())
}

/// A PostgreSQL connection string with the password removed, for logs and errors.
pub fn redacted_postgres(url: &Secret) -> String {
    match tokio_postgres::Config::from_str(url.expose()) {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into());
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "postgres://{}@{host}:{port}/{}",
                c.get_user().unwrap_or(""),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "[unparseable URL]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[snapshot]
endpoint = "http://127.0.0.1:9000"
bucket = "snaps"
[database]
url = "postgres://refresh@127.0.0.1/postgres"
[anonymize]
admin_email = "admin@example.com"
admin_password = "correct horse"
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(&path, Some(env))
    }

    fn key_of(err: ConfigError) -> String {
        match err {
            ConfigError::Key { key, .. } => key,
            other => panic!("expected a key error, got {other}"),
        }
    }

    #[test]
    fn defaults_apply() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.snapshot.region, "auto");
        assert_eq!(c.snapshot.pattern, "pgsql_*");
        assert_eq!(c.snapshot.max_age, Duration::from_secs(26 * 3600));
        assert_eq!(c.database.name, "app");
        assert!(c.database.keep_previous);
        assert_eq!(c.anonymize.prod_admin_email, "info@shootify.io");
        assert_eq!(c.anonymize.password_hash, PasswordHash::Unusable);
        assert_eq!(c.anonymize.email_domain, "staging.invalid");
        assert_eq!(c.schedule.cron, "0 0 3 * * *");
        assert!(c.schedule.catch_up);
        assert!(c.notify.is_none());
        assert!(!c.media.enabled);
        assert_eq!(c.restore.jobs, None);
        assert_eq!(
            c.lock_file(),
            PathBuf::from("/var/lib/staging-refresh/refresh.lock")
        );
        assert_eq!(c.scratch_db(), "app__refresh");
        assert_eq!(c.source_database(), "app");
    }

    #[test]
    fn the_shipped_example_loads_as_is() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/config.toml");
        let c = Config::load_with_env(&path, Some(Default::default())).unwrap();
        assert!(c.media.enabled);
        assert_eq!(c.media.max_delete, MaxDelete::Percent(10.0));
        assert_eq!(c.backend.stop[0], "systemctl");
        assert_eq!(c.notify.unwrap().to, vec!["admin@staging.example.com"]);
    }

    #[test]
    fn env_overrides_nested_keys_and_lists() {
        let c = load(
            MINIMAL,
            &[
                ("STAGING_REFRESH__SNAPSHOT__BUCKET", "2024"),
                ("STAGING_REFRESH__DATABASE__KEEP_PREVIOUS", "false"),
                ("STAGING_REFRESH__NOTIFY__SMTP_URL", "smtp://127.0.0.1:25"),
                ("STAGING_REFRESH__NOTIFY__FROM", "refresh@example.com"),
                ("STAGING_REFRESH__NOTIFY__TO", "a@example.com,b@example.com"),
                ("STAGING_REFRESH__RESTORE__JOBS", "4"),
            ],
        )
        .unwrap();
        assert_eq!(c.restore.jobs, Some(4));
        assert_eq!(c.snapshot.bucket, "2024");
        assert!(!c.database.keep_previous);
        assert_eq!(c.notify.unwrap().to, vec!["a@example.com", "b@example.com"]);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = load(&format!("{MINIMAL}\n[redis]\nurll = \"redis://x\"\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        assert_eq!(key_of(err), "redis.urll");
        let err = load(MINIMAL, &[("STAGING_REFRESH__SNAPSHOT__BUKET", "x")]).unwrap_err();
        assert!(err.to_string().contains("buket"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[schedule]\ncron = \"0 3 * *\"\n", "schedule.cron"),
            (
                "[schedule]\ntime_zone = \"Mars/Olympus\"\n",
                "schedule.time_zone",
            ),
            (
                "[media]\nmax_delete = \"ten\"\nenabled = false\n",
                "media.max_delete",
            ),
            ("[media]\nenabled = true\n", "media.source"),
            ("[redis]\nurl = \"http://nope\"\n", "redis.url"),
            ("[restore]\njobs = 0\n", "restore.jobs"),
        ];
        for (extra, key) in cases {
            let err = load(&format!("{MINIMAL}{extra}"), &[]).unwrap_err();
            assert_eq!(key_of(err), key, "for {extra}");
        }
        let err = load(
            &MINIMAL.replace(
                "bucket = \"snaps\"",
                "bucket = \"snaps\"\nmax_age = \"26 hours please\"",
            ),
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("snapshot.max_age") && text.contains("invalid duration"),
            "{text}"
        );
        let err = load(&MINIMAL.replace("bucket = \"snaps\"", ""), &[]).unwrap_err();
        assert!(err.to_string().contains("bucket"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "from-a-file-secret\n").unwrap();
        let text = MINIMAL.replace(
            "admin_password = \"correct horse\"",
            &format!("admin_password_file = {:?}", secret.display().to_string()),
        );
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.anonymize.admin_password.expose(), "from-a-file-secret");
        assert!(!format!("{c:?}").contains("from-a-file-secret"));
        assert!(!format!("{c:?}").contains("correct horse"));

        let missing = MINIMAL.replace(
            "admin_password = \"correct horse\"",
            "admin_password_file = \"/nonexistent/pw\"",
        );
        let err = load(&missing, &[]).unwrap_err();
        assert!(
            err.to_string().contains("cannot read /nonexistent/pw"),
            "{err}"
        );
        assert_eq!(key_of(err), "anonymize.admin_password_file");
    }

    #[test]
    fn max_delete_parses_counts_and_percentages() {
        assert_eq!("10%".parse::<MaxDelete>().unwrap().limit(1000), 100);
        assert_eq!("250".parse::<MaxDelete>().unwrap().limit(10), 250);
        assert!("150%".parse::<MaxDelete>().is_err());
    }

    #[test]
    fn sizes_parse_with_units_and_name_their_key() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 * MIB);
        assert_eq!(parse_size("5 GiB").unwrap(), 5 * GIB);
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("1048576").unwrap(), MIB);
        assert!(parse_size("5 parsecs").is_err());
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.media.multipart_threshold, 5 * GIB);
        assert_eq!(c.media.part_size, 512 * MIB);
        let media =
            "[media]\nenabled = false\nmultipart_threshold = \"8MiB\"\npart_size = 6291456\n";
        let c = load(&format!("{MINIMAL}{media}"), &[]).unwrap();
        assert_eq!(
            (c.media.multipart_threshold, c.media.part_size),
            (8 * MIB, 6 * MIB)
        );
        let bucket = "endpoint = \"http://127.0.0.1:9000\"\nbucket = \"b\"\n";
        let enabled = format!("[media.source]\n{bucket}[media.target]\n{bucket}");
        let err = load(
            &format!("{MINIMAL}[media]\npart_size = \"1MiB\"\n{enabled}"),
            &[],
        )
        .unwrap_err();
        assert_eq!(key_of(err), "media.part_size");
        let err = load(
            &format!("{MINIMAL}[media]\nmultipart_threshold = \"6GiB\"\n{enabled}"),
            &[],
        )
        .unwrap_err();
        assert_eq!(key_of(err), "media.multipart_threshold");
        let err = load(&format!("{MINIMAL}[media]\npart_size = \"lots\"\n"), &[]).unwrap_err();
        assert_eq!(key_of(err), "media.part_size");
    }

    #[test]
    fn redacted_postgres_hides_the_password() {
        let url = Secret::new("postgres://refresh:hunter2@db.internal:6543/postgres");
        let shown = redacted_postgres(&url);
        assert_eq!(shown, "postgres://refresh@db.internal:6543/postgres");
    }
}
