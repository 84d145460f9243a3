//! Masking in the restore stream: the decode stage hands every statement and COPY chunk to
//! the [`Masker`] between the filter and the loader, so production's personal values never
//! reach the staging server, its data files or its WAL. The pre-data teaches it the
//! [`schema`]; at the first row of data every personal-looking column must have a rule
//! ([`rules`]) or the run stops before anything is loaded. COPY rows of ruled columns are
//! rewritten field by field ([`copy`], [`kinds`]); `empty` tables are restored without rows.
//! The production admin's row is re-keyed in place: found by `prod_admin_email`, it gets
//! the staging admin's email and password hash and keeps its id.

pub mod copy;
pub mod key;
pub mod kinds;
pub mod rules;
pub mod schema;

use crate::config::ExposeSecret;
use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use crate::config::AnonymizeConfig;

use crate::config::{TableMode, Unclassified};
use crate::restore::statement::Statement;
use crate::restore::{StageError, StreamStage};
use crate::table::{TableName, display_ident};
pub use key::Key;
pub use kinds::{Mask, Masks};
pub use rules::{Class, Origin, Rules};
use schema::Schema;

/// The cost of the admin's bcrypt hash (and of real hashes with `password_hash = "bcrypt"`).
pub const BCRYPT_COST: u32 = 12;
/// Longest COPY row of a masked table held at once; pg_dump lines are far shorter unless a
/// single value is huge, and that value would need masking whole.
const MAX_ROW: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error(
        "unclassified columns (anonymize.unclassified = \"fail\"), nothing was loaded: {}; \
         give each an [[anonymize.column]] rule (mask = \"keep\" when it holds nothing \
         personal) or its table an [[anonymize.table]] rule",
        .0.join(", ")
    )]
    Unclassified(Vec<String>),
    #[error("{column} is NOT NULL, so mask = \"null\" cannot apply to it; choose another mask")]
    NullOnNotNull { column: String },
    #[error(
        "{column}: a masked value is longer than its type allows ({limit} characters); \
         choose a mask that fits"
    )]
    TooLong { column: String, limit: u64 },
    #[error("{column}: {error}")]
    Value {
        column: String,
        error: kinds::KindError,
    },
    #[error(
        "a COPY row of {table} has {fields} fields, its COPY statement names {columns} columns"
    )]
    Row {
        table: String,
        fields: usize,
        columns: usize,
    },
    #[error("a COPY row of {table} is longer than {} MiB; it cannot be masked", MAX_ROW >> 20)]
    RowTooLong { table: String },
    #[error(
        "dump line {line}: INSERT INTO {table} sets masked or unclassified columns ({}); \
         masking applies to COPY data: take the dump without --inserts",
        .columns.join(", ")
    )]
    Insert {
        line: u64,
        table: String,
        columns: Vec<String>,
    },
    #[error(
        "no user has the production admin email {email:?} (anonymize.prod_admin_email); \
         nothing was changed"
    )]
    AdminNotFound { email: String },
    #[error(
        "{count} users have the production admin email (anonymize.prod_admin_email); expected one"
    )]
    AdminNotUnique { count: usize },
    #[error(transparent)]
    Rules(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error("hashing the admin password: {0}")]
    AdminHash(String),
}

/// The staging admin, who replaces the production admin's row.
#[derive(Debug, Clone)]
pub struct Admin {
    pub prod_email: String,
    pub email: String,
    /// bcrypt hash of `anonymize.admin_password`.
    pub hash: String,
}

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

struct MaskedCopy {
    /// Per field: its mask and length limit, `None` to keep.
    fields: Vec<Option<(Mask, Option<u64>)>>,
    names: Vec<String>,
    /// Field indexes of the admin's columns, in the users table.
    admin: Option<AdminFields>,
    /// The start of a row the last chunk cut.
    partial: Vec<u8>,
    rows: u64,
    values: Vec<u64>,
}

struct AdminFields {
    email: usize,
    id: usize,
    /// (field, value) the admin row gets.
    set: Vec<(usize, Vec<u8>)>,
}

impl Masker {
    /// The masker the config describes, its key loaded or generated into `state_dir`. Slow
    /// (it hashes the admin password with bcrypt): call it off the async runtime.
    pub fn from_config(cfg: &AnonymizeConfig, state_dir: &Path) -> Result<Masker, MaskError> {
        let rules = Rules::from_config(cfg)?;
        let key = Key::load(cfg.mask_key_file.as_deref(), state_dir)?;
        let hash = bcrypt::hash(cfg.admin_password.expose_secret(), BCRYPT_COST)
            .map_err(|e| MaskError::AdminHash(e.to_string()))?;
        let admin = Admin {
            prod_email: cfg.prod_admin_email.clone(),
            email: cfg.admin_email.clone(),
            hash,
        };
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
            self.check(&[table])?;
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
                let out = rows(
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
                    rows(
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
                    self.admin_found()?;
                }
                Ok((!out.is_empty()).then(|| Bytes::from(out)))
            }
        }
    }

    /// At the end of the dump: what was masked.
    pub fn finish(mut self) -> Result<Masked, MaskError> {
        self.start_data()?;
        if !self.users_copied {
            return Err(MaskError::AdminNotFound {
                email: self.admin.prod_email.clone(),
            });
        }
        for (table, columns) in self.schema.tables() {
            for column in columns {
                match self.rules.classify(&self.schema, table, column) {
                    Class::Ruled(Mask::Keep, _) => {
                        self.done.kept.push((table.clone(), column.name.clone()));
                    }
                    Class::Ruled(mask, _) => {
                        self.done
                            .applied
                            .push((table.clone(), column.name.clone(), mask.clone()));
                    }
                    Class::Emptied | Class::Unclassified | Class::NotPersonal => {}
                }
            }
        }
        self.done.admin_id = self.admins.pop().unwrap_or_default();
        Ok(self.done)
    }

    fn admin_found(&self) -> Result<(), MaskError> {
        match self.admins.len() {
            1 => Ok(()),
            0 => Err(MaskError::AdminNotFound {
                email: self.admin.prod_email.clone(),
            }),
            count => Err(MaskError::AdminNotUnique { count }),
        }
    }

    /// Before the first row of data: every table the pre-data made is checked.
    fn start_data(&mut self) -> Result<(), MaskError> {
        if self.data_started {
            return Ok(());
        }
        self.data_started = true;
        for (table, columns) in &self.rules.columns {
            for column in columns.keys() {
                let known = self
                    .schema
                    .columns(table)
                    .is_some_and(|cols| cols.iter().any(|c| c.name == *column));
                if !known {
                    tracing::warn!(
                        column = %format!("{table}.{}", display_ident(column)),
                        "a masking rule names a column the dump does not have"
                    );
                }
            }
        }
        let tables: Vec<TableName> = self.schema.tables().map(|(t, _)| t.clone()).collect();
        self.check(&tables)
    }

    /// Every personal column of `tables` has a rule, and no `null` mask meets NOT NULL.
    fn check(&self, tables: &[TableName]) -> Result<(), MaskError> {
        let mut unclassified = Vec::new();
        for table in tables {
            for column in self.schema.columns(table).unwrap_or_default() {
                let name = || format!("{table}.{}", display_ident(&column.name));
                match self.rules.classify(&self.schema, table, column) {
                    Class::Ruled(Mask::Null, _) if column.not_null => {
                        return Err(MaskError::NullOnNotNull { column: name() });
                    }
                    Class::Unclassified => {
                        unclassified.push(format!("{} ({})", name(), column.ty));
                    }
                    Class::Ruled(..) | Class::Emptied | Class::NotPersonal => {}
                }
            }
        }
        self.unclassified(unclassified)
    }

    fn unclassified(&self, columns: Vec<String>) -> Result<(), MaskError> {
        if columns.is_empty() {
            return Ok(());
        }
        match self.rules.unclassified {
            Unclassified::Fail => Err(MaskError::Unclassified(columns)),
            Unclassified::Warn => {
                tracing::warn!(
                    columns = %columns.join(", "),
                    "unclassified columns kept unmasked (anonymize.unclassified = \"warn\")"
                );
                Ok(())
            }
        }
    }

    /// The mask of each column `names` lists (unclassified ones checked), `None` to keep.
    fn masks_of(
        &self,
        table: &TableName,
        names: &[String],
    ) -> Result<Vec<Option<Mask>>, MaskError> {
        let columns = self.schema.columns(table).unwrap_or_default();
        let mut unclassified = Vec::new();
        let masks = names
            .iter()
            .map(|name| match self.rules.mask(table, name) {
                Some(Mask::Keep) => None,
                Some(mask) => Some(mask.clone()),
                None => {
                    // A column the pre-data did not declare: its type is unknown, so personal.
                    let column = columns.iter().find(|c| c.name == *name);
                    if column.is_none_or(|c| self.schema.is_personal(&c.ty)) {
                        let ty = column.map_or("type unknown".to_owned(), |c| c.ty.to_string());
                        unclassified.push(format!("{table}.{} ({ty})", display_ident(name)));
                    }
                    None
                }
            })
            .collect();
        self.unclassified(unclassified)?;
        Ok(masks)
    }

    fn copy_start(&mut self, s: &Statement) -> Result<(), MaskError> {
        self.start_data()?;
        let (table, next) = s.table(1).expect("a COPY names its table");
        let names = listed_columns(&self.schema, s, &table, next);
        let action = if self.rules.table_mode(&table) == Some(TableMode::Empty) {
            Action::Empty { rows: 0 }
        } else {
            let masks = self.masks_of(&table, &names)?;
            let admin = (table == rules::users()).then(|| self.admin_fields(&names));
            match admin {
                Some(None) => {
                    return Err(MaskError::AdminNotFound {
                        email: self.admin.prod_email.clone(),
                    });
                }
                None if masks.iter().all(Option::is_none) => Action::Pass,
                admin => {
                    let columns = self.schema.columns(&table).unwrap_or_default();
                    let limit = |name: &String| {
                        columns
                            .iter()
                            .find(|c| c.name == *name)
                            .and_then(|c| Schema::max_len(&c.ty))
                    };
                    Action::Mask(MaskedCopy {
                        fields: masks
                            .into_iter()
                            .zip(&names)
                            .map(|(m, name)| m.map(|m| (m, limit(name))))
                            .collect(),
                        values: vec![0; names.len()],
                        names,
                        admin: admin.flatten(),
                        partial: Vec::new(),
                        rows: 0,
                    })
                }
            }
        };
        self.copy = Some(Copy { table, action });
        Ok(())
    }

    /// Where the admin's columns are in the users table's COPY; `None` without email or id.
    fn admin_fields(&self, names: &[String]) -> Option<AdminFields> {
        let at = |column: &str| names.iter().position(|n| n == column);
        let set = [
            (rules::EMAIL, self.admin.email.as_str()),
            (rules::FULL_NAME, rules::ADMIN_NAME),
            (rules::PASSWORD, self.admin.hash.as_str()),
            (rules::SUPERUSER, "t"),
            (rules::ACTIVE, "t"),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((at(column)?, value.as_bytes().to_vec())))
        .collect();
        Some(AdminFields {
            email: at(rules::EMAIL)?,
            id: at(rules::ID)?,
            set,
        })
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
        let masks = match self.masks_of(&table, &names) {
            Ok(masks) => masks,
            Err(MaskError::Unclassified(columns)) => return Err(refused(columns)),
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

/// Rewrites whole COPY lines (each ending in `\n`).
fn rows(
    masks: &Masks,
    admin: &Admin,
    admins: &mut Vec<String>,
    table: &TableName,
    m: &mut MaskedCopy,
    lines: &[u8],
) -> Result<Vec<u8>, MaskError> {
    let mut out = Vec::with_capacity(lines.len() + lines.len() / 4);
    let mut fields: Vec<&[u8]> = Vec::with_capacity(m.fields.len());
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        fields.clear();
        fields.extend(copy::fields(line));
        if fields.len() != m.fields.len() {
            return Err(MaskError::Row {
                table: table.to_string(),
                fields: fields.len(),
                columns: m.fields.len(),
            });
        }
        let is_admin = m.admin.as_ref().is_some_and(|a| {
            copy::decode(fields[a.email]).is_some_and(|email| email == admin.prod_email.as_bytes())
        });
        if is_admin {
            let a = m.admin.as_ref().expect("checked above");
            let id = copy::decode(fields[a.id]).unwrap_or_default();
            admins.push(String::from_utf8_lossy(&id).into_owned());
        }
        m.rows += 1;
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            let admin_value = is_admin
                .then(|| {
                    m.admin
                        .as_ref()
                        .and_then(|a| a.set.iter().find(|(f, _)| *f == i))
                })
                .flatten();
            if let Some((_, value)) = admin_value {
                copy::encode(Some(value), &mut out);
                continue;
            }
            let Some((mask, limit)) = &m.fields[i] else {
                out.extend_from_slice(field);
                continue;
            };
            let Some(value) = copy::decode(field) else {
                out.extend_from_slice(b"\\N");
                continue;
            };
            let column = || format!("{table}.{}", display_ident(&m.names[i]));
            let masked = masks
                .apply(mask, &value)
                .map_err(|error| MaskError::Value {
                    column: column(),
                    error,
                })?;
            if let (Some(limit), Some(v)) = (limit, &masked)
                && String::from_utf8_lossy(v).chars().count() as u64 > *limit
            {
                return Err(MaskError::TooLong {
                    column: column(),
                    limit: *limit,
                });
            }
            m.values[i] += 1;
            copy::encode(masked.as_deref(), &mut out);
        }
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
}
