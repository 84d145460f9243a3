//! An HTTP/1.1 proxy in front of the S3 server, for the media tests and benchmarks. It adds
//! a delay to every request (the latency of a real object store), can fail a share of them
//! the way a throttled store does (503 SlowDown, 429, connection resets), and counts the
//! requests it sees by S3 operation.
//!
//! Requests are framed (head, then a Content-Length or chunked body) so each one can be
//! delayed, failed or counted; responses are passed through as bytes. Clients do not
//! pipeline, so a response has been read before the next request arrives.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyOptions {
    /// Added before each request is forwarded.
    pub delay: Duration,
    /// Share of requests failed instead of forwarded, in percent.
    pub fault_percent: u32,
    /// Cuts the connection of the first GetObject whose key ends with `.0` after `.1` bytes
    /// of its response: a stream that dies mid-object.
    pub cut_object: Option<(&'static str, u64)>,
}

#[derive(Default)]
struct Stats {
    requests: Mutex<BTreeMap<String, u64>>,
    faults: AtomicU64,
    /// Whether `cut_object` has been used up.
    cut_done: std::sync::atomic::AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    stats: Arc<Stats>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (a loopback port).
    pub async fn start(upstream: u16, options: ProxyOptions) -> Proxy {
        Self::listen(0, upstream, options).await
    }

    pub async fn listen(port: u16, upstream: u16, options: ProxyOptions) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stats = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, options, &stats).await;
                });
            }
        });
        Proxy {
            port,
            stats,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen so far by S3 operation (failed ones included).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.stats.requests.lock().unwrap().clone()
    }

    pub fn faults(&self) -> u64 {
        self.stats.faults.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

enum Fault {
    SlowDown,
    TooManyRequests,
    Reset,
}

async fn serve(
    client: TcpStream,
    upstream: u16,
    options: ProxyOptions,
    stats: &Stats,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
    // Response bytes left before the connection is cut, when one is to be.
    let cut_after = Arc::new(Mutex::new(None::<u64>));
    let responses = {
        let (client_write, cut_after) = (client_write.clone(), cut_after.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    return client_write.lock().await.shutdown().await;
                }
                let left = *cut_after.lock().unwrap();
                let mut client = client_write.lock().await;
                match left {
                    Some(left) if (n as u64) >= left => {
                        client.write_all(&buf[..left as usize]).await?;
                        client.as_ref().set_zero_linger()?;
                        return Err(io::Error::other("injected cut mid-object"));
                    }
                    Some(left) => *cut_after.lock().unwrap() = Some(left - n as u64),
                    None => {}
                }
                client.write_all(&buf[..n]).await?;
            }
        })
    };
    let mut client_read = BufReader::new(client_read);
    let outcome = async {
        loop {
            let Some(head) = read_head(&mut client_read).await? else {
                return Ok(());
            };
            let operation = operation(&head);
            *stats
                .requests
                .lock()
                .unwrap()
                .entry(operation.clone())
                .or_default() += 1;
            if !options.delay.is_zero() {
                tokio::time::sleep(options.delay).await;
            }
            if let Some((suffix, after)) = options.cut_object
                && operation == "GetObject"
                && head
                    .lines()
                    .next()
                    .unwrap_or("")
                    .split(' ')
                    .nth(1)
                    .is_some_and(|t| t.split('?').next().unwrap_or("").ends_with(suffix))
                && !stats.cut_done.swap(true, Ordering::Relaxed)
            {
                stats.faults.fetch_add(1, Ordering::Relaxed);
                *cut_after.lock().unwrap() = Some(after);
            }
            if let Some(fault) = pick_fault(options.fault_percent) {
                stats.faults.fetch_add(1, Ordering::Relaxed);
                return fail(fault, &operation, &client_write).await;
            }
            server_write.write_all(head.as_bytes()).await?;
            forward_body(&head, &mut client_read, &mut server_write).await?;
        }
    }
    .await;
    responses.abort();
    outcome
}

/// The request line and headers, through the blank line; `None` at a clean end.
async fn read_head(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let n = reader.read_line(&mut head).await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.ends_with("\r\n\r\n") {
            return Ok(Some(head));
        }
    }
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn forward_body(
    head: &str,
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
) -> io::Result<()> {
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            writer.write_all(line.as_bytes()).await?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, through the blank line.
                loop {
                    let mut trailer = String::new();
                    reader.read_line(&mut trailer).await?;
                    writer.write_all(trailer.as_bytes()).await?;
                    if trailer == "\r\n" || trailer.is_empty() {
                        return Ok(());
                    }
                }
            }
            tokio::io::copy(&mut (&mut *reader).take(size + 2), writer).await?;
        }
    }
    let length: u64 = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let copied = tokio::io::copy(&mut (&mut *reader).take(length), writer).await?;
    if copied < length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn pick_fault(percent: u32) -> Option<Fault> {
    if percent == 0 || fastrand::u32(0..100) >= percent {
        return None;
    }
    Some(match fastrand::u8(0..3) {
        0 => Fault::SlowDown,
        1 => Fault::TooManyRequests,
        _ => Fault::Reset,
    })
}

/// Answers with the fault instead of forwarding, and ends the connection.
async fn fail(
    fault: Fault,
    operation: &str,
    client: &tokio::sync::Mutex<OwnedWriteHalf>,
) -> io::Result<()> {
    let mut client = client.lock().await;
    let response = match fault {
        Fault::Reset => {
            // Nothing written: the connection is reset under the client's request.
            client.as_ref().set_zero_linger()?;
            return Err(io::Error::other("injected reset"));
        }
        Fault::SlowDown => {
            let body = if operation == "HeadObject" {
                String::new()
            } else {
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_owned()
            };
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Fault::TooManyRequests => {
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_owned()
        }
    };
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// The S3 operation a request is, from its method, query and headers.
fn operation(head: &str) -> String {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // Path-style: `/bucket` (or `/bucket/`) names the bucket, `/bucket/key` an object.
    let bucket_only = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .find('/')
        .is_none();
    let has = |param: &str| {
        query
            .split('&')
            .any(|p| p == param || p.starts_with(&format!("{param}=")))
    };
    let copy = header(head, "x-amz-copy-source").is_some();
    let name = match method {
        "GET" if has("list-type") => "ListObjectsV2",
        "GET" if bucket_only => "ListObjects",
        "GET" if has("uploadId") => "ListParts",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "PUT" if copy && has("partNumber") => "UploadPartCopy",
        "PUT" if copy => "CopyObject",
        "PUT" if has("partNumber") => "UploadPart",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        other => other,
    };
    name.to_owned()
}
