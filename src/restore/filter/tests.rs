//! What the filter keeps, drops and refuses, statement by statement.

use super::super::statement::parse;
use super::*;

fn filter() -> Filter {
    Filter::new(
        150_018,
        ["staging_owner", "postgres"]
            .iter()
            .map(|r| r.to_string())
            .collect(),
        "app".into(),
    )
}

fn act(sql: &str) -> Result<Action, Refusal> {
    filter().statement(&parse(sql))
}

#[test]
fn dangerous_statements_are_refused_by_line() {
    for sql in [
        "ALTER SYSTEM SET archive_command = 'curl evil';",
        "CREATE ROLE backdoor SUPERUSER LOGIN PASSWORD 'x';",
        "alter user postgres password 'x';",
        "DROP GROUP staff;",
        "CREATE DATABASE other;",
        "DROP DATABASE app;",
        "COPY t TO PROGRAM 'sh -c id';",
        "COPY t FROM PROGRAM 'id';",
        "COPY t FROM '/etc/passwd';",
        "COPY (SELECT 1) TO stdout;",
        "SET ROLE postgres;",
        "SET SESSION AUTHORIZATION postgres;",
        "set local role postgres;",
        "RESET ROLE;",
        "DO $$ BEGIN PERFORM 1; END $$;",
        "LOAD 'evil.so';",
        "SET standard_conforming_strings = off;",
        "SET standard_conforming_strings TO 'off';",
        "GRANT postgres TO staging_owner;",
        // Not what pg_dump writes: the allowlist.
        "SELECT public.f();",
        "SELECT pg_catalog.setval('s', public.f(), true);",
        "SELECT pg_catalog.set_config('role', 'postgres', false);",
        "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);",
        "CALL public.p();",
        "ALTER DATABASE app SET default_transaction_read_only = on;",
        "SET default_transaction_read_only = on;",
        "SET SESSION standard_conforming_strings = off;",
        "SET standard_conforming_strings = of;",
        "SET standard_conforming_strings = E'off';",
        "SET client_encoding = 'SJIS';",
        "SET client_encoding = 'Shift_JIS';",
        "RESET ALL;",
        "VACUUM;",
        "NOTIFY x;",
        "INSERT INTO public.t SELECT public.f();",
        "START TRANSACTION;",
        "ROLLBACK;",
        "SAVEPOINT s;",
        "PREPARE TRANSACTION 'x';",
        "COMMIT;",
        "BEGIN ISOLATION LEVEL SERIALIZABLE;",
        "GRANT ALL ON DATABASE app TO PUBLIC;",
        "GRANT SET ON PARAMETER work_mem TO PUBLIC;",
        "COMMENT ON ROLE staging_owner IS 'x';",
        "CREATE TABLESPACE t LOCATION '/tmp';",
        // Rows from anywhere but a COPY, or COPY data read otherwise than as text.
        "CREATE TABLE public.t AS SELECT 'jane@example.org' AS email;",
        "CREATE UNLOGGED TABLE IF NOT EXISTS t (a) AS VALUES ('x');",
        "CREATE TABLE t AS EXECUTE p;",
        "SELECT 'jane@example.org' AS email INTO public.t;",
        "CREATE TEMP TABLE t (a text);",
        "CREATE TABLE t (LIKE public.u INCLUDING ALL);",
        "ALTER TABLE public.t * ADD COLUMN c text;",
        "COPY public.t (a) FROM stdin (DELIMITER ',');",
        "COPY public.t (a) FROM stdin WITH (FORMAT csv);",
        "COPY public.t (a) FROM stdin WITH BINARY;",
        "COPY BINARY public.t FROM stdin;",
        "COPY public.t (a) FROM stdin DELIMITER ',';",
    ] {
        let err = act(sql).expect_err(sql);
        assert_eq!(err.line, 1, "{sql}");
        assert!(
            err.to_string().starts_with("dump line 1: refusing"),
            "{err}"
        );
    }
}

#[test]
fn what_pg_dump_writes_is_kept() {
    for sql in [
        "SET standard_conforming_strings = on;",
        "SET transaction_timeout = 0;",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "COPY public.\"order\" (id, email) FROM stdin;",
        "GRANT SELECT ON TABLE public.t TO staging_owner, PUBLIC;",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
        "CREATE TABLE public.copy (\"to\" text);",
        "CREATE TABLE public.g (a text, b text GENERATED ALWAYS AS (upper(a)) STORED) PARTITION BY LIST (a);",
        "CREATE UNLOGGED TABLE public.p PARTITION OF public.g FOR VALUES IN ('x');",
        "CREATE TABLE public.typed OF public.addr;",
        "CREATE MATERIALIZED VIEW public.m AS SELECT 1 AS one WITH NO DATA;",
        "ALTER TABLE ONLY public.g ATTACH PARTITION public.p FOR VALUES IN ('y');",
        "SET client_encoding = 'UTF8';",
        "SET SESSION check_function_bodies = false;",
        "SELECT pg_catalog.setval('public.t_id_seq', 42, true);",
        "SELECT pg_catalog.lo_create('16385');",
        "SELECT pg_catalog.lowrite(0, '\\x0102');",
        "INSERT INTO public.t (id, note) VALUES (1, 'a'), (-2, NULL) ON CONFLICT DO NOTHING;",
        "REFRESH MATERIALIZED VIEW public.m;",
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';",
    ] {
        let expected = if sql.starts_with("SET transaction_timeout") {
            Action::Drop("SET transaction_timeout (server older than 17)")
        } else {
            Action::Keep
        };
        assert_eq!(act(sql).unwrap(), expected, "{sql}");
    }
    let mut pg17 = Filter {
        server_version: 170_002,
        ..filter()
    };
    assert_eq!(
        pg17.statement(&parse("SET transaction_timeout = 0;"))
            .unwrap(),
        Action::Keep
    );
}

#[test]
fn transactions_are_the_large_object_blocks_pg_dump_writes() {
    let mut f = filter();
    for sql in [
        "BEGIN;",
        "SELECT pg_catalog.lo_open('16385', 131072);",
        "COMMIT;",
    ] {
        assert_eq!(f.statement(&parse(sql)).unwrap(), Action::Keep, "{sql}");
    }
    assert!(f.finish().is_ok());
    f.statement(&parse("BEGIN;")).unwrap();
    let nested = f.statement(&parse("BEGIN;")).unwrap_err();
    assert!(nested.to_string().contains("already open"), "{nested}");
    let open = f.finish().unwrap_err();
    assert!(
        open.to_string().starts_with("dump line 1: refusing"),
        "{open}"
    );
}

#[test]
fn owners_and_missing_roles_are_dropped() {
    for sql in [
        "ALTER TABLE public.\"order\" OWNER TO app_prod;",
        "ALTER FUNCTION public.f() OWNER TO staging_owner;",
        "ALTER SCHEMA public OWNER TO postgres;",
        "ALTER DEFAULT PRIVILEGES FOR ROLE staging_owner GRANT SELECT ON TABLES TO PUBLIC;",
    ] {
        assert!(matches!(act(sql).unwrap(), Action::Drop(_)), "{sql}");
    }
    for sql in [
        "GRANT SELECT ON TABLE public.t TO app_readonly;",
        "GRANT SELECT ON TABLE public.t TO staging_owner, \"App_Readonly\";",
        "REVOKE ALL ON TABLE public.t FROM app_prod;",
        "ALTER DEFAULT PRIVILEGES FOR ROLE app_prod IN SCHEMA public GRANT SELECT ON TABLES TO staging_owner;",
        "GRANT ALL ON TABLE t TO staging_owner GRANTED BY app_prod;",
    ] {
        assert!(matches!(act(sql).unwrap(), Action::Drop(_)), "{sql}");
    }
}

#[test]
fn production_credentials_for_other_servers_are_dropped() {
    for sql in [
        "CREATE USER MAPPING FOR staging_owner SERVER s OPTIONS (user 'u', password 'prod-secret');",
        "CREATE SUBSCRIPTION sub CONNECTION 'host=prod password=prod-secret' PUBLICATION p WITH (connect = false, slot_name = 'sub');",
        "ALTER SUBSCRIPTION sub OWNER TO staging_owner;",
        "COMMENT ON SUBSCRIPTION sub IS 'x';",
    ] {
        assert!(matches!(act(sql).unwrap(), Action::Drop(_)), "{sql}");
    }
    assert_eq!(
        act("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'prod');").unwrap(),
        Action::Keep
    );
}

#[test]
fn meta_commands() {
    let f = filter();
    assert!(matches!(f.meta("\\restrict KEY", 1), Ok(Action::Drop(_))));
    assert!(matches!(f.meta("\\unrestrict KEY", 9), Ok(Action::Drop(_))));
    assert!(matches!(f.meta("\\connect app", 2), Ok(Action::Drop(_))));
    assert!(matches!(
        f.meta("\\connect -reuse-previous=on \"dbname='app'\"", 2),
        Ok(Action::Drop(_))
    ));
    for (command, named) in [
        ("\\connect other", "\\connect other"),
        ("\\c postgres", "\\c postgres"),
        ("\\! rm -rf /", "\\!"),
        ("\\copy t from '/etc/passwd'", "\\copy"),
        ("\\o /tmp/x", "\\o"),
        ("\\set ON_ERROR_STOP off", "\\set"),
    ] {
        let err = f.meta(command, 7).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 7") && text.contains(named), "{text}");
    }
}
