//! The masker end to end: a dump streamed through it, COPY data cut into pieces of any size.

use super::*;
use crate::restore::lexer::{Item, Lexer};
use schema::Schema;

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

/// The catalog's answer to `question` (before `s`, a COPY's or an INSERT's, or the end),
/// read from the dump's text as `schema` has learnt it.
fn answer(schema: &Schema, question: &catalog::Question, s: Option<&Statement>) -> Answer {
    let tables = schema.shapes();
    let copy = s
        .filter(|_| question.target.is_some())
        .and_then(|s| Some(s.table(if is_insert(s) { 2 } else { 1 })?.0))
        .filter(|t| tables.contains_key(t));
    let asked =
        |t: &TableShape| question.all || copy.as_ref().is_some_and(|c| t.lineage().any(|l| l == c));
    Answer {
        tables: tables.values().filter(|t| asked(t)).cloned().collect(),
        target: copy,
    }
}

/// Streams `sql` through `m`, COPY data fed in pieces of `piece` bytes, the masker's
/// questions answered from the dump's text; returns the statements kept and the COPY data
/// passed on.
fn stream(m: &mut Masker, sql: &str, piece: usize) -> Result<(Vec<String>, String), MaskError> {
    let text = format!("{sql}\n-- PostgreSQL database dump complete\n");
    let mut lexer = Lexer::new(text.as_bytes());
    let mut schema = Schema::default();
    let (mut kept, mut data) = (Vec::new(), String::new());
    while let Some(item) = lexer.next_item().unwrap() {
        match item {
            Item::Statement(s) => {
                let asked = m
                    .ask(At::Statement(&s))
                    .map(|q| answer(&schema, &q, Some(&s)));
                if m.statement(&s, asked)? == Action::Keep {
                    kept.push(s.text.clone());
                }
                schema.learn(&s);
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
    let question = m.ask(At::End).expect("the end is asked about");
    m.end(answer(&schema, &question, None))?;
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
    let mut sql = format!("{MEMBER}\n");
    for t in 0..400 {
        let columns: Vec<String> = (0..8).map(|c| format!("c{c} text")).collect();
        sql.push_str(&format!(
            "CREATE TABLE public.t{t} ({});\n",
            columns.join(", ")
        ));
    }
    sql.push_str("COPY public.t0 (c0) FROM stdin;\nx\n\\.");
    let mut m = masker(rules(&[], &[]));
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
fn masks_that_do_not_fit_their_columns_are_refused_before_the_first_row() {
    let sql = &format!(
        "{MEMBER}\nCREATE TABLE public.c (id integer, email varchar(10), phone text NOT NULL, note text,
    CONSTRAINT c_note_check CHECK ((char_length(note) <= 24)));
COPY public.c (id, email, phone, note) FROM stdin;
1\tjane@example.org\t+1 555\tJane
\\."
    );
    let mut m = masker(rules(
        &[
            ("c", "email", Mask::Email),
            ("c", "phone", Mask::Null),
            ("c", "note", Mask::Hash),
        ],
        &[],
    ));
    let err = stream(&mut m, sql, 1 << 20).unwrap_err().to_string();
    assert_eq!(
        err,
        "masks that do not fit their columns, refused before their rows were loaded: \
         public.c.email (varchar(10)): mask \"email\" writes 37 characters, more than the 10 \
         characters that the type varchar(10) allows; \
         public.c.phone (text): mask \"null\" does not fit: the column is NOT NULL; \
         public.c.note (text): mask \"hash\" writes 64 characters, more than the 24 characters \
         that CHECK c_note_check ((char_length(note) <= 24)) allows; \
         choose masks that fit (README, \"Masking rules\")"
    );
    let mut m = masker(rules(
        &[
            ("c", "email", Mask::Text),
            ("c", "phone", Mask::Phone),
            ("c", "note", Mask::Name),
        ],
        &[],
    ));
    let (_, data) = stream(&mut m, sql, 1 << 20).unwrap();
    assert!(!data.contains("jane") && !data.contains("Jane"), "{data}");
}

#[test]
fn arrays_mask_each_element_domains_their_base_type_and_bytea_its_bytes() {
    let sql = &[MEMBER, "
CREATE DOMAIN public.short AS text
\tCONSTRAINT short_check CHECK ((char_length(VALUE) <= 24));
CREATE TABLE public.p (id integer, emails character varying(64)[], tokens text[],
    names public.short[], secret bytea NOT NULL);
COPY public.p (id, emails, tokens, names, secret) FROM stdin;
1\t{jane@example.org,NULL,\"odd,one@example.org\"}\t{{sk_live_abc,ghp_x},{NULL,\"a b\\\\\\\\\"}}\t{Jane,\"Doe, John\"}\t\\\\x0102ff
2\t\\N\t{}\t\\N\t\\\\x
\\."].concat();
    let mut m = masker(rules(
        &[
            ("p", "emails", Mask::Email),
            ("p", "tokens", Mask::Token),
            ("p", "names", Mask::Name),
            ("p", "secret", Mask::Hash),
        ],
        &[],
    ));
    let (_, data) = stream(&mut m, sql, 3).unwrap();
    let rows: Vec<Vec<&str>> = data.lines().map(|l| l.split('\t').collect()).collect();
    let email = "anon_[0-9a-f]{16}@staging\\.invalid";
    let shapes = [
        format!("^\\{{{email},NULL,{email}\\}}$"),
        r"^\{\{sk_live_[a-z]{3},ghp_[a-z]\},\{NULL,[a-z]{4}\}\}$".to_owned(),
        r#"^\{"[A-Z][a-z]+ [A-Z][a-zü]+","[A-Z][a-z]+ [A-Z][a-zü]+"\}$"#.to_owned(),
        r"^\\\\x(3[0-9]|6[1-6]){3}$".to_owned(),
    ];
    for (field, shape) in rows[0][1..].iter().zip(&shapes) {
        assert!(
            regex::Regex::new(shape).unwrap().is_match(field),
            "{field} is not {shape}"
        );
    }
    assert_eq!(rows[1], ["2", "\\N", "{}", "\\N", "\\\\x"]);
    let masked = m.finish();
    assert!(matches!(masked, Err(MaskError::AdminNotFound { .. })));
}

#[test]
fn a_copy_s_masks_are_fitted_to_the_shapes_it_is_given_at_its_start() {
    // The shapes a COPY is masked through may be learnt at its start (from the server):
    // a misfit there stops it before its first row.
    let masks = Masks::new(Key::from_bytes(&[1; 32]), "staging.invalid");
    let table = TableShape {
        name: TableName::new("public", "t"),
        parents: Vec::new(),
        partition: false,
        partitioned: false,
        columns: vec![ColumnShape {
            not_null: true,
            ..ColumnShape::plain("a", "text", shape::BaseType::Text)
        }],
        catalog: None,
    };
    let copy =
        |mask: Mask| MaskedCopy::new(&masks, &table, 1, vec!["a".into()], vec![Some(mask)], None);
    assert!(copy(Mask::Text).is_ok());
    let err = copy(Mask::Null).err().unwrap().to_string();
    assert!(
        err.contains("public.t.a (text): mask \"null\" does not fit: the column is NOT NULL"),
        "{err}"
    );
}

#[test]
fn rules_on_a_parent_reach_its_partitions_unless_theirs_differ_where_rows_are_routed() {
    let sql = &[
        MEMBER,
        "
CREATE TABLE public.event (id integer, email text) PARTITION BY LIST (id);
CREATE TABLE public.event_1 (id integer, email text);
ALTER TABLE ONLY public.event ATTACH PARTITION public.event_1 FOR VALUES IN (1);
CREATE TABLE public.event_2 PARTITION OF public.event FOR VALUES IN (2);
COPY public.event_1 (id, email) FROM stdin;
1\tjane@example.org
\\.",
    ]
    .concat();
    let mut m = masker(rules(&[("event", "email", Mask::Hash)], &[]));
    let (_, data) = stream(&mut m, sql, 3).unwrap();
    let (id, hash) = data.trim_end().split_once('\t').unwrap();
    assert_eq!((id, hash.len()), ("1", 64));
    // Counted under the partitioned table, which the rule names.
    assert!(
        m.done
            .values
            .contains_key(&TableName::new("public", "event"))
    );

    // Rows copied into the partitioned table go to partitions the masking cannot tell apart:
    // a partition with a rule of its own is refused there.
    let routed = &[
        MEMBER,
        "
CREATE TABLE public.event (id integer, email text) PARTITION BY LIST (id);
CREATE TABLE public.event_1 PARTITION OF public.event FOR VALUES IN (1);
CREATE TABLE public.event_2 PARTITION OF public.event FOR VALUES IN (2);
COPY public.event (id, email) FROM stdin;
1\tjane@example.org
\\.",
    ]
    .concat();
    let mut m = masker(rules(
        &[
            ("event", "email", Mask::Hash),
            ("event_2", "email", Mask::Keep),
        ],
        &[],
    ));
    let err = stream(&mut m, routed, 1 << 20).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "dump line 6: refusing COPY into the partitioned table public.event: its rows go to \
             partitions whose rules differ from its own (public.event_2.email)"
        ),
        "{err}"
    );
}

#[test]
fn what_the_copy_leaves_to_the_server_is_refused_when_masked() {
    let refused = |sql: &str, expected: &str| {
        let mut m = masker(rules(
            &[("t", "email", Mask::Hash)],
            &[("t", TableMode::Keep)],
        ));
        let sql = [MEMBER, "\n", sql].concat();
        let err = stream(&mut m, &sql, 1 << 20).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
    };
    refused(
        "CREATE TABLE public.t (id integer, email text);\nCOPY public.t FROM stdin;\n1\tx\n\\.",
        "dump line 4: refusing COPY into public.t: it lists no columns",
    );
    refused(
        "CREATE TABLE public.t (id integer, email text DEFAULT public.f());
COPY public.t (id) FROM stdin;\n1\n\\.",
        "dump line 4: refusing COPY into public.t: pg_dump leaves out no column but generated \
         ones, and this COPY leaves out email",
    );
    refused(
        "CREATE TABLE public.t (id integer, email text GENERATED ALWAYS AS (public.f(id)) STORED);
COPY public.t (id) FROM stdin;\n1\n\\.",
        "public.t.email is a generated column",
    );
    refused(
        "CREATE TABLE public.t (id integer, email text);\nCOPY public.t (id, email) FROM stdin;
1\tjane\\\t2\n\\.",
        "dump line 4: row 1 of the COPY into public.t is not COPY text as pg_dump writes it \
         (a backslash before a raw tab)",
    );
    // A constant default is in the schema, which the scan reads.
    let sql = &[
        MEMBER,
        "
CREATE TABLE public.t (id integer, email text DEFAULT 'none'::text);
COPY public.t (id) FROM stdin;\n1\n\\.",
    ]
    .concat();
    let mut m = masker(rules(
        &[("t", "email", Mask::Hash)],
        &[("t", TableMode::Keep)],
    ));
    assert!(stream(&mut m, sql, 1 << 20).is_ok());
}

#[test]
fn only_a_literal_cast_once_is_a_constant_default() {
    for constant in [
        "'x'::text",
        "42",
        "-1.5",
        "NULL::character varying",
        "''::text",
        "true",
    ] {
        assert!(is_constant(constant), "{constant}");
    }
    for computed in [
        "public.f()",
        "now()",
        "(now())::text",
        "('x'::text)::public.t",
        "'x'::public.t",
        "pg_catalog.convert_from(pg_catalog.decode('amFuZQ=='::text, 'base64'::text), 'UTF8'::name)",
        "nextval('s'::regclass)",
    ] {
        assert!(!is_constant(computed), "{computed}");
    }
}
