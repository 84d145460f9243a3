//! What a column's type and CHECK constraints allow one masked value (one element, for an
//! array): length bounds, from `varchar(n)`/`char(n)` and from CHECKs comparing
//! `char_length`/`character_length`/`length`/`octet_length` of the column (or a domain's
//! `VALUE`), through casts, with a number; and which CHECKs a NULL can break. CHECKs are
//! read in the text `pg_get_constraintdef` prints (and pg_dump writes): fully
//! parenthesized, `BETWEEN` spelled as two comparisons. A bound is taken only where it
//! holds for every non-NULL value: from the CHECK's top-level `AND`s, and through an `OR`
//! whose other branches only allow NULL. Anything else in a CHECK is left to the server,
//! which refuses a row that breaks it (the run then fails; nothing is kept).

use super::shape::{BaseType, Check, ColumnShape};

/// What a length is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Chars,
    Bytes,
}

impl Measure {
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Chars => "characters",
            Measure::Bytes => "bytes",
        }
    }
}

/// Lengths one value may have, and what says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub measure: Measure,
    pub min: u64,
    pub max: Option<u64>,
    /// `the type character varying(20)`, `CHECK c_note_check ((char_length(note) <= 24))`.
    pub source: String,
}

/// The length bounds on one value of `shape`.
pub fn bounds(shape: &ColumnShape) -> Vec<Bound> {
    let mut bounds: Vec<Bound> = shape
        .type_length
        .map(|n| Bound {
            measure: Measure::Chars,
            min: 0,
            max: Some(n),
            source: format!("the type {}", shape.type_name),
        })
        .into_iter()
        .collect();
    for check in &shape.checks {
        let tokens = tokens(&check.definition);
        let Some(body) = check_body(&tokens) else {
            continue;
        };
        let mut found = Vec::new();
        conjuncts(body, &subject(shape, check), &shape.base, &mut found);
        bounds.extend(found.into_iter().map(|(measure, min, max)| Bound {
            measure,
            min,
            max,
            source: format!(
                "CHECK {} {}",
                check.name,
                check.definition.trim_start_matches("CHECK ")
            ),
        }));
    }
    bounds
}

/// The CHECKs on `shape` that a NULL in it can break: they test for NULL (`IS [NOT] NULL`,
/// `num_nulls`, `coalesce`, ...), so a NULL does not simply leave them unknown (and passed).
pub fn null_sensitive(shape: &ColumnShape) -> Vec<&Check> {
    shape
        .checks
        .iter()
        .filter(|check| {
            let tokens = tokens(&check.definition);
            tokens.iter().enumerate().any(|(i, t)| match t {
                Token::Word(w) if w.eq_ignore_ascii_case("is") => {
                    let next = match tokens.get(i + 1) {
                        Some(Token::Word(n)) if n.eq_ignore_ascii_case("not") => tokens.get(i + 2),
                        next => next,
                    };
                    matches!(next, Some(Token::Word(w))
                        if ["null", "distinct", "true", "false", "unknown"]
                            .iter().any(|k| w.eq_ignore_ascii_case(k)))
                }
                Token::Word(w) => NULL_AWARE.iter().any(|f| w.eq_ignore_ascii_case(f)),
                _ => false,
            })
        })
        .collect()
}

/// Functions and expressions whose result a NULL argument does not make NULL.
const NULL_AWARE: &[&str] = &[
    "num_nulls",
    "num_nonnulls",
    "coalesce",
    "concat",
    "concat_ws",
    "greatest",
    "least",
    "case",
    "array_position",
    "array_remove",
];

/// What stands for the column in `check`: a domain's CHECK says `VALUE`.
fn subject(shape: &ColumnShape, check: &Check) -> String {
    if check.columns.is_empty() {
        "value".into()
    } else {
        shape.name.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword or unquoted name, as written.
    Word(String),
    /// A `"quoted name"`, unquoted.
    Name(String),
    Number(String),
    /// A `'string'` constant, unquoted.
    String(String),
    /// `(`, `)`, `,`, `[`, `]`, `.`, or a run of operator characters (`<=`, `::`).
    Punct(String),
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize, end: char| {
        let mut value = String::new();
        *i += 1;
        while *i < chars.len() {
            if chars[*i] == end {
                if chars.get(*i + 1) == Some(&end) {
                    *i += 1;
                } else {
                    break;
                }
            }
            value.push(chars[*i]);
            *i += 1;
        }
        *i += 1;
        value
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            out.push(Token::Name(quoted(&mut i, '"')));
        } else if c == '\'' {
            out.push(Token::String(quoted(&mut i, '\'')));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Number(chars[start..i].iter().collect()));
        } else if "()[],.".contains(c) {
            out.push(Token::Punct(c.into()));
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && "+-*/<>=~!@#%^&|`?:".contains(chars[i]) {
                i += 1;
            }
            i = i.max(start + 1);
            out.push(Token::Punct(chars[start..i].iter().collect()));
        }
    }
    out
}

fn is(token: Option<&Token>, punct: &str) -> bool {
    matches!(token, Some(Token::Punct(p)) if p == punct)
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// The expression inside `CHECK (...)`.
fn check_body(tokens: &[Token]) -> Option<&[Token]> {
    if !is_word(tokens.first(), "check") {
        return None;
    }
    let close = matching(tokens, 1)?;
    Some(&tokens[2..close])
}

/// The index of the `)` closing the `(` at `open`.
fn matching(tokens: &[Token], open: usize) -> Option<usize> {
    if !is(tokens.get(open), "(") {
        return None;
    }
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if is(Some(t), "(") {
            depth += 1;
        } else if is(Some(t), ")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// `tokens` without the parentheses around all of it.
fn strip(mut tokens: &[Token]) -> &[Token] {
    while !tokens.is_empty() && matching(tokens, 0) == Some(tokens.len() - 1) {
        tokens = &tokens[1..tokens.len() - 1];
    }
    tokens
}

/// `tokens` split where `at` says, outside parentheses.
fn split(tokens: &[Token], at: impl Fn(&Token) -> bool) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, t) in tokens.iter().enumerate() {
        if is(Some(t), "(") {
            depth += 1;
        } else if is(Some(t), ")") {
            depth -= 1;
        } else if depth == 0 && at(t) {
            parts.push(&tokens[start..i]);
            start = i + 1;
        }
    }
    parts.push(&tokens[start..]);
    parts
}

/// The bounds every non-NULL value must meet for `expr` to hold, from its `AND`s.
fn conjuncts(
    expr: &[Token],
    subject: &str,
    base: &BaseType,
    found: &mut Vec<(Measure, u64, Option<u64>)>,
) {
    let expr = strip(expr);
    let ands = split(expr, |t| is_word(Some(t), "and"));
    if ands.len() > 1 {
        for conjunct in ands {
            conjuncts(conjunct, subject, base, found);
        }
        return;
    }
    let branches: Vec<&[Token]> = split(expr, |t| is_word(Some(t), "or"))
        .into_iter()
        .filter(|b| !is_null_test(strip(b), subject))
        .collect();
    let [branch] = branches.as_slice() else {
        return;
    };
    let branch = strip(branch);
    if branch.len() < expr.len() {
        conjuncts(branch, subject, base, found);
    } else {
        found.extend(comparison(branch, subject, base));
    }
}

/// `subject IS NULL`.
fn is_null_test(tokens: &[Token], subject: &str) -> bool {
    tokens.len() > 2
        && is_word(tokens.get(tokens.len() - 2), "is")
        && is_word(tokens.last(), "null")
        && is_subject(&tokens[..tokens.len() - 2], subject)
}

/// `length(subject) <op> n` or `n <op> length(subject)`, as bounds.
fn comparison(
    tokens: &[Token],
    subject: &str,
    base: &BaseType,
) -> Option<(Measure, u64, Option<u64>)> {
    const OPERATORS: &[&str] = &["<", "<=", ">", ">=", "="];
    let sides = split(
        tokens,
        |t| matches!(t, Token::Punct(p) if OPERATORS.contains(&p.as_str())),
    );
    let [left, right] = sides.as_slice() else {
        return None;
    };
    let op = match &tokens[left.len()] {
        Token::Punct(p) => p.as_str(),
        _ => return None,
    };
    let (measure, n, op) = match (length_of(left, subject, base), number(right)) {
        (Some(m), Some(n)) => (m, n, op),
        _ => {
            // `n <op> length(...)`: the same comparison turned around.
            let flipped = match op {
                "<" => ">",
                "<=" => ">=",
                ">" => "<",
                ">=" => "<=",
                other => other,
            };
            (length_of(right, subject, base)?, number(left)?, flipped)
        }
    };
    Some(match op {
        "<" => (measure, 0, Some(n.saturating_sub(1))),
        "<=" => (measure, 0, Some(n)),
        ">" => (measure, n + 1, None),
        ">=" => (measure, n, None),
        _ => (measure, n, Some(n)),
    })
}

/// What `tokens` measure when they are `char_length(subject)` and its like.
fn length_of(tokens: &[Token], subject: &str, base: &BaseType) -> Option<Measure> {
    let mut tokens = strip(tokens);
    if is_word(tokens.first(), "pg_catalog") && is(tokens.get(1), ".") {
        tokens = &tokens[2..];
    }
    let Some(Token::Word(function)) = tokens.first() else {
        return None;
    };
    if matching(tokens, 1) != Some(tokens.len() - 1)
        || !is_subject(&tokens[2..tokens.len() - 1], subject)
    {
        return None;
    }
    match function.to_ascii_lowercase().as_str() {
        "octet_length" => Some(Measure::Bytes),
        "length" if *base == BaseType::Bytea => Some(Measure::Bytes),
        "char_length" | "character_length" | "length" => Some(Measure::Chars),
        _ => None,
    }
}

/// Whether `tokens` are the column (or `VALUE`), possibly cast: `((note)::text)`.
fn is_subject(tokens: &[Token], subject: &str) -> bool {
    let tokens = strip(tokens);
    let casts = split(tokens, |t| is(Some(t), "::"));
    if casts.len() > 1 {
        return is_subject(casts[0], subject);
    }
    match tokens {
        [Token::Word(w)] => w.to_lowercase() == subject,
        [Token::Name(n)] => n == subject,
        _ => false,
    }
}

/// A non-negative integer constant: `24`, `(24)`, `'24'::integer`.
fn number(tokens: &[Token]) -> Option<u64> {
    match strip(tokens) {
        [Token::Number(n)] => n.parse().ok(),
        [Token::String(n), Token::Punct(cast), ..] if cast == "::" => n.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, base: BaseType, checks: &[(&str, &str)]) -> ColumnShape {
        ColumnShape {
            checks: checks
                .iter()
                .map(|(name, definition)| Check {
                    name: (*name).into(),
                    definition: (*definition).into(),
                    columns: if name.ends_with("domain") {
                        vec![]
                    } else {
                        vec!["note".into(), "other".into()]
                    },
                })
                .collect(),
            ..ColumnShape::plain(name, "text", base)
        }
    }

    fn read(name: &str, base: BaseType, definition: &str) -> Vec<(Measure, u64, Option<u64>)> {
        bounds(&shape(name, base, &[("c", definition)]))
            .into_iter()
            .map(|b| (b.measure, b.min, b.max))
            .collect()
    }

    // The definitions below are what PostgreSQL 15's pg_get_constraintdef printed for
    // constraints written `CHECK (char_length(note) <= 24)`, `... BETWEEN 1 AND 24`, a
    // varchar or citext column's `char_length(note) < 25`, and so on.
    #[test]
    fn length_bounds_are_read_in_the_forms_postgresql_prints() {
        use Measure::*;
        let text = || BaseType::Text;
        assert_eq!(
            read("note", text(), "CHECK ((char_length(note) <= 24))"),
            [(Chars, 0, Some(24))]
        );
        assert_eq!(
            read("note", text(), "CHECK ((char_length((note)::text) < 25))"),
            [(Chars, 0, Some(24))]
        );
        assert_eq!(
            read("note", text(), "CHECK ((length(note) <= 10))"),
            [(Chars, 0, Some(10))]
        );
        assert_eq!(
            read(
                "Quoted Col",
                text(),
                "CHECK ((length(\"Quoted Col\") <= 10))"
            ),
            [(Chars, 0, Some(10))]
        );
        assert_eq!(
            read("note", text(), "CHECK ((octet_length(note) <= 30))"),
            [(Bytes, 0, Some(30))]
        );
        assert_eq!(
            read(
                "note",
                text(),
                "CHECK (((char_length(note) >= 1) AND (char_length(note) <= 24)))"
            ),
            [(Chars, 1, None), (Chars, 0, Some(24))]
        );
        assert_eq!(
            read("note", text(), "CHECK ((24 >= char_length(note)))"),
            [(Chars, 0, Some(24))]
        );
        assert_eq!(
            read("note", BaseType::Bytea, "CHECK ((octet_length(note) = 32))"),
            [(Bytes, 32, Some(32))]
        );
        assert_eq!(
            read("note", BaseType::Bytea, "CHECK ((length(note) <= 16))"),
            [(Bytes, 0, Some(16))]
        );
        assert_eq!(
            read(
                "note",
                text(),
                "CHECK (((length((note)::text) <= 10) OR (note IS NULL)))"
            ),
            [(Chars, 0, Some(10))]
        );
        assert_eq!(
            read(
                "note",
                text(),
                "CHECK (((char_length(note) <= 24) AND (note <> ''::text)))"
            ),
            [(Chars, 0, Some(24))]
        );
        assert_eq!(
            read(
                "note",
                text(),
                "CHECK ((char_length(note) > '3'::integer)) NOT VALID"
            ),
            [(Chars, 4, None)]
        );
        let domain = bounds(&shape(
            "note",
            text(),
            &[(
                "vs domain",
                "CHECK (((length((VALUE)::text) >= 2) AND (length((VALUE)::text) <= 30)))",
            )],
        ));
        assert_eq!(domain.len(), 2);
        assert_eq!(
            domain[1].source,
            "CHECK vs domain (((length((VALUE)::text) >= 2) AND (length((VALUE)::text) <= 30)))"
        );
        // No bound every value must meet: negated, another branch, another column, a
        // function of the value, the number of elements.
        for definition in [
            "CHECK ((NOT (char_length(note) > 5)))",
            "CHECK (((char_length(note) <= 5) OR (other IS NULL)))",
            "CHECK ((char_length(other) <= 5))",
            "CHECK ((length(btrim(note)) <= 3))",
            "CHECK ((array_length(note, 1) <= 3))",
        ] {
            assert_eq!(read("note", text(), definition), [], "{definition}");
        }
    }

    #[test]
    fn checks_that_test_for_null_are_the_ones_a_null_can_break() {
        let s = shape(
            "note",
            BaseType::Text,
            &[
                ("ij", "CHECK ((num_nulls(note, other) = ANY (ARRAY[0, 2])))"),
                ("ij2", "CHECK (((note IS NULL) = (other IS NULL)))"),
                ("c", "CHECK ((COALESCE(note, other) IS NOT NULL))"),
                ("n domain", "CHECK ((VALUE IS NOT NULL))"),
                ("len", "CHECK ((char_length(note) <= 24))"),
                ("ne", "CHECK ((note <> ''::text))"),
            ],
        );
        let names: Vec<&str> = null_sensitive(&s).iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ij", "ij2", "c", "n domain"]);
    }
}
