//! The dump's tables and types, learnt from its pre-data statements (`CREATE TABLE`,
//! `ALTER TABLE ... ADD COLUMN`, `CREATE DOMAIN`, `CREATE TYPE`), to tell which columns can
//! hold personal data, which are NOT NULL and how long their values may be. Personal means
//! text-like or a network address; numbers, booleans, dates and times, enums and uuids are
//! not; any type not known here counts as personal.

use std::collections::{BTreeMap, HashMap};

use crate::restore::statement::{Statement, TokenKind};
use crate::table::TableName;

/// A column's type as written: its (possibly schema-qualified) name, folded like SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRef {
    /// `["character varying"]`, `["public", "citext"]`.
    pub name: Vec<String>,
    pub array: bool,
    /// The first type modifier: a `varchar(n)`'s length.
    pub modifier: Option<u64>,
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name.join("."))?;
        if let Some(m) = self.modifier {
            write!(f, "({m})")?;
        }
        if self.array {
            f.write_str("[]")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: TypeRef,
    pub not_null: bool,
}

#[derive(Debug, Clone)]
enum UserType {
    Enum,
    Domain(TypeRef),
    /// A composite's fields, or a range's subtype.
    Of(Vec<TypeRef>),
    /// A base type or shell: in doubt, personal.
    Other,
}

/// Built-in types that hold no personal data (as the first word or whole name).
const NOT_PERSONAL: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "int",
    "int2",
    "int4",
    "int8",
    "serial",
    "serial2",
    "serial4",
    "serial8",
    "smallserial",
    "bigserial",
    "numeric",
    "decimal",
    "real",
    "float",
    "float4",
    "float8",
    "double precision",
    "money",
    "boolean",
    "bool",
    "date",
    "uuid",
    "oid",
    "bit",
    "bit varying",
    "varbit",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "datemultirange",
    "tsmultirange",
    "tstzmultirange",
    "pg_lsn",
    "regclass",
    "regtype",
    "regproc",
    "xid",
    "xid8",
];
/// Types named by their first word: `timestamp(3) with time zone`, `interval day`.
const NOT_PERSONAL_FIRST_WORDS: &[&str] =
    &["timestamp", "timestamptz", "time", "timetz", "interval"];
const LENGTH_LIMITED: &[&str] = &[
    "character varying",
    "varchar",
    "character",
    "char",
    "bpchar",
];
/// Words that end a column's type in its definition.
const AFTER_TYPE: &[&str] = &[
    "not",
    "null",
    "default",
    "collate",
    "constraint",
    "check",
    "generated",
    "references",
    "primary",
    "unique",
];
const TABLE_CONSTRAINTS: &[&str] = &[
    "constraint",
    "check",
    "unique",
    "primary",
    "foreign",
    "exclude",
    "like",
];

#[derive(Debug, Default)]
pub struct Schema {
    tables: BTreeMap<TableName, Vec<Column>>,
    types: HashMap<(String, String), UserType>,
}

impl Schema {
    pub fn tables(&self) -> impl Iterator<Item = (&TableName, &[Column])> {
        self.tables.iter().map(|(t, c)| (t, c.as_slice()))
    }

    pub fn columns(&self, table: &TableName) -> Option<&[Column]> {
        self.tables.get(table).map(Vec::as_slice)
    }

    /// Learns from `s`; returns the table it created or changed, if any.
    pub fn learn(&mut self, s: &Statement) -> Option<TableName> {
        let w = |i: usize, word: &str| s.is_word(i, word);
        if w(0, "create") {
            let mut i = 1;
            while ["unlogged", "temporary", "temp", "global", "local"]
                .iter()
                .any(|word| w(i, word))
            {
                i += 1;
            }
            if w(i, "table") {
                return self.create_table(s, i + 1);
            }
            if w(1, "domain") {
                return self.create_domain(s);
            }
            if w(1, "type") {
                self.create_type(s);
            }
        } else if w(0, "alter") && w(1, "table") {
            return self.alter_table(s);
        }
        None
    }

    /// Whether values of `ty` can be personal.
    pub fn is_personal(&self, ty: &TypeRef) -> bool {
        self.personal(ty, 0)
    }

    fn personal(&self, ty: &TypeRef, depth: u32) -> bool {
        // Domains over domains end; a cycle (impossible in a real dump) counts as personal.
        if depth > 16 {
            return true;
        }
        let builtin = match ty.name.as_slice() {
            [name] => Some(name),
            [schema, name] if schema == "pg_catalog" => Some(name),
            _ => None,
        };
        if let Some(name) = builtin {
            let first = name.split(' ').next().unwrap_or_default();
            return !(NOT_PERSONAL.contains(&name.as_str())
                || NOT_PERSONAL_FIRST_WORDS.contains(&first));
        }
        let [schema, name] = ty.name.as_slice() else {
            return true;
        };
        match self.types.get(&(schema.clone(), name.clone())) {
            Some(UserType::Enum) => false,
            Some(UserType::Domain(base)) => self.personal(base, depth + 1),
            Some(UserType::Of(fields)) => fields.iter().any(|f| self.personal(f, depth + 1)),
            Some(UserType::Other) | None => true,
        }
    }

    /// The longest value a column of `ty` takes, in characters.
    pub fn max_len(ty: &TypeRef) -> Option<u64> {
        let name = ty.name.last()?;
        (LENGTH_LIMITED.contains(&name.as_str()) && !ty.array)
            .then_some(ty.modifier)
            .flatten()
    }

    fn create_table(&mut self, s: &Statement, mut i: usize) -> Option<TableName> {
        if s.is_word(i, "if") {
            i += 3;
        }
        let (table, next) = s.table(i)?;
        let mut columns = Vec::new();
        let mut after = next;
        if s.token_text(next) == Some("(") {
            let (elements, close) = s.elements(next);
            columns.extend(elements.iter().filter_map(|e| column(s, e)));
            after = close + 1;
        }
        if s.is_word(after, "inherits") && s.token_text(after + 1) == Some("(") {
            let (parents, _) = s.elements(after + 1);
            let mut inherited = Vec::new();
            for parent in parents {
                if let Some((parent, _)) = s.table(parent.start)
                    && let Some(cols) = self.tables.get(&parent)
                {
                    inherited.extend(cols.iter().cloned());
                }
            }
            inherited.retain(|c: &Column| !columns.iter().any(|own| own.name == c.name));
            inherited.extend(columns);
            columns = inherited;
        }
        self.tables.insert(table.clone(), columns);
        Some(table)
    }

    fn alter_table(&mut self, s: &Statement) -> Option<TableName> {
        let mut i = 2;
        if s.is_word(i, "if") {
            i += 2;
        }
        if s.is_word(i, "only") {
            i += 1;
        }
        let (table, next) = s.table(i)?;
        let mut changed = false;
        for action in s.split(next..s.tokens.len()) {
            let mut a = action.start;
            if s.is_word(a, "add") && !TABLE_CONSTRAINTS.iter().any(|w| s.is_word(a + 1, w)) {
                a += 1;
                if s.is_word(a, "column") {
                    a += 1;
                }
                if s.is_word(a, "if") {
                    a += 3;
                }
                if let Some(col) = column(s, &(a..action.end)) {
                    let cols = self.tables.entry(table.clone()).or_default();
                    cols.retain(|c| c.name != col.name);
                    cols.push(col);
                    changed = true;
                }
            } else if s.is_word(a, "alter") {
                a += 1;
                if s.is_word(a, "column") {
                    a += 1;
                }
                let set_not_null =
                    s.is_word(a + 1, "set") && s.is_word(a + 2, "not") && s.is_word(a + 3, "null");
                if let (Some(name), true) = (s.name(a), set_not_null)
                    && let Some(col) = self
                        .tables
                        .get_mut(&table)
                        .and_then(|cols| cols.iter_mut().find(|c| c.name == name))
                {
                    col.not_null = true;
                    changed = true;
                }
            }
        }
        changed.then_some(table)
    }

    fn create_domain(&mut self, s: &Statement) -> Option<TableName> {
        let (name, mut i) = s.table(2)?;
        if s.is_word(i, "as") {
            i += 1;
        }
        let end = type_end(s, i, s.tokens.len());
        let base = type_ref(s, i, end)?;
        self.types
            .insert((name.schema, name.name), UserType::Domain(base));
        None
    }

    fn create_type(&mut self, s: &Statement) {
        let Some((name, i)) = s.table(2) else {
            return;
        };
        let kind = if !s.is_word(i, "as") {
            UserType::Other
        } else if s.is_word(i + 1, "enum") {
            UserType::Enum
        } else if s.is_word(i + 1, "range") {
            // (SUBTYPE = type, ...)
            let (options, _) = s.elements(i + 2);
            let subtype = options
                .iter()
                .find(|o| s.is_word(o.start, "subtype"))
                .and_then(|o| type_ref(s, o.start + 2, o.end));
            subtype.map_or(UserType::Other, |t| UserType::Of(vec![t]))
        } else if s.token_text(i + 1) == Some("(") {
            let (fields, _) = s.elements(i + 1);
            let types = fields
                .iter()
                .filter_map(|f| type_ref(s, f.start + 1, type_end(s, f.start + 1, f.end)))
                .collect();
            UserType::Of(types)
        } else {
            UserType::Other
        };
        self.types.insert((name.schema, name.name), kind);
    }
}

/// A column definition `name type [constraints]`; `None` for a table constraint.
fn column(s: &Statement, range: &std::ops::Range<usize>) -> Option<Column> {
    let first = range.start;
    if TABLE_CONSTRAINTS.iter().any(|w| s.is_word(first, w)) {
        return None;
    }
    let name = s.name(first)?;
    let end = type_end(s, first + 1, range.end);
    let ty = type_ref(s, first + 1, end)?;
    let not_null = (end..range.end).any(|i| s.is_word(i, "not") && s.is_word(i + 1, "null"));
    Some(Column { name, ty, not_null })
}

/// Where a type starting at `from` ends: the first constraint keyword outside parentheses.
fn type_end(s: &Statement, from: usize, to: usize) -> usize {
    s.top_level(from..to)
        .find(|&i| AFTER_TYPE.iter().any(|w| s.is_word(i, w)))
        .unwrap_or(to)
}

fn type_ref(s: &Statement, from: usize, to: usize) -> Option<TypeRef> {
    let mut name: Vec<String> = vec![String::new()];
    let mut array = false;
    let mut modifier = None;
    let mut depth = 0u32;
    for i in from..to {
        let text = s.token_text(i)?;
        match (text, s.tokens[i].kind) {
            ("(", _) => depth += 1,
            (")", _) => depth = depth.saturating_sub(1),
            (_, TokenKind::Number) if depth == 1 && modifier.is_none() => {
                modifier = text.parse().ok();
            }
            _ if depth > 0 => {}
            ("[", _) | ("]", _) => array = true,
            (".", _) => name.push(String::new()),
            (_, TokenKind::Word) if text.eq_ignore_ascii_case("array") => array = true,
            (_, TokenKind::Word | TokenKind::Quoted) => {
                let part = name.last_mut().expect("never empty");
                if !part.is_empty() {
                    part.push(' ');
                }
                part.push_str(&s.name(i)?);
            }
            _ => {}
        }
    }
    (!name.iter().any(String::is_empty)).then_some(TypeRef {
        name,
        array,
        modifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::lexer::{Item, Lexer};

    fn learn(sql: &str) -> Schema {
        let mut schema = Schema::default();
        let text = format!("{sql}\n-- PostgreSQL database dump complete\n");
        let mut lexer = Lexer::new(text.as_bytes());
        while let Some(item) = lexer.next_item().unwrap() {
            if let Item::Statement(s) = item {
                schema.learn(&s);
            }
        }
        schema
    }

    fn personal(schema: &Schema, table: &str) -> Vec<String> {
        schema
            .columns(&TableName::parse(table).unwrap())
            .unwrap()
            .iter()
            .filter(|c| schema.is_personal(&c.ty))
            .map(|c| c.name.clone())
            .collect()
    }

    #[test]
    fn text_like_and_network_columns_count_as_personal() {
        let schema = learn(
            "CREATE TYPE public.mood AS ENUM ('ok', 'sad');
             CREATE TYPE public.address AS (street text, no integer);
             CREATE TYPE public.span AS RANGE (subtype = integer);
             CREATE DOMAIN public.email AS public.citext CHECK ((VALUE ~ '@'::text));
             CREATE DOMAIN public.score AS integer NOT NULL;
             CREATE TABLE public.\"order\" (
                 id uuid NOT NULL,
                 email public.email NOT NULL,
                 name character varying(40),
                 tags text[],
                 ip inet,
                 home public.address,
                 seen timestamp(3) with time zone DEFAULT now() NOT NULL,
                 mood public.mood,
                 score public.score,
                 range public.span,
                 n numeric(10,2),
                 doc jsonb DEFAULT '{}'::jsonb NOT NULL,
                 odd public.unknown_type,
                 CONSTRAINT user_score CHECK ((n > (0)::numeric))
             );
             ALTER TABLE ONLY public.\"order\" ADD COLUMN phone text, ALTER COLUMN tags SET NOT NULL;
             ALTER TABLE ONLY public.\"order\" ADD CONSTRAINT order_pkey PRIMARY KEY (id);",
        );
        assert_eq!(
            personal(&schema, "public.order"),
            ["email", "name", "tags", "ip", "home", "doc", "odd", "phone"]
        );
        let cols = schema.columns(&TableName::new("public", "order")).unwrap();
        let col = |n: &str| cols.iter().find(|c| c.name == n).unwrap();
        assert!(col("email").not_null && col("tags").not_null && !col("name").not_null);
        assert_eq!(Schema::max_len(&col("name").ty), Some(40));
        assert_eq!(Schema::max_len(&col("tags").ty), None);
        assert_eq!(col("seen").ty.name, ["timestamp with time zone"]);
    }

    #[test]
    fn inherited_columns_and_quoted_names_are_known() {
        let schema = learn(
            "CREATE TABLE \"x.y\".parent (id integer, note text);
             CREATE UNLOGGED TABLE \"x.y\".\"Child\" (extra varchar) INHERITS (\"x.y\".parent);",
        );
        assert_eq!(personal(&schema, "\"x.y\".\"Child\""), ["note", "extra"]);
    }
}
