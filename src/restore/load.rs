//! [`Load`], what the decode stage hands on, in dump order, to what consumes the stream:
//! the loader (and the COPY it runs), or a plan's counter.

use bytes::Bytes;

use super::statement::Statement;
use crate::table::TableName;

/// One item of the filtered (and masked) dump.
#[derive(Debug)]
pub enum Load {
    /// A statement, with its tokens: post-data routes on them, the batch sends its text.
    Sql(Statement),
    /// A `COPY ... FROM stdin`, its data following.
    CopyStart {
        statement: Statement,
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
