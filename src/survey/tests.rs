use std::collections::BTreeMap;

use super::*;
use crate::restore::lexer::{Item, Lexer};

fn cfg() -> AnonymizeConfig {
    serde_json::from_value(serde_json::json!({
        "prod_admin_email": "boss@example.com",
        "admin_email": "admin@staging.example.com",
        "admin_password": "staging-admin-password",
        "accounts": {"table": "member", "id": "id", "email": "login", "password": "digest"},
        "table": [{"table": "session", "mode": "empty"}],
        "column": [{"table": "t", "column": "label", "mask": "keep"}],
    }))
    .unwrap()
}

/// Streams `sql` through a survey, COPY data fed in pieces of `piece` bytes.
fn survey(sql: &str, piece: usize) -> Columns {
    survey_with(cfg(), sql, piece)
}

fn survey_with(cfg: AnonymizeConfig, sql: &str, piece: usize) -> Columns {
    let mut survey = Survey::new(cfg.parse_rules().unwrap(), &cfg);
    let text = format!("{sql}\n-- PostgreSQL database dump complete\n");
    let mut lexer = Lexer::new(text.as_bytes());
    while let Some(item) = lexer.next_item().unwrap() {
        match item {
            Item::Statement(s) => assert_eq!(survey.statement(&s, None).unwrap(), Action::Keep),
            Item::CopyData(chunk) => {
                for part in chunk.chunks(piece) {
                    let out = survey.copy_data(Bytes::copy_from_slice(part)).unwrap();
                    assert!(out.is_none(), "a survey passes nothing on");
                }
            }
            Item::CopyEnd { .. } => assert!(survey.copy_end().unwrap().is_none()),
            Item::Meta { .. } => {}
        }
    }
    survey.finish()
}

const DUMP: &str = "CREATE TABLE public.t (id integer, label text, contact_mail text,
doc jsonb NOT NULL, note text, ip inet, theme varchar(8));
CREATE TABLE public.session (id integer, token text);
COPY public.t (id, label, contact_mail, doc, note, ip, theme) FROM stdin;
1\tA\tjane@example.org\t{\"contact\": {\"email\": \"jane@example.org\"}, \"lang\": \"en\"}\tcall +44 20 7946 0958\t10.0.0.1\tdark
2\tB\tomar@example.org\t{\"contact\": [{\"email\": \"omar@example.org\"}]}\tnothing here\t\\N\tlight
3\tC\t\\N\t{}\tno\\tthing\t\\N\tdark
\\.
COPY public.session (id, token) FROM stdin;
1\tsess_1
\\.";

#[test]
fn unclassified_columns_get_evidence_and_a_suggestion_whatever_the_chunking() {
    for piece in [1, 5, 1 << 20] {
        let columns = survey(DUMP, piece);
        assert_eq!(columns.emptied, ["public.session"]);
        let by_name = |name: &str| {
            columns
                .columns
                .iter()
                .find(|c| c.column == name)
                .unwrap_or_else(|| panic!("{name} not listed"))
        };
        assert!(columns.columns.iter().all(|c| c.column != "id"));
        let label = by_name("label");
        assert_eq!(
            (label.mask.as_deref(), label.rule),
            (Some("keep"), Some(Origin::Column))
        );

        let mail = by_name("contact_mail");
        let evidence = mail.evidence.as_ref().unwrap();
        assert_eq!(evidence.name, Some("email"));
        assert_eq!((evidence.values, evidence.kinds["email"]), (2, 2));
        assert_eq!(mail.suggestion.as_ref().unwrap().mask, "email");

        let doc = by_name("doc").suggestion.as_ref().unwrap();
        assert_eq!(doc.mask, "json");
        assert_eq!(
            doc.paths,
            BTreeMap::from([("contact.email".into(), "email")])
        );

        let note = by_name("note");
        assert_eq!(note.evidence.as_ref().unwrap().kinds["phone"], 1);
        assert_eq!(note.suggestion.as_ref().unwrap().mask, "text");
        assert_eq!(by_name("ip").suggestion.as_ref().unwrap().mask, "null");

        let theme = by_name("theme");
        assert_eq!(
            theme.evidence.as_ref().unwrap().describe(),
            "name says nothing; none of 3 values looks personal"
        );
        assert_eq!(theme.suggestion.as_ref().unwrap().mask, "keep");
        assert!(columns.run_would_fail());
    }
}

#[test]
fn a_missing_accounts_table_column_or_admin_row_is_what_a_run_would_stop_at() {
    let member = "CREATE TABLE public.member (id integer, login text, digest text);";
    let copy = |rows: &str| {
        format!("{member}\nCOPY public.member (id, login, digest) FROM stdin;\n{rows}\\.")
    };
    let problems = |sql: &str| survey(sql, 3).accounts_problems;
    assert_eq!(
        problems(&copy("1\tboss@example.com\tx\n2\tjo@example.org\ty\n")),
        [] as [String; 0]
    );
    assert!(
        problems(DUMP)[0].starts_with("the dump has no table public.member"),
        "{:?}",
        problems(DUMP)
    );
    let no_digest = member.replace(", digest text", "");
    assert!(problems(&no_digest)[0].contains("\"digest\" (anonymize.accounts.password)"));
    assert!(problems(&copy("2\tjo@example.org\ty\n"))[0].starts_with("no row of public.member"));
    let twice = copy("1\tboss@example.com\tx\n2\tboss@example.com\ty\n");
    assert!(problems(&twice)[0].starts_with("2 rows of public.member"));
    let mut no_admin = cfg();
    no_admin.prod_admin_email = None;
    let columns = survey_with(no_admin, &copy("2\tjo@example.org\ty\n"), 1);
    assert!(columns.accounts_problems.is_empty());
}

#[test]
fn suggestions_follow_what_columns_hold_and_fit_their_types() {
    let dump = "CREATE TABLE public.contacts (id integer, first_name varchar(10), notes text,
username text NOT NULL, backup_codes text[], secret bytea NOT NULL,
ip varchar(45) NOT NULL, last_ip inet NOT NULL, country text, city text, zip text,
street text, doc jsonb, recipient text);
COPY public.contacts (id, first_name, notes, username, backup_codes, secret, ip, last_ip, country, city, zip, street, doc, recipient) FROM stdin;
1\tJane\tCalled Jane Doe on +44 20 7946 0958, mail jane@example.org\tjdoe\t{a,b}\t\\\\x0102\t203.0.113.5\t203.0.113.6\tJordan\tSpringfield\t62704\t12 Elm St\t{\"billing\": {\"street\": \"12 Elm St\", \"city\": \"Springfield\"}, \"theme\": \"dark\"}\tMaria Garcia
2\tOmar\tNo answer, try again\tomar\t\\N\t\\\\x03\t198.51.100.7\t198.51.100.8\tFrance\tBerlin\t10115\tHauptstraße 5\t{\"theme\": \"light\"}\tJohn Smith
\\.";
    let columns = survey(dump, 7);
    let suggested = |name: &str| {
        let c = columns.columns.iter().find(|c| c.column == name).unwrap();
        let s = c.suggestion.as_ref().unwrap();
        (s.mask, s.value.as_deref())
    };
    // "First Last" is longer than varchar(10): a placeholder of the same length.
    assert_eq!(suggested("first_name"), ("text", None));
    // A name, a phone and an email in one note: text, not phone.
    assert_eq!(suggested("notes"), ("text", None));
    assert_eq!(suggested("username"), ("hash", None));
    // Text masks fit an array element by element, `token` fits bytea byte by byte; a
    // network type takes NULL, or a constant of the type.
    assert_eq!(suggested("backup_codes"), ("token", None));
    assert_eq!(suggested("secret"), ("token", None));
    assert_eq!(suggested("ip"), ("token", None));
    assert_eq!(suggested("last_ip"), ("redact", Some("192.0.2.1")));
    // "Jordan" the country is no name.
    assert_eq!(suggested("country"), ("keep", None));
    assert_eq!(suggested("city"), ("text", None));
    assert_eq!(suggested("zip"), ("token", None));
    assert_eq!(suggested("street"), ("text", None));
    assert_eq!(suggested("recipient"), ("name", None));
    let doc = columns.columns.iter().find(|c| c.column == "doc").unwrap();
    let doc = doc.suggestion.as_ref().unwrap();
    assert_eq!(doc.mask, "json");
    assert_eq!(
        doc.paths,
        BTreeMap::from([
            ("billing.city".into(), "text"),
            ("billing.street".into(), "text")
        ])
    );
}

#[test]
fn a_unique_column_gets_a_mask_that_keeps_values_distinct() {
    let dump = "CREATE TABLE public.a (id integer, note text, street text, city text, zip text);
COPY public.a (id, note, street, city, zip) FROM stdin;
1\tCalled Jane Doe on +44 20 7946 0958\t12 Elm St\tSpringfield\t62704
\\.
ALTER TABLE ONLY public.a ADD CONSTRAINT a_street_key UNIQUE (street);
ALTER TABLE ONLY public.a ADD CONSTRAINT a_city_fkey FOREIGN KEY (city) REFERENCES public.b(city);
CREATE UNIQUE INDEX a_note ON public.a USING btree (note text_pattern_ops);
CREATE UNIQUE INDEX a_lower_zip ON ONLY public.a USING btree (lower(zip));";
    let columns = survey(dump, 1 << 20);
    let suggested = |name: &str| {
        let c = columns.columns.iter().find(|c| c.column == name).unwrap();
        c.suggestion.as_ref().unwrap().mask
    };
    assert_eq!(suggested("note"), "token");
    assert_eq!(suggested("street"), "token");
    assert_eq!(suggested("city"), "text");
    assert_eq!(suggested("zip"), "token");
}

#[test]
fn only_the_first_bytes_of_a_value_are_examined() {
    let long = format!("{}jane@example.org", "x".repeat(VALUE_PREFIX));
    let sql = format!(
        "CREATE TABLE public.u (note text);\nCOPY public.u (note) FROM stdin;\n{long}\nshort jane@example.org\n\\."
    );
    let columns = survey(&sql, 1000);
    let evidence = columns.columns[0].evidence.as_ref().unwrap();
    assert_eq!((evidence.values, evidence.kinds["email"]), (2, 1));
}
