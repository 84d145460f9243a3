//! bytea's text forms, as `byteain` reads them: hex (`\x4a61`, what servers write by
//! default, white space allowed between pairs) and escape (`Ja\000\\`, with
//! `bytea_output = escape`). Masks that write bytes read a value's bytes here and write
//! theirs in hex.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the value is not bytea text ({0})")]
pub struct ByteaError(&'static str);

/// The bytes `text` stands for.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, ByteaError> {
    match text.strip_prefix(b"\\x") {
        Some(hex) => decode_hex(hex),
        None => decode_escape(text),
    }
}

/// `bytes` in hex, as the server writes them.
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 * bytes.len());
    out.extend_from_slice(b"\\x");
    out.extend_from_slice(hex::encode(bytes).as_bytes());
    out
}

fn decode_hex(hex: &[u8]) -> Result<Vec<u8>, ByteaError> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(hex.len() / 2);
    let mut digits = hex.iter().filter(|c| !c.is_ascii_whitespace());
    while let Some(&high) = digits.next() {
        let low = digits
            .next()
            .ok_or(ByteaError("an odd number of hex digits"))?;
        match (digit(high), digit(*low)) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return Err(ByteaError("a character that is not a hex digit")),
        }
    }
    Ok(out)
}

fn decode_escape(text: &[u8]) -> Result<Vec<u8>, ByteaError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            out.push(text[i]);
            i += 1;
        } else if text.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = text
                .get(i + 1..i + 4)
                .filter(|d| {
                    matches!(d[0], b'0'..=b'3') && d.iter().all(|c| matches!(c, b'0'..=b'7'))
                })
                .ok_or(ByteaError(
                    "a backslash not followed by \\ or three octal digits",
                ))?;
            out.push(octal.iter().fold(0, |v, d| v << 3 | (d - b'0')));
            i += 4;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_text_forms_read_as_the_server_reads_them() {
        assert_eq!(decode(b"\\x4a61FF").unwrap(), b"Ja\xff");
        assert_eq!(decode(b"\\x4a 61\n").unwrap(), b"Ja");
        assert_eq!(decode(b"\\x").unwrap(), b"");
        assert_eq!(decode(b"Ja\\000\\\\\\377").unwrap(), b"Ja\0\\\xff");
        assert_eq!(decode(b"plain").unwrap(), b"plain");
        for bad in [&b"\\x4"[..], b"\\x4g", b"a\\", b"a\\9", b"a\\400", b"a\\01"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(encode(b"Ja\xff"), b"\\x4a61ff");
        assert_eq!(decode(&encode(b"\0\x01\\")).unwrap(), b"\0\x01\\");
    }
}
