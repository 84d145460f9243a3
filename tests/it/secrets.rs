//! Secrets stay secret: a full refresh (database, media, Redis with a password, email) with
//! distinctive secret values, and a run that fails on a wrong database password, never show
//! them in logs (plain and JSON lines), the run report, `status`, `check`, the state file,
//! the metrics, the email or the webhook messages. `check` warns about a config file others
//! can read.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::constants::{ADMIN_PASSWORD, OWNER, RESTORE_PASSWORD, S3_ACCESS_KEY, S3_SECRET_KEY};
use common::env::{Env, with_media};
use common::sink::{Answer, Sink};
use common::staging::prod_dump;
use common::{Redis, postgres, smtp, unique};

const DB_PASSWORD: &str = "db-pw-7f3a91";
const REDIS_PASSWORD: &str = "redis-pw-2c8e44";
const SNAPSHOT_KEY_ID: &str = "snap-key-id-5d1b";
const SNAPSHOT_SECRET: &str = "snap-secret-9e0c77";
const MEDIA_SECRET: &str = "media-secret-4a6f02";
/// In the webhook's URL path, as Slack's and Teams' tokens are.
const WEBHOOK_TOKEN: &str = "hook-token-8b2d13";
const SECRETS: [&str; 8] = [
    WEBHOOK_TOKEN,
    DB_PASSWORD,
    RESTORE_PASSWORD,
    REDIS_PASSWORD,
    ADMIN_PASSWORD,
    SNAPSHOT_KEY_ID,
    SNAPSHOT_SECRET,
    MEDIA_SECRET,
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
    }
}

/// A role that must give its password (scram), as a production-like setup would.
fn password_role() -> String {
    let pg = postgres();
    common::staging::refresh_role_url(pg);
    let role = unique("refresh_pw");
    for sql in [
        format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'"),
        format!("GRANT {OWNER} TO {role}"),
        format!("GRANT pg_signal_backend TO {role}"),
        format!("GRANT CREATE ON SCHEMA public TO {role}"),
        // The marker table is the refresh role's (README "Guards and the database role").
        format!("GRANT SELECT, INSERT, UPDATE ON public.staging_refresh_target TO {role}"),
    ] {
        pg.query("postgres", &sql);
    }
    require_password(&role);
    role
}

/// Makes `role` give its password (scram) to log in over TCP. The rule names this test's
/// role alone: every other test on the shared server keeps logging in without one.
fn require_password(role: &str) {
    let pg = postgres();
    let hba = pg.dir.join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all \"{role}\" 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    pg.query("postgres", "SELECT pg_reload_conf()");
}

#[tokio::test]
async fn secrets_appear_in_no_log_report_state_metric_or_email() {
    let role = password_role();
    let url = format!(
        "postgres://{role}:{DB_PASSWORD}@127.0.0.1:{}/postgres",
        postgres().port
    );
    let mut env = Env::on(postgres(), url.clone()).await;
    // The restore logs in as the restore role, with its password.
    require_password(&format!("{}_restore", env.db));
    env.upload(common::fixtures::zstd(prod_dump()), None).await;
    let (_, staging) = with_media(&mut env, None).await;
    let redis = Redis::start_with(&["--requirepass", REDIS_PASSWORD]);
    let recipient = format!("{}@staging.example.com", unique("admin"));
    let sink = Sink::start(Answer::Ok).await;
    // One webhook that is answered, one on a closed port: its error is logged too.
    env.sections.push_str(&format!(
        "\n[redis]\nurl = \"redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0\"\n\
         \n[notify]\nsmtp_url = \"{}\"\nfrom = \"refresh@staging.example.com\"\nto = [\"{recipient}\"]\n\
         \n[[notify.webhook]]\nkind = \"json\"\nurl = \"{}/services/{WEBHOOK_TOKEN}\"\n\
         \n[[notify.webhook]]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{}/services/{WEBHOOK_TOKEN}\"\ntimeout = \"1s\"\n",
        redis.port,
        smtp().url(),
        sink.url,
        common::services::free_port(),
    ));
    // Distinctive credentials (moto takes any): the snapshot bucket's and the media target's.
    // The restore role's password is given inline, so that the config holds every secret.
    assert!(env.restore_password_file.take().is_some());
    let config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace(
            "[database]\n",
            &format!("[database]\nrestore_password = \"{RESTORE_PASSWORD}\"\n"),
        )
        .replacen(S3_ACCESS_KEY, SNAPSHOT_KEY_ID, 1)
        .replacen(S3_SECRET_KEY, SNAPSHOT_SECRET, 1)
        .replace(
            &format!(
                "bucket = \"{staging}\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\""
            ),
            &format!(
                "bucket = \"{staging}\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{MEDIA_SECRET}\""
            ),
        );
    for secret in SECRETS {
        assert!(config.contains(secret), "{secret} is not in the config");
    }
    let config = common::write_config(&config);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();

    let init = common::run(&config, &["init-target"]).await;
    assert_eq!(init.code, 0, "{init:?}");
    let check = common::run(&config, &["check"]).await;
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check.stdout.contains("config file mode")
            && !check.stdout.contains("readable by every user"),
        "{check:?}"
    );
    let run = common::run(&config, &["--verbose", "--json", "run"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["redis_flushed"], true);
    let json_logs = common::run(
        &config,
        &["--verbose", "--log-format", "json", "run", "--skip-db"],
    )
    .await;
    assert_eq!(json_logs.code, 0, "{json_logs:?}");
    let status = common::run(&config, &["--json", "status"]).await;

    let loaded = staging_refresh::config::Config::load(&config).unwrap();
    let state = std::fs::read_to_string(loaded.daemon.state_dir.join("state.json")).unwrap();
    let metrics = staging_refresh::metrics::Metrics::new();
    staging_refresh::metrics::Sources::of(&loaded).update(&metrics);
    let mail = smtp().messages_to(&recipient);
    assert_eq!(mail.len(), 2, "{mail:?}");
    // The URL's path carries the token; what was posted must not.
    let posted = sink.at(&format!("/services/{WEBHOOK_TOKEN}"));
    assert_eq!(posted.len(), 2, "{posted:?}");

    for (what, text) in [
        ("check", format!("{check:?}")),
        ("the run's logs and report", format!("{run:?}")),
        ("JSON logs", format!("{json_logs:?}")),
        ("status", format!("{status:?}")),
        ("the state file", state),
        ("the metrics", metrics.text()),
        ("the email", mail.join("\n")),
        ("the webhook messages", format!("{posted:?}")),
    ] {
        assert_no_secret(what, &text);
    }

    // A wrong database password: the error names the server, not the password.
    let wrong = std::fs::read_to_string(&config)
        .unwrap()
        .replace(DB_PASSWORD, "wrong-db-password");
    let out = common::run(&common::write_config(&wrong), &["run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("password authentication failed")
            && !out.stderr.contains("wrong-db-password"),
        "{out:?}"
    );
}

#[tokio::test]
async fn check_warns_about_a_config_file_others_can_read() {
    let env = Env::new(prod_dump()).await;
    let config = env.config();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = common::run(&config, &["check"]).await;
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("config file mode"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        line.contains(&config.display().to_string())
            && line.contains("0644")
            && line.contains("readable by every user"),
        "{line}"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = common::run(&config, &["check"]).await;
    assert!(!out.stdout.contains("readable by every user"), "{out:?}");
}
