//! Loads filtered dump items into the scratch database over one connection: statements in
//! batches through the simple query protocol (one round trip per ~1 MiB of SQL), COPY data
//! streamed through `COPY ... FROM STDIN`. Post-data statements go to [`PostData`], which
//! runs them on a pool of sessions; the loader waits for them where order matters. At the
//! end every session must be outside any transaction, whatever code the dump ran.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::postdata::{PostData, Route};
use crate::database::DbError;
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
    },
    CopyData(Bytes),
    CopyEnd {
        rows: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("dump line {line}")]
    Statement {
        line: u64,
        #[source]
        message: ServerMessage,
    },
    #[error("loading COPY data into {table} (COPY at dump line {line})")]
    Copy {
        table: String,
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
    #[error("checking the session after the dump")]
    Session {
        #[source]
        message: ServerMessage,
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

/// Loads everything `items` delivers, the post-data statements through `post_data`; returns
/// the rows loaded per table.
pub async fn load(
    client: &Client,
    mut items: mpsc::Receiver<Load>,
    progress: &Progress,
    post_data: &mut PostData<'_>,
) -> Result<BTreeMap<String, u64>, LoadError> {
    let mut line = 0;
    let mut rows = BTreeMap::new();
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
            } => {
                line = at;
                post_data.finish().await?;
                batch.flush(client).await?;
                progress.set_message(&table);
                let count = copy(client, &mut items, &statement)
                    .await
                    .map_err(|message| match message {
                        None => LoadError::InputEnded,
                        Some(message) => LoadError::Copy {
                            table: table.clone(),
                            line,
                            message,
                        },
                    })?;
                *rows.entry(table).or_insert(0) += count;
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
    Ok(rows)
}

/// The session is outside a transaction (a simple query of its own starts one, so its start
/// is the transaction's).
pub(super) async fn outside_transaction(client: &Client, line: u64) -> Result<(), LoadError> {
    let messages = client
        .simple_query(
            "SELECT pg_catalog.transaction_timestamp() = pg_catalog.statement_timestamp()",
        )
        .await
        .map_err(|e| match e.code() {
            // "current transaction is aborted": a transaction is open, and failed.
            Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) => {
                LoadError::TransactionOpen { line }
            }
            _ => LoadError::Session { message: e.into() },
        })?;
    let idle = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
        _ => None,
    });
    match idle {
        Some(true) => Ok(()),
        Some(false) => Err(LoadError::TransactionOpen { line }),
        None => Err(LoadError::Session {
            message: ServerMessage::plain("no row"),
        }),
    }
}

/// Streams one table's COPY data; returns the row count the server reports. The error is
/// the server's message, or `None` when the input stopped early.
async fn copy(
    client: &Client,
    items: &mut mpsc::Receiver<Load>,
    statement: &str,
) -> Result<u64, Option<ServerMessage>> {
    let server = |e: tokio_postgres::Error| Some(ServerMessage::from(e));
    let sink = client
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(server)?;
    let mut sink = std::pin::pin!(sink);
    loop {
        match items.recv().await {
            Some(Load::CopyData(data)) => sink.send(data).await.map_err(server)?,
            Some(Load::CopyEnd { .. }) => return sink.as_mut().finish().await.map_err(server),
            Some(other) => unreachable!("{other:?} inside COPY data"),
            None => return Err(None),
        }
    }
}
