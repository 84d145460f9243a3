//! The dump's tables as the masking knows them: each one's columns ([`ColumnShape`]) and the
//! tables whose rules it follows (the partitioned tables it is a partition of, the tables it
//! inherits from). In a run they come from the scratch database's catalog
//! ([`super::catalog`]), in `plan` and `rules` from the dump's text ([`super::schema`]). What
//! changed in a table after the masking classified it ([`changes`]) fails the run.

use std::collections::{BTreeMap, BTreeSet};

use super::shape::{BaseType, ColumnShape};
use crate::table::{TableName, display_ident};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: TableName,
    /// Its ancestors, nearest first: the partitioned tables it is a partition of, or the
    /// tables it inherits from. Their rules apply to it where it has none of its own.
    pub parents: Vec<TableName>,
    /// A partition: its parents are partitioned tables, the last one the root.
    pub partition: bool,
    /// Partitioned: its partitions hold its rows.
    pub partitioned: bool,
    pub columns: Vec<ColumnShape>,
    /// How the catalog identifies it and its columns; `None` when read from the dump's text.
    pub catalog: Option<Catalogued>,
}

/// A table's identity in the scratch database: what the reconciliation compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogued {
    pub oid: u32,
    /// Per column (in [`TableShape::columns`]' order): its number and its type's oid and
    /// modifier.
    pub columns: Vec<ColumnId>,
    /// Whether its data files hold anything (rows, or rows deleted since).
    pub has_rows: bool,
    /// An extension's table: created with the extension, not by the dump's statements.
    pub extension: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnId {
    pub number: i16,
    pub type_oid: u32,
    pub modifier: i32,
}

/// Every table known, by name.
pub type Tables = BTreeMap<TableName, TableShape>;

impl TableShape {
    /// The table, then the tables whose rules it follows, nearest first.
    pub fn lineage(&self) -> impl Iterator<Item = &TableName> + Clone {
        std::iter::once(&self.name).chain(&self.parents)
    }

    pub fn column(&self, name: &str) -> Option<&ColumnShape> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The table a report names for this one: the root of its partition tree, itself when it
    /// is no partition.
    pub fn reported(&self) -> &TableName {
        match self.parents.last() {
            Some(root) if self.partition => root,
            _ => &self.name,
        }
    }
}

/// Whether values of a column can hold personal data: anything but numbers, booleans, dates
/// and times, uuids and enums.
pub fn is_personal(column: &ColumnShape) -> bool {
    column.base != BaseType::NotPersonal
}

/// What changed in `table` between `before` and `after` (both from the catalog): each
/// difference as a phrase naming the column, empty when nothing did.
pub fn changes(before: &TableShape, after: &TableShape) -> Vec<String> {
    let (Some(was), Some(now)) = (&before.catalog, &after.catalog) else {
        return Vec::new();
    };
    let table = &after.name;
    if was.oid != now.oid {
        return vec![format!("{table} is another table than the one classified")];
    }
    let mut found = Vec::new();
    if before.parents != after.parents {
        let names = |parents: &[TableName]| match parents {
            [] => "none".to_owned(),
            parents => parents
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        found.push(format!(
            "{table}'s parents (whose rules it follows) changed from {} to {}",
            names(&before.parents),
            names(&after.parents)
        ));
    }
    let named =
        |shape: &TableShape, ids: &Catalogued| -> BTreeMap<i16, (String, ColumnId, String)> {
            shape
                .columns
                .iter()
                .zip(&ids.columns)
                .map(|(c, id)| (id.number, (c.name.clone(), *id, c.type_name.clone())))
                .collect()
        };
    let (old, new) = (named(before, was), named(after, now));
    let column = |name: &str| format!("{table}.{}", display_ident(name));
    for (number, (name, id, type_name)) in &new {
        match old.get(number) {
            None => found.push(format!("{} ({type_name}) was added", column(name))),
            Some((old_name, _, _)) if old_name != name => {
                found.push(format!(
                    "{} was renamed to {}",
                    column(old_name),
                    column(name)
                ));
            }
            Some((_, old_id, old_type)) if old_id != id => {
                found.push(format!(
                    "{} was retyped from {old_type} to {type_name}",
                    column(name)
                ));
            }
            Some(_) => {}
        }
    }
    for (number, (name, _, _)) in &old {
        if !new.contains_key(number) {
            found.push(format!("{} was dropped", column(name)));
        }
    }
    found
}

/// What differs between the tables the masking classified (`known`; rows were loaded into
/// `loaded`) and the tables the scratch database holds `now`, after the last statement: a
/// column added, retyped, renamed or dropped, a table holding rows the masking never saw, a
/// table rows were loaded into gone.
pub fn reconcile(known: &Tables, loaded: &BTreeSet<TableName>, now: &[TableShape]) -> Vec<String> {
    let mut found = Vec::new();
    for table in now {
        match known.get(&table.name) {
            Some(before) => found.extend(changes(before, table)),
            None if table
                .catalog
                .as_ref()
                .is_some_and(|c| c.has_rows && !c.extension) =>
            {
                found.push(format!("{} holds rows the masking never saw", table.name));
            }
            None => {}
        }
    }
    for name in loaded {
        if known.contains_key(name) && !now.iter().any(|t| t.name == *name) {
            found.push(format!("{name} was dropped or renamed after its data"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str) -> ColumnShape {
        ColumnShape::plain(name, type_name, BaseType::Text)
    }

    /// Table `name` (oid `oid`) with `columns`: (number, name, type oid).
    fn table(name: &str, oid: u32, columns: &[(i16, &str, u32)], has_rows: bool) -> TableShape {
        TableShape {
            name: TableName::new("public", name),
            parents: Vec::new(),
            partition: false,
            partitioned: false,
            columns: columns
                .iter()
                .map(|(_, n, t)| column(n, &format!("type{t}")))
                .collect(),
            catalog: Some(Catalogued {
                oid,
                columns: columns
                    .iter()
                    .map(|(number, _, type_oid)| ColumnId {
                        number: *number,
                        type_oid: *type_oid,
                        modifier: -1,
                    })
                    .collect(),
                has_rows,
                extension: false,
            }),
        }
    }

    #[test]
    fn what_changed_after_the_classification_is_named() {
        let before = table(
            "t",
            1,
            &[(1, "id", 23), (2, "email", 25), (3, "note", 25)],
            true,
        );
        let known: Tables = [(before.name.clone(), before.clone())].into();
        let loaded: BTreeSet<TableName> = [before.name.clone()].into();
        assert_eq!(
            reconcile(&known, &loaded, std::slice::from_ref(&before)),
            Vec::<String>::new()
        );

        let after = table(
            "t",
            1,
            &[
                (1, "id", 23),
                (2, "mail", 25),
                (3, "note", 142),
                (4, "raw", 25),
            ],
            true,
        );
        let stranger = table("stash", 9, &[(1, "v", 25)], true);
        let empty = table("later", 10, &[(1, "v", 25)], false);
        assert_eq!(
            reconcile(&known, &loaded, &[after, stranger, empty]),
            [
                "public.t.email was renamed to public.t.mail",
                "public.t.note was retyped from type25 to type142",
                "public.t.raw (type25) was added",
                "public.stash holds rows the masking never saw",
            ]
        );
        let mut attached = before.clone();
        attached.parents = vec![TableName::new("public", "p")];
        assert_eq!(
            reconcile(&known, &loaded, &[attached]),
            ["public.t's parents (whose rules it follows) changed from none to public.p"]
        );
        let replaced = table("t", 2, &[(1, "id", 23)], true);
        assert_eq!(
            reconcile(&known, &loaded, &[replaced]),
            ["public.t is another table than the one classified"]
        );
        assert_eq!(
            reconcile(&known, &loaded, &[]),
            ["public.t was dropped or renamed after its data"]
        );
    }
}
