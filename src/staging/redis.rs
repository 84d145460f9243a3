//! Staging Redis: flushed at cutover, because queued jobs refer to the data being replaced.

use std::time::Duration;

use crate::config::{ExposeSecret, Secret};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("redis {what}: {message}")]
pub struct RedisError {
    what: &'static str,
    message: String,
}

async fn command(url: &Secret, name: &'static str) -> Result<(), RedisError> {
    let error = |message: String| RedisError {
        what: name,
        message,
    };
    let work = async {
        let client = redis::Client::open(url.expose_secret()).map_err(|e| error(e.to_string()))?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| error(e.to_string()))?;
        redis::cmd(name)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| error(e.to_string()))
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(error(format!("no answer within {TIMEOUT:?}"))))
}

/// FLUSHALL.
pub async fn flush(url: &Secret) -> Result<(), RedisError> {
    command(url, "FLUSHALL").await
}

/// PING, for `check`.
pub async fn ping(url: &Secret) -> Result<(), RedisError> {
    command(url, "PING").await
}
