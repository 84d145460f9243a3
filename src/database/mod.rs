//! The staging PostgreSQL server as the refresh sees it: connections (always through the
//! maintenance URL, by database name), the scratch database, the swap at cutover, the
//! opt-in markers and the extensions the restore role may use.

pub mod extensions;
pub mod markers;
pub mod restore_role;
pub mod settings;
pub mod sql;
pub mod swap;
mod tls;
pub mod writable;

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

use crate::config::{ExposeSecret, Secret};
use sql::{ServerMessage, quote_ident};

#[derive(Debug, thiserror::Error)]
#[error("{what} on {server}")]
pub struct DbError {
    pub what: String,
    pub server: String,
    #[source]
    pub message: ServerMessage,
}

/// The staging server, reached with `database.url`.
#[derive(Clone)]
pub struct Server {
    config: tokio_postgres::Config,
    redacted: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// The `application_name` of this product's sessions opened by process `pid`: a recovery
/// finds a dead run's sessions by it.
fn session_name(pid: u32) -> String {
    format!("staging-refresh[{pid}]")
}

impl Server {
    /// The URL was validated when the config loaded.
    pub fn new(url: &Secret) -> Server {
        let mut config = tokio_postgres::Config::from_str(url.expose_secret())
            .expect("validated at config load");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name(session_name(std::process::id()));
        // "does not exist, skipping" and the like are not worth a log line.
        if config.get_options().is_none() {
            config.options("-c client_min_messages=warning");
        }
        Server {
            redacted: redacted_postgres(&config),
            config,
        }
    }

    /// The URL without its password, for messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The host part of the URL (the first, for multi-host URLs).
    pub fn host(&self) -> String {
        first_host(&self.config)
    }

    pub fn error(&self, what: impl Into<String>, err: &tokio_postgres::Error) -> DbError {
        DbError {
            what: what.into(),
            server: self.redacted.clone(),
            message: err.into(),
        }
    }

    /// Connects to `database` (the maintenance database when `None`).
    pub async fn connect(&self, database: Option<&str>) -> Result<Client, DbError> {
        let mut config = self.config.clone();
        if let Some(db) = database {
            config.dbname(db);
        }
        self.connect_with(config).await
    }

    /// Connects to `database` (the maintenance database when `None`) as `user`, with
    /// `password`, on the URL's host.
    pub async fn connect_as(
        &self,
        database: Option<&str>,
        user: &str,
        password: &crate::config::Secret,
    ) -> Result<Client, DbError> {
        let mut config = self.config.clone();
        // Without a database in the URL, the server takes the URL's user's name for it.
        let maintenance = self.config.get_dbname().or(self.config.get_user());
        if let Some(db) = database.or(maintenance) {
            config.dbname(db);
        }
        config.user(user).password(password.expose_secret());
        self.connect_with(config).await
    }

    async fn connect_with(&self, config: tokio_postgres::Config) -> Result<Client, DbError> {
        let name = config.get_dbname().unwrap_or("postgres").to_owned();
        let error = |e| self.error(format!("connecting to database {name:?}"), &e);
        // The connection task is spawned either way; only its stream type differs.
        let client = if config.get_ssl_mode() == SslMode::Disable {
            let (client, connection) =
                config.connect(tokio_postgres::NoTls).await.map_err(error)?;
            tokio::spawn(drive(connection));
            client
        } else {
            let (client, connection) = config.connect(tls::connector()).await.map_err(error)?;
            tokio::spawn(drive(connection));
            client
        };
        Ok(client)
    }

    /// Asks the server to cancel the statement `client`'s session is running, as libpq's
    /// `PQcancel` does: over a connection of its own.
    pub async fn cancel(&self, client: &Client) -> Result<(), DbError> {
        let token = client.cancel_token();
        let cancelled = if self.config.get_ssl_mode() == SslMode::Disable {
            token.cancel_query(tokio_postgres::NoTls).await
        } else {
            token.cancel_query(tls::connector()).await
        };
        cancelled.map_err(|e| self.error("cancelling a statement", &e))
    }

    /// Runs SQL that returns nothing, naming `what` in the error.
    pub async fn execute(&self, client: &Client, what: &str, sql: &str) -> Result<(), DbError> {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| self.error(what, &e))
    }

    /// Ends the sessions process `pid` left and waits until they are gone. The server runs a
    /// statement on after its client died until it next reads from it, and a `CREATE
    /// DATABASE` never does: unended, it could create the scratch database after a recovery
    /// looked for it.
    pub async fn end_sessions_of(&self, client: &Client, pid: u32) -> Result<(), DbError> {
        let name = session_name(pid);
        let what = format!("ending the sessions of process {pid}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left: i64 = client
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .await
                .map_err(|e| self.error(&what, &e))?
                .get(0);
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DbError {
                    what,
                    server: self.redacted.clone(),
                    message: ServerMessage::plain(format!(
                        "{left} session(s) still there after 30 s"
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn exists(&self, client: &Client, database: &str) -> Result<bool, DbError> {
        client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .map(|row| row.is_some())
            .map_err(|e| self.error(format!("looking up database {database:?}"), &e))
    }

    /// The oid of each database that exists among `moves`' names before a swap (see
    /// [`swap::moves`]): renames keep oids, so they tell later where each database went.
    pub async fn oids(
        &self,
        client: &Client,
        moves: &[(String, String)],
    ) -> Result<BTreeMap<String, u32>, DbError> {
        let names: Vec<&str> = moves.iter().map(|(before, _)| before.as_str()).collect();
        let rows = client
            .query(
                "SELECT datname::text, oid FROM pg_database WHERE datname::text = ANY($1)",
                &[&names],
            )
            .await
            .map_err(|e| self.error("looking up the databases to swap", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The current name of each database among `oids` that still exists.
    pub async fn names_of(
        &self,
        client: &Client,
        oids: &[u32],
    ) -> Result<BTreeMap<u32, String>, DbError> {
        let rows = client
            .query(
                "SELECT oid, datname::text FROM pg_database WHERE oid = ANY($1)",
                &[&oids],
            )
            .await
            .map_err(|e| self.error("looking up databases by oid", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Creates a database from `template` (template0, or `database.template`'s extensions),
    /// owned by `owner` when given.
    pub async fn create(
        &self,
        client: &Client,
        database: &str,
        template: &str,
        owner: Option<&str>,
    ) -> Result<(), DbError> {
        let owner = owner
            .map(|o| format!(" OWNER {}", quote_ident(o)))
            .unwrap_or_default();
        self.execute(
            client,
            &format!("creating database {database:?} from {template:?}"),
            &format!(
                "CREATE DATABASE {} TEMPLATE {}{owner}",
                quote_ident(database),
                quote_ident(template)
            ),
        )
        .await
    }

    /// Drops `database` if it exists, ending its sessions first.
    pub async fn drop(&self, client: &Client, database: &str) -> Result<(), DbError> {
        self.execute(
            client,
            &format!("dropping database {database:?}"),
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(database)
            ),
        )
        .await
    }

    /// `server_version_num` and every role name: what the dump filter decides by.
    pub async fn facts(&self, client: &Client) -> Result<(u32, HashSet<String>), DbError> {
        let version: String = client
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(|e| self.error("reading the server version", &e))?
            .get(0);
        let roles = client
            .query("SELECT rolname::text FROM pg_roles", &[])
            .await
            .map_err(|e| self.error("listing roles", &e))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        Ok((version.parse().unwrap_or(0), roles))
    }

    /// The connected role's name.
    pub async fn current_role(&self, client: &Client) -> Result<String, DbError> {
        client
            .query_one("SELECT current_user::text", &[])
            .await
            .map(|r| r.get(0))
            .map_err(|e| self.error("reading the role's name", &e))
    }

    /// Whether the connected role is a superuser.
    pub async fn connected_as_superuser(&self, client: &Client) -> Result<bool, DbError> {
        client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| self.error("reading the role's attributes", &e))
    }
}

/// A PostgreSQL connection string with the password removed, for logs and errors.
fn redacted_postgres(config: &tokio_postgres::Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{}:{port}/{}",
        config.get_user().unwrap_or(""),
        first_host(config),
        config.get_dbname().unwrap_or("")
    )
}

/// The host a connection URL names first (the socket directory for a Unix socket).
fn first_host(config: &tokio_postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    }
}

/// Runs a connection until it closes.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "PostgreSQL connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_postgres_hides_the_password() {
        let url = Secret::from("postgres://refresh:hunter2@db.internal:6543/postgres");
        let shown = redacted_postgres(&url.expose_secret().parse().unwrap());
        assert_eq!(shown, "postgres://refresh@db.internal:6543/postgres");
    }
}
