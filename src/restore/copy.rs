//! One table's COPY data, loaded in transactions of the loader's own whose xids verification
//! checks the masked rows against (each COPY is its transaction's first command).
//!
//! A big table's data is shared, at line boundaries, between the loader's session and up to
//! `restore.jobs - 1` of the pool's: the server parses and inserts a COPY's rows on one core,
//! and a plain dump brings one table at a time, so this is how its data section uses more
//! than one core (`pg_restore -j` can only load different tables at once). Each chunk goes to
//! the part with the shortest queue; within a part rows keep the dump's order, across parts
//! they interleave by chunks, as rows without an `ORDER BY` may come back anyway.

use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Client;

use super::load::Load;
use super::load_error::LoadError;
use super::session::{Bound, Pool, Taken, Worker};
use super::statement::Statement;
use crate::database::sql::ServerMessage;
use crate::table::TableName;

/// A table's data gains one more session per this much (up to `restore.jobs` sessions):
/// below it a second session costs more than it saves.
const SPLIT_BYTES: u64 = 4 << 20;
/// Chunks (of at most a few hundred KiB) queued for one part.
const PART_DEPTH: usize = 4;

/// What loading one table's COPY data did.
pub struct Copied {
    /// The rows the server reports.
    pub rows: u64,
    /// The 32-bit xids of its transactions, as `xmin::text` shows them.
    pub xids: Vec<String>,
}

/// One session's share of the data, as the loader sees it.
struct Part {
    queue: mpsc::Sender<Bytes>,
    rows: u64,
    /// Where each run of chunks it was given starts: its own row count then, and the table's.
    runs: Vec<(u64, u64)>,
}

/// A part's end: which part, the pool's session it ran on, its rows and its xid.
struct PartDone {
    index: usize,
    worker: Option<Worker>,
    result: Result<(u64, String), ServerMessage>,
}

/// Loads the COPY `statement` (into `table`) from `items` up to its end;
/// for a `masked` table, then checks that no code the COPY ran (a default, a CHECK, an index
/// expression) wrote or touched a row of it after the masking.
pub async fn copy(
    client: &Arc<Client>,
    pool: &mut Pool<'_>,
    items: &mut mpsc::Receiver<Load>,
    (statement, table): (&Statement, &TableName),
    masked: bool,
) -> Result<Copied, LoadError> {
    let line = statement.line;
    let failed = |message| LoadError::Copy {
        table: table.clone(),
        line,
        message,
    };
    let sql_table = statement.copy_table_sql();
    let statement: Arc<str> = statement.text.as_str().into();
    // Declared before `running`, so on an early return the parts' tasks are aborted (their
    // COPYs fail) before their queues close (which would end them as complete).
    let mut parts: Vec<Part> = Vec::new();
    let mut running = JoinSet::new();
    let bound = pool.bound();
    parts.push(start(&mut running, 0, client, None, (&statement, &bound)));
    let (mut rows, mut bytes) = (0u64, 0u64);
    // The part given the last chunk, while that chunk ended inside a line.
    let mut continuing: Option<usize> = None;
    let mut last = 0;
    loop {
        let data = match items.recv().await {
            Some(Load::CopyData(data)) => data,
            Some(Load::CopyEnd { .. }) => break,
            Some(_) => unreachable!("only data comes between a COPY's start and end"),
            None => return Err(LoadError::InputEnded),
        };
        if continuing.is_none()
            && parts.len() < pool.jobs()
            && bytes >= SPLIT_BYTES * parts.len() as u64
            && let Some(taken) = pool.take(pool.settings()).await?
        {
            let index = parts.len();
            parts.push(start(
                &mut running,
                index,
                client,
                Some(taken),
                (&statement, &bound),
            ));
        }
        let i = continuing.unwrap_or_else(|| {
            (0..parts.len())
                .max_by_key(|&i| (parts[i].queue.capacity(), i == (last + 1) % parts.len()))
                .expect("a part")
        });
        let part = &mut parts[i];
        if continuing.is_none() && (i != last || part.runs.is_empty()) {
            part.runs.push((part.rows, rows));
        }
        let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
        continuing = (data.last() != Some(&b'\n')).then_some(i);
        (rows, bytes, last) = (rows + lines, bytes + data.len() as u64, i);
        part.rows += lines;
        if part.queue.send(data).await.is_err() {
            // Its task ended early: it failed.
            break;
        }
    }
    let runs: Vec<Vec<(u64, u64)>> = parts.drain(..).map(|p| p.runs).collect();
    let mut copied = Copied {
        rows: 0,
        xids: vec![String::new(); runs.len()],
    };
    while let Some(joined) = running.join_next().await {
        let done = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let (n, xid) = done
            .result
            .map_err(|message| failed(renumbered(message, &runs[done.index])))?;
        copied.rows += n;
        copied.xids[done.index] = xid;
        if let Some(worker) = done.worker {
            pool.put(worker);
        }
    }
    if masked {
        let written = written_during(client, &sql_table).await.map_err(failed)?;
        if written > 0 {
            return Err(LoadError::WrittenDuringCopy {
                table: table.clone(),
                line,
                rows: written,
            });
        }
    }
    Ok(copied)
}

/// Starts part `index` on a session `taken` from the pool, or else on the `loader`'s: it
/// loads what its queue brings with `statement`, within `bound`.
fn start(
    running: &mut JoinSet<PartDone>,
    index: usize,
    loader: &Arc<Client>,
    taken: Option<Taken>,
    (statement, bound): (&Arc<str>, &Bound),
) -> Part {
    let (statement, bound) = (statement.clone(), bound.clone());
    let (client, worker, catch_up) = match taken {
        Some(Taken { worker, catch_up }) => (worker.client.clone(), Some(worker), catch_up),
        None => (loader.clone(), None, String::new()),
    };
    let (queue, chunks) = mpsc::channel(PART_DEPTH);
    running.spawn(async move {
        let result = bound
            .run(&client, load_part(&client, &catch_up, &statement, chunks))
            .await
            .and_then(|r| r);
        PartDone {
            index,
            worker,
            result,
        }
    });
    Part {
        queue,
        rows: 0,
        runs: Vec::new(),
    }
}

/// One COPY in a transaction of its own, fed from `chunks` until the loader closes it;
/// returns the rows the server counted and the transaction's xid. The session first runs
/// `catch_up`, the dump's settings it has not run yet.
async fn load_part(
    client: &Client,
    catch_up: &str,
    statement: &str,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<(u64, String), ServerMessage> {
    if !catch_up.is_empty() {
        client.batch_execute(catch_up).await?;
    }
    client.batch_execute("BEGIN").await?;
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    let mut sink = std::pin::pin!(sink);
    while let Some(data) = chunks.recv().await {
        sink.send(data).await?;
    }
    let rows = sink.as_mut().finish().await?;
    let txid: i64 = client
        .query_one("SELECT pg_catalog.txid_current()", &[])
        .await?
        .get(0);
    client.batch_execute("COMMIT").await?;
    Ok((rows, (txid % (1 << 32)).to_string()))
}

/// Rows of `table` (as the COPY spells it for SQL), its partitions and children, that their
/// COPYs did not write as they stand: each COPY was its transaction's first command, so its
/// rows have cmin 0 and, untouched since, xmax 0 (PostgreSQL 15: a row a function updates
/// during the COPY has a later cmin; one it then updated in a rolled-back subtransaction
/// shows a combo id as cmin, and an xmax).
/// Nothing ran on the scratch database since the COPYs committed. With row_security off, a
/// policy that would hide rows fails the query.
async fn written_during(client: &Client, table: &str) -> Result<i64, ServerMessage> {
    client
        .batch_execute("BEGIN; SET LOCAL row_security = off")
        .await?;
    let written = client
        .query_one(
            &format!(
                "SELECT pg_catalog.count(*) FROM {table}
                 WHERE cmin::pg_catalog.text OPERATOR(pg_catalog.<>) '0'
                 OR xmax::pg_catalog.text OPERATOR(pg_catalog.<>) '0'"
            ),
            &[],
        )
        .await?
        .get(0);
    client.batch_execute("COMMIT").await?;
    Ok(written)
}

/// The server numbers a COPY's lines from that COPY's start: a part's `line N` in the
/// message's context, as the table's line (whose COPY statement is at the dump line the
/// error names).
fn renumbered(mut message: ServerMessage, runs: &[(u64, u64)]) -> ServerMessage {
    let Some(context) = &message.context else {
        return message;
    };
    let Some(at) = context.find(", line ").map(|i| i + ", line ".len()) else {
        return message;
    };
    let digits = context[at..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(context.len(), |n| at + n);
    let Ok(n) = context[at..digits].parse::<u64>() else {
        return message;
    };
    let (own, table) = runs
        .iter()
        .rev()
        .find(|(own, _)| *own < n)
        .copied()
        .unwrap_or((0, 0));
    message.context = Some(format!(
        "{}{}{}",
        &context[..at],
        table + (n - own),
        &context[digits..]
    ));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parts_line_is_renumbered_as_the_tables() {
        let message = |context: &str| ServerMessage {
            context: Some(context.to_owned()),
            ..ServerMessage::plain("duplicate key")
        };
        // The part got the table's lines 1-10 and 31-40 (its own 1-10 and 11-20).
        let runs = [(0, 0), (10, 30)];
        let context = |m: ServerMessage| m.context.unwrap();
        assert_eq!(
            context(renumbered(message("COPY t, line 4"), &runs)),
            "COPY t, line 4"
        );
        assert_eq!(
            context(renumbered(
                message("COPY t, line 12, column a: \"x\""),
                &runs
            )),
            "COPY t, line 32, column a: \"x\""
        );
        assert_eq!(context(renumbered(message("COPY t"), &runs)), "COPY t");
    }
}
