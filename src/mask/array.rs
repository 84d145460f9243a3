//! PostgreSQL's array text format, as `array_in` reads it and `array_out` writes it:
//! `{a,"b c",NULL,{d,"e\"f"}}`, optionally after explicit bounds (`[0:1]={x,y}`). Masking an
//! array masks each element on its own and keeps the structure. The literal written back is
//! built from what was parsed (never copied from the input), so the server reads exactly
//! the elements the masking wrote: a literal this parser reads otherwise than the server
//! could only fail to load, never carry a raw element through.

/// `array_in`'s limit on dimensions.
const MAX_DIMENSIONS: usize = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the value is not an array literal ({0})")]
pub struct ArrayError(&'static str);

/// `literal` with every non-NULL element replaced by `mask(element)` (`None` writes NULL);
/// NULL elements stay NULL.
pub fn map<E: From<ArrayError>>(
    literal: &[u8],
    mut mask: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
) -> Result<Vec<u8>, E> {
    let mut p = Parser {
        text: literal,
        at: 0,
    };
    let mut out = Vec::with_capacity(literal.len() + literal.len() / 4);
    p.skip_space();
    if p.peek() == Some(b'[') {
        p.bounds(&mut out)?;
    }
    p.array(&mut out, &mut mask, 1)?;
    p.skip_space();
    if p.at < literal.len() {
        return Err(ArrayError("text after the closing brace").into());
    }
    Ok(out)
}

/// `array_in`'s white space.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Appends one element as `array_out` writes it: quoted when it could read otherwise bare.
fn write_element(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(b"NULL");
        return;
    };
    let quote = value.is_empty()
        || value.eq_ignore_ascii_case(b"NULL")
        || value
            .iter()
            .any(|&c| matches!(c, b'{' | b'}' | b',' | b'"' | b'\\') || is_space(c));
    if !quote {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &c in value {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), ArrayError> {
        self.skip_space();
        match self.next() {
            Some(found) if found == c => Ok(()),
            _ => Err(ArrayError(what)),
        }
    }

    /// `[lower:upper]` per dimension, then `=`: written back as read, without spaces.
    fn bounds(&mut self, out: &mut Vec<u8>) -> Result<(), ArrayError> {
        while self.peek() == Some(b'[') {
            self.at += 1;
            out.push(b'[');
            self.integer(out)?;
            self.skip_space();
            if self.peek() == Some(b':') {
                self.at += 1;
                out.push(b':');
                self.integer(out)?;
            }
            self.expect(b']', "a dimension's bounds end with ]")?;
            out.push(b']');
            self.skip_space();
        }
        self.expect(b'=', "bounds are followed by =")?;
        out.push(b'=');
        self.skip_space();
        Ok(())
    }

    fn integer(&mut self, out: &mut Vec<u8>) -> Result<(), ArrayError> {
        self.skip_space();
        if let Some(sign @ (b'-' | b'+')) = self.peek() {
            self.at += 1;
            out.push(sign);
        }
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at == start {
            return Err(ArrayError("a bound is an integer"));
        }
        out.extend_from_slice(&self.text[start..self.at]);
        Ok(())
    }

    /// `{...}` at nesting `depth`, elements masked.
    fn array<E: From<ArrayError>>(
        &mut self,
        out: &mut Vec<u8>,
        mask: &mut impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
        depth: usize,
    ) -> Result<(), E> {
        if depth > MAX_DIMENSIONS {
            return Err(ArrayError("more than 6 dimensions").into());
        }
        self.expect(b'{', "an array starts with {")?;
        out.push(b'{');
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            out.push(b'}');
            return Ok(());
        }
        loop {
            self.skip_space();
            if self.peek() == Some(b'{') {
                self.array(out, mask, depth + 1)?;
            } else {
                let masked = match self.element()? {
                    Some(value) => mask(&value)?,
                    None => None,
                };
                write_element(masked.as_deref(), out);
            }
            self.skip_space();
            match self.next() {
                Some(b',') => out.push(b','),
                Some(b'}') => {
                    out.push(b'}');
                    return Ok(());
                }
                _ => return Err(ArrayError("elements are separated by commas").into()),
            }
        }
    }

    /// One element's value, unescaped; `None` for an unquoted NULL.
    fn element(&mut self) -> Result<Option<Vec<u8>>, ArrayError> {
        let mut value = Vec::new();
        if self.peek() == Some(b'"') {
            self.at += 1;
            loop {
                match self.next() {
                    Some(b'"') => return Ok(Some(value)),
                    Some(b'\\') => value.push(self.next().ok_or(ArrayError("an unended quote"))?),
                    Some(c) => value.push(c),
                    None => return Err(ArrayError("an unended quote")),
                }
            }
        }
        // Unquoted: up to a comma or closing brace (the caller skipped the white space
        // before it); white space after it is not part of it, escaped characters always are.
        let mut kept = 0;
        let mut escaped = false;
        while let Some(c) = self.peek() {
            match c {
                b',' | b'}' => break,
                b'{' | b'"' => return Err(ArrayError("a brace or quote inside an element")),
                b'\\' => {
                    self.at += 1;
                    value.push(self.next().ok_or(ArrayError("a backslash at the end"))?);
                    kept = value.len();
                    escaped = true;
                    continue;
                }
                c => {
                    value.push(c);
                    if !is_space(c) {
                        kept = value.len();
                    }
                }
            }
            self.at += 1;
        }
        value.truncate(kept);
        if value.is_empty() && !escaped {
            return Err(ArrayError("an empty element"));
        }
        if !escaped && value.eq_ignore_ascii_case(b"NULL") {
            return Ok(None);
        }
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each element upper-cased, or NULL where it was "drop".
    fn upper(literal: &str) -> Result<String, ArrayError> {
        let out = map(literal.as_bytes(), |e: &[u8]| {
            Ok::<_, ArrayError>((e != b"drop").then(|| e.to_ascii_uppercase()))
        })?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn elements_are_masked_one_by_one_and_the_structure_kept() {
        assert_eq!(upper("{a,b}").unwrap(), "{A,B}");
        assert_eq!(upper("{}").unwrap(), "{}");
        assert_eq!(
            upper(" { a , \"b c\" , NULL, null } ").unwrap(),
            "{A,\"B C\",NULL,NULL}"
        );
        assert_eq!(upper("{{a,b},{c,NULL}}").unwrap(), "{{A,B},{C,NULL}}");
        assert_eq!(upper("[0:1]={a,b}").unwrap(), "[0:1]={A,B}");
        assert_eq!(
            upper("[1:1][-2:-1] = {{a,b}}").unwrap(),
            "[1:1][-2:-1]={{A,B}}"
        );
        assert_eq!(upper("{drop,x}").unwrap(), "{NULL,X}");
    }

    #[test]
    fn quoting_and_escapes_read_and_write_as_postgresql_does() {
        // Quoted and escaped elements, "NULL" as a string, escaped white space kept.
        assert_eq!(
            upper(r#"{"a\"b","c\\d","NULL",\NULL,x\ ,"",e\,f}"#).unwrap(),
            r#"{"A\"B","C\\D","NULL","NULL","X ","","E,F"}"#
        );
        let mut seen = Vec::new();
        map(br#"{"x,y",  two words  ,"{}"}"#, |e: &[u8]| {
            seen.push(String::from_utf8(e.to_vec()).unwrap());
            Ok::<_, ArrayError>(Some(e.to_vec()))
        })
        .unwrap();
        assert_eq!(seen, ["x,y", "two words", "{}"]);
    }

    #[test]
    fn what_is_not_an_array_literal_is_refused() {
        for bad in [
            "a,b",
            "{a,b",
            "{a,,b}",
            "{a}b",
            "{\"a}",
            "{a\"b\"}",
            "[1:2]{a,b}",
            "[x]={a}",
            "{{{{{{{a}}}}}}}",
            "{a\\",
        ] {
            assert!(upper(bad).is_err(), "{bad}");
        }
    }
}
