//! Configuration: one TOML file, overridden by `STAGING_REFRESH__SECTION__KEY` environment
//! variables, secrets optionally read from `<key>_file`. Validated once at load; every
//! error names the key at fault.
//!
//! `schema.rs` holds the sections and their defaults, `validate.rs` the checks serde cannot
//! make, `units.rs` the durations, sizes and time zones written as text, `masking.rs` the
//! masking rules parsed from `[anonymize]`.

mod load;
pub mod masking;
mod schema;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use masking::{AccountsConfig, ColumnRule, TableMode, TableRule, Unclassified};
pub use schema::{
    AnonymizeConfig, BackendConfig, BucketConfig, DaemonConfig, DatabaseConfig, DecryptConfig,
    EmailConfig, LargeObjects, MaintenanceConfig, MediaConfig, MetricsConfig, NotifyConfig,
    OnUnmaskedPii, PasswordHash, RedisConfig, RestoreConfig, ScheduleConfig, Severity,
    SnapshotConfig, WebhookConfig, WebhookKind,
};
pub use units::MaxDelete;

pub const DEFAULT_PATH: &str = "/etc/staging-refresh/config.toml";
const ENV_PREFIX: &str = "STAGING_REFRESH";
/// Keys holding secrets: each may instead be given as `<key>_file`, a path to read it from.
const SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "access_key_id",
    "url",
    "admin_password",
    "smtp_url",
    "passphrase",
    "restore_password",
];
/// Environment keys parsed as comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "notify.to",
    "anonymize.extra_sql",
    "anonymize.extra_sql_search_path",
    "backend.stop",
    "backend.start",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    /// More than one key at fault, each named once, in the order found.
    #[error("{} config errors: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<ConfigError>),
}

fn key_error(key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.to_string(),
    }
}

/// A value that must never be printed (secrecy's `SecretString`: `Debug` shows it redacted,
/// the memory is zeroed on drop; `expose_secret` is the one way to read it).
pub use secrecy::{ExposeSecret, SecretString as Secret};

/// The whole file, one field per section.
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
        let mut errors = load::Errors::default();
        read_secret_files(&mut tree, "", &mut errors);
        nest_snapshot_store(&mut tree, &mut errors);
        require_accounts(&tree, &mut errors);
        let config =
            load::deserialize::<Config>(tree, &mut errors, flat_snapshot_keys).map(|mut config| {
                validate::config(&config, &mut errors);
                match config.anonymize.parse_rules() {
                    Ok(rules) => config.anonymize.rules = rules,
                    Err(e) => errors.add(e),
                }
                config
            });
        errors.into_result(config)
    }

    /// The staging database name the refresh restores into before cutover.
    pub fn scratch_db(&self) -> String {
        format!("{}__refresh", self.database.name)
    }

    /// The name the replaced database is kept under for `rollback`.
    pub fn previous_db(&self) -> String {
        format!("{}__previous", self.database.name)
    }

    /// The name `rollback` parks the live database under while it swaps the previous one in.
    pub fn parked_db(&self) -> String {
        format!("{}__rollback", self.database.name)
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
}

/// Replaces every `<secret key>_file = "path"` with `<secret key> = <file contents>`; one
/// that cannot be read is an error of its `_file` key (and stands for its secret's).
fn read_secret_files(
    table: &mut config::Map<String, config::Value>,
    parent: &str,
    errors: &mut load::Errors,
) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let full = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        match &mut table.get_mut(&key).expect("key listed above").kind {
            config::ValueKind::Table(inner) => {
                read_secret_files(inner, &full, errors);
                continue;
            }
            // An array of tables: `[[notify.webhook]]`.
            config::ValueKind::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let config::ValueKind::Table(inner) = &mut item.kind {
                        read_secret_files(inner, &format!("{full}[{i}]"), errors);
                    }
                }
                continue;
            }
            _ => {}
        }
        let Some(stem) = key.strip_suffix("_file") else {
            continue;
        };
        if !SECRET_KEYS.contains(&stem) {
            continue;
        }
        let stem_key = full.trim_end_matches("_file").to_owned();
        let secret = if table.contains_key(stem) {
            Err(format!("both `{stem}` and `{key}` are set; keep one"))
        } else {
            table[&key]
                .clone()
                .into_string()
                .map_err(|e| e.to_string())
                .and_then(|path| {
                    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))
                })
        };
        table.remove(&key);
        match secret {
            Ok(secret) => {
                let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
                table.insert(
                    stem.to_owned(),
                    config::Value::new(None, config::ValueKind::String(secret)),
                );
            }
            Err(message) => {
                errors.push(&full, message);
                errors.cover(stem_key);
            }
        }
    }
}

/// An `[anonymize]` without `[anonymize.accounts]` (a config written before the section
/// existed, when one application's users table was built in) is an error that says what to
/// add, rather than serde's "missing".
fn require_accounts(tree: &config::Map<String, config::Value>, errors: &mut load::Errors) {
    let Some(config::ValueKind::Table(anonymize)) = tree.get("anonymize").map(|v| &v.kind) else {
        return;
    };
    if anonymize.contains_key("accounts") {
        return;
    }
    errors.push(
        "anonymize.accounts",
        "missing: name the application's users table and its columns, e.g. \
         [anonymize.accounts] table = \"public.users\", id = \"id\", email = \"email\", \
         password = \"encrypted_password\", and name, superuser (boolean) and active (boolean) \
         where the table has them; a config from before this section existed also needs \
         [[anonymize.column]] rules for what the runbook neutralised (README \"Upgrading\")",
    );
}

/// `[snapshot]` writes its bucket's keys flat beside its own, while `SnapshotConfig` holds
/// them as one `BucketConfig` in `store`: loading moves them into a `store` table, and
/// [`flat_snapshot_keys`] turns error keys back into the file's. (serde's `flatten` cannot
/// serve: with it, `deny_unknown_fields` no longer says which key is unknown, and the
/// buffered values lose the config crate's coercion, so `bucket = 2024` from the
/// environment, parsed as a number, would be refused as not a string.)
const SNAPSHOT_STORE: &str = "store";

fn nest_snapshot_store(tree: &mut config::Map<String, config::Value>, errors: &mut load::Errors) {
    let Some(config::ValueKind::Table(snapshot)) = tree.get_mut("snapshot").map(|v| &mut v.kind)
    else {
        return;
    };
    if snapshot.remove(SNAPSHOT_STORE).is_some() {
        errors.push(
            format!("snapshot.{SNAPSHOT_STORE}"),
            format!("unknown field `{SNAPSHOT_STORE}`"),
        );
    }
    let store = BucketConfig::KEYS
        .iter()
        .filter_map(|&key| Some((key.to_owned(), snapshot.remove(key)?)))
        .collect();
    snapshot.insert(
        SNAPSHOT_STORE.to_owned(),
        config::Value::new(None, config::ValueKind::Table(store)),
    );
}

/// An error's key or message as the file spells it: `snapshot.store.bucket` is
/// `snapshot.bucket`, and serde's list of `[snapshot]`'s keys (`store` comes first in
/// `SnapshotConfig`) names the bucket's instead.
fn flat_snapshot_keys(text: &str) -> String {
    let nested = format!("snapshot.{SNAPSHOT_STORE}");
    if text == nested {
        return "snapshot".into();
    }
    let bucket_keys = BucketConfig::KEYS.map(|k| format!("`{k}`")).join(", ");
    text.replace(&format!("{nested}."), "snapshot.").replace(
        &format!("one of `{SNAPSHOT_STORE}`"),
        &format!("one of {bucket_keys}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(super) const MINIMAL: &str = r#"
[snapshot]
endpoint = "http://127.0.0.1:9000"
bucket = "snaps"
[database]
url = "postgres://refresh@127.0.0.1/postgres"
[anonymize]
admin_email = "admin@example.com"
admin_password = "correct horse"
[anonymize.accounts]
table = "public.users"
id = "id"
email = "email"
password = "encrypted_password"
"#;

    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(&path, Some(env))
    }

    /// The key the first error names.
    pub(super) fn key_of(err: ConfigError) -> String {
        keys_of(err).remove(0)
    }

    pub(super) fn keys_of(err: ConfigError) -> Vec<String> {
        match err {
            ConfigError::Key { key, .. } => vec![key],
            ConfigError::Several(errors) => errors.into_iter().flat_map(keys_of).collect(),
            other => panic!("expected a key error, got {other}"),
        }
    }

    #[test]
    fn defaults_apply() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.snapshot.bucket_config().region, "auto");
        assert_eq!(c.snapshot.pattern, "pgsql_*");
        assert_eq!(c.snapshot.max_age, Duration::from_secs(26 * 3600));
        assert_eq!(c.database.name, "app");
        assert!(c.database.keep_previous);
        assert_eq!(c.anonymize.prod_admin_email, None);
        assert_eq!(c.database.template, None);
        assert_eq!(c.anonymize.password_hash, PasswordHash::Unusable);
        assert_eq!(c.anonymize.email_domain, "staging.invalid");
        assert_eq!(c.anonymize.extra_sql_search_path, ["public"]);
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
        assert_eq!(
            c.notify.unwrap().email().unwrap().to,
            ["admin@staging.example.com"]
        );
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
        assert_eq!(c.snapshot.bucket_config().bucket, "2024");
        assert!(!c.database.keep_previous);
        assert_eq!(
            c.notify.unwrap().email().unwrap().to,
            ["a@example.com", "b@example.com"]
        );
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
    fn snapshot_takes_its_bucket_keys_flat_and_refuses_others_by_name() {
        let keys = "region = \"eu-west-1\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"sk\"\n";
        let c = load(
            &MINIMAL.replace("[database]", &format!("{keys}[database]")),
            &[],
        )
        .unwrap();
        let store = c.snapshot.bucket_config();
        assert_eq!(
            (
                store.endpoint.as_deref(),
                store.region.as_str(),
                store.bucket.as_str()
            ),
            (Some("http://127.0.0.1:9000"), "eu-west-1", "snaps")
        );
        let exposed = |s: &Option<Secret>| s.as_ref().map(|s| s.expose_secret().to_owned());
        assert_eq!(exposed(&store.access_key_id).as_deref(), Some("AKID"));
        assert_eq!(exposed(&store.secret_access_key).as_deref(), Some("sk"));

        for unknown in ["buket", "store"] {
            let text = MINIMAL.replace("[database]", &format!("{unknown} = \"x\"\n[database]"));
            let err = load(&text, &[]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("unknown field `{unknown}`")),
                "{message}"
            );
            assert!(!message.contains("`store`,"), "{message}");
            assert_eq!(key_of(err), format!("snapshot.{unknown}"));
        }
        let err = load(&MINIMAL.replace("[database]", "buket = 1\n[database]"), &[]).unwrap_err();
        let expected = "expected one of `endpoint`, `region`, `bucket`, `access_key_id`, \
                        `secret_access_key`, `prefix`, `database`, `pattern`, `max_age`";
        assert!(err.to_string().contains(expected), "{err}");
        let media = "[media]\nenabled = false\n[media.source]\nbucket = \"b\"\nstore = 1\n";
        let err = load(&format!("{MINIMAL}{media}"), &[]).unwrap_err();
        assert!(err.to_string().contains("unknown field `store`"), "{err}");
        assert_eq!(key_of(err), "media.source.store");
        let err = load(
            &MINIMAL.replace("\"snaps\"", "\"snaps\"\nregion = [1]"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `snapshot.region`: invalid type: sequence, expected a string"
        );
        let err = load(&MINIMAL.replace("bucket = \"snaps\"", ""), &[]).unwrap_err();
        assert_eq!(err.to_string(), "config key `snapshot.bucket`: missing");
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
        assert_eq!(
            c.anonymize.admin_password.expose_secret(),
            "from-a-file-secret"
        );
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
    fn webhooks_take_their_url_from_a_file_and_a_bad_one_is_named_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("hook");
        std::fs::write(&url, "https://chat.example.com/hooks/token-5e1f\n").unwrap();
        let notify = |webhook: &str| {
            format!(
                "{MINIMAL}[notify]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"r@example.com\"\n\
                 to = [\"a@example.com\"]\n[[notify.webhook]]\nkind = \"teams\"\n\
                 url = \"https://chat.example.com/hooks/a\"\n[[notify.webhook]]\n{webhook}"
            )
        };
        let c = load(
            &notify(&format!(
                "kind = \"slack\"\nurl_file = {:?}\n",
                url.display().to_string()
            )),
            &[],
        )
        .unwrap();
        let hooks = c.notify.unwrap().webhook;
        assert_eq!(hooks[1].kind, WebhookKind::Slack);
        assert_eq!(
            hooks[1].url.expose_secret(),
            "https://chat.example.com/hooks/token-5e1f"
        );
        assert_eq!(
            hooks[1].on,
            [Severity::Ok, Severity::Warning, Severity::Failed]
        );
        assert_eq!(hooks[1].timeout, Duration::from_secs(10));

        let err = load(
            &notify("kind = \"slack\"\nurl = \"ftp://token-5e1f\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("token-5e1f"), "{err}");
        assert_eq!(key_of(err), "notify.webhook[1].url");
        let err = load(&notify("kind = \"slak\"\nurl = \"https://x\"\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("slak"), "{err}");
        assert_eq!(key_of(err), "notify.webhook[1].kind");
        let err = load(
            &notify("kind = \"json\"\nurl = \"https://x\"\non = []\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(key_of(err), "notify.webhook[1].on");
    }

    #[test]
    fn the_restore_password_comes_from_its_file_and_may_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("restore-password");
        let with = |password: &str| {
            std::fs::write(&file, password).unwrap();
            let key = format!("restore_password_file = {:?}", file.display().to_string());
            load(
                &MINIMAL.replace("[anonymize]", &format!("{key}\n[anonymize]")),
                &[],
            )
        };
        let c = with("restore-secret\n").unwrap();
        let password = c.database.restore_password.as_ref().unwrap();
        assert_eq!(password.expose_secret(), "restore-secret");
        assert!(!format!("{c:?}").contains("restore-secret"));
        assert_eq!(
            key_of(with("\n").unwrap_err()),
            "database.restore_password_file"
        );
        assert!(
            load(MINIMAL, &[])
                .unwrap()
                .database
                .restore_password
                .is_none()
        );
    }
}
