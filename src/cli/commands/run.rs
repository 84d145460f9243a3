//! `run` and `trigger`: a refresh here in the foreground, or asked of the daemon; both end
//! printing the run's report.

use anyhow::Context;

use crate::cli::{lock_error, print_json};
use crate::config::Config;
use crate::daemon::control;
use crate::error::Exit;
use crate::notify;
use crate::refresh::{self, Options};
use crate::report::RunReport;
use crate::shutdown;
use crate::snapshot::Selection;
use crate::state::{Recorder, StateFile};
use crate::util::shown_pid;

/// One refresh here, holding the lock.
pub async fn foreground(
    config: &Config,
    snapshot: &Selection,
    options: &Options,
    json: bool,
) -> anyhow::Result<Exit> {
    let recorder = Recorder::start(StateFile::in_dir(&config.daemon.state_dir));
    let report = refresh::run(config, snapshot, options, shutdown::on_signals(), &recorder)
        .await
        .map_err(lock_error)?;
    let exit = print_report(config, &report, json)?;
    notify::after_run(config, &report).await;
    Ok(exit)
}

/// A finished run's report, and its outcome as the exit code.
fn print_report(config: &Config, report: &RunReport, json: bool) -> anyhow::Result<Exit> {
    if json {
        print_json(report)?;
    } else {
        say!("{}", notify::for_operator(config, report));
    }
    if let Some(error) = &report.error {
        eprintln!("error: {}", crate::logging::one_line(error));
    }
    Ok(report.outcome.exit())
}

/// Asks the daemon for a refresh (following it with `wait`); runs it here when no daemon
/// listens, so `staging-refresh@.service` works with the daemon stopped too.
pub async fn trigger(
    config: &Config,
    snapshot: &Selection,
    wait: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    let socket = &config.daemon.control_socket;
    let mut client = match control::Client::connect(socket).await {
        Ok(client) => client,
        Err(e) if control::nobody_listening(&e) => {
            tracing::info!(
                "no daemon listens on {}: running the refresh here",
                socket.display()
            );
            return foreground(config, snapshot, &Options::default(), json).await;
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("connecting to the daemon at {}", socket.display()));
        }
    };
    let snapshot = match snapshot {
        Selection::Latest => "latest".to_owned(),
        Selection::Named(name) => name.clone(),
    };
    client
        .request(control::Request::Trigger { snapshot, wait })
        .await?;
    while let Some(reply) = client.reply().await? {
        match reply {
            control::Reply::Started { run_id } if !wait => {
                say!("refresh started: run {run_id} (`staging-refresh status` follows it)");
                return Ok(Exit::Success);
            }
            control::Reply::Started { run_id } => eprintln!("refresh started: run {run_id}"),
            control::Reply::Phase {
                phase, snapshot, ..
            } => match snapshot {
                Some(snapshot) => {
                    eprintln!("phase {phase}: {}", crate::logging::one_line(&snapshot))
                }
                None => eprintln!("phase {phase}"),
            },
            control::Reply::Finished { report } => {
                return print_report(config, &report, json);
            }
            control::Reply::Busy { run_id, pid } => {
                eprintln!(
                    "already running: run {run_id} (pid {}); not starting another",
                    shown_pid(pid)
                );
                return Ok(Exit::Locked);
            }
            control::Reply::Error { message } => anyhow::bail!("the daemon refused: {message}"),
            control::Reply::Status { .. } => anyhow::bail!("unexpected answer from the daemon"),
        }
    }
    anyhow::bail!("the daemon closed the connection before the refresh finished")
}
