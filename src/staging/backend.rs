//! The staging backend: stop and start commands (argv, a timeout, output into the log) and
//! the health URL waited for after starting.

use std::process::Stdio;
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend {what} command {program:?}: {message}")]
    Command {
        what: &'static str,
        program: String,
        message: String,
    },
    #[error("backend health URL {url} did not answer 2xx within {timeout:?}: last {last}")]
    Unhealthy {
        url: String,
        timeout: Duration,
        last: String,
    },
}

/// Runs `argv` (nothing when empty) and waits for it, killing it after `timeout`. Each line
/// it prints is logged.
pub async fn run_command(
    what: &'static str,
    argv: &[String],
    timeout: Duration,
) -> Result<(), BackendError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let error = |message: String| BackendError::Command {
        what,
        program: program.clone(),
        message,
    };
    tracing::info!(command = ?argv, "running backend {what}");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| error(format!("cannot start: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let log = |stream: &'static str, reader| async move {
        let mut lines = BufReader::new(reader).lines();
        let mut last = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(stream, "backend {what}: {line}");
            last = line;
        }
        last
    };
    let result = tokio::time::timeout(timeout, async {
        let (_, last_err, status) = tokio::join!(
            log(
                "stdout",
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>
            ),
            log("stderr", Box::new(stderr)),
            child.wait()
        );
        (last_err, status)
    })
    .await;
    match result {
        Err(_) => Err(error(format!("still running after {timeout:?}; killed"))),
        Ok((_, Err(e))) => Err(error(e.to_string())),
        Ok((_, Ok(status))) if status.success() => Ok(()),
        Ok((last, Ok(status))) => Err(error(format!("{status}; last output: {last}"))),
    }
}

/// An HTTP/1 client for `http://` and `https://` URLs, trusting the system's roots; `B` is
/// the request body.
pub type HttpClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// A new [`HttpClient`]; fails only when the system has no usable TLS roots.
pub fn http_client<B>() -> std::io::Result<HttpClient<B>>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Polls `url` until it answers 2xx, for at most `timeout`.
pub async fn wait_healthy(url: &str, timeout: Duration) -> Result<(), BackendError> {
    let unhealthy = |last: String| BackendError::Unhealthy {
        url: url.to_owned(),
        timeout,
        last,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| unhealthy(format!("{e}")))?;
    let client: HttpClient<Empty<bytes::Bytes>> =
        http_client().map_err(|e| unhealthy(format!("no TLS roots: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(5), client.get(uri.clone())).await;
        let last = match attempt {
            Ok(Ok(response)) if response.status().is_success() => {
                tracing::info!(url, "backend healthy");
                return Ok(());
            }
            Ok(Ok(response)) => format!("status {}", response.status()),
            Ok(Err(e)) => format!("error: {e}"),
            Err(_) => "request timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(unhealthy(last));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
