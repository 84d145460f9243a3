//! The dump's tables and types as its pre-data text declares them, for `plan` and `rules`,
//! which read a snapshot without a staging server (a run asks the scratch database instead:
//! [`super::catalog`]). It learns from `CREATE TABLE` (columns, CHECKs, `INHERITS`,
//! `PARTITION OF`, `OF type`), `ALTER TABLE` (`ADD COLUMN`, `ADD CONSTRAINT ... CHECK`,
//! `ALTER COLUMN ... TYPE | SET NOT NULL`, `RENAME`, `DROP COLUMN`, `ATTACH PARTITION`,
//! `INHERIT`), `CREATE DOMAIN`, `ALTER DOMAIN ... ADD CONSTRAINT` and `CREATE TYPE`, and
//! describes each table as a [`TableShape`]. A type it does not know counts as personal.

#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::ops::Range;

use super::shape::{Check, ColumnShape};
use super::tables::{TableShape, Tables};
use crate::restore::statement::Statement;
use crate::table::TableName;
use types::{AFTER_TYPE, TextCheck, TypeRef, Types, span, type_end, type_ref};

#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: TypeRef,
    not_null: bool,
    generated: bool,
    default: Option<String>,
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
    types: Types,
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
                self.types.create_domain(s);
            } else if w(1, "type") {
                self.types.create_type(s);
            }
        } else if w(0, "alter") && w(1, "table") {
            self.alter_table(s);
        } else if w(0, "alter") && w(1, "domain") {
            self.types.alter_domain(s);
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
        let resolved = self.types.resolve(&c.ty, 0);
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
            if let Some(fields) = self.types.fields(&ty) {
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
