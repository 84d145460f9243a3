//! `run`, `plan`, `init-target`, `rollback`, `status` and `check` against real PostgreSQL
//! (a production server and a staging one), S3 (moto) and Redis.

use crate::common;

use std::time::{Duration, Instant};

use std::str::FromStr;

use chrono::Utc;

use common::constants::{
    ADMIN_EMAIL, ADMIN_PASSWORD, OWNER, PROD_ADMIN_EMAIL, PROD_DB, PROD_USERS, SENTINEL,
};
use common::env::{Env, bucket_contents, health_server, inject, with_media};
use common::fixtures::{md5_hex, zstd};
use common::staging::prod_dump;
use common::{Redis, postgres, prod_postgres, s3, test_dir, unique};
use staging_refresh::lock::RunLock;

const TABLES: &[&str] = &[
    "\"user\"",
    "organization",
    "product",
    "shooting",
    "generation",
    "external_system_integration",
];

fn prod_count(table: &str) -> String {
    prod_postgres().query(PROD_DB, &format!("SELECT count(*) FROM {table}"))
}

#[tokio::test]
async fn a_refresh_replaces_staging_with_anonymized_production_and_rollback_brings_it_back() {
    let mut env = Env::new(prod_dump()).await;
    let redis = Redis::start();
    redis.cli(&["SET", "celery-task", "stale"]);
    redis.cli(&["SET", "session:1", "old"]);
    env.sections.push_str(&format!(
        "health_url = \"{}\"\n\n[redis]\nurl = \"{}\"\n",
        health_server().await,
        redis.url()
    ));

    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["snapshot"]["name"], env.snapshot);
    assert_eq!(report["snapshot"]["checksum_verified"], true);
    assert_eq!(report["previous_kept"], true);
    assert_eq!(report["redis_flushed"], true);
    assert!(report["maintenance_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["pii_findings"], serde_json::json!([]));
    let checks = report["verification"].as_array().unwrap();
    assert_eq!(checks.len(), 7);
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    let filtered = report["statements_filtered"].as_object().unwrap();
    assert!(
        filtered.keys().any(|k| k.contains("OWNER TO"))
            && filtered.keys().any(|k| k.contains("GRANT")),
        "{filtered:?}"
    );

    // Every table holds what production holds, and the report counted it.
    for table in TABLES {
        assert_eq!(
            env.query(&format!("SELECT count(*) FROM {table}")),
            prod_count(table),
            "{table}"
        );
        let reported = &report["rows_restored"][format!("public.{table}")];
        assert_eq!(reported.to_string(), prod_count(table), "{table}");
    }
    // The admin keeps its id, gets the staging email and a hash of the configured password.
    let admin_id = prod_postgres().query(
        PROD_DB,
        &format!("SELECT id FROM \"user\" WHERE email = '{PROD_ADMIN_EMAIL}'"),
    );
    let admin = env.query(&format!(
        "SELECT email, full_name, is_superuser, is_active, hashed_password FROM \"user\" WHERE id = '{admin_id}'"
    ));
    let fields: Vec<&str> = admin.split('|').collect();
    assert_eq!(fields[..4], [ADMIN_EMAIL, "Staging Admin", "t", "t"]);
    assert!(bcrypt::verify(ADMIN_PASSWORD, fields[4]).unwrap());
    // Every other user is anonymized, demoted, and holds a unique unusable hash.
    let others = env.query(&format!(
        "SELECT count(*), count(*) FILTER (WHERE email ~ '^anon_[0-9a-f]{{16}}@staging\\.invalid$'
                 AND full_name = 'Anonymized User' AND NOT is_superuser
                 AND hashed_password ~ '^\\$2b\\$12\\$[./A-Za-z0-9]{{53}}$'),
                count(DISTINCT hashed_password), count(DISTINCT email)
         FROM \"user\" WHERE id <> '{admin_id}'"
    ));
    let n = PROD_USERS - 1;
    assert_eq!(others, format!("{n}|{n}|{n}|{n}"));
    for hash in env
        .query(&format!(
            "SELECT hashed_password FROM \"user\" WHERE id <> '{admin_id}' LIMIT 3"
        ))
        .lines()
    {
        assert!(!bcrypt::verify(ADMIN_PASSWORD, hash).unwrap(), "{hash}");
        assert!(!bcrypt::verify("", hash).unwrap(), "{hash}");
    }
    assert_eq!(
        env.query("SELECT count(*) FROM external_system_integration
                   WHERE push_products OR push_service_base_url IS NOT NULL OR push_service_api_key IS NOT NULL"),
        "0"
    );
    // Schema objects came along, owned by the staging owner; the FK graph is intact.
    assert_eq!(
        env.query("SELECT count(*) FROM pg_views WHERE viewname = 'active_user_products'"),
        "1"
    );
    assert_eq!(
        env.query("SELECT count(*) FROM product_counts"),
        prod_postgres().query(PROD_DB, "SELECT count(*) FROM product_counts")
    );
    assert_eq!(
        env.query(
            "SELECT count(*) FROM pg_proc WHERE proname IN ('touch_updated_at', 'fixture_uuid')"
        ),
        "2"
    );
    assert_eq!(env.query("SELECT count(*) FROM pg_trigger WHERE tgname = 'user_touch_updated_at' AND tgenabled = 'O'"), "1");
    let fks = "SELECT count(*) FROM pg_constraint WHERE contype = 'f'";
    assert_eq!(env.query(fks), prod_postgres().query(PROD_DB, fks));
    assert_eq!(
        env.query("SELECT count(*) FROM generation g LEFT JOIN shooting s ON s.id = g.shooting_id WHERE s.id IS NULL"),
        "0"
    );
    assert_eq!(
        env.query(&format!(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) <> '{OWNER}'"
        )),
        "0"
    );
    // Text with tabs, backslashes and "\." lines survived byte for byte.
    let text = "SELECT md5(string_agg(description, '|' ORDER BY id)) FROM product";
    assert_eq!(env.query(text), prod_postgres().query(PROD_DB, text));
    // Redis was flushed, the backend stopped then started, the flag is gone.
    assert_eq!(redis.cli(&["DBSIZE"]), "0");
    assert_eq!(env.backend_log(), "stop\nstart\n");
    assert!(!env.state_dir().join("maintenance.json").exists());
    // The old data is kept as <name>__previous.
    let previous = format!("{}__previous", env.db);
    assert_eq!(
        postgres().query(&previous, "SELECT note FROM sentinel"),
        SENTINEL
    );

    let status = env.run(&["--json", "status"]).await;
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["last"]["outcome"], "ok");
    assert_eq!(status["previous_kept"], true);
    assert!(status["running"].is_null() && status["maintenance_flag"].is_null());

    let rollback = env.run(&["rollback"]).await;
    assert_eq!(rollback.code, 0, "{rollback:?}");
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
    assert_eq!(
        postgres().query(
            &previous,
            "SELECT email FROM \"user\" WHERE full_name = 'Staging Admin'"
        ),
        ADMIN_EMAIL
    );
    assert_eq!(env.backend_log(), "stop\nstart\nstop\nstart\n");
    assert!(!env.state_dir().join("maintenance.json").exists());
}

#[tokio::test]
async fn dumps_with_restrict_and_transaction_timeout_restore_on_postgresql_15() {
    let dump = prod_dump();
    assert!(
        dump.starts_with(b"--") && std::str::from_utf8(dump).unwrap().contains("\n\\restrict "),
        "this pg_dump does not write \\restrict"
    );
    let dump = inject(
        dump,
        "SET statement_timeout = 0;",
        "SET transaction_timeout = 0;",
    );
    let env = Env::new(&dump).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let filtered = &out.json()["statements_filtered"];
    assert_eq!(filtered["\\restrict / \\unrestrict"], 2, "{filtered}");
    assert_eq!(
        filtered["SET transaction_timeout (server older than 17)"], 1,
        "{filtered}"
    );
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\""),
        prod_count("\"user\"")
    );
}

#[tokio::test]
async fn plan_shows_what_would_happen_and_changes_nothing() {
    let env = Env::new(prod_dump()).await;
    let out = env.run(&["--json", "plan"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan = out.json();
    assert_eq!(
        plan["rows"]["public.generation"].to_string(),
        prod_count("generation")
    );
    assert_eq!(plan["users_to_anonymize"], PROD_USERS - 1);
    assert_eq!(plan["target_marked"], false);
    let steps = plan["databases"].to_string();
    assert!(
        steps.contains(&format!("rename {} to {}__previous", env.db, env.db)),
        "{steps}"
    );
    let dry = env.run(&["run", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("would anonymize 199 users"), "{dry:?}");
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
}

#[tokio::test]
async fn check_covers_the_database_marker_role_and_redis() {
    let mut env = Env::new(prod_dump()).await;
    let redis = Redis::start();
    env.sections
        .push_str(&format!("\n[redis]\nurl = \"{}\"\n", redis.url()));
    let before = env.run(&["check"]).await;
    assert_eq!(before.code, 1, "{before:?}");
    assert!(before.stdout.contains("FAIL  target marker"), "{before:?}");
    let role = before
        .stdout
        .lines()
        .find(|l| l.contains("database role"))
        .unwrap();
    assert!(
        role.starts_with("ok") && role.ends_with("not a superuser"),
        "{before:?}"
    );
    assert!(before.stdout.contains("ok    redis"), "{before:?}");
    env.init_target().await;
    let after = env.run(&["check"]).await;
    assert_eq!(after.code, 0, "{after:?}");
}

#[tokio::test]
async fn a_live_database_the_backend_role_cannot_write_in_is_an_unhealthy_cutover() {
    let env = Env::new(prod_dump()).await;
    // database.owner, read-only by default: staging would come up refusing every write. A
    // role of this test's own: the setting reaches no other test on the shared server.
    let owner = unique("readonly_owner");
    postgres().query(
        "postgres",
        &format!(
            "CREATE ROLE {owner} NOLOGIN; GRANT {owner} TO {}; \
             ALTER ROLE {owner} SET default_transaction_read_only = on",
            common::constants::REFRESH_ROLE
        ),
    );
    let config = common::write_config(&std::fs::read_to_string(env.config()).unwrap().replace(
        &format!("owner = \"{OWNER}\""),
        &format!("owner = \"{owner}\""),
    ));
    env.init_target().await;
    let out = common::run(&config, &["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    for said in [
        format!(
            "checking that the backend's role may write in \"{}\"",
            env.db
        ),
        format!("default_transaction_read_only is on for the role (role {owner})"),
        "the new data is in place".to_owned(),
    ] {
        assert!(out.stderr.contains(&said), "{said} in {out:?}");
    }
    assert_eq!(out.json()["snapshot_live"], true);
    assert_eq!(env.backend_log(), "stop\nstart\n");
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\""),
        PROD_USERS.to_string()
    );
    assert!(env.database_exists(&format!("{}__previous", env.db)));
}

// The failure matrix: each leaves staging serving its data, and cleans up after itself.

#[tokio::test]
async fn a_truncated_dump_fails_cleanly() {
    let env = Env::empty().await;
    let body = zstd(prod_dump());
    env.upload(body[..body.len() * 2 / 3].to_vec(), None).await;
    env.assert_failed_cleanly(&env.refresh().await, "decompressing");
}

#[tokio::test]
async fn a_checksum_mismatch_fails_cleanly() {
    let env = Env::empty().await;
    let sidecar = format!("{}  {}\n", md5_hex(b"something else"), env.snapshot);
    env.upload(zstd(prod_dump()), Some(sidecar)).await;
    env.assert_failed_cleanly(&env.refresh().await, "checksum mismatch");
}

#[tokio::test]
async fn an_sql_error_mid_dump_fails_naming_the_line() {
    let dump = inject(
        prod_dump(),
        "\\.",
        "ALTER TABLE no_such_table ADD COLUMN x int;",
    );
    let line = std::str::from_utf8(&dump)
        .unwrap()
        .lines()
        .position(|l| l == "ALTER TABLE no_such_table ADD COLUMN x int;")
        .unwrap()
        + 1;
    let env = Env::new(&dump).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        &format!("dump line {line}: ERROR: relation \"no_such_table\" does not exist"),
    );
}

#[tokio::test]
async fn a_missing_admin_fails_cleanly() {
    let mut env = Env::new(prod_dump()).await;
    env.prod_admin_email = Some("nobody@shootify.io".into());
    env.assert_failed_cleanly(
        &env.refresh().await,
        "no row of public.user has the production admin email \"nobody@shootify.io\" in email",
    );
}

#[tokio::test]
async fn a_verification_failure_fails_cleanly() {
    let mut env = Env::new(prod_dump()).await;
    let extra = env.dir.join("leak.sql");
    std::fs::write(
        &extra,
        "UPDATE \"user\" SET email = 'real.person@example.com'
         WHERE id = (SELECT id FROM \"user\" WHERE full_name = 'Anonymized User' LIMIT 1);",
    )
    .unwrap();
    env.anonymize = format!("extra_sql = [\"{}\"]\n", extra.display());
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        "verification failed: non-admin emails in the reserved domain",
    );
    assert!(
        !out.stdout.contains("real.person"),
        "a value was reported: {out:?}"
    );
    let report = out.json();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["failed_phase"], "anonymize");
}

#[tokio::test]
async fn unmasked_pii_fails_when_configured_to() {
    let dump = inject(
        prod_dump(),
        "\\.",
        "CREATE TABLE public.support_ticket (id integer, contact_email text, body text);\n\
         INSERT INTO public.support_ticket VALUES (1, 'jane@example.org', 'call me at +44 20 7946 0958'),\
         (2, NULL, 'card 4111 1111 1111 1111 please');",
    );
    let mut env = Env::new(&dump).await;
    // Classified (wrongly) as not personal: the scan is what catches it.
    env.anonymize = "on_unmasked_pii = \"fail\"\n\
        [[anonymize.table]]\ntable = \"support_ticket\"\nmode = \"keep\"\n"
        .into();
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "unmasked PII found");
    let found = out.findings();
    for expected in [
        "public.support_ticket.contact_email email column name 1",
        "public.support_ticket.contact_email email values 1",
        "public.support_ticket.body phone values 1",
        "public.support_ticket.body card values 1",
    ] {
        assert!(
            found.contains(&expected.to_owned()),
            "{expected}: {found:?}"
        );
    }
    assert!(
        !out.stdout.contains("jane@"),
        "a value was reported: {out:?}"
    );
}

#[tokio::test]
async fn unreachable_s3_and_postgres_fail_cleanly() {
    let env = Env::new(prod_dump()).await;
    env.init_target().await;
    let dead = format!("http://127.0.0.1:{}", common::services::free_port());
    let config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace(&s3().endpoint(), &dead);
    let out = common::run(&common::write_config(&config), &["run", "--skip-media"]).await;
    assert!(out.stderr.contains("cannot connect"), "{out:?}");
    env.assert_failed_cleanly(&out, &dead);

    let port = common::services::free_port();
    let config = std::fs::read_to_string(env.config()).unwrap().replace(
        &format!(":{}/postgres", postgres().port),
        &format!(":{port}/postgres"),
    );
    let out = common::run(&common::write_config(&config), &["run", "--skip-media"]).await;
    env.assert_failed_cleanly(&out, &format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn sigterm_mid_restore_cancels_cleanly() {
    // A bare SELECT is refused: a materialized view's query runs when it is created.
    let dump = inject(
        prod_dump(),
        "\\.",
        "CREATE MATERIALIZED VIEW public.slow AS SELECT 1 AS x FROM pg_catalog.pg_sleep(60);",
    );
    let env = Env::new(&dump).await;
    env.init_target().await;
    let child = common::spawn(env.command(&["run", "--skip-media"]));
    let scratch = format!("{}__refresh", env.db);
    let deadline = Instant::now() + Duration::from_secs(60);
    while postgres().query(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{scratch}' AND query LIKE '%pg_sleep%'"),
    ) == "0"
    {
        assert!(Instant::now() < deadline, "the restore never reached pg_sleep");
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = std::fs::read_to_string(env.state_dir().join("state.json")).unwrap();
    assert!(state.contains("\"phase\": \"restore\""), "{state}");
    env.assert_cancels_cleanly(child).await;
    let status = env.run(&["--json", "status"]).await.json();
    assert_eq!(status["last"]["outcome"], "cancelled");
}

#[tokio::test]
async fn without_the_marker_a_run_is_refused_with_exit_3() {
    let env = Env::new(prod_dump()).await;
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("not marked as a refresh target") && out.stderr.contains("init-target"),
        "{out:?}"
    );
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
}

#[tokio::test]
async fn a_target_that_is_the_snapshot_source_is_refused_with_exit_3() {
    let mut env = Env::empty().await;
    // A snapshot taken from this very server and database.
    env.snapshot = format!(
        "pgsql_{}_127.0.0.1_{}.sql.zst",
        env.db,
        Utc::now().format("%Y%m%d-%H%M%S")
    );
    env.snapshot_database = env.db.clone();
    env.upload(zstd(prod_dump()), None).await;
    env.init_target().await;
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("snapshot's own server and database"),
        "{out:?}"
    );
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
}

#[tokio::test]
async fn a_second_run_exits_4_naming_the_holder_and_how_to_follow_it() {
    let env = Env::new(prod_dump()).await;
    let lock = RunLock::acquire(&env.state_dir().join("refresh.lock"), "run-held-by-test").unwrap();
    let out = env.refresh().await;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("run-held-by-test")
            && out.stderr.contains(&std::process::id().to_string())
            && out
                .stderr
                .contains("`staging-refresh status` shows what it is doing"),
        "{out:?}"
    );
    drop(lock);
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
}

#[tokio::test]
async fn hostile_dumps_are_refused_naming_the_line() {
    let marker = test_dir("hostile").join("pwned");
    let cases = [
        (
            format!("\\! touch {}", marker.display()),
            "psql meta-command \\!",
        ),
        ("\\connect postgres".to_owned(), "\\connect postgres"),
        (
            "COPY public.\"user\" TO PROGRAM 'id';".to_owned(),
            "only COPY ... FROM stdin",
        ),
        (
            "ALTER SYSTEM SET archive_command = 'sh';".to_owned(),
            "staging server's configuration",
        ),
        (
            "CREATE ROLE backdoor SUPERUSER LOGIN;".to_owned(),
            "never manages roles",
        ),
    ];
    for (i, (line, cause)) in cases.iter().enumerate() {
        let dump = inject(prod_dump(), "SET statement_timeout = 0;", line);
        let at = std::str::from_utf8(&dump)
            .unwrap()
            .lines()
            .position(|l| l == line)
            .unwrap()
            + 1;
        let env = Env::new(&dump).await;
        let out = if i == 0 {
            let out = env.refresh().await;
            env.assert_failed_cleanly(&out, cause);
            out
        } else {
            env.run(&["plan"]).await
        };
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("dump line {at}: refusing to restore"))
                && out.stderr.contains(cause),
            "{line}: {out:?}"
        );
    }
    assert!(!marker.exists(), "the \\! command ran");
    assert_eq!(
        postgres().query(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'backdoor'"
        ),
        "0"
    );
}

#[tokio::test]
async fn password_hash_bcrypt_writes_real_hashes_of_unknown_secrets() {
    let prod = prod_postgres();
    let source = unique("tiny");
    common::fixtures::seed_prod(prod, &source, 6);
    let dump = common::fixtures::dump_sql(prod, &source);
    let mut env = Env::empty().await;
    env.snapshot_database = source.clone();
    env.upload_taken(zstd(&dump), Utc::now() - chrono::Duration::hours(1), true)
        .await;
    env.anonymize = "password_hash = \"bcrypt\"\n".into();
    env.init_target().await;
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let hashes =
        env.query("SELECT hashed_password FROM \"user\" WHERE full_name = 'Anonymized User'");
    let hashes: Vec<&str> = hashes.lines().collect();
    assert_eq!(hashes.len(), 5);
    let distinct: std::collections::HashSet<_> = hashes.iter().collect();
    assert_eq!(distinct.len(), 5);
    for hash in hashes {
        let parts = bcrypt::HashParts::from_str(hash).unwrap();
        assert_eq!(parts.get_cost(), 12);
        assert!(!bcrypt::verify(ADMIN_PASSWORD, hash).unwrap());
    }
}

#[tokio::test]
async fn a_redis_failure_at_cutover_undoes_the_swap() {
    let mut env = Env::new(prod_dump()).await;
    let dead = common::services::free_port();
    env.sections.push_str(&format!(
        "\n[redis]\nurl = \"redis://127.0.0.1:{dead}/0\"\n"
    ));
    let out = env.refresh().await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("redis FLUSHALL")
            && out.stderr.contains("staging keeps its previous data"),
        "{out:?}"
    );
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert!(!env.database_exists(&format!("{}__previous", env.db)));
    assert!(!env.state_dir().join("maintenance.json").exists());
    assert_eq!(env.backend_log(), "stop\nstart\n");
    assert_eq!(out.json()["failed_phase"], "cutover");
}

#[tokio::test]
async fn keep_previous_false_drops_the_replaced_database() {
    let env = Env::new(prod_dump()).await;
    let config = std::fs::read_to_string(env.config()).unwrap().replace(
        &format!("owner = \"{OWNER}\""),
        &format!("owner = \"{OWNER}\"\nkeep_previous = false"),
    );
    let config = common::write_config(&config);
    assert_eq!(common::run(&config, &["init-target"]).await.code, 0);
    let out = common::run(&config, &["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["previous_kept"], false);
    assert!(!env.database_exists(&format!("{}__previous", env.db)));
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\""),
        prod_count("\"user\"")
    );
}

#[tokio::test]
async fn a_full_run_mirrors_media_beside_the_database_and_deletes_after_cutover() {
    let mut env = Env::new(prod_dump()).await;
    let (prod, staging) = with_media(&mut env, None).await;
    let recipient = format!("{}@staging.example.com", unique("admin"));
    env.sections.push_str(&format!(
        "\n[notify]\nsmtp_url = \"{}\"\nfrom = \"refresh@staging.example.com\"\nto = [\"{recipient}\"]\n",
        common::smtp().url()
    ));

    let plan = env.run(&["--json", "plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    assert_eq!(plan["media"]["copy"], 30, "{plan}");
    assert_eq!(plan["media"]["delete"], 1, "{plan}");
    assert_eq!(plan["users_to_anonymize"], PROD_USERS - 1);

    let init = env.init_target().await;
    assert!(init.stdout.contains("as a media target"), "{init:?}");
    let out = env.run(&["--json", "run"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["media"]["copied"], 30, "{report}");
    assert_eq!(report["media"]["deleted"], 1, "{report}");
    assert_eq!(report["media"]["failed"], 0, "{report}");
    // The wait for the copy pass after anonymizing is timed as its own phase.
    let phases: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "prepare",
            "restore",
            "anonymize",
            "media",
            "cutover",
            "cleanup"
        ]
    );
    assert_eq!(
        env.query(&format!(
            "SELECT count(*) FROM \"user\" WHERE email = '{ADMIN_EMAIL}'"
        )),
        "1"
    );

    let mut expected = bucket_contents(&prod).await;
    let mut mirrored = bucket_contents(&staging).await;
    let marker = mirrored
        .iter()
        .position(|(k, _)| k == staging_refresh::media::MARKER_KEY)
        .expect("the marker is kept");
    mirrored.remove(marker);
    expected.sort();
    mirrored.sort();
    assert_eq!(mirrored, expected);

    // The media figures reach the metrics (through the state file) and the email.
    let config = staging_refresh::config::Config::load(&env.config()).unwrap();
    let metrics = staging_refresh::metrics::Metrics::new();
    staging_refresh::metrics::Sources::of(&config).update(&metrics);
    let text = metrics.text();
    for line in [
        "staging_refresh_media_objects_total{action=\"copied\"} 30",
        "staging_refresh_media_objects_total{action=\"deleted\"} 1",
        // "image 0" .. "image 29": 10 bodies of 7 bytes, 20 of 8.
        "staging_refresh_media_copied_bytes_total 230",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    let mail = common::smtp().messages_to(&recipient);
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(
        mail[0].contains("Media") && mail[0].contains("30 objects"),
        "{}",
        mail[0]
    );

    // Nothing left to do: a second run copies and deletes nothing.
    let again = env.run(&["--json", "run", "--skip-db"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let media = &again.json()["media"];
    assert_eq!(
        (media["copied"].as_u64(), media["deleted"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn skip_db_mirrors_media_and_leaves_the_database_alone() {
    let mut env = Env::new(prod_dump()).await;
    let (_, staging) = with_media(&mut env, None).await;
    env.init_target().await;

    let dry = env.run(&["--json", "run", "--dry-run", "--skip-db"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.json().get("snapshot").is_none(), "{dry:?}");
    assert_eq!(
        bucket_contents(&staging).await.len(),
        3,
        "a dry run changed the bucket"
    );

    let out = env.run(&["--json", "run", "--skip-db"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert!(report["snapshot"].is_null(), "{report}");
    assert_eq!(report["media"]["copied"], 30, "{report}");
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
    assert_eq!(env.backend_log(), "", "the backend was touched");
    let status = env.run(&["status"]).await;
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("copied ") && l.contains(" 30 objects, ")),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_media_target_without_its_marker_refuses_the_whole_run() {
    let mut env = Env::new(prod_dump()).await;
    // Only the database opts in: init-target runs before the media bucket is configured.
    env.init_target().await;
    let (_, staging) = with_media(&mut env, None).await;
    let out = env.run(&["run"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains(staging_refresh::media::MARKER_KEY),
        "{out:?}"
    );
    assert_eq!(env.query("SELECT note FROM sentinel"), SENTINEL);
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert_eq!(
        bucket_contents(&staging).await.len(),
        2,
        "the bucket changed"
    );
}

#[tokio::test]
async fn an_unreachable_media_source_fails_the_run_before_cutover() {
    let mut env = Env::new(prod_dump()).await;
    let port = common::services::free_port();
    with_media(&mut env, Some(format!("http://127.0.0.1:{port}"))).await;
    env.init_target().await;
    let out = env.run(&["--json", "run"]).await;
    env.assert_failed_cleanly(&out, "listing the media buckets");
    assert_eq!(out.json()["failed_phase"], "media");
}
