//! What stops the masking, and with it the run, before a production value is loaded.

use std::fmt;

use super::key::KeyError;
use super::kinds::KindError;
use super::rows::MAX_ROW;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("{0}")]
    Unclassified(Unclassified),
    #[error("{column} is NOT NULL, so mask = \"null\" cannot apply to it; choose another mask")]
    NullOnNotNull { column: String },
    #[error(
        "{column}: a masked value is longer than its type allows ({limit} characters); \
         choose a mask that fits"
    )]
    TooLong { column: String, limit: u64 },
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
    /// Notes `column` (`name (type)`) of `table`.
    pub fn push(&mut self, table: String, column: String) {
        match self.tables.last_mut() {
            Some((last, columns)) if *last == table => columns.push(column),
            _ => self.tables.push((table, vec![column])),
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
            crate::report::counted(columns, "column"),
            crate::report::counted(self.tables.len(), "table")
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
            lines.push(format!(
                "and {}",
                crate::report::counted(more, "more table")
            ));
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
