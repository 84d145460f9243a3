//! Masking in the restore stream: the decode stage hands every statement and COPY chunk to
//! the [`Masker`] between the filter and the loader, so production's personal values never
//! reach the staging server, its data files or its WAL. The pre-data teaches it the
//! [`schema`]; at the first row of data every personal-looking column must have a rule (the
//! config's [`Rules`]) or the run stops before anything is loaded ([`gate`]). COPY rows of ruled
//! columns are rewritten field by field ([`rows`], [`copy`], [`kinds`]); `empty` tables are
//! restored without rows. The production admin's row is re-keyed in place ([`admin`]).

mod admin;
pub mod copy;
mod error;
mod gate;
pub mod key;
pub mod kinds;
mod rows;
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use crate::config::masking::{Mask, Rules, users};
use crate::config::{AnonymizeConfig, TableMode};
use crate::restore::statement::Statement;
use crate::restore::{StageError, StreamStage};
use crate::table::{TableName, display_ident};
pub use admin::{Admin, BCRYPT_COST};
pub use error::{MaskError, Unclassified};
pub use gate::classify;
pub use key::Key;
pub use kinds::Masks;
use rows::{MAX_ROW, MaskedCopy};
use schema::Schema;

/// What the masking did, for verification and the report.
#[derive(Debug, Clone, Default)]
pub struct Masked {
    /// The admin's id (as COPY text), kept from production.
    pub admin_id: String,
    /// Rows whose values were masked, per table.
    pub rows: BTreeMap<TableName, u64>,
    /// Values masked, per table and column.
    pub values: BTreeMap<TableName, BTreeMap<String, u64>>,
    /// Tables restored without rows, with the rows dropped.
    pub emptied: BTreeMap<TableName, u64>,
    /// The column masks the dump's tables got (not `keep`), for verification and the scan.
    pub applied: Vec<(TableName, String, Mask)>,
    /// The personal-looking columns a `keep` rule classified as not personal.
    pub kept: Vec<(TableName, String)>,
    /// The salt every masked password hash has (see [`Mask::Password`]).
    pub password_salt: [u8; 16],
    /// `$2b$12$` and that salt: what every masked password hash starts with.
    pub password_prefix: String,
}

pub struct Masker {
    rules: Rules,
    masks: Masks,
    admin: Admin,
    schema: Schema,
    data_started: bool,
    copy: Option<Copy>,
    /// Admin rows found so far.
    admins: Vec<String>,
    users_copied: bool,
    done: Masked,
}

/// The COPY in progress.
struct Copy {
    table: TableName,
    action: Action,
}

enum Action {
    Pass,
    Empty { rows: u64 },
    Mask(MaskedCopy),
}

impl Masker {
    /// The masker the config describes (its rules as `Config::load` validated them), its key
    /// loaded or generated into `state_dir`. Slow (it hashes the admin password with
    /// bcrypt): call it off the async runtime.
    pub fn from_config(cfg: &AnonymizeConfig, state_dir: &Path) -> Result<Masker, MaskError> {
        let rules = cfg.rules.clone();
        let key = Key::load(cfg.mask_key_file.as_deref(), state_dir)?;
        let admin = Admin::from_config(cfg)?;
        Ok(Masker::new(
            rules,
            Masks::new(key, &cfg.email_domain),
            admin,
        ))
    }

    pub fn new(rules: Rules, masks: Masks, admin: Admin) -> Masker {
        let done = Masked {
            password_salt: masks.password_salt(),
            password_prefix: masks.password_prefix().to_owned(),
            ..Masked::default()
        };
        Masker {
            rules,
            masks,
            admin,
            schema: Schema::default(),
            data_started: false,
            copy: None,
            admins: Vec::new(),
            users_copied: false,
            done,
        }
    }

    /// Learns from or checks a statement the filter kept; false drops it (an INSERT into
    /// an emptied table).
    pub fn statement(&mut self, s: &Statement) -> Result<bool, MaskError> {
        if s.is_copy_from_stdin() {
            self.copy_start(s)?;
            return Ok(true);
        }
        if s.starts_with(&["insert", "into"]) {
            self.start_data()?;
            return self.insert(s);
        }
        if let Some(table) = self.schema.learn(s)
            && self.data_started
        {
            gate::check(&self.rules, &self.schema, &[table])?;
        }
        Ok(true)
    }

    /// One chunk of COPY data: passed on, rewritten, or held back (`None`).
    pub fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, MaskError> {
        let copy = self
            .copy
            .as_mut()
            .expect("COPY data follows a COPY statement");
        match &mut copy.action {
            Action::Pass => Ok(Some(data)),
            Action::Empty { rows } => {
                *rows += memchr::memchr_iter(b'\n', &data).count() as u64;
                Ok(None)
            }
            Action::Mask(m) => {
                m.partial.extend_from_slice(&data);
                let Some(end) = memchr::memrchr(b'\n', &m.partial) else {
                    if m.partial.len() > MAX_ROW {
                        return Err(MaskError::RowTooLong {
                            table: copy.table.to_string(),
                        });
                    }
                    return Ok(None);
                };
                let rest = m.partial.split_off(end + 1);
                let lines = std::mem::replace(&mut m.partial, rest);
                let out = rows::rows(
                    &self.masks,
                    &self.admin,
                    &mut self.admins,
                    &copy.table,
                    m,
                    &lines,
                )?;
                Ok(Some(Bytes::from(out)))
            }
        }
    }

    /// The end of a COPY: what is left of its data, if anything.
    pub fn copy_end(&mut self) -> Result<Option<Bytes>, MaskError> {
        let copy = self.copy.take().expect("a COPY ends after it starts");
        match copy.action {
            Action::Pass => Ok(None),
            Action::Empty { rows } => {
                *self.done.emptied.entry(copy.table).or_default() += rows;
                Ok(None)
            }
            Action::Mask(mut m) => {
                let tail = std::mem::take(&mut m.partial);
                let out = if tail.is_empty() {
                    Vec::new()
                } else {
                    rows::rows(
                        &self.masks,
                        &self.admin,
                        &mut self.admins,
                        &copy.table,
                        &mut m,
                        &tail,
                    )?
                };
                *self.done.rows.entry(copy.table.clone()).or_default() += m.rows;
                for (name, n) in m.names.iter().zip(&m.values) {
                    if *n > 0 {
                        *self
                            .done
                            .values
                            .entry(copy.table.clone())
                            .or_default()
                            .entry(name.clone())
                            .or_default() += n;
                    }
                }
                if m.admin.is_some() {
                    self.users_copied = true;
                    self.admin.found_once(&self.admins)?;
                }
                Ok((!out.is_empty()).then(|| Bytes::from(out)))
            }
        }
    }

    /// At the end of the dump: what was masked.
    pub fn finish(mut self) -> Result<Masked, MaskError> {
        self.start_data()?;
        if !self.users_copied {
            return Err(self.admin.not_found());
        }
        gate::note_classes(&self.rules, &self.schema, &mut self.done);
        self.done.admin_id = self.admins.pop().unwrap_or_default();
        Ok(self.done)
    }

    /// Before the first row of data: every table the pre-data made is checked.
    fn start_data(&mut self) -> Result<(), MaskError> {
        if self.data_started {
            return Ok(());
        }
        self.data_started = true;
        gate::warn_unknown_columns(&self.rules, &self.schema);
        let tables: Vec<TableName> = self.schema.tables().map(|(t, _)| t.clone()).collect();
        gate::check(&self.rules, &self.schema, &tables)
    }

    fn copy_start(&mut self, s: &Statement) -> Result<(), MaskError> {
        self.start_data()?;
        let (table, next) = s.table(1).expect("a COPY names its table");
        let names = listed_columns(&self.schema, s, &table, next);
        let action = if self.rules.table_mode(&table) == Some(TableMode::Empty) {
            Action::Empty { rows: 0 }
        } else {
            let masks = gate::masks_of(&self.rules, &self.schema, &table, &names)?;
            let admin = (table == users()).then(|| self.admin.fields(&names));
            match admin {
                Some(None) => return Err(self.admin.not_found()),
                None if masks.iter().all(Option::is_none) => Action::Pass,
                admin => Action::Mask(MaskedCopy::new(
                    &self.schema,
                    &table,
                    names,
                    masks,
                    admin.flatten(),
                )),
            }
        };
        self.copy = Some(Copy { table, action });
        Ok(())
    }

    fn insert(&self, s: &Statement) -> Result<bool, MaskError> {
        let Some((table, next)) = s.table(2) else {
            return Ok(true);
        };
        if self.rules.table_mode(&table) == Some(TableMode::Empty) {
            return Ok(false);
        }
        let names = listed_columns(&self.schema, s, &table, next);
        let refused = |columns: Vec<String>| MaskError::Insert {
            line: s.line,
            table: table.to_string(),
            columns,
        };
        let masks = match gate::masks_of(&self.rules, &self.schema, &table, &names) {
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
        if masked.is_empty() {
            Ok(true)
        } else {
            Err(refused(masked))
        }
    }
}

impl StreamStage for Masker {
    fn statement(&mut self, s: &Statement) -> Result<bool, StageError> {
        Ok(Masker::statement(self, s)?)
    }
    fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, StageError> {
        Ok(Masker::copy_data(self, data)?)
    }
    fn copy_end(&mut self) -> Result<Option<Bytes>, StageError> {
        Ok(Masker::copy_end(self)?)
    }
    fn masks_copy(&self) -> bool {
        self.copy
            .as_ref()
            .is_some_and(|c| matches!(c.action, Action::Mask(_)))
    }
}

/// The columns a COPY or INSERT of `table` lists at token `at`, else all the table's.
pub fn listed_columns(schema: &Schema, s: &Statement, table: &TableName, at: usize) -> Vec<String> {
    column_list(s, at).unwrap_or_else(|| {
        schema
            .columns(table)
            .unwrap_or_default()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    })
}

/// The `(a, b)` column list at token `at`, if there is one.
fn column_list(s: &Statement, at: usize) -> Option<Vec<String>> {
    if s.token_text(at) != Some("(") {
        return None;
    }
    let (elements, _) = s.elements(at);
    elements.iter().map(|e| s.name(e.start)).collect()
}
