//! What a post-data statement works on, read from its tokens: the tables it locks (and how),
//! the index it creates; and which statements are session settings the pool's sessions
//! follow. A statement not understood here runs in order on the loader's session.

use std::collections::HashMap;

use crate::restore::statement::{Statement, TokenKind, quoted};

/// How a job holds a table, as PostgreSQL would lock it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    /// `CREATE INDEX` (SHARE): builds of one table's indexes run together.
    Shared,
    /// Everything else: alone on the table.
    Exclusive,
}

/// `SET` (not `LOCAL`, not a transaction's) or pg_dump's
/// `SELECT pg_catalog.set_config('name', 'value', false);`.
pub(super) fn is_setting(s: &Statement) -> bool {
    let w = |i: usize, word: &str| s.is_word(i, word);
    if w(0, "set") {
        return !(w(1, "local")
            || w(1, "transaction")
            || w(1, "constraints")
            || (w(1, "session") && w(2, "characteristics")));
    }
    let texts: Vec<&str> = (0..s.tokens.len())
        .filter_map(|i| s.token_text(i))
        .collect();
    let call = match texts.as_slice() {
        [select, "pg_catalog", ".", rest @ ..] | [select, rest @ ..]
            if select.eq_ignore_ascii_case("select") =>
        {
            rest
        }
        _ => return false,
    };
    let kind = |i: usize| s.tokens[s.tokens.len() - call.len() + i].kind;
    matches!(call, [f, "(", _, ",", _, ",", local, ")", ";"]
        if f.eq_ignore_ascii_case("set_config") && local.eq_ignore_ascii_case("false"))
        && kind(2) == TokenKind::String
        && kind(4) == TokenKind::String
}

/// What a job works on.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Claim {
    /// Its tables, as quoted qualified names.
    pub(super) tables: Vec<(String, Lock)>,
    /// An index it creates, and that index's table (for a later `COMMENT ON INDEX`).
    pub(super) index: Option<(String, String)>,
}

impl Claim {
    fn exclusive(mut tables: Vec<String>) -> Option<Claim> {
        // A self-referencing foreign key names its table twice; a job never waits for itself.
        tables.sort();
        tables.dedup();
        Some(Claim {
            tables: tables.into_iter().map(|t| (t, Lock::Exclusive)).collect(),
            index: None,
        })
    }
}

/// What a post-data statement works on, or `None` for a statement the pool may not run.
pub(super) fn classify(s: &Statement, indexes: &HashMap<String, String>) -> Option<Claim> {
    let w = |i: usize, word: &str| s.is_word(i, word);
    let table_at = |i: usize| s.qualified(i).map(|(parts, _)| quoted(&parts));
    let top_level = || s.top_level(0..s.tokens.len());
    if w(0, "create") {
        let i = if w(1, "unique") { 2 } else { 1 };
        if w(i, "index") && !w(i + 1, "concurrently") {
            let mut i = i + 1;
            if w(i, "if") && w(i + 1, "not") && w(i + 2, "exists") {
                i += 3;
            }
            let (name, i) = match s.qualified(i) {
                Some((name, next)) if !w(i, "on") => (Some(name), next),
                _ => (None, i),
            };
            if !w(i, "on") {
                return None;
            }
            let at = if w(i + 1, "only") { i + 2 } else { i + 1 };
            let (table, _) = s.qualified(at)?;
            // An unqualified index name is in its table's schema.
            let index = name.map(|mut name| {
                if name.len() == 1 {
                    name.splice(0..0, table[..table.len() - 1].iter().cloned());
                }
                (quoted(&name), quoted(&table))
            });
            return Some(Claim {
                tables: vec![(quoted(&table), Lock::Shared)],
                index,
            });
        }
        if w(1, "trigger") || (w(1, "constraint") && w(2, "trigger")) {
            let on = top_level().find(|&i| i > 2 && w(i, "on"))?;
            let mut tables = vec![table_at(on + 1)?];
            if let Some(from) = top_level().find(|&i| i > on && w(i, "from")) {
                tables.push(table_at(from + 1)?);
            }
            return Claim::exclusive(tables);
        }
        if w(1, "rule") && w(3, "as") && w(4, "on") && w(6, "to") {
            return Claim::exclusive(vec![table_at(7)?]);
        }
        if w(1, "policy") && w(3, "on") {
            return Claim::exclusive(vec![table_at(4)?]);
        }
        return None;
    }
    if w(0, "alter") && w(1, "table") {
        // A second subcommand could do anything: only single ones are understood.
        if top_level().any(|i| s.token_text(i) == Some(",")) {
            return None;
        }
        let mut i = 2;
        if w(i, "if") && w(i + 1, "exists") {
            i += 2;
        }
        if w(i, "only") {
            i += 1;
        }
        let (table, i) = s.qualified(i)?;
        let table = quoted(&table);
        if w(i, "add") && w(i + 1, "constraint") {
            let kind = i + 3;
            if w(kind, "foreign") && w(kind + 1, "key") {
                let references = top_level().find(|&j| j > kind && w(j, "references"))?;
                return Claim::exclusive(vec![table, table_at(references + 1)?]);
            }
            let known = (w(kind, "primary") && w(kind + 1, "key"))
                || w(kind, "unique")
                || w(kind, "exclude")
                || w(kind, "check");
            return if known {
                Claim::exclusive(vec![table])
            } else {
                None
            };
        }
        let known = ((w(i, "enable") || w(i, "force"))
            && w(i + 1, "row")
            && w(i + 2, "level")
            && w(i + 3, "security"))
            || (w(i, "cluster") && w(i + 1, "on"))
            || (w(i, "replica") && w(i + 1, "identity"));
        return if known {
            Claim::exclusive(vec![table])
        } else {
            None
        };
    }
    if w(0, "comment") && w(1, "on") {
        if ["constraint", "trigger", "policy", "rule"]
            .iter()
            .any(|kind| w(2, kind))
            && w(4, "on")
            && !w(5, "domain")
        {
            return Claim::exclusive(vec![table_at(5)?]);
        }
        if w(2, "index") {
            return Claim::exclusive(vec![indexes.get(&table_at(3)?)?.clone()]);
        }
        return None;
    }
    if w(0, "grant") || w(0, "revoke") {
        // Only what pg_dump writes for relations: ON TABLE|SEQUENCE name[, name] TO|FROM.
        let on = top_level().find(|&i| w(i, "on"))?;
        if !(w(on + 1, "table") || w(on + 1, "sequence")) {
            return None;
        }
        let mut tables = Vec::new();
        let mut i = on + 2;
        loop {
            let (table, next) = s.qualified(i)?;
            tables.push(quoted(&table));
            if s.token_text(next) == Some(",") {
                i = next + 1;
            } else if w(next, "to") || w(next, "from") {
                return Claim::exclusive(tables);
            } else {
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::statement::parse;

    fn job(sql: &str, indexes: &HashMap<String, String>) -> Option<Vec<(String, Lock)>> {
        classify(&parse(sql), indexes).map(|claim| claim.tables)
    }

    fn x(tables: &[&str]) -> Option<Vec<(String, Lock)>> {
        Some(
            tables
                .iter()
                .map(|t| (t.to_string(), Lock::Exclusive))
                .collect(),
        )
    }

    #[test]
    fn post_data_statements_name_their_tables() {
        let none = HashMap::new();
        let shared = |t: &str| Some(vec![(t.to_owned(), Lock::Shared)]);
        for (sql, tables) in [
            (
                "CREATE INDEX product_user_id_idx ON public.product USING btree (user_id);",
                shared("\"public\".\"product\""),
            ),
            (
                "CREATE UNIQUE INDEX u ON ONLY public.\"Order\" USING btree (lower(email)) WHERE (x > 1);",
                shared("\"public\".\"Order\""),
            ),
            (
                "ALTER TABLE ONLY public.\"order\"\n    ADD CONSTRAINT order_pkey PRIMARY KEY (id);",
                x(&["\"public\".\"order\""]),
            ),
            (
                "ALTER TABLE ONLY public.booking ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
                x(&["\"public\".\"booking\""]),
            ),
            (
                "ALTER TABLE ONLY public.product\n    ADD CONSTRAINT product_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.\"order\"(id);",
                x(&["\"public\".\"order\"", "\"public\".\"product\""]),
            ),
            (
                "ALTER TABLE ONLY public.category ADD CONSTRAINT category_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES public.category(id);",
                x(&["\"public\".\"category\""]),
            ),
            (
                "CREATE TRIGGER t BEFORE UPDATE OF email ON public.\"order\" FOR EACH ROW EXECUTE FUNCTION public.touch();",
                x(&["\"public\".\"order\""]),
            ),
            (
                "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON public.a FROM public.b FOR EACH ROW EXECUTE FUNCTION f();",
                x(&["\"public\".\"a\"", "\"public\".\"b\""]),
            ),
            (
                "CREATE RULE r AS ON INSERT TO public.t DO INSTEAD NOTHING;",
                x(&["\"public\".\"t\""]),
            ),
            (
                "CREATE POLICY p ON public.t FOR SELECT USING ((owner = CURRENT_USER));",
                x(&["\"public\".\"t\""]),
            ),
            (
                "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;",
                x(&["\"public\".\"t\""]),
            ),
            (
                "COMMENT ON CONSTRAINT c ON public.t IS 'x';",
                x(&["\"public\".\"t\""]),
            ),
            (
                "GRANT SELECT ON TABLE public.t, public.u TO staging_owner;",
                x(&["\"public\".\"t\"", "\"public\".\"u\""]),
            ),
            (
                "REVOKE ALL ON SEQUENCE public.s FROM PUBLIC;",
                x(&["\"public\".\"s\""]),
            ),
        ] {
            assert_eq!(job(sql, &none), tables, "{sql}");
        }
    }

    #[test]
    fn anything_else_runs_in_order() {
        let none = HashMap::new();
        for sql in [
            "CREATE TABLE public.t (id int);",
            "CREATE INDEX CONCURRENTLY i ON public.t (id);",
            "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('s');",
            "ALTER TABLE ONLY public.t ADD CONSTRAINT c PRIMARY KEY (id), ADD COLUMN x int;",
            "ALTER TABLE public.t OWNER TO staging_owner;",
            "ALTER TABLE ONLY public.p ATTACH PARTITION public.c FOR VALUES IN (1);",
            "ALTER INDEX public.p_idx ATTACH PARTITION public.c_idx;",
            "REFRESH MATERIALIZED VIEW public.m;",
            "SELECT pg_catalog.setval('public.s', 42, true);",
            "GRANT ALL ON SCHEMA public TO staging_owner;",
            "GRANT USAGE ON ALL TABLES IN SCHEMA public TO x;",
            "COMMENT ON INDEX public.unknown IS 'x';",
            "COMMENT ON CONSTRAINT c ON DOMAIN public.d IS 'x';",
            "CREATE STATISTICS public.s ON a, b FROM public.t;",
            "SET default_tablespace = '';",
        ] {
            assert_eq!(job(sql, &none), None, "{sql}");
        }
    }

    #[test]
    fn an_index_comment_follows_its_index() {
        let mut indexes = HashMap::new();
        let claim = classify(
            &parse("CREATE INDEX i ON public.t USING btree (a, b);"),
            &indexes,
        )
        .unwrap();
        let (key, table) = claim.index.unwrap();
        assert_eq!(key, "\"public\".\"i\"");
        indexes.insert(key, table);
        assert_eq!(
            job("COMMENT ON INDEX public.i IS 'x';", &indexes),
            x(&["\"public\".\"t\""])
        );
    }

    #[test]
    fn settings() {
        for (sql, setting) in [
            ("SET default_tablespace = '';", true),
            ("SET search_path = public, pg_catalog;", true),
            (
                "SELECT pg_catalog.set_config('search_path', '', false);",
                true,
            ),
            ("SET LOCAL work_mem = '1GB';", false),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;", false),
            (
                "SELECT pg_catalog.set_config('search_path', '', true);",
                false,
            ),
            (
                "SELECT pg_catalog.set_config('a', 'b', false), evil();",
                false,
            ),
            ("SELECT 1;", false),
        ] {
            assert_eq!(is_setting(&parse(sql)), setting, "{sql}");
        }
    }
}
