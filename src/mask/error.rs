//! What stops the masking, and with it the run, before a production value is loaded.

use std::fmt;

use super::key::KeyError;
use super::kinds::KindError;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("{0}")]
    Unclassified(Unclassified),
    #[error(
        "masks that do not fit their columns, refused before their rows were loaded: {}; \
         choose masks that fit (README, \"Masking rules\")",
        .0.join("; ")
    )]
    Misfit(Vec<String>),
    #[error(
        "{column} is a generated column: the server computes its values, the masking never \
         sees them; give it mask = \"keep\" or no rule"
    )]
    Generated { column: String },
    #[error(
        "dump line {line}: refusing COPY into {table}: pg_dump leaves out no column but generated \
         ones, and this COPY leaves out {column}, which is masked and whose DEFAULT is computed \
         by the server, out of the masking's sight"
    )]
    Default {
        line: u64,
        table: String,
        column: String,
    },
    #[error("dump line {line}: refusing {statement} {target}: {why}")]
    Target {
        line: u64,
        /// "COPY into" or "INSERT INTO".
        statement: &'static str,
        target: String,
        why: &'static str,
    },
    #[error(
        "dump line {line}: refusing COPY into the partitioned table {table}: its rows go to \
         partitions whose rules differ from its own ({partitions}); give the partitioned table \
         and its partitions the same rules"
    )]
    Routed {
        line: u64,
        table: String,
        partitions: String,
    },
    #[error(
        "the tables changed after the masking classified them (statements of the dump ran \
         after their data): {}; nothing was committed",
        .0.join(", ")
    )]
    Changed(Vec<String>),
    #[error(
        "dump line {line}: row {row} of the COPY into {table} is not COPY text as pg_dump writes \
         it ({why}): the server would read it differently from the masking"
    )]
    Framing {
        line: u64,
        table: String,
        row: u64,
        why: &'static str,
    },
    #[error("{column}: {error}")]
    Value { column: String, error: KindError },
    #[error(
        "a COPY row of {table} has {fields} fields, its COPY statement names {columns} columns"
    )]
    Row {
        table: String,
        fields: usize,
        columns: usize,
    },
    #[error("a COPY row of {table} is longer than {} MiB; it cannot be masked", limit >> 20)]
    RowTooLong { table: String, limit: usize },
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
        "the dump has no table {table} (anonymize.accounts.table), nothing was loaded: name the \
         application's users table"
    )]
    AccountsTable { table: String },
    #[error(
        "the dump's table {table} (anonymize.accounts.table) has no column {}, nothing was \
         loaded: name its columns",
        .columns.join(", ")
    )]
    AccountsColumns { table: String, columns: Vec<String> },
    #[error(
        "no row of {table} has the production admin email {email:?} in {column} \
         (anonymize.prod_admin_email); staging was not changed: correct it, or leave it out to \
         mask every account"
    )]
    AdminNotFound {
        table: String,
        column: String,
        email: String,
    },
    #[error(
        "{count} rows of {table} have the production admin email (anonymize.prod_admin_email); \
         expected one"
    )]
    AdminNotUnique { table: String, count: usize },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("hashing the admin password: {0}")]
    AdminHash(String),
}

/// The columns no rule classifies, refused under `anonymize.unclassified = "fail"`. A real
/// schema can have thousands: the refusal shows a screenful, table by table, and says how
/// to get rules for them; [`Unclassified::columns`] is the whole list, for the run report.
#[derive(Debug, Clone, Default)]
pub struct Unclassified {
    /// Table by table, in the dump's order: the table and its columns, `column (type)`.
    tables: Vec<(String, Vec<String>)>,
    /// The snapshot the run restores, for the command that asks it for rules.
    pub snapshot: Option<String>,
}

/// Tables the refusal names, and columns per table: with its other lines, a screenful.
const SHOWN_TABLES: usize = 20;
const SHOWN_COLUMNS: usize = 6;

impl Unclassified {
    /// Notes `column` (`name (type)`) of `table`, once: a partitioned table's columns are
    /// named under it for each of its partitions.
    pub fn push(&mut self, table: String, column: String) {
        match self.tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, columns)) if columns.contains(&column) => {}
            Some((_, columns)) => columns.push(column),
            None => self.tables.push((table, vec![column])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Every column, `schema.table.column (type)`.
    pub fn columns(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|(table, columns)| columns.iter().map(move |c| format!("{table}.{c}")))
            .collect()
    }

    /// "3268 columns in 412 tables".
    fn count(&self) -> String {
        let columns: usize = self.tables.iter().map(|(_, c)| c.len()).sum();
        format!(
            "{} in {}",
            crate::util::counted(columns, "column"),
            crate::util::counted(self.tables.len(), "table")
        )
    }

    /// One line per table, the first [`SHOWN_TABLES`] of them.
    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .tables
            .iter()
            .take(SHOWN_TABLES)
            .map(|(table, columns)| {
                let mut shown = columns[..columns.len().min(SHOWN_COLUMNS)].join(", ");
                if columns.len() > SHOWN_COLUMNS {
                    shown.push_str(&format!(" and {} more", columns.len() - SHOWN_COLUMNS));
                }
                format!("{table}: {shown}")
            })
            .collect();
        if self.tables.len() > SHOWN_TABLES {
            let more = self.tables.len() - SHOWN_TABLES;
            lines.push(format!("and {}", crate::util::counted(more, "more table")));
        }
        lines
    }

    /// The warning `anonymize.unclassified = "warn"` logs, on one line.
    pub fn warning(&self) -> String {
        format!(
            "{} kept unmasked (anonymize.unclassified = \"warn\"): {}",
            self.count(),
            self.lines().join("; ")
        )
    }
}

impl fmt::Display for Unclassified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} have no masking rule (anonymize.unclassified = \"fail\"); nothing was loaded:",
            self.count()
        )?;
        for line in self.lines() {
            writeln!(f, "  {line}")?;
        }
        let snapshot = self.snapshot.as_deref().unwrap_or("<name>");
        write!(
            f,
            "`staging-refresh rules --toml --snapshot {snapshot}` prints a rule to review for each; \
             add them to the [anonymize] section (mask = \"keep\" for a column holding nothing \
             personal, or an [[anonymize.table]] rule for a whole table). The run report lists \
             every column (unclassified_columns)"
        )
    }
}
