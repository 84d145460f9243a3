//! What of a production dump may run on staging. Dumps come from production, which can be
//! compromised, so outside COPY data only the statements pg_dump writes are let through (an
//! allowlist); anything else is refused with the line it is on, and so is what pg_dump never
//! emits for one database and that reaches beyond it (roles, the server's config, files,
//! programs, other databases, role switches, transactions left open, settings the lexer
//! depends on). What real dumps contain and staging lacks is dropped: `\restrict` lines,
//! `SET transaction_timeout` on servers before 17, owners (everything is handed to
//! `database.owner` after the restore) and grants naming roles that exist only on production.

use std::collections::HashSet;

use super::lexer::meta_name;
use super::statement::{Statement, TokenKind};

/// PostgreSQL 17, the first server to know `transaction_timeout`.
const PG17: u32 = 170_000;

/// The parameters pg_dump `SET`s (older dumps included). The lexer depends on two of them,
/// which must keep the values the lexer reads the dump with.
const DUMP_PARAMETERS: &[&str] = &[
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
    "client_encoding",
    "standard_conforming_strings",
    "check_function_bodies",
    "xmloption",
    "client_min_messages",
    "row_security",
    "default_tablespace",
    "default_table_access_method",
    "default_with_oids",
    "escape_string_warning",
    "search_path",
];

/// Client encodings whose multi-byte characters can hold the bytes of `'` and `\`: a lexer
/// reading bytes would split the dump differently from the server.
/// Names as [`encoding`] normalizes them, aliases included.
const UNSAFE_ENCODINGS: &[&str] = &[
    "sjis",
    "shiftjis",
    "mskanji",
    "win932",
    "windows932",
    "big5",
    "win950",
    "windows950",
    "gbk",
    "win936",
    "windows936",
    "cp936",
    "uhc",
    "win949",
    "windows949",
    "gb18030",
    "johab",
];

/// The functions pg_dump calls with `SELECT pg_catalog.f(<literals>)`.
const DUMP_FUNCTIONS: &[&str] = &[
    "set_config",
    "setval",
    "lo_create",
    "lo_open",
    "lo_close",
    "lowrite",
    "lo_unlink",
];

const NEVER_WRITTEN: &str = "pg_dump never writes it, and only what a dump holds runs on staging";
const ROLE_SWITCH: &str = "a dump must not switch roles";
const SUBSCRIPTION: &str = "a subscription (its conninfo holds production's credentials)";

/// What happens to one statement or meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// Skip it; the reason is counted.
    Drop(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dump line {line}: refusing to restore {what}: {why}")]
pub struct Refusal {
    pub line: u64,
    pub what: String,
    pub why: &'static str,
}

/// The staging server's facts the filter decides by, and the transaction the dump has open.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `server_version_num` of the staging server.
    server_version: u32,
    /// Every role on the staging server.
    roles: HashSet<String>,
    /// The production database the dump is of (`\connect` to it is harmless).
    database: String,
    /// The line of the dump's `BEGIN` while its transaction is open.
    open_transaction: Option<u64>,
}

/// Role names that always exist.
const PSEUDO_ROLES: &[&str] = &["public", "current_user", "current_role", "session_user"];

impl Filter {
    pub fn new(server_version: u32, roles: HashSet<String>, database: String) -> Filter {
        Filter {
            server_version,
            roles,
            database,
            open_transaction: None,
        }
    }

    /// Judges statement `s` by the rule for its kind (its first keyword): what pg_dump
    /// never writes is refused.
    pub fn statement(&mut self, s: &Statement) -> Result<Action, Refusal> {
        let judged = match s.keyword(0).as_deref() {
            Some("create" | "alter" | "drop") => definition(s),
            Some("comment" | "security") => description(s),
            Some("grant" | "revoke") => self.privileges(s),
            Some("set") => self.set(s),
            Some("reset") if switches_role(s, 1) => Err(ROLE_SWITCH),
            Some("select") => select(s),
            Some("copy") => kept(
                s.is_copy_from_stdin(),
                "only COPY ... FROM stdin belongs in a dump (no files, no programs)",
            ),
            Some("insert") => kept(
                is_insert_of_literals(s),
                "pg_dump --inserts writes INSERT INTO <table> VALUES (<literals>) only",
            ),
            Some("refresh") => kept(
                s.is_word(1, "materialized"),
                "pg_dump refreshes materialized views only",
            ),
            Some(
                "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint"
                | "release",
            ) => self.transaction(s),
            Some("prepare") if s.is_word(1, "transaction") => self.transaction(s),
            Some("do") => Err("pg_dump never emits anonymous code blocks"),
            Some("load") => Err("it loads a shared library into the server"),
            _ => Err(NEVER_WRITTEN),
        };
        judged.map_err(|why| {
            let words: Vec<&str> = (0..3).filter_map(|i| s.token_text(i)).collect();
            Refusal {
                line: s.line,
                what: format!("\"{} ...\"", words.join(" ")),
                why,
            }
        })
    }

    /// At the end of the dump: a transaction it opened and never committed is refused.
    pub fn finish(&self) -> Result<(), Refusal> {
        match self.open_transaction {
            Some(line) => Err(Refusal {
                line,
                what: "\"BEGIN\"".into(),
                why: "the dump ends inside this transaction; pg_dump commits every one it opens",
            }),
            None => Ok(()),
        }
    }

    /// pg_dump writes a bare `BEGIN;` ... `COMMIT;` around large objects, nothing else.
    fn transaction(&mut self, s: &Statement) -> Result<Action, &'static str> {
        let bare = s.tokens.len() == 2;
        match (
            s.is_word(0, "begin") && bare,
            s.is_word(0, "commit") && bare,
        ) {
            (true, _) if self.open_transaction.is_none() => {
                self.open_transaction = Some(s.line);
                Ok(Action::Keep)
            }
            (true, _) => Err("a transaction is already open"),
            (_, true) if self.open_transaction.is_some() => {
                self.open_transaction = None;
                Ok(Action::Keep)
            }
            (_, true) => Err("no transaction is open"),
            _ => Err("transaction control pg_dump never writes"),
        }
    }

    /// `SET [SESSION | LOCAL] <parameter> ...`: no role switch, only what pg_dump sets.
    fn set(&self, s: &Statement) -> Result<Action, &'static str> {
        let scoped = s.is_word(1, "session") || s.is_word(1, "local");
        if switches_role(s, 1) || (scoped && switches_role(s, 2)) {
            return Err(ROLE_SWITCH);
        }
        self.parameter(s, usize::from(scoped) + 1)
    }

    /// A `SET` of the parameter named at token `at`.
    fn parameter(&self, s: &Statement, at: usize) -> Result<Action, &'static str> {
        let name = s
            .name(at)
            .filter(|name| DUMP_PARAMETERS.contains(&name.as_str()))
            .ok_or("pg_dump sets only the parameters a dump needs")?;
        // A single plain value: `on`, `'UTF8'` (no E'' or U&'' spellings to decode).
        let value = match (s.tokens.get(at + 2), s.token_text(at + 2)) {
            (Some(t), Some(text)) if t.kind == TokenKind::Word => text.to_ascii_lowercase(),
            (Some(t), Some(text)) if t.kind == TokenKind::String && text.starts_with('\'') => {
                text.trim_matches('\'').to_ascii_lowercase()
            }
            _ => String::new(),
        };
        let single = s.tokens.len() == at + 4 && !value.is_empty();
        match name.as_str() {
            "standard_conforming_strings" if !(single && value == "on") => {
                Err("the dump is read with standard_conforming_strings on, as pg_dump writes it")
            }
            "client_encoding"
                if !single || UNSAFE_ENCODINGS.contains(&encoding(&value).as_str()) =>
            {
                Err("in this client encoding the server would split the dump differently")
            }
            "statement_timeout" => Ok(Action::Drop(
                "SET statement_timeout (restore.statement_timeout applies)",
            )),
            "transaction_timeout" if self.server_version < PG17 => Ok(Action::Drop(
                "SET transaction_timeout (server older than 17)",
            )),
            _ => Ok(Action::Keep),
        }
    }

    /// A psql meta-command line: only what pg_dump writes is let through (and dropped).
    pub fn meta(&self, command: &str, line: u64) -> Result<Action, Refusal> {
        let name = meta_name(command);
        match name {
            "\\restrict" | "\\unrestrict" => Ok(Action::Drop("\\restrict / \\unrestrict")),
            "\\connect" | "\\c" => {
                let target = command
                    .split_whitespace()
                    .skip(1)
                    .find(|a| !a.starts_with('-'))
                    .map(connect_target);
                if target.as_deref() == Some(self.database.as_str()) {
                    Ok(Action::Drop("\\connect to the dump's own database"))
                } else {
                    Err(Refusal {
                        line,
                        what: format!("\"{command}\""),
                        why: "a dump of one database never connects to another",
                    })
                }
            }
            _ => Err(Refusal {
                line,
                what: format!("psql meta-command {name}"),
                why: "pg_dump never writes it, and piped into psql it would run (\\! runs a shell)",
            }),
        }
    }

    /// GRANT and REVOKE on objects inside the database (no role membership); dropped when
    /// a role they name (grantee, grantor) is missing here.
    fn privileges(&self, s: &Statement) -> Result<Action, &'static str> {
        let Some(on) = (0..s.tokens.len()).find(|&i| s.is_word(i, "on")) else {
            return Err("granting role membership is not part of a single-database dump");
        };
        if ["database", "tablespace", "parameter"]
            .iter()
            .any(|kind| s.is_word(on + 1, kind))
        {
            return Err("a single-database dump grants only on objects inside the database");
        }
        let w = |i: usize, word: &str| s.is_word(i, word);
        for i in 0..s.tokens.len() {
            let list_start = if w(i, "to") || w(i, "from") || (w(i, "granted") && w(i + 1, "by")) {
                Some(if w(i, "granted") { i + 2 } else { i + 1 })
            } else if w(i, "for") && (w(i + 1, "role") || w(i + 1, "user")) {
                Some(i + 2)
            } else {
                None
            };
            let Some(mut j) = list_start else { continue };
            loop {
                if w(j, "group") {
                    j += 1;
                }
                match s.name(j) {
                    Some(role) if !self.has_role(&role) => {
                        return Ok(Action::Drop("GRANT/REVOKE naming a role staging lacks"));
                    }
                    Some(_) => {}
                    None => break,
                }
                if s.token_text(j + 1) != Some(",") {
                    break;
                }
                j += 2;
            }
        }
        Ok(Action::Keep)
    }

    fn has_role(&self, role: &str) -> bool {
        PSEUDO_ROLES.contains(&role) || self.roles.contains(role)
    }
}

/// Kept when `ok`, else refused for `why`.
fn kept(ok: bool, why: &'static str) -> Result<Action, &'static str> {
    if ok { Ok(Action::Keep) } else { Err(why) }
}

/// CREATE, ALTER, DROP: of objects inside the database. Production's credentials for other
/// servers stay in production; owners and default privileges are production's.
fn definition(s: &Statement) -> Result<Action, &'static str> {
    let w = |i: usize, word: &str| s.is_word(i, word);
    if w(0, "alter") && w(1, "system") {
        return Err("it changes the staging server's configuration");
    }
    if w(1, "role") || w(1, "group") || (w(1, "user") && !w(2, "mapping")) {
        return Err("a single-database dump never manages roles");
    }
    if w(1, "database") {
        return Err("a single-database dump never creates, alters or drops databases");
    }
    if w(1, "tablespace") {
        return Err("a single-database dump never manages tablespaces");
    }
    // A user mapping's options hold a foreign server's password.
    if s.starts_with(&["create", "user", "mapping"]) {
        return Ok(Action::Drop(
            "CREATE USER MAPPING (production's credentials for a foreign server)",
        ));
    }
    if names_subscription(s) {
        return Ok(Action::Drop(SUBSCRIPTION));
    }
    if s.starts_with(&["alter", "default", "privileges"]) {
        return Ok(Action::Drop(
            "ALTER DEFAULT PRIVILEGES (the restore role sets no other role's defaults)",
        ));
    }
    // The restore role owns what it creates; the refresh hands all of it to
    // database.owner afterwards, whatever role production had it owned by.
    if w(0, "alter") && (1..s.tokens.len()).any(|i| w(i, "owner") && w(i + 1, "to")) {
        return Ok(Action::Drop(
            "OWNER TO (everything restored is handed to database.owner)",
        ));
    }
    Ok(Action::Keep)
}

/// COMMENT ON and SECURITY LABEL ON objects inside the database.
fn description(s: &Statement) -> Result<Action, &'static str> {
    if names_subscription(s) {
        return Ok(Action::Drop(SUBSCRIPTION));
    }
    if let Some(on) = (1..5).find(|&i| s.is_word(i, "on"))
        && ["role", "database", "tablespace"]
            .iter()
            .any(|kind| s.is_word(on + 1, kind))
    {
        return Err("a single-database dump describes only objects inside the database");
    }
    Ok(Action::Keep)
}

/// A subscription's conninfo holds production's credentials.
fn names_subscription(s: &Statement) -> bool {
    (1..4).any(|i| s.is_word(i, "subscription"))
}

/// `ROLE` or `SESSION AUTHORIZATION` at token `at`: what `SET` and `RESET` switch roles by.
fn switches_role(s: &Statement, at: usize) -> bool {
    s.is_word(at, "role") || (s.is_word(at, "session") && s.is_word(at + 1, "authorization"))
}

/// `SELECT pg_catalog.<f>(<literals>);` for the functions pg_dump calls; `set_config` only
/// of `search_path`.
fn select(s: &Statement) -> Result<Action, &'static str> {
    let n = s.tokens.len();
    let call = n >= 7
        && s.is_word(1, "pg_catalog")
        && s.token_text(2) == Some(".")
        && s.name(3)
            .is_some_and(|f| DUMP_FUNCTIONS.contains(&f.as_str()))
        && s.token_text(4) == Some("(")
        && s.token_text(n - 2) == Some(")")
        && s.token_text(n - 1) == Some(";")
        && literals(s, 5..n - 2);
    if !call {
        return Err("pg_dump selects only pg_catalog's set_config, setval and lo_* of literals");
    }
    if s.is_word(3, "set_config") && s.token_text(5) != Some("'search_path'") {
        return Err("pg_dump's set_config sets search_path only");
    }
    Ok(Action::Keep)
}

/// `INSERT INTO <table> [(<columns>)] VALUES (<literals>), ... [ON CONFLICT DO NOTHING];`
fn is_insert_of_literals(s: &Statement) -> bool {
    let Some(values) = (2..s.tokens.len()).find(|&i| s.is_word(i, "values")) else {
        return false;
    };
    let target = (2..values).all(|i| {
        matches!(s.tokens[i].kind, TokenKind::Word | TokenKind::Quoted)
            || matches!(s.token_text(i), Some("." | "(" | ")" | ","))
    });
    let mut end = s.tokens.len() - 1;
    if end >= 4
        && ["on", "conflict", "do", "nothing"]
            .iter()
            .enumerate()
            .all(|(k, word)| s.is_word(end - 4 + k, word))
    {
        end -= 4;
    }
    s.is_word(1, "into") && target && literals(s, values + 1..end)
}

/// Whether the tokens are constants, separated and grouped: no names, so nothing is called.
fn literals(s: &Statement, range: std::ops::Range<usize>) -> bool {
    range.into_iter().all(|i| match s.tokens[i].kind {
        TokenKind::String | TokenKind::Number => true,
        TokenKind::Punct => matches!(s.token_text(i), Some("," | "-" | "(" | ")")),
        TokenKind::Word => ["true", "false", "null"].iter().any(|w| s.is_word(i, w)),
        TokenKind::Quoted => false,
    })
}

/// An encoding name as the server compares them: lower case, letters and digits only.
fn encoding(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The database a `\connect` argument names: `app`, `"app"` or `"dbname='app'"`.
fn connect_target(arg: &str) -> String {
    let arg = arg.trim_matches('"');
    match arg.strip_prefix("dbname=") {
        Some(name) => name.trim_matches('\'').to_owned(),
        None => arg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
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
            act("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'prod');")
                .unwrap(),
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
}
