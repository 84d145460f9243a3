//! The masker end to end: a dump streamed through it, COPY data cut into pieces of any size.

use super::*;
use crate::restore::lexer::{Item, Lexer};

fn masker(rules: Rules) -> Masker {
    let admin = Admin {
        prod_email: "info@shootify.io".into(),
        email: "admin@staging.example.com".into(),
        hash: "$2b$12$adminhash".into(),
    };
    let masks = Masks::new(Key::from_bytes(&[1; 32]), "staging.invalid");
    Masker::new(rules, masks, admin)
}

fn rules(columns: &[(&str, &str, Mask)], tables: &[(&str, TableMode)]) -> Rules {
    let mut rules = Rules::default();
    for (table, column, mask) in columns {
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

const USERS: &str = "CREATE TABLE public.\"user\" (id integer NOT NULL, email text NOT NULL,
        full_name text, is_superuser boolean NOT NULL);
        COPY public.\"user\" (id, email, full_name, is_superuser) FROM stdin;
        1\tinfo@shootify.io\tShootify Admin\tt
        2\tjane@example.org\tJane\\tDoe\tt
        3\tjo@example.org\t\\N\tf
        \\.";

fn user_rules() -> Vec<(&'static str, &'static str, Mask)> {
    vec![
        ("user", "email", Mask::Email),
        ("user", "full_name", Mask::Redact("Anonymized User".into())),
        ("user", "is_superuser", Mask::Redact("f".into())),
    ]
}

#[test]
fn copy_rows_are_masked_and_the_admin_row_re_keyed_whatever_the_chunking() {
    let sql = USERS.replace("\n        ", "\n");
    let mut outputs = Vec::new();
    for piece in [1, 7, 1 << 20] {
        let mut m = masker(rules(&user_rules(), &[]));
        let (_, data) = stream(&mut m, &sql, piece).unwrap();
        let masked = m.finish().unwrap();
        assert_eq!(masked.admin_id, "1");
        let user = TableName::new("public", "user");
        assert_eq!(masked.rows[&user], 3);
        assert_eq!(masked.values[&user]["email"], 2);
        outputs.push(data);
    }
    assert!(outputs.iter().all(|o| *o == outputs[0]));
    let lines: Vec<&str> = outputs[0].lines().collect();
    assert_eq!(lines[0], "1\tadmin@staging.example.com\tStaging Admin\tt");
    let jane: Vec<&str> = lines[1].split('\t').collect();
    assert!(jane[1].starts_with("anon_") && jane[1].ends_with("@staging.invalid"));
    assert_eq!(jane[2..], ["Anonymized User", "f"]);
    assert!(
        lines[2].ends_with("\t\\N\tf"),
        "NULL stays NULL: {}",
        lines[2]
    );
}

#[test]
fn no_admin_row_fails() {
    let sql = USERS
        .replace("\n        ", "\n")
        .replace("info@shootify.io", "x@y.z");
    let mut m = masker(rules(&user_rules(), &[]));
    let err = stream(&mut m, &sql, 1 << 20).unwrap_err();
    assert!(matches!(err, MaskError::AdminNotFound { .. }), "{err}");
}

#[test]
fn unclassified_columns_are_named_before_the_first_row() {
    let sql = "CREATE TABLE public.t (id integer, note text, ip inet, n numeric);
CREATE TABLE \"x.y\".u (label varchar(5));
COPY public.t (id, note, ip, n) FROM stdin;
1\tsecret\t10.0.0.1\t1
\\.";
    let mut m = masker(Rules::default());
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "3 columns in 2 tables have no masking rule (anonymize.unclassified = \"fail\"); \
             nothing was loaded:\n  public.t: note (text), ip (inet)\n  \"x.y\".u: label (varchar(5))\n"
        ),
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
fn thousands_of_unclassified_columns_make_a_screenful_and_the_report_gets_them_all() {
    let mut sql = String::new();
    for t in 0..400 {
        let columns: Vec<String> = (0..8).map(|c| format!("c{c} text")).collect();
        sql.push_str(&format!(
            "CREATE TABLE public.t{t} ({});\n",
            columns.join(", ")
        ));
    }
    sql.push_str("COPY public.t0 (c0) FROM stdin;\nx\n\\.");
    let mut m = masker(Rules::default());
    let MaskError::Unclassified(mut unclassified) = stream(&mut m, &sql, 1 << 20).unwrap_err()
    else {
        panic!("not refused as unclassified");
    };
    unclassified.snapshot = Some("pgsql_app_db_20261201-030000.sql.zst".into());
    let text = unclassified.to_string();
    assert!(text.lines().count() <= 25, "{text}");
    assert!(
        text.starts_with("3200 columns in 400 tables have no masking rule"),
        "{text}"
    );
    assert!(
        text.contains("\n  public.t0: c0 (text), c1 (text), c2 (text), c3 (text), c4 (text), c5 (text) and 2 more\n"),
        "{text}"
    );
    assert!(text.contains("\n  and 380 more tables\n"), "{text}");
    assert!(
        text.contains(
            "`staging-refresh rules --toml --snapshot pgsql_app_db_20261201-030000.sql.zst`"
        ),
        "{text}"
    );
    let all = unclassified.columns();
    assert_eq!(all.len(), 3200);
    assert!(all.contains(&"public.t399.c7 (text)".to_owned()));
}

#[test]
fn emptied_tables_lose_their_rows_and_inserts_into_masked_tables_are_refused() {
    let sql = "CREATE TABLE public.session (id integer, token text);
CREATE TABLE public.note (id integer, body text);
COPY public.session (id, token) FROM stdin;
1\ttok_1
2\ttok_2
\\.
INSERT INTO public.session VALUES (3, 'tok_3');
INSERT INTO public.note (id, body) VALUES (1, 'jane@example.org');";
    let mut m = masker(rules(
        &[("note", "body", Mask::Text)],
        &[("session", TableMode::Empty)],
    ));
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "dump line 8: INSERT INTO public.note sets masked or unclassified columns (body)"
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
    let sql = "CREATE TABLE public.c (id integer, email varchar(10), phone text NOT NULL);
COPY public.c (id, email, phone) FROM stdin;
1\tjane@example.org\t+1 555
\\.";
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
