use super::*;
use crate::verify::scan::classify::tests::cfg;

/// A scanned text field whose name says `named`.
fn text(named: Option<&'static str>) -> Option<Field> {
    Some(Field {
        named,
        array: false,
        json: false,
    })
}

fn copy(fields: Vec<Option<Field>>, listed: &[&str]) -> CopyScan {
    CopyScan {
        table: TableName::new("public", "t"),
        line: 7,
        into: vec![TableName::new("public", "t")],
        listed: listed.iter().map(|c| (*c).to_owned()).collect(),
        fields,
        partial: Vec::new(),
        rows: 0,
        unread: false,
    }
}

/// The counts scanning `chunks` (as the masker passes them on, cut anywhere) finds.
fn scanned(copy: CopyScan, chunks: &[&[u8]]) -> Result<(Counts, CopyScan), FramingError> {
    let mut scan = Scan::new(&cfg());
    scan.copy = Some(copy);
    for chunk in chunks {
        scan.data(chunk)?;
    }
    let mut copy = scan.copy.take().unwrap();
    let tail = std::mem::take(&mut copy.partial);
    rows(&mut copy, &tail, &scan.cfg, &mut scan.counts)?;
    Ok((scan.counts, copy))
}

/// The key of a finding in `column` (the COPY's field `at`).
fn key(
    at: usize,
    column: &str,
    kind: &'static str,
    by: By,
) -> (String, By, usize, String, &'static str) {
    ("public.t".into(), by, at, column.into(), kind)
}

#[test]
fn kept_values_are_classified_wherever_the_chunks_cut_them() {
    let data: &[u8] = b"1\tjane@example.org\tcall +44 20 7946 0958\n\
                        2\tanon_1@staging.invalid\t\\N\n\
                        3\t\\\\N\tmail: joe\\100example.org\n";
    for cut in 0..data.len() {
        let fields = vec![None, text(Some("email")), text(None)];
        let (counts, copy) = scanned(
            copy(fields, &["id", "email", "note"]),
            &[&data[..cut], &data[cut..]],
        )
        .unwrap();
        assert_eq!(copy.rows, 3, "cut at {cut}");
        let expected: Counts = [
            (key(1, "email", "email", By::ColumnName), 2),
            (key(1, "email", "email", By::Values), 1),
            (key(2, "note", "phone", By::Values), 1),
            // `\100` is an escaped `@`: the value the server stores holds an email.
            (key(2, "note", "email", By::Values), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(counts, expected, "cut at {cut}");
    }
}

#[test]
fn what_the_server_would_read_otherwise_fails() {
    let fields = || vec![None, text(None)];
    for (data, why) in [
        (
            &b"1\tjane\\\tdoe@example.org\n"[..],
            "a backslash before a raw tab",
        ),
        (b"1\tjane\rdoe\n", "a raw carriage return"),
        (
            b"1\tjane\tdoe@example.org\n",
            "more fields than its 2 columns",
        ),
        (b"1\n", "1 fields for 2 columns"),
    ] {
        let Err(err) = scanned(copy(fields(), &["id", "note"]), &[data]) else {
            panic!("{data:?} is scanned");
        };
        assert_eq!(err.why, why);
        assert_eq!((err.line, err.row), (7, 1));
    }
}

#[test]
fn a_row_longer_than_the_limit_leaves_the_copy_to_the_database() {
    let long = vec![b'a'; MAX_ROW + 1];
    let (counts, copy) = scanned(copy(vec![text(None)], &["note"]), &[&long, b"\n"]).unwrap();
    assert!(copy.unread && copy.partial.is_empty() && counts.is_empty());
}

#[test]
fn array_and_json_escapes_hide_nothing() {
    let field = |array, json| Field {
        named: None,
        array,
        json,
    };
    let read = |value: &[u8], field| {
        let mut texts = Vec::new();
        texts_of(value, field, &mut texts);
        texts
    };
    fn texts_of(value: &[u8], field: Field, out: &mut Vec<String>) {
        texts(value, field, |t| out.push(t.to_owned()));
    }
    // Array literals: the server stores the elements, quotes and backslashes undone.
    assert_eq!(
        read(br#"{"jane\@example.org",NULL,plain}"#, field(true, false)),
        ["jane@example.org", "plain"]
    );
    // jsonb stores the characters a `\u` escape names.
    assert_eq!(
        read(br#"{"to": "jane\u0040example.org"}"#, field(false, true)),
        [r#"{"to":"jane@example.org"}"#]
    );
    // What does not parse is read whole too, after the elements read before it broke.
    assert_eq!(
        read(b"{unclosed", field(true, false)),
        ["unclosed", "{unclosed"]
    );
}
