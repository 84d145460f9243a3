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
