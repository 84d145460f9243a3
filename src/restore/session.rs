//! The restore's sessions on the scratch database: the loader's and each post-data job's are
//! opened and set up here alike, so what one session may do every session may do.

use tokio_postgres::Client;

use crate::database::{DbError, Server};

/// Index builds sort in memory up to `maintenance_work_mem`: a restore may use this much (or
/// the server's setting, if higher) in all its sessions together (512 MiB measured ~6 %
/// faster than the default on 2.3 M rows).
const MAINTENANCE_MEM_KB: u64 = 512 * 1024;
/// PostgreSQL's smallest `maintenance_work_mem`.
const MIN_MAINTENANCE_MEM_KB: u64 = 1024;
/// Jobs when `restore.jobs` is unset and the server does not say how many CPUs it has.
const FALLBACK_JOBS: usize = 2;

/// How to open a restore session on the scratch database.
#[derive(Debug, Clone)]
pub struct Sessions {
    pub server: Server,
    pub database: String,
    /// Sessions building indexes at once, sharing [`MAINTENANCE_MEM_KB`].
    pub jobs: usize,
}

impl Sessions {
    /// A session on the scratch database, configured for restoring.
    pub async fn open(&self) -> Result<Client, DbError> {
        let client = self.server.connect(Some(&self.database)).await?;
        // Durability comes at the anonymization's commit, which flushes everything before it.
        self.server
            .execute(
                &client,
                "configuring the restore session",
                &format!(
                    "SET synchronous_commit = off;
                     SELECT set_config('maintenance_work_mem',
                        greatest(greatest(setting::bigint, {MAINTENANCE_MEM_KB}) / {jobs},
                                 {MIN_MAINTENANCE_MEM_KB})::text, false)
                     FROM pg_settings WHERE name = 'maintenance_work_mem'",
                    jobs = self.jobs.max(1),
                ),
            )
            .await?;
        Ok(client)
    }
}

/// `restore.jobs` when set; else the server's CPU count as it reports it, at least 2, or
/// [`FALLBACK_JOBS`] when it does not.
pub async fn jobs(
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
    tracing::info!(jobs, "post-data sessions from {from}");
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
