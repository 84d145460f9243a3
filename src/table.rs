//! A table as PostgreSQL addresses it: a (schema, name) pair, never a dotted string (a schema
//! named `x.y` is legal); and identifiers quoted, for SQL text and for people. It uses no
//! other module, so the config can parse the tables its masking rules name.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: &str, name: &str) -> TableName {
        TableName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A table as the config writes it: `schema.name` or `name` (schema `public`), each part
    /// an SQL identifier, `"quoted"` when it holds dots, capitals or other characters.
    pub fn parse(text: &str) -> Result<TableName, String> {
        let parts = identifiers(text)?;
        match parts.as_slice() {
            [name] => Ok(TableName::new("public", name)),
            [schema, name] => Ok(TableName::new(schema, name)),
            _ => Err(format!(
                "{text:?} is not a table name (\"schema.table\" or \"table\")"
            )),
        }
    }

    /// Both parts quoted, for SQL text.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `public."order"`, as pg_dump spells it: the rows per table (report, plan, metrics) and
    /// the loader's errors name a table as the dump's COPY statement does.
    pub fn as_dumped(&self) -> String {
        let ident = |name: &str| {
            let keyword = KEYWORDS.split_ascii_whitespace().any(|k| k == name);
            if is_plain(name) && !keyword {
                name.to_owned()
            } else {
                quote_ident(name)
            }
        };
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

/// `public.order`, quoted only where the name would not read back: how people name a table
/// (the config, rules, masked values, verification, masking errors).
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            display_ident(&self.schema),
            display_ident(&self.name)
        )
    }
}

/// A double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The identifier as written unquoted when that reads back the same, else quoted.
pub fn display_ident(name: &str) -> String {
    if is_plain(name) {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

/// Lower-case letters, digits and underscores, not starting with a digit.
fn is_plain(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The keywords `quote_ident()` and pg_dump quote: PostgreSQL 15's reserved, column-name and
/// type/function-name keywords (src/include/parser/kwlist.h; `pg_get_keywords()` lists them
/// with catcode R, C and T).
const KEYWORDS: &str = "
    all analyse analyze and any array as asc asymmetric authorization between bigint
    binary bit boolean both case cast char character check coalesce collate collation
    column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user dec decimal default
    deferrable desc distinct do else end except exists extract false fetch float for
    foreign freeze from full grant greatest group grouping having ilike in initially
    inner inout int integer intersect interval into is isnull join lateral leading least
    left like limit localtime localtimestamp national natural nchar none normalize not
    notnull null nullif numeric offset on only or order out outer overlaps overlay
    placing position precision primary real references returning right row select
    session_user setof similar smallint some substring symmetric table tablesample then
    time timestamp to trailing treat trim true union unique user using values varchar
    variadic verbose when where window with xmlattributes xmlconcat xmlelement xmlexists
    xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable";

/// Splits `a."b.c"` into its identifiers: unquoted parts fold to lower case.
fn identifiers(text: &str) -> Result<Vec<String>, String> {
    let bad = || format!("{text:?} is not a table name (\"schema.table\" or \"table\")");
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(bad());
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {}
            Some(_) => return Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_parse_into_schema_and_table() {
        assert_eq!(
            TableName::parse("order").unwrap(),
            TableName::new("public", "order")
        );
        assert_eq!(
            TableName::parse("Billing.Invoice").unwrap(),
            TableName::new("billing", "invoice")
        );
        assert_eq!(
            TableName::parse("\"x.y\".\"T\"").unwrap(),
            TableName::new("x.y", "T")
        );
        for bad in ["", "a.b.c", "a.", "\"open", "\"a\"b"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(TableName::new("x.y", "order").to_string(), "\"x.y\".order");
        assert_eq!(
            TableName::new("public", "order").sql(),
            "\"public\".\"order\""
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("order"), "\"order\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn names_as_pg_dump_spells_them_quote_keywords_too() {
        let dumped = |schema: &str, name: &str| TableName::new(schema, name).as_dumped();
        assert_eq!(dumped("public", "group"), "public.\"group\"");
        assert_eq!(
            TableName::new("public", "order").to_string(),
            "public.order"
        );
        assert_eq!(dumped("public", "order_line"), "public.order_line");
        assert_eq!(dumped("public", "order"), "public.\"order\"");
        assert_eq!(dumped("public", "xmltable"), "public.\"xmltable\"");
        // Unreserved keywords stay plain, as they do in pg_dump's output.
        assert_eq!(dumped("public", "name"), "public.name");
        assert_eq!(dumped("x.y", "T"), "\"x.y\".\"T\"");
        assert_eq!(dumped("_s", "t1$"), "_s.\"t1$\"");
    }
}
