//! A snapshot's columns as the rules classify them ([`classify`], the run's own
//! check): every column that could hold personal data, with its rule, or, unclassified, with
//! a suggested mask ([`suggest`]) and the [`evidence`] for it: what its name says
//! ([`kind_by_name`]) and what its values in the COPY data hold: counts, never a value.
//! [`Survey`] is a [`StreamStage`] for `restore::inspect` that reads the stream of `plan` and
//! `rules` and passes nothing on. It checks the accounts table and the production admin's
//! row as a run does (`mask::check_table`), and says what a run would stop at.

mod evidence;
mod suggest;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use serde::Serialize;

use crate::config::masking::{Class, Origin, Rules};
use crate::config::{AnonymizeConfig, TableMode, Unclassified};
use crate::mask::schema::Schema;
use crate::mask::shape::{BaseType, ColumnShape};
use crate::mask::{
    MaskError, check_columns, check_table, classify, column_list, copy, listed_under,
};
use crate::restore::filter::Action;
use crate::restore::statement::Statement;
use crate::restore::{StageError, StreamStage};
use crate::table::{TableName, display_ident};
use crate::util::one_line;
use crate::verify::scan::kind_by_name;
pub use evidence::Evidence;
pub use suggest::Suggestion;

/// How much of each value is examined (its COPY text): memory and time stay bounded
/// whatever the values' sizes. A json value longer than this is not parsed for paths.
pub const VALUE_PREFIX: usize = 4096;

/// The classified columns of a dump.
#[derive(Debug, Clone, Serialize)]
pub struct Columns {
    /// Every column that could hold personal data or that a rule masks, table by table.
    pub columns: Vec<Classified>,
    /// Tables restored without rows (`[[anonymize.table]]` mode "empty").
    pub emptied: Vec<String>,
    /// `anonymize.unclassified`: whether an unclassified column fails a run.
    pub unclassified_policy: Unclassified,
    /// What a run would stop at in the accounts table: the table or a configured column
    /// missing, the production admin's row missing or not unique.
    pub accounts_problems: Vec<String>,
}

impl Columns {
    pub fn unclassified(&self) -> impl Iterator<Item = &Classified> {
        self.columns.iter().filter(|c| c.mask.is_none())
    }

    /// Whether a run would fail on an unclassified column or the accounts table.
    pub fn run_would_fail(&self) -> bool {
        !self.accounts_problems.is_empty()
            || (self.unclassified_policy == Unclassified::Fail
                && self.unclassified().next().is_some())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Classified {
    pub table: String,
    /// As the database names it (unquoted).
    pub column: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// Its mask (`keep`: classified as not personal); `None` when unclassified.
    pub mask: Option<String>,
    /// Where its rule comes from.
    pub rule: Option<Origin>,
    /// For an unclassified column: a mask to review, and why.
    pub suggestion: Option<Suggestion>,
    pub evidence: Option<Evidence>,
}

impl Classified {
    /// `schema.table.column`, as errors and reports name it.
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, display_ident(&self.column))
    }

    /// For an unclassified column: its suggested `[[anonymize.column]]` rule, to review and
    /// paste, after comment lines with the why and the evidence (counts, never a value).
    pub fn rule_toml(&self) -> Option<String> {
        let (suggestion, evidence) = (self.suggestion.as_ref()?, self.evidence.as_ref()?);
        let mut out = format!(
            "# {} ({}): {}\n# evidence: {}\n[[anonymize.column]]\ntable = {}\ncolumn = {}\nmask = {}\n",
            one_line(&self.name()),
            one_line(&self.ty),
            suggestion.why,
            evidence.describe(),
            toml_string(&self.table),
            toml_string(&self.column),
            toml_string(suggestion.mask),
        );
        if let Some(value) = &suggestion.value {
            out.push_str(&format!("value = {}\n", toml_string(value)));
        }
        if !suggestion.paths.is_empty() {
            let paths: Vec<String> = suggestion
                .paths
                .iter()
                .map(|(path, mask)| format!("{} = {}", toml_string(path), toml_string(mask)))
                .collect();
            out.push_str(&format!("paths = {{ {} }}\n", paths.join(", ")));
        }
        Some(out)
    }
}

/// A TOML basic string: JSON's escapes are TOML's, except that TOML also wants DEL escaped;
/// C1 controls are escaped too, which a terminal could take for an escape sequence.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text)
        .expect("a string serializes")
        .chars()
        .map(|c| match c {
            '\u{7f}'..='\u{9f}' => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// Reads the stream: the schema from the pre-data, the values of unclassified columns from
/// their COPY data.
pub struct Survey {
    cfg: AnonymizeConfig,
    rules: Rules,
    schema: Schema,
    evidence: HashMap<(TableName, String), Evidence>,
    /// The columns a unique index or constraint of the post-data names alone: their masks
    /// must keep distinct values distinct.
    unique: HashSet<(TableName, String)>,
    copy: Option<Reading>,
    /// What the accounts table's COPY lacked, and its admin rows.
    accounts_problems: Vec<String>,
    admin_rows: u64,
}

/// A COPY with unclassified columns, being read.
struct Reading {
    table: TableName,
    /// Per field: the column's name, whether its values are json, what they showed so far;
    /// `None` for a field not read.
    fields: Vec<Option<(String, bool, Evidence)>>,
    field: usize,
    /// The current field's first [`VALUE_PREFIX`] bytes, still escaped.
    value: Vec<u8>,
    truncated: bool,
    /// In the accounts table's COPY: the email field, compared with the production admin's.
    admin_email: Option<usize>,
    admin_rows: u64,
}

impl Reading {
    fn feed(&mut self, mut data: &[u8], cfg: &AnonymizeConfig) {
        while let Some(at) = memchr::memchr2(b'\t', b'\n', data) {
            self.take(&data[..at]);
            self.end_field(cfg);
            self.field = if data[at] == b'\n' { 0 } else { self.field + 1 };
            data = &data[at + 1..];
        }
        self.take(data);
    }

    fn take(&mut self, part: &[u8]) {
        let read = matches!(self.fields.get(self.field), Some(Some(_)));
        if !read && self.admin_email != Some(self.field) {
            return;
        }
        let room = VALUE_PREFIX - self.value.len();
        self.truncated |= part.len() > room;
        self.value.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_field(&mut self, cfg: &AnonymizeConfig) {
        let value = std::mem::take(&mut self.value);
        let truncated = std::mem::take(&mut self.truncated);
        if self.admin_email == Some(self.field)
            && !truncated
            && copy::decode(&value).as_deref() == cfg.prod_admin_email.as_deref().map(str::as_bytes)
        {
            self.admin_rows += 1;
        }
        let Some(Some((name, json, evidence))) = self.fields.get_mut(self.field) else {
            return;
        };
        if let Some(decoded) = copy::decode(&value) {
            let json = (*json && !truncated).then_some(name.as_str());
            evidence.observe(&String::from_utf8_lossy(&decoded), json, cfg);
        }
    }
}

impl Survey {
    pub fn new(rules: Rules, cfg: &AnonymizeConfig) -> Survey {
        Survey {
            cfg: cfg.clone(),
            rules,
            schema: Schema::default(),
            evidence: HashMap::new(),
            unique: HashSet::new(),
            copy: None,
            accounts_problems: Vec::new(),
            admin_rows: 0,
        }
    }

    fn copy_start(&mut self, s: &Statement) {
        let Some((table, next)) = s.table(1) else {
            return;
        };
        let Some(shape) = self.schema.shape(&table) else {
            return;
        };
        let names = column_list(s, next)
            .unwrap_or_else(|| shape.columns.iter().map(|c| c.name.clone()).collect());
        let mut admin_email = None;
        if table == self.cfg.accounts.table {
            let listed: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(e) = check_columns(&self.cfg.accounts, &listed) {
                self.accounts_problems.push(e.to_string());
            }
            admin_email = (self.cfg.prod_admin_email.is_some())
                .then(|| names.iter().position(|n| *n == self.cfg.accounts.email))
                .flatten();
        }
        let fields: Vec<_> = names
            .into_iter()
            .map(|name| {
                let column = shape.column(&name)?;
                let unclassified = classify(&self.rules, &shape, column) == Class::Unclassified;
                let json = matches!(column.base, BaseType::Json | BaseType::Jsonb);
                unclassified.then(|| (name, json && !column.array, Evidence::default()))
            })
            .collect();
        self.copy =
            (fields.iter().any(Option::is_some) || admin_email.is_some()).then(|| Reading {
                table,
                fields,
                field: 0,
                value: Vec::new(),
                truncated: false,
                admin_email,
                admin_rows: 0,
            });
    }

    /// What a run would stop at in the accounts table, as the masking says it.
    fn accounts_problems(&self) -> Vec<String> {
        let accounts = &self.cfg.accounts;
        let table = self.schema.shape(&accounts.table);
        if let Err(e) = check_table(
            accounts,
            table
                .as_ref()
                .map(|t| t.columns.iter().map(|c| c.name.as_str())),
        ) {
            return vec![e.to_string()];
        }
        let mut problems = self.accounts_problems.clone();
        if let Some(email) = &self.cfg.prod_admin_email
            && problems.is_empty()
        {
            let (table, column) = (accounts.table.to_string(), accounts.email.clone());
            match self.admin_rows {
                1 => {}
                0 => problems.push(
                    MaskError::AdminNotFound {
                        table,
                        column,
                        email: email.clone(),
                    }
                    .to_string(),
                ),
                count => problems.push(
                    MaskError::AdminNotUnique {
                        table,
                        count: count as usize,
                    }
                    .to_string(),
                ),
            }
        }
        problems
    }

    /// The tables read so far with a column no rule classifies: whose COPY data holds the
    /// evidence for a suggestion.
    pub fn tables_unclassified(&self) -> BTreeSet<TableName> {
        self.schema
            .shapes()
            .into_values()
            .filter(|table| {
                table
                    .columns
                    .iter()
                    .any(|column| classify(&self.rules, table, column) == Class::Unclassified)
            })
            .map(|table| table.name)
            .collect()
    }

    /// Whether the COPY under way has unclassified columns being read.
    pub fn reading_copy(&self) -> bool {
        self.copy.is_some()
    }

    /// The rules naming a table, or a table's column, that the dump read so far does not
    /// have: `public.t.c` or `public.t`.
    pub fn rules_for_nothing(&self) -> Vec<String> {
        let tables = self.schema.shapes();
        let mut gone: Vec<String> = Vec::new();
        for (table, columns) in &self.rules.columns {
            match tables.get(table) {
                None => gone.push(table.to_string()),
                Some(shape) => gone.extend(
                    columns
                        .keys()
                        .filter(|column| shape.column(column).is_none())
                        .map(|column| format!("{table}.{}", display_ident(column))),
                ),
            }
        }
        gone.extend(
            self.rules
                .tables
                .keys()
                .filter(|table| !tables.contains_key(*table))
                .map(ToString::to_string),
        );
        gone.sort();
        gone.dedup();
        gone
    }

    /// The dump's columns, classified; a partitioned table's (or a parent's, inherited) once,
    /// under that table, with what all its partitions' values showed.
    pub fn finish(mut self) -> Columns {
        let accounts_problems = self.accounts_problems();
        let tables = self.schema.shapes();
        let mut listed: BTreeMap<(TableName, String), (&ColumnShape, Class<'_>)> = BTreeMap::new();
        let mut emptied = Vec::new();
        for table in tables.values() {
            // Named by the table whose rule empties it.
            let emptying = table
                .lineage()
                .find(|t| self.rules.tables.contains_key(*t))
                .filter(|t| self.rules.tables[*t] == TableMode::Empty)
                .map(TableName::to_string);
            if let Some(rule) = emptying
                && !emptied.contains(&rule)
            {
                emptied.push(rule);
            }
            for column in &table.columns {
                let class = classify(&self.rules, table, column);
                if matches!(class, Class::Emptied | Class::NotPersonal) {
                    continue;
                }
                let under = listed_under(&self.rules, &tables, table, column).clone();
                if under != table.name
                    && let Some(seen) = self
                        .evidence
                        .remove(&(table.name.clone(), column.name.clone()))
                {
                    self.evidence
                        .entry((under.clone(), column.name.clone()))
                        .or_default()
                        .add(seen);
                }
                listed
                    .entry((under, column.name.clone()))
                    .or_insert((column, class));
            }
        }
        let mut columns = Vec::new();
        for ((table, name), (column, class)) in listed {
            let (mask, rule) = match class {
                Class::Ruled(mask, origin) => (Some(mask.to_string()), Some(origin)),
                _ => (None, None),
            };
            let evidence = mask.is_none().then(|| {
                let mut evidence = self
                    .evidence
                    .remove(&(table.clone(), name.clone()))
                    .unwrap_or_default();
                let siblings: Vec<&str> = tables
                    .get(&table)
                    .map(|t| t.columns.iter().map(|c| c.name.as_str()).collect())
                    .unwrap_or_default();
                evidence.name = kind_by_name(&table.name, &name, &siblings);
                evidence
            });
            let suggestion = evidence.as_ref().map(|e| {
                let unique = self.unique.contains(&(table.clone(), name.clone()));
                suggest::suggest(column, unique, e, &self.cfg)
            });
            columns.push(Classified {
                table: table.to_string(),
                column: name,
                ty: column.type_name.clone(),
                mask,
                rule,
                suggestion,
                evidence,
            });
        }
        Columns {
            columns,
            emptied,
            unclassified_policy: self.rules.unclassified,
            accounts_problems,
        }
    }
}

impl StreamStage for Survey {
    /// It reads the dump's text alone.
    type Answer = std::convert::Infallible;

    fn statement(&mut self, s: &Statement, _: Option<Self::Answer>) -> Result<Action, StageError> {
        if s.is_copy_from_stdin() {
            self.copy_start(s);
        } else if let Some(unique) = unique_column(s) {
            self.unique.insert(unique);
        } else {
            self.schema.learn(s);
        }
        Ok(Action::Keep)
    }

    fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, StageError> {
        if let Some(reading) = &mut self.copy {
            reading.feed(&data, &self.cfg);
        }
        Ok(None)
    }

    fn copy_end(&mut self) -> Result<Option<Bytes>, StageError> {
        if let Some(reading) = self.copy.take() {
            self.admin_rows += reading.admin_rows;
            for (name, _, seen) in reading.fields.into_iter().flatten() {
                self.evidence
                    .entry((reading.table.clone(), name))
                    .or_default()
                    .add(seen);
            }
        }
        Ok(None)
    }
}

/// The one column a `CREATE UNIQUE INDEX` or an `ADD CONSTRAINT ... UNIQUE | PRIMARY KEY`
/// names alone, with its table.
fn unique_column(s: &Statement) -> Option<(TableName, String)> {
    let (table, open) = if s.starts_with(&["create", "unique", "index"]) {
        let on = s
            .top_level(0..s.tokens.len())
            .find(|&i| s.is_word(i, "on"))?;
        let (table, next) = s.table(on + 1 + usize::from(s.is_word(on + 1, "only")))?;
        (
            table,
            if s.is_word(next, "using") {
                next + 2
            } else {
                next
            },
        )
    } else if s.starts_with(&["alter", "table"]) {
        let (table, next) = s.table(2 + usize::from(s.is_word(2, "only")))?;
        let unique = (next..s.tokens.len()).find(|&i| {
            s.is_word(i, "unique") || (s.is_word(i, "key") && s.is_word(i - 1, "primary"))
        })?;
        (table, unique + 1)
    } else {
        return None;
    };
    if s.token_text(open) != Some("(") {
        return None;
    }
    match s.elements(open).0.as_slice() {
        // A column, maybe with its order or operator class; not an expression.
        [one] if !matches!(s.token_text(one.start + 1), Some("(" | ":" | ".")) => {
            Some((table, s.name(one.start)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
        assert!(
            problems(&copy("2\tjo@example.org\ty\n"))[0].starts_with("no row of public.member")
        );
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
        let dump =
            "CREATE TABLE public.a (id integer, note text, street text, city text, zip text);
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
}
