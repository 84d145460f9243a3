//! A hostile dump, as production compromised would write it: whatever it makes the server run
//! is refused or contained. The live database, its settings, other databases, other sessions
//! and the roles stay as they were; staging gets only anonymized rows, owned by
//! `database.owner`, in a database with the settings the refresh gives it. With the role the
//! README recommends, and with a superuser configuration.

use crate::common;

use std::str::FromStr;
use std::sync::OnceLock;

use common::Postgres;
use common::env::Env;
use common::fixtures::zstd;
use common::staging::{OWNER, REFRESH_ROLE, prod_dump, refresh_role_url};

/// `dump` with `sql` added at its end, before pg_dump's closing comment.
fn append(dump: &[u8], sql: &str) -> Vec<u8> {
    let text = std::str::from_utf8(dump).unwrap();
    let end = text
        .find("\n--\n-- PostgreSQL database dump complete")
        .expect("a complete dump");
    format!("{}\n{sql}\n{}", &text[..end], &text[end..]).into_bytes()
}

/// A staging server of its own for the superuser configuration: the opt-in marker table
/// it creates is the superuser's, which the refresh role could not write to.
fn superuser_server() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start("postgres-superuser"))
}

/// A staging server of its own for the recommended role's containment check, which compares
/// server-wide catalogs before and after the run: [`outside`] counts every role's and
/// database's settings, which other tests add to on the shared server meanwhile.
fn quiet_server() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start("postgres-containment"))
}

async fn env_with(dump: &[u8], superuser: bool) -> Env {
    let env = if superuser {
        let pg = superuser_server();
        common::staging::create_roles(pg);
        Env::on(pg, pg.url("postgres")).await
    } else {
        Env::empty().await
    };
    env.upload(zstd(dump), None).await;
    env
}

/// The dump line `needle` starts on.
fn line_of(dump: &[u8], needle: &str) -> usize {
    std::str::from_utf8(dump)
        .unwrap()
        .lines()
        .position(|l| l.starts_with(needle))
        .unwrap()
        + 1
}

#[tokio::test]
async fn a_dump_ending_inside_its_own_transaction_is_refused() {
    // Left open, the anonymization would join this transaction and the deferred trigger
    // would write an unmasked email at its COMMIT, after verification.
    let dump = append(
        prod_dump(),
        "CREATE FUNCTION public.put_back() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
         UPDATE public.\"user\" SET email = 'jane@prod.example' WHERE id = NEW.id; \
         RETURN NULL; END $f$;\n\
         BEGIN;\n\
         CREATE CONSTRAINT TRIGGER put_back AFTER UPDATE ON public.\"user\" \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.put_back();",
    );
    let env = env_with(&dump, false).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        &format!(
            "dump line {}: refusing to restore \"BEGIN\": the dump ends inside this transaction",
            line_of(&dump, "BEGIN;")
        ),
    );
}

#[tokio::test]
async fn settings_the_lexer_depends_on_cannot_be_changed() {
    for set in [
        "SET standard_conforming_strings = of;",
        "SET SESSION standard_conforming_strings = off;",
        "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);",
        "SET client_encoding = 'SJIS';",
    ] {
        // After the SET, the lexer would see one statement where the server sees two.
        let dump = append(
            prod_dump(),
            &format!(
                "{set}\nSELECT 'a\\' , ' ; ALTER ROLE staging_refresh CONNECTION LIMIT 1 ; -- ';"
            ),
        );
        let env = env_with(&dump, false).await;
        let out = env.refresh().await;
        env.assert_failed_cleanly(
            &out,
            &format!("dump line {}: refusing to restore", line_of(&dump, set)),
        );
    }
}

/// What the refresh must never change: the roles, another database and its settings.
fn outside(pg: &Postgres, other: &str) -> String {
    pg.query(
        "postgres",
        &format!(
            "SELECT string_agg(format('%s %s %s %s %s %s', rolname, rolsuper, rolcreatedb,
                 rolcanlogin, rolconnlimit, coalesce(rolpassword, '-')), '; ' ORDER BY rolname)
             FROM pg_authid WHERE rolname IN ('staging_refresh', '{OWNER}', 'postgres', 'backdoor')
             UNION ALL
             SELECT (SELECT count(*) FROM pg_db_role_setting)::text
             UNION ALL
             SELECT format('%s %s %s %s', datname, pg_get_userbyid(datdba), datconnlimit, datacl)
             FROM pg_database WHERE datname = '{other}'"
        ),
    )
}

/// A database's own settings: owner, connection limit, parameters, ACL.
fn database_settings(pg: &Postgres, db: &str) -> String {
    pg.query(
        "postgres",
        &format!(
            "SELECT format('%s %s %s %s', pg_get_userbyid(d.datdba), d.datconnlimit,
                 (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0),
                 (SELECT string_agg(a::text, ',' ORDER BY a::text)
                  FROM unnest(coalesce(d.datacl, acldefault('d', d.datdba))) a))
             FROM pg_database d WHERE datname = '{db}'"
        ),
    )
}

/// A plpgsql function that tries to reach beyond the scratch database, swallowing each
/// refusal so that the next attempt runs too; first it tries to leave the restore role for
/// the session's login role or the refresh role (the restore logs in as the restore role,
/// so there is nothing to go back to).
fn hostile_function(live: &str, other: &str) -> String {
    let attempts = [
        "PERFORM pg_catalog.set_config('role', 'none', false)".to_owned(),
        format!("PERFORM pg_catalog.set_config('role', '{REFRESH_ROLE}', false)"),
        "PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
         WHERE pid <> pg_catalog.pg_backend_pid()"
            .to_owned(),
        format!("EXECUTE 'ALTER DATABASE \"{live}\" CONNECTION LIMIT 0'"),
        format!("EXECUTE 'ALTER DATABASE \"{live}\" SET default_transaction_read_only = on'"),
        format!("EXECUTE 'ALTER DATABASE \"{live}\" RENAME TO \"{live}_gone\"'"),
        format!("EXECUTE 'ALTER DATABASE \"{other}\" CONNECTION LIMIT 0'"),
        "EXECUTE 'ALTER ROLE staging_refresh PASSWORD ''pwned'''".to_owned(),
        format!("EXECUTE 'ALTER ROLE {OWNER} SET work_mem = ''1MB'''"),
        "EXECUTE 'CREATE ROLE backdoor SUPERUSER LOGIN'".to_owned(),
        // The scratch database's own settings, which its owner may change.
        "EXECUTE pg_catalog.format('ALTER DATABASE %I CONNECTION LIMIT 0', \
         pg_catalog.current_database())"
            .to_owned(),
        "EXECUTE pg_catalog.format('ALTER DATABASE %I SET default_transaction_read_only = on', \
         pg_catalog.current_database())"
            .to_owned(),
        "EXECUTE pg_catalog.format('REVOKE ALL ON DATABASE %I FROM PUBLIC', \
         pg_catalog.current_database())"
            .to_owned(),
    ];
    let body: String = attempts
        .iter()
        .map(|a| format!("BEGIN {a}; EXCEPTION WHEN OTHERS THEN NULL; END;\n"))
        .collect();
    format!(
        "CREATE FUNCTION public.evil() RETURNS integer LANGUAGE plpgsql AS $f$\n\
         BEGIN\n{body}RETURN 1;\nEND $f$;\n\
         CREATE FUNCTION public.evil_immutable() RETURNS integer LANGUAGE plpgsql IMMUTABLE \
         AS $f$ BEGIN RETURN public.evil(); END $f$;\n\
         CREATE FUNCTION public.backdoor(sql text) RETURNS void LANGUAGE plpgsql \
         SECURITY DEFINER AS $f$ BEGIN EXECUTE sql; END $f$;\n\
         CREATE TABLE public.evil_default (id integer, v integer DEFAULT public.evil());\n\
         CREATE TABLE public.evil_check (v integer CHECK (public.evil() = 1));\n\
         COPY public.evil_default (id) FROM stdin;\n1\n\\.\n\
         COPY public.evil_check (v) FROM stdin;\n1\n\\.\n\
         CREATE INDEX evil_index ON public.evil_default ((v + public.evil_immutable()));\n\
         CREATE MATERIALIZED VIEW public.evil_view AS SELECT public.evil() AS v WITH NO DATA;\n\
         REFRESH MATERIALIZED VIEW public.evil_view;"
    )
}

async fn hostile_functions_are_contained(superuser: bool) {
    let mut env = if superuser {
        env_with(b"", true).await
    } else {
        let pg = quiet_server();
        Env::on(pg, refresh_role_url(pg)).await
    };
    let pg = env.pg;
    let other = format!("{}_other", env.db);
    pg.create_db(&other);
    let dump = append(prod_dump(), &hostile_function(&env.db, &other));
    env.upload(zstd(&dump), None).await;
    // A session of another role on the live database (it sees backend_type NULL) and one
    // on another database.
    let backend = common::unique("backend");
    pg.query("postgres", &format!("CREATE ROLE {backend} LOGIN"));
    let url = |db: &str, role: &str| format!("postgres://{role}@127.0.0.1:{}/{db}", pg.port);
    let connect = |url: String| async move {
        let (client, connection) = tokio_postgres::Config::from_str(&url)
            .unwrap()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let live_session = connect(url(&env.db, &backend)).await;
    let other_session = connect(url(&other, "staging_refresh")).await;
    let before = outside(pg, &other);
    let live_before = database_settings(pg, &env.db);
    let login_before = restore_login(&env);
    env.sections
        .push_str("\n[restore]\nstatement_timeout = \"5min\"\n");

    // Held once the dump ran and the anonymization committed, before the cutover.
    env.init_target().await;
    let mut run = env.command(&["--json", "run", "--skip-media"]);
    run.env(staging_refresh::fault::VAR, "anonymize.committed:pause");
    let child = common::spawn(run);
    common::paused(&child).await;
    // Nothing outside the scratch database changed; every other session lives on.
    assert_eq!(outside(pg, &other), before);
    assert_eq!(database_settings(pg, &env.db), live_before);
    live_session.simple_query("SELECT 1").await.unwrap();
    other_session.simple_query("SELECT 1").await.unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let out = common::finish(child).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();

    // The cutover ended the live database's sessions, and nothing else changed.
    assert_eq!(outside(pg, &other), before);
    other_session.simple_query("SELECT 1").await.unwrap();
    // The recommended role keeps its login, with the operator's password put back afresh
    // (tests/it/restore_role.rs logs in with it); a superuser sets one for the run and takes
    // it back.
    assert_eq!(env.restore_password_file.is_some(), !superuser);
    if superuser {
        assert_eq!(restore_login(&env), "f -");
    } else {
        assert!(
            login_before.starts_with("t SCRAM-SHA-256$"),
            "{login_before}"
        );
        assert!(
            restore_login(&env).starts_with("t SCRAM-SHA-256$"),
            "{}",
            restore_login(&env)
        );
    }
    assert_eq!(
        database_settings(pg, &format!("{}__previous", env.db)),
        live_before
    );
    // What the dump did to the scratch database itself was reported and undone.
    let reset = report["database_settings_reset"].to_string();
    for found in [
        "connection limit was 0",
        "default_transaction_read_only",
        "privileges",
    ] {
        assert!(reset.contains(found), "{found}: {reset}");
    }
    assert_eq!(
        database_settings(pg, &env.db),
        format!("{OWNER} -1  =Tc/{OWNER},{OWNER}=CTc/{OWNER}")
    );
    // Everything is owned by database.owner; the restore role keeps nothing.
    assert_eq!(
        env.query(&format!(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relowner <> '{OWNER}'::regrole
             UNION ALL SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.proowner <> '{OWNER}'::regrole"
        )),
        "0\n0"
    );
    assert_eq!(
        pg.query(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_shdepend WHERE refobjid = '{}_restore'::regrole",
                env.db
            )
        ),
        "0"
    );
    assert_eq!(
        report["security_definer_functions"],
        serde_json::json!(["backdoor(text)"])
    );
    // The backend's role writes.
    pg.query(
        &env.db,
        &format!("SET ROLE {OWNER}; CREATE TABLE public.written (x int); INSERT INTO public.written VALUES (1)"),
    );
}

#[tokio::test]
async fn hostile_functions_reach_nothing_beyond_the_scratch_database() {
    hostile_functions_are_contained(false).await;
}

#[tokio::test]
async fn hostile_functions_reach_nothing_beyond_the_scratch_database_as_a_superuser() {
    hostile_functions_are_contained(true).await;
}

#[tokio::test]
async fn row_security_rules_and_shadowed_functions_hide_no_row_from_the_anonymization() {
    // The email column is varchar before its data (retyped after it, the run fails: the
    // reconciliation), so a lower(varchar) of the dump's could stand in for pg_catalog's.
    let varchar = before(
        prod_dump(),
        "COPY public.\"user\" ",
        "ALTER TABLE public.\"user\" ALTER COLUMN email TYPE character varying;",
    );
    let dump = append(
        &varchar,
        "CREATE FUNCTION public.lower(character varying) RETURNS text LANGUAGE sql IMMUTABLE \
         AS $f$SELECT 'x@staging.invalid'$f$;\n\
         CREATE RULE keep_emails AS ON UPDATE TO public.\"user\" DO INSTEAD NOTHING;\n\
         CREATE POLICY hide ON public.\"user\" \
         USING (CURRENT_USER::text NOT LIKE '%restore' OR id::text < '8');\n\
         ALTER TABLE public.\"user\" ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE public.\"user\" FORCE ROW LEVEL SECURITY;",
    );
    for superuser in [false, true] {
        let env = env_with(&dump, superuser).await;
        let out = env.refresh().await;
        assert_eq!(out.code, 0, "{out:?}");
        // As the server's superuser, who no policy hides a row from.
        assert_eq!(
            env.query(
                "SELECT count(*) FROM \"user\" WHERE email NOT LIKE 'anon\\_%' \
                 AND full_name <> 'Staging Admin'"
            ),
            "0"
        );
        // Staging keeps production's policy and rule.
        assert_eq!(
            env.query(
                "SELECT relrowsecurity, relforcerowsecurity, \
                 (SELECT ev_enabled FROM pg_rewrite WHERE rulename = 'keep_emails') \
                 FROM pg_class WHERE oid = 'public.\"user\"'::regclass"
            ),
            "t|t|O"
        );
    }
}

#[tokio::test]
async fn a_hung_statement_fails_with_the_statement_timeout() {
    let hang =
        "CREATE MATERIALIZED VIEW public.hang AS SELECT 1 AS x FROM pg_catalog.pg_sleep(100000);";
    let dump = append(prod_dump(), hang);
    let mut env = env_with(&dump, false).await;
    env.sections
        .push_str("\n[restore]\nstatement_timeout = \"2s\"\n");
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        &format!(
            "dump line {}: ERROR: canceling statement due to statement timeout",
            line_of(&dump, hang)
        ),
    );
}

#[tokio::test]
async fn a_dump_that_lifts_the_statement_timeout_still_ends_at_the_statement_timeout() {
    // A column default lifts the session's own timeout as its COPY runs: the refresh cancels
    // the hung statement after it from the client.
    let hang =
        "CREATE MATERIALIZED VIEW public.hang AS SELECT 1 AS x FROM pg_catalog.pg_sleep(100000);";
    let dump = append(
        prod_dump(),
        &format!(
            "CREATE FUNCTION public.untimed() RETURNS integer LANGUAGE sql \
             AS $f$SELECT pg_catalog.set_config('statement_timeout', '0', false)::integer$f$;\n\
             CREATE TABLE public.untimed (id integer, v integer DEFAULT public.untimed());\n\
             COPY public.untimed (id) FROM stdin;\n1\n\\.\n{hang}"
        ),
    );
    let mut env = env_with(&dump, false).await;
    env.sections
        .push_str("\n[restore]\nstatement_timeout = \"2s\"\ntimeout = \"12h\"\n");
    let started = std::time::Instant::now();
    let out = env.refresh().await;
    env.assert_failed_cleanly(
        &out,
        &format!(
            "dump line {}: it ran longer than restore.statement_timeout (2s), so the refresh \
             cancelled it",
            line_of(&dump, hang)
        ),
    );
    // Not the sleep's 100000 s, nor restore.timeout's 12 h.
    assert!(started.elapsed().as_secs() < 120, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_trigger_that_lifts_the_anonymizations_statement_timeout_still_ends_at_it() {
    // extra_sql's UPDATE fires the dump's trigger, which lifts the anonymization
    // transaction's timeout for the statements after it; the refresh of a view that hangs
    // (only there: the restore's sessions run with synchronous_commit off) comes next.
    let dump = append(
        prod_dump(),
        "CREATE TABLE public.counter (n integer);\n\
         COPY public.counter (n) FROM stdin;\n1\n\\.\n\
         CREATE FUNCTION public.lift() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
         PERFORM pg_catalog.set_config('statement_timeout', '0', true); RETURN NULL; END $f$;\n\
         CREATE TRIGGER lift AFTER UPDATE ON public.counter \
         FOR EACH STATEMENT EXECUTE FUNCTION public.lift();\n\
         CREATE FUNCTION public.hang() RETURNS integer LANGUAGE plpgsql AS $f$ BEGIN \
         IF pg_catalog.current_setting('synchronous_commit') = 'on' THEN \
         PERFORM pg_catalog.pg_sleep(100000); END IF; RETURN 1; END $f$;\n\
         CREATE MATERIALIZED VIEW public.hangs AS SELECT public.hang() AS x;",
    );
    let mut env = env_with(&dump, false).await;
    let extra = env.dir.join("extra.sql");
    std::fs::write(&extra, "UPDATE counter SET n = 2;\n").unwrap();
    env.anonymize = format!("extra_sql = [{:?}]\n", extra.display().to_string());
    env.sections
        .push_str("\n[restore]\nstatement_timeout = \"2s\"\n");
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), env.refresh())
        .await
        .expect("the run ends within two minutes");
    env.assert_failed_cleanly(
        &out,
        "refreshing materialized view public.hangs: ERROR: canceling statement due to statement \
         timeout",
    );
}

/// Whether `env`'s restore role may log in, and its password hash (`-` for none).
fn restore_login(env: &Env) -> String {
    env.pg.query(
        "postgres",
        &format!(
            "SELECT format('%s %s', rolcanlogin, coalesce(rolpassword, '-')) FROM pg_authid \
             WHERE rolname = '{}_restore'",
            env.db
        ),
    )
}

#[tokio::test]
async fn without_a_restore_password_or_createrole_a_run_is_refused_before_any_change() {
    let mut env = env_with(prod_dump(), false).await;
    env.restore_password_file = None;
    env.init_target().await;
    let role_before = restore_login(&env);
    let out = env.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    let role = format!("{}_restore", env.db);
    for fix in [
        "database.restore_password_file".to_owned(),
        format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '...'; GRANT \"{role}\" TO \"{REFRESH_ROLE}\";"
        ),
        format!("ALTER ROLE \"{REFRESH_ROLE}\" CREATEROLE;"),
    ] {
        assert!(out.stderr.contains(&fix), "{fix} in {out:?}");
    }
    // What to do: the SQL, each statement a command of its own.
    let advice = out.stdout.split("What to do").nth(1).unwrap_or_default();
    for sql in [
        format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '...'; GRANT \"{role}\" TO \"{REFRESH_ROLE}\";"
        ),
        format!("ALTER ROLE \"{REFRESH_ROLE}\" CREATEROLE;"),
    ] {
        assert!(
            advice.contains(&format!("      {sql}\n")),
            "{sql} in {out:?}"
        );
    }
    assert_eq!(
        env.query("SELECT note FROM sentinel"),
        common::staging::SENTINEL
    );
    assert!(!env.database_exists(&format!("{}__refresh", env.db)));
    assert_eq!(env.backend_log(), "");
    assert_eq!(restore_login(&env), role_before);

    let check = env.run(&["check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    let line = check
        .stdout
        .lines()
        .find(|l| l.contains("restore role"))
        .unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("database.restore_password_file"),
        "{check:?}"
    );
}

#[tokio::test]
async fn a_cancelled_run_takes_back_the_restore_roles_login() {
    // A superuser sets the restore role a password for each run; it starts without one, as
    // the README has a CREATEROLE setup create it.
    let dump = append(
        prod_dump(),
        "CREATE MATERIALIZED VIEW public.slow AS SELECT 1 AS x FROM pg_catalog.pg_sleep(60);",
    );
    let env = env_with(&dump, true).await;
    env.pg.query(
        "postgres",
        &format!("ALTER ROLE \"{}_restore\" NOLOGIN PASSWORD NULL", env.db),
    );
    env.init_target().await;
    let mut run = env.command(&["run", "--skip-media"]);
    run.env(staging_refresh::fault::VAR, "restore.scratch-created:pause");
    let child = common::spawn(run);
    common::paused(&child).await;
    let during = restore_login(&env);
    assert!(during.starts_with("t SCRAM-SHA-256$"), "{during}");
    // Cancelled as the restore goes on: the signal waits for the process to continue.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let out = common::finish(child).await;
    env.assert_failed_cleanly(&out, "cancelled by a signal before cutover");
    assert_eq!(restore_login(&env), "f -");
}

/// `dump` with `sql` added before the line that starts with `needle`.
fn before(dump: &[u8], needle: &str, sql: &str) -> Vec<u8> {
    let text = std::str::from_utf8(dump).unwrap();
    let at = text.find(&format!("\n{needle}")).expect("the line") + 1;
    format!("{}{sql}\n{}", &text[..at], &text[at..]).into_bytes()
}

/// What the dump carries obfuscated and its code writes over the masked names.
const STASHED: &str = "Mallory Stashed-Name";

/// A keep table holding [`STASHED`] as base64 (its rule is [`STASH_RULE`]), and a function
/// that writes it into every user's name (once per call: not again from the UPDATE it
/// makes); an index expression calls it for each row indexed.
fn stash_and_rewrite() -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(STASHED);
    format!(
        "CREATE TABLE public.stash (v text);\n\
         COPY public.stash (v) FROM stdin;\n{encoded}\n\\.\n\
         CREATE FUNCTION public.rewrite() RETURNS integer LANGUAGE plpgsql AS $f$ BEGIN \
         IF pg_catalog.current_setting('x.busy', true) = 'on' THEN RETURN 1; END IF; \
         PERFORM pg_catalog.set_config('x.busy', 'on', true); \
         UPDATE public.\"user\" SET full_name = pg_catalog.convert_from(pg_catalog.decode( \
         (SELECT v FROM public.stash), 'base64'), 'UTF8'); \
         PERFORM pg_catalog.set_config('x.busy', 'off', true); RETURN 1; END $f$;\n\
         CREATE FUNCTION public.rewrite_immutable(anyelement) RETURNS integer LANGUAGE plpgsql IMMUTABLE \
         AS $f$ BEGIN RETURN public.rewrite(); END $f$;"
    )
}

const STASH_RULE: &str =
    "\n[[anonymize.column]]\ntable = \"public.stash\"\ncolumn = \"v\"\nmask = \"keep\"\n";

/// The run failed with `cause`, staging is as it was, and the stashed value is nowhere in it.
async fn rewritten_rows_fail(dump: &[u8], superuser: bool, cause: &str) {
    let mut env = env_with(dump, superuser).await;
    env.sections.push_str(STASH_RULE);
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, cause);
    let staging = common::fixtures::dump_sql(env.pg, &env.db);
    assert!(
        !String::from_utf8_lossy(&staging).contains(STASHED),
        "the stashed value reached staging"
    );
}

#[tokio::test]
async fn rows_code_of_the_dump_rewrites_after_the_masking_fail_the_run() {
    // After the data, as pg_dump orders it: an index build calls the function.
    let post_data = append(
        prod_dump(),
        &format!(
            "{}\nCREATE INDEX stash_rewrite ON public.stash ((public.rewrite_immutable(v)));",
            stash_and_rewrite()
        ),
    );
    // Before the users' data: every row the COPY inserts is indexed, and rewritten.
    let copy = "COPY public.\"user\" ";
    let during_copy = before(
        prod_dump(),
        copy,
        &format!(
            "{}\nCREATE INDEX user_rewrite ON public.\"user\" ((public.rewrite_immutable(id)));",
            stash_and_rewrite()
        ),
    );
    for superuser in [false, true] {
        rewritten_rows_fail(
            &post_data,
            superuser,
            &format!(
                "rows of public.user written after its COPY: {} (by code in the dump)",
                common::staging::PROD_USERS
            ),
        )
        .await;
        rewritten_rows_fail(
            &during_copy,
            superuser,
            &format!(
                "dump line {}: {} rows of public.\"user\" were written during its COPY by code \
                 in the dump, after the masking",
                line_of(&during_copy, copy),
                common::staging::PROD_USERS
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn a_trigger_created_before_the_data_fails_the_run() {
    let copy = "COPY public.\"user\" ";
    let dump = before(
        prod_dump(),
        copy,
        &format!(
            "{}\nCREATE FUNCTION public.unmask() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
             NEW.full_name := pg_catalog.convert_from(pg_catalog.decode( \
             (SELECT v FROM public.stash), 'base64'), 'UTF8'); RETURN NEW; END $f$;\n\
             CREATE TRIGGER unmask BEFORE INSERT ON public.\"user\" \
             FOR EACH ROW EXECUTE FUNCTION public.unmask();",
            stash_and_rewrite()
        ),
    );
    for superuser in [false, true] {
        rewritten_rows_fail(
            &dump,
            superuser,
            &format!(
                "dump line {}: public.\"user\" has a trigger before its data is loaded; \
                 pg_dump creates triggers after the data",
                line_of(&dump, copy)
            ),
        )
        .await;
    }
}
