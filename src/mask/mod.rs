//! Masking in the restore stream: the decode stage hands every statement and COPY chunk to
//! the [`Masker`] between the filter and the loader, so production's personal values never
//! reach the staging server, its data files or its WAL. The masker never guesses what the
//! server stores: before the first row of data, and before each COPY's first row (or a run
//! of INSERTs), it asks the scratch database's [`catalog`] what the tables are (the COPY's
//! table resolved as the server resolves it, each column's [`shape`]: type through domains,
//! arrays and composites, lengths and CHECKs, partitions and inheritance, generated columns,
//! defaults: [`tables`]). Every personal-looking column must have a rule (the config's
//! [`Rules`], its own table's or the nearest parent's) or the run stops before anything is
//! loaded ([`gate`]), and every mask must fit its column ([`fit`]: type, lengths from the
//! type and CHECKs ([`limits`]), NOT NULL). COPY rows of ruled columns are rewritten field
//! by field ([`rows`], [`copy`], [`kinds`]; arrays element by element ([`array`]), bytea as
//! bytes ([`bytea`]), JSON by path ([`json`])), each mask writing into its [`language`];
//! `empty` tables are restored without rows. The production admin's row is re-keyed in place
//! (the accounts table checked against `[anonymize.accounts]`: [`admin`]). After the last statement the catalog must still hold what was classified,
//! or the run fails ([`tables::reconcile`]). `plan` and `rules` classify from the dump's
//! text instead ([`schema`]).

mod admin;
pub mod array;
pub mod bytea;
pub mod catalog;
pub mod copy;
mod error;
pub mod fit;
mod gate;
pub mod json;
pub mod key;
pub mod kinds;
pub mod language;
mod limits;
mod rows;
pub mod schema;
pub mod shape;
mod stage;
pub mod tables;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;

use crate::config::masking::{Mask, Rules};
use crate::config::{AccountsConfig, AnonymizeConfig, LargeObjects, TableMode};
use crate::restore::At;
use crate::restore::filter::Action;
use crate::restore::statement::Statement;
use crate::table::{TableName, display_ident};
pub use admin::{Admin, BCRYPT_COST, check_columns, check_table};
use catalog::Answer;
pub use error::{MaskError, Unclassified};
pub use gate::{classify, listed_under};
pub use key::Key;
pub use kinds::Masks;
use rows::{MAX_ROW, MaskedCopy};
use shape::ColumnShape;
pub use stage::CopyFields;
use tables::{TableShape, Tables};

/// Why the masker drops a statement: it sets an emptied table's rows, or a large object's.
const INSERT_EMPTIED: &str = "INSERT into a table emptied by anonymize.table";
const LARGE_OBJECT_DATA: &str = "large object data (anonymize.large_objects = \"empty\")";

/// What the masking did, for verification and the report.
#[derive(Debug, Clone, Default)]
pub struct Masked {
    /// The admin's id (as COPY text), kept from production; `None` without an admin.
    pub admin_id: Option<String>,
    /// Rows whose values were masked, per table (a partition's under its partitioned table).
    pub rows: BTreeMap<TableName, u64>,
    /// Values masked, per table and column (a partition's under its partitioned table).
    pub values: BTreeMap<TableName, BTreeMap<String, u64>>,
    /// Tables restored without rows, with the rows dropped (a partition's under its
    /// partitioned table).
    pub emptied: BTreeMap<TableName, u64>,
    /// The column masks the dump's tables got (not `keep`), with their columns' shapes, for
    /// verification and the scan.
    pub applied: Vec<(TableName, ColumnShape, Mask)>,
    /// The personal-looking columns a `keep` rule classified as not personal.
    pub kept: Vec<(TableName, String)>,
    /// The tables INSERTs wrote into (with the partitions their rows may go to): rows the
    /// stream saw as SQL, not as COPY fields.
    pub inserted: BTreeSet<TableName>,
    /// The ancestors of each table that has some: a COPY into a partitioned table loads its
    /// partitions' rows.
    pub parents: BTreeMap<TableName, Vec<TableName>>,
    /// The salt every masked password hash has (see [`Mask::Password`]).
    pub password_salt: [u8; 16],
    /// `$2b$12$` and that salt: what every masked password hash starts with.
    pub password_prefix: String,
}

pub struct Masker {
    rules: Rules,
    masks: Masks,
    accounts: AccountsConfig,
    admin: Option<Admin>,
    large_objects: LargeObjects,
    /// The tables as the scratch database's catalog last described them.
    tables: Tables,
    /// The tables rows were loaded into: one that changes after that fails the run.
    loaded: BTreeSet<TableName>,
    /// The table the INSERTs just before wrote into, as the dump names it and as the catalog
    /// resolved that name: the INSERTs that follow into it ask nothing more.
    inserting: Option<(String, TableName)>,
    data_started: bool,
    copy: Option<Copy>,
    /// Admin rows found so far.
    admins: Vec<String>,
    accounts_copied: bool,
    done: Masked,
}

/// The COPY in progress.
struct Copy {
    /// The table it loads into.
    table: TableName,
    /// The table the report counts its rows under.
    reported: TableName,
    /// The columns it lists, and whether a mask rewrites each.
    fields: Vec<(String, bool)>,
    action: CopyAction,
}

enum CopyAction {
    Pass,
    Empty { rows: u64 },
    Mask(MaskedCopy),
}

impl Masker {
    /// The masker the config describes (its rules as `Config::load` validated them), its key
    /// loaded or generated into `state_dir`, with the `admin` [`Admin::from_config`] made
    /// (slow: the caller runs it beside other work).
    pub fn from_config(
        cfg: &AnonymizeConfig,
        state_dir: &Path,
        admin: Option<Admin>,
    ) -> Result<Masker, MaskError> {
        let rules = cfg.rules.clone();
        let key = Key::load(cfg.mask_key_file.as_deref(), state_dir)?;
        let mut masker = Masker::new(
            rules,
            Masks::new(key, &cfg.email_domain),
            cfg.accounts.clone(),
            admin,
        );
        masker.large_objects = cfg.large_objects;
        Ok(masker)
    }

    pub fn new(
        rules: Rules,
        masks: Masks,
        accounts: AccountsConfig,
        admin: Option<Admin>,
    ) -> Masker {
        let done = Masked {
            password_salt: masks.password_salt(),
            password_prefix: masks.password_prefix().to_owned(),
            ..Masked::default()
        };
        Masker {
            rules,
            masks,
            accounts,
            admin,
            large_objects: LargeObjects::default(),
            tables: Tables::new(),
            loaded: BTreeSet::new(),
            inserting: None,
            data_started: false,
            copy: None,
            admins: Vec::new(),
            accounts_copied: false,
            done,
        }
    }

    /// What to ask the catalog before `at`: every table before the first row of data (a COPY
    /// or an INSERT) and after the last statement; before each COPY, and each run of INSERTs
    /// into one table, that table, as the server resolves its name, with its partitions.
    pub fn ask(&self, at: At<'_>) -> Option<catalog::Question> {
        let all = !self.data_started;
        match at {
            At::End => Some(catalog::Question {
                target: None,
                all: true,
            }),
            At::Statement(s) if s.is_copy_from_stdin() => Some(catalog::Question {
                target: Some(s.copy_table_sql()),
                all,
            }),
            At::Statement(s) if is_insert(s) => {
                let written = s.name_sql(2)?;
                let known = self.inserting.as_ref().is_some_and(|(w, _)| *w == written);
                (!known).then_some(catalog::Question {
                    target: Some(written),
                    all,
                })
            }
            At::Statement(_) => None,
        }
    }

    /// Checks a statement the filter kept, with the catalog's answer to [`Masker::ask`]
    /// before it: a COPY's rows are masked as the answer says; an INSERT may set no masked
    /// column; an INSERT into an emptied table, and with `anonymize.large_objects = "empty"`
    /// a large object's data, are dropped.
    pub fn statement(
        &mut self,
        s: &Statement,
        answer: Option<Answer>,
    ) -> Result<Action, MaskError> {
        if is_insert(s) {
            return self.insert(s, answer);
        }
        self.inserting = None;
        if s.is_copy_from_stdin() {
            let answer = answer.expect("a COPY's table is asked about");
            self.copy_start(s, answer)?;
            return Ok(Action::Keep);
        }
        if self.large_objects == LargeObjects::Empty && is_large_object_data(s) {
            return Ok(Action::Drop(LARGE_OBJECT_DATA));
        }
        Ok(Action::Keep)
    }

    /// One chunk of COPY data: passed on, rewritten, or held back (`None`).
    pub fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, MaskError> {
        let copy = self
            .copy
            .as_mut()
            .expect("COPY data follows a COPY statement");
        match &mut copy.action {
            CopyAction::Pass => Ok(Some(data)),
            CopyAction::Empty { rows } => {
                *rows += memchr::memchr_iter(b'\n', &data).count() as u64;
                Ok(None)
            }
            CopyAction::Mask(m) => {
                m.partial.extend_from_slice(&data);
                let Some(end) = memchr::memrchr(b'\n', &m.partial) else {
                    if m.partial.len() > MAX_ROW {
                        return Err(MaskError::RowTooLong {
                            table: copy.table.to_string(),
                            limit: MAX_ROW,
                        });
                    }
                    return Ok(None);
                };
                let rest = m.partial.split_off(end + 1);
                let lines = std::mem::replace(&mut m.partial, rest);
                let out = rows::rows(&self.masks, &mut self.admins, &copy.table, m, &lines)?;
                Ok(Some(Bytes::from(out)))
            }
        }
    }

    /// The end of a COPY: what is left of its data, if anything.
    pub fn copy_end(&mut self) -> Result<Option<Bytes>, MaskError> {
        let copy = self.copy.take().expect("a COPY ends after it starts");
        match copy.action {
            CopyAction::Pass => Ok(None),
            CopyAction::Empty { rows } => {
                *self.done.emptied.entry(copy.reported).or_default() += rows;
                Ok(None)
            }
            CopyAction::Mask(mut m) => {
                let tail = std::mem::take(&mut m.partial);
                let out = if tail.is_empty() {
                    Vec::new()
                } else {
                    rows::rows(&self.masks, &mut self.admins, &copy.table, &mut m, &tail)?
                };
                *self.done.rows.entry(copy.reported.clone()).or_default() += m.rows;
                for (name, n) in m.names.iter().zip(&m.values) {
                    if *n > 0 {
                        *self
                            .done
                            .values
                            .entry(copy.reported.clone())
                            .or_default()
                            .entry(name.clone())
                            .or_default() += n;
                    }
                }
                if copy.table == self.accounts.table {
                    self.accounts_copied = true;
                    if let Some(admin) = &self.admin {
                        admin.found_once(&self.accounts, &self.admins)?;
                    }
                }
                Ok((!out.is_empty()).then(|| Bytes::from(out)))
            }
        }
    }

    /// After the last statement, with the catalog's answer (every table): the scratch
    /// database holds the tables and columns the masking classified, as it classified them.
    pub fn end(&mut self, answer: Answer) -> Result<(), MaskError> {
        if !self.data_started {
            self.start_data(answer.tables.clone())?;
        }
        let changed = tables::reconcile(&self.tables, &self.loaded, &answer.tables);
        if changed.is_empty() {
            Ok(())
        } else {
            Err(MaskError::Changed(changed))
        }
    }

    /// At the end of the dump: what was masked.
    pub fn finish(mut self) -> Result<Masked, MaskError> {
        if let Some(admin) = self.admin.as_ref().filter(|_| !self.accounts_copied) {
            return Err(admin.not_found(&self.accounts));
        }
        gate::note_classes(&self.rules, &self.tables, &mut self.done);
        self.done.parents = self
            .tables
            .values()
            .filter(|t| !t.parents.is_empty())
            .map(|t| (t.name.clone(), t.parents.clone()))
            .collect();
        self.done.admin_id = self.admins.pop();
        Ok(self.done)
    }

    /// Before the first row of data, with every table: the accounts table and each one are
    /// checked.
    fn start_data(&mut self, tables: Vec<TableShape>) -> Result<(), MaskError> {
        self.data_started = true;
        self.tables = tables.into_iter().map(|t| (t.name.clone(), t)).collect();
        check_table(
            &self.accounts,
            self.tables
                .get(&self.accounts.table)
                .map(|t| t.columns.iter().map(|c| c.name.as_str())),
        )?;
        gate::warn_unknown_columns(&self.rules, &self.tables);
        // An extension's tables hold what the extension put there; a COPY into one is
        // checked at its start.
        let dumps = self
            .tables
            .values()
            .filter(|t| !t.catalog.as_ref().is_some_and(|c| c.extension));
        gate::check(&self.rules, &self.tables, dumps, self.masks.email_domain())
    }

    /// Takes in what the catalog says of some tables now; one that rows were loaded into
    /// must not have changed since.
    fn learn(&mut self, tables: Vec<TableShape>) -> Result<(), MaskError> {
        let mut changed = Vec::new();
        for table in tables {
            if self.loaded.contains(&table.name)
                && let Some(before) = self.tables.get(&table.name)
            {
                changed.extend(tables::changes(before, &table));
            }
            self.tables.insert(table.name.clone(), table);
        }
        if changed.is_empty() {
            Ok(())
        } else {
            Err(MaskError::Changed(changed))
        }
    }

    /// The table a COPY or an INSERT (`s`) writes into, as the catalog's `answer` says; it
    /// and its partitions (where a partitioned table's rows go) are checked as they are now,
    /// changed or not since the first row of data.
    fn target(&mut self, s: &Statement, answer: Answer) -> Result<TableName, MaskError> {
        if self.data_started {
            self.learn(answer.tables)?;
        } else {
            self.start_data(answer.tables)?;
        }
        let table = answer.target.ok_or_else(|| {
            refused(
                s,
                "it is not a table (a view or a foreign table); pg_dump writes into tables only",
            )
        })?;
        gate::check(
            &self.rules,
            &self.tables,
            self.tree(&table),
            self.masks.email_domain(),
        )?;
        Ok(table)
    }

    /// `table` and its partitions.
    fn tree(&self, table: &TableName) -> Vec<&TableShape> {
        self.tables
            .values()
            .filter(|t| t.name == *table || (t.partition && t.parents.contains(table)))
            .collect()
    }

    fn copy_start(&mut self, s: &Statement, answer: Answer) -> Result<(), MaskError> {
        let line = s.line;
        let table = self.target(s, answer)?;
        let shape = self.tables[&table].clone();
        let (_, next) = s.table(1).expect("a COPY names its table");
        let names = match column_list(s, next) {
            Some(names) => names,
            None if shape.columns.iter().all(|c| c.generated) => Vec::new(),
            None => {
                return Err(refused(
                    s,
                    "it lists no columns; pg_dump lists them for every table that has any",
                ));
            }
        };
        let tree = self.tree(&table);
        for partition in &tree {
            self.omitted_defaults(line, partition, &names)?;
        }
        if shape.partitioned {
            self.same_rules(line, &shape, &tree, &names)?;
        }
        let loaded: Vec<TableName> = tree.iter().map(|t| t.name.clone()).collect();
        self.loaded.extend(loaded);
        let mut masked = vec![false; names.len()];
        let action = if self.rules.table_mode(shape.lineage()) == Some(TableMode::Empty) {
            CopyAction::Empty { rows: 0 }
        } else {
            let masks = gate::masks_of(&self.rules, &table, Some(&shape), &names)?;
            masked = masks.iter().map(Option::is_some).collect();
            let admin = if table == self.accounts.table {
                let listed: Vec<&str> = names.iter().map(String::as_str).collect();
                check_columns(&self.accounts, &listed)?;
                self.admin
                    .as_ref()
                    .map(|admin| admin.fields(&self.accounts, &names))
            } else {
                None
            };
            match admin {
                None if masks.iter().all(Option::is_none) => CopyAction::Pass,
                admin => CopyAction::Mask(MaskedCopy::new(
                    &self.masks,
                    &shape,
                    line,
                    names.clone(),
                    masks,
                    admin,
                )?),
            }
        };
        self.copy = Some(Copy {
            reported: shape.reported().clone(),
            table,
            fields: names.into_iter().zip(masked).collect(),
            action,
        });
        Ok(())
    }

    /// A masked column of `table` the COPY leaves out (pg_dump leaves out generated ones
    /// only) is filled by its DEFAULT: unless that is a constant, code of the dump's could
    /// compute it from anything.
    fn omitted_defaults(
        &self,
        line: u64,
        table: &TableShape,
        names: &[String],
    ) -> Result<(), MaskError> {
        if self.rules.table_mode(table.lineage()) == Some(TableMode::Empty) {
            return Ok(());
        }
        for column in &table.columns {
            let masked = matches!(
                self.rules.mask(table.lineage(), &column.name),
                Some(mask) if *mask != Mask::Keep
            );
            let computed = column.default.as_deref().is_some_and(|d| !is_constant(d));
            if masked && computed && !column.generated && !names.contains(&column.name) {
                return Err(MaskError::Default {
                    line,
                    table: table.name.to_string(),
                    column: display_ident(&column.name),
                });
            }
        }
        Ok(())
    }

    /// The rows of a COPY into a partitioned table go to its partitions, which the masking
    /// cannot tell apart: each partition must classify every column as the table does.
    fn same_rules(
        &self,
        line: u64,
        table: &TableShape,
        tree: &[&TableShape],
        names: &[String],
    ) -> Result<(), MaskError> {
        let mode = self.rules.table_mode(table.lineage());
        let mut differ = Vec::new();
        for partition in tree.iter().filter(|p| p.name != table.name) {
            for name in names {
                let (Some(own), Some(theirs)) = (table.column(name), partition.column(name)) else {
                    continue;
                };
                if self.rules.table_mode(partition.lineage()) != mode
                    || classify(&self.rules, table, own) != classify(&self.rules, partition, theirs)
                {
                    differ.push(format!("{}.{}", partition.name, display_ident(name)));
                }
            }
        }
        if differ.is_empty() {
            Ok(())
        } else {
            Err(MaskError::Routed {
                line,
                table: table.name.to_string(),
                partitions: differ.join(", "),
            })
        }
    }

    /// An INSERT (dumps taken with `--inserts`) may set no masked or unclassified column, in
    /// its table or in the partition its row goes to.
    fn insert(&mut self, s: &Statement, answer: Option<Answer>) -> Result<Action, MaskError> {
        let (Some(written), Some((_, next))) = (s.name_sql(2), s.qualified(2)) else {
            return Ok(Action::Keep);
        };
        if let Some(answer) = answer {
            let table = self.target(s, answer)?;
            self.inserting = Some((written, table));
        }
        let (_, table) = self
            .inserting
            .clone()
            .expect("an INSERT's table is asked about");
        let shape = &self.tables[&table];
        if self.rules.table_mode(shape.lineage()) == Some(TableMode::Empty) {
            return Ok(Action::Drop(INSERT_EMPTIED));
        }
        let names = column_list(s, next)
            .unwrap_or_else(|| shape.columns.iter().map(|c| c.name.clone()).collect());
        let refused = |columns: Vec<String>| MaskError::Insert {
            line: s.line,
            table: table.to_string(),
            columns,
        };
        let tree = self.tree(&table);
        for target in &tree {
            let masks = match gate::masks_of(&self.rules, &target.name, Some(target), &names) {
                Ok(masks) => masks,
                Err(MaskError::Unclassified(unclassified)) => {
                    return Err(refused(unclassified.columns()));
                }
                Err(e) => return Err(e),
            };
            let masked: Vec<String> = names
                .iter()
                .zip(&masks)
                .filter(|(_, m)| m.is_some())
                .map(|(n, _)| display_ident(n))
                .collect();
            if !masked.is_empty() {
                return Err(refused(masked));
            }
        }
        let written_into: Vec<TableName> = tree.iter().map(|t| t.name.clone()).collect();
        self.done.inserted.extend(written_into.iter().cloned());
        self.loaded.extend(written_into);
        Ok(Action::Keep)
    }
}

/// A COPY or an INSERT refused for `why`.
fn refused(s: &Statement, why: &'static str) -> MaskError {
    let (statement, at) = if s.is_copy_from_stdin() {
        ("COPY into", 1)
    } else {
        ("INSERT INTO", 2)
    };
    MaskError::Target {
        line: s.line,
        statement,
        target: s.table(at).map_or_else(String::new, |(t, _)| t.to_string()),
        why,
    }
}

fn is_insert(s: &Statement) -> bool {
    s.starts_with(&["insert", "into"])
}

/// `SELECT pg_catalog.lowrite(...)`, the only statement of a dump that holds a large
/// object's bytes (the filter lets pg_catalog's functions through only so qualified).
fn is_large_object_data(s: &Statement) -> bool {
    s.is_word(0, "select") && s.is_word(3, "lowrite")
}

/// Whether a DEFAULT (as `pg_get_expr` prints it) is a constant: a literal, cast at most
/// once (`'x'::text`, `42`, `NULL::character varying`), so what the server fills in is
/// written in the schema itself (which the PII scan reads).
fn is_constant(default: &str) -> bool {
    static CONSTANT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"^(?:'(?:[^']|'')*'|-?[0-9]+(?:\.[0-9]+)?|NULL|true|false)(?:::[a-z][a-z0-9_ ]*(?:\([0-9, ]+\))?(?:\[\])?)?$"#,
        )
        .expect("a valid pattern")
    });
    CONSTANT.is_match(default)
}

/// The `(a, b)` column list at token `at`, if there is one.
pub fn column_list(s: &Statement, at: usize) -> Option<Vec<String>> {
    if s.token_text(at) != Some("(") {
        return None;
    }
    let (elements, _) = s.elements(at);
    elements.iter().map(|e| s.name(e.start)).collect()
}
