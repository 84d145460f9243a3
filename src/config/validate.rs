//! Checks serde cannot make, one function per section, run once at load. Every error names
//! the key at fault.

use crate::config::ExposeSecret;
use std::str::FromStr;

use super::masking::AccountsConfig;
use super::schema::{
    AnonymizeConfig, BackendConfig, BucketConfig, DatabaseConfig, MediaConfig, NotifyConfig,
    RedisConfig, RestoreConfig, ScheduleConfig, SnapshotConfig,
};
use super::units::{GIB, MIB};
use super::{Config, ConfigError, key_error};

/// Suffixes the refresh appends to `database.name`; PostgreSQL names stop at 63 bytes.
const LONGEST_DB_SUFFIX: usize = "__previous".len();
/// S3's limits on one part of a multipart upload (and on one CopyObject).
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * GIB;

pub(super) fn config(c: &Config) -> Result<(), ConfigError> {
    snapshot(&c.snapshot)?;
    database(&c.database)?;
    anonymize(&c.anonymize)?;
    restore(&c.restore)?;
    media(&c.media)?;
    redis(&c.redis)?;
    backend(&c.backend)?;
    schedule(&c.schedule)?;
    if let Some(n) = &c.notify {
        notify(n)?;
    }
    Ok(())
}

fn snapshot(s: &SnapshotConfig) -> Result<(), ConfigError> {
    bucket("snapshot", s.bucket_config())?;
    globset::Glob::new(&s.pattern)
        .map_err(|e| key_error("snapshot.pattern", format!("invalid glob: {e}")))?;
    if s.max_age.is_zero() {
        return Err(key_error("snapshot.max_age", "must be greater than zero"));
    }
    if let Some(decrypt) = &s.decrypt
        && decrypt.passphrase.is_none()
        && decrypt.key_file.is_none()
    {
        return Err(key_error(
            "snapshot.decrypt",
            "set passphrase, passphrase_file or key_file",
        ));
    }
    if let Some(source) = &s.database {
        identifier("snapshot.database", source, 0)?;
    }
    Ok(())
}

fn database(d: &DatabaseConfig) -> Result<(), ConfigError> {
    tokio_postgres::Config::from_str(d.url.expose_secret()).map_err(|_| {
        key_error(
            "database.url",
            "not a PostgreSQL connection URL (postgres://user@host:port/postgres)",
        )
    })?;
    identifier("database.name", &d.name, LONGEST_DB_SUFFIX)?;
    if let Some(owner) = &d.owner {
        identifier("database.owner", owner, 0)?;
    }
    if let Some(template) = &d.template {
        identifier("database.template", template, 0)?;
    }
    if d.restore_password
        .as_ref()
        .is_some_and(|p| p.expose_secret().is_empty())
    {
        return Err(key_error(
            "database.restore_password_file",
            "the restore role's password is empty",
        ));
    }
    Ok(())
}

fn restore(r: &RestoreConfig) -> Result<(), ConfigError> {
    if let Some(jobs) = r.jobs
        && !(1..=64).contains(&jobs)
    {
        return Err(key_error("restore.jobs", "must be between 1 and 64"));
    }
    Ok(())
}

fn anonymize(a: &AnonymizeConfig) -> Result<(), ConfigError> {
    for (key, email) in [
        ("anonymize.admin_email", Some(&a.admin_email)),
        ("anonymize.prod_admin_email", a.prod_admin_email.as_ref()),
    ] {
        if let Some(email) = email
            && !looks_like_email(email)
        {
            return Err(key_error(key, format!("{email:?} is not an email address")));
        }
    }
    accounts(&a.accounts)?;
    if a.admin_password.expose_secret().chars().count() < 8 {
        return Err(key_error(
            "anonymize.admin_password",
            "must be at least 8 characters",
        ));
    }
    if a.admin_password.expose_secret().len() > 72 {
        return Err(key_error(
            "anonymize.admin_password",
            "bcrypt uses at most 72 bytes; choose a shorter password",
        ));
    }
    let domain = &a.email_domain;
    if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
        return Err(key_error(
            "anonymize.email_domain",
            format!("{domain:?} is not a domain name"),
        ));
    }
    if a.admin_email.ends_with(&format!("@{domain}")) {
        return Err(key_error(
            "anonymize.admin_email",
            "must not be in anonymize.email_domain (verification tells the admin apart by it)",
        ));
    }
    if let Some(path) = &a.mask_key_file {
        std::fs::metadata(path).map_err(|e| {
            key_error(
                "anonymize.mask_key_file",
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    if a.extra_sql_search_path.is_empty()
        || a.extra_sql_search_path
            .iter()
            .any(|s| s.is_empty() || s.contains('\0'))
    {
        return Err(key_error(
            "anonymize.extra_sql_search_path",
            "name at least one schema, each a non-empty name",
        ));
    }
    for (i, path) in a.extra_sql.iter().enumerate() {
        std::fs::metadata(path).map_err(|e| {
            key_error(
                format!("anonymize.extra_sql[{i}]"),
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

/// Every configured column named, each once.
fn accounts(a: &AccountsConfig) -> Result<(), ConfigError> {
    let columns = a.columns();
    for (i, (key, column)) in columns.iter().enumerate() {
        let key = format!("anonymize.accounts.{key}");
        if column.is_empty() {
            return Err(key_error(key, "is empty"));
        }
        if let Some((other, _)) = columns[..i].iter().find(|(_, c)| c == column) {
            return Err(key_error(
                key,
                format!("{column:?} is anonymize.accounts.{other} already"),
            ));
        }
    }
    Ok(())
}

/// Checked only when the mirror runs: a disabled `[media]` may be half-written.
fn media(m: &MediaConfig) -> Result<(), ConfigError> {
    if !m.enabled {
        return Ok(());
    }
    for (key, b) in [("media.source", &m.source), ("media.target", &m.target)] {
        match b {
            Some(b) => bucket(key, b)?,
            None => {
                return Err(key_error(
                    key,
                    "missing; set it, or media.enabled = false to skip the media mirror",
                ));
            }
        }
    }
    if m.concurrency == 0 || m.concurrency > 1024 {
        return Err(key_error("media.concurrency", "must be between 1 and 1024"));
    }
    for (key, size) in [
        ("media.multipart_threshold", m.multipart_threshold),
        ("media.part_size", m.part_size),
    ] {
        if !(MIN_PART..=MAX_PART).contains(&size) {
            return Err(key_error(
                key,
                format!("{size} bytes is outside S3's limits for one part or copy: 5MiB to 5GiB"),
            ));
        }
    }
    Ok(())
}

fn redis(r: &RedisConfig) -> Result<(), ConfigError> {
    if let Some(url) = &r.url {
        redis_url_scheme(url.expose_secret()).ok_or_else(|| {
            key_error(
                "redis.url",
                "expected redis://host:port[/db] or rediss://...",
            )
        })?;
    }
    Ok(())
}

fn redis_url_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    (["redis", "rediss", "unix", "redis+unix"].contains(&scheme) && !rest.is_empty())
        .then_some(scheme)
}

fn backend(b: &BackendConfig) -> Result<(), ConfigError> {
    if let Some(url) = &b.health_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(key_error(
            "backend.health_url",
            "expected an http:// or https:// URL",
        ));
    }
    Ok(())
}

fn schedule(s: &ScheduleConfig) -> Result<(), ConfigError> {
    s.parsed_cron().map_err(|e| {
        key_error(
            "schedule.cron",
            format!("invalid 6-field cron expression {:?}: {e}", s.cron),
        )
    })?;
    Ok(())
}

fn notify(n: &NotifyConfig) -> Result<(), ConfigError> {
    let scheme = n.smtp_url.expose_secret().split("://").next().unwrap_or("");
    if !["smtp", "smtps"].contains(&scheme) {
        return Err(key_error(
            "notify.smtp_url",
            "expected smtp://host:port or smtps://host:port",
        ));
    }
    if !looks_like_email(&n.from) {
        return Err(key_error(
            "notify.from",
            format!("{:?} is not an email address", n.from),
        ));
    }
    if n.to.is_empty() {
        return Err(key_error("notify.to", "needs at least one address"));
    }
    for (i, w) in n.webhook.iter().enumerate() {
        let scheme = w.url.expose_secret().split("://").next().unwrap_or("");
        if !["http", "https"].contains(&scheme)
            || w.url.expose_secret().parse::<hyper::Uri>().is_err()
        {
            // The URL is a secret: the message does not quote it.
            return Err(key_error(
                format!("notify.webhook[{i}].url"),
                "expected an http:// or https:// URL",
            ));
        }
        if w.on.is_empty() {
            return Err(key_error(
                format!("notify.webhook[{i}].on"),
                "needs at least one of \"failed\", \"warning\", \"ok\" (leave it out for all)",
            ));
        }
    }
    for (i, to) in n.to.iter().enumerate() {
        if !looks_like_email(to) {
            return Err(key_error(
                format!("notify.to[{i}]"),
                format!("{to:?} is not an email address"),
            ));
        }
    }
    Ok(())
}

/// `[snapshot]`, `[media.source]` and `[media.target]`; `key` is the table's.
fn bucket(key: &str, b: &BucketConfig) -> Result<(), ConfigError> {
    if b.bucket.trim().is_empty() {
        return Err(key_error(format!("{key}.bucket"), "missing bucket name"));
    }
    match &b.endpoint {
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            return Err(key_error(
                format!("{key}.endpoint"),
                format!("{e:?} is not an http(s) URL"),
            ));
        }
        None if b.region == "auto" => {
            return Err(key_error(
                format!("{key}.endpoint"),
                "required when region is \"auto\" (R2 and other S3-compatible stores)",
            ));
        }
        _ => {}
    }
    if b.access_key_id.is_some() != b.secret_access_key.is_some() {
        return Err(key_error(
            format!("{key}.secret_access_key"),
            "access_key_id and secret_access_key go together",
        ));
    }
    Ok(())
}

fn identifier(key: &str, name: &str, room_for_suffix: usize) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, key_of, load};

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
            ("[snapshot.decrypt]\n", "snapshot.decrypt"),
            ("superuser = \"email\"\n", "anonymize.accounts.superuser"),
            ("name = \"\"\n", "anonymize.accounts.name"),
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
        let err = load(
            &MINIMAL.replace("[anonymize]", "[anonymize]\nextra_sql_search_path = []"),
            &[],
        )
        .unwrap_err();
        assert_eq!(key_of(err), "anonymize.extra_sql_search_path");
        let err = load(
            &MINIMAL.replace("[anonymize]", "[anonymize]\nprod_admin_email = \"boss\""),
            &[],
        )
        .unwrap_err();
        assert_eq!(key_of(err), "anonymize.prod_admin_email");
        let err = load(
            &MINIMAL.replace("table = \"public.users\"", "table = \"a.b.c\""),
            &[],
        )
        .unwrap_err();
        assert_eq!(key_of(err), "anonymize.accounts.table");
    }

    #[test]
    fn a_config_without_the_accounts_section_says_what_to_add() {
        let (without, _) = MINIMAL.split_once("[anonymize.accounts]").unwrap();
        let err = load(without, &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("[anonymize.accounts] table = ") && text.contains("README"),
            "{text}"
        );
        assert_eq!(key_of(err), "anonymize.accounts");
    }

    #[test]
    fn part_sizes_outside_s3_limits_name_their_key() {
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
    }
}
