//! What of a production dump may run on staging. Dumps come from production, which can be
//! compromised: anything pg_dump never emits for one database and that reaches beyond it
//! (roles, the server's config, files, programs, other databases, role switches) is refused
//! with the line it is on. What real dumps contain and staging lacks is dropped or rewritten:
//! `\restrict` lines, `SET transaction_timeout` on servers before 17, and owners and grants
//! naming roles that exist only on production.

use std::collections::HashSet;

use super::lexer::{Statement, TokenKind, meta_name};
use crate::database::sql::quote_ident;

/// PostgreSQL 17, the first server to know `transaction_timeout`.
const PG17: u32 = 170_000;

/// What happens to one statement or meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// Run this text instead; the reason is counted.
    Rewrite(String, &'static str),
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

/// The staging server's facts the filter decides by.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `server_version_num` of the staging server.
    pub server_version: u32,
    /// Every role on the staging server.
    pub roles: HashSet<String>,
    /// `database.owner`: who owns objects whose production owner is missing here.
    pub owner: Option<String>,
    /// The production database the dump is of (`\connect` to it is harmless).
    pub database: String,
}

/// Role names that always exist.
const PSEUDO_ROLES: &[&str] = &["public", "current_user", "current_role", "session_user"];

impl Filter {
    pub fn statement(&self, s: &Statement) -> Result<Action, Refusal> {
        let refuse = |why: &'static str| {
            let words: Vec<&str> = (0..3).filter_map(|i| s.token_text(i)).collect();
            Err(Refusal {
                line: s.line,
                what: format!("\"{} ...\"", words.join(" ")),
                why,
            })
        };
        let w = |i: usize, word: &str| s.is_word(i, word);
        let ddl = w(0, "create") || w(0, "alter") || w(0, "drop");
        if w(0, "alter") && w(1, "system") {
            return refuse("it changes the staging server's configuration");
        }
        if ddl && (w(1, "role") || w(1, "group") || (w(1, "user") && !w(2, "mapping"))) {
            return refuse("a single-database dump never manages roles");
        }
        if ddl && w(1, "database") {
            return refuse("a single-database dump never creates, alters or drops databases");
        }
        if w(0, "copy") && !s.is_copy_from_stdin() {
            return refuse("only COPY ... FROM stdin belongs in a dump (no files, no programs)");
        }
        if w(0, "do") {
            return refuse("pg_dump never emits anonymous code blocks");
        }
        if w(0, "load") {
            return refuse("it loads a shared library into the server");
        }
        // SET [SESSION | LOCAL] ROLE, SET [SESSION | LOCAL] SESSION AUTHORIZATION, RESET ...
        let role_switch =
            |at: usize| w(at, "role") || (w(at, "session") && w(at + 1, "authorization"));
        let scoped = w(1, "session") || w(1, "local");
        if (w(0, "set") && (role_switch(1) || (scoped && role_switch(2))))
            || (w(0, "reset") && role_switch(1))
        {
            return refuse("a dump must not switch roles");
        }
        if w(0, "set") && s.name(1).as_deref() == Some("standard_conforming_strings") {
            let value = s
                .token_text(3)
                .unwrap_or_default()
                .trim_matches('\'')
                .to_ascii_lowercase();
            if ["off", "false", "0", "no"].contains(&value.as_str()) {
                return refuse(
                    "the dump is read with standard_conforming_strings on, as pg_dump writes it",
                );
            }
        }
        if w(0, "set")
            && s.name(1).as_deref() == Some("transaction_timeout")
            && self.server_version < PG17
        {
            return Ok(Action::Drop(
                "SET transaction_timeout (server older than 17)",
            ));
        }
        // Production's credentials for other servers stay in production: a user mapping's
        // options hold a foreign server's password, a subscription's conninfo production's.
        if s.starts_with(&["create", "user", "mapping"]) {
            return Ok(Action::Drop(
                "CREATE USER MAPPING (production's credentials for a foreign server)",
            ));
        }
        if (ddl || w(0, "comment") || w(0, "security")) && (1..4).any(|i| w(i, "subscription")) {
            return Ok(Action::Drop(
                "a subscription (its conninfo holds production's credentials)",
            ));
        }
        if w(0, "grant") || w(0, "revoke") {
            if !(0..s.tokens.len()).any(|i| w(i, "on")) {
                return refuse("granting role membership is not part of a single-database dump");
            }
            return Ok(self.drop_if_missing(s, "GRANT/REVOKE naming a role staging lacks"));
        }
        if s.starts_with(&["alter", "default", "privileges"]) {
            return Ok(
                self.drop_if_missing(s, "ALTER DEFAULT PRIVILEGES naming a role staging lacks")
            );
        }
        if w(0, "alter")
            && let Some(i) = (1..s.tokens.len()).find(|&i| w(i, "owner") && w(i + 1, "to"))
            && let Some(role) = s.name(i + 2)
            && !self.has_role(&role)
        {
            return Ok(match &self.owner {
                Some(owner) => {
                    let t = s.tokens[i + 2];
                    let text = format!(
                        "{}{}{}",
                        &s.text[..t.start],
                        quote_ident(owner),
                        &s.text[t.end..]
                    );
                    Action::Rewrite(
                        text,
                        "OWNER TO a role staging lacks, given to database.owner",
                    )
                }
                None => Action::Drop("OWNER TO a role staging lacks"),
            });
        }
        Ok(Action::Keep)
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

    fn has_role(&self, role: &str) -> bool {
        PSEUDO_ROLES.contains(&role) || self.roles.contains(role)
    }

    /// GRANT/REVOKE/ALTER DEFAULT PRIVILEGES: dropped when a role they name is missing here.
    fn drop_if_missing(&self, s: &Statement, reason: &'static str) -> Action {
        let w = |i: usize, word: &str| s.is_word(i, word);
        let mut missing = false;
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
                    Some(role) if !self.has_role(&role) => missing = true,
                    Some(_) => {}
                    None => break,
                }
                if s.tokens.get(j + 1).map(|t| t.kind) == Some(TokenKind::Punct)
                    && s.token_text(j + 1) == Some(",")
                {
                    j += 2;
                } else {
                    break;
                }
            }
        }
        if missing {
            Action::Drop(reason)
        } else {
            Action::Keep
        }
    }
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
    use super::super::lexer::{Item, Lexer};
    use super::*;

    fn filter() -> Filter {
        Filter {
            server_version: 150_018,
            roles: ["staging_owner", "postgres"]
                .iter()
                .map(|r| r.to_string())
                .collect(),
            owner: Some("staging_owner".into()),
            database: "app".into(),
        }
    }

    fn parse(sql: &str) -> Statement {
        let dump = format!("{sql}\n-- PostgreSQL database dump complete\n");
        match Lexer::new(dump.as_bytes()).next_item().unwrap() {
            Some(Item::Statement(s)) => s,
            other => panic!("{other:?}"),
        }
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
            "COPY public.\"user\" (id, email) FROM stdin;",
            "ALTER TABLE public.t OWNER TO staging_owner;",
            "GRANT SELECT ON TABLE public.t TO staging_owner, PUBLIC;",
            "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
            "CREATE TABLE public.copy (\"to\" text);",
        ] {
            let expected = if sql.starts_with("SET transaction_timeout") {
                Action::Drop("SET transaction_timeout (server older than 17)")
            } else {
                Action::Keep
            };
            assert_eq!(act(sql).unwrap(), expected, "{sql}");
        }
        let pg17 = Filter {
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
    fn missing_roles_are_rewritten_or_dropped() {
        match act("ALTER TABLE public.\"user\" OWNER TO app_prod;").unwrap() {
            Action::Rewrite(text, _) => {
                assert_eq!(
                    text,
                    "ALTER TABLE public.\"user\" OWNER TO \"staging_owner\";"
                )
            }
            other => panic!("{other:?}"),
        }
        let no_owner = Filter {
            owner: None,
            ..filter()
        };
        assert!(matches!(
            no_owner
                .statement(&parse("ALTER FUNCTION public.f() OWNER TO app_prod;"))
                .unwrap(),
            Action::Drop(_)
        ));
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
