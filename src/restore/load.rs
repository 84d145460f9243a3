//! [`Load`], what the decode stage hands on, in dump order, to what consumes the stream:
//! the loader (and the COPY it runs), or a plan's counter.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio_postgres::Client;

use super::statement::Statement;
use crate::database::sql::ServerMessage;
use crate::table::TableName;

/// One item of the filtered (and masked) dump.
pub enum Load {
    /// A statement, with its tokens: post-data routes on them, the batch sends its text.
    Sql(Statement),
    /// A question of the stage's for the scratch database, before the statement at dump
    /// line `line` (or the end of the dump): the loader asks it on its own session once
    /// everything before it has run; the decode stage waits for the answer.
    Ask {
        line: u64,
        ask: Ask,
    },
    /// A `COPY ... FROM stdin`, its data following.
    CopyStart {
        statement: Statement,
        /// The table it loads into, as the stage names it: what rows and xids are keyed by.
        table: TableName,
        /// Whether the Masker rewrote this COPY's rows: the loader then checks that no code
        /// wrote rows of the table during the COPY.
        masked: bool,
    },
    CopyData(Bytes),
    CopyEnd {
        rows: u64,
    },
}

/// Runs a question on the loader's session and hands its answer to the decode stage.
pub type Ask = Box<dyn FnOnce(Arc<Client>) -> BoxFuture<'static, Result<(), ServerMessage>> + Send>;
