//! The readers between the stages: the download's chunks read as a byte stream by the decode
//! thread, and the decompressed bytes counted.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Reads what the download task sends; an error it sends ends the stream with that error.
#[derive(Debug)]
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
    /// Set when the download sent an error: the decoder's failure is then its consequence.
    pub(super) failed: Arc<std::sync::atomic::AtomicBool>,
}

impl ChannelReader {
    pub(super) fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> ChannelReader {
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
pub(super) struct Counted<R> {
    pub(super) inner: R,
    pub(super) bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.bytes += n as u64;
        Ok(n)
    }
}
