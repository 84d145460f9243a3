//! SQL text we write ourselves, and what the server says back, kept in its parts.
//!
//! A server message can quote production values (`malformed array literal: "<a row's
//! text>"`, `Key (sku)=(...)`, the COPY line that failed) or be text the dump's own code
//! raised. So values are withheld as the message is taken apart, before anything stores or
//! prints it: what the log and the state file keep is the message without them. What is
//! sent out (email, chat) is built from the structure alone ([`ServerMessage::without_values`]:
//! the SQLSTATE, its class, the objects the server named).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Identifiers in the SQL we write are quoted the way table names are.
pub use crate::table::quote_ident;

/// What stands for a value the server quoted.
const WITHHELD: &str = "…";

/// What PostgreSQL said about a failed statement, in its parts, values withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    /// `SEVERITY: message`, or the client's own error when the server said nothing.
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
    /// What the server said of the error besides its text, when the server said it.
    pub structure: Option<Box<Structure>>,
}

/// An error's structure, as the server sends it besides the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    /// The SQLSTATE.
    pub code: String,
    /// The objects the error's own fields name (`table public.t`, `column c`, ...) and, for
    /// a COPY, the line and column of its data that failed.
    pub names: Vec<String>,
}

impl From<&tokio_postgres::Error> for ServerMessage {
    fn from(err: &tokio_postgres::Error) -> ServerMessage {
        let Some(db) = err.as_db_error() else {
            // The client's own words (a closed connection, a timeout): no value in them.
            return ServerMessage::plain(err.to_string());
        };
        // A message the dump's code raised is its text, whatever it says.
        let raised = db.where_().is_some_and(raised_by_code);
        let (message, detail, hint) = if raised {
            (
                "a message raised by code in the dump (withheld)".to_owned(),
                None,
                None,
            )
        } else {
            (
                withhold_quoted(db.message()),
                db.detail().map(withhold_detail),
                db.hint().map(withhold_quoted),
            )
        };
        let mut names: Vec<String> = [
            ("schema", db.schema()),
            ("table", db.table()),
            ("column", db.column()),
            ("type", db.datatype()),
            ("constraint", db.constraint()),
        ]
        .into_iter()
        .filter_map(|(kind, name)| name.map(|n| format!("{kind} {}", quote_ident(n))))
        .collect();
        if let Some(position) = db.where_().and_then(copy_position) {
            names.push(position);
        }
        ServerMessage {
            message: format!("{}: {message}", db.severity()),
            detail,
            hint,
            context: db.where_().map(withhold_context),
            structure: Some(Box::new(Structure {
                code: db.code().code().to_owned(),
                names,
            })),
        }
    }
}

impl From<tokio_postgres::Error> for ServerMessage {
    fn from(err: tokio_postgres::Error) -> ServerMessage {
        ServerMessage::from(&err)
    }
}

impl ServerMessage {
    /// A message of our own about the server's state (nothing to quote).
    pub fn plain(message: impl Into<String>) -> ServerMessage {
        ServerMessage {
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
            structure: None,
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.structure.as_ref().map(|s| s.code.as_str())
    }

    /// What may be sent out: for the server's own message, its SQLSTATE, the class and
    /// condition that code stands for, and the objects it named; never its text.
    pub fn without_values(&self) -> String {
        let Some(Structure { code, names }) = self.structure.as_deref() else {
            return self.message.clone();
        };
        let mut shown = format!("server error {code} ({})", describe_code(code));
        if !names.is_empty() {
            shown.push_str(&format!(" on {}", names.join(", ")));
        }
        shown
    }
}

/// The whole message with its detail, hint and context (values withheld), for the log and
/// the state file.
impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for (label, part) in [
            ("DETAIL", &self.detail),
            ("HINT", &self.hint),
            ("CONTEXT", &self.context),
        ] {
            if let Some(part) = part {
                write!(f, "; {label}: {part}")?;
            }
        }
        if let Some(code) = self.code() {
            write!(f, " (SQLSTATE {code})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerMessage {}

/// `err` and its causes joined by ": " (as `{:#}` prints them), with every server message
/// [without its text](ServerMessage::without_values).
pub fn chain_without_values(err: &(dyn std::error::Error + 'static)) -> String {
    crate::error::chain_with(err, |e| match e.downcast_ref::<ServerMessage>() {
        Some(server) => server.without_values(),
        None => e.to_string(),
    })
}

/// The words before a double-quoted name in the server's messages: what follows them is
/// an object's name. Any other quoted text is taken for a value (`for type integer: "…"`,
/// `value "…" is out of range`, `at or near "…"`, `SQL statement "…"`).
const NAMED_BY: &[&str] = &[
    "aggregate",
    "attribute",
    "cast",
    "collation",
    "column",
    "constraint",
    "conversion",
    "cursor",
    "database",
    "domain",
    "encoding",
    "extension",
    "family",
    "file",
    "function",
    "index",
    "language",
    "operator",
    "parameter",
    "policy",
    "procedure",
    "publication",
    "relation",
    "role",
    "rule",
    "savepoint",
    "schema",
    "sequence",
    "server",
    "statistics",
    "subscription",
    "table",
    "tablespace",
    "trigger",
    "type",
    "user",
    "view",
];

/// A row's values in a detail: `Key (a, b)=(…)`, `Failing row contains (…)`, `... = (…)`:
/// from the parenthesis after `=` or `contains` to the last one.
static ROW: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)(=\s*|contains\s+)\(.*\)").expect("valid regex"));
/// A COPY's position in its context: `COPY t, line 3, column c: "…"`.
static COPY_POSITION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^COPY [^\n]*?, line (\d+)(?:, column ((?:[^:"\n]|"(?:[^"]|"")*")+))?"#)
        .expect("valid regex")
});

/// `text` with every quoted value withheld; quoted names stay. The server quotes without
/// escaping (`malformed array literal: "{"a","b"}"`), so a value runs to the last quote of
/// its line.
fn withhold_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('"') {
        let (before, after) = (&rest[..open], &rest[open + 1..]);
        out.push_str(before);
        let word = before.trim_end();
        let word = &word[word
            .char_indices()
            .rfind(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8())..];
        let line = &after[..after.find('\n').unwrap_or(after.len())];
        match line.find('"') {
            Some(close) if NAMED_BY.contains(&word.to_ascii_lowercase().as_str()) => {
                out.push_str(&rest[open..open + close + 2]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&format!("\"{WITHHELD}\""));
                rest = &after[line.rfind('"').map_or(line.len(), |c| c + 1)..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A detail without the row it quotes; a detail that echoes its input over several lines
/// (an XML parser's, with a caret under the spot) is withheld whole.
fn withhold_detail(detail: &str) -> String {
    if detail.contains('\n') {
        return "(withheld: it quotes the input)".to_owned();
    }
    withhold_quoted(&ROW.replace_all(detail, format!("${{1}}({WITHHELD})")))
}

/// A context without the values it quotes: each line's quoted values, and what follows a
/// `JSON data, line N:` (the document itself).
fn withhold_context(context: &str) -> String {
    context
        .lines()
        .map(|line| match line.strip_prefix("JSON data, ") {
            Some(rest) => match rest.split_once(": ") {
                Some((at, _)) => format!("JSON data, {at}: {WITHHELD}"),
                None => line.to_owned(),
            },
            None => withhold_quoted(line),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the innermost frame of a context is a `RAISE` of a function's (the dump's code:
/// its message is whatever that code says).
fn raised_by_code(context: &str) -> bool {
    context
        .lines()
        .next()
        .is_some_and(|l| l.trim_end().ends_with(" at RAISE"))
}

/// `COPY line 3, column c` from a COPY's context.
fn copy_position(context: &str) -> Option<String> {
    let c = COPY_POSITION.captures(context)?;
    Some(match c.get(2) {
        Some(column) => format!("COPY data line {}, column {}", &c[1], column.as_str()),
        None => format!("COPY data line {}", &c[1]),
    })
}

/// A SQLSTATE's condition for the codes a refresh meets most, else its class (PostgreSQL's
/// appendix A).
fn describe_code(code: &str) -> &'static str {
    let condition = match code {
        "22001" => Some("string data right truncation"),
        "22003" => Some("numeric value out of range"),
        "22007" => Some("invalid datetime format"),
        "22008" => Some("datetime field overflow"),
        "22021" => Some("character not in repertoire"),
        "22P02" => Some("invalid text representation"),
        "22P04" => Some("bad copy file format"),
        "22P05" => Some("untranslatable character"),
        "23502" => Some("not null violation"),
        "23503" => Some("foreign key violation"),
        "23505" => Some("unique violation"),
        "23514" => Some("check violation"),
        "25006" => Some("read only sql transaction"),
        "28P01" => Some("invalid password"),
        "40P01" => Some("deadlock detected"),
        "42501" => Some("insufficient privilege"),
        "42601" => Some("syntax error"),
        "42703" => Some("undefined column"),
        "42704" => Some("undefined object"),
        "42883" => Some("undefined function"),
        "42P01" => Some("undefined table"),
        "53100" => Some("disk full"),
        "53200" => Some("out of memory"),
        "55P03" => Some("lock not available"),
        "57014" => Some("query canceled: a statement timeout or a cancel"),
        "57P01" => Some("admin shutdown"),
        "P0001" => Some("raise exception"),
        _ => None,
    };
    condition.unwrap_or(match code.get(..2).unwrap_or("") {
        "08" => "connection exception",
        "0A" => "feature not supported",
        "0L" | "0P" | "28" => "invalid authorization",
        "21" => "cardinality violation",
        "22" => "data exception",
        "23" => "integrity constraint violation",
        "25" => "invalid transaction state",
        "2B" | "2D" | "2F" | "38" | "39" => "routine exception",
        "3D" => "invalid catalog name",
        "3F" => "invalid schema name",
        "40" => "transaction rollback",
        "42" => "syntax error or access rule violation",
        "44" => "with check option violation",
        "53" => "insufficient resources",
        "54" => "program limit exceeded",
        "55" => "object not in prerequisite state",
        "57" => "operator intervention",
        "58" => "system error",
        "F0" => "configuration file error",
        "HV" => "foreign data wrapper error",
        "P0" => "PL/pgSQL error",
        "XX" => "internal error",
        _ => "other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dump line 7")]
    struct AtLine(#[source] ServerMessage);

    #[test]
    fn only_the_structure_is_sent_out() {
        let server = ServerMessage {
            message: "ERROR: could not create unique index \"user_email_key\"".into(),
            detail: Some("Key (email)=(…) is duplicated.".into()),
            hint: None,
            context: None,
            structure: Some(Box::new(Structure {
                code: "23505".into(),
                names: vec!["table \"user\"".into(), "constraint user_email_key".into()],
            })),
        };
        let err = AtLine(server);
        assert_eq!(
            chain_without_values(&err),
            "dump line 7: server error 23505 (unique violation) on table \"user\", \
             constraint user_email_key"
        );
        assert_eq!(
            err.0.to_string(),
            "ERROR: could not create unique index \"user_email_key\"; \
             DETAIL: Key (email)=(…) is duplicated. (SQLSTATE 23505)"
        );
        assert_eq!(
            ServerMessage::plain("connection closed").without_values(),
            "connection closed"
        );
    }

    #[test]
    fn quoted_values_are_withheld_and_names_kept() {
        for (text, kept) in [
            (
                "malformed array literal: \"{Jane Roe,+44 20 7946 0958}\"",
                "malformed array literal: \"…\"",
            ),
            (
                "malformed array literal: \"{\"Jane Roe\",\"+44 20\"}\"",
                "malformed array literal: \"…\"",
            ),
            (
                "invalid input syntax for type integer: \"jane@example.org\"",
                "invalid input syntax for type integer: \"…\"",
            ),
            (
                "value \"99999999999\" is out of range for type integer",
                "value \"…\" is out of range for type integer",
            ),
            (
                "syntax error at or near \"'secret'\"",
                "syntax error at or near \"…\"",
            ),
            (
                "null value in column \"email\" of relation \"user\" violates not-null constraint",
                "null value in column \"email\" of relation \"user\" violates not-null constraint",
            ),
            (
                "insert or update on table \"a\" violates foreign key constraint \"a_b_fkey\"",
                "insert or update on table \"a\" violates foreign key constraint \"a_b_fkey\"",
            ),
            (
                "invalid value for parameter \"DateStyle\": \"x\"",
                "invalid value for parameter \"DateStyle\": \"…\"",
            ),
        ] {
            assert_eq!(withhold_quoted(text), kept);
        }
    }

    #[test]
    fn a_detail_keeps_no_row_and_a_context_no_value() {
        assert_eq!(
            withhold_detail("Key (sku)=(SKU-Jane (+44) 20) already exists."),
            "Key (sku)=(…) already exists."
        );
        assert_eq!(
            withhold_detail("Failing row contains (1, Jane Roe, null)."),
            "Failing row contains (…)."
        );
        assert_eq!(
            withhold_detail("line 1: Start tag expected\nJane Roe\n^"),
            "(withheld: it quotes the input)"
        );
        assert_eq!(
            withhold_context("COPY product, line 3, column tags: \"{Jane,+44 20 7946 0958}\""),
            "COPY product, line 3, column tags: \"…\""
        );
        assert_eq!(
            withhold_context(
                "JSON data, line 1: {\"name\": \"Jane\"\nCOPY t, line 2, column j: \"x\""
            ),
            "JSON data, line 1: …\nCOPY t, line 2, column j: \"…\""
        );
        assert_eq!(
            withhold_context(
                "SQL statement \"UPDATE t SET v = 'jane'\"\nPL/pgSQL function f() line 3 at SQL statement"
            ),
            "SQL statement \"…\"\nPL/pgSQL function f() line 3 at SQL statement"
        );
        assert!(raised_by_code(
            "PL/pgSQL function public.f() line 2 at RAISE\nCOPY t, line 1"
        ));
        assert!(!raised_by_code("COPY t, line 1, column c: \"x\""));
        assert_eq!(
            copy_position("COPY product, line 3, column tags: \"…\"").as_deref(),
            Some("COPY data line 3, column tags")
        );
        assert_eq!(
            copy_position("COPY \"odd, name\", line 12: \"…\"").as_deref(),
            Some("COPY data line 12")
        );
    }
}
