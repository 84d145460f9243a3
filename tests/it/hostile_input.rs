//! Hostile input, property-tested (cargo-fuzz needs a nightly toolchain; proptest runs in
//! `cargo test`, bounded, and keeps any failure it finds in `tests/proptest-regressions/`): the
//! dump lexer and filter never panic whatever the bytes, split generated statements back
//! exactly, and refuse every psql meta-command outside COPY data wherever it hides; the
//! snapshot-name parser accepts exactly the names db-backup forms. Names with quotes, line
//! breaks and unicode neither break SQL nor forge log lines. Personal data hidden where a
//! sample or a schema-blind scan would miss it is found, within bounded memory.

use crate::common;

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;

use staging_refresh::restore::filter::{Action, Filter};
use staging_refresh::restore::lexer::{Item, Lexer};
use staging_refresh::snapshot::{Compression, Content, parse_name};

use common::constants::{OWNER, PROD_OWNER};
use common::env::Env;
use common::fixtures::{dump_sql, seed_prod, zstd};
use common::staging::prod_dump;
use common::{prod_postgres, unique};

const COMPLETE: &str = "\n--\n-- PostgreSQL database dump complete\n--\n";

fn filter() -> Filter {
    Filter::new(150_000, HashSet::from([OWNER.to_owned()]), "app".into())
}

/// Lexes and filters `dump` as the restore's decode stage does; the statements let through,
/// or the first error.
fn lex_and_filter(dump: &[u8]) -> Result<Vec<String>, String> {
    let mut filter = filter();
    let mut lexer = Lexer::new(dump);
    let mut kept = Vec::new();
    while let Some(item) = lexer.next_item().map_err(|e| e.to_string())? {
        match item {
            Item::Meta { command, line } => {
                filter.meta(&command, line).map_err(|e| e.to_string())?;
            }
            Item::Statement(s) => match filter.statement(&s).map_err(|e| e.to_string())? {
                Action::Keep => kept.push(s.text),
                Action::Drop(_) => {}
            },
            Item::CopyData(_) | Item::CopyEnd { .. } => {}
        }
    }
    Ok(kept)
}

/// The statements the lexer splits `dump` into (no filter: it refuses a bare SELECT).
fn split(dump: &[u8]) -> Result<Vec<String>, String> {
    let mut lexer = Lexer::new(dump);
    let mut statements = Vec::new();
    while let Some(item) = lexer.next_item().map_err(|e| e.to_string())? {
        if let Item::Statement(s) = item {
            statements.push(s.text);
        }
    }
    Ok(statements)
}

/// Text built from the pieces that switch the lexer's states.
fn sqlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("$$".to_owned()),
        Just("$q$".to_owned()),
        Just("E'".to_owned()),
        Just("\\".to_owned()),
        Just("\\.".to_owned()),
        Just(";".to_owned()),
        Just("\n".to_owned()),
        Just("--".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("COPY t FROM stdin;\n".to_owned()),
        Just("CREATE FUNCTION f() BEGIN ATOMIC ".to_owned()),
        Just("BEGIN".to_owned()),
        Just("END".to_owned()),
        Just("CASE".to_owned()),
        Just(COMPLETE.to_owned()),
        "[a-z0-9 ]{1,6}",
        "\\PC{1,3}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// A string constant of any of the three kinds, holding `;`, quotes, backslashes, newlines.
fn string_constant() -> impl Strategy<Value = String> {
    prop_oneof![
        "([a-z ;\"\\\\$\n-]|'')*".prop_map(|c| format!("'{c}'")),
        "([a-z ;\"$\n]|\\\\'|\\\\\\\\|'')*".prop_map(|c| format!("E'{c}'")),
        "[a-z ;'\"\\\\\n-]*".prop_map(|c| format!("$q${c}$q$")),
        "([a-z ;'\\\\$]|\"\")+".prop_map(|c| format!("\"{c}\"")),
        "[0-9]{1,5}",
    ]
}

/// `SELECT` statements over string constants, some in parentheses holding a `;`.
fn statement() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        3 => string_constant(),
        1 => string_constant().prop_map(|a| format!("({a}; 1)")),
    ];
    proptest::collection::vec(atom, 1..4).prop_map(|a| format!("SELECT {};", a.join(", ")))
}

/// A meta-command line, never one pg_dump writes (those are let through and dropped).
fn meta_command() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("!".to_owned()),
        Just("connect other".to_owned()),
        Just("c postgres".to_owned()),
        Just("copy t from program 'id'".to_owned()),
        Just("o /tmp/out".to_owned()),
        Just("set ON_ERROR_STOP off".to_owned()),
        Just("gexec".to_owned()),
        Just("i /etc/passwd".to_owned()),
        Just("setenv PGHOST evil".to_owned()),
        Just("lo_import /etc/passwd".to_owned()),
        "[a-zA-Z!?]{1,8}".prop_filter("pg_dump's own", |n| {
            !["restrict", "unrestrict"].contains(&n.as_str())
        }),
    ];
    (name, "[ -~]{0,12}").prop_map(|(name, args)| format!("\\{name} {args}"))
}

/// Where a meta-command is put in a dump.
#[derive(Debug, Clone, Copy)]
enum Hiding {
    OwnLine,
    AfterAStatementOnItsLine,
    InsideAStatement,
    InADollarQuoteThatNeverCloses,
    InCopyDataThatNeverEnds,
}

/// A db-backup file name's parts.
fn name_parts() -> impl Strategy<Value = (String, String, DateTime<Utc>, (Compression, bool))> {
    let taken = (
        2000i32..2100,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| {
            NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_opt(h, mi, s)
                .unwrap()
                .and_utc()
        });
    let compression = prop_oneof![
        Just(Compression::Zstd),
        Just(Compression::Gzip),
        Just(Compression::Bzip2),
        Just(Compression::Xz),
        Just(Compression::None)
    ];
    (
        "[a-z][a-z0-9_]{0,11}",
        "[a-z0-9][a-z0-9_.-]{0,15}",
        taken,
        (compression, any::<bool>()),
    )
}

fn form_name(
    db: &str,
    host: &str,
    taken: DateTime<Utc>,
    (compression, encrypted): (Compression, bool),
) -> String {
    format!(
        "pgsql_{db}_{host}_{}{}{}",
        taken.format("%Y%m%d-%H%M%S"),
        compression.suffix(),
        if encrypted { ".gpg" } else { "" }
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_lexer_and_filter_never_panic_on_arbitrary_bytes(
        dump in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let _ = lex_and_filter(&dump);
    }

    #[test]
    fn the_lexer_and_filter_never_panic_on_sql_like_text(dump in sqlish()) {
        let _ = lex_and_filter(dump.as_bytes());
    }

    #[test]
    fn splitting_concatenated_statements_gives_them_back(
        statements in proptest::collection::vec(statement(), 1..8),
        separators in proptest::collection::vec(prop_oneof![Just(" "), Just("\n"), Just("\n\n  ")], 8),
    ) {
        let mut dump = String::new();
        for (s, sep) in statements.iter().zip(separators.iter().cycle()) {
            dump.push_str(s);
            dump.push_str(sep);
        }
        dump.push_str(COMPLETE);
        prop_assert_eq!(split(dump.as_bytes()), Ok(statements));
    }

    #[test]
    fn a_meta_command_outside_copy_data_is_always_refused(
        before in proptest::collection::vec(statement(), 0..4),
        meta in meta_command(),
        after in proptest::collection::vec(statement(), 0..4),
        hiding in prop_oneof![
            Just(Hiding::OwnLine),
            Just(Hiding::AfterAStatementOnItsLine),
            Just(Hiding::InsideAStatement),
            Just(Hiding::InADollarQuoteThatNeverCloses),
            Just(Hiding::InCopyDataThatNeverEnds),
        ],
    ) {
        let hidden = match hiding {
            Hiding::OwnLine => format!("{meta}\n"),
            Hiding::AfterAStatementOnItsLine => format!("SELECT 1; {meta}\n"),
            Hiding::InsideAStatement => format!("SELECT\n{meta}\n1;\n"),
            Hiding::InADollarQuoteThatNeverCloses => format!("SELECT $never$\n{meta}\n"),
            Hiding::InCopyDataThatNeverEnds => format!("COPY t FROM stdin;\n1\n{meta}\n"),
        };
        let dump = format!("{}\n{hidden}{}{COMPLETE}", before.join("\n"), after.join("\n"));
        let result = lex_and_filter(dump.as_bytes());
        prop_assert!(result.is_err(), "accepted {dump:?}: {result:?}");
    }

    #[test]
    fn the_name_parser_accepts_the_names_db_backup_forms((db, host, taken, compression) in name_parts()) {
        let name = form_name(&db, &host, taken, compression);
        let parsed = parse_name(&name, &db).unwrap();
        prop_assert_eq!(parsed.content, Content::Database);
        prop_assert_eq!(parsed.host, host);
        prop_assert_eq!(parsed.taken_at, taken);
        prop_assert_eq!((parsed.compression, parsed.encrypted), compression);
    }

    #[test]
    fn the_name_parser_accepts_only_names_it_can_form_again(name in "\\PC{0,60}", db in "[a-z_]{1,8}") {
        if let Ok(parsed) = parse_name(&name, &db) {
            let named = match parsed.content {
                Content::Database => db.as_str(),
                Content::Cluster => "all",
                Content::Globals => "globals",
            };
            let kind = (parsed.compression, parsed.encrypted);
            let formed = form_name(named, &parsed.host, parsed.taken_at, kind);
            prop_assert_eq!(formed, name);
        }
    }

    #[test]
    fn the_name_parser_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        db in "\\PC{0,8}",
    ) {
        let _ = parse_name(&String::from_utf8_lossy(&bytes), &db);
    }
}

/// A database name that needs quoting everywhere, refreshed and rolled back: every statement
/// quotes it, and the journal, state file and logs carry it intact.
#[tokio::test]
async fn a_database_name_with_quotes_line_breaks_and_unicode_is_refreshed() {
    let env = Env::new(prod_dump()).await;
    let name = format!("stg \"{}\" 'ü'\n\\ ☃", env.db);
    env.pg.query(
        "postgres",
        &format!(
            "CREATE DATABASE {} OWNER {OWNER}",
            staging_refresh::database::sql::quote_ident(&name)
        ),
    );
    common::staging::create_restore_role(env.pg, &name, common::staging::REFRESH_ROLE);
    let toml_name = serde_json::to_string(&name).unwrap();
    let config = std::fs::read_to_string(env.config()).unwrap().replace(
        &format!("name = \"{}\"", env.db),
        &format!("name = {toml_name}"),
    );
    let config = common::write_config(&config);
    for args in [
        &["init-target"][..],
        &["run", "--skip-media"],
        &["rollback"],
    ] {
        let out = common::run(&config, args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(
            !out.stderr
                .lines()
                .any(|l| l.starts_with("\\ ☃") || l.starts_with(" 'ü'")),
            "a name broke a log line: {out:?}"
        );
    }
    let count = |db: &str| {
        env.pg.query(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = {}",
                quote_literal(db)
            ),
        )
    };
    assert_eq!(count(&name), "1");
    assert_eq!(count(&format!("{name}__previous")), "1");
    assert_eq!(count(&format!("{name}__refresh")), "0");
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A snapshot name from the bucket, or one asked for, carrying a line break and a forged log
/// line: it stays inside its own line.
#[tokio::test]
async fn a_snapshot_name_cannot_forge_a_log_line() {
    let env = Env::new(prod_dump()).await;
    env.init_target().await;
    let forged = "2026-01-01T00:00:00Z  INFO refresh finished";
    let name = format!("pgsql_app_prod_20260101-000000.sql.zst\n{forged}");
    for format in ["plain", "json"] {
        let out = env
            .run(&[
                "--log-format",
                format,
                "run",
                "--skip-media",
                "--snapshot",
                &name,
            ])
            .await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("not found"), "{out:?}");
        assert!(
            !out.stderr.lines().any(|l| l.starts_with(forged)),
            "a forged line in {format} logs: {out:?}"
        );
    }
}

#[tokio::test]
async fn a_name_holding_terminal_escapes_is_printed_escaped() {
    // A table whose name would retitle the terminal and clear its screen.
    let name = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}y";
    let text = std::str::from_utf8(prod_dump()).unwrap();
    let end = text.find(COMPLETE).expect("a complete dump");
    let dump = format!(
        "{}\nCREATE TABLE public.\"{name}\" (note text);\n\
         COPY public.\"{name}\" (note) FROM stdin;\nhello\n\\.\n{}",
        &text[..end],
        &text[end..]
    );
    let env = Env::new(dump.as_bytes()).await;
    for args in [&["rules", "--toml"][..], &["rules"], &["plan"]] {
        let out = env.run(args).await;
        assert!(
            out.stdout.contains("x\\u{1b}]0;pwned") || out.stdout.contains("x\\u001B]0;pwned"),
            "{args:?}: {out:?}"
        );
        for c in ['\u{1b}', '\u{7}', '\u{9b}'] {
            assert!(
                !out.stdout.contains(c) && !out.stderr.contains(c),
                "{args:?} printed {c:?} raw: {out:?}"
            );
        }
    }
}

/// Personal data where a sample or a schema-blind scan misses it: an email in the last of
/// 50 000 rows, one across a window edge inside one of four 21 MB values (of a materialized
/// view, whose definition does not spell it), and in a view over
/// VALUES, a column default, a comment and an enum label. Each is found, naming the object
/// and never the value; `on_unmasked_pii = "fail"` fails the run; and the process's peak
/// memory stays below a single large value read whole.
#[tokio::test]
async fn the_scan_reads_every_row_and_the_schemas_literals_in_bounded_memory() {
    let prod = prod_postgres();
    let db = unique("scan");
    seed_prod(prod, &db, 20);
    // 12 characters × 1 750 000; the email starts 15 characters before the 1 Mi-th. A
    // materialized view, so the restore does not carry them (staging computes them) and the
    // peak memory is the scan's.
    let big = "repeat('lorem ipsum ', 1750000)";
    let edge = (1 << 20) - 15 + 1;
    prod.query(
        &db,
        &format!(
            "SET ROLE {PROD_OWNER};
             CREATE TABLE event_log (id integer PRIMARY KEY, line text NOT NULL);
             INSERT INTO event_log SELECT n, 'event ' || n FROM generate_series(1, 49999) n;
             INSERT INTO event_log VALUES (50000, 'forwarded to lena.marsh@mailbox-example.org');
             ALTER TABLE event_log ALTER COLUMN line SET DEFAULT 'call +44 20 7946 0321';
             COMMENT ON TABLE event_log IS 'owner: kit.harrow@mailbox-example.org';
             CREATE MATERIALIZED VIEW attachment AS
                SELECT n AS id, CASE WHEN n = 3
                    THEN overlay({big} PLACING ' omar.ribbon' || chr(64) || 'mailbox-example.org '
                                 FROM {edge})
                    ELSE {big} END AS body
                FROM generate_series(1, 4) n;
             CREATE VIEW partner_contact AS
                SELECT * FROM (VALUES ('ada.byron@mailbox-example.org')) v(email);
             CREATE TYPE escalation AS ENUM ('none', 'page june.ostrich@mailbox-example.org');"
        ),
    );
    let mut env = Env::empty().await;
    env.snapshot_database = db.clone();
    env.upload_taken(
        zstd(&dump_sql(prod, &db)),
        Utc::now() - chrono::Duration::hours(1),
        true,
    )
    .await;
    // Classified (wrongly) as not personal: the scan is what catches it.
    env.anonymize = "on_unmasked_pii = \"fail\"\n\
        [[anonymize.table]]\ntable = \"event_log\"\nmode = \"keep\"\n"
        .into();
    env.init_target().await;
    let peak = env.dir.join("peak-rss");
    let mut run = std::process::Command::new("/usr/bin/time");
    run.args(["-f", "%M", "-o"])
        .arg(&peak)
        .arg(common::binary())
        .arg("--config")
        .arg(env.config())
        .args(["--json", "run", "--skip-media"]);
    let out = common::run_command(run).await;
    env.assert_failed_cleanly(&out, "unmasked PII found");
    let mut found: Vec<String> = out.json()["pii_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} | {} | {} | {} | {}",
                f["table"].as_str().unwrap(),
                f["column"].as_str().unwrap(),
                f["kind"].as_str().unwrap(),
                f["by"].as_str().unwrap(),
                f["count"]
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "column line of table public.event_log | default | phone | schema literal | 1",
            "public.attachment | body | email | values | 1",
            "public.event_log | line | email | values | 1",
            "table public.event_log | comment | email | schema literal | 1",
            "type public.escalation | enum label | email | schema literal | 1",
            "view public.partner_contact | definition | email | schema literal | 1",
        ]
    );
    assert!(
        !out.stdout.contains("mailbox-example") && !out.stderr.contains("mailbox-example"),
        "a value was reported: {out:?}"
    );
    // A run without the large values peaks near 40 MiB alone, and at 73 MiB measured while
    // the whole suite loads the server (the stream's queues, the stream scan's row, fill up
    // then). Reading one of the values whole would take 21 MiB for the row and as much again
    // for its string on top; the scan holds a row of first windows (1 MiB each) and one
    // window at a time.
    let peak = std::fs::read_to_string(&peak).unwrap();
    // time writes "Command exited with non-zero status 1" first.
    let kib: u64 = peak.lines().last().unwrap().parse().unwrap();
    assert!(kib < 80 * 1024, "peak RSS {kib} KiB");
}
