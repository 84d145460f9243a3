//! A column's [`ColumnShape`] as the dump's text declares it: its type followed through
//! domains to a base type, gathering their NOT NULL and CHECKs, with its table's CHECKs that
//! name it. What `plan` and `rules` read; the restore asks the server instead, once it can.

use super::{Column, LENGTH_LIMITED, Schema, TypeRef, UserType};
use crate::mask::shape::{BaseType, ColumnShape};
use crate::table::TableName;

/// Built-in types by what one value is (as the last part of their name).
const BASE_TYPES: &[(&str, BaseType)] = &[
    ("text", BaseType::Text),
    ("character varying", BaseType::Text),
    ("varchar", BaseType::Text),
    ("character", BaseType::Text),
    ("char", BaseType::Text),
    ("bpchar", BaseType::Text),
    ("name", BaseType::Text),
    ("citext", BaseType::Text),
    ("bytea", BaseType::Bytea),
    ("json", BaseType::Json),
    ("jsonb", BaseType::Jsonb),
    ("xml", BaseType::Xml),
    ("inet", BaseType::Network),
    ("cidr", BaseType::Network),
    ("macaddr", BaseType::Network),
    ("macaddr8", BaseType::Network),
];

impl Schema {
    /// The shape of `column` of `table` as the dump's text declares it: domains followed to
    /// their base type, gathering their NOT NULL and CHECKs. (The restore asks the server
    /// instead, once it can; `plan` and `rules` read the text.)
    pub fn shape(&self, table: &TableName, column: &Column) -> ColumnShape {
        let mut shape = ColumnShape {
            name: column.name.clone(),
            type_name: column.ty.to_string(),
            base: BaseType::Other,
            array: false,
            not_null: column.not_null,
            type_length: None,
            checks: self
                .checks
                .get(table)
                .into_iter()
                .flatten()
                .filter(|c| c.columns.contains(&column.name))
                .cloned()
                .collect(),
            generated: false,
            default: None,
        };
        let mut ty = &column.ty;
        // Domains over domains end; a cycle (impossible in a real dump) stays `Other`.
        for _ in 0..16 {
            shape.array |= ty.array;
            let name = ty.name.last().map(String::as_str).unwrap_or_default();
            if LENGTH_LIMITED.contains(&name) && shape.type_length.is_none() {
                // A bare `character` is `character(1)`.
                shape.type_length = ty
                    .modifier
                    .or(matches!(name, "character" | "char").then_some(1));
            }
            let user = match ty.name.as_slice() {
                [schema, name] if schema != "pg_catalog" => {
                    self.types.get(&(schema.clone(), name.clone()))
                }
                _ => None,
            };
            shape.base = match user {
                Some(UserType::Domain {
                    base,
                    not_null,
                    checks,
                }) => {
                    shape.not_null |= not_null;
                    shape.checks.extend(checks.iter().cloned());
                    ty = base;
                    continue;
                }
                Some(UserType::Enum) => BaseType::NotPersonal,
                Some(UserType::Of(_)) if !self.is_personal(ty) => BaseType::NotPersonal,
                Some(UserType::Of(_) | UserType::Other) => BaseType::Other,
                None => match BASE_TYPES.iter().find(|(n, _)| *n == name) {
                    Some((_, base)) => base.clone(),
                    None if !self.is_personal(&TypeRef {
                        array: false,
                        ..ty.clone()
                    }) =>
                    {
                        BaseType::NotPersonal
                    }
                    None => BaseType::Other,
                },
            };
            break;
        }
        shape
    }

    /// The shape of the column `name` of `table`; a column the pre-data did not declare is
    /// of a type not known.
    pub fn shape_of(&self, table: &TableName, name: &str) -> ColumnShape {
        match self
            .columns(table)
            .and_then(|cols| cols.iter().find(|c| c.name == name))
        {
            Some(column) => self.shape(table, column),
            None => ColumnShape {
                name: name.to_owned(),
                type_name: "type unknown".into(),
                base: BaseType::Other,
                array: false,
                not_null: false,
                type_length: None,
                checks: Vec::new(),
                generated: false,
                default: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::learn;
    use super::*;

    #[test]
    fn shapes_follow_domains_and_gather_checks() {
        // As pg_dump writes them.
        let schema = learn(
            "CREATE DOMAIN public.short AS text
             	CONSTRAINT short_check CHECK ((char_length(VALUE) <= 24));
             CREATE DOMAIN public.nn AS character varying(40) NOT NULL
             	CONSTRAINT nn_check CHECK ((VALUE IS NOT NULL));
             CREATE DOMAIN public.tags AS text[];
             CREATE TABLE public.c (
                 a public.short,
                 b public.nn,
                 c public.tags,
                 d bytea NOT NULL,
                 e public.citext,
                 f character(2)[],
                 g text,
                 h integer,
                 CONSTRAINT c_g_check CHECK ((char_length(g) <= 24)),
                 CONSTRAINT ij CHECK ((num_nulls(a, g) = ANY (ARRAY[0, 2])))
             );",
        );
        let table = TableName::new("public", "c");
        let shape = |name: &str| schema.shape_of(&table, name);
        let a = shape("a");
        assert_eq!(
            (a.base, a.array, a.type_name.as_str()),
            (BaseType::Text, false, "public.short")
        );
        let checks: Vec<(&str, &str)> = a
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.definition.as_str()))
            .collect();
        assert_eq!(
            checks,
            [
                ("ij", "CHECK ((num_nulls(a, g) = ANY (ARRAY[0, 2])))"),
                ("short_check", "CHECK ((char_length(VALUE) <= 24))")
            ]
        );
        assert_eq!(a.checks[0].columns, ["a", "g"]);
        assert!(a.checks[1].columns.is_empty());
        let b = shape("b");
        assert!(b.not_null && b.type_length == Some(40) && b.base == BaseType::Text);
        let c = shape("c");
        assert!(c.array && c.base == BaseType::Text && !c.not_null);
        let d = shape("d");
        assert!(d.not_null && d.base == BaseType::Bytea);
        assert_eq!(shape("e").base, BaseType::Text);
        let f = shape("f");
        assert!(f.array && f.type_length == Some(2));
        assert_eq!(shape("g").checks.len(), 2);
        assert_eq!(shape("h").base, BaseType::NotPersonal);
        assert_eq!(shape("missing").base, BaseType::Other);
    }
}
