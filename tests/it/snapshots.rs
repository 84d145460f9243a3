//! The snapshot catalog, `snapshots` and `check` against a real S3 server.

use crate::common;

use chrono::{Duration, Utc};
use futures::StreamExt;

use common::env::Env;
use common::fixtures::dump_name;
use common::{run, s3, write_config};

/// A snapshot-sized stand-in: the catalog reads names and sizes, never bodies.
const BODY: &[u8] = b"-- not a real dump\n";

async fn put_all(bucket: &str, keys: Vec<String>) {
    futures::stream::iter(keys)
        .for_each_concurrent(16, |key| async move { s3().put(bucket, &key, BODY).await })
        .await;
}

fn names(run: &common::Run) -> Vec<String> {
    run.json()["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_more_than_a_thousand_snapshots_newest_first_across_days_and_hosts() {
    let mut env = Env::empty().await;
    let prefix = "snapshots/backend/production/";
    let start = Utc::now() - Duration::hours(1200);
    let hosts = ["db_primary_1", "db-replica", "host_with_many_parts"];
    let mut keys = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1100 {
        // Hosts interleave and timestamps step an hour apart over ~46 days.
        let name = dump_name("my_app", hosts[i % 3], start + Duration::hours(i as i64));
        keys.push(format!("{prefix}{name}"));
        if i % 2 == 0 {
            keys.push(format!("{prefix}{name}.md5"));
        }
        expected.push(name);
    }
    put_all(&env.bucket, keys).await;
    expected.reverse();

    // Staging's database is named differently: snapshot.database names production's.
    env.prefix = prefix.into();
    env.snapshot_database = "my_app".into();
    let out = env.run(&["--json", "snapshots"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let listed = names(&out);
    assert_eq!(listed.len(), 1100);
    assert_eq!(listed, expected);
    let json = out.json();
    let first = &json["snapshots"][0];
    assert_eq!(first["database"], "my_app");
    assert_eq!(first["host"], hosts[1099 % 3]);
    // Every other dump (even i) has a sidecar; the newest is i = 1099 (odd).
    assert!(first["checksum"].is_null());
    assert!(
        json["snapshots"][1]["checksum"]["key"]
            .as_str()
            .unwrap()
            .ends_with(".sql.zst.md5")
    );

    let limited = env.run(&["--json", "snapshots", "--limit", "3"]).await;
    assert_eq!(names(&limited), expected[..3]);
}

#[tokio::test]
async fn skips_what_does_not_parse_and_says_why() {
    let env = Env::empty().await;
    let now = Utc::now();
    let good = dump_name("app", "db", now - Duration::hours(1));
    let lonely_dump = dump_name("app", "db", now - Duration::hours(2));
    let keys = vec![
        good.clone(),
        format!("{good}.md5"),
        lonely_dump.clone(),
        "pgsql_app_db_20261399-250000.sql.zst".into(),
        "pgsql_app_db_20261120-030000.sql.lz4".into(),
        "pgsql_app_db_20261120-030000.sql.zst.partial".into(),
        "pgsql_app_db_20261119-030000.sql.zst.md5".into(),
        "pgsql_analytics_db_20261120-030000.sql.zst".into(),
        "README.txt".into(),
    ];
    put_all(&env.bucket, keys).await;

    let out = env.run(&["--verbose", "snapshots"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let table: Vec<&str> = out.stdout.lines().collect();
    assert!(table[0].starts_with("NAME"), "{}", out.stdout);
    assert!(
        table[1].starts_with(&good) && table[1].ends_with("md5"),
        "{}",
        out.stdout
    );
    assert!(
        table[2].starts_with(&lonely_dump) && table[2].ends_with("none"),
        "{}",
        out.stdout
    );
    for (key, reason) in [
        ("pgsql_app_db_20261399-250000.sql.zst", "bad timestamp"),
        ("pgsql_app_db_20261120-030000.sql.lz4", "unknown extension"),
        (
            "pgsql_app_db_20261120-030000.sql.zst.partial",
            "unknown extension",
        ),
        (
            "pgsql_app_db_20261119-030000.sql.zst.md5",
            "checksum sidecar without its dump",
        ),
        (
            "pgsql_analytics_db_20261120-030000.sql.zst",
            "not a dump of database \"app\"",
        ),
        ("README.txt", "does not match snapshot.pattern"),
    ] {
        let line = format!("skipped {key}: ");
        let found = out.stdout.lines().find(|l| l.starts_with(&line));
        assert!(
            found.is_some_and(|l| l.contains(reason)),
            "{key}: {reason}\n{}",
            out.stdout
        );
    }

    let quiet = env.run(&["snapshots"]).await;
    assert!(
        quiet
            .stdout
            .contains("6 objects skipped (--verbose says why)"),
        "{quiet:?}"
    );
}

#[tokio::test]
async fn pattern_and_max_age_choose_what_counts() {
    let env = Env::empty().await;
    let now = Utc::now();
    let stale = dump_name("app", "db", now - Duration::hours(30));
    let manual = dump_name("app", "manual", now - Duration::hours(1));
    put_all(&env.bucket, vec![stale.clone(), manual.clone()]).await;
    // `check` reads the newest snapshot's table definitions: this one has some (none).
    let empty_dump = common::fixtures::zstd(b"-- PostgreSQL database dump complete\n");
    s3().put(&env.bucket, &stale, empty_dump).await;

    let pattern = env.config_text().replace(
        "prefix = \"\"",
        "prefix = \"\"\npattern = \"pgsql_app_db_*\"",
    );
    let config = write_config(&pattern);
    let out = run(&config, &["--json", "snapshots"]).await;
    assert_eq!(names(&out), vec![stale.clone()]);

    // The only matching snapshot is 30 h old, over the default max_age of 26 h.
    let check = run(&config, &["check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    let line = check
        .stdout
        .lines()
        .find(|l| l.contains("snapshot bucket"))
        .unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("snapshot.max_age") && line.contains(&stale),
        "{line}"
    );
    let table = run(&config, &["snapshots"]).await;
    assert!(table.stdout.contains("(older than max_age)"), "{table:?}");

    let relaxed =
        write_config(&pattern.replace("prefix = \"\"", "prefix = \"\"\nmax_age = \"2d\""));
    // Every other check passes once the staging database is opted in.
    assert_eq!(run(&relaxed, &["init-target"]).await.code, 0);
    let check = run(&relaxed, &["check"]).await;
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check.stdout.contains(&format!("newest {stale}")),
        "{check:?}"
    );
}

#[tokio::test]
async fn an_empty_prefix_is_a_clear_error() {
    let mut env = Env::empty().await;
    s3().put(
        &env.bucket,
        "elsewhere/pgsql_app_db_20261120-030000.sql.zst",
        BODY,
    )
    .await;
    env.prefix = "snapshots/production/".into();
    let out = env.run(&["snapshots"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "no objects under s3://{}/snapshots/production/",
            env.bucket
        )),
        "{out:?}"
    );
    let check = env.run(&["check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stdout.contains("no objects under"), "{check:?}");
}

#[tokio::test]
async fn wrong_credentials_are_named_without_printing_the_secret() {
    let strict = common::services::s3_checking_credentials();
    let secret = "very-secret-value-9f8e7d";
    let mut env = Env::empty().await;
    // The strict server refuses the credentials before it looks for the bucket.
    env.bucket = "any-bucket".into();
    let config = env
        .config_text()
        .replace(&s3().endpoint(), &strict.endpoint())
        .replace(common::constants::S3_SECRET_KEY, secret);
    let config = write_config(&config);
    for args in [&["snapshots"][..], &["check"][..]] {
        let out = run(&config, args).await;
        assert_eq!(out.code, 1, "{out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("InvalidAccessKeyId") || all.contains("InvalidClientTokenId"),
            "{out:?}"
        );
        assert!(all.contains("s3://any-bucket"), "{out:?}");
        assert!(!all.contains(secret), "secret printed: {out:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let port = common::services::free_port();
    let config = Env::empty()
        .await
        .config_text()
        .replace(&s3().endpoint(), &format!("http://127.0.0.1:{port}"));
    let out = run(&write_config(&config), &["snapshots"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")) && out.stderr.contains("cannot connect"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_bad_config_exits_2_naming_the_key() {
    let base = Env::empty().await.config_text();
    let cases = [
        (
            base.replace("prefix = \"\"", "prefix = \"\"\nmax_age = \"soon\""),
            "snapshot.max_age",
        ),
        (
            base.replace("prefix = \"\"", "prefix = \"\"\nbukket = \"x\""),
            "snapshot.bukket",
        ),
        (
            format!("{base}\n[schedule]\ncron = \"every night\"\n"),
            "schedule.cron",
        ),
        (base.replace("[snapshot]", "[snapshot\n"), "config file"),
    ];
    for (text, key) in cases {
        let out = run(&write_config(&text), &["snapshots"]).await;
        assert_eq!(out.code, 2, "{key}: {out:?}");
        assert!(out.stderr.contains(key), "{key}: {out:?}");
    }
    // Three errors at once, in `run` and `check` alike: each named, the duration's key once.
    let three = base
        .replace("prefix = \"\"", "prefix = \"\"\nmax_age = \"soon\"")
        .replace("[database]", "[database]\nbogus = 1")
        + "\n[schedule]\ncron = \"every night\"\n";
    for command in ["run", "check"] {
        let out = run(&write_config(&three), &[command]).await;
        assert_eq!(out.code, 2, "{command}: {out:?}");
        assert!(out.stderr.contains("3 config errors"), "{command}: {out:?}");
        for key in ["snapshot.max_age", "database.bogus", "schedule.cron"] {
            assert_eq!(out.stderr.matches(key).count(), 1, "{key}: {out:?}");
        }
    }
    let missing = run(std::path::Path::new("/nonexistent/config.toml"), &["check"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("/nonexistent/config.toml"),
        "{missing:?}"
    );
}
