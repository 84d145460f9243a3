//! What the decode stage hands on, in dump order, to what consumes the stream: the loader
//! (and the COPY it runs), or a plan's counter.

use bytes::Bytes;

/// One item of the filtered (and masked) dump.
#[derive(Debug)]
pub enum Load {
    Sql {
        text: String,
        line: u64,
    },
    CopyStart {
        statement: String,
        line: u64,
        table: String,
        /// Whether the Masker rewrote this COPY's rows: the loader then checks that no code
        /// wrote rows of the table during the COPY.
        masked: bool,
    },
    CopyData(Bytes),
    CopyEnd {
        rows: u64,
    },
}
