//! The restore's sessions on the scratch database: the loader's and each post-data job's are
//! opened and set up here alike, logged in as the restore role, so what one session may do
//! every session may do; and each is checked alike to be outside any transaction once the
//! dump's statements on it ran.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::load_error::LoadError;
use crate::config::RestoreConfig;
use crate::database::restore_role::{self, Reach};
use crate::database::sql::ServerMessage;
use crate::database::{DbError, Server};

/// Index builds sort in memory up to `maintenance_work_mem`: a restore may use this much (or
/// the server's setting, if higher) in all its sessions together (512 MiB measured ~6 %
/// faster than the default on 2.3 M rows).
const MAINTENANCE_MEM_KB: u64 = 512 * 1024;
/// PostgreSQL's smallest `maintenance_work_mem`.
const MIN_MAINTENANCE_MEM_KB: u64 = 1024;
/// Jobs when `restore.jobs` is unset and the server does not say how many CPUs it has.
const FALLBACK_JOBS: usize = 2;

/// How long past `restore.statement_timeout` the refresh waits before it cancels a
/// statement itself: the server's own timeout, which names the statement, comes first
/// unless the dump's code lifted it.
const BOUND_MARGIN: Duration = Duration::from_secs(2);
/// How long a cancelled statement is given to end.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// The per-statement bound the refresh keeps itself. Each restore session starts with
/// `statement_timeout = restore.statement_timeout`, but that is a setting the dump's code
/// can change (`set_config` from a column default a COPY evaluates); so what a session runs
/// is also timed from the client, and cancelled past the bound whatever the session says.
/// What is sent in one round trip (a batch of statements, a COPY) is timed as one.
#[derive(Clone)]
pub struct Bound {
    server: Server,
    limit: Duration,
}

impl Bound {
    /// Runs `work` (a round trip on `client`); `Err` with the message to show when it ran past
    /// the bound and was cancelled, else what it returned.
    pub async fn run<T>(
        &self,
        client: &Client,
        work: impl Future<Output = T>,
    ) -> Result<T, ServerMessage> {
        let mut work = std::pin::pin!(work);
        let Ok(done) = tokio::time::timeout(self.limit + BOUND_MARGIN, &mut work).await else {
            if let Err(e) = self.server.cancel(client).await {
                tracing::warn!(error = %e, "cancelling a statement past restore.statement_timeout");
            }
            // Its session is not used again (the run fails): no need to wait for ever.
            let _ = tokio::time::timeout(CANCEL_GRACE, work).await;
            return Err(ServerMessage::plain(format!(
                "it ran longer than restore.statement_timeout ({}), so the refresh cancelled \
                 it (code in the dump can lift the session's own statement timeout)",
                humantime::format_duration(self.limit)
            )));
        };
        Ok(done)
    }
}

/// How to open a restore session on the scratch database.
pub struct Sessions<'a> {
    server: Server,
    database: &'a str,
    /// The restore role, and how a session logs in as it.
    role: &'a str,
    reach: &'a Reach,
    /// Sessions of the pool (post-data jobs, the parts of a big COPY) at most.
    pub jobs: usize,
    statement_timeout: Duration,
    /// Each session's share of [`MAINTENANCE_MEM_KB`] (or of the server's setting).
    maintenance_mem_kb: u64,
}

impl<'a> Sessions<'a> {
    /// The sessions of a restore into `database` as `role`, sized on the server's settings
    /// as `maintenance` (the refresh role's session) reads them.
    pub async fn new(
        server: &Server,
        maintenance: &Client,
        database: &'a str,
        (role, reach): (&'a str, &'a Reach),
        config: &RestoreConfig,
    ) -> Result<Sessions<'a>, DbError> {
        let jobs = jobs(config.jobs, server, maintenance).await?;
        let setting: i64 = maintenance
            .query_one(
                "SELECT setting::pg_catalog.int8 FROM pg_catalog.pg_settings
                 WHERE name = 'maintenance_work_mem'",
                &[],
            )
            .await
            .map_err(|e| server.error("reading maintenance_work_mem", &e))?
            .get(0);
        let total = u64::try_from(setting).unwrap_or(0).max(MAINTENANCE_MEM_KB);
        Ok(Sessions {
            server: server.clone(),
            database,
            role,
            reach,
            jobs,
            statement_timeout: config.statement_timeout,
            maintenance_mem_kb: (total / jobs as u64).max(MIN_MAINTENANCE_MEM_KB),
        })
    }

    /// The bound every statement of the dump's is run within.
    pub fn bound(&self) -> Bound {
        Bound {
            server: self.server.clone(),
            limit: self.statement_timeout,
        }
    }

    /// A session on the scratch database as the restore role, configured for restoring.
    pub async fn open(&self) -> Result<Client, DbError> {
        let client =
            restore_role::connect(&self.server, self.database, self.role, self.reach).await?;
        // Durability comes at the anonymization's commit, which flushes everything before it.
        // The masking's catalog questions are small but estimated large: JIT compiling one
        // took ~150 ms, running it ~4 ms. Plain SETs: nothing the dump defined (a function,
        // an operator) can take part.
        self.server
            .execute(
                &client,
                "configuring the restore session",
                &format!(
                    "SET synchronous_commit = off;
                     SET jit = off;
                     SET statement_timeout = {};
                     SET maintenance_work_mem = {}",
                    self.statement_timeout.as_millis(),
                    self.maintenance_mem_kb
                ),
            )
            .await?;
        Ok(client)
    }
}

/// One of the pool's sessions, and how many of the dump's session settings it has run.
pub(super) struct Worker {
    pub client: Arc<Client>,
    pub settings: usize,
}

/// A session taken from the pool, and the settings it must run before anything else.
pub(super) struct Taken {
    pub worker: Worker,
    pub catch_up: String,
}

/// The restore's sessions besides the loader's (post-data jobs, the parts of a big table's
/// COPY): at most `jobs` open, each following the dump's session settings (`SET`,
/// `set_config`) as the loader's session runs them, so what runs on one runs as it would
/// on the loader's.
pub(super) struct Pool<'a> {
    sessions: &'a Sessions<'a>,
    idle: Vec<Worker>,
    opened: usize,
    /// The most sessions open at once.
    pub peak: usize,
    /// The dump's session settings so far, in order.
    settings: Vec<String>,
}

impl<'a> Pool<'a> {
    pub fn new(sessions: &'a Sessions<'a>) -> Pool<'a> {
        Pool {
            sessions,
            idle: Vec::new(),
            opened: 0,
            peak: 0,
            settings: Vec::new(),
        }
    }

    /// The bound the pool's sessions run statements within.
    pub fn bound(&self) -> Bound {
        self.sessions.bound()
    }

    /// The most sessions the pool opens.
    pub fn jobs(&self) -> usize {
        self.sessions.jobs.max(1)
    }

    /// A session setting of the dump's, which the loader's session runs.
    pub fn record_setting(&mut self, text: String) {
        self.settings.push(text);
    }

    /// How many session settings the dump has run so far.
    pub fn settings(&self) -> usize {
        self.settings.len()
    }

    /// An idle session that will have run the first `settings` settings once it runs its
    /// catch-up: one that has run at most that many, a new one while fewer than `jobs` are
    /// open, or a new one in place of one that has run more; `None` when all are busy.
    pub async fn take(&mut self, settings: usize) -> Result<Option<Taken>, LoadError> {
        let worker = match self.idle.iter().position(|w| w.settings <= settings) {
            Some(i) => self.idle.swap_remove(i),
            None => {
                if self.opened >= self.jobs() {
                    if self.idle.pop().is_none() {
                        return Ok(None);
                    }
                    self.opened -= 1;
                }
                let client = self
                    .sessions
                    .open()
                    .await
                    .map_err(|e| LoadError::Connect(Box::new(e)))?;
                self.opened += 1;
                self.peak = self.peak.max(self.opened);
                Worker {
                    client: Arc::new(client),
                    settings: 0,
                }
            }
        };
        let catch_up = self.settings[worker.settings..settings].join("\n");
        Ok(Some(Taken {
            worker: Worker { settings, ..worker },
            catch_up,
        }))
    }

    /// Gives back a session once what it ran has finished (and succeeded).
    pub fn put(&mut self, worker: Worker) {
        self.idle.push(worker);
    }
}

/// `restore.jobs` when set; else the server's CPU count as it reports it, at least 2, or
/// [`FALLBACK_JOBS`] when it does not.
async fn jobs(
    configured: Option<usize>,
    server: &Server,
    client: &Client,
) -> Result<usize, DbError> {
    let (jobs, from) = match configured {
        Some(jobs) => (jobs, "restore.jobs"),
        None => match server_cpus(server, client).await? {
            Some(cpus) => (cpus.max(2), "the server's CPU count"),
            None => (
                FALLBACK_JOBS,
                "the fallback: the server does not say its CPU count to this role",
            ),
        },
    };
    tracing::info!(jobs, "restore sessions besides the loader's from {from}");
    Ok(jobs)
}

/// The CPUs the server's backend may run on, when the server lets the connected role read
/// its `/proc/self/status` (Linux; superusers, or `pg_read_server_files` members granted
/// `pg_read_file`).
async fn server_cpus(server: &Server, client: &Client) -> Result<Option<usize>, DbError> {
    let error = |e| server.error("asking the server for its CPU count", &e);
    // Asked first: the server checks EXECUTE when it plans a call, even one never made.
    let allowed: bool = client
        .query_one(
            "SELECT pg_has_role('pg_read_server_files', 'USAGE')
                AND has_function_privilege('pg_read_file(text, bigint, bigint, boolean)',
                                           'EXECUTE')",
            &[],
        )
        .await
        .map_err(error)?
        .get(0);
    if !allowed {
        return Ok(None);
    }
    let status: Option<String> = client
        .query_one(
            "SELECT pg_read_file('/proc/self/status', 0, 65536, true)",
            &[],
        )
        .await
        .map_err(error)?
        .get(0);
    Ok(status.as_deref().and_then(cpus_allowed))
}

/// The CPU count of a `Cpus_allowed_list:` line (`0-3,8`) in `/proc/<pid>/status`.
fn cpus_allowed(status: &str) -> Option<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut count = 0;
    for range in list.split(',') {
        count += match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => range.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    (count > 0).then_some(count)
}

/// The session is outside a transaction (a simple query of its own starts one, so its start
/// is the transaction's).
pub(super) async fn outside_transaction(client: &Client, line: u64) -> Result<(), LoadError> {
    let messages = client
        .simple_query(
            "SELECT pg_catalog.transaction_timestamp() = pg_catalog.statement_timestamp()",
        )
        .await
        .map_err(|e| match e.code() {
            // "current transaction is aborted": a transaction is open, and failed.
            Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) => {
                LoadError::TransactionOpen { line }
            }
            _ => LoadError::Session { message: e.into() },
        })?;
    let idle = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
        _ => None,
    });
    match idle {
        Some(true) => Ok(()),
        Some(false) => Err(LoadError::TransactionOpen { line }),
        None => Err(LoadError::Session {
            message: ServerMessage::plain("no row"),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpus_allowed_lists() {
        let status = |list: &str| format!("Name:\tpostgres\nCpus_allowed_list:\t{list}\nx:\t1\n");
        assert_eq!(super::cpus_allowed(&status("0-1")), Some(2));
        assert_eq!(super::cpus_allowed(&status("0-3,8,10-11")), Some(7));
        assert_eq!(super::cpus_allowed(&status("5")), Some(1));
        assert_eq!(super::cpus_allowed(&status("junk")), None);
        assert_eq!(super::cpus_allowed("Name:\tpostgres\n"), None);
    }
}
