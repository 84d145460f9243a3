//! The config file's sections, one struct each, with their defaults beside them. A new
//! section is one struct here, one field in `Config` and one function in `validate.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;
use super::masking::{AccountsConfig, ColumnRule, Rules, TableRule, Unclassified};
use super::units::{GIB, MIB, MaxDelete, de_duration, de_size, de_time_zone, de_watch};

fn yes() -> bool {
    true
}

/// Where an S3-compatible bucket is and how to reach it: `[media.source]`, `[media.target]`,
/// and the same keys written flat in `[snapshot]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
}

impl BucketConfig {
    /// Its fields' names, which `[snapshot]` takes flat beside its own: keep them in step.
    pub(super) const KEYS: [&str; 5] = [
        "endpoint",
        "region",
        "bucket",
        "access_key_id",
        "secret_access_key",
    ];
}

fn default_region() -> String {
    "auto".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// The bucket's keys sit flat in `[snapshot]` beside the ones below; loading moves them
    /// into this table (`super::nest_snapshot_store`).
    store: BucketConfig,
    #[serde(default)]
    pub prefix: String,
    /// Production database name in the dump file names; defaults to `database.name`.
    pub database: Option<String>,
    #[serde(default = "default_pattern")]
    pub pattern: String,
    #[serde(default = "default_max_age", deserialize_with = "de_duration")]
    pub max_age: Duration,
    #[serde(default)]
    pub require_checksum: bool,
    /// How to open `.gpg` snapshots.
    pub decrypt: Option<DecryptConfig>,
}

/// `[snapshot.decrypt]`: a passphrase for `gpg -c` files, or an OpenPGP secret key (armored or
/// binary) for files encrypted to it; with both, the passphrase unlocks the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptConfig {
    pub passphrase: Option<Secret>,
    pub key_file: Option<PathBuf>,
}

impl SnapshotConfig {
    pub fn bucket_config(&self) -> &BucketConfig {
        &self.store
    }
}

fn default_pattern() -> String {
    "pgsql_*".into()
}
fn default_max_age() -> Duration {
    Duration::from_secs(26 * 3600)
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
    /// The password of `<name>_restore`, created `LOGIN PASSWORD` by the operator; needed
    /// when the refresh role may not set it for each run (neither superuser nor CREATEROLE).
    pub restore_password: Option<Secret>,
    /// The database the scratch database is created from (default `template0`): made once by
    /// a superuser with the extensions the dump creates that the restore role may not.
    pub template: Option<String>,
}

fn default_db_name() -> String {
    "app".into()
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
    /// The production admin, whose row is re-keyed in place; none: every account is masked.
    pub prod_admin_email: Option<String>,
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
    /// The schemas `extra_sql`'s unqualified names are looked up in (never `"$user"`).
    #[serde(default = "default_extra_sql_search_path")]
    pub extra_sql_search_path: Vec<String>,
    /// Masking rules as the file writes them, parsed into `rules`.
    #[serde(default)]
    pub column: Vec<ColumnRule>,
    #[serde(default)]
    pub table: Vec<TableRule>,
    pub mask_key_file: Option<PathBuf>,
    #[serde(default)]
    pub unclassified: Unclassified,
    #[serde(default)]
    pub large_objects: LargeObjects,
    /// `[anonymize.accounts]`: the application's users table.
    pub accounts: AccountsConfig,
    /// The masking rules, the accounts' included, parsed and validated by
    /// [`Config::load`](super::Config::load) (which alone sets them).
    #[serde(skip)]
    pub rules: Rules,
}

impl AnonymizeConfig {
    /// The masking rules this section makes (what [`super::Config::load`] keeps in `rules`).
    pub fn parse_rules(&self) -> Result<Rules, super::ConfigError> {
        Rules::from_config(&self.accounts, &self.table, &self.column, self.unclassified)
    }
}

/// `anonymize.large_objects`: what becomes of the dump's large objects, whose bytes no column
/// rule can name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LargeObjects {
    /// Restored without their data: each one exists, empty.
    #[default]
    Empty,
    /// Restored as they are; the PII scan reads them.
    Keep,
}

fn default_password_hash() -> PasswordHash {
    PasswordHash::Unusable
}
fn default_extra_sql_search_path() -> Vec<String> {
    vec!["public".into()]
}

fn default_email_domain() -> String {
    "staging.invalid".into()
}
fn default_on_unmasked_pii() -> OnUnmaskedPii {
    OnUnmaskedPii::Warn
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Absent: no Redis flush at cutover.
    pub url: Option<Secret>,
}

/// The restore's sessions, and its time limits: a dump (or code it runs) that hangs fails
/// the run instead of holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// Sessions the post-data statements (indexes, constraints, ...) run on at once; unset:
    /// the staging server's CPU count as it reports it, at least 2.
    #[serde(default)]
    pub jobs: Option<usize>,
    /// Each statement of the dump, and each of the refresh's own.
    #[serde(
        default = "default_statement_timeout",
        deserialize_with = "de_duration"
    )]
    pub statement_timeout: Duration,
    /// The whole restore.
    #[serde(default = "default_restore_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Waiting for a lock in the refresh's own SQL (anonymization, verification, swap).
    #[serde(default = "default_lock_timeout", deserialize_with = "de_duration")]
    pub lock_timeout: Duration,
}

impl Default for RestoreConfig {
    fn default() -> Self {
        RestoreConfig {
            jobs: None,
            statement_timeout: default_statement_timeout(),
            timeout: default_restore_timeout(),
            lock_timeout: default_lock_timeout(),
        }
    }
}

fn default_statement_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_restore_timeout() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_lock_timeout() -> Duration {
    Duration::from_secs(60)
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

fn default_health_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(300)
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
    /// How often the daemon lists the snapshot bucket for a new snapshot, whose columns it
    /// then classifies against the rules; `None` ("off" or "0"): it does not.
    #[serde(default = "default_watch", deserialize_with = "de_watch")]
    pub watch: Option<Duration>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: default_cron(),
            time_zone: default_time_zone(),
            catch_up: true,
            watch: default_watch(),
        }
    }
}

fn default_watch() -> Option<Duration> {
    Some(Duration::from_secs(15 * 60))
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

fn default_cron() -> String {
    "0 0 3 * * *".into()
}
fn default_time_zone() -> chrono_tz::Tz {
    chrono_tz::UTC
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

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9797))
}

/// `[notify]`: the summary email (`smtp_url`, `from` and `to`, set together), chat webhooks,
/// or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `smtp://`, `smtps://` (implicit TLS) or `smtp://...?tls=required` (STARTTLS).
    pub smtp_url: Option<Secret>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    /// `[[notify.webhook]]`: chat channels (or any JSON receiver) told after every run.
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
}

/// Where the summary email goes.
#[derive(Debug, Clone, Copy)]
pub struct EmailConfig<'a> {
    pub smtp_url: &'a Secret,
    pub from: &'a str,
    pub to: &'a [String],
}

impl NotifyConfig {
    /// The email's settings; `None` for a chat-only `[notify]`.
    pub fn email(&self) -> Option<EmailConfig<'_>> {
        Some(EmailConfig {
            smtp_url: self.smtp_url.as_ref()?,
            from: self.from.as_deref()?,
            to: self.to.as_deref()?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The incoming webhook's URL; it grants posting, so it is a secret (`url_file`).
    pub url: Secret,
    pub kind: WebhookKind,
    /// The severities that are sent; all by default.
    #[serde(default = "all_severities")]
    pub on: Vec<Severity>,
    /// Each attempt (there is one retry) gives up after this long.
    #[serde(default = "default_webhook_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    Slack,
    Mattermost,
    Teams,
    Json,
}

/// How a finished run went, for the people told about it: `ok`, `warning` (ok with warnings)
/// or `failed` (also refused and cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Failed,
}

fn all_severities() -> Vec<Severity> {
    vec![Severity::Ok, Severity::Warning, Severity::Failed]
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
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

fn default_control_socket() -> PathBuf {
    "/run/staging-refresh/control.sock".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/staging-refresh".into()
}

impl std::fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WebhookKind::Slack => "slack",
            WebhookKind::Mattermost => "mattermost",
            WebhookKind::Teams => "teams",
            WebhookKind::Json => "json",
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Ok => "ok",
            Severity::Warning => "ok with warnings",
            Severity::Failed => "failed",
        })
    }
}
