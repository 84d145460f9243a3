//! Masking in the restore stream, against real PostgreSQL and S3: production's personal
//! values never reach staging (neither its dump nor its data files and WAL), masked values
//! keep their shapes, joins and constraints, and stay the same across tables and refreshes;
//! a personal-looking column without a rule stops the run before anything is loaded.
//! These tests' staging server is their own and only ever receives masked data, so its data
//! directory can be searched for production values.

use crate::common;

use std::path::Path;
use std::sync::OnceLock;

use chrono::Utc;

use common::env::Env;
use common::fixtures::{dump_sql, fixture_path, psql_as_owner, seed_prod, zstd};
use common::staging::refresh_role_url;
use common::{Postgres, prod_postgres, unique};

/// The staging server of this module's tests: not the shared one, where other tests restore
/// unmasked fixtures and hostile dumps into databases its data directory also holds.
fn staging() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start("postgres-masking"))
}

/// Rules for the masking fixture's tables.
const RULES: &str = r#"
[[anonymize.column]]
table = "customer"
column = "phone"
mask = "phone"

[[anonymize.column]]
table = "public.customer"
column = "stripe_id"
mask = "token"

[[anonymize.column]]
table = "public.customer"
column = "contact"
mask = "json"
paths = { "contact.email" = "email" }

[[anonymize.column]]
table = "public.customer"
column = "note"
mask = "text"

[[anonymize.column]]
table = "public.customer"
column = "last_ip"
mask = "null"

[[anonymize.column]]
table = "public.invoice"
column = "stripe_customer"
mask = "token"

[[anonymize.table]]
table = "public.session"
mode = "empty"
"#;

/// Production values no byte of staging may hold.
const PRODUCTION_VALUES: &[&str] = &[
    "+44 20 7946 0958",
    "+1 (555) 013-9911",
    "cus_Qz8Lk2PmVn4Rt7Ws",
    "cus_Xw3Jd8RfTg6Yh1Ku",
    "jane.quixote@mailbox-example.org",
    "omar.zebulon@mailbox-example.org",
    "Jane Quixote",
    "221B Baker Street",
    "sess_Lq0PzXHv93KdWm7Nc",
    "sess_Tb5RkYu2Ez8GqJ4Ha",
    // The prod-shaped users and integrations.
    "info@shootify.io",
    "customer7@example-customer.com",
    "Customer Number 7",
    "$2b$12$KIXQJ1bQ8ZpvVh5YnYJrUe3ZQ0Fq9xGzW7oU1aH2dD3eE4fF5gG6h",
    "partner1.example.com",
];

/// A production database with the masking fixture, dumped; `extra` runs after the fixture.
fn production(extra: &str) -> (String, Vec<u8>) {
    let prod = prod_postgres();
    let db = unique("shop");
    seed_prod(prod, &db, 20);
    let fixture = fixture_path("masking.sql");
    let fixture = fixture.to_str().unwrap();
    psql_as_owner(prod, &db, &["-f", fixture, "-c", extra]);
    let dump = dump_sql(prod, &db);
    (db, dump)
}

/// A staging world restoring the dump of production database `source`.
async fn env(source: &str, dump: &[u8]) -> Env {
    let mut env = Env::on(staging(), refresh_role_url(staging())).await;
    env.snapshot_database = source.to_owned();
    env.upload_taken(zstd(dump), Utc::now() - chrono::Duration::hours(1), true)
        .await;
    env.anonymize = RULES.into();
    env
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        // Other tests create and drop databases on the same cluster meanwhile: what vanishes
        // during the walk held nothing of this test's.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && memchr::memmem::find(&bytes, needle).is_some()
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn production_values_never_reach_staging_and_masks_hold_across_tables_and_refreshes() {
    let (source, dump) = production("");
    let env = env(&source, &dump).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["rows_anonymized"]["public.customer"], 2, "{report}");
    assert_eq!(report["rows_restored"]["public.session"], 0, "{report}");
    assert_eq!(report["tables_emptied"]["public.session"], 2, "{report}");
    assert_eq!(
        report["masked_values"]["public.customer"]["phone"], 2,
        "{report}"
    );
    assert_eq!(
        report["masked_values"]["public.customer"]["note"], 1,
        "{report}"
    );
    assert_eq!(
        report["masked_values"]["public.invoice"]["stripe_customer"], 3,
        "{report}"
    );
    assert!(
        report["verification"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{report}"
    );

    // Masked values keep their shapes; what is not ruled is kept.
    let customer =
        "SELECT phone, stripe_id, contact->'contact'->>'email', contact->'contact'->>'lang',
                           contact->>'tier', length(note), last_ip IS NULL
                    FROM customer ORDER BY id";
    let masked = env.query(customer);
    let rows: Vec<Vec<&str>> = masked.lines().map(|l| l.split('|').collect()).collect();
    let shape = |pattern: &str, value: &str| {
        assert!(
            regex::Regex::new(pattern).unwrap().is_match(value),
            "{value} is not {pattern}"
        )
    };
    shape(r"^\+\d\d \d\d \d{4} \d{4}$", rows[0][0]);
    shape(r"^\+\d \(\d{3}\) \d{3}-\d{4}$", rows[1][0]);
    for row in &rows {
        shape(r"^cus_[A-Za-z0-9]{16}$", row[1]);
        shape(r"^anon_[0-9a-f]{16}@staging\.invalid$", row[2]);
        assert_eq!(row[6], "t", "last_ip is NULL");
    }
    assert_eq!((rows[0][3], rows[0][4], rows[1][3]), ("en", "2", "de"));
    let note_length = "SELECT length(note) FROM customer WHERE id = 1";
    assert_eq!(rows[0][5], prod_postgres().query(&source, note_length));
    assert_eq!(rows[1][5], "", "a NULL note stays NULL");
    assert_ne!(rows[0][1], rows[1][1]);
    // The same Stripe id masks the same way in both tables: the join and the foreign key
    // hold, as every constraint production has.
    assert_eq!(
        env.query(
            "SELECT count(*) FROM invoice i JOIN customer c ON c.stripe_id = i.stripe_customer"
        ),
        "3"
    );
    let constraints = "SELECT contype, count(*) FROM pg_constraint
                       WHERE connamespace = 'public'::regnamespace GROUP BY 1 ORDER BY 1";
    assert_eq!(
        env.query(constraints),
        prod_postgres().query(&source, constraints)
    );
    assert_eq!(env.query("SELECT count(*) FROM session"), "0");

    // Neither a dump of staging nor, after a checkpoint, its data files and WAL hold a
    // production value; the search does find what staging does hold.
    let staging_dump = String::from_utf8(dump_sql(staging(), &env.db)).unwrap();
    staging().query("postgres", "CHECKPOINT");
    let data = staging().dir.join("data");
    for value in PRODUCTION_VALUES {
        assert!(
            !staging_dump.contains(value),
            "{value} is in staging's dump"
        );
        assert_eq!(
            files_containing(&data, value.as_bytes()),
            Vec::<String>::new(),
            "{value} is in staging's data directory"
        );
    }
    assert!(staging_dump.contains(rows[0][1]));
    assert!(!files_containing(&data, rows[0][1].as_bytes()).is_empty());
    assert!(!files_containing(&data, b"Plain product description 7").is_empty());

    // A second refresh (the same key, from the state directory) masks identically.
    let again = env.refresh().await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(env.query(customer), masked);
    // The metrics count what both refreshes masked.
    let config = env.loaded();
    let metrics = staging_refresh::metrics::Metrics::new();
    staging_refresh::metrics::Sources::of(&config).update(&metrics);
    let text = metrics.text();
    let line = "staging_refresh_masked_values_total{column=\"phone\",table=\"public.customer\"} 4";
    assert!(text.contains(line), "{line} not in\n{text}");
}

#[tokio::test]
async fn a_new_unclassified_column_fails_the_run_before_any_row_is_loaded_until_it_has_a_rule() {
    let (source, dump) = production(
        "ALTER TABLE customer ADD COLUMN passport text, ADD COLUMN seen_from cidr;
         UPDATE customer SET passport = 'P-UNCLASSIFIED-' || id;",
    );
    let mut env = env(&source, &dump).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "public.customer: passport (text), seen_from (cidr)");
    assert!(out.stderr.contains("nothing was loaded"), "{out:?}");
    assert_eq!(
        out.json()["unclassified_columns"],
        serde_json::json!([
            "public.customer.passport (text)",
            "public.customer.seen_from (cidr)"
        ])
    );
    staging().query("postgres", "CHECKPOINT");
    assert_eq!(
        files_containing(&staging().dir.join("data"), b"P-UNCLASSIFIED-"),
        Vec::<String>::new()
    );

    env.anonymize.push_str(
        "\n[[anonymize.column]]\ntable = \"customer\"\ncolumn = \"passport\"\nmask = \"hash\"\n\
         \n[[anonymize.column]]\ntable = \"customer\"\ncolumn = \"seen_from\"\nmask = \"null\"\n",
    );
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        env.query("SELECT count(*) FROM customer WHERE passport ~ '^[0-9a-f]{64}$'"),
        "2"
    );
}

#[tokio::test]
async fn verification_fails_when_extra_sql_undoes_a_mask() {
    let (source, dump) = production("");
    let mut env = env(&source, &dump).await;
    let extra = env.dir.join("undo.sql");
    std::fs::write(
        &extra,
        "UPDATE customer SET last_ip = '192.0.2.1' WHERE id = 2;",
    )
    .unwrap();
    env.anonymize = format!("extra_sql = [\"{}\"]\n{RULES}", extra.display());
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        "verification failed: masked columns hold masked values (public.customer.last_ip: 1)",
    );
}
