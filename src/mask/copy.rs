//! PostgreSQL's COPY text format, as pg_dump writes it: one row per line, fields separated
//! by tabs, `\N` for NULL, and backslash escapes (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`,
//! octal `\123`, hex `\x41`, any other `\c` meaning `c`). A raw tab or newline is always a
//! separator: inside values they are escaped. What pg_dump never writes and the server reads
//! otherwise than these rules ([`framing`]) is refused.

/// The fields of one row (the line without its `\n`), still escaped.
pub fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b'\t')
}

/// Why the server would read `line` (a row without its `\n`) differently from [`fields`] and
/// [`decode`]: a backslash before a raw tab or at the line's end (before its raw newline)
/// makes that tab or newline part of the value; a raw carriage return ends a row (or fails);
/// `\.` ends the data wherever it is. pg_dump escapes all of these.
pub fn framing(line: &[u8]) -> Result<(), &'static str> {
    let mut i = 0;
    while let Some(at) = memchr::memchr2(b'\\', b'\r', &line[i..]) {
        let at = i + at;
        match (line[at], line.get(at + 1)) {
            (b'\r', _) | (_, Some(b'\r')) => return Err("a raw carriage return"),
            (_, None) => return Err("a backslash before the end of the line"),
            (_, Some(b'\t')) => return Err("a backslash before a raw tab"),
            (_, Some(b'.')) => return Err("\\. inside a row"),
            _ => i = at + 2,
        }
    }
    Ok(())
}

/// A field's value; `None` for `\N`.
pub fn decode(field: &[u8]) -> Option<Vec<u8>> {
    if field == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let c = field[i];
        i += 1;
        if c != b'\\' || i == field.len() {
            out.push(c);
            continue;
        }
        let e = field[i];
        i += 1;
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Appends `value` as a field, escaped the way COPY TO writes it.
pub fn encode(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &c in value {
        let escaped = match c {
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x0b => b'v',
            _ => {
                out.push(c);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', escaped]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(value: Option<&[u8]>) -> Option<Vec<u8>> {
        let mut field = Vec::new();
        encode(value, &mut field);
        assert!(!field.contains(&b'\t') && !field.contains(&b'\n'));
        assert_eq!(framing(&field), Ok(()));
        decode(&field)
    }

    #[test]
    fn escapes_decode_as_postgresql_reads_them() {
        assert_eq!(decode(b"\\N"), None);
        assert_eq!(decode(b"\\\\N").unwrap(), b"\\N");
        assert_eq!(
            decode(b"a\\tb\\nc\\\\d\\r\\b\\f\\v").unwrap(),
            b"a\tb\nc\\d\r\x08\x0c\x0b"
        );
        assert_eq!(
            decode(b"\\101\\7x\\x41\\x4g\\q\\").unwrap(),
            b"A\x07xA\x04gq\\"
        );
        assert_eq!(decode(b"\\xzz").unwrap(), b"xzz");
        assert_eq!(decode(b"").unwrap(), b"");
        let line = b"1\tjane\\tdoe\t\\N";
        assert_eq!(
            fields(line).collect::<Vec<_>>(),
            [&b"1"[..], b"jane\\tdoe", b"\\N"]
        );
    }

    #[test]
    fn what_the_server_reads_otherwise_is_named() {
        for line in [&b"1\tjane\\\\\t\\N"[..], b"a\\tb\\\\", b"\\x41\\\\.5"] {
            assert_eq!(framing(line), Ok(()), "{line:?}");
        }
        for (line, why) in [
            (&b"1\tjane\\\tdoe"[..], "a backslash before a raw tab"),
            (b"1\tjane\\", "a backslash before the end of the line"),
            (b"1\tjane\\\\\\", "a backslash before the end of the line"),
            (b"1\tja\rne", "a raw carriage return"),
            (b"1\tjane\\.", "\\. inside a row"),
        ] {
            assert_eq!(framing(line), Err(why), "{line:?}");
        }
    }

    #[test]
    fn encoded_values_read_back_unchanged() {
        for value in [
            &b"plain"[..],
            b"tab\there",
            b"line\nbreak\r\n",
            b"\\.",
            b"\\N",
            b"back\\slash",
            b"\x08\x0c\x0b",
            "Ünïcode".as_bytes(),
            b"",
        ] {
            assert_eq!(roundtrip(Some(value)).as_deref(), Some(value));
        }
        assert_eq!(roundtrip(None), None);
    }
}
