//! Streams a snapshot from the bucket into a database, with no temporary file and bounded
//! memory. Three stages overlap, joined by bounded channels:
//!
//! 1. download (async task): S3 GET, MD5 of the raw bytes (checked against the `.md5`
//!    sidecar at the end of the stream), progress;
//! 2. decode (a blocking thread): zstd/gzip/plain decoding, the psql-compatible
//!    [`lexer`], the [`filter`];
//! 3. consume (the caller's task): the [`loader`] for a restore (its post-data statements
//!    on a pool of [`session`]s, see [`postdata`]), a counter for a plan.
//!
//! When a stage fails, its neighbours see their channel close and stop; the error reported
//! is the stage's own, not the closed channel it caused downstream or upstream.

pub mod filter;
pub mod lexer;
pub mod loader;
pub mod postdata;
pub mod session;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::database::DbError;
use crate::progress::Progress;
use crate::snapshot::{Compression, Snapshot, parse_sidecar};
use crate::store::{SourceBucket, StoreError};
use filter::{Action, Filter, Refusal};
use lexer::{Item, LexError, Lexer};
pub use loader::Load;
use loader::LoadError;
use postdata::PostData;
use session::Sessions;

/// Chunks in flight between stages; with download chunks and COPY chunks of at most a few
/// hundred KiB this bounds memory (a deeper download buffer measured no faster, and bigger).
const CHANNEL_DEPTH: usize = 16;
const SIDECAR_LIMIT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("downloading the snapshot: {0}")]
    Download(StoreError),
    #[error("the checksum sidecar {key} is not \"<32 hex digits>  <file name>\"")]
    BadSidecar { key: String },
    #[error(
        "checksum mismatch for {name}: the .md5 sidecar says {expected}, the downloaded bytes \
         hash to {actual}; the snapshot is corrupt or incomplete"
    )]
    Checksum {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("decompressing {name} ({compression:?}): {message}")]
    Decode {
        name: String,
        compression: Compression,
        message: String,
    },
    #[error("{0}")]
    Syntax(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Session(#[from] DbError),
}

/// What streaming a snapshot through found (and, for a restore, loaded).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Streamed {
    pub bytes_downloaded: u64,
    /// Decompressed SQL bytes.
    pub bytes_sql: u64,
    /// Whether an `.md5` sidecar existed and matched.
    pub checksum_verified: bool,
    /// Rows per table (as the COPY statement names it).
    pub rows: BTreeMap<String, u64>,
    /// Statements and meta-commands dropped or rewritten by the filter, by reason.
    pub filtered: BTreeMap<String, u64>,
}

/// Why a stage stopped.
enum Stop<E> {
    /// It failed: this is the cause.
    Failed(E),
    /// A neighbour went away; that neighbour has the cause.
    Closed,
}

/// Restores `snapshot` into the scratch database `sessions` open.
pub async fn restore(
    bucket: &SourceBucket,
    snapshot: &Snapshot,
    filter: Filter,
    sessions: &Sessions,
    progress: Arc<Progress>,
) -> Result<Streamed, RestoreError> {
    let client = sessions.open().await?;
    let consume_progress = progress.clone();
    stream(bucket, snapshot, filter, progress, |items| async move {
        let mut post_data = PostData::new(sessions, &consume_progress);
        loader::load(&client, items, &consume_progress, &mut post_data).await
    })
    .await
}

/// Streams `snapshot` through checksum, decoding and the filter without loading anything:
/// the rows per table come from the COPY blocks.
pub async fn plan(
    bucket: &SourceBucket,
    snapshot: &Snapshot,
    filter: Filter,
    progress: Arc<Progress>,
) -> Result<Streamed, RestoreError> {
    stream(bucket, snapshot, filter, progress, |mut items| async move {
        let mut rows = BTreeMap::new();
        let mut table = String::new();
        while let Some(item) = items.recv().await {
            match item {
                Load::CopyStart { table: t, .. } => table = t,
                Load::CopyEnd { rows: n } => *rows.entry(table.clone()).or_insert(0) += n,
                Load::Sql { .. } | Load::CopyData(_) => {}
            }
        }
        Ok(rows)
    })
    .await
}

async fn stream<F, Fut>(
    bucket: &SourceBucket,
    snapshot: &Snapshot,
    filter: Filter,
    progress: Arc<Progress>,
    consume: F,
) -> Result<Streamed, RestoreError>
where
    F: FnOnce(mpsc::Receiver<Load>) -> Fut,
    Fut: Future<Output = Result<BTreeMap<String, u64>, LoadError>>,
{
    let expected = match &snapshot.checksum_key {
        Some(key) => {
            let text = bucket
                .get_small(key, SIDECAR_LIMIT)
                .await
                .map_err(RestoreError::Download)?;
            Some(
                parse_sidecar(&text)
                    .ok_or_else(|| RestoreError::BadSidecar { key: key.clone() })?,
            )
        }
        None => None,
    };
    let body = bucket
        .get(&snapshot.key)
        .await
        .map_err(RestoreError::Download)?;

    let (raw_tx, raw_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (load_tx, load_rx) = mpsc::channel(CHANNEL_DEPTH);
    let download = AbortOnDrop(tokio::spawn(download(
        body,
        raw_tx,
        expected,
        snapshot.clone(),
        (bucket.name().to_owned(), bucket.endpoint().to_owned()),
        progress,
    )));
    let name = snapshot.name.clone();
    let compression = snapshot.compression;
    let decode = AbortOnDrop(tokio::task::spawn_blocking(move || {
        decode(ChannelReader::new(raw_rx), compression, &filter, &load_tx)
    }));
    let consumed = consume(load_rx).await;
    let decoded = decode.join().await;
    let downloaded = download.join().await;

    let (bytes_downloaded, checksum_verified) = match downloaded {
        Ok(d) => d,
        Err(Stop::Failed(e)) => return Err(e),
        Err(Stop::Closed) => (0, false),
    };
    let (bytes_sql, filtered) = match decoded {
        Ok(d) => d,
        Err(Stop::Failed(DecodeError::Input(message))) => {
            return Err(RestoreError::Decode {
                name,
                compression,
                message,
            });
        }
        Err(Stop::Failed(DecodeError::Syntax(message))) => {
            return Err(RestoreError::Syntax(message));
        }
        Err(Stop::Failed(DecodeError::Refused(r))) => return Err(r.into()),
        Err(Stop::Closed) => (0, BTreeMap::new()),
    };
    let rows = consumed?;
    Ok(Streamed {
        bytes_downloaded,
        bytes_sql,
        checksum_verified,
        rows,
        filtered,
    })
}

/// Aborts the task when the restore is dropped (cancelled).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T, E> AbortOnDrop<Result<T, Stop<E>>> {
    async fn join(mut self) -> Result<T, Stop<E>> {
        match (&mut self.0).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Stop::Closed),
        }
    }
}

async fn download(
    mut body: aws_sdk_s3::primitives::ByteStream,
    out: mpsc::Sender<std::io::Result<Bytes>>,
    expected: Option<[u8; 16]>,
    snapshot: Snapshot,
    (bucket, endpoint): (String, String),
    progress: Arc<Progress>,
) -> Result<(u64, bool), Stop<RestoreError>> {
    let mut md5 = Md5::new();
    let mut bytes = 0u64;
    loop {
        let chunk = match body.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                let message = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                let _ = out
                    .send(Err(std::io::Error::other("download failed")))
                    .await;
                return Err(Stop::Failed(RestoreError::Download(StoreError {
                    kind: crate::store::ErrorKind::Temporary,
                    what: format!("reading {:?} after {bytes} bytes", snapshot.key),
                    bucket,
                    endpoint,
                    message,
                })));
            }
        };
        md5.update(&chunk);
        bytes += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
        if out.send(Ok(chunk)).await.is_err() {
            return Err(Stop::Closed);
        }
    }
    let actual: [u8; 16] = md5.finalize().into();
    if let Some(expected) = expected
        && expected != actual
    {
        let _ = out
            .send(Err(std::io::Error::other("checksum mismatch")))
            .await;
        return Err(Stop::Failed(RestoreError::Checksum {
            name: snapshot.name,
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        }));
    }
    Ok((bytes, expected.is_some()))
}

enum DecodeError {
    Input(String),
    Syntax(String),
    Refused(Refusal),
}

/// Decodes, splits and filters on a blocking thread; returns the SQL bytes read and the
/// filter's counts.
fn decode(
    input: ChannelReader,
    compression: Compression,
    filter: &Filter,
    out: &mpsc::Sender<Load>,
) -> Result<(u64, BTreeMap<String, u64>), Stop<DecodeError>> {
    let upstream_failed = input.failed.clone();
    let decoder: Box<dyn Read + Send> = match compression {
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input)
                .map_err(|e| Stop::Failed(DecodeError::Input(e.to_string())))?,
        ),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::None => Box::new(input),
    };
    let counted = Counted {
        inner: decoder,
        bytes: 0,
    };
    let mut lexer = Lexer::new(counted);
    let mut filtered = BTreeMap::new();
    let mut count = |reason: &str| *filtered.entry(reason.to_owned()).or_insert(0u64) += 1;
    let send = |load: Load| out.blocking_send(load).map_err(|_| Stop::Closed);
    loop {
        let item = match lexer.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) if upstream_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err(Stop::Closed);
            }
            Err(LexError::Input(e)) => return Err(Stop::Failed(DecodeError::Input(e.to_string()))),
            Err(e @ LexError::Syntax { .. }) => {
                return Err(Stop::Failed(DecodeError::Syntax(e.to_string())));
            }
        };
        match item {
            Item::Meta { command, line } => match filter.meta(&command, line) {
                Ok(Action::Drop(reason)) => count(reason),
                Ok(_) => unreachable!("meta-commands are dropped or refused"),
                Err(r) => return Err(Stop::Failed(DecodeError::Refused(r))),
            },
            Item::Statement(s) => {
                let text = match filter.statement(&s) {
                    Ok(Action::Keep) => s.text.clone(),
                    Ok(Action::Rewrite(text, reason)) => {
                        count(reason);
                        text
                    }
                    Ok(Action::Drop(reason)) => {
                        count(reason);
                        continue;
                    }
                    Err(r) => return Err(Stop::Failed(DecodeError::Refused(r))),
                };
                if s.is_copy_from_stdin() {
                    send(Load::CopyStart {
                        statement: text,
                        line: s.line,
                        table: s.copy_table(),
                    })?;
                } else {
                    send(Load::Sql { text, line: s.line })?;
                }
            }
            Item::CopyData(data) => send(Load::CopyData(data))?,
            Item::CopyEnd { rows } => send(Load::CopyEnd { rows })?,
        }
    }
    Ok((lexer.into_inner().bytes, filtered))
}

/// Reads what the download task sends; an error it sends ends the stream with that error.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
    /// Set when the download sent an error: the decoder's failure is then its consequence.
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Bytes::new(),
            failed: Default::default(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    self.failed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Counts the decompressed bytes.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.bytes += n as u64;
        Ok(n)
    }
}
