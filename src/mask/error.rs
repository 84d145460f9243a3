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
