//! Masks that fit every column's shape, against real PostgreSQL and S3 with the README's
//! recommended roles: arrays masked element by element, a domain through its base type,
//! bytea as bytes, lengths from the type and CHECKs, NULL against NOT NULL and a cross-column
//! CHECK. A fitting config leaves no personal value in a dump of staging; a misfit stops the
//! run before a row is loaded, naming table, column and limit; what a mask leaves is checked
//! by verification, and what a partial mask keeps is read by the scan.

use crate::common;

use std::sync::OnceLock;

use chrono::Utc;

use common::env::Env;
use common::fixtures::{dump_sql, seed_prod_with, zstd};
use common::{prod_postgres, unique};

/// The production database with the shapes fixture, and its dump, made once.
fn production() -> &'static (String, Vec<u8>) {
    static DUMP: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    DUMP.get_or_init(|| {
        let db = unique("members");
        seed_prod_with(prod_postgres(), &db, 20, &["shapes.sql"]);
        let dump = dump_sql(prod_postgres(), &db);
        (db, dump)
    })
}

/// A staging world restoring the shapes fixture's dump with `rules`.
async fn env(rules: &str) -> Env {
    let (source, dump) = production();
    let mut env = Env::empty().await;
    env.snapshot_database = source.clone();
    env.upload_taken(zstd(dump), Utc::now() - chrono::Duration::hours(1), true)
        .await;
    env.anonymize = rules.to_owned();
    env
}

/// `[[anonymize.column]]` rules for `member`: (column, mask and its other keys).
fn rules(columns: &[(&str, &str)]) -> String {
    columns
        .iter()
        .map(|(column, mask)| {
            format!("\n[[anonymize.column]]\ntable = \"member\"\ncolumn = \"{column}\"\n{mask}\n")
        })
        .collect()
}

/// Rules that fit every column of `member`.
fn fitting() -> Vec<(&'static str, &'static str)> {
    vec![
        ("emails", "mask = \"email\""),
        ("api_tokens", "mask = \"token\""),
        ("handle", "mask = \"text\""),
        ("secret", "mask = \"hash\""),
        ("nickname", "mask = \"name\""),
        ("billing_email", "mask = \"email\""),
        ("billing_phone", "mask = \"phone\""),
        ("phone", "mask = \"phone\""),
        (
            "profile",
            "mask = \"json\"\npaths = { \"contact.email\" = \"email\" }\nrest = \"text\"",
        ),
        ("bio", "mask = \"text\""),
    ]
}

/// `fitting()` with `column`'s rule replaced.
fn with(column: &str, mask: &'static str) -> Vec<(&'static str, &'static str)> {
    fitting()
        .into_iter()
        .map(|(c, m)| (c, if c == column { mask } else { m }))
        .collect()
}

/// The fixture's personal values: none may be in staging.
const PERSONAL: &[&str] = &[
    "marguerite.oyelaran@mailbox-example.org",
    "m.oyelaran+work@mailbox-example.org",
    "quillon.vasquez-ferro@mailbox-example.org",
    "billing.oyelaran@mailbox-example.org",
    "thaddeus.oyelaran@mailbox-example.org",
    "Zq81LmPw3RtY6uVb9XcA",
    "R2d2C3poBb8Yy4Ll0Kk9Jj7Hh6Gg5Ff",
    "Xy12Ab34Cd56",
    "oyelaran",
    "Oyelaran",
    "Marguerite",
    "marguerite",
    "Thaddeus",
    "quillon",
    // "marguerite-secret" as bytea shows in a dump.
    "6d6172677565726974652d736563726574",
    "+44 20 7946 0321",
    "+44 20 7946 0999",
];

#[tokio::test]
async fn fitting_masks_reach_every_shape_and_staging_holds_no_personal_value() {
    let env = env(&rules(&fitting())).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert!(
        report["verification"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{report}"
    );

    // Arrays keep their elements (NULLs too), bytea its length, every mask its shape.
    let email = "'^anon_[0-9a-f]{16}@staging\\.invalid$'";
    let shapes = env.query(&format!(
        "SELECT id, array_length(emails, 1), emails[1] ~ {email} AND emails[2] IS NULL,
                api_tokens[1] ~ '^sk_live_[A-Za-z0-9]{{20}}$', api_tokens[2] ~ '^ghp_[A-Za-z0-9]{{31}}$',
                api_tokens[3] ~ '^[a-z]{{8}}_[a-z]_[A-Za-z0-9]{{12}}$',
                handle, octet_length(secret), encode(secret, 'escape') ~ '^[0-9a-f]*$',
                phone ~ '^[0-9 +()./-]*$', billing_phone IS NULL = (billing_email IS NULL),
                profile->'contact'->>'email' ~ {email}, profile->'emergency'->>'name',
                bio::text
         FROM member ORDER BY id"
    ));
    let rows: Vec<Vec<&str>> = shapes.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "1",
            "3",
            "t",
            "t",
            "t",
            "t",
            "lorem ipsum dolor s",
            "17",
            "t",
            "t",
            "t",
            "t",
            "lorem ipsum dolor",
            "lorem ipsum dolor sit amet lorem ipsum dolor sit amet lorem ipsum dolor sit amet \
             lorem ipsum dolo"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "2", "1", "t", "", "", "", "lorem i", "2", "t", "", "t", "", "", ""
        ]
    );

    let staging = String::from_utf8(dump_sql(env.pg, &env.db)).unwrap();
    for value in PERSONAL {
        assert!(!staging.contains(value), "{value} is in staging's dump");
    }
    assert!(staging.contains("sk_live_"), "a known token prefix is kept");
}

#[tokio::test]
async fn a_mask_that_does_not_fit_stops_the_run_before_any_row_naming_column_and_limit() {
    let mut rules_ = with("nickname", "mask = \"email\"");
    rules_ = rules_
        .into_iter()
        .map(|(c, m)| match c {
            "billing_phone" => (c, "mask = \"null\""),
            "secret" => (c, "mask = \"email\""),
            "handle" => (c, "mask = \"hash\""),
            _ => (c, m),
        })
        .collect();
    let env = env(&rules(&rules_)).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        "masks that do not fit their columns, refused before their rows were loaded",
    );
    for misfit in [
        "public.member.nickname (text): mask \"email\" writes 37 characters, more than the 24 \
         characters that CHECK member_nickname_check ((char_length(nickname) <= 24)) allows",
        "public.member.billing_phone (text): mask \"null\" does not fit: CHECK billing_both \
         ((num_nulls(billing_email, billing_phone) = ANY (ARRAY[0, 2]))) tests for NULL (with \
         billing_email)",
        "public.member.secret (bytea): mask \"email\" does not fit bytea",
        "public.member.handle (public.handle): mask \"hash\" writes 64 characters, more than the \
         40 characters that CHECK handle_check ((char_length(VALUE) <= 40)) allows",
    ] {
        assert!(out.stderr.contains(misfit), "{misfit} not in {out:?}");
    }
}

#[tokio::test]
async fn verification_checks_every_masked_value_against_its_mask_s_language() {
    let mut env = env(&rules(&fitting())).await;
    let undo = env.dir.join("undo.sql");
    std::fs::write(
        &undo,
        "UPDATE member SET emails[2] = 'raw@example.org', nickname = 'Raw Nick',
                secret = '\\x00ff'::bytea, api_tokens[1] = 'raw token',
                profile = jsonb_set(profile, '{emergency,name}', '\"Raw Name\"')
         WHERE id = 1;",
    )
    .unwrap();
    env.anonymize = format!("extra_sql = [\"{}\"]\n{}", undo.display(), env.anonymize);
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        "verification failed: masked columns hold masked values (public.member.emails: 1, \
         public.member.api_tokens: 1, public.member.secret: 1, public.member.nickname: 1, \
         public.member.profile: 1)",
    );
}

#[tokio::test]
async fn the_scan_reads_what_a_json_mask_keeps_and_xml() {
    let env = env(&rules(
        &with(
            "profile",
            "mask = \"json\"\npaths = { \"contact.email\" = \"email\" }",
        )
        .into_iter()
        .map(|(c, m)| {
            if c == "bio" {
                (c, "mask = \"keep\"")
            } else {
                (c, m)
            }
        })
        .collect::<Vec<_>>(),
    ))
    .await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let findings: Vec<String> = out.json()["pii_findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["table"] == "public.member")
        .map(|f| format!("{} {} {} {}", f["column"], f["kind"], f["by"], f["count"]))
        .collect();
    assert_eq!(
        findings,
        [
            // Kept by a rule, a column named like personal text holding values is reported.
            "\"bio\" \"personal text\" \"column name\" 1",
            "\"bio\" \"email\" \"values\" 1",
            "\"bio\" \"phone\" \"values\" 1",
            "\"profile\" \"email\" \"values\" 1",
            "\"profile\" \"phone\" \"values\" 1",
        ]
    );
    // What the json mask kept is still there (the scan reports, `warn` keeps the run).
    assert_eq!(
        env.query("SELECT profile->'emergency'->>'email' FROM member WHERE id = 1"),
        "thaddeus.oyelaran@mailbox-example.org"
    );
}
