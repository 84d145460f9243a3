//! The dump's tables and types as its pre-data text declares them, for `plan` and `rules`,
//! which read a snapshot without a staging server (a run asks the scratch database instead:
//! [`super::catalog`]). It learns from `CREATE TABLE` (columns, CHECKs, `INHERITS`,
//! `PARTITION OF`, `OF type`), `ALTER TABLE` (`ADD COLUMN`, `ADD CONSTRAINT ... CHECK`,
//! `ALTER COLUMN ... TYPE | SET NOT NULL`, `RENAME`, `DROP COLUMN`, `ATTACH PARTITION`,
//! `INHERIT`), `CREATE DOMAIN`, `ALTER DOMAIN ... ADD CONSTRAINT` and `CREATE TYPE`, and
//! describes each table as a [`TableShape`]. A type it does not know counts as personal.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::shape::{BaseType, Check, ColumnShape};
use super::tables::{TableShape, Tables};
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

#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: TypeRef,
    not_null: bool,
    generated: bool,
    default: Option<String>,
}

/// A CHECK as the dump writes it: its name, its text from `CHECK`, the columns it names.
#[derive(Debug, Clone)]
struct TextCheck {
    name: String,
    definition: String,
    columns: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Table {
    columns: Vec<Column>,
    checks: Vec<TextCheck>,
    /// The tables it inherits from or is a partition of.
    parents: Vec<TableName>,
    partition: bool,
    partitioned: bool,
}

#[derive(Debug, Clone)]
enum UserType {
    Enum,
    Domain {
        base: TypeRef,
        not_null: bool,
        checks: Vec<TextCheck>,
    },
    /// A composite's fields.
    Composite(Vec<(String, TypeRef)>),
    /// A range's subtype.
    Range(TypeRef),
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
const TEXT: &[&str] = &[
    "text",
    "character varying",
    "varchar",
    "character",
    "char",
    "bpchar",
    "name",
    "citext",
];
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
    tables: BTreeMap<TableName, Table>,
    types: HashMap<(String, String), UserType>,
}

/// What a column's type resolves to.
struct Resolved {
    base: BaseType,
    array: bool,
    length: Option<u64>,
    not_null: bool,
    checks: Vec<TextCheck>,
}

impl Schema {
    /// Every table, described.
    pub fn shapes(&self) -> Tables {
        self.tables
            .keys()
            .filter_map(|name| Some((name.clone(), self.shape(name)?)))
            .collect()
    }

    /// `table`, described, if the dump declared it.
    pub fn shape(&self, name: &TableName) -> Option<TableShape> {
        let table = self.tables.get(name)?;
        let columns = table
            .columns
            .iter()
            .map(|c| self.column_shape(table, c))
            .collect();
        Some(TableShape {
            name: name.clone(),
            parents: self.ancestors(table),
            partition: table.partition,
            partitioned: table.partitioned,
            columns,
            catalog: None,
        })
    }

    /// Learns from `s`.
    pub fn learn(&mut self, s: &Statement) {
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
                self.create_table(s, i + 1);
            } else if w(1, "domain") {
                self.create_domain(s);
            } else if w(1, "type") {
                self.create_type(s);
            }
        } else if w(0, "alter") && w(1, "table") {
            self.alter_table(s);
        } else if w(0, "alter") && w(1, "domain") {
            self.alter_domain(s);
        }
    }

    /// Its ancestors, nearest first (breadth first through the parents the dump declared).
    fn ancestors(&self, table: &Table) -> Vec<TableName> {
        let mut found: Vec<TableName> = Vec::new();
        let mut next = table.parents.clone();
        while !next.is_empty() && found.len() < 64 {
            let mut after = Vec::new();
            for parent in next {
                if found.contains(&parent) {
                    continue;
                }
                if let Some(t) = self.tables.get(&parent) {
                    after.extend(t.parents.iter().cloned());
                }
                found.push(parent);
            }
            next = after;
        }
        found
    }

    fn column_shape(&self, table: &Table, c: &Column) -> ColumnShape {
        let resolved = self.resolve(&c.ty, 0);
        let checks = table
            .checks
            .iter()
            .filter(|k| k.columns.contains(&c.name))
            .chain(&resolved.checks)
            .map(|k| Check {
                name: k.name.clone(),
                definition: k.definition.clone(),
                columns: k.columns.clone(),
            })
            .collect();
        ColumnShape {
            name: c.name.clone(),
            type_name: c.ty.to_string(),
            base: resolved.base,
            array: resolved.array,
            not_null: c.not_null || resolved.not_null,
            type_length: resolved.length,
            checks,
            generated: c.generated,
            default: c.default.clone(),
        }
    }

    /// What values of `ty` are, through domains, composites and ranges.
    fn resolve(&self, ty: &TypeRef, depth: u32) -> Resolved {
        let plain = |base| Resolved {
            base,
            array: ty.array,
            length: None,
            not_null: false,
            checks: Vec::new(),
        };
        // Domains over domains end; a cycle (impossible in a real dump) counts as personal.
        if depth > 16 {
            return plain(BaseType::Other);
        }
        let builtin = match ty.name.as_slice() {
            [name] => Some(name),
            [schema, name] if schema == "pg_catalog" => Some(name),
            _ => None,
        };
        if let Some(name) = builtin {
            let length = LENGTH_LIMITED
                .contains(&name.as_str())
                .then_some(ty.modifier)
                .flatten();
            return Resolved {
                length,
                ..plain(builtin_base(name))
            };
        }
        let [schema, name] = ty.name.as_slice() else {
            return plain(BaseType::Other);
        };
        let personal = |r: Resolved| {
            if r.base == BaseType::NotPersonal {
                BaseType::NotPersonal
            } else {
                BaseType::Other
            }
        };
        match self.types.get(&(schema.clone(), name.clone())) {
            Some(UserType::Enum) => plain(BaseType::NotPersonal),
            Some(UserType::Domain {
                base,
                not_null,
                checks,
            }) => {
                let mut r = self.resolve(base, depth + 1);
                r.not_null |= *not_null && !ty.array;
                r.array |= ty.array;
                r.checks.extend(checks.iter().cloned());
                r
            }
            Some(UserType::Composite(fields)) => {
                let all_not_personal = fields
                    .iter()
                    .all(|(_, f)| self.resolve(f, depth + 1).base == BaseType::NotPersonal);
                plain(if all_not_personal {
                    BaseType::NotPersonal
                } else {
                    BaseType::Other
                })
            }
            Some(UserType::Range(subtype)) => plain(personal(self.resolve(subtype, depth + 1))),
            // An extension's text type, as pg_dump qualifies it.
            None if name == "citext" => plain(BaseType::Text),
            Some(UserType::Other) | None => plain(BaseType::Other),
        }
    }

    fn create_table(&mut self, s: &Statement, mut i: usize) {
        if s.is_word(i, "if") {
            i += 3;
        }
        let Some((name, mut next)) = s.table(i) else {
            return;
        };
        let mut table = Table::default();
        if s.is_word(next, "partition") && s.is_word(next + 1, "of") {
            let Some((parent, after)) = s.table(next + 2) else {
                return;
            };
            table.columns = self.columns_of(&parent);
            table.parents.push(parent);
            table.partition = true;
            next = after;
        } else if s.is_word(next, "of") {
            let Some((ty, after)) = s.table(next + 1) else {
                return;
            };
            if let Some(UserType::Composite(fields)) = self.types.get(&(ty.schema, ty.name)) {
                table.columns = fields
                    .iter()
                    .map(|(name, ty)| Column {
                        name: name.clone(),
                        ty: ty.clone(),
                        not_null: false,
                        generated: false,
                        default: None,
                    })
                    .collect();
            }
            next = after;
        }
        let mut after = next;
        if s.token_text(next) == Some("(") {
            let (elements, close) = s.elements(next);
            for element in &elements {
                match column(s, element) {
                    Some(col) => {
                        table.columns.retain(|c| c.name != col.name);
                        table.columns.push(col);
                    }
                    None => table
                        .checks
                        .extend(check(s, element, &name, &table.columns)),
                }
            }
            after = close + 1;
        }
        if s.is_word(after, "inherits") && s.token_text(after + 1) == Some("(") {
            let (parents, _) = s.elements(after + 1);
            let mut inherited = Vec::new();
            for parent in parents {
                if let Some((parent, _)) = s.table(parent.start) {
                    inherited.extend(self.columns_of(&parent));
                    table.parents.push(parent);
                }
            }
            inherited.retain(|c: &Column| !table.columns.iter().any(|own| own.name == c.name));
            inherited.append(&mut table.columns);
            table.columns = inherited;
        }
        table.partitioned = s
            .top_level(after..s.tokens.len())
            .any(|i| s.is_word(i, "partition") && s.is_word(i + 1, "by"));
        self.tables.insert(name, table);
    }

    fn columns_of(&self, table: &TableName) -> Vec<Column> {
        self.tables
            .get(table)
            .map(|t| t.columns.clone())
            .unwrap_or_default()
    }

    fn alter_table(&mut self, s: &Statement) {
        let mut i = 2;
        if s.is_word(i, "if") {
            i += 2;
        }
        let only = s.is_word(i, "only");
        if only {
            i += 1;
        }
        let Some((table, mut next)) = s.table(i) else {
            return;
        };
        // `ALTER TABLE t * ...`: t and its descendants, as without ONLY.
        if s.token_text(next) == Some("*") {
            next += 1;
        }
        for action in s.split(next..s.tokens.len()) {
            self.alter_action(s, &table, only, action);
        }
    }

    fn alter_action(&mut self, s: &Statement, table: &TableName, only: bool, action: Range<usize>) {
        let w = |i: usize, word: &str| s.is_word(i, word);
        let mut a = action.start;
        if w(a, "add") && TABLE_CONSTRAINTS.iter().any(|c| w(a + 1, c)) {
            let columns = self.columns_of(table);
            if let Some(check) = check(s, &(a + 1..action.end), table, &columns)
                && let Some(t) = self.tables.get_mut(table)
            {
                t.checks.push(check);
            }
        } else if w(a, "add") {
            a += 1;
            if w(a, "column") {
                a += 1;
            }
            if w(a, "if") {
                a += 3;
            }
            if let Some(col) = column(s, &(a..action.end)) {
                for target in self.affected(table, only) {
                    let cols = &mut self.tables.entry(target).or_default().columns;
                    cols.retain(|c| c.name != col.name);
                    cols.push(col.clone());
                }
            }
        } else if w(a, "alter") {
            a += 1;
            if w(a, "column") {
                a += 1;
            }
            let Some(name) = s.name(a) else { return };
            let set_not_null = w(a + 1, "set") && w(a + 2, "not") && w(a + 3, "null");
            let retype = if w(a + 1, "type") {
                Some(a + 2)
            } else if w(a + 1, "set") && w(a + 2, "data") && w(a + 3, "type") {
                Some(a + 4)
            } else {
                None
            };
            let ty = retype.and_then(|at| type_ref(s, at, type_end(s, at, action.end)));
            for target in self.affected(table, only) {
                let column = self
                    .tables
                    .get_mut(&target)
                    .and_then(|t| t.columns.iter_mut().find(|c| c.name == name));
                if let Some(column) = column {
                    column.not_null |= set_not_null;
                    if let Some(ty) = &ty {
                        column.ty = ty.clone();
                    }
                }
            }
        } else if w(a, "drop") {
            a += 1;
            if w(a, "column") {
                a += 1;
            }
            if w(a, "if") {
                a += 2;
            }
            if let Some(name) = s.name(a) {
                for target in self.affected(table, only) {
                    if let Some(t) = self.tables.get_mut(&target) {
                        t.columns.retain(|c| c.name != name);
                    }
                }
            }
        } else if w(a, "rename") {
            self.rename(s, table, a + 1);
        } else if w(a, "attach") && w(a + 1, "partition") {
            if let Some((child, _)) = s.table(a + 2) {
                let child = self.tables.entry(child).or_default();
                child.parents = vec![table.clone()];
                child.partition = true;
            }
        } else if w(a, "inherit")
            && let Some((parent, _)) = s.table(a + 1)
        {
            self.tables
                .entry(table.clone())
                .or_default()
                .parents
                .push(parent);
        }
    }

    /// `RENAME [COLUMN] a TO b` or `RENAME TO b` at token `at` (after `RENAME`).
    fn rename(&mut self, s: &Statement, table: &TableName, mut at: usize) {
        if s.is_word(at, "to") {
            if let (Some(name), Some(t)) = (s.name(at + 1), self.tables.remove(table)) {
                let renamed = TableName::new(&table.schema, &name);
                self.tables.insert(renamed, t);
            }
            return;
        }
        if s.is_word(at, "column") {
            at += 1;
        }
        let (Some(from), Some(to)) = (s.name(at), s.name(at + 2)) else {
            return;
        };
        for target in self.affected(table, false) {
            let column = self
                .tables
                .get_mut(&target)
                .and_then(|t| t.columns.iter_mut().find(|c| c.name == from));
            if let Some(column) = column {
                column.name = to.clone();
            }
        }
    }

    /// `table`, and without `ONLY` its descendants too (what an ALTER TABLE recurses to).
    fn affected(&self, table: &TableName, only: bool) -> Vec<TableName> {
        let mut affected = vec![table.clone()];
        if !only {
            affected.extend(
                self.tables
                    .iter()
                    .filter(|(_, t)| self.ancestors(t).contains(table))
                    .map(|(name, _)| name.clone()),
            );
        }
        affected
    }

    fn create_domain(&mut self, s: &Statement) {
        let Some((name, mut i)) = s.table(2) else {
            return;
        };
        if s.is_word(i, "as") {
            i += 1;
        }
        let end = type_end(s, i, s.tokens.len());
        let Some(base) = type_ref(s, i, end) else {
            return;
        };
        let not_null = s
            .top_level(end..s.tokens.len())
            .any(|i| s.is_word(i, "not") && s.is_word(i + 1, "null"));
        let checks = domain_checks(s, end, &name);
        self.types.insert(
            (name.schema, name.name),
            UserType::Domain {
                base,
                not_null,
                checks,
            },
        );
    }

    /// `ALTER DOMAIN d ADD CONSTRAINT c CHECK (...)`.
    fn alter_domain(&mut self, s: &Statement) {
        let Some((name, i)) = s.table(2) else {
            return;
        };
        if !s.is_word(i, "add") {
            return;
        }
        let found = domain_checks(s, i + 1, &name);
        if let Some(UserType::Domain { checks, .. }) = self.types.get_mut(&(name.schema, name.name))
        {
            checks.extend(found);
        }
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
            subtype.map_or(UserType::Other, UserType::Range)
        } else if s.token_text(i + 1) == Some("(") {
            let (fields, _) = s.elements(i + 1);
            let fields = fields
                .iter()
                .filter_map(|f| {
                    let ty = type_ref(s, f.start + 1, type_end(s, f.start + 1, f.end))?;
                    Some((s.name(f.start)?, ty))
                })
                .collect();
            UserType::Composite(fields)
        } else {
            UserType::Other
        };
        self.types.insert((name.schema, name.name), kind);
    }
}

/// What a value of the built-in type `name` is.
fn builtin_base(name: &str) -> BaseType {
    let first = name.split(' ').next().unwrap_or_default();
    if NOT_PERSONAL.contains(&name) || NOT_PERSONAL_FIRST_WORDS.contains(&first) {
        return BaseType::NotPersonal;
    }
    match name {
        _ if TEXT.contains(&name) => BaseType::Text,
        "bytea" => BaseType::Bytea,
        "json" => BaseType::Json,
        "jsonb" => BaseType::Jsonb,
        "xml" => BaseType::Xml,
        "inet" | "cidr" | "macaddr" | "macaddr8" => BaseType::Network,
        _ => BaseType::Other,
    }
}

/// A column definition `name type [constraints]`; `None` for a table constraint.
fn column(s: &Statement, range: &Range<usize>) -> Option<Column> {
    let first = range.start;
    if TABLE_CONSTRAINTS.iter().any(|w| s.is_word(first, w)) {
        return None;
    }
    let name = s.name(first)?;
    let end = type_end(s, first + 1, range.end);
    let ty = type_ref(s, first + 1, end)?;
    let words: Vec<usize> = s.top_level(end..range.end).collect();
    let word = |k: usize, w: &str| words.get(k).is_some_and(|&i| s.is_word(i, w));
    let not_null = (0..words.len()).any(|k| word(k, "not") && word(k + 1, "null"));
    // GENERATED ALWAYS AS (expr) STORED; not an identity (GENERATED ... AS IDENTITY).
    let generated = (0..words.len()).any(|k| {
        word(k, "generated")
            && word(k + 1, "always")
            && word(k + 2, "as")
            && !word(k + 3, "identity")
    });
    let default = words
        .iter()
        .position(|&i| s.is_word(i, "default"))
        .map(|k| {
            let from = words[k] + 1;
            let to = words[k + 1..]
                .iter()
                .copied()
                .find(|&i| AFTER_TYPE.iter().any(|w| s.is_word(i, w)))
                .unwrap_or(range.end);
            span(s, from..to)
        });
    Some(Column {
        name,
        ty,
        not_null,
        generated,
        default,
    })
}

/// A table constraint `[CONSTRAINT name] CHECK (...)` of `table`, whose columns so far are
/// `columns`; `None` for other constraints.
fn check(
    s: &Statement,
    range: &Range<usize>,
    table: &TableName,
    columns: &[Column],
) -> Option<TextCheck> {
    let (name, at) = if s.is_word(range.start, "constraint") {
        (s.name(range.start + 1), range.start + 2)
    } else {
        (None, range.start)
    };
    if !s.is_word(at, "check") {
        return None;
    }
    let named: Vec<String> = (at..range.end)
        .filter_map(|i| s.name(i))
        .filter(|n| columns.iter().any(|c| c.name == *n))
        .fold(Vec::new(), |mut seen, n| {
            if !seen.contains(&n) {
                seen.push(n);
            }
            seen
        });
    let name = name.unwrap_or_else(|| match named.as_slice() {
        // As PostgreSQL names an unnamed one.
        [column] => format!("{}_{column}_check", table.name),
        _ => format!("{}_check", table.name),
    });
    Some(TextCheck {
        name,
        definition: span(s, at..range.end),
        columns: named,
    })
}

/// A domain's `[CONSTRAINT name] CHECK (...)` constraints from token `from` on.
fn domain_checks(s: &Statement, from: usize, domain: &TableName) -> Vec<TextCheck> {
    let end = s.tokens.len() - usize::from(s.token_text(s.tokens.len() - 1) == Some(";"));
    let mut checks = Vec::new();
    let top: Vec<usize> = s.top_level(from..end).collect();
    for (k, &i) in top.iter().enumerate() {
        if !s.is_word(i, "check") || s.token_text(i + 1) != Some("(") {
            continue;
        }
        let (_, close) = s.elements(i + 1);
        let name = (k >= 2 && s.is_word(top[k - 2], "constraint"))
            .then(|| s.name(top[k - 1]))
            .flatten()
            .unwrap_or_else(|| format!("{}_check", domain.name));
        let mut to = close + 1;
        if s.is_word(to, "not") && s.is_word(to + 1, "valid") {
            to += 2;
        }
        checks.push(TextCheck {
            name,
            definition: span(s, i..to),
            columns: Vec::new(),
        });
    }
    checks
}

/// The statement's text of tokens `range`.
fn span(s: &Statement, range: Range<usize>) -> String {
    match (
        s.tokens.get(range.start),
        range.end.checked_sub(1).and_then(|i| s.tokens.get(i)),
    ) {
        (Some(first), Some(last)) if range.start < range.end => {
            s.text[first.start..last.end].to_owned()
        }
        _ => String::new(),
    }
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
    use crate::mask::tables::is_personal;
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

    fn shape(schema: &Schema, table: &str) -> TableShape {
        schema.shape(&TableName::parse(table).unwrap()).unwrap()
    }

    fn personal(schema: &Schema, table: &str) -> Vec<String> {
        shape(schema, table)
            .columns
            .iter()
            .filter(|c| is_personal(c))
            .map(|c| c.name.clone())
            .collect()
    }

    #[test]
    fn text_like_and_network_columns_count_as_personal() {
        let schema = learn(
            "CREATE TYPE public.mood AS ENUM ('ok', 'sad');
             CREATE TYPE public.address AS (street text, no integer);
             CREATE TYPE public.point2 AS (x integer, y integer);
             CREATE TYPE public.span AS RANGE (subtype = integer);
             CREATE DOMAIN public.email AS public.citext CONSTRAINT email_at CHECK ((VALUE ~ '@'::text));
             CREATE DOMAIN public.score AS integer NOT NULL;
             CREATE DOMAIN public.code AS character varying(8) NOT NULL;
             CREATE TABLE public.\"user\" (
                 id uuid NOT NULL,
                 email public.email NOT NULL,
                 name character varying(40),
                 tags text[],
                 ip inet,
                 home public.address,
                 at public.point2,
                 seen timestamp(3) with time zone DEFAULT now() NOT NULL,
                 mood public.mood,
                 score public.score,
                 range public.span,
                 n numeric(10,2),
                 doc jsonb DEFAULT '{}'::jsonb NOT NULL,
                 odd public.unknown_type,
                 code public.code,
                 up text GENERATED ALWAYS AS (upper(name)) STORED,
                 serial integer GENERATED ALWAYS AS IDENTITY,
                 CONSTRAINT user_score CHECK ((n > (0)::numeric)),
                 CONSTRAINT user_name_check CHECK ((char_length((name)::text) <= 24))
             );
             ALTER TABLE ONLY public.\"user\" ADD COLUMN phone text, ALTER COLUMN tags SET NOT NULL;
             ALTER TABLE ONLY public.\"user\" ADD CONSTRAINT user_pkey PRIMARY KEY (id);",
        );
        assert_eq!(
            personal(&schema, "public.user"),
            [
                "email", "name", "tags", "ip", "home", "doc", "odd", "code", "up", "phone"
            ]
        );
        let user = shape(&schema, "public.user");
        let col = |n: &str| user.column(n).unwrap();
        assert!(col("email").not_null && col("tags").not_null && !col("name").not_null);
        assert_eq!(col("email").base, BaseType::Text);
        assert_eq!(
            col("email").checks[0].definition,
            "CHECK ((VALUE ~ '@'::text))"
        );
        assert_eq!(col("name").type_length, Some(40));
        assert_eq!(col("name").checks[0].name, "user_name_check");
        assert_eq!(col("name").checks[0].columns, ["name"]);
        assert_eq!(
            (col("tags").base.clone(), col("tags").array),
            (BaseType::Text, true)
        );
        assert_eq!(col("tags").type_length, None);
        assert_eq!(col("ip").base, BaseType::Network);
        assert_eq!(col("doc").base, BaseType::Jsonb);
        assert_eq!(col("doc").default.as_deref(), Some("'{}'::jsonb"));
        assert_eq!(col("home").base, BaseType::Other);
        assert_eq!(col("at").base, BaseType::NotPersonal);
        assert!(col("code").not_null && col("code").type_length == Some(8));
        assert!(col("up").generated && !col("serial").generated);
        assert_eq!(col("seen").type_name, "timestamp with time zone(3)");
    }

    #[test]
    fn inherited_columns_and_quoted_names_are_known() {
        let schema = learn(
            "CREATE TABLE \"x.y\".parent (id integer, note text);
             CREATE UNLOGGED TABLE \"x.y\".\"Child\" (extra varchar) INHERITS (\"x.y\".parent);",
        );
        assert_eq!(personal(&schema, "\"x.y\".\"Child\""), ["note", "extra"]);
        assert_eq!(
            shape(&schema, "\"x.y\".\"Child\"").parents,
            [TableName::new("x.y", "parent")]
        );
    }

    #[test]
    fn partitions_typed_tables_and_later_changes_are_followed() {
        let schema = learn(
            "CREATE TYPE public.contact AS (email text, age integer);
             CREATE TABLE public.event (id integer, at date, email text) PARTITION BY RANGE (at);
             CREATE TABLE public.event_2024 (id integer, at date, email text);
             ALTER TABLE ONLY public.event ATTACH PARTITION public.event_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             CREATE TABLE public.event_2025 PARTITION OF public.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             CREATE TABLE public.event_2025_q1 PARTITION OF public.event_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-04-01');
             CREATE TABLE public.card OF public.contact;
             CREATE TABLE public.t (id integer, a integer, b text);
             ALTER TABLE public.t ALTER COLUMN a TYPE xml, DROP COLUMN b;
             ALTER TABLE public.t RENAME COLUMN id TO ident;
             ALTER TABLE public.event * ADD COLUMN note text;",
        );
        let event = TableName::new("public", "event");
        assert!(shape(&schema, "event").partitioned);
        let q1 = shape(&schema, "event_2025_q1");
        assert!(q1.partition);
        assert_eq!(
            q1.parents,
            [TableName::new("public", "event_2025"), event.clone()]
        );
        assert_eq!(q1.reported(), &event);
        assert_eq!(personal(&schema, "event_2025_q1"), ["email", "note"]);
        assert_eq!(shape(&schema, "event_2024").parents, [event]);
        assert_eq!(personal(&schema, "card"), ["email"]);
        let t = shape(&schema, "t");
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ident", "a"]);
        assert_eq!(t.columns[1].base, BaseType::Xml);
    }
}
