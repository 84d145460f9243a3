//! The masker end to end: a dump streamed through it, COPY data cut into pieces of any size.

use super::*;
use crate::restore::lexer::{Item, Lexer};

/// The accounts table of these tests: named otherwise than any application's.
fn accounts() -> AccountsConfig {
    serde_json::from_value(serde_json::json!({
        "table": "public.member", "id": "id", "email": "login", "password": "digest",
        "name": "display_name", "superuser": "staff",
    }))
    .unwrap()
}

fn masker(rules: Rules) -> Masker {
    let admin = Admin {
        prod_email: "boss@example.com".into(),
        email: "admin@staging.example.com".into(),
        hash: "$2b$12$adminhash".into(),
    };
    let masks = Masks::new(Key::from_bytes(&[1; 32]), "staging.invalid");
    Masker::new(rules, masks, accounts(), Some(admin))
}

/// The accounts table's rules and these.
fn rules(columns: &[(&str, &str, Mask)], tables: &[(&str, TableMode)]) -> Rules {
    let mut rules = Rules::default();
    for (table, column, mask) in member_rules().iter().chain(columns) {
        rules
            .columns
            .entry(TableName::parse(table).unwrap())
            .or_default()
            .insert((*column).to_owned(), mask.clone());
    }
    for (table, mode) in tables {
        rules.tables.insert(TableName::parse(table).unwrap(), *mode);
    }
    rules
}

/// Streams `sql` through `m`, COPY data fed in pieces of `piece` bytes; returns the
/// statements kept and the COPY data passed on.
fn stream(m: &mut Masker, sql: &str, piece: usize) -> Result<(Vec<String>, String), MaskError> {
    let text = format!("{sql}\n-- PostgreSQL database dump complete\n");
    let mut lexer = Lexer::new(text.as_bytes());
    let (mut kept, mut data) = (Vec::new(), String::new());
    while let Some(item) = lexer.next_item().unwrap() {
        match item {
            Item::Statement(s) => {
                if m.statement(&s)? {
                    kept.push(s.text.clone());
                }
            }
            Item::CopyData(chunk) => {
                for part in chunk.chunks(piece) {
                    if let Some(out) = m.copy_data(Bytes::copy_from_slice(part))? {
                        data.push_str(std::str::from_utf8(&out).unwrap());
                    }
                }
            }
            Item::CopyEnd { .. } => {
                if let Some(out) = m.copy_end()? {
                    data.push_str(std::str::from_utf8(&out).unwrap());
                }
            }
            Item::Meta { .. } => {}
        }
    }
    Ok((kept, data))
}

/// The accounts table's pre-data, with no data.
const MEMBER: &str = "CREATE TABLE public.member (id integer NOT NULL, login text NOT NULL,
        display_name text, staff boolean NOT NULL, digest text);";

const MEMBERS: &str = "CREATE TABLE public.member (id integer NOT NULL, login text NOT NULL,
        display_name text, staff boolean NOT NULL, digest text);
        COPY public.member (id, login, display_name, staff, digest) FROM stdin;
        1\tboss@example.com\tThe Boss\tt\tx
        2\tjane@example.org\tJane\\tDoe\tt\tx
        3\tjo@example.org\t\\N\tf\t\\N
        \\.";

fn member_rules() -> Vec<(&'static str, &'static str, Mask)> {
    vec![
        ("member", "login", Mask::Email),
        (
            "member",
            "display_name",
            Mask::Redact("Anonymized User".into()),
        ),
        ("member", "staff", Mask::Redact("f".into())),
        ("member", "digest", Mask::Keep),
    ]
}

#[test]
fn copy_rows_are_masked_and_the_admin_row_re_keyed_whatever_the_chunking() {
    let sql = MEMBERS.replace("\n        ", "\n");
    let mut outputs = Vec::new();
    for piece in [1, 7, 1 << 20] {
        let mut m = masker(rules(&[], &[]));
        let (_, data) = stream(&mut m, &sql, piece).unwrap();
        let masked = m.finish().unwrap();
        assert_eq!(masked.admin_id.as_deref(), Some("1"));
        let member = TableName::new("public", "member");
        assert_eq!(masked.rows[&member], 3);
        assert_eq!(masked.values[&member]["login"], 2);
        outputs.push(data);
    }
    assert!(outputs.iter().all(|o| *o == outputs[0]));
    let lines: Vec<&str> = outputs[0].lines().collect();
    assert_eq!(
        lines[0],
        "1\tadmin@staging.example.com\tStaging Admin\tt\t$2b$12$adminhash"
    );
    let jane: Vec<&str> = lines[1].split('\t').collect();
    assert!(jane[1].starts_with("anon_") && jane[1].ends_with("@staging.invalid"));
    assert_eq!(jane[2..], ["Anonymized User", "f", "x"]);
    assert!(
        lines[2].ends_with("\t\\N\tf\t\\N"),
        "NULL stays NULL: {}",
        lines[2]
    );
}

#[test]
fn without_a_production_admin_every_account_is_masked() {
    let sql = MEMBERS.replace("\n        ", "\n");
    let masks = Masks::new(Key::from_bytes(&[1; 32]), "staging.invalid");
    let mut m = Masker::new(rules(&[], &[]), masks, accounts(), None);
    let (_, data) = stream(&mut m, &sql, 1 << 20).unwrap();
    assert_eq!(m.finish().unwrap().admin_id, None);
    for line in data.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert!(fields[1].starts_with("anon_"), "{line}");
        assert_eq!(fields[3], "f", "{line}");
    }
}

#[test]
fn no_admin_row_fails_at_the_end_of_its_tables_copy() {
    let sql = format!(
        "{}\nCREATE TABLE public.later (id integer);",
        MEMBERS
            .replace("\n        ", "\n")
            .replace("boss@example.com", "x@y.z")
    );
    let mut m = masker(rules(&[], &[]));
    let err = stream(&mut m, &sql, 1 << 20).unwrap_err();
    assert!(matches!(err, MaskError::AdminNotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("no row of public.member has the production admin email \"boss@"),
        "{err}"
    );
}

#[test]
fn an_accounts_table_or_column_the_dump_lacks_fails_before_the_first_row() {
    let t = "CREATE TABLE public.t (id integer);\nCOPY public.t (id) FROM stdin;\n1\n\\.";
    let mut m = masker(rules(&[], &[]));
    let err = stream(&mut m, t, 1 << 20).unwrap_err().to_string();
    assert!(
        err.starts_with("the dump has no table public.member (anonymize.accounts.table)"),
        "{err}"
    );
    let sql = format!("{}\n{t}", MEMBER.replace(", digest text", ""));
    let mut m = masker(rules(&[], &[]));
    let err = stream(&mut m, &sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.contains("has no column \"digest\" (anonymize.accounts.password)"),
        "{err}"
    );
    // A COPY of the accounts table that leaves a configured column out.
    let sql =
        format!("{MEMBER}\nCOPY public.member (id, login, display_name, staff) FROM stdin;\n\\.");
    let mut m = masker(rules(&[], &[]));
    let err = stream(&mut m, &sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.contains("\"digest\" (anonymize.accounts.password)"),
        "{err}"
    );
}

#[test]
fn unclassified_columns_are_named_before_the_first_row() {
    let sql = &format!(
        "{MEMBER}\nCREATE TABLE public.t (id integer, note text, ip inet, n numeric);
CREATE TABLE \"x.y\".u (label varchar(5));
COPY public.t (id, note, ip, n) FROM stdin;
1\tsecret\t10.0.0.1\t1
\\."
    );
    let mut m = masker(rules(&[], &[]));
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.contains("public.t.note (text), public.t.ip (inet), \"x.y\".u.label (varchar(5))"),
        "{err}"
    );
    let mut m = masker(rules(
        &[],
        &[("t", TableMode::Keep), ("\"x.y\".u", TableMode::Keep)],
    ));
    let (_, data) = stream(&mut m, sql, 1 << 20).unwrap();
    assert_eq!(data, "1\tsecret\t10.0.0.1\t1\n");
}

#[test]
fn emptied_tables_lose_their_rows_and_inserts_into_masked_tables_are_refused() {
    let sql = &format!(
        "{MEMBER}\nCREATE TABLE public.session (id integer, token text);
CREATE TABLE public.note (id integer, body text);
COPY public.session (id, token) FROM stdin;
1\ttok_1
2\ttok_2
\\.
INSERT INTO public.session VALUES (3, 'tok_3');
INSERT INTO public.note (id, body) VALUES (1, 'jane@example.org');"
    );
    let mut m = masker(rules(
        &[("note", "body", Mask::Text)],
        &[("session", TableMode::Empty)],
    ));
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "dump line 10: INSERT INTO public.note sets masked or unclassified columns (body)"
        ),
        "{err}"
    );
    let mut m = masker(rules(
        &[],
        &[("session", TableMode::Empty), ("note", TableMode::Keep)],
    ));
    let (kept, data) = stream(&mut m, sql, 1 << 20).unwrap();
    assert_eq!(data, "");
    assert!(
        kept.iter()
            .any(|s| s.starts_with("INSERT INTO public.note"))
    );
    assert!(
        !kept
            .iter()
            .any(|s| s.starts_with("INSERT INTO public.session"))
    );
    assert!(matches!(m.finish(), Err(MaskError::AdminNotFound { .. })));
}

#[test]
fn masks_that_break_the_column_type_are_refused_naming_it() {
    let sql = &format!(
        "{MEMBER}\nCREATE TABLE public.c (id integer, email varchar(10), phone text NOT NULL);
COPY public.c (id, email, phone) FROM stdin;
1\tjane@example.org\t+1 555
\\."
    );
    let mut m = masker(rules(
        &[("c", "email", Mask::Email), ("c", "phone", Mask::Null)],
        &[],
    ));
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert!(err.starts_with("public.c.phone is NOT NULL"), "{err}");
    let mut m = masker(rules(
        &[("c", "email", Mask::Email), ("c", "phone", Mask::Phone)],
        &[],
    ));
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.starts_with("public.c.email: a masked value is longer than its type allows (10"),
        "{err}"
    );
}
