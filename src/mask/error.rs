//! What stops the masking, and with it the run, before a production value is loaded.

use super::key::KeyError;
use super::kinds::KindError;
use super::rows::MAX_ROW;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error(
        "unclassified columns (anonymize.unclassified = \"fail\"), nothing was loaded: {}; \
         give each an [[anonymize.column]] rule (mask = \"keep\" when it holds nothing \
         personal) or its table an [[anonymize.table]] rule",
        .0.join(", ")
    )]
    Unclassified(Vec<String>),
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
