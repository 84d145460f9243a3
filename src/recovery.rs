//! Recovery from a run that died (SIGKILL, OOM, a reboot): at the start of every run and
//! rollback, and when the daemon starts, whoever takes the lock reads the dead run's
//! [`journal`] and puts staging back in order before doing anything else.
//!
//! - A scratch database is dropped: its run will never swap it in, and the restore role's
//!   login for that run is taken back.
//! - A maintenance window is settled: the swap committed or not (its renames are one
//!   transaction; the databases' oids say which). Committed, it is completed (Redis flushed,
//!   or the swap undone when Redis cannot be); not, the scratch database goes. Either way
//!   `<name>` is a whole database, and every database accepts connections again.
//! - The backend is started and waited for when the dead run may have stopped it, or when a
//!   maintenance flag is up; only then is the flag removed.
//! - An interrupted media pass needs nothing: objects are copied and deleted whole, and the
//!   next run's mirror finishes the job.
//!
//! What was found and done is logged and returned; the caller keeps it in the state file
//! (`status`, metrics) and in the next run's report (`run --json`, the email).

use chrono::Utc;

use crate::config::Config;
use crate::database::restore_role::{self, Login};
use crate::database::sql::chain_without_values;
use crate::database::{Server, swap};
use crate::journal::{self, Entry, MediaPass, Recovery, Stage, Step, Window};
use crate::lock::RunLock;
use crate::staging::{backend, maintenance, redis};
use crate::util::shown_pid;

#[derive(Debug, thiserror::Error)]
#[error("recovering from {run}, which died: {message}")]
pub struct RecoveryError {
    run: String,
    message: String,
}

/// Repairs what a dead run left, holding `lock`; `None` when nothing was left. The caller
/// records the returned [`Recovery`].
pub async fn recover(config: &Config, lock: &RunLock) -> Result<Option<Recovery>, RecoveryError> {
    let state_dir = &config.daemon.state_dir;
    let unknown = |message: String| RecoveryError {
        run: "a run".into(),
        message,
    };
    let entry = journal::read(state_dir).map_err(|e| unknown(e.to_string()))?;
    let flag = maintenance::read(&config.flag_file());
    if entry.is_none() && flag.is_none() && lock.stale().is_none() {
        return Ok(None);
    }
    let mut recovery = Recovery {
        at: Utc::now(),
        run_id: entry
            .as_ref()
            .map(|e| e.run_id.clone())
            .or_else(|| lock.stale().map(|h| h.run_id.clone())),
        pid: entry
            .as_ref()
            .map(|e| e.pid)
            .or_else(|| lock.stale().and_then(|h| h.pid)),
        step: entry.as_ref().map(|e| format!("while {}", e.step)),
        actions: Vec::new(),
    };
    tracing::warn!(
        run_id = recovery.run_id.as_deref().unwrap_or("unknown"),
        step = recovery.step.as_deref().unwrap_or("unknown"),
        "a run died without finishing: recovering what it left"
    );
    let run = format!(
        "run {}",
        recovery.run_id.as_deref().unwrap_or("(unknown id)")
    );
    let failed = |message: String| RecoveryError {
        run: run.clone(),
        message,
    };
    if let Some(holder) = lock.stale() {
        recovery.actions.push(format!(
            "the lock file still named pid {} (run {}): the kernel released its lock when it died",
            shown_pid(holder.pid),
            holder.run_id
        ));
    }
    let mut backend_stopped = false;
    if let Some(entry) = &entry {
        backend_stopped = repair(config, entry, &mut recovery.actions)
            .await
            .map_err(failed)?;
    }
    if backend_stopped || flag.is_some() {
        let backend = &config.backend;
        backend::run_command("start", &backend.start, backend.command_timeout)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if let Some(url) = &backend.health_url {
            backend::wait_healthy(url, backend.health_timeout)
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
        recovery.actions.push(if backend.start.is_empty() {
            "backend.start is not configured: the backend was left as it is".to_owned()
        } else {
            "started the backend".to_owned()
        });
    }
    if flag.is_some() {
        let path = config.flag_file();
        std::fs::remove_file(&path).map_err(|e| {
            failed(format!(
                "removing the maintenance flag {}: {e}",
                path.display()
            ))
        })?;
        recovery
            .actions
            .push(format!("removed the maintenance flag {}", path.display()));
    }
    journal::remove(state_dir).map_err(|e| failed(e.to_string()))?;
    tracing::warn!(summary = %recovery.summary(), "recovered");
    Ok(Some(recovery))
}

/// Repairs the databases after `entry`; returns whether the backend may be stopped.
async fn repair(config: &Config, entry: &Entry, actions: &mut Vec<String>) -> Result<bool, String> {
    if let Some(pass) = entry.media {
        let pass = match pass {
            MediaPass::Copy => "copy",
            MediaPass::Delete => "delete",
        };
        actions.push(format!(
            "the media {pass} pass was interrupted: objects are copied and deleted whole, and \
             the next run's mirror finishes it"
        ));
    }
    let scratch = match &entry.step {
        Step::Started | Step::Cleanup => return Ok(false),
        Step::Restore { scratch } | Step::Anonymize { scratch } | Step::Anonymized { scratch } => {
            Some(scratch.clone())
        }
        Step::Cutover(_) => None,
    };
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await.map_err(|e| e.to_string())?;
    server
        .end_sessions_of(&client, entry.pid)
        .await
        .map_err(|e| e.to_string())?;
    // A run that died before the cutover may have left the restore role its login for the
    // run, and whatever the dump's code did to it.
    if scratch.is_some() {
        let role = restore_role::name(&config.database.name);
        let login = match &config.database.restore_password {
            Some(password) => Some(Login::Configured(password)),
            None => restore_role::may_set_password(&server, &client)
                .await
                .map_err(|e| e.to_string())?
                .then_some(Login::Taken { had: None }),
        };
        if let Some(login) = login {
            let done = match login {
                Login::Taken { .. } => "took back the restore role's login for the run",
                _ => "put the restore role back to database.restore_password_file's password",
            };
            // The scratch database, still there, is the role's: what is in it is not outside.
            let found = restore_role::put_back(&server, &role, login, scratch.as_deref())
                .await
                .map_err(|e| chain_without_values(&e))?;
            actions.push(match found.as_slice() {
                [] => format!("{done} ({role:?})"),
                found => format!(
                    "{done} ({role:?}), and undid what was done to it: {}",
                    found.join("; ")
                ),
            });
        }
    }
    let (scratch, backend_stopped) = match (&entry.step, scratch) {
        (Step::Cutover(window), _) => {
            let swapped = settle(config, &server, &client, window, actions).await?;
            let scratch = window.scratch.clone().filter(|_| !swapped);
            (scratch, window.stage >= Stage::StopBackend)
        }
        (_, scratch) => (scratch, false),
    };
    if let Some(scratch) = scratch
        && server
            .exists(&client, &scratch)
            .await
            .map_err(|e| e.to_string())?
    {
        server
            .drop(&client, &scratch)
            .await
            .map_err(|e| e.to_string())?;
        actions.push(format!("dropped the scratch database {scratch:?}"));
    }
    Ok(backend_stopped)
}

/// Finds out whether the window's swap committed and completes it (or, when Redis cannot be
/// flushed, undoes it); every database it touched accepts connections again. Returns whether
/// the swap stands.
async fn settle(
    config: &Config,
    server: &Server,
    client: &tokio_postgres::Client,
    window: &Window,
    actions: &mut Vec<String>,
) -> Result<bool, String> {
    let renames: Vec<(&str, &str)> = window
        .renames
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let oids: Vec<u32> = window.oids.values().copied().collect();
    let names = server
        .names_of(client, &oids)
        .await
        .map_err(|e| e.to_string())?;
    // A swap closes its databases to connections while it renames; a death leaves them closed.
    for name in names.values() {
        swap::allow_connections(server, client, name)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut found = Vec::new();
    for (before, after) in swap::moves(&renames) {
        let Some(oid) = window.oids.get(&before) else {
            continue;
        };
        // Gone: a scratch database an earlier try of this recovery dropped.
        let Some(now) = names.get(oid) else {
            continue;
        };
        found.push(if *now == after {
            Ok(true)
        } else if *now == before {
            Ok(false)
        } else {
            Err(format!(
                "database {before:?} (oid {oid}) should be named {before:?} or {after:?}, \
                 and is {now:?}"
            ))
        });
    }
    let swapped = match found.iter().cloned().collect::<Result<Vec<bool>, String>>() {
        Ok(states) if states.iter().all(|s| *s) && !states.is_empty() => true,
        Ok(states) if states.iter().all(|s| !*s) => false,
        Ok(_) => return Err("the databases are neither all renamed nor all in place".into()),
        Err(e) => {
            return Err(format!(
                "the databases are not where the swap left them: {e}"
            ));
        }
    };
    let name = &config.database.name;
    if !swapped {
        actions.push(format!(
            "the swap had not committed: {name:?} holds the data it had before"
        ));
        return Ok(false);
    }
    match (&config.redis.url, window.redis_flushed) {
        (Some(url), false) => match redis::flush(url).await {
            Ok(()) => actions.push(format!(
                "the swap had committed: completed it, {name:?} serves the new data and redis \
                 was flushed"
            )),
            Err(e) => {
                let undo = swap::undo(&renames);
                swap::rename_all(server, client, &undo)
                    .await
                    .map_err(|u| format!("{e}; undoing the swap failed too: {u}"))?;
                actions.push(format!(
                    "the swap had committed but redis cannot be flushed ({e}): undid it, \
                     {name:?} holds the data it had before"
                ));
                return Ok(false);
            }
        },
        _ => actions.push(format!(
            "the swap had committed: {name:?} serves the new data"
        )),
    }
    Ok(true)
}
