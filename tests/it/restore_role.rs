//! The restore role after a hostile dump: the dump's code runs as it, and a role may change
//! its own password and settings. Whatever the dump did to it is undone and reported, with
//! the README's recommended roles (`database.restore_password_file`) and with a refresh role
//! that may set the restore role's password for each run (CREATEROLE); a login with the
//! dump's password fails, and the next clean run succeeds. `extra_sql` never reaches a
//! schema the dump named like the restore role.
//!
//! The servers here check passwords (the harness's trust them): a server of their own each.

use crate::common;

use std::str::FromStr;
use std::sync::OnceLock;

use common::Postgres;
use common::env::Env;
use common::fixtures::zstd;
use common::staging::{REFRESH_ROLE, RESTORE_PASSWORD, create_roles, prod_dump, refresh_url};
use staging_refresh::state::StateFile;

/// A server whose roles log in with their passwords over TCP, but for the superuser and the
/// refresh role (whose URL has none); with `createrole`, the refresh role may set the
/// restore role's password for each run.
fn server(createrole: bool) -> &'static Postgres {
    static PLAIN: OnceLock<Postgres> = OnceLock::new();
    static CREATEROLE: OnceLock<Postgres> = OnceLock::new();
    let (cell, name) = match createrole {
        false => (&PLAIN, "postgres-passwords"),
        true => (&CREATEROLE, "postgres-passwords-createrole"),
    };
    cell.get_or_init(|| {
        let pg = Postgres::start(name);
        create_roles(&pg);
        if createrole {
            pg.query("postgres", &format!("ALTER ROLE {REFRESH_ROLE} CREATEROLE"));
        }
        std::fs::write(
            pg.dir.join("data/pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 host all {REFRESH_ROLE} 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        pg.query("postgres", "SELECT pg_reload_conf()");
        pg
    })
}

/// A staging database on `server(createrole)`. With CREATEROLE the refresh creates the
/// restore role itself, as the README has it (on PostgreSQL 16 a CREATEROLE role may alter
/// only the roles it created).
async fn env(createrole: bool) -> Env {
    let pg = server(createrole);
    let env = Env::on(pg, refresh_url(pg)).await;
    assert_eq!(env.restore_password_file.is_none(), createrole);
    if createrole {
        pg.query("postgres", &format!("DROP ROLE \"{}\"", restore_role(&env)));
    }
    env
}

fn restore_role(env: &Env) -> String {
    format!("{}_restore", env.db)
}

/// `prod_dump()` with `sql` at its end, before pg_dump's closing comment.
fn append(sql: &str) -> Vec<u8> {
    let text = std::str::from_utf8(prod_dump()).unwrap();
    let end = text
        .find("\n--\n-- PostgreSQL database dump complete")
        .expect("a complete dump");
    format!("{}\n{sql}\n{}", &text[..end], &text[end..]).into_bytes()
}

/// A dump whose code (a column default, evaluated by its COPY) runs the PL/pgSQL
/// `statements` as the restore role: the role may change itself.
fn dump_changing_its_role(statements: &[String]) -> Vec<u8> {
    let body: String = statements.iter().map(|s| format!("{s};\n")).collect();
    append(&format!(
        "CREATE FUNCTION public.change_role() RETURNS integer LANGUAGE plpgsql AS $f$\n\
         BEGIN\n{body}RETURN 1;\nEND $f$;\n\
         CREATE TABLE public.changed (id integer, v integer DEFAULT public.change_role());\n\
         COPY public.changed (id) FROM stdin;\n1\n\\.\n"
    ))
}

/// `sql`, run from PL/pgSQL.
fn execute(sql: &str) -> String {
    format!("EXECUTE '{}'", sql.replace('\'', "''"))
}

/// The restore role's settings, in every database: `database|setting`, one a line.
fn role_settings(env: &Env) -> String {
    env.pg.query(
        "postgres",
        &format!(
            "SELECT coalesce(d.datname, '*') || '|' || array_to_string(s.setconfig, ',')
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname = '{}' ORDER BY 1",
            restore_role(env)
        ),
    )
}

/// Whether the restore role logs in to the maintenance database with `password`.
async fn logs_in(env: &Env, password: &str) -> bool {
    let url = format!(
        "postgres://{}:{password}@127.0.0.1:{}/postgres",
        restore_role(env),
        env.pg.port
    );
    let config = tokio_postgres::Config::from_str(&url).unwrap();
    config.connect(tokio_postgres::NoTls).await.is_ok()
}

/// The last run's report, as the state file keeps it.
fn last_report(env: &Env) -> serde_json::Value {
    let state = StateFile::in_dir(&env.state_dir()).read().unwrap();
    serde_json::to_value(state.last.expect("a run was recorded")).unwrap()
}

async fn a_dumps_changes_to_its_own_role_are_undone(createrole: bool) {
    let env = env(createrole).await;
    let role = restore_role(&env);
    env.init_target().await;

    // Settings that would deny every later run, or make its server read literals otherwise
    // than the filter does; the sessions the run opens after them start from known settings,
    // so this run succeeds, and they are undone.
    let settings = dump_changing_its_role(&[
        execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = on"),
        execute("ALTER ROLE CURRENT_USER SET standard_conforming_strings = off"),
        execute("ALTER ROLE CURRENT_USER SET search_path = hijacked, public"),
        execute("ALTER ROLE CURRENT_USER IN DATABASE postgres SET work_mem = '64kB'"),
        "EXECUTE pg_catalog.format('ALTER ROLE CURRENT_USER IN DATABASE %I SET \
         default_transaction_read_only = on', pg_catalog.current_database())"
            .to_owned(),
    ]);
    env.upload(zstd(&settings), None).await;
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let reset = out.json()["restore_role_reset"].to_string();
    for found in [
        "it had settings in every database: default_transaction_read_only, \
         standard_conforming_strings, search_path",
        "it had settings in database postgres: work_mem",
        &format!(
            "it had settings in database {}__refresh: default_transaction_read_only",
            env.db
        ),
    ] {
        assert!(reset.contains(found), "{found} not in {reset}");
    }
    assert!(
        out.stderr
            .contains("the restore role was changed (by code in the dump)"),
        "{out:?}"
    );
    assert_eq!(role_settings(&env), "");

    // A password of the dump author's own: the sessions the run opens after it cannot log in
    // (the run fails), and it is undone.
    let password = dump_changing_its_role(&[
        execute("ALTER ROLE CURRENT_USER PASSWORD 'the-dump-authors-password'"),
        execute("ALTER ROLE CURRENT_USER SET statement_timeout = 1"),
    ]);
    env.upload(zstd(&password), None).await;
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("password authentication failed for user"),
        "{out:?}"
    );
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    let reset = last_report(&env)["restore_role_reset"].to_string();
    assert!(reset.contains("its password had been changed"), "{reset}");
    assert!(
        reset.contains("it had settings in every database: statement_timeout"),
        "{reset}"
    );
    assert!(!logs_in(&env, "the-dump-authors-password").await);
    assert_eq!(logs_in(&env, RESTORE_PASSWORD).await, !createrole);
    let login = env.pg.query(
        "postgres",
        &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'"),
    );
    assert_eq!(login, if createrole { "f" } else { "t" });
    assert_eq!(role_settings(&env), "");

    // The next clean run succeeds, and finds nothing to put back.
    env.upload(zstd(prod_dump()), None).await;
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["restore_role_reset"], serde_json::json!([]));
    assert_eq!(out.json()["restore_role_left"], serde_json::json!([]));
}

#[tokio::test]
async fn a_dumps_changes_to_its_own_role_are_undone_with_the_restore_password() {
    a_dumps_changes_to_its_own_role_are_undone(false).await;
}

#[tokio::test]
async fn a_dumps_changes_to_its_own_role_are_undone_with_createrole() {
    a_dumps_changes_to_its_own_role_are_undone(true).await;
}

#[tokio::test]
async fn what_a_crashed_run_left_on_the_role_is_undone_before_the_next_dump_runs() {
    // A run that died left the dump's settings and password on the role: the next run puts
    // them back before the dump's first statement, and reports it.
    let env = env(false).await;
    let role = restore_role(&env);
    env.pg.query(
        "postgres",
        &format!(
            "ALTER ROLE \"{role}\" PASSWORD 'left-by-a-dump'; \
             ALTER ROLE \"{role}\" SET default_transaction_read_only = on"
        ),
    );
    env.upload(zstd(prod_dump()), None).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let reset = out.json()["restore_role_reset"].to_string();
    for found in [
        "before this run, its password had been changed",
        "before this run, it had settings in every database: default_transaction_read_only",
    ] {
        assert!(reset.contains(found), "{found} not in {reset}");
    }
    assert!(!logs_in(&env, "left-by-a-dump").await);
    assert!(logs_in(&env, RESTORE_PASSWORD).await);
}

#[tokio::test]
async fn extra_sql_never_reaches_a_schema_named_like_the_restore_role() {
    // The dump makes a schema "$user" would find first, holding a table named like the
    // application's: the operator's unqualified UPDATE must still reach public's.
    let mut env = env(false).await;
    let role = restore_role(&env);
    let dump = append(&format!(
        "CREATE TABLE public.counter (n integer);\n\
         COPY public.counter (n) FROM stdin;\n1\n\\.\n\
         CREATE SCHEMA \"{role}\";\n\
         CREATE TABLE \"{role}\".counter (n integer);\n\
         COPY \"{role}\".counter (n) FROM stdin;\n1\n\\.\n"
    ));
    env.upload(zstd(&dump), None).await;
    let extra = env.dir.join("extra.sql");
    std::fs::write(&extra, "UPDATE counter SET n = n + 41;\n").unwrap();
    env.anonymize = format!("extra_sql = [{:?}]\n", extra.display().to_string());
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.query("SELECT n FROM public.counter"), "42");
    assert_eq!(env.query(&format!("SELECT n FROM \"{role}\".counter")), "1");
}
