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
mod tests;
