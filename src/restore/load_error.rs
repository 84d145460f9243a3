//! How loading the dump fails, on the loader's session or a post-data job's.

use crate::database::DbError;
use crate::database::sql::ServerMessage;
use crate::table::TableName;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("dump line {line}")]
    Statement {
        line: u64,
        #[source]
        message: ServerMessage,
    },
    #[error("loading COPY data into {} (COPY at dump line {line})", .table.as_dumped())]
    Copy {
        table: TableName,
        line: u64,
        #[source]
        message: ServerMessage,
    },
    #[error("opening a post-data session")]
    Connect(#[source] Box<DbError>),
    /// The stream feeding the loader stopped early; the feeding side says why.
    #[error("the dump stream stopped early")]
    InputEnded,
    #[error(
        "after dump line {line}: the dump left a transaction open; it would take in the \
         refresh's own work"
    )]
    TransactionOpen { line: u64 },
    #[error(
        "dump line {line}: {} has a trigger before its data is loaded; pg_dump creates \
         triggers after the data",
        .table.as_dumped()
    )]
    Trigger { table: TableName, line: u64 },
    #[error(
        "dump line {line}: {rows} rows of {} were written during its COPY by code in the \
         dump, after the masking",
        .table.as_dumped()
    )]
    WrittenDuringCopy {
        table: TableName,
        line: u64,
        rows: i64,
    },
    #[error("checking the session after the dump")]
    Session {
        #[source]
        message: ServerMessage,
    },
}
