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
}

/// `schema.name`, parts quoted only when they need it: for people (reports, errors, metrics).
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
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

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
            TableName::parse("user").unwrap(),
            TableName::new("public", "user")
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
        assert_eq!(TableName::new("x.y", "user").to_string(), "\"x.y\".user");
        assert_eq!(
            TableName::new("public", "user").sql(),
            "\"public\".\"user\""
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
