//! Loads filtered dump items into the scratch database over one connection: statements in
//! batches through the simple query protocol (one round trip per ~1 MiB of SQL), COPY data
//! streamed through `COPY ... FROM STDIN`, each COPY in a transaction of the loader's own
//! whose xid it returns (verification checks that the masked rows are that COPY's).
//! Post-data statements go to [`PostData`], which runs them on a pool of sessions; the
//! loader waits for them where order matters. At the end every session must be outside any
//! transaction, whatever code the dump ran.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::load_error::LoadError;
use super::postdata::{PostData, Route};
use super::session::outside_transaction;
use crate::database::sql::ServerMessage;
use crate::progress::Progress;

/// A batch is sent once it holds this much SQL.
const BATCH_BYTES: usize = 1 << 20;

/// What the filter passes on to be loaded.
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

struct Batch {
    sql: String,
    /// Each statement's dump line and span in `sql`.
    statements: Vec<(u64, std::ops::Range<usize>)>,
}

impl Batch {
    fn push(&mut self, text: &str, line: u64) {
        let start = self.sql.len();
        self.sql.push_str(text);
        self.sql.push('\n');
        self.statements.push((line, start..start + text.len()));
    }

    /// Adds a statement, sending the batch once it is big enough.
    async fn add(&mut self, client: &Client, text: &str, line: u64) -> Result<(), LoadError> {
        self.push(text, line);
        if self.sql.len() >= BATCH_BYTES {
            self.flush(client).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, client: &Client) -> Result<(), LoadError> {
        if self.statements.is_empty() {
            return Ok(());
        }
        let result = client.batch_execute(&self.sql).await;
        let statements = std::mem::take(&mut self.statements);
        let sql = std::mem::take(&mut self.sql);
        let Err(err) = result else { return Ok(()) };
        // The batch ran as one implicit transaction and rolled back whole (a BEGIN of the
        // dump's in it left a failed transaction: end it): replay it one statement at a time
        // to name the line that fails.
        let _ = client.batch_execute("ROLLBACK").await;
        for (line, span) in &statements {
            if let Err(e) = client.batch_execute(&sql[span.clone()]).await {
                return Err(LoadError::Statement {
                    line: *line,
                    message: e.into(),
                });
            }
        }
        Err(LoadError::Statement {
            line: statements[0].0,
            message: err.into(),
        })
    }
}

/// What the loader loaded, per table as the COPY statement writes it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rows: BTreeMap<String, u64>,
    /// The 32-bit xids (as text, like `xmin::text`) of the table's COPY transactions.
    pub xids: BTreeMap<String, Vec<String>>,
}

/// Loads everything `items` delivers, the post-data statements through `post_data`.
pub async fn load(
    client: &Client,
    mut items: mpsc::Receiver<Load>,
    progress: &Progress,
    post_data: &mut PostData<'_>,
) -> Result<Loaded, LoadError> {
    let mut line = 0;
    let mut loaded = Loaded::default();
    let mut batch = Batch {
        sql: String::with_capacity(BATCH_BYTES + 4096),
        statements: Vec::new(),
    };
    while let Some(item) = items.recv().await {
        match item {
            Load::Sql { text, line: at } => {
                line = at;
                match post_data.route(text, line) {
                    Route::Job(job) => {
                        batch.flush(client).await?;
                        post_data.submit(job).await?;
                    }
                    Route::Setting(text) => batch.add(client, &text, line).await?,
                    Route::InOrder(text) => {
                        post_data.finish().await?;
                        batch.add(client, &text, line).await?;
                    }
                }
            }
            Load::CopyStart {
                statement,
                line: at,
                table,
                masked,
            } => {
                line = at;
                post_data.finish().await?;
                batch.flush(client).await?;
                progress.set_message(&table);
                // The COPY's transaction is the loader's, not one the dump left open.
                outside_transaction(client, line).await?;
                let failed = |message: Option<ServerMessage>| match message {
                    None => LoadError::InputEnded,
                    Some(message) => LoadError::Copy {
                        table: table.clone(),
                        line,
                        message,
                    },
                };
                if has_trigger(client, &table).await.map_err(failed)? {
                    return Err(LoadError::Trigger { table, line });
                }
                let copied = copy(client, &mut items, &statement, masked.then_some(&table))
                    .await
                    .map_err(failed)?;
                if copied.written_during > 0 {
                    return Err(LoadError::WrittenDuringCopy {
                        table,
                        line,
                        rows: copied.written_during,
                    });
                }
                *loaded.rows.entry(table.clone()).or_insert(0) += copied.rows;
                loaded.xids.entry(table).or_default().push(copied.xid);
                crate::fault::point("restore.copied-table");
            }
            Load::CopyData(_) | Load::CopyEnd { .. } => {
                unreachable!("COPY data arrives only after a COPY statement")
            }
        }
    }
    batch.flush(client).await?;
    post_data.finish().await?;
    outside_transaction(client, line).await?;
    Ok(loaded)
}

/// Whether `table` (as the COPY writes it, resolved as the COPY will) has a trigger of the
/// dump's: one created before the data could rewrite every masked row as it is inserted.
/// Our SQL names pg_catalog's operators and types: the dump may have set search_path.
async fn has_trigger(client: &Client, table: &str) -> Result<bool, Option<ServerMessage>> {
    let count: i64 = client
        .query_one(
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger
             WHERE tgrelid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.regclass
             AND NOT tgisinternal",
            &[&table],
        )
        .await
        .map_err(|e| Some(e.into()))?
        .get(0);
    Ok(count > 0)
}

/// One COPY, done in a transaction of its own.
struct Copied {
    /// The row count the server reports.
    rows: u64,
    /// The transaction's 32-bit xid, as `xmin::text` shows it.
    xid: String,
    /// Rows of a masked table that its COPY did not write as they stand.
    written_during: i64,
}

/// Streams one table's COPY data in a transaction of its own; for a `masked` table (as the
/// COPY writes it), counts the rows code the COPY ran (a default, a CHECK, an index
/// expression) wrote or touched. The error is the server's message, or `None` when the
/// input stopped early.
async fn copy(
    client: &Client,
    items: &mut mpsc::Receiver<Load>,
    statement: &str,
    masked: Option<&str>,
) -> Result<Copied, Option<ServerMessage>> {
    let server = |e: tokio_postgres::Error| Some(ServerMessage::from(e));
    client.batch_execute("BEGIN").await.map_err(server)?;
    let sink = client
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(server)?;
    let mut sink = std::pin::pin!(sink);
    let rows = loop {
        match items.recv().await {
            Some(Load::CopyData(data)) => sink.send(data).await.map_err(server)?,
            Some(Load::CopyEnd { .. }) => break sink.as_mut().finish().await.map_err(server)?,
            Some(other) => unreachable!("{other:?} inside COPY data"),
            None => return Err(None),
        }
    };
    let txid: i64 = client
        .query_one("SELECT pg_catalog.txid_current()", &[])
        .await
        .map_err(server)?
        .get(0);
    // The COPY is the transaction's first command, so its rows have cmin 0 and, untouched
    // since, xmax 0 (PostgreSQL 15: a row a function updates during the COPY has a later
    // cmin; one it then updated in a rolled-back subtransaction shows a combo id as cmin,
    // and an xmax). With row_security off, a policy that would hide rows fails the query.
    let written_during = match masked {
        None => 0,
        Some(table) => {
            client
                .batch_execute("SET LOCAL row_security = off")
                .await
                .map_err(server)?;
            client
                .query_one(
                    &format!(
                        "SELECT pg_catalog.count(*) FROM ONLY {table}
                         WHERE cmin::pg_catalog.text OPERATOR(pg_catalog.<>) '0'
                         OR xmax::pg_catalog.text OPERATOR(pg_catalog.<>) '0'"
                    ),
                    &[],
                )
                .await
                .map_err(server)?
                .get(0)
        }
    };
    client.batch_execute("COMMIT").await.map_err(server)?;
    Ok(Copied {
        rows,
        xid: (txid % (1 << 32)).to_string(),
        written_during,
    })
}
