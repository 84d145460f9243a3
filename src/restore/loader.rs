//! Loads filtered dump items into the scratch database over one connection: statements in
//! batches through the simple query protocol (one round trip per ~1 MiB of SQL), COPY data
//! streamed through `COPY ... FROM STDIN` by [`copy`] (a big table's over several sessions),
//! each COPY in a transaction of the loader's own whose xid it returns (verification checks
//! that the masked rows are those COPYs').
//! Post-data statements go to [`PostData`], which runs them on a pool of sessions; the
//! loader waits for them where order matters. The stage's questions ([`Load::Ask`]) run on
//! the loader's session once everything before them has. At the end every session must be
//! outside any transaction, whatever code the dump ran.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::copy;
use super::load::Load;
use super::load_error::LoadError;
use super::postdata::{PostData, Route};
use super::session::{Bound, outside_transaction};
use crate::database::sql::ServerMessage;
use crate::progress::Progress;
use crate::table::TableName;

/// A batch is sent once it holds this much SQL.
const BATCH_BYTES: usize = 1 << 20;

struct Batch {
    sql: String,
    /// Each statement's dump line and span in `sql`.
    statements: Vec<(u64, std::ops::Range<usize>)>,
    bound: Bound,
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
        let result = self
            .bound
            .run(client, client.batch_execute(&self.sql))
            .await;
        let statements = std::mem::take(&mut self.statements);
        let sql = std::mem::take(&mut self.sql);
        let result = result.map_err(|overran| {
            let (first, last) = (statements[0].0, statements[statements.len() - 1].0);
            LoadError::Statement {
                line: first,
                message: match first == last {
                    true => overran,
                    false => ServerMessage::plain(format!(
                        "with the statements after it up to dump line {last}, sent together: \
                         {overran}"
                    )),
                },
            }
        })?;
        let Err(err) = result else { return Ok(()) };
        // The batch ran as one implicit transaction and rolled back whole (a BEGIN of the
        // dump's in it left a failed transaction: end it): replay it one statement at a time
        // to name the line that fails.
        let _ = client.batch_execute("ROLLBACK").await;
        for (line, span) in &statements {
            let replayed = self
                .bound
                .run(client, client.batch_execute(&sql[span.clone()]))
                .await
                .and_then(|r| r.map_err(ServerMessage::from));
            if let Err(message) = replayed {
                return Err(LoadError::Statement {
                    line: *line,
                    message,
                });
            }
        }
        Err(LoadError::Statement {
            line: statements[0].0,
            message: err.into(),
        })
    }
}

/// What the loader loaded, per table.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rows: BTreeMap<TableName, u64>,
    /// The 32-bit xids (as text, like `xmin::text`) of the table's COPY transactions.
    pub xids: BTreeMap<TableName, Vec<String>>,
    /// From the first post-data statement handed to the pool to the end.
    pub post_data_seconds: f64,
}

/// Loads everything `items` delivers, the post-data statements through `post_data`.
pub async fn load(
    client: &Arc<Client>,
    mut items: mpsc::Receiver<Load>,
    progress: &Progress,
    post_data: &mut PostData<'_>,
) -> Result<Loaded, LoadError> {
    let mut line = 0;
    let mut loaded = Loaded::default();
    let mut post_data_started = None;
    let mut batch = Batch {
        sql: String::with_capacity(BATCH_BYTES + 4096),
        statements: Vec::new(),
        bound: post_data.pool().bound(),
    };
    while let Some(item) = items.recv().await {
        match item {
            Load::Sql(statement) => {
                line = statement.line;
                match post_data.route(statement) {
                    Route::Job(job) => {
                        post_data_started.get_or_insert_with(Instant::now);
                        batch.flush(client).await?;
                        post_data.submit(job).await?;
                    }
                    Route::Setting(s) => batch.add(client, &s.text, s.line).await?,
                    Route::InOrder(s) => {
                        post_data.finish().await?;
                        batch.add(client, &s.text, s.line).await?;
                    }
                }
            }
            Load::Ask { line: at, ask } => {
                line = at;
                post_data.finish().await?;
                batch.flush(client).await?;
                ask(client.clone())
                    .await
                    .map_err(|message| LoadError::Statement { line, message })?;
            }
            Load::CopyStart {
                statement,
                table,
                masked,
            } => {
                line = statement.line;
                post_data.finish().await?;
                batch.flush(client).await?;
                progress.set_message(&table.as_dumped());
                // The COPY's transaction is the loader's, not one the dump left open.
                outside_transaction(client, line).await?;
                let trigger = has_trigger(client, &statement.copy_table_sql())
                    .await
                    .map_err(|message| LoadError::Copy {
                        table: table.clone(),
                        line,
                        message,
                    })?;
                if trigger {
                    return Err(LoadError::Trigger { table, line });
                }
                let copied = copy::copy(
                    client,
                    post_data.pool(),
                    &mut items,
                    (&statement, &table),
                    masked,
                )
                .await?;
                *loaded.rows.entry(table.clone()).or_insert(0) += copied.rows;
                loaded.xids.entry(table).or_default().extend(copied.xids);
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
    loaded.post_data_seconds = post_data_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(loaded)
}

/// Whether `table` (as the COPY spells it for SQL, resolved as the COPY is) or one of its
/// partitions, where its rows go, has a trigger of the dump's: one created before the data
/// could rewrite every masked row as it is inserted. Our SQL names pg_catalog's operators and
/// types: the dump may have set search_path.
async fn has_trigger(client: &Client, table: &str) -> Result<bool, ServerMessage> {
    let count: i64 = client
        .query_one(
            "WITH target AS (SELECT $1::pg_catalog.text::pg_catalog.regclass AS oid)
             SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger
             WHERE tgrelid OPERATOR(pg_catalog.=) ANY (
                 SELECT t.relid FROM target, pg_catalog.pg_partition_tree(target.oid) t
                 UNION ALL SELECT oid FROM target)
             AND NOT tgisinternal",
            &[&table],
        )
        .await?
        .get(0);
    Ok(count > 0)
}
