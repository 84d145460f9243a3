//! A statement of the dump as the [`lexer`](super::lexer) splits it, and the vocabulary every
//! reader of statements shares (the filter, the post-data scheduler, the masking's schema):
//! words, names, qualified names, what lies outside parentheses, COPY's table.

use std::ops::Range;

use crate::database::sql::quote_ident;
use crate::table::TableName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword or unquoted identifier.
    Word,
    /// A `"quoted identifier"`.
    Quoted,
    /// A string constant, `'...'`, `E'...'` or `$tag$...$tag$`.
    String,
    Number,
    /// Any other character, one per token.
    Punct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte span in [`Statement::text`].
    pub start: usize,
    pub end: usize,
}

/// One SQL statement, its comments removed, ending with `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    /// Dump line where the statement starts.
    pub line: u64,
    pub tokens: Vec<Token>,
}

impl Statement {
    /// The token's text.
    pub fn token_text(&self, i: usize) -> Option<&str> {
        self.tokens.get(i).map(|t| &self.text[t.start..t.end])
    }

    /// Whether token `i` is the keyword `word` (case-insensitive).
    pub fn is_word(&self, i: usize, word: &str) -> bool {
        matches!(self.tokens.get(i), Some(t) if t.kind == TokenKind::Word
            && self.text[t.start..t.end].eq_ignore_ascii_case(word))
    }

    /// Whether the statement starts with these keywords.
    pub fn starts_with(&self, words: &[&str]) -> bool {
        words.iter().enumerate().all(|(i, w)| self.is_word(i, w))
    }

    /// Token `i` as a keyword, in lower case: `None` unless it is a word.
    pub fn keyword(&self, i: usize) -> Option<String> {
        let t = self.tokens.get(i).filter(|t| t.kind == TokenKind::Word)?;
        Some(self.text[t.start..t.end].to_ascii_lowercase())
    }

    /// Token `i` as a name: unquoted words fold to lower case, quoted identifiers unescape.
    pub fn name(&self, i: usize) -> Option<String> {
        let t = self.tokens.get(i)?;
        let text = &self.text[t.start..t.end];
        match t.kind {
            TokenKind::Word => Some(text.to_ascii_lowercase()),
            TokenKind::Quoted => Some(text[1..text.len() - 1].replace("\"\"", "\"")),
            _ => None,
        }
    }

    /// The dotted name at token `i` (`a`, `a.b`, `a.b.c`): its parts, each read by
    /// [`Statement::name`], and the index of the token after it.
    pub fn qualified(&self, i: usize) -> Option<(Vec<String>, usize)> {
        let mut parts = vec![self.name(i)?];
        let mut next = i + 1;
        while self.token_text(next) == Some(".") {
            parts.push(self.name(next + 1)?);
            next += 2;
        }
        Some((parts, next))
    }

    /// The name at token `i` as the name of a table (or type): a one-part name is in
    /// `public`; in `db.schema.name` the database can only be the current one (the server
    /// refuses any other, and any longer name). The index of the token after it.
    pub fn table(&self, i: usize) -> Option<(TableName, usize)> {
        let (mut parts, next) = self.qualified(i)?;
        let name = parts.pop()?;
        let schema = parts.pop().unwrap_or_else(|| "public".to_owned());
        Some((TableName { schema, name }, next))
    }

    /// Each token of `range` with how deep it is inside the parentheses and brackets opened
    /// in `range`; an opening or closing one is at the depth around it.
    fn nesting(&self, range: Range<usize>) -> impl Iterator<Item = (usize, u32)> + '_ {
        let mut depth = 0u32;
        range.map(move |i| match self.token_text(i) {
            Some("(" | "[") => {
                depth += 1;
                (i, depth - 1)
            }
            Some(")" | "]") => {
                depth = depth.saturating_sub(1);
                (i, depth)
            }
            _ => (i, depth),
        })
    }

    /// The indices of the tokens of `range` outside parentheses and brackets (which are
    /// left out themselves).
    pub fn top_level(&self, range: Range<usize>) -> impl Iterator<Item = usize> + '_ {
        self.nesting(range).filter_map(|(i, depth)| {
            let bracket = matches!(self.token_text(i), Some("(" | ")" | "[" | "]"));
            (depth == 0 && !bracket).then_some(i)
        })
    }

    /// The comma-separated elements inside the parentheses opening at token `open`, as token
    /// ranges, and the index of the closing parenthesis.
    pub fn elements(&self, open: usize) -> (Vec<Range<usize>>, usize) {
        let end = self.tokens.len();
        let close = self
            .nesting(open..end)
            .skip(1)
            .find(|&(i, depth)| depth == 0 && self.token_text(i) == Some(")"))
            .map_or(end, |(i, _)| i);
        (self.split(open + 1..close), close)
    }

    /// The tokens of `range` split at commas outside parentheses and brackets (a final `;`
    /// left out).
    pub fn split(&self, range: Range<usize>) -> Vec<Range<usize>> {
        let mut parts = Vec::new();
        let mut start = range.start;
        let end = range.end;
        for i in self.top_level(range) {
            match self.token_text(i) {
                Some(",") => {
                    parts.push(start..i);
                    start = i + 1;
                }
                Some(";") => {
                    parts.push(start..i);
                    return parts;
                }
                _ => {}
            }
        }
        if start < end {
            parts.push(start..end);
        }
        parts
    }

    /// `COPY <table> [(columns)] FROM stdin;`, the only COPY a plain dump contains: no
    /// options (the masking reads the data as the text format it then is).
    pub fn is_copy_from_stdin(&self) -> bool {
        let Some((_, mut i)) = self.qualified(1).filter(|_| self.is_word(0, "copy")) else {
            return false;
        };
        if self.token_text(i) == Some("(") {
            i = self.elements(i).1 + 1;
        }
        self.is_word(i, "from")
            && self.is_word(i + 1, "stdin")
            && self.token_text(i + 2) == Some(";")
    }

    /// The table a statement [`Statement::is_copy_from_stdin`] accepted loads into: what
    /// the masking and the rows per table are keyed by.
    pub fn copy_table(&self) -> TableName {
        self.table(1).expect("a COPY names its table").0
    }

    /// That table as the COPY spells it, each part quoted, for SQL: the server resolves it as
    /// it resolves the COPY, whatever `search_path` the dump set.
    pub fn copy_table_sql(&self) -> String {
        self.name_sql(1).expect("a COPY names its table")
    }

    /// The dotted name at token `i` as the statement spells it, each part quoted, for SQL.
    pub fn name_sql(&self, i: usize) -> Option<String> {
        self.qualified(i).map(|(parts, _)| quoted(&parts))
    }

    /// The statement's leading words and names, up to its first parenthesis or literal: what
    /// it is and what it is on, never a value from the dump (post-data's progress shows it).
    pub fn label(&self) -> String {
        let end = self
            .tokens
            .iter()
            .take(12)
            .take_while(|t| {
                matches!(t.kind, TokenKind::Word | TokenKind::Quoted)
                    || &self.text[t.start..t.end] == "."
            })
            .last()
            .map_or(0, |t| t.end);
        self.text[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A name's parts quoted and joined: one spelling whatever the dump's quoting.
pub fn quoted(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// The first statement of `sql`, for tests.
#[cfg(test)]
pub fn parse(sql: &str) -> Statement {
    use super::lexer::{Item, Lexer};
    let dump = format!("{sql}\n-- PostgreSQL database dump complete\n");
    match Lexer::new(dump.as_bytes()).next_item().unwrap() {
        Some(Item::Statement(s)) => s,
        other => panic!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_things() {
        let st = parse("ALTER TABLE public.\"Order\" OWNER TO App_Prod;");
        assert!(st.starts_with(&["alter", "table"]));
        assert_eq!(st.name(4).as_deref(), Some("Order"));
        assert_eq!(st.name(7).as_deref(), Some("app_prod"));
    }

    #[test]
    fn qualified_names_read_as_postgresql_reads_them() {
        let s = parse("SELECT x, \"X.y\".z, app.Public.\"T\" ;");
        assert_eq!(s.qualified(1), Some((vec!["x".to_owned()], 2)));
        assert_eq!(
            s.qualified(3),
            Some((vec!["X.y".to_owned(), "z".to_owned()], 6))
        );
        let t = |i| s.table(i).map(|(t, next)| (t.to_string(), next));
        assert_eq!(t(1), Some(("public.x".to_owned(), 2)));
        assert_eq!(t(3), Some(("\"X.y\".z".to_owned(), 6)));
        // The database's part of a three-part name is the current database's.
        assert_eq!(t(7), Some(("public.\"T\"".to_owned(), 12)));
        assert_eq!(s.qualified(0), Some((vec!["select".to_owned()], 1)));
        assert_eq!(s.qualified(2), None);
    }

    #[test]
    fn elements_and_top_level_skip_what_is_nested() {
        let s = parse(
            "CREATE TABLE t (a int DEFAULT f(1, 2), b int[] DEFAULT ARRAY[1, 2], c text) \
             INHERITS (p);",
        );
        let (elements, close) = s.elements(3);
        let first: Vec<_> = elements
            .iter()
            .map(|e| s.token_text(e.start).unwrap())
            .collect();
        assert_eq!(first, ["a", "b", "c"]);
        assert_eq!(s.token_text(close), Some(")"));
        assert!(s.is_word(close + 1, "inherits"));
        let outside: Vec<_> = s
            .top_level(0..s.tokens.len())
            .map(|i| s.token_text(i).unwrap())
            .collect();
        assert_eq!(outside, ["CREATE", "TABLE", "t", "INHERITS", ";"]);
    }

    #[test]
    fn a_copy_names_its_table_for_the_report_and_for_sql() {
        let s = parse("COPY public.\"order\" (id, email) FROM stdin;");
        assert_eq!(s.copy_table(), TableName::new("public", "order"));
        assert_eq!(s.copy_table_sql(), "\"public\".\"order\"");
        let s = parse("COPY t FROM stdin;");
        assert_eq!(s.copy_table(), TableName::new("public", "t"));
        assert_eq!(s.copy_table_sql(), "\"t\"");
    }

    #[test]
    fn labels_hold_no_values() {
        let label = |sql: &str| parse(sql).label();
        assert_eq!(
            label("CREATE INDEX i ON public.t USING btree (email) WHERE (email <> 'x@y.z');"),
            "CREATE INDEX i ON public.t USING btree"
        );
        assert_eq!(
            label("COMMENT ON CONSTRAINT c ON public.t IS 'secret';"),
            "COMMENT ON CONSTRAINT c ON public.t IS"
        );
    }
}
