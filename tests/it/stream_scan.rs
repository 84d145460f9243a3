//! The PII scan in the restore stream: the values of kept columns are classified as they
//! stream past, the database scan reads only what the server computed (stored generated
//! columns, materialized views), and every restored table must hold only its COPYs' rows, so
//! what was scanned is what staging serves.

use crate::common;

use base64::Engine;

use common::env::{Env, inject};
use common::staging::prod_dump;

/// A production value no rule masks: the scan must find it wherever the server stores it.
const JANE: &str = "jane.stream@mailbox-example.org";

/// SQL computing [`JANE`] on the server, from text the stream reads as nothing personal.
fn computed_jane() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(JANE);
    format!("pg_catalog.convert_from(pg_catalog.decode('{encoded}', 'base64'), 'UTF8')")
}

/// Keeps every column of the tables the tests add; findings fail the run.
const KEEP: &str = "on_unmasked_pii = \"fail\"\n\
    [[anonymize.table]]\ntable = \"public.ticket\"\nmode = \"keep\"\n\
    [[anonymize.table]]\ntable = \"public.computed\"\nmode = \"keep\"\n\
    [[anonymize.table]]\ntable = \"public.computed_view\"\nmode = \"keep\"\n";

/// The prod-shaped dump with `sql` after its data.
fn with(sql: &str) -> Vec<u8> {
    inject(prod_dump(), "\\.", sql)
}

#[tokio::test]
async fn kept_copy_values_are_found_in_the_stream_and_the_steps_are_timed() {
    let dump = with(&format!(
        "CREATE TABLE public.ticket (id integer, contact_email text, body text[], meta jsonb);\n\
         COPY public.ticket (id, contact_email, body, meta) FROM stdin;\n\
         1\t{JANE}\t{{\"call +44 20 7946 0958\",x}}\t\\N\n\
         2\t\\N\t{{\"card 4111\\0401111 1111 1111\",\"ann\\\\@mailbox-example.org\"}}\t\
         {{\"to\": \"omar\\\\u0040mailbox-example.org\"}}\n\\.\n"
    ));
    let mut env = Env::new(&dump).await;
    env.anonymize = KEEP.replace("on_unmasked_pii = \"fail\"\n", "");
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    let found = common::findings(&report);
    for expected in [
        "public.ticket.contact_email email column name 1",
        "public.ticket.contact_email email values 1",
        "public.ticket.body phone values 1",
        // `\\040` in the COPY is an escaped space: the server stores a card number.
        "public.ticket.body card values 1",
        // Escapes the server undoes hide nothing: an array element's backslash, jsonb's
        // `\u0040`.
        "public.ticket.body email values 1",
        "public.ticket.meta email values 1",
    ] {
        assert!(found.contains(&expected.into()), "{expected}: {found:?}");
    }
    assert!(!out.stdout.contains("jane."), "a value was reported");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["data", "post-data", "stream-scan", "verification", "scan"]
    );
    // The operator's summary shows them under their phases.
    let status = env.run(&["status"]).await;
    assert!(status.stdout.contains("post-data"), "{status:?}");
    assert!(
        status.stdout.contains("PII scan in the stream"),
        "{status:?}"
    );
}

#[tokio::test]
async fn values_the_server_computes_are_scanned_in_the_database() {
    let dump = with(&format!(
        "CREATE FUNCTION public.jane(integer) RETURNS text LANGUAGE sql IMMUTABLE \
         AS $f$SELECT {}$f$;\n\
         CREATE TABLE public.computed (id integer, note text, \
         contact text GENERATED ALWAYS AS (public.jane(id)) STORED);\n\
         COPY public.computed (id, note) FROM stdin;\n1\tfirst\n\\.\n\
         CREATE MATERIALIZED VIEW public.computed_view AS SELECT public.jane(id) AS address \
         FROM public.computed WITH NO DATA;\n\
         REFRESH MATERIALIZED VIEW public.computed_view;",
        computed_jane()
    ));
    let mut env = Env::new(&dump).await;
    env.anonymize = KEEP.into();
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "unmasked PII found");
    let found = out.findings();
    for expected in [
        "public.computed.contact email values 1",
        "public.computed_view.address email values 1",
    ] {
        assert!(found.contains(&expected.into()), "{expected}: {found:?}");
    }
    assert!(!out.stderr.contains(JANE), "a value was reported");
}

#[tokio::test]
async fn a_row_written_after_its_copy_fails_the_run_in_a_table_without_masked_columns() {
    // The table's values stream past clean; an index build of the post-data section writes
    // production's value into it afterwards, by code of the dump's.
    let dump = with(&format!(
        "CREATE TABLE public.ticket (id integer, body text);\n\
         COPY public.ticket (id, body) FROM stdin;\n1\tfirst\n2\tsecond\n\\.\n\
         CREATE FUNCTION public.leak() RETURNS integer LANGUAGE plpgsql AS $f$ BEGIN \
         UPDATE public.ticket SET body = {} WHERE id = 1; RETURN 1; END $f$;\n\
         CREATE FUNCTION public.leak(integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE \
         AS $f$ BEGIN RETURN public.leak(); END $f$;\n\
         CREATE INDEX ticket_leak ON public.ticket ((public.leak(id)));",
        computed_jane()
    ));
    let mut env = Env::new(&dump).await;
    // Findings only warn: the row-version check is what stops the run.
    env.anonymize = KEEP.replace("on_unmasked_pii = \"fail\"\n", "");
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        "rows of public.ticket written after its COPY: 1 (by code in the dump)",
    );
}
