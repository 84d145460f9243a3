//! The stream masks what the server stores: hostile dumps whose text tells the masking one
//! thing while the server does another (COPY framing, types and tables the text names
//! otherwise than the server resolves them, values the stream never sees, tables changed
//! after their data), and tables whose rules come from their parents (partitions and
//! inheritance). Each hostile dump is refused, naming its cause and dump line, with staging
//! unchanged, or restores with none of its production values in a pg_dump of staging; with
//! the README's recommended roles, and with a superuser `database.url`.

use crate::common;

use std::sync::OnceLock;

use base64::Engine;
use chrono::Utc;

use common::Postgres;
use common::env::Env;
use common::fixtures::{dump_sql, psql_as_owner, seed_prod, zstd};
use common::staging::{PROD_USERS, prod_dump};
use common::{prod_postgres, unique};

/// Production's personal values in the hostile dumps.
const JANE: &str = "jane.catalog@mailbox-example.org";
const OMAR: &str = "omar.catalog@mailbox-example.org";

/// A staging server of its own for the superuser configuration: the opt-in marker table it
/// creates is the superuser's, which the refresh role could not write to.
fn superuser_server() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start("postgres-catalog-superuser"))
}

/// A staging world restoring `dump`, as the recommended roles or a superuser, with
/// `anonymize` added to the `[anonymize]` section.
async fn env_with(dump: &[u8], superuser: bool, anonymize: &str) -> Env {
    let mut env = if superuser {
        let pg = superuser_server();
        common::staging::create_roles(pg);
        Env::on(pg, pg.url("postgres")).await
    } else {
        Env::empty().await
    };
    env.anonymize = anonymize.to_owned();
    env.upload(zstd(dump), None).await;
    env
}

/// The prod-shaped dump with `sql` added at its end, before pg_dump's closing comment.
fn hostile(sql: &str) -> Vec<u8> {
    let text = std::str::from_utf8(prod_dump()).unwrap();
    let end = text
        .find("\n--\n-- PostgreSQL database dump complete")
        .expect("a complete dump");
    format!("{}\n{sql}\n{}", &text[..end], &text[end..]).into_bytes()
}

/// The dump line `needle` starts on.
fn line_of(dump: &[u8], needle: &str) -> usize {
    std::str::from_utf8(dump)
        .unwrap()
        .lines()
        .position(|l| l.starts_with(needle))
        .unwrap_or_else(|| panic!("no line starts with {needle:?}"))
        + 1
}

/// A refresh of `dump` with `anonymize`, with either role: it fails naming every one of
/// `causes`, staging is unchanged, and neither production value reached it.
async fn refused(dump: &[u8], anonymize: &str, causes: &[String]) {
    for superuser in [false, true] {
        let env = env_with(dump, superuser, anonymize).await;
        let out = env.refresh().await;
        for cause in causes {
            env.assert_failed_cleanly(&out, cause);
        }
        assert_absent(&env, &[JANE, OMAR]);
    }
}

/// A refresh of `dump` with `anonymize`, with either role: it succeeds and a pg_dump of
/// staging holds none of `values`. Returns the superuser run's environment.
async fn restored(dump: &[u8], anonymize: &str, values: &[&str]) -> Env {
    let mut last = None;
    for superuser in [false, true] {
        let env = env_with(dump, superuser, anonymize).await;
        let out = env.refresh().await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_absent(&env, values);
        last = Some(env);
    }
    last.expect("two runs")
}

/// None of `values` is in a pg_dump of staging.
fn assert_absent(env: &Env, values: &[&str]) {
    let staging = String::from_utf8_lossy(&dump_sql(env.pg, &env.db)).into_owned();
    for value in values {
        assert!(!staging.contains(value), "{value} reached staging");
    }
}

/// `table` (id, email, note) holding [`JANE`] and [`OMAR`], as pg_dump writes it.
fn contacts(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (id integer, email text, note text);\n\
         COPY {table} (id, email, note) FROM stdin;\n1\t{JANE}\tfirst\n2\t{OMAR}\tsecond\n\\.\n"
    )
}

/// Rules masking `table`'s email with `mask` and keeping its note.
fn contact_rules(table: &str, mask: &str) -> String {
    format!(
        "[[anonymize.column]]\ntable = \"{table}\"\ncolumn = \"email\"\nmask = \"{mask}\"\n\n\
         [[anonymize.column]]\ntable = \"{table}\"\ncolumn = \"note\"\nmask = \"keep\"\n"
    )
}

/// A kept table holding [`JANE`] as base64, and functions of the dump's that read it back.
fn stash() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(JANE);
    format!(
        "CREATE TABLE public.stash (v text);\n\
         COPY public.stash (v) FROM stdin;\n{encoded}\n\\.\n\
         CREATE FUNCTION public.unstash() RETURNS text LANGUAGE sql \
         AS $f$SELECT pg_catalog.convert_from(pg_catalog.decode(v, 'base64'), 'UTF8') \
         FROM public.stash$f$;\n\
         CREATE FUNCTION public.unstash(integer) RETURNS text LANGUAGE sql IMMUTABLE \
         AS $f$SELECT pg_catalog.convert_from(pg_catalog.decode('{encoded}', 'base64'), 'UTF8')$f$;"
    )
}

const STASH_RULE: &str =
    "[[anonymize.column]]\ntable = \"public.stash\"\ncolumn = \"v\"\nmask = \"keep\"\n";

#[tokio::test]
async fn copy_data_the_server_would_read_otherwise_is_refused_with_its_line() {
    let rules = contact_rules("public.contact", "email");
    let copy = "COPY public.contact (id, email, note) FROM stdin";
    let create = "CREATE TABLE public.contact (id integer, email text, note text);";
    // Options: the server would split the fields at commas, the masking at tabs.
    let options = hostile(&format!(
        "{create}\n{copy} (DELIMITER ',');\n1,{JANE},first\n\\.\n"
    ));
    refused(
        &options,
        &rules,
        &[format!(
            "dump line {}: refusing to restore \"COPY public . ...\": only COPY ... FROM stdin \
             with no options",
            line_of(&options, copy)
        )],
    )
    .await;
    // No column list: the fields are the server's columns in its order, which renames made
    // other than the CREATE TABLE's.
    let unlisted = hostile(&format!(
        "CREATE TABLE public.contact (id integer, note text, email text);\n\
         ALTER TABLE public.contact RENAME COLUMN note TO tmp;\n\
         ALTER TABLE public.contact RENAME COLUMN email TO note;\n\
         ALTER TABLE public.contact RENAME COLUMN tmp TO email;\n\
         COPY public.contact FROM stdin;\n1\t{JANE}\tfirst\n\\.\n"
    ));
    refused(
        &unlisted,
        &contact_rules("public.contact", "text"),
        &[format!(
            "dump line {}: refusing COPY into public.contact: it lists no columns",
            line_of(&unlisted, "COPY public.contact FROM")
        )],
    )
    .await;
    // A backslash before a raw tab or newline: to the server that tab or newline is data,
    // so a field (or a row) the masking reads as two is one.
    for (rows, why) in [
        (format!("1\tx\\\t{JANE}\n"), "a backslash before a raw tab"),
        (
            format!("1\tx\tfirst\\\n{JANE}\ty\tz\n"),
            "a backslash before the end of the line",
        ),
        (format!("1\t{JANE}\tfi\rrst\n"), "a raw carriage return"),
    ] {
        let dump = hostile(&format!("{create}\n{copy};\n{rows}\\.\n"));
        refused(
            &dump,
            &rules,
            &[format!(
                "dump line {}: row 1 of the COPY into public.contact is not COPY text as pg_dump \
                 writes it ({why})",
                line_of(&dump, copy)
            )],
        )
        .await;
    }
}

#[tokio::test]
async fn columns_are_what_the_server_stores_not_what_the_dump_text_says() {
    // Retyped after its CREATE TABLE: the text says integer, the server stores text.
    let retyped = hostile(&format!(
        "CREATE TABLE public.ledger (id integer, ref integer);\n\
         ALTER TABLE public.ledger ALTER COLUMN ref TYPE text;\n\
         COPY public.ledger (id, ref) FROM stdin;\n1\t{JANE}\n\\.\n"
    ));
    refused(
        &retyped,
        "",
        &[
            "have no masking rule".into(),
            "public.ledger: ref (text)".into(),
        ],
    )
    .await;
    // A built-in type's name the dump's search_path resolves to its own domain over text.
    let shadowed = hostile(&format!(
        "CREATE DOMAIN public.int4 AS text;\n\
         SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', false);\n\
         CREATE TABLE public.shadow (id integer, code int4);\n\
         COPY public.shadow (id, code) FROM stdin;\n1\t{JANE}\n\\.\n\
         SELECT pg_catalog.set_config('search_path', '', false);"
    ));
    refused(
        &shadowed,
        "",
        &["have no masking rule".into(), "public.shadow: code".into()],
    )
    .await;
    // An unqualified table name the dump's search_path resolves to another schema's table
    // than public's, whose rule keeps everything.
    let elsewhere = hostile(&format!(
        "CREATE SCHEMA shop;\n{}\
         CREATE TABLE public.contact (id integer, email text, note text);\n\
         SELECT pg_catalog.set_config('search_path', 'shop', false);\n\
         COPY contact (id, email, note) FROM stdin;\n3\t{JANE}\tthird\n\\.\n\
         SELECT pg_catalog.set_config('search_path', '', false);",
        contacts("shop.contact")
            .replace(JANE, "x1@example.org")
            .replace(OMAR, "x2@example.org")
    ));
    let env = restored(
        &elsewhere,
        &format!(
            "{}\n[[anonymize.table]]\ntable = \"public.contact\"\nmode = \"keep\"\n",
            contact_rules("shop.contact", "text")
        ),
        &[JANE],
    )
    .await;
    assert_eq!(env.query("SELECT count(*) FROM shop.contact"), "3");
}

#[tokio::test]
async fn values_the_stream_never_sees_fail_the_run() {
    let rules = format!("{STASH_RULE}\n{}", contact_rules("public.contact", "text"));
    // Left out of the COPY, filled by a DEFAULT computed by the dump's function.
    let defaulted = hostile(&format!(
        "{}\nCREATE TABLE public.contact (id integer, email text DEFAULT public.unstash(), \
         note text);\nCOPY public.contact (id, note) FROM stdin;\n1\tfirst\n\\.\n",
        stash()
    ));
    refused(
        &defaulted,
        &rules,
        &[format!(
            "dump line {}: refusing COPY into public.contact: pg_dump leaves out no column but \
             generated ones, and this COPY leaves out email",
            line_of(&defaulted, "COPY public.contact")
        )],
    )
    .await;
    // A stored generated column the dump's function computes.
    let generated = hostile(&format!(
        "{}\nCREATE TABLE public.contact (id integer, email text GENERATED ALWAYS AS \
         (public.unstash(id)) STORED, note text);\n\
         COPY public.contact (id, note) FROM stdin;\n1\tfirst\n\\.\n",
        stash()
    ));
    refused(
        &generated,
        &rules,
        &["public.contact.email is a generated column".into()],
    )
    .await;
    // A table made from a query: pg_dump never writes one.
    let query = format!("CREATE TABLE public.contact AS SELECT 1 AS id, '{JANE}'::text AS email;");
    let made = hostile(&query);
    refused(
        &made,
        &rules,
        &[format!(
            "dump line {}: refusing to restore \"CREATE TABLE public ...\": pg_dump creates a \
             table with its columns, never from a query",
            line_of(&made, &query)
        )],
    )
    .await;
}

/// A large object holding [`JANE`], as pg_dump writes one.
fn large_object() -> String {
    format!(
        "SELECT pg_catalog.lo_create('900001');\nBEGIN;\n\
         SELECT pg_catalog.lo_open('900001', 131072);\n\
         SELECT pg_catalog.lowrite(0, '\\x{}');\n\
         SELECT pg_catalog.lo_close(0);\nCOMMIT;",
        hex::encode(format!("write to {JANE} today"))
    )
}

#[tokio::test]
async fn large_objects_are_restored_empty_unless_kept_and_then_scanned() {
    let dump = hostile(&large_object());
    let hex = hex::encode(JANE);
    let env = restored(&dump, "", &[JANE, &hex]).await;
    // The object exists, without its data.
    assert_eq!(
        env.query("SELECT pg_catalog.length(pg_catalog.lo_get(900001))"),
        "0"
    );
    // Kept, it is scanned: a finding, fatal here.
    refused(
        &dump,
        "large_objects = \"keep\"\non_unmasked_pii = \"fail\"",
        &["large objects.data: 1 email (values)".into()],
    )
    .await;
}

#[tokio::test]
async fn a_materialized_view_refreshed_by_the_anonymization_cannot_rewrite_masked_rows() {
    // The view's function writes the stashed name over every user's, but only in the
    // anonymization's transaction (the only one with synchronous_commit on): the dump's own
    // refresh during the restore writes nothing.
    let dump = hostile(&format!(
        "{}\nCREATE FUNCTION public.rewrite() RETURNS integer LANGUAGE plpgsql AS $f$ BEGIN \
         IF pg_catalog.current_setting('synchronous_commit') = 'on' THEN \
         UPDATE public.\"user\" SET full_name = public.unstash(); END IF; RETURN 1; END $f$;\n\
         CREATE MATERIALIZED VIEW public.rewriting AS SELECT public.rewrite() AS one WITH NO DATA;\n\
         REFRESH MATERIALIZED VIEW public.rewriting;",
        stash()
    ));
    let dir = common::test_dir("catalog");
    let extra = dir.join("extra.sql");
    std::fs::write(&extra, "SELECT 1;").unwrap();
    refused(
        &dump,
        &format!("extra_sql = [\"{}\"]\n{STASH_RULE}", extra.display()),
        &[format!(
            "rows of public.user written after its COPY: {PROD_USERS} (by code in the dump)"
        )],
    )
    .await;
}

#[tokio::test]
async fn tables_changed_after_their_data_fail_the_run_naming_the_change() {
    let rules = contact_rules("public.contact", "email");
    for (after, change) in [
        (
            "ALTER TABLE public.contact RENAME COLUMN note TO memo;",
            "public.contact.note was renamed to public.contact.memo",
        ),
        (
            "ALTER TABLE public.contact ADD COLUMN extra text;",
            "public.contact.extra (text) was added",
        ),
        (
            "ALTER TABLE public.contact ALTER COLUMN note TYPE character varying;",
            "public.contact.note was retyped from text to character varying",
        ),
        (
            "CREATE TABLE public.parent (id integer, email text, note text) PARTITION BY LIST (id);\n\
             ALTER TABLE ONLY public.parent ATTACH PARTITION public.contact FOR VALUES IN (1, 2);",
            "public.contact's parents (whose rules it follows) changed from none to public.parent",
        ),
    ] {
        let dump = hostile(&format!("{}{after}", contacts("public.contact")));
        refused(
            &dump,
            &rules,
            &[
                "the tables changed after the masking classified them".into(),
                change.into(),
            ],
        )
        .await;
    }
    // Rows in a table the masking never classified: created after the data, filled by code
    // of the dump's (an index expression) from what another table holds.
    let late = hostile(&format!(
        "{}{}\nCREATE TABLE public.late (v text);\n\
         CREATE FUNCTION public.fill() RETURNS integer LANGUAGE plpgsql AS $f$ BEGIN \
         INSERT INTO public.late VALUES (public.unstash()); RETURN 1; END $f$;\n\
         CREATE FUNCTION public.fill(text) RETURNS integer LANGUAGE plpgsql IMMUTABLE \
         AS $f$ BEGIN RETURN public.fill(); END $f$;\n\
         CREATE INDEX stash_fill ON public.stash ((public.fill(v)));",
        contacts("public.contact"),
        stash()
    ));
    refused(
        &late,
        &format!("{STASH_RULE}\n{rules}"),
        &["public.late holds rows the masking never saw".into()],
    )
    .await;
}

/// A production database with the prod-shaped data and `sql` run after it, dumped.
fn production(sql: &str) -> (String, Vec<u8>) {
    let prod = prod_postgres();
    let db = unique("parts");
    seed_prod(prod, &db, 5);
    psql_as_owner(prod, &db, &["-c", sql]);
    let dump = dump_sql(prod, &db);
    (db, dump)
}

/// A partitioned table with two partitions (one with a rule of its own), and an inheritance
/// parent with a child; each row's email is production's.
const PARTITIONED: &str = "
    CREATE TABLE event (id integer, at date, email text, note text) PARTITION BY RANGE (at);
    CREATE TABLE event_2024 PARTITION OF event FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE event_2025 PARTITION OF event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    INSERT INTO event VALUES (1, '2024-03-01', 'ev2024@parts-example.org', 'pn-2024'),
                             (2, '2025-03-01', 'ev2025@parts-example.org', 'pn-2025');
    CREATE TABLE person (id integer, email text);
    CREATE TABLE employee (badge text) INHERITS (person);
    INSERT INTO person VALUES (1, 'person@parts-example.org');
    INSERT INTO employee VALUES (2, 'employee@parts-example.org', 'B-7');";

/// Rules on the parents only, but for one partition's note.
const PARENT_RULES: &str = r#"
[[anonymize.column]]
table = "event"
column = "email"
mask = "email"

[[anonymize.column]]
table = "event"
column = "note"
mask = "text"

[[anonymize.column]]
table = "event_2025"
column = "note"
mask = "keep"

[[anonymize.column]]
table = "person"
column = "email"
mask = "email"

[[anonymize.column]]
table = "employee"
column = "badge"
mask = "keep"
"#;

const PARTITION_VALUES: &[&str] = &[
    "ev2024@parts-example.org",
    "ev2025@parts-example.org",
    "ev2026@parts-example.org",
    "person@parts-example.org",
    "employee@parts-example.org",
    "pn-2024",
];

#[tokio::test]
async fn rules_on_a_parent_mask_its_partitions_and_children_and_a_new_partition_too() {
    let (source, dump) = production(PARTITIONED);
    let mut env = Env::empty().await;
    env.snapshot_database = source.clone();
    env.anonymize = PARENT_RULES.into();
    env.upload_taken(zstd(&dump), Utc::now() - chrono::Duration::hours(2), true)
        .await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_absent(&env, PARTITION_VALUES);
    // The partition's own rule won: its note is kept; the other's was masked.
    assert_eq!(
        env.query("SELECT length(note), note = 'pn-2024' FROM event_2024"),
        "7|f"
    );
    assert_eq!(env.query("SELECT note FROM event_2025"), "pn-2025");
    assert_eq!(
        env.query("SELECT count(*) FROM person WHERE email LIKE 'anon\\_%'"),
        "2"
    );
    // The report speaks of the partitioned table, not of its partitions.
    let report = out.json();
    assert_eq!(
        report["masked_values"]["public.event"]["email"], 2,
        "{report}"
    );
    assert!(
        report["masked_values"].get("public.event_2024").is_none(),
        "{report}"
    );

    // Production adds a partition; the next dump restores with no change to the rules.
    psql_as_owner(
        prod_postgres(),
        &source,
        &["-c", "CREATE TABLE event_2026 PARTITION OF event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
                 INSERT INTO event VALUES (3, '2026-03-01', 'ev2026@parts-example.org', 'pn-2026');"],
    );
    env.upload_taken(
        zstd(&dump_sql(prod_postgres(), &source)),
        Utc::now() - chrono::Duration::hours(1),
        true,
    )
    .await;
    let rules = env.run(&["--json", "rules"]).await;
    assert_eq!(rules.code, 0, "{rules:?}");
    let listed: Vec<String> = rules.json()["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}.{}",
                c["table"].as_str().unwrap(),
                c["column"].as_str().unwrap()
            )
        })
        .filter(|c| c.contains("event") || c.contains("person") || c.contains("employee"))
        .collect();
    assert_eq!(
        listed,
        [
            "public.employee.badge",
            "public.event.email",
            "public.event.note",
            "public.event_2025.note",
            "public.person.email",
        ]
    );
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_absent(&env, PARTITION_VALUES);
    assert_eq!(env.query("SELECT count(*) FROM event_2026"), "1");
}
