//! Checks serde cannot make, one function per section, run once at load. Every problem is
//! recorded, naming the key at fault; one does not hide the next.

use crate::config::ExposeSecret;
use std::str::FromStr;

use super::Config;
use super::load::Errors;
use super::masking::AccountsConfig;
use super::schema::{
    AnonymizeConfig, BackendConfig, BucketConfig, DatabaseConfig, MediaConfig, NotifyConfig,
    RedisConfig, RestoreConfig, ScheduleConfig, SnapshotConfig,
};
use super::units::{GIB, MIB};

/// Suffixes the refresh appends to `database.name`; PostgreSQL names stop at 63 bytes.
const LONGEST_DB_SUFFIX: usize = "__previous".len();
/// S3's limits on one part of a multipart upload (and on one CopyObject).
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * GIB;

/// Records every problem of `c` in `e`.
pub(super) fn config(c: &Config, e: &mut Errors) {
    snapshot(&c.snapshot, e);
    database(&c.database, e);
    anonymize(&c.anonymize, e);
    restore(&c.restore, e);
    media(&c.media, e);
    redis(&c.redis, e);
    backend(&c.backend, e);
    schedule(&c.schedule, e);
    if let Some(n) = &c.notify {
        notify(n, e);
    }
}

fn snapshot(s: &SnapshotConfig, e: &mut Errors) {
    bucket("snapshot", s.bucket_config(), e);
    if let Err(err) = globset::Glob::new(&s.pattern) {
        e.push("snapshot.pattern", format!("invalid glob: {err}"));
    }
    if s.max_age.is_zero() {
        e.push("snapshot.max_age", "must be greater than zero");
    }
    if let Some(decrypt) = &s.decrypt
        && decrypt.passphrase.is_none()
        && decrypt.key_file.is_none()
    {
        e.push(
            "snapshot.decrypt",
            "set passphrase, passphrase_file or key_file",
        );
    }
    if let Some(source) = &s.database {
        identifier("snapshot.database", source, 0, e);
    }
}

fn database(d: &DatabaseConfig, e: &mut Errors) {
    if tokio_postgres::Config::from_str(d.url.expose_secret()).is_err() {
        e.push(
            "database.url",
            "not a PostgreSQL connection URL (postgres://user@host:port/postgres)",
        );
    }
    identifier("database.name", &d.name, LONGEST_DB_SUFFIX, e);
    if let Some(owner) = &d.owner {
        identifier("database.owner", owner, 0, e);
    }
    if let Some(template) = &d.template {
        identifier("database.template", template, 0, e);
    }
    if d.restore_password
        .as_ref()
        .is_some_and(|p| p.expose_secret().is_empty())
    {
        e.push(
            "database.restore_password_file",
            "the restore role's password is empty",
        );
    }
}

fn restore(r: &RestoreConfig, e: &mut Errors) {
    if let Some(jobs) = r.jobs
        && !(1..=64).contains(&jobs)
    {
        e.push("restore.jobs", "must be between 1 and 64");
    }
}

fn anonymize(a: &AnonymizeConfig, e: &mut Errors) {
    for (key, email) in [
        ("anonymize.admin_email", Some(&a.admin_email)),
        ("anonymize.prod_admin_email", a.prod_admin_email.as_ref()),
    ] {
        if let Some(email) = email
            && !looks_like_email(email)
        {
            e.push(key, format!("{email:?} is not an email address"));
        }
    }
    accounts(&a.accounts, e);
    let password = a.admin_password.expose_secret();
    if password.chars().count() < 8 {
        e.push("anonymize.admin_password", "must be at least 8 characters");
    } else if password.len() > 72 {
        e.push(
            "anonymize.admin_password",
            "bcrypt uses at most 72 bytes; choose a shorter password",
        );
    }
    let domain = &a.email_domain;
    if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
        e.push(
            "anonymize.email_domain",
            format!("{domain:?} is not a domain name"),
        );
    } else if a.admin_email.ends_with(&format!("@{domain}")) {
        e.push(
            "anonymize.admin_email",
            "must not be in anonymize.email_domain (verification tells the admin apart by it)",
        );
    }
    if let Some(path) = &a.mask_key_file
        && let Err(err) = std::fs::metadata(path)
    {
        e.push(
            "anonymize.mask_key_file",
            format!("{}: {err}", path.display()),
        );
    }
    if a.extra_sql_search_path.is_empty()
        || a.extra_sql_search_path
            .iter()
            .any(|s| s.is_empty() || s.contains('\0'))
    {
        e.push(
            "anonymize.extra_sql_search_path",
            "name at least one schema, each a non-empty name",
        );
    }
    for (i, path) in a.extra_sql.iter().enumerate() {
        if let Err(err) = std::fs::metadata(path) {
            e.push(
                format!("anonymize.extra_sql[{i}]"),
                format!("{}: {err}", path.display()),
            );
        }
    }
}

/// Every configured column named, each once.
fn accounts(a: &AccountsConfig, e: &mut Errors) {
    let columns = a.columns();
    for (i, (key, column)) in columns.iter().enumerate() {
        let key = format!("anonymize.accounts.{key}");
        if column.is_empty() {
            e.push(key, "is empty");
        } else if let Some((other, _)) = columns[..i].iter().find(|(_, c)| c == column) {
            e.push(
                key,
                format!("{column:?} is anonymize.accounts.{other} already"),
            );
        }
    }
}

/// Checked only when the mirror runs: a disabled `[media]` may be half-written.
fn media(m: &MediaConfig, e: &mut Errors) {
    if !m.enabled {
        return;
    }
    for (key, b) in [("media.source", &m.source), ("media.target", &m.target)] {
        match b {
            Some(b) => bucket(key, b, e),
            None => e.push(
                key,
                "missing; set it, or media.enabled = false to skip the media mirror",
            ),
        }
    }
    if m.concurrency == 0 || m.concurrency > 1024 {
        e.push("media.concurrency", "must be between 1 and 1024");
    }
    for (key, size) in [
        ("media.multipart_threshold", m.multipart_threshold),
        ("media.part_size", m.part_size),
    ] {
        if !(MIN_PART..=MAX_PART).contains(&size) {
            e.push(
                key,
                format!("{size} bytes is outside S3's limits for one part or copy: 5MiB to 5GiB"),
            );
        }
    }
}

fn redis(r: &RedisConfig, e: &mut Errors) {
    if let Some(url) = &r.url
        && redis_url_scheme(url.expose_secret()).is_none()
    {
        e.push(
            "redis.url",
            "expected redis://host:port[/db] or rediss://...",
        );
    }
}

fn redis_url_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    (["redis", "rediss", "unix", "redis+unix"].contains(&scheme) && !rest.is_empty())
        .then_some(scheme)
}

fn backend(b: &BackendConfig, e: &mut Errors) {
    if let Some(url) = &b.health_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        e.push("backend.health_url", "expected an http:// or https:// URL");
    }
}

fn schedule(s: &ScheduleConfig, e: &mut Errors) {
    if let Err(err) = s.parsed_cron() {
        e.push(
            "schedule.cron",
            format!("invalid 6-field cron expression {:?}: {err}", s.cron),
        );
    }
}

/// Email (`smtp_url`, `from`, `to`, all three), webhooks, or both; at least one.
fn notify(n: &NotifyConfig, e: &mut Errors) {
    let email_keys = [
        ("notify.smtp_url", n.smtp_url.is_some()),
        ("notify.from", n.from.is_some()),
        ("notify.to", n.to.is_some()),
    ];
    let email_keys_set = email_keys.iter().filter(|(_, set)| *set).count();
    if email_keys_set == 0 && n.webhook.is_empty() {
        e.push(
            "notify",
            "tells no one: set smtp_url, from and to (email), or add a [[notify.webhook]] (chat)",
        );
    }
    if email_keys_set > 0 {
        for (key, set) in email_keys {
            if !set {
                e.push(key, "missing: email needs smtp_url, from and to together");
            }
        }
    }
    if let Some(url) = &n.smtp_url {
        let scheme = url.expose_secret().split("://").next().unwrap_or("");
        if !["smtp", "smtps"].contains(&scheme) {
            e.push(
                "notify.smtp_url",
                "expected smtp://host:port or smtps://host:port",
            );
        }
    }
    if let Some(from) = &n.from
        && !looks_like_email(from)
    {
        e.push("notify.from", format!("{from:?} is not an email address"));
    }
    match &n.to {
        Some(to) if to.is_empty() => e.push("notify.to", "needs at least one address"),
        Some(to) => {
            for (i, to) in to.iter().enumerate() {
                if !looks_like_email(to) {
                    e.push(
                        format!("notify.to[{i}]"),
                        format!("{to:?} is not an email address"),
                    );
                }
            }
        }
        None => {}
    }
    for (i, w) in n.webhook.iter().enumerate() {
        let scheme = w.url.expose_secret().split("://").next().unwrap_or("");
        if !["http", "https"].contains(&scheme)
            || w.url.expose_secret().parse::<hyper::Uri>().is_err()
        {
            // The URL is a secret: the message does not quote it.
            e.push(
                format!("notify.webhook[{i}].url"),
                "expected an http:// or https:// URL",
            );
        }
        if w.on.is_empty() {
            e.push(
                format!("notify.webhook[{i}].on"),
                "needs at least one of \"failed\", \"warning\", \"ok\" (leave it out for all)",
            );
        }
    }
}

/// `[snapshot]`, `[media.source]` and `[media.target]`; `key` is the table's.
fn bucket(key: &str, b: &BucketConfig, e: &mut Errors) {
    if b.bucket.trim().is_empty() {
        e.push(format!("{key}.bucket"), "missing bucket name");
    }
    match &b.endpoint {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => e.push(
            format!("{key}.endpoint"),
            format!("{url:?} is not an http(s) URL"),
        ),
        None if b.region == "auto" => e.push(
            format!("{key}.endpoint"),
            "required when region is \"auto\" (R2 and other S3-compatible stores)",
        ),
        _ => {}
    }
    if b.access_key_id.is_some() != b.secret_access_key.is_some() {
        e.push(
            format!("{key}.secret_access_key"),
            "access_key_id and secret_access_key go together",
        );
    }
}

fn identifier(key: &str, name: &str, room_for_suffix: usize, e: &mut Errors) {
    let ok = !name.is_empty()
        && name.len() + room_for_suffix <= 63
        && !name.contains('\0')
        && name.trim() == name;
    if !ok {
        e.push(
            key,
            format!(
                "{name:?} is not a usable PostgreSQL name (1 to {} bytes, no surrounding spaces)",
                63 - room_for_suffix
            ),
        );
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
    use crate::config::tests::{MINIMAL, key_of, keys_of, load};

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

    #[test]
    fn every_error_is_named_at_once_each_key_once() {
        // A missing key, a bad duration, a bad value, an unknown key, a bad cron and a
        // section missing altogether.
        let text = MINIMAL
            .replace("bucket = \"snaps\"", "max_age = \"26 hours please\"")
            .replace(
                "admin_email = \"admin@example.com\"",
                "admin_email = \"nobody\"",
            )
            .replace(
                "[database]\nurl = \"postgres://refresh@127.0.0.1/postgres\"\n",
                "",
            )
            + "[redis]\nurll = \"redis://x\"\n[schedule]\ncron = \"0 3 * *\"\n";
        let err = load(&text, &[]).unwrap_err();
        let message = err.to_string();
        let mut keys = keys_of(err);
        keys.sort();
        assert_eq!(
            keys,
            [
                "anonymize.admin_email",
                "database",
                "redis.urll",
                "schedule.cron",
                "snapshot.bucket",
                "snapshot.max_age",
            ],
            "{message}"
        );
        assert_eq!(message.matches("snapshot.max_age").count(), 1, "{message}");
        assert!(message.starts_with("6 config errors: "), "{message}");
    }

    #[test]
    fn a_missing_key_in_a_list_item_is_named_by_its_place() {
        let text = format!(
            "{MINIMAL}[notify]\n[[notify.webhook]]\nurl = \"https://chat.example.com/h\"\n"
        );
        let err = load(&text, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `notify.webhook[0].kind`: missing"
        );
    }

    #[test]
    fn notify_takes_email_webhooks_or_both() {
        let hook = "[[notify.webhook]]\nkind = \"json\"\nurl = \"https://chat.example.com/h\"\n";
        let email = "smtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"r@example.com\"\nto = [\"a@example.com\"]\n";
        let chat_only = load(&format!("{MINIMAL}[notify]\n{hook}"), &[]).unwrap();
        let notify = chat_only.notify.unwrap();
        assert!(notify.email().is_none());
        assert_eq!(notify.webhook.len(), 1);
        let email_only = load(&format!("{MINIMAL}[notify]\n{email}"), &[]).unwrap();
        let notify = email_only.notify.unwrap();
        assert_eq!(notify.email().unwrap().to, ["a@example.com"]);
        assert!(notify.webhook.is_empty());
        let both = load(&format!("{MINIMAL}[notify]\n{email}{hook}"), &[]).unwrap();
        assert!(both.notify.unwrap().email().is_some());

        let half = load(
            &format!("{MINIMAL}[notify]\nfrom = \"r@example.com\"\n{hook}"),
            &[],
        )
        .unwrap_err();
        assert_eq!(keys_of(half), ["notify.smtp_url", "notify.to"]);
        let nothing = load(&format!("{MINIMAL}[notify]\n"), &[]).unwrap_err();
        assert_eq!(key_of(nothing), "notify");
    }
}
