//! The control socket (`daemon.control_socket`): how `trigger` and `status` talk to the
//! daemon. One request per connection, one JSON object per line each way, every message
//! carrying the protocol `version`:
//!
//! ```text
//! → {"version":1,"request":"trigger","snapshot":"latest","wait":true}
//! ← {"version":1,"event":"started","run_id":"20250610T030000Z-a1b2c3"}
//! ← {"version":1,"event":"phase","run_id":"…","phase":"restore","snapshot":"pgsql_…"}   (with wait)
//! ← {"version":1,"event":"finished","report":{…the run report…}}                          (with wait)
//! ← {"version":1,"event":"busy","run_id":"…","pid":"…"}        instead of started: one is running
//! → {"version":1,"request":"status"}
//! ← {"version":1,"event":"status","status":{…}}
//! ← {"version":1,"event":"error","message":"…"}                 a request the daemon cannot serve
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast::error::RecvError;

use super::{Daemon, DaemonStatus, Started};
use crate::report::{Phase, RunReport};

pub const VERSION: u32 = 1;
/// A client that says nothing for this long is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Start a refresh of `snapshot` ("latest" or a name); with `wait`, stream it to the end.
    Trigger {
        snapshot: String,
        wait: bool,
    },
    Status,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    Started {
        run_id: String,
    },
    Phase {
        run_id: String,
        phase: Phase,
        snapshot: Option<String>,
    },
    Finished {
        report: Box<RunReport>,
    },
    /// A refresh is already running (the daemon's, or a `run` holding the lock).
    Busy {
        run_id: String,
        pid: Option<u32>,
    },
    Status {
        status: Box<DaemonStatus>,
    },
    Error {
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Message<T> {
    version: u32,
    #[serde(flatten)]
    body: T,
}

async fn send<T: Serialize>(out: &mut OwnedWriteHalf, body: T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&Message {
        version: VERSION,
        body,
    })
    .expect("serializable");
    line.push(b'\n');
    out.write_all(&line).await
}

/// Serves one connection; errors (a client that went away) only concern that client.
pub async fn serve(stream: UnixStream, daemon: Arc<Daemon>) {
    if let Err(e) = answer(stream, &daemon).await {
        tracing::debug!(error = %e, "control connection ended");
    }
}

async fn answer(stream: UnixStream, daemon: &Arc<Daemon>) -> std::io::Result<()> {
    let peer = stream.peer_cred().ok();
    let (input, mut out) = stream.into_split();
    let mut line = String::new();
    let mut input = BufReader::new(input.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, input.read_line(&mut line)).await {
        Ok(read) => read?,
        Err(_) => return Ok(()),
    };
    let request = match serde_json::from_str::<Message<serde_json::Value>>(&line) {
        Ok(m) if m.version != VERSION => Err(format!(
            "protocol version {} is not spoken here; this daemon speaks {VERSION}",
            m.version
        )),
        Ok(m) => serde_json::from_value::<Request>(m.body).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (snapshot, wait) = match request {
        Err(e) => {
            let message = format!("bad request: {e}");
            return send(&mut out, Reply::Error { message }).await;
        }
        Ok(Request::Status) => {
            let status = Box::new(daemon.status());
            return send(&mut out, Reply::Status { status }).await;
        }
        Ok(Request::Trigger { snapshot, wait }) => (snapshot, wait),
    };
    tracing::info!(
        %snapshot,
        uid = peer.map(|p| p.uid()),
        pid = peer.and_then(|p| p.pid()),
        "refresh requested on the control socket"
    );
    let selection = snapshot.parse().expect("infallible");
    let mut events = match daemon.start(selection).await {
        Err(e) => {
            let message = format!("{e:#}");
            return send(&mut out, Reply::Error { message }).await;
        }
        Ok(Started::Busy { run_id, pid }) => {
            return send(&mut out, Reply::Busy { run_id, pid }).await;
        }
        Ok(Started::Run { run_id, events }) => {
            send(&mut out, Reply::Started { run_id }).await?;
            events
        }
    };
    if !wait {
        return Ok(());
    }
    loop {
        match events.recv().await {
            Ok(reply) => {
                let last = matches!(reply, Reply::Finished { .. });
                send(&mut out, reply).await?;
                if last {
                    return Ok(());
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("talking to the daemon")]
    Io(#[from] std::io::Error),
    #[error("the daemon's answer is not control protocol JSON")]
    Json(#[from] serde_json::Error),
    #[error(
        "the daemon speaks control protocol version {0}, this client {VERSION}: restart the \
         daemon after an upgrade"
    )]
    Version(u32),
    #[error("the daemon says: {0}")]
    Daemon(String),
    #[error("unexpected answer from the daemon: {0}")]
    Unexpected(String),
}

/// The client side, used by `trigger` and `status`.
pub struct Client {
    input: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    out: OwnedWriteHalf,
}

/// Whether a connection error means no daemon is there (no socket, or a stale one), as
/// opposed to one we may not talk to.
pub fn nobody_listening(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

impl Client {
    pub async fn connect(socket: &Path) -> std::io::Result<Client> {
        let (input, out) = UnixStream::connect(socket).await?.into_split();
        Ok(Client {
            input: BufReader::new(input).lines(),
            out,
        })
    }

    pub async fn request(&mut self, request: Request) -> std::io::Result<()> {
        send(&mut self.out, request).await
    }

    /// The next reply; `None` when the daemon closed the connection.
    pub async fn reply(&mut self) -> Result<Option<Reply>, ControlError> {
        let Some(line) = self.input.next_line().await? else {
            return Ok(None);
        };
        let message: Message<serde_json::Value> = serde_json::from_str(&line)?;
        if message.version != VERSION {
            return Err(ControlError::Version(message.version));
        }
        Ok(Some(serde_json::from_value(message.body)?))
    }

    /// The daemon's view (`status`).
    pub async fn status(mut self) -> Result<DaemonStatus, ControlError> {
        self.request(Request::Status).await?;
        match self.reply().await? {
            Some(Reply::Status { status }) => Ok(*status),
            Some(Reply::Error { message }) => Err(ControlError::Daemon(message)),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }
}
