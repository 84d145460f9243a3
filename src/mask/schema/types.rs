//! The dump's types as its text declares them (`CREATE DOMAIN`, `ALTER DOMAIN ... ADD
//! CONSTRAINT`, `CREATE TYPE`), and what a column's type resolves to: a built-in type's base,
//! a domain's through its base type, a composite's or a range's through what it holds.

use std::collections::HashMap;
use std::ops::Range;

use crate::mask::shape::BaseType;
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

/// A CHECK as the dump writes it: its name, its text from `CHECK`, the columns it names.
#[derive(Debug, Clone)]
pub(super) struct TextCheck {
    pub name: String,
    pub definition: String,
    pub columns: Vec<String>,
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
pub(super) const AFTER_TYPE: &[&str] = &[
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
/// What a column's type resolves to.
pub(super) struct Resolved {
    pub base: BaseType,
    pub array: bool,
    pub length: Option<u64>,
    pub not_null: bool,
    pub checks: Vec<TextCheck>,
}

/// The dump's types, by schema and name.
#[derive(Debug, Default)]
pub(super) struct Types(HashMap<(String, String), UserType>);

impl Types {
    /// A composite type's fields (for a table `OF` it).
    pub(super) fn fields(&self, ty: &TableName) -> Option<&[(String, TypeRef)]> {
        match self.0.get(&(ty.schema.clone(), ty.name.clone())) {
            Some(UserType::Composite(fields)) => Some(fields),
            _ => None,
        }
    }

    /// What values of `ty` are, through domains, composites and ranges.
    pub(super) fn resolve(&self, ty: &TypeRef, depth: u32) -> Resolved {
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
        match self.0.get(&(schema.clone(), name.clone())) {
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

    pub(super) fn create_domain(&mut self, s: &Statement) {
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
        self.0.insert(
            (name.schema, name.name),
            UserType::Domain {
                base,
                not_null,
                checks,
            },
        );
    }

    /// `ALTER DOMAIN d ADD CONSTRAINT c CHECK (...)`.
    pub(super) fn alter_domain(&mut self, s: &Statement) {
        let Some((name, i)) = s.table(2) else {
            return;
        };
        if !s.is_word(i, "add") {
            return;
        }
        let found = domain_checks(s, i + 1, &name);
        if let Some(UserType::Domain { checks, .. }) = self.0.get_mut(&(name.schema, name.name)) {
            checks.extend(found);
        }
    }

    pub(super) fn create_type(&mut self, s: &Statement) {
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
        self.0.insert((name.schema, name.name), kind);
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
pub(super) fn span(s: &Statement, range: Range<usize>) -> String {
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
pub(super) fn type_end(s: &Statement, from: usize, to: usize) -> usize {
    s.top_level(from..to)
        .find(|&i| AFTER_TYPE.iter().any(|w| s.is_word(i, w)))
        .unwrap_or(to)
}

pub(super) fn type_ref(s: &Statement, from: usize, to: usize) -> Option<TypeRef> {
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
