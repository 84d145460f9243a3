//! What the restore role may run of what the filter keeps. It is no superuser and owns
//! nothing but the scratch database, so some statements of a real dump are beyond it. Those
//! staging must not inherit anyway are dropped, counted like the filter's drops: publications
//! (staging does not publish production's change stream), GRANT/REVOKE on the system
//! catalogs, `COMMENT ON EXTENSION` (the extension's owner's; `CREATE EXTENSION` sets the
//! same comment), and what the scratch database already has from `database.template`: its
//! extensions, their schemas, their tables' grants and rows the restore role may not write.
//! The rest is forbidden, each with its reason (and for an extension, the one-time step that
//! makes it available): a run stops at it naming its dump line, `plan` lists every one.

use super::statement::Statement;
use crate::database::extensions::Extensions;

const PUBLICATION: &str = "a publication (staging does not publish production's changes)";
const CATALOG_GRANT: &str = "GRANT/REVOKE on the system catalogs (the staging server's own)";
const EXTENSION_COMMENT: &str = "COMMENT ON EXTENSION (its owner's; CREATE EXTENSION set it)";
const EXTENSION_PRESENT: &str =
    "CREATE EXTENSION of an extension the scratch database has from database.template";
const SCHEMA_PRESENT: &str =
    "CREATE SCHEMA of a schema the scratch database has from database.template";
const EXTENSION_COPY: &str =
    "COPY into an extension's table the restore role may not write (database.template's rows stay)";
const EXTENSION_GRANT: &str = "GRANT/REVOKE on an extension's table (its owner's)";

const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// Kinds of objects only a superuser may create or change, by the words that name them.
const SUPERUSER_ONLY: &[(&[&str], &str)] = &[
    (&["event", "trigger"], "event trigger"),
    (&["operator", "class"], "operator class"),
    (&["operator", "family"], "operator family"),
    (&["access", "method"], "access method"),
    (&["text", "search", "parser"], "text search parser"),
    (&["text", "search", "template"], "text search template"),
    (&["foreign", "data", "wrapper"], "foreign-data wrapper"),
    (&["language"], "procedural language"),
    (&["procedural", "language"], "procedural language"),
    (&["trusted", "language"], "procedural language"),
    (
        &["trusted", "procedural", "language"],
        "procedural language",
    ),
];

/// The words between ON and an object's name in GRANT/REVOKE.
const OBJECT_KINDS: &[&str] = &[
    "table",
    "sequence",
    "function",
    "procedure",
    "routine",
    "schema",
    "type",
    "domain",
    "language",
    "foreign",
    "data",
    "wrapper",
    "server",
    "large",
    "object",
];

/// What becomes of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Skipped (a COPY with its data); the reason is counted.
    Drop(&'static str),
    Forbidden(Forbidden),
}

/// A statement the restore role may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dump line {line}: the restore role may not run \"{statement}\": {why}")]
pub struct Forbidden {
    pub line: u64,
    /// Its leading words and names ([`Statement::label`]): never a value.
    pub statement: String,
    pub why: String,
}

/// Judges statements by what the restore role may do on this server.
#[derive(Debug, Clone)]
pub struct Privileges {
    extensions: Extensions,
    /// Whether a forbidden statement is listed (a plan) rather than fatal (a restore).
    pub lists: bool,
}

impl Privileges {
    /// For a restore: the first forbidden statement stops it.
    pub fn enforcing(extensions: Extensions) -> Privileges {
        Privileges {
            extensions,
            lists: false,
        }
    }

    /// For a plan: every forbidden statement is listed.
    pub fn listing(extensions: Extensions) -> Privileges {
        Privileges {
            extensions,
            lists: true,
        }
    }

    pub fn statement(&self, s: &Statement) -> Verdict {
        let judged = match s.keyword(0).as_deref() {
            Some("create" | "alter") => self.definition(s),
            Some("comment" | "security") => description(s),
            Some("grant" | "revoke") => self.privileges(s),
            Some("copy") if s.is_copy_from_stdin() => self.copy(s),
            _ => Ok(Verdict::Run),
        };
        judged.unwrap_or_else(|why| {
            Verdict::Forbidden(Forbidden {
                line: s.line,
                statement: s.label(),
                why,
            })
        })
    }

    /// CREATE and ALTER: extensions and schemas the template has, publications, what only
    /// a superuser may create.
    fn definition(&self, s: &Statement) -> Result<Verdict, String> {
        if s.is_word(1, "publication") {
            return Ok(Verdict::Drop(PUBLICATION));
        }
        let creates = s.is_word(0, "create");
        let kind = if creates && s.is_word(1, "or") && s.is_word(2, "replace") {
            3
        } else {
            1
        };
        if let Some(what) = superuser_only(s, kind) {
            return Err(format!("only a superuser may create or change a {what}"));
        }
        if !creates {
            return Ok(Verdict::Run);
        }
        if let Some((name, schema)) = created_extension(s) {
            return self.extension(&name, schema);
        }
        if s.is_word(kind, "schema") {
            let at = if s.is_word(kind + 1, "if") {
                kind + 4
            } else {
                kind + 1
            };
            let present = s
                .name(at)
                .is_some_and(|name| self.extensions.schemas.contains(&name));
            return Ok(if present {
                Verdict::Drop(SCHEMA_PRESENT)
            } else {
                Verdict::Run
            });
        }
        if s.is_word(kind, "type")
            && let Some((_, next)) = s.qualified(kind + 1)
            && s.token_text(next) == Some("(")
        {
            let why = "only a superuser may create a base type (with input and output functions)";
            return Err(why.into());
        }
        if s.is_word(kind, "function") || s.is_word(kind, "procedure") {
            let language = s
                .top_level(kind..s.tokens.len())
                .find(|&i| s.is_word(i, "language"))
                .and_then(|i| s.name(i + 1));
            if let Some(language) =
                language.filter(|l| self.extensions.untrusted_languages.contains(l))
            {
                return Err(format!(
                    "only a superuser may create a function in the untrusted language {language}"
                ));
            }
        }
        Ok(Verdict::Run)
    }

    /// Creating extension `name` in `schema` (the dump's, if it names one).
    fn extension(&self, name: &str, schema: Option<String>) -> Result<Verdict, String> {
        let extensions = &self.extensions;
        let fix = || extensions.fix(name, schema.as_deref().unwrap_or("public"));
        if let Some(has) = extensions.installed.get(name) {
            return match &schema {
                Some(wanted) if wanted != has => Err(format!(
                    "the scratch database has extension {name:?} from database.template in \
                     schema {has:?}, the dump creates it in {wanted:?}: drop it there and, {}",
                    fix()
                )),
                _ => Ok(Verdict::Drop(EXTENSION_PRESENT)),
            };
        }
        match extensions.available.get(name) {
            Some(true) => Ok(Verdict::Run),
            Some(false) => Err(format!(
                "only a superuser may create extension {name:?} (it is not trusted); {}",
                fix()
            )),
            None => Err(format!(
                "extension {name:?} is not installed on the staging server: install its \
                 package there, then, {}",
                fix()
            )),
        }
    }

    /// GRANT and REVOKE on the system catalogs or an extension's table.
    fn privileges(&self, s: &Statement) -> Result<Verdict, String> {
        let Some(on) = s.top_level(0..s.tokens.len()).find(|&i| s.is_word(i, "on")) else {
            return Ok(Verdict::Run);
        };
        let mut at = on + 1;
        let schema_kind = s.is_word(at, "schema");
        while OBJECT_KINDS.iter().any(|kind| s.is_word(at, kind)) {
            at += 1;
        }
        let Some((parts, _)) = s.qualified(at) else {
            return Ok(Verdict::Run);
        };
        let schema = match parts.as_slice() {
            [schema] if schema_kind => Some(schema),
            [.., schema, _] => Some(schema),
            _ => None,
        };
        if schema.is_some_and(|schema| SYSTEM_SCHEMAS.contains(&schema.as_str())) {
            return Ok(Verdict::Drop(CATALOG_GRANT));
        }
        let extension_table = !schema_kind
            && s.table(at)
                .is_some_and(|(table, _)| self.extensions.tables.contains_key(&table));
        Ok(if extension_table {
            Verdict::Drop(EXTENSION_GRANT)
        } else {
            Verdict::Run
        })
    }

    /// A COPY into an extension's table the restore role may not write.
    fn copy(&self, s: &Statement) -> Result<Verdict, String> {
        let writable = self.extensions.tables.get(&s.copy_table());
        Ok(if writable == Some(&false) {
            Verdict::Drop(EXTENSION_COPY)
        } else {
            Verdict::Run
        })
    }
}

/// The extension `CREATE EXTENSION [IF NOT EXISTS] <name> [WITH] [SCHEMA <schema>] ...`
/// creates, and the schema it names.
pub fn created_extension(s: &Statement) -> Option<(String, Option<String>)> {
    if !s.starts_with(&["create", "extension"]) {
        return None;
    }
    let at = if s.is_word(2, "if") { 5 } else { 2 };
    let name = s.name(at)?;
    let schema = (at + 1..s.tokens.len())
        .find(|&i| s.is_word(i, "schema"))
        .and_then(|i| s.name(i + 1));
    Some((name, schema))
}

/// COMMENT ON and SECURITY LABEL ON: extensions' comments are their owners', publications
/// are dropped, superuser-only objects are not the restore role's to describe.
fn description(s: &Statement) -> Result<Verdict, String> {
    let Some(on) = (1..5).find(|&i| s.is_word(i, "on")) else {
        return Ok(Verdict::Run);
    };
    if s.is_word(on + 1, "publication") {
        return Ok(Verdict::Drop(PUBLICATION));
    }
    if s.is_word(0, "comment") && s.is_word(on + 1, "extension") {
        return Ok(Verdict::Drop(EXTENSION_COMMENT));
    }
    match superuser_only(s, on + 1) {
        Some(what) => Err(format!("only a superuser may create or change a {what}")),
        None => Ok(Verdict::Run),
    }
}

/// The superuser-only kind of object named at token `at`, if it is one.
fn superuser_only(s: &Statement, at: usize) -> Option<&'static str> {
    SUPERUSER_ONLY
        .iter()
        .find(|(words, _)| words.iter().enumerate().all(|(i, w)| s.is_word(at + i, w)))
        .map(|(_, what)| *what)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::statement::parse;
    use super::*;
    use crate::database::extensions::Template;
    use crate::table::TableName;

    /// A server with cube (trusted) and earthdistance (not), a template holding
    /// earthdistance and a partition-manager-like extension with two tables in its schema.
    fn privileges(template: bool) -> Privileges {
        let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        let mut extensions = Extensions {
            template: Template::new(template.then_some("app_template"), "app"),
            available: HashMap::from([
                ("cube".into(), true),
                ("earthdistance".into(), false),
                ("partition_manager".into(), false),
            ]),
            installed: HashMap::new(),
            tables: HashMap::new(),
            schemas: strings(&["public"]),
            untrusted_languages: strings(&["c", "internal", "plpython3u"]),
        };
        if template {
            extensions.installed = HashMap::from([
                ("earthdistance".into(), "public".into()),
                ("partition_manager".into(), "partman".into()),
            ]);
            extensions.schemas = strings(&["public", "partman"]);
            extensions.tables = HashMap::from([
                (TableName::new("partman", "part_config"), false),
                (TableName::new("partman", "part_config_sub"), true),
            ]);
        }
        Privileges::enforcing(extensions)
    }

    fn verdict(template: bool, sql: &str) -> Verdict {
        privileges(template).statement(&parse(sql))
    }

    fn why(template: bool, sql: &str) -> String {
        match verdict(template, sql) {
            Verdict::Forbidden(f) => f.to_string(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn what_staging_must_not_inherit_is_dropped() {
        for (sql, reason) in [
            (
                "CREATE PUBLICATION p FOR ALL TABLES WITH (publish = 'insert');",
                PUBLICATION,
            ),
            (
                "ALTER PUBLICATION p ADD TABLES IN SCHEMA partman;",
                PUBLICATION,
            ),
            ("ALTER PUBLICATION p ADD TABLE ONLY public.t;", PUBLICATION),
            ("COMMENT ON PUBLICATION p IS 'cdc';", PUBLICATION),
            ("SECURITY LABEL FOR x ON PUBLICATION p IS 'y';", PUBLICATION),
            (
                "GRANT SELECT(rolname) ON TABLE pg_catalog.pg_authid TO app;",
                CATALOG_GRANT,
            ),
            (
                "GRANT ALL ON FUNCTION pg_catalog.pg_read_file(text) TO app;",
                CATALOG_GRANT,
            ),
            (
                "REVOKE SELECT ON TABLE pg_catalog.pg_proc FROM PUBLIC;",
                CATALOG_GRANT,
            ),
            (
                "GRANT USAGE ON SCHEMA information_schema TO app;",
                CATALOG_GRANT,
            ),
            (
                "COMMENT ON EXTENSION cube IS 'data type for multidimensional cubes';",
                EXTENSION_COMMENT,
            ),
        ] {
            assert_eq!(verdict(false, sql), Verdict::Drop(reason), "{sql}");
        }
        for sql in [
            "GRANT SELECT ON TABLE public.publication TO app;",
            "CREATE TABLE public.publication (id integer);",
            "GRANT USAGE ON SCHEMA public TO app;",
            "GRANT SELECT ON TABLE public.pg_catalog_copy TO app;",
            "COMMENT ON TABLE public.t IS 'on extension';",
            "CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;",
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
            "CREATE FUNCTION public.g(language text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;",
            "CREATE TYPE public.mood AS ENUM ('ok');",
            "CREATE TYPE public.later;",
            "COPY public.t (id) FROM stdin;",
        ] {
            assert_eq!(verdict(false, sql), Verdict::Run, "{sql}");
        }
    }

    #[test]
    fn what_only_a_superuser_may_run_is_forbidden_by_line() {
        for (sql, reason) in [
            (
                "CREATE EVENT TRIGGER audit ON ddl_command_end EXECUTE FUNCTION public.audit();",
                "event trigger",
            ),
            ("ALTER EVENT TRIGGER audit ENABLE ALWAYS;", "event trigger"),
            ("COMMENT ON EVENT TRIGGER audit IS 'x';", "event trigger"),
            (
                "CREATE OPERATOR FAMILY public.f USING btree;",
                "operator family",
            ),
            (
                "CREATE OPERATOR CLASS public.c FOR TYPE int USING btree AS OPERATOR 1 <;",
                "operator class",
            ),
            (
                "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;",
                "access method",
            ),
            (
                "CREATE TEXT SEARCH PARSER public.p (START = a, GETTOKEN = b, END = c, LEXTYPES = d);",
                "text search parser",
            ),
            ("CREATE FOREIGN DATA WRAPPER w;", "foreign-data wrapper"),
            (
                "CREATE OR REPLACE PROCEDURAL LANGUAGE plsample HANDLER h;",
                "procedural language",
            ),
            (
                "CREATE TYPE public.money2 (INPUT = public.m_in, OUTPUT = public.m_out);",
                "base type",
            ),
            (
                "CREATE FUNCTION public.py() RETURNS int\n    LANGUAGE plpython3u\n    AS $$ return 1 $$;",
                "untrusted language plpython3u",
            ),
            (
                "CREATE FUNCTION public.c_f() RETURNS int LANGUAGE c AS '$libdir/x', 'f';",
                "untrusted language c",
            ),
        ] {
            let text = why(false, sql);
            assert!(
                text.starts_with("dump line 1: the restore role may not run"),
                "{text}"
            );
            assert!(text.contains(reason), "{sql}: {text}");
        }
    }

    #[test]
    fn extensions_the_restore_role_may_not_create_name_the_one_time_step() {
        let sql = "CREATE EXTENSION IF NOT EXISTS earthdistance WITH SCHEMA public;";
        let text = why(false, sql);
        assert!(
            text.contains("only a superuser may create extension \"earthdistance\"")
                && text.contains("CREATE DATABASE \"app_template\" IS_TEMPLATE true")
                && text.contains("CREATE EXTENSION \"earthdistance\" SCHEMA \"public\";")
                && text.contains("set database.template = \"app_template\""),
            "{text}"
        );
        let text = why(
            false,
            "CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA gis;",
        );
        assert!(
            text.contains("\"postgis\" is not installed on the staging server")
                && text.contains(
                    "CREATE SCHEMA IF NOT EXISTS \"gis\" AUTHORIZATION pg_database_owner; \
                     CREATE EXTENSION \"postgis\" SCHEMA \"gis\";"
                ),
            "{text}"
        );
        // In the template: dropped, with its schema; in the wrong schema: the fix.
        assert_eq!(verdict(true, sql), Verdict::Drop(EXTENSION_PRESENT));
        assert_eq!(
            verdict(true, "CREATE SCHEMA partman;"),
            Verdict::Drop(SCHEMA_PRESENT)
        );
        assert_eq!(verdict(false, "CREATE SCHEMA partman;"), Verdict::Run);
        let text = why(
            true,
            "CREATE EXTENSION IF NOT EXISTS partition_manager WITH SCHEMA public;",
        );
        assert!(
            text.contains("in schema \"partman\", the dump creates it in \"public\"")
                && text.contains("in database.template \"app_template\""),
            "{text}"
        );
    }

    #[test]
    fn an_extensions_tables_keep_the_templates_rows_and_grants() {
        assert_eq!(
            verdict(true, "COPY partman.part_config (parent_table) FROM stdin;"),
            Verdict::Drop(EXTENSION_COPY)
        );
        assert_eq!(
            verdict(
                true,
                "COPY partman.part_config_sub (sub_parent) FROM stdin;"
            ),
            Verdict::Run
        );
        assert_eq!(
            verdict(true, "GRANT SELECT ON TABLE partman.part_config TO app;"),
            Verdict::Drop(EXTENSION_GRANT)
        );
        assert_eq!(
            verdict(true, "GRANT USAGE ON SCHEMA partman TO app;"),
            Verdict::Run
        );
    }
}
