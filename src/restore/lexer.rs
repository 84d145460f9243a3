//! Splits a plain-SQL pg_dump stream the way psql does, into [`Statement`]s: a statement
//! ends at a `;` outside quotes, comments, parentheses and `BEGIN ... END` function bodies; a
//! backslash outside quotes starts a meta-command running to the end of the line; after
//! `COPY ... FROM stdin;` the following lines are data up to a line reading `\.`.
//!
//! The lexer assumes `standard_conforming_strings = on` (pg_dump always sets it): a backslash
//! is an escape only inside `E'...'`. COPY data is passed on in large chunks without being
//! split into rows, so memory stays bounded and the data costs one memchr pass.

use std::io::Read;

use bytes::Bytes;

use super::statement::{Statement, Token, TokenKind};

/// Longest statement (or line) accepted; a dump from pg_dump has nothing near it.
pub const MAX_STATEMENT: usize = 16 << 20;
/// How much is read from the decoder at once, and the largest COPY data chunk.
const READ_SIZE: usize = 256 << 10;
/// The comment pg_dump ends every complete dump with.
const DUMP_COMPLETE: &str = "-- PostgreSQL database dump complete";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Statement(Statement),
    /// A psql meta-command line outside any statement, from the backslash on, trimmed.
    Meta {
        command: String,
        line: u64,
    },
    /// Raw COPY data lines, forwarded unchanged.
    CopyData(Bytes),
    /// The `\.` line; `rows` counts the data lines since the COPY statement.
    CopyEnd {
        rows: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LexError {
    #[error("dump line {line}: {message}")]
    Syntax { line: u64, message: String },
    /// The decoder (or the download feeding it) failed.
    #[error("reading the dump: {0}")]
    Input(#[from] std::io::Error),
}

fn syntax(line: u64, message: impl Into<String>) -> LexError {
    LexError::Syntax {
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Normal,
    /// Inside `'...'`; `extended` for `E'...'`, where backslash escapes.
    Quote {
        extended: bool,
    },
    Quoted,
    /// Inside `$tag$...$tag$`; holds the whole delimiter.
    Dollar(Vec<u8>),
    Comment(u32),
}

pub struct Lexer<R> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Line number of the next line to read.
    line: u64,
    in_copy: bool,
    /// Whether the next COPY byte starts a line (where `\.` ends the data).
    copy_line_start: bool,
    copy_rows: u64,
    state: State,
    stmt: Vec<u8>,
    stmt_line: u64,
    tokens: Vec<Token>,
    /// Where the current multi-line token (string, quoted identifier) began.
    token_start: usize,
    /// psql's count of open parentheses, kept as the bytes come (a `;` inside them does not
    /// end the statement); [`Statement`] reads a finished statement's nesting itself.
    paren_depth: u32,
    begin_depth: u32,
    /// psql's heuristic for `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END`.
    leading_words: Vec<u8>,
    ready: std::collections::VecDeque<Item>,
    complete: bool,
    finished: bool,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// The length of a dollar-quote delimiter (`$$`, `$tag$`) at the start of `s`, if any.
fn dollar_delimiter(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'$') {
        return None;
    }
    if s.get(1) == Some(&b'$') {
        return Some(2);
    }
    if !s.get(1).is_some_and(|b| is_ident_start(*b)) {
        return None;
    }
    let tag_len = s[1..]
        .iter()
        .take_while(|b| is_ident_start(**b) || b.is_ascii_digit())
        .count();
    (s.get(1 + tag_len) == Some(&b'$')).then_some(tag_len + 2)
}

impl<R: Read> Lexer<R> {
    pub fn new(input: R) -> Lexer<R> {
        Lexer {
            input,
            buf: vec![0; READ_SIZE * 2],
            start: 0,
            end: 0,
            eof: false,
            line: 1,
            in_copy: false,
            copy_line_start: true,
            copy_rows: 0,
            state: State::Normal,
            stmt: Vec::new(),
            stmt_line: 0,
            tokens: Vec::new(),
            token_start: 0,
            paren_depth: 0,
            begin_depth: 0,
            leading_words: Vec::new(),
            ready: Default::default(),
            complete: false,
            finished: false,
        }
    }

    /// The dump line it has read up to.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The input, once the dump has been read.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// The next item, `None` at the end of a complete dump.
    pub fn next_item(&mut self) -> Result<Option<Item>, LexError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            if self.finished {
                return Ok(None);
            }
            if self.in_copy {
                return self.copy_chunk().map(Some);
            }
            match self.next_line()? {
                Some((from, to)) => {
                    let line = self.buf[from..to].to_vec();
                    self.lex_line(&line)?;
                    self.line += 1;
                }
                None => {
                    self.finish()?;
                    self.finished = true;
                }
            }
        }
    }

    /// Reads more input after what is buffered; false at the end of the input.
    fn fill(&mut self) -> Result<bool, LexError> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_SIZE {
            self.buf.resize(self.end + READ_SIZE, 0);
        }
        let n = loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The span of the next whole line (with its `\n`, if any) in `buf`.
    fn next_line(&mut self) -> Result<Option<(usize, usize)>, LexError> {
        let mut searched = 0;
        loop {
            let avail = &self.buf[self.start + searched..self.end];
            if let Some(i) = memchr::memchr(b'\n', avail) {
                let from = self.start;
                self.start += searched + i + 1;
                return Ok(Some((from, self.start)));
            }
            searched = self.end - self.start;
            if searched > MAX_STATEMENT {
                return Err(syntax(
                    self.line,
                    format!("line longer than {} MiB", MAX_STATEMENT >> 20),
                ));
            }
            if !self.fill()? {
                if self.start == self.end {
                    return Ok(None);
                }
                let from = self.start;
                self.start = self.end;
                return Ok(Some((from, self.end)));
            }
        }
    }

    /// COPY data up to the `\.` line, in chunks of whole lines.
    fn copy_chunk(&mut self) -> Result<Item, LexError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if self.copy_line_start
                && let Some(len) = terminator_at_start(avail, self.eof)
            {
                self.start += len;
                self.line += 1;
                self.in_copy = false;
                let rows = std::mem::take(&mut self.copy_rows);
                return Ok(Item::CopyEnd { rows });
            }
            // Whole lines, so the terminator is recognised at a line start; a line longer
            // than the buffer goes in pieces (a piece of 4 bytes or more is no terminator).
            let (data, ends_line) = match memchr::memrchr(b'\n', avail) {
                Some(i) => (&avail[..=i], true),
                None if self.eof => {
                    return Err(syntax(
                        self.line,
                        "the dump ends inside COPY data (no \\. line): it is truncated",
                    ));
                }
                None if avail.len() >= READ_SIZE => (avail, false),
                None => {
                    self.fill()?;
                    continue;
                }
            };
            let len = find_terminator(data, self.copy_line_start).unwrap_or(data.len());
            let rows = memchr::memchr_iter(b'\n', &data[..len]).count() as u64;
            self.copy_line_start = ends_line || len < data.len();
            let chunk = Bytes::copy_from_slice(&data[..len]);
            self.start += len;
            self.line += rows;
            self.copy_rows += rows;
            return Ok(Item::CopyData(chunk));
        }
    }

    fn finish(&mut self) -> Result<(), LexError> {
        let open = match &self.state {
            State::Normal => None,
            State::Quote { .. } => Some("a quoted string"),
            State::Quoted => Some("a quoted identifier"),
            State::Dollar(_) => Some("a dollar-quoted string"),
            State::Comment(_) => Some("a /* comment */"),
        };
        if let Some(what) = open {
            return Err(syntax(
                self.line,
                format!("the dump ends inside {what}: it is truncated"),
            ));
        }
        if !self.stmt.is_empty() {
            return Err(syntax(
                self.stmt_line,
                "the dump ends inside a statement starting here: it is truncated",
            ));
        }
        if !self.complete {
            return Err(syntax(
                self.line,
                format!(
                    "the dump ends without pg_dump's closing line \"{DUMP_COMPLETE}\": \
                     it is truncated"
                ),
            ));
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), LexError> {
        if self.stmt.len() + bytes.len() > MAX_STATEMENT {
            return Err(syntax(
                self.stmt_line,
                format!(
                    "statement longer than {} MiB; a pg_dump dump has none",
                    MAX_STATEMENT >> 20
                ),
            ));
        }
        self.stmt.extend_from_slice(bytes);
        Ok(())
    }

    fn begin_content(&mut self) {
        if self.stmt.is_empty() {
            self.stmt_line = self.line;
        }
    }

    fn token(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.stmt.len(),
        });
    }

    fn lex_line(&mut self, line: &[u8]) -> Result<(), LexError> {
        let mut i = 0;
        while i < line.len() {
            match self.state.clone() {
                State::Quote { extended } => {
                    let Some(j) = line[i..]
                        .iter()
                        .position(|b| *b == b'\'' || (extended && *b == b'\\'))
                    else {
                        self.push(&line[i..])?;
                        return Ok(());
                    };
                    let at = i + j;
                    if line[at] == b'\\' {
                        // Keep the escaped character, whatever it is (even a quote).
                        let to = (at + 2).min(line.len());
                        self.push(&line[i..to])?;
                        i = to;
                    } else if line.get(at + 1) == Some(&b'\'') {
                        self.push(&line[i..at + 2])?;
                        i = at + 2;
                    } else {
                        self.push(&line[i..=at])?;
                        i = at + 1;
                        self.state = State::Normal;
                        self.token(TokenKind::String, self.token_start);
                    }
                }
                State::Quoted => {
                    let Some(j) = memchr::memchr(b'"', &line[i..]) else {
                        self.push(&line[i..])?;
                        return Ok(());
                    };
                    let at = i + j;
                    if line.get(at + 1) == Some(&b'"') {
                        self.push(&line[i..at + 2])?;
                        i = at + 2;
                    } else {
                        self.push(&line[i..=at])?;
                        i = at + 1;
                        self.state = State::Normal;
                        self.token(TokenKind::Quoted, self.token_start);
                    }
                }
                State::Dollar(delimiter) => match memchr::memmem::find(&line[i..], &delimiter) {
                    Some(j) => {
                        let to = i + j + delimiter.len();
                        self.push(&line[i..to])?;
                        i = to;
                        self.state = State::Normal;
                        self.token(TokenKind::String, self.token_start);
                    }
                    None => {
                        self.push(&line[i..])?;
                        return Ok(());
                    }
                },
                State::Comment(depth) => {
                    let rest = &line[i..];
                    if rest.starts_with(b"/*") {
                        self.state = State::Comment(depth + 1);
                        i += 2;
                    } else if rest.starts_with(b"*/") {
                        self.state = if depth == 1 {
                            State::Normal
                        } else {
                            State::Comment(depth - 1)
                        };
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                State::Normal => i = self.lex_normal(line, i)?,
            }
        }
        Ok(())
    }

    /// Lexes from `line[i]` in the normal state; returns where to continue.
    fn lex_normal(&mut self, line: &[u8], i: usize) -> Result<usize, LexError> {
        let b = line[i];
        let rest = &line[i..];
        if b.is_ascii_whitespace() {
            if !self.stmt.is_empty() {
                self.push(&[b])?;
            }
            return Ok(i + 1);
        }
        if rest.starts_with(b"--") {
            if self.stmt.is_empty() {
                let comment = String::from_utf8_lossy(rest);
                if comment.trim_end() == DUMP_COMPLETE {
                    self.complete = true;
                }
            } else {
                self.push(b"\n")?;
            }
            return Ok(line.len());
        }
        if rest.starts_with(b"/*") {
            self.state = State::Comment(1);
            if !self.stmt.is_empty() {
                self.push(b" ")?;
            }
            return Ok(i + 2);
        }
        self.begin_content();
        let start = self.stmt.len();
        match b {
            b'\\' => {
                let command = String::from_utf8_lossy(rest).trim().to_owned();
                if !self.stmt.is_empty() {
                    return Err(syntax(
                        self.line,
                        format!(
                            "psql meta-command {} inside a statement; refusing to restore it",
                            meta_name(&command)
                        ),
                    ));
                }
                self.ready.push_back(Item::Meta {
                    command,
                    line: self.line,
                });
                return Ok(line.len());
            }
            b'\'' => {
                self.token_start = start;
                self.push(b"'")?;
                self.state = State::Quote { extended: false };
                return Ok(i + 1);
            }
            b'"' => {
                self.token_start = start;
                self.push(b"\"")?;
                self.state = State::Quoted;
                return Ok(i + 1);
            }
            b'$' => {
                if let Some(len) = dollar_delimiter(rest) {
                    self.token_start = start;
                    self.push(&rest[..len])?;
                    self.state = State::Dollar(rest[..len].to_vec());
                    return Ok(i + len);
                }
            }
            _ => {}
        }
        if is_ident_start(b) {
            let len = rest.iter().take_while(|c| is_ident_cont(**c)).count();
            let word = &rest[..len];
            self.push(word)?;
            if len == 1 && (b == b'e' || b == b'E') && rest.get(1) == Some(&b'\'') {
                self.token_start = start;
                self.push(b"'")?;
                self.state = State::Quote { extended: true };
                return Ok(i + 2);
            }
            self.token(TokenKind::Word, start);
            self.track_begin_end(word);
            return Ok(i + len);
        }
        if b.is_ascii_digit() {
            let len = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.' || **c == b'_')
                .count();
            self.push(&rest[..len])?;
            self.token(TokenKind::Number, start);
            return Ok(i + len);
        }
        // One punctuation character (or one whole UTF-8 sequence, for the text's sake).
        let len = if b < 0x80 { 1 } else { utf8_len(b) };
        let len = len.min(rest.len());
        self.push(&rest[..len])?;
        self.token(TokenKind::Punct, start);
        match b {
            b'(' => self.paren_depth += 1,
            b')' => self.paren_depth = self.paren_depth.saturating_sub(1),
            b';' if self.paren_depth == 0 && self.begin_depth == 0 => {
                self.end_statement()?;
                let after = &line[i + 1..];
                if self.in_copy && !after.iter().all(u8::is_ascii_whitespace) {
                    return Err(syntax(
                        self.line,
                        "text after COPY ... FROM stdin; on the same line",
                    ));
                }
                if self.in_copy {
                    return Ok(line.len());
                }
            }
            _ => {}
        }
        Ok(i + len)
    }

    /// psql's rule: inside `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, `BEGIN`/`CASE` ... `END`
    /// nest, and `;` inside them does not end the statement.
    fn track_begin_end(&mut self, word: &[u8]) {
        let lower = word.to_ascii_lowercase();
        let first = if matches!(
            lower.as_slice(),
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) {
            lower[0]
        } else {
            0
        };
        if self.leading_words.len() < 4 {
            self.leading_words.push(first);
        }
        let w = &self.leading_words;
        let at = |n: usize| w.get(n).copied().unwrap_or(0);
        let in_routine = at(0) == b'c'
            && (at(1) == b'f'
                || at(1) == b'p'
                || (at(1) == b'o' && at(2) == b'r' && (at(3) == b'f' || at(3) == b'p')));
        if in_routine && self.paren_depth == 0 {
            match lower.as_slice() {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" => self.begin_depth = self.begin_depth.saturating_sub(1),
                _ => {}
            }
        }
    }

    fn end_statement(&mut self) -> Result<(), LexError> {
        let text = String::from_utf8(std::mem::take(&mut self.stmt)).map_err(|_| {
            syntax(
                self.stmt_line,
                "statement is not valid UTF-8 (only UTF-8 dumps are supported)",
            )
        })?;
        let statement = Statement {
            text,
            line: self.stmt_line,
            tokens: std::mem::take(&mut self.tokens),
        };
        self.paren_depth = 0;
        self.begin_depth = 0;
        self.leading_words.clear();
        self.complete = false;
        self.in_copy = statement.is_copy_from_stdin();
        self.copy_line_start = true;
        self.ready.push_back(Item::Statement(statement));
        Ok(())
    }
}

/// The name of a meta-command line, `\connect` from `\connect other`.
pub fn meta_name(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or(command)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// The length of the `\.` line when `data` starts with one.
fn terminator_at_start(data: &[u8], eof: bool) -> Option<usize> {
    if data.starts_with(b"\\.\n") {
        Some(3)
    } else if data.starts_with(b"\\.\r\n") {
        Some(4)
    } else if eof && data == b"\\." {
        Some(2)
    } else {
        None
    }
}

/// Where the first `\.` line starts in COPY data; `at_line_start` when `data` begins a line.
fn find_terminator(data: &[u8], at_line_start: bool) -> Option<usize> {
    if at_line_start && terminator_at_start(data, false).is_some() {
        return Some(0);
    }
    memchr::memmem::find_iter(data, b"\n\\.")
        .map(|i| i + 1)
        .find(|&i| terminator_at_start(&data[i..], false).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The COPY data among `items`, joined.
    fn copy_data(items: &[Item]) -> Vec<u8> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::CopyData(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn items(dump: &str) -> Result<Vec<Item>, LexError> {
        let mut lexer = Lexer::new(dump.as_bytes());
        let mut out = Vec::new();
        while let Some(item) = lexer.next_item()? {
            out.push(item);
        }
        Ok(out)
    }

    fn complete(body: &str) -> String {
        format!("{body}\n--\n{DUMP_COMPLETE}\n--\n")
    }

    fn statements(dump: &str) -> Vec<String> {
        items(&complete(dump))
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Statement(s) => Some(s.text),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dollar_quotes_keep_semicolons_backslashes_and_copy_lines() {
        let body = "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$\n\
                    BEGIN\n  RAISE NOTICE $msg$a ; \\ \"q\" 'x'$msg$;\n\
                    COPY t FROM stdin;\n\\.\nEND\n$body$;\nSELECT 1;";
        let s = statements(body);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].contains("COPY t FROM stdin;\n\\.\nEND"), "{}", s[0]);
        assert_eq!(s[1], "SELECT 1;");
    }

    #[test]
    fn quotes_escapes_and_comments() {
        let s = statements(
            "SELECT 'it''s; fine', E'back\\'slash; \\\\', \"we\"\"ird;\" -- a comment; here\n\
             FROM t /* a /* nested; */ comment; */ WHERE x = $1;\n\
             SELECT U&'d\\0061t;a', 'C:\\path\\';",
        );
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("SELECT 'it''s; fine', E'back\\'slash; \\\\'"));
        assert!(!s[0].contains("a comment") && !s[0].contains("nested"));
        assert!(s[0].ends_with("WHERE x = $1;"));
        // Standard strings do not escape with a backslash: the string ends at the quote.
        assert!(s[1].ends_with("'C:\\path\\';"), "{}", s[1]);
    }

    #[test]
    fn begin_atomic_bodies_and_parentheses_hold_semicolons() {
        let s = statements(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n SELECT 1;\n \
             SELECT CASE WHEN true THEN 1 END;\nEND;\nCREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2);\n\
             BEGIN;\nEND;",
        );
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(s[0].ends_with("END;"));
        assert_eq!(s[2], "BEGIN;");
    }

    #[test]
    fn copy_data_passes_unchanged_up_to_the_end_line() {
        let dump =
            complete("COPY public.t (a, b) FROM stdin;\n1\tx\\.y\n2\t\\\\.\n\\.z\n\\.\nSELECT 2;");
        let got = items(&dump).unwrap();
        let Item::Statement(copy) = &got[0] else {
            panic!("{got:?}")
        };
        assert!(copy.is_copy_from_stdin());
        assert_eq!(copy.copy_table().to_string(), "public.t");
        let data = copy_data(&got);
        assert_eq!(data, b"1\tx\\.y\n2\t\\\\.\n\\.z\n");
        assert!(got.contains(&Item::CopyEnd { rows: 3 }));
        let Some(Item::Statement(last)) = got.last() else {
            panic!("{got:?}")
        };
        assert_eq!(last.text, "SELECT 2;");
        assert_eq!(last.line, 6);
    }

    #[test]
    fn copy_data_larger_than_the_buffer_arrives_in_chunks() {
        let row = "x".repeat(1000);
        let rows = 2000;
        let mut body = String::from("COPY t FROM stdin;\n");
        for _ in 0..rows {
            body.push_str(&row);
            body.push('\n');
        }
        body.push_str("\\.\n");
        let got = items(&complete(&body)).unwrap();
        let chunks = got
            .iter()
            .filter(|i| matches!(i, Item::CopyData(_)))
            .count();
        assert!(chunks > 1, "one chunk for {} bytes", rows * 1001);
        assert!(got.contains(&Item::CopyEnd { rows }));
    }

    #[test]
    fn a_copy_line_longer_than_the_buffer_passes_in_pieces() {
        // A huge value whose continuation starts with "\\." must not end the data.
        let long = format!("1\t{}", "y".repeat(3 * READ_SIZE));
        let body = format!("COPY t FROM stdin;\n{long}\\.\\.\n2\tz\n\\.\nSELECT 1;");
        let got = items(&complete(&body)).unwrap();
        let data = copy_data(&got);
        assert_eq!(data, format!("{long}\\.\\.\n2\tz\n").into_bytes());
        assert!(got.contains(&Item::CopyEnd { rows: 2 }));
    }

    #[test]
    fn meta_commands_are_items_at_statement_starts_only() {
        let got = items(&complete("\\restrict abc\nSELECT 1;\n\\! rm -rf /\n")).unwrap();
        assert_eq!(
            got[0],
            Item::Meta {
                command: "\\restrict abc".into(),
                line: 1
            }
        );
        assert_eq!(
            got[2],
            Item::Meta {
                command: "\\! rm -rf /".into(),
                line: 3
            }
        );
        let err = items(&complete("SELECT 1 \\gexec\n;")).unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("\\gexec"),
            "{err}"
        );
        // A backslash inside a standard string is just a character.
        assert_eq!(statements("SELECT '\\! no';"), vec!["SELECT '\\! no';"]);
    }

    #[test]
    fn truncation_is_an_error_naming_where() {
        let cases = [
            ("SELECT 1;\n", "closing line"),
            ("SELECT 1;\nSELECT 'open", "quoted string"),
            ("SELECT 1;\nSELECT 2", "inside a statement"),
            ("COPY t FROM stdin;\n1\n2\n", "inside COPY data"),
            ("CREATE FUNCTION f() AS $$ x;", "dollar-quoted"),
        ];
        for (dump, what) in cases {
            let err = items(dump).unwrap_err().to_string();
            assert!(err.contains(what), "{dump:?}: {err}");
        }
    }

    #[test]
    fn only_copy_from_stdin_switches_to_data() {
        let parse = |sql: &str| match Lexer::new(complete(sql).as_bytes()).next_item().unwrap() {
            Some(Item::Statement(s)) => s,
            other => panic!("{other:?}"),
        };
        for sql in [
            "COPY public.t (id, program, \"to\") FROM stdin;",
            "COPY public.program FROM stdin;",
            "copy \"Odd\".\"Name\" from STDIN;",
        ] {
            assert!(parse(sql).is_copy_from_stdin(), "{sql}");
        }
        for sql in [
            "COPY t TO stdout;",
            "COPY t FROM PROGRAM 'id';",
            "COPY (SELECT 1) TO stdout;",
            "COPY t FROM '/etc/passwd';",
            "COPY t FROM stdin WITH (FORMAT csv);",
            "COPY t FROM stdin (FORMAT csv);",
            "COPY t (a) (b) FROM stdin;",
            "COPY t FROM (a) stdin;",
            "COPY t [a] FROM stdin;",
            "SELECT 1 FROM stdin;",
        ] {
            assert!(!parse(sql).is_copy_from_stdin(), "{sql}");
        }
    }
}
