//! Streams a snapshot from the bucket into a database, with no temporary file and bounded
//! memory. Three stages overlap, joined by bounded channels:
//!
//! 1. download (async task): S3 GET, the checksum of the raw bytes (checked against the
//!    `.md5` or `.sha1` sidecar at the end of the stream), progress;
//! 2. decode (a blocking thread): [`decode`] (decryption, decompression), the
//!    psql-compatible [`lexer`] (splitting the dump into [`statement`]s), the [`filter`],
//!    what the restore role may run ([`privileges`]), and a [`StreamStage`] (for a restore
//!    the masking: no raw personal value leaves this thread);
//! 3. consume (the caller's task): the [`loader`] for a restore (its post-data statements
//!    on a pool of [`session`]s, see [`postdata`]), a counter for a plan.
//!
//! When a stage fails, its neighbours see their channel close and stop; the error reported
//! is the stage's own, not the closed channel it caused downstream or upstream.

mod copy;
pub mod decode;
pub mod filter;
pub mod lexer;
mod load;
mod load_error;
pub mod loader;
pub mod postdata;
pub mod privileges;
mod readers;
pub mod session;
pub mod statement;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;

use crate::config::DecryptConfig;
use crate::database::DbError;
use crate::database::sql::ServerMessage;
use crate::progress::Progress;
use crate::snapshot::Snapshot;
use crate::store::{SourceBucket, StoreError};
use crate::table::TableName;
use decode::{Checksum, DecodeError, Secrets};
use filter::{Action, Filter, Refusal};
use lexer::{Item, LexError, Lexer};
pub use load::Load;
use load_error::LoadError;
use loader::Loaded;
use postdata::PostData;
use privileges::{Forbidden, Privileges, Verdict};
use readers::{ChannelReader, Counted};
use session::Sessions;
use statement::Statement;

/// Chunks in flight between stages; with download chunks and COPY chunks of at most a few
/// hundred KiB this bounds memory (a deeper download buffer measured no faster, and bigger).
const CHANNEL_DEPTH: usize = 16;
const SIDECAR_LIMIT: usize = 4096;
/// Enough of a snapshot's first bytes to decrypt and decompress its start.
const PROBE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("downloading the snapshot: {0}")]
    Download(StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Syntax(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the restore took longer than restore.timeout ({0})")]
    TimedOut(String),
    #[error(transparent)]
    Stage(StageError),
    #[error(transparent)]
    Session(#[from] DbError),
}

/// What streaming a snapshot through found (and, for a restore, loaded).
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    pub bytes_downloaded: u64,
    /// Decompressed SQL bytes.
    pub bytes_sql: u64,
    /// Whether an `.md5` or `.sha1` sidecar existed and matched.
    pub checksum_verified: bool,
    /// Rows per table.
    pub rows: BTreeMap<TableName, u64>,
    /// The xids of each table's COPY transactions: what verification expects every masked
    /// row's `xmin` to be.
    pub xids: BTreeMap<TableName, Vec<String>>,
    /// How long the post-data section took (the rest of the restore is its data section).
    pub post_data_seconds: f64,
    /// Statements and meta-commands dropped or rewritten by the filter, by reason.
    pub filtered: BTreeMap<String, u64>,
    /// The statements the restore role may not run (listed by a plan).
    pub forbidden: Vec<Forbidden>,
}

/// Why the decode stage failed: [`RestoreError`]'s causes that stage has (its loader errors
/// are large).
enum DecodeFailure {
    Decode(DecodeError),
    Syntax(String),
    Refused(Refusal),
    Forbidden(Forbidden),
    Stage(StageError),
}

impl From<DecodeFailure> for RestoreError {
    fn from(failure: DecodeFailure) -> RestoreError {
        match failure {
            DecodeFailure::Decode(e) => e.into(),
            DecodeFailure::Syntax(message) => RestoreError::Syntax(message),
            DecodeFailure::Refused(r) => r.into(),
            DecodeFailure::Forbidden(f) => f.into(),
            DecodeFailure::Stage(e) => RestoreError::Stage(e),
        }
    }
}

/// Why a stage stopped.
enum Stop<E> {
    /// It failed: this is the cause.
    Failed(E),
    /// A neighbour went away; that neighbour has the cause.
    Closed,
}

/// Where and how to read a snapshot: its bucket and `[snapshot.decrypt]`.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub bucket: &'a SourceBucket,
    pub decrypt: Option<&'a DecryptConfig>,
}

/// The stage between the filter and the loader: it sees everything that passes and may
/// rewrite or drop it: the masking of a restore (`crate::mask`), or the survey of `plan` and
/// `rules` (`crate::survey`), which only reads. Both build on this module. A stage may ask
/// the scratch database a [`Question`] before a statement or the end of the dump: the loader
/// asks it on its own session once everything before it has run, and the stage waits for
/// the answer (a plan has no database: its stage asks nothing).
pub trait StreamStage: Send + 'static {
    /// What the stage learns from the scratch database.
    type Answer: Send + 'static;
    /// The question to ask before `at`, if any.
    fn question(&mut self, _at: At<'_>) -> Option<Question<Self::Answer>> {
        None
    }
    /// Sees every statement the filter kept, with the answer to the question asked before
    /// it; [`Action::Drop`] drops it.
    fn statement(
        &mut self,
        s: &Statement,
        answer: Option<Self::Answer>,
    ) -> Result<Action, StageError>;
    /// The table the COPY whose statement it just saw loads into.
    fn copy_table(&self, s: &Statement) -> TableName {
        s.copy_table()
    }
    /// A chunk of COPY data: passed on (maybe rewritten), or `None` to hold it back.
    fn copy_data(&mut self, data: Bytes) -> Result<Option<Bytes>, StageError>;
    /// The end of a COPY: what is left of its data, if anything.
    fn copy_end(&mut self) -> Result<Option<Bytes>, StageError>;
    /// Whether the COPY whose statement it just saw has its rows rewritten.
    fn masks_copy(&self) -> bool {
        false
    }
    /// The end of the dump, with the answer to the question asked before it.
    fn end(&mut self, _answer: Option<Self::Answer>) -> Result<(), StageError> {
        Ok(())
    }
}

/// Where in the dump a stage may ask the database something.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Statement(&'a Statement),
    End,
}

/// A question for the scratch database, asked on the loader's session.
pub type Question<A> = Box<
    dyn FnOnce(Arc<tokio_postgres::Client>) -> BoxFuture<'static, Result<A, ServerMessage>> + Send,
>;

pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// Restores `snapshot` through `stage` into the scratch database `sessions` open (as the
/// restore role), stopping at a statement `privileges` forbids; returns the stage after the
/// last item.
pub async fn restore<R: StreamStage>(
    source: Source<'_>,
    snapshot: &Snapshot,
    (filter, privileges): (Filter, Privileges),
    stage: R,
    sessions: &Sessions<'_>,
    progress: Arc<Progress>,
) -> Result<(Streamed, R), RestoreError> {
    let client = Arc::new(sessions.open().await?);
    let consume_progress = progress.clone();
    stream(
        source,
        snapshot,
        (filter, Some(privileges)),
        stage,
        progress,
        |items| async move {
            let mut post_data = PostData::new(sessions, &consume_progress);
            loader::load(&client, items, &consume_progress, &mut post_data).await
        },
    )
    .await
}

/// Streams `snapshot` through checksum, decoding, the filter, `privileges` when the staging
/// server's are known (listing what it forbids) and `stage` (which reads, for a plan: its
/// output goes nowhere) without loading anything: the rows per table come from the COPY
/// blocks. Returns the stage after the last item.
pub async fn inspect<R: StreamStage>(
    source: Source<'_>,
    snapshot: &Snapshot,
    judges: (Filter, Option<Privileges>),
    stage: R,
    progress: Arc<Progress>,
) -> Result<(Streamed, R), RestoreError> {
    stream(
        source,
        snapshot,
        judges,
        stage,
        progress,
        |mut items| async move {
            let mut planned = Loaded::default();
            let mut table = None;
            while let Some(item) = items.recv().await {
                match item {
                    Load::CopyStart { table: t, .. } => table = Some(t),
                    Load::CopyEnd { rows: n } => {
                        let table = table.take().expect("a COPY ends after it starts");
                        *planned.rows.entry(table).or_insert(0) += n
                    }
                    Load::Sql(_) | Load::CopyData(_) => {}
                    Load::Ask { .. } => {
                        unreachable!("a stage streamed without a database asks it nothing")
                    }
                }
            }
            Ok(planned)
        },
    )
    .await
}

async fn stream<R: StreamStage, F, Fut>(
    Source { bucket, decrypt }: Source<'_>,
    snapshot: &Snapshot,
    judges: (Filter, Option<Privileges>),
    stage: R,
    progress: Arc<Progress>,
    consume: F,
) -> Result<(Streamed, R), RestoreError>
where
    F: FnOnce(mpsc::Receiver<Load>) -> Fut,
    Fut: Future<Output = Result<Loaded, LoadError>>,
{
    let secrets = secrets(snapshot, decrypt)?;
    let checksum = match &snapshot.checksum {
        Some(sidecar) => {
            let text = bucket
                .get_small(&sidecar.key, SIDECAR_LIMIT)
                .await
                .map_err(RestoreError::Download)?;
            Some(Checksum::from_sidecar(
                sidecar.kind,
                &sidecar.key,
                &snapshot.name,
                &text,
            )?)
        }
        None => None,
    };
    let body = bucket
        .get(&snapshot.key)
        .await
        .map_err(RestoreError::Download)?;

    let (raw_tx, raw_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (load_tx, load_rx) = mpsc::channel(CHANNEL_DEPTH);
    // Aborted when the restore is dropped (cancelled).
    let download = AbortOnDropHandle::new(tokio::spawn(download(
        body,
        raw_tx,
        checksum,
        snapshot.clone(),
        (bucket.name().to_owned(), bucket.endpoint().to_owned()),
        progress,
    )));
    let decoded_snapshot = snapshot.clone();
    let decode = AbortOnDropHandle::new(tokio::task::spawn_blocking(move || {
        decode(
            ChannelReader::new(raw_rx),
            &decoded_snapshot,
            secrets.as_ref(),
            judges,
            stage,
            &load_tx,
        )
    }));
    let consumed = consume(load_rx).await;
    let decoded = joined(decode).await;
    let downloaded = joined(download).await;

    let (bytes_downloaded, checksum_verified) = match downloaded {
        Ok(d) => d,
        Err(Stop::Failed(e)) => return Err(e),
        Err(Stop::Closed) => (0, false),
    };
    let Decoded {
        bytes_sql,
        filtered,
        forbidden,
        stage,
    } = match decoded {
        Ok(d) => d,
        Err(Stop::Failed(e)) => return Err(e.into()),
        Err(Stop::Closed) => return Err(consumed.err().unwrap_or(LoadError::InputEnded).into()),
    };
    let Loaded {
        rows,
        xids,
        post_data_seconds,
    } = consumed?;
    let streamed = Streamed {
        bytes_downloaded,
        bytes_sql,
        checksum_verified,
        rows,
        xids,
        post_data_seconds,
        filtered,
        forbidden,
    };
    Ok((streamed, stage))
}

/// A stage's result once its task has ended; a stage aborted or gone counts as closed.
async fn joined<T, E>(task: AbortOnDropHandle<Result<T, Stop<E>>>) -> Result<T, Stop<E>> {
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Stop::Closed),
    }
}

async fn download(
    mut body: aws_sdk_s3::primitives::ByteStream,
    out: mpsc::Sender<std::io::Result<Bytes>>,
    mut checksum: Option<Checksum>,
    snapshot: Snapshot,
    (bucket, endpoint): (String, String),
    progress: Arc<Progress>,
) -> Result<(u64, bool), Stop<RestoreError>> {
    let mut bytes = 0u64;
    loop {
        let chunk = match body.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                let _ = out
                    .send(Err(std::io::Error::other("download failed")))
                    .await;
                return Err(Stop::Failed(RestoreError::Download(read_failed(
                    e,
                    &snapshot.key,
                    bytes,
                    (bucket, endpoint),
                ))));
            }
        };
        if let Some(checksum) = &mut checksum {
            checksum.update(&chunk);
        }
        bytes += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
        if out.send(Ok(chunk)).await.is_err() {
            return Err(Stop::Closed);
        }
    }
    let verified = checksum.is_some();
    if let Some(Err(e)) = checksum.map(|c| c.verify(&snapshot.name)) {
        let _ = out
            .send(Err(std::io::Error::other("checksum mismatch")))
            .await;
        return Err(Stop::Failed(e.into()));
    }
    Ok((bytes, verified))
}

/// The failure to read an object's body after `bytes` bytes.
fn read_failed(
    e: impl std::error::Error + 'static,
    key: &str,
    bytes: u64,
    (bucket, endpoint): (String, String),
) -> StoreError {
    StoreError {
        kind: crate::store::ErrorKind::Temporary,
        what: format!("reading {key:?} after {bytes} bytes"),
        bucket,
        endpoint,
        message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
    }
}

/// Opens the first bytes of `snapshot` as a restore would (decryption, decompression, the
/// checks of what they are) and loads nothing: `check` proves the secret opens it, and reads
/// what the dump's start creates. Returns the statements before its first COPY that those
/// bytes hold whole (pg_dump writes schemas and extensions first).
pub async fn probe(
    source: Source<'_>,
    snapshot: &Snapshot,
) -> Result<Vec<Statement>, RestoreError> {
    let secrets = secrets(snapshot, source.decrypt)?;
    let bucket = source.bucket;
    let mut body = bucket
        .get(&snapshot.key)
        .await
        .map_err(RestoreError::Download)?;
    let mut head = Vec::new();
    while head.len() < PROBE_BYTES {
        match body.try_next().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                let place = (bucket.name().to_owned(), bucket.endpoint().to_owned());
                let failed = read_failed(e, &snapshot.key, head.len() as u64, place);
                return Err(RestoreError::Download(failed));
            }
        }
    }
    let snapshot = snapshot.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let sql = decode::sql(std::io::Cursor::new(head), &snapshot, secrets.as_ref())?;
        let mut lexer = Lexer::new(sql.sql);
        let mut statements = Vec::new();
        // The head ends anywhere: the lexer's error there ends what it holds whole.
        while let Ok(Some(item)) = lexer.next_item() {
            match item {
                Item::Statement(s) if s.is_copy_from_stdin() => break,
                Item::Statement(s) => statements.push(s),
                Item::Meta { .. } | Item::CopyData(_) | Item::CopyEnd { .. } => {}
            }
        }
        Ok::<_, DecodeError>(statements)
    })
    .await
    .expect("opening a snapshot does not panic");
    Ok(opened?)
}

/// Reads `[snapshot.decrypt]`'s secrets when `snapshot` needs them.
fn secrets(
    snapshot: &Snapshot,
    decrypt: Option<&DecryptConfig>,
) -> Result<Option<Secrets>, DecodeError> {
    match decrypt {
        Some(cfg) if snapshot.encrypted => Secrets::load(cfg).map(Some),
        _ => Ok(None),
    }
}

/// What the decode stage read and did: SQL bytes, the filter's counts, the statements the
/// restore role may not run (listed), the stage.
struct Decoded<R> {
    bytes_sql: u64,
    filtered: BTreeMap<String, u64>,
    forbidden: Vec<Forbidden>,
    stage: R,
}

/// Decodes, splits, filters and rewrites on a blocking thread.
fn decode<R: StreamStage>(
    input: ChannelReader,
    snapshot: &Snapshot,
    secrets: Option<&Secrets>,
    judges: (Filter, Option<Privileges>),
    stage: R,
    out: &mpsc::Sender<Load>,
) -> Result<Decoded<R>, Stop<DecodeFailure>> {
    let upstream_failed = input.failed.clone();
    // A decoder's failure after the download failed is the download's consequence.
    let failed = |e: DecodeFailure| {
        if upstream_failed.load(std::sync::atomic::Ordering::Relaxed) {
            Stop::Closed
        } else {
            Stop::Failed(e)
        }
    };
    let opened =
        decode::sql(input, snapshot, secrets).map_err(|e| failed(DecodeFailure::Decode(e)))?;
    // Garbage from a damaged file or a wrong key can fail any later step, ours or the
    // server's (which closes the stream): the decryption's own verdict, read to its end,
    // comes first.
    read_items(opened.sql, snapshot, judges, stage, out, &failed).map_err(|stop| {
        match opened.decrypted.and_then(|d| d.failure()) {
            Some(e) => Stop::Failed(DecodeFailure::Decode(e)),
            None => stop,
        }
    })
}

/// Splits, filters and rewrites the decoded SQL and hands it on.
fn read_items<R: StreamStage>(
    sql: Box<dyn Read>,
    snapshot: &Snapshot,
    (mut filter, privileges): (Filter, Option<Privileges>),
    mut stage: R,
    out: &mpsc::Sender<Load>,
    failed: &dyn Fn(DecodeFailure) -> Stop<DecodeFailure>,
) -> Result<Decoded<R>, Stop<DecodeFailure>> {
    let counted = Counted {
        inner: sql,
        bytes: 0,
    };
    let mut lexer = Lexer::new(counted);
    let mut filtered = BTreeMap::new();
    let mut count = |reason: &str| *filtered.entry(reason.to_owned()).or_insert(0u64) += 1;
    let mut forbidden = Vec::new();
    // A COPY dropped with its data.
    let mut skipping_copy = false;
    let send = |load: Load| out.blocking_send(load).map_err(|_| Stop::Closed);
    let stage_failed = |e: StageError| Stop::Failed(DecodeFailure::Stage(e));
    loop {
        let item = match lexer.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(LexError::Input(e)) => {
                let cause = DecodeError::from_io(e, &snapshot.name);
                return Err(failed(DecodeFailure::Decode(cause)));
            }
            Err(e @ LexError::Syntax { .. }) => {
                return Err(failed(DecodeFailure::Syntax(e.to_string())));
            }
        };
        match item {
            Item::Meta { command, line } => match filter.meta(&command, line) {
                Ok(Action::Drop(reason)) => count(reason),
                Ok(_) => unreachable!("meta-commands are dropped or refused"),
                Err(r) => return Err(Stop::Failed(DecodeFailure::Refused(r))),
            },
            Item::Statement(s) => {
                match filter.statement(&s) {
                    Ok(Action::Keep) => {}
                    Ok(Action::Drop(reason)) => {
                        count(reason);
                        continue;
                    }
                    Err(r) => return Err(Stop::Failed(DecodeFailure::Refused(r))),
                }
                match privileges.as_ref().map(|p| (p.statement(&s), p.lists)) {
                    None | Some((Verdict::Run, _)) => {}
                    Some((Verdict::Drop(reason), _)) => {
                        count(reason);
                        skipping_copy = s.is_copy_from_stdin();
                        continue;
                    }
                    Some((Verdict::Forbidden(f), true)) => forbidden.push(f),
                    Some((Verdict::Forbidden(f), false)) => {
                        return Err(Stop::Failed(DecodeFailure::Forbidden(f)));
                    }
                }
                let answer = asked(&mut stage, At::Statement(&s), s.line, out)?;
                if let Action::Drop(reason) = stage.statement(&s, answer).map_err(stage_failed)? {
                    count(reason);
                    continue;
                }
                if s.is_copy_from_stdin() {
                    send(Load::CopyStart {
                        table: stage.copy_table(&s),
                        masked: stage.masks_copy(),
                        statement: s,
                    })?;
                } else {
                    send(Load::Sql(s))?;
                }
            }
            Item::CopyData(_) if skipping_copy => {}
            Item::CopyEnd { .. } if skipping_copy => skipping_copy = false,
            Item::CopyData(data) => {
                if let Some(data) = stage.copy_data(data).map_err(stage_failed)? {
                    send(Load::CopyData(data))?;
                }
            }
            Item::CopyEnd { rows } => {
                if let Some(tail) = stage.copy_end().map_err(stage_failed)? {
                    send(Load::CopyData(tail))?;
                }
                send(Load::CopyEnd { rows })?;
            }
        }
    }
    filter
        .finish()
        .map_err(|r| Stop::Failed(DecodeFailure::Refused(r)))?;
    let answer = asked(&mut stage, At::End, lexer.line(), out)?;
    stage.end(answer).map_err(stage_failed)?;
    Ok(Decoded {
        bytes_sql: lexer.into_inner().bytes,
        filtered,
        forbidden,
        stage,
    })
}

/// Has the loader ask the stage's question before `at` (dump line `line`), if it has one,
/// and waits for the answer; the loader gone, its failure is the cause.
fn asked<R: StreamStage>(
    stage: &mut R,
    at: At<'_>,
    line: u64,
    out: &mpsc::Sender<Load>,
) -> Result<Option<R::Answer>, Stop<DecodeFailure>> {
    let Some(question) = stage.question(at) else {
        return Ok(None);
    };
    let (reply, answer) = oneshot::channel();
    let ask: load::Ask = Box::new(move |client| {
        Box::pin(async move {
            let answer = question(client).await?;
            // The decode stage waits for it; gone, it failed.
            let _ = reply.send(answer);
            Ok(())
        })
    });
    out.blocking_send(Load::Ask { line, ask })
        .map_err(|_| Stop::Closed)?;
    answer.blocking_recv().map(Some).map_err(|_| Stop::Closed)
}
