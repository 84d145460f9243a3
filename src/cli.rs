//! The command line of the operator contract, and how each command prints its result.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::check;
use crate::config::{self, Config};
use crate::daemon::{self, DaemonStatus, control};
use crate::database::{Server, markers};
use crate::error::Exit;
use crate::journal::Journal;
use crate::lock::{LockError, RunLock};
use crate::logging::LogFormat;
use crate::media::{self, Mirror};
use crate::notify;
use crate::recovery;
use crate::refresh::plan::{DatabasePlan, Plan};
use crate::refresh::{self, Options, cutover};
use crate::report::RunReport;
use crate::shutdown;
use crate::snapshot::{Catalog, Selection, format_age};
use crate::staging::maintenance;
use crate::state::{Recorder, StateFile};
use crate::store::SourceBucket;

/// Keeps a staging environment a fresh, anonymized copy of production.
#[derive(Debug, Parser)]
#[command(name = "staging-refresh", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "STAGING_REFRESH_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print one JSON document instead of text (snapshots, plan, status, run).
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more: debug logs, and why listed objects were skipped.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "STAGING_REFRESH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List snapshots, newest first: name, taken at, age, size, checksum present.
    Snapshots {
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Verify config, credentials, reachability and opt-in markers; non-zero exit on any problem.
    Check,
    /// One full refresh in the foreground, holding the lock.
    Run {
        /// `latest`, or a snapshot's file name or key.
        #[arg(long, default_value = "latest")]
        snapshot: Selection,
        /// Only show what would be done (the same as `plan`).
        #[arg(long)]
        dry_run: bool,
        /// Refresh the database only; leave the media bucket alone.
        #[arg(long, conflicts_with = "skip_db")]
        skip_media: bool,
        /// Mirror the media bucket only; leave the database alone.
        #[arg(long)]
        skip_db: bool,
    },
    /// Dry run: stream the dump through checksum, decoding and the filter, and show what
    /// would be restored, anonymized, created, renamed and dropped. Changes nothing.
    Plan {
        #[arg(long, default_value = "latest")]
        snapshot: Selection,
    },
    /// Mark the staging database and media bucket as refresh targets (the opt-in markers a run requires).
    InitTarget,
    /// Swap the kept previous database back in, under the maintenance flag.
    Rollback,
    /// The current and last run, the daemon's schedule, the maintenance flag, the kept
    /// previous database.
    Status,
    /// Run the scheduler and the control socket (systemd Type=notify service).
    Daemon,
    /// Ask the daemon for a refresh; when no daemon is listening, run it here like `run`.
    Trigger {
        /// Follow the refresh and exit with its outcome (0 ok, 1 failed, 3 refused, 4 busy).
        #[arg(long)]
        wait: bool,
        /// `latest` (or `now`), or a snapshot's file name or key.
        #[arg(default_value = "latest")]
        snapshot: Selection,
    },
}

/// Runs one command; the returned code is the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let config = Config::load(&cli.config)?;
    // The masking rules are checked like the rest of the config (exit 2, naming the key).
    crate::mask::Rules::from_config(&config.anonymize)?;
    match cli.command {
        Command::Snapshots { limit } => snapshots(&config, limit, cli.json, cli.verbose).await,
        Command::Check => check(&config, &cli.config, cli.json).await,
        Command::Plan { snapshot } => plan(&config, &snapshot, &Options::default(), cli.json).await,
        Command::Run {
            snapshot,
            dry_run,
            skip_media,
            skip_db,
        } => {
            let options = Options {
                skip_media,
                skip_db,
            };
            if dry_run {
                plan(&config, &snapshot, &options, cli.json).await
            } else {
                run_refresh(&config, &snapshot, &options, cli.json).await
            }
        }
        Command::InitTarget => init_target(&config).await,
        Command::Rollback => rollback(&config).await,
        Command::Status => status(&config, cli.json).await,
        Command::Daemon => daemon::serve(&cli.config, config)
            .await
            .map(|()| Exit::Success)
            .map_err(Into::into),
        Command::Trigger { wait, snapshot } => trigger(&config, &snapshot, wait, cli.json).await,
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn snapshots(
    config: &Config,
    limit: Option<usize>,
    json: bool,
    verbose: bool,
) -> anyhow::Result<Exit> {
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
    let mut catalog = Catalog::list(&bucket, &config.snapshot, config.source_database())
        .await
        .context("listing snapshots")?;
    if let Some(limit) = limit {
        catalog.snapshots.truncate(limit);
    }
    if json {
        print_json(&catalog)?;
        return Ok(Exit::Success);
    }
    let now = Utc::now();
    let width = catalog
        .snapshots
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<19}  {:>7}  {:>10}  CHECKSUM",
        "NAME", "TAKEN AT (UTC)", "AGE", "SIZE"
    );
    for s in &catalog.snapshots {
        let too_old = if s.age(now) > config.snapshot.max_age {
            " (older than max_age)"
        } else {
            ""
        };
        println!(
            "{:<width$}  {:<19}  {:>7}  {:>10}  {}{too_old}",
            s.name,
            s.taken_at.format("%Y-%m-%d %H:%M:%S"),
            format_age(s.age(now)),
            HumanBytes(s.size).to_string(),
            if s.checksum_key.is_some() {
                "md5"
            } else {
                "none"
            },
        );
    }
    if catalog.snapshots.is_empty() {
        println!("(no usable snapshot)");
    }
    if verbose {
        for skipped in &catalog.skipped {
            println!("skipped {}: {}", skipped.key, skipped.reason);
        }
    } else if !catalog.skipped.is_empty() {
        println!(
            "{} objects skipped (--verbose says why)",
            catalog.skipped.len()
        );
    }
    Ok(if catalog.snapshots.is_empty() {
        Exit::Failed
    } else {
        Exit::Success
    })
}

async fn check(config: &Config, path: &std::path::Path, json: bool) -> anyhow::Result<Exit> {
    let results = check::run(config, path).await;
    if json {
        print_json(&results)?;
    } else {
        for r in &results {
            println!(
                "{:<4}  {:<20}  {}",
                if r.ok { "ok" } else { "FAIL" },
                r.name,
                r.detail
            );
        }
    }
    Ok(if results.iter().all(|r| r.ok) {
        Exit::Success
    } else {
        Exit::Failed
    })
}

async fn run_refresh(
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
        println!("{}", report.summary(config));
    }
    if let Some(error) = &report.error {
        eprintln!("error: {}", crate::logging::one_line(error));
    }
    Ok(report.outcome.exit())
}

/// Asks the daemon for a refresh (following it with `wait`); runs it here when no daemon
/// listens, so `staging-refresh@.service` works with the daemon stopped too.
async fn trigger(
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
            return run_refresh(config, snapshot, &Options::default(), json).await;
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
                println!("refresh started: run {run_id} (`staging-refresh status` follows it)");
                return Ok(Exit::Success);
            }
            control::Reply::Started { run_id } => eprintln!("refresh started: run {run_id}"),
            control::Reply::Phase {
                phase, snapshot, ..
            } => match snapshot {
                Some(snapshot) => eprintln!("phase {phase}: {snapshot}"),
                None => eprintln!("phase {phase}"),
            },
            control::Reply::Finished { report } => return print_report(config, &report, json),
            control::Reply::Busy { run_id, pid } => {
                eprintln!(
                    "already running: run {run_id} (pid {}); not starting another",
                    crate::util::shown_pid(pid)
                );
                return Ok(Exit::Locked);
            }
            control::Reply::Error { message } => anyhow::bail!("the daemon refused: {message}"),
            control::Reply::Status { .. } => anyhow::bail!("unexpected answer from the daemon"),
        }
    }
    anyhow::bail!("the daemon closed the connection before the refresh finished")
}

/// A held lock as its own error, so the exit code is 4.
fn lock_error(err: LockError) -> anyhow::Error {
    match err {
        LockError::Locked(locked) => locked.into(),
        other => other.into(),
    }
}

async fn plan(
    config: &Config,
    snapshot: &Selection,
    options: &Options,
    json: bool,
) -> anyhow::Result<Exit> {
    let plan: Plan = refresh::plan::plan(config, snapshot, options).await?;
    if json {
        print_json(&plan)?;
        return Ok(Exit::Success);
    }
    if let Some(database) = &plan.database {
        print_database_plan(config, database);
    }
    if let Some(media) = &plan.media {
        println!("media: {}", media.summary());
    }
    Ok(Exit::Success)
}

fn print_database_plan(config: &Config, plan: &DatabasePlan) {
    println!("{}", plan.snapshot.describe());
    let total: u64 = plan.rows.values().sum();
    println!(
        "would restore {total} rows in {} tables ({} of SQL):",
        plan.rows.len(),
        HumanBytes(plan.bytes_sql)
    );
    for (table, rows) in &plan.rows {
        println!("  {table:<40} {rows:>12}");
    }
    for (reason, count) in &plan.statements_filtered {
        println!("would skip or rewrite {count}: {reason}");
    }
    println!(
        "would anonymize {} users (the admin is re-keyed in place) and neutralise {} integrations",
        plan.users_to_anonymize, plan.integrations_to_neutralise
    );
    for step in &plan.databases {
        println!("would {step}");
    }
    if !plan.target_marked {
        println!(
            "database {} is not marked as a refresh target: `run` would refuse (see init-target)",
            config.database.name
        );
    }
}

async fn init_target(config: &Config) -> anyhow::Result<Exit> {
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await?;
    markers::mark(&server, &client, &config.database.name).await?;
    println!(
        "marked database {} on {} as a refresh target",
        config.database.name,
        server.redacted()
    );
    if config.media.enabled {
        // Mirror::new refuses a target that is the source: never mark production's bucket.
        let mirror = Mirror::new(&config.media)?;
        media::write_marker(mirror.target()).await?;
        println!(
            "marked s3://{} at {} as a media target ({})",
            mirror.target().name(),
            mirror.target().endpoint(),
            media::MARKER_KEY
        );
    }
    Ok(Exit::Success)
}

async fn rollback(config: &Config) -> anyhow::Result<Exit> {
    let run_id = refresh::new_run_id();
    let lock = RunLock::acquire(&config.lock_file(), &run_id).map_err(lock_error)?;
    if let Some(recovered) = recovery::recover(config, &lock).await? {
        StateFile::in_dir(&config.daemon.state_dir).record_recovery(&recovered);
        println!("{}", recovered.summary());
    }
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await?;
    let name = config.database.name.as_str();
    let previous = config.previous_db();
    if !server.exists(&client, &previous).await? {
        anyhow::bail!("there is no {previous} to roll back to");
    }
    let parked = format!("{name}__rollback");
    let renames: Vec<(&str, &str)> = if server.exists(&client, name).await? {
        vec![(name, &parked), (&previous, name), (&parked, &previous)]
    } else {
        vec![(&previous, name)]
    };
    let journal = Journal::new(&config.daemon.state_dir, &run_id);
    let swap = cutover::Swap {
        label: "rollback",
        renames: &renames,
        scratch: None,
    };
    let done = cutover::run(config, &server, &client, &journal, &swap).await;
    journal.finish();
    let done = done?;
    println!(
        "rolled back: the previous data is live as {name} again, the replaced data is kept as \
         {previous} (maintenance {:.1}s, redis {})",
        done.maintenance_seconds,
        if done.redis_flushed {
            "flushed"
        } else {
            "not flushed"
        }
    );
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct Status {
    running: Option<crate::state::CurrentRun>,
    /// The daemon's own view, when one answers on the control socket.
    daemon: Option<DaemonStatus>,
    /// Why the daemon could not be asked (not: because none is running).
    daemon_error: Option<String>,
    last: Option<crate::report::RunReport>,
    maintenance_flag: Option<serde_json::Value>,
    previous_database: String,
    previous_kept: Option<bool>,
    previous_error: Option<String>,
    /// The last recovery from a run that died.
    recovered: Option<crate::journal::Recovery>,
}

async fn status(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let state = StateFile::in_dir(&config.daemon.state_dir).read()?;
    // A current run recorded by a process that no longer holds the lock ended abruptly.
    let running = state
        .current
        .filter(|_| RunLock::is_held(&config.lock_file()));
    let socket = &config.daemon.control_socket;
    let daemon = match control::Client::connect(socket).await {
        Ok(client) => client
            .status()
            .await
            .map(Some)
            .map_err(|e| format!("{e:#}")),
        Err(e) if control::nobody_listening(&e) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    let (daemon, daemon_error) = match daemon {
        Ok(daemon) => (daemon, None),
        Err(e) => (None, Some(format!("{}: {e}", socket.display()))),
    };
    // The daemon's view of its own run has live progress.
    let running = daemon.as_ref().and_then(|d| d.running.clone()).or(running);
    let flag = maintenance::read(&config.flag_file()).map(|f| match f {
        Ok(contents) => serde_json::to_value(contents).expect("serializable"),
        Err(e) => serde_json::json!({ "unreadable": e }),
    });
    let server = Server::new(&config.database.url);
    let previous = config.previous_db();
    let kept = match server.connect(None).await {
        Ok(client) => server
            .exists(&client, &previous)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let status = Status {
        running,
        daemon,
        daemon_error,
        last: state.last,
        maintenance_flag: flag,
        previous_database: previous,
        previous_kept: kept.as_ref().ok().copied(),
        previous_error: kept.err(),
        recovered: state.recovered,
    };
    if json {
        print_json(&status)?;
        return Ok(Exit::Success);
    }
    match &status.running {
        Some(r) => {
            let progress = r
                .progress
                .as_ref()
                .map(|p| match p.total {
                    Some(total) => format!(
                        ", {} of {} ({})",
                        HumanBytes(p.done),
                        HumanBytes(total),
                        p.message
                    ),
                    None => format!(", {} ({})", HumanBytes(p.done), p.message),
                })
                .unwrap_or_default();
            let snapshot = r
                .snapshot
                .as_ref()
                .map(|s| format!(", snapshot {s}"))
                .unwrap_or_default();
            println!(
                "running: {} (pid {}), phase {}{progress}{snapshot}",
                r.run_id, r.pid, r.phase
            );
            if let Some(m) = &r.media {
                println!(
                    "media: listed {} source / {} target, copied {} of {} ({}), {} unchanged, \
                     deleted {}, {} failed, {:.0} objects/s",
                    m.listed_source,
                    m.listed_target,
                    m.copied,
                    m.to_copy,
                    HumanBytes(m.copied_bytes),
                    m.unchanged,
                    m.deleted,
                    m.failed,
                    m.objects_per_second
                );
            }
        }
        None => println!("running: no"),
    }
    match (&status.daemon, &status.daemon_error) {
        (Some(d), _) => {
            let next = match &d.next_run_local {
                Some(at) => format!("next refresh {at}"),
                None => "no next refresh".into(),
            };
            println!(
                "daemon: running (pid {}), schedule \"{}\" in {}, {next}",
                d.pid, d.schedule, d.time_zone
            );
        }
        (None, Some(e)) => println!("daemon: cannot ask it ({e})"),
        (None, None) => println!(
            "daemon: not running (nothing listens on {}); no scheduled refresh",
            socket.display()
        ),
    }
    match &status.last {
        Some(report) => println!(
            "last run:\n  {}",
            report.summary(config).replace('\n', "\n  ")
        ),
        None => println!("last run: none recorded"),
    }
    match &status.maintenance_flag {
        Some(flag) => println!("maintenance flag: RAISED {flag}"),
        None => println!("maintenance flag: not raised"),
    }
    match (&status.previous_kept, &status.previous_error) {
        (Some(true), _) => println!(
            "previous database: {} kept (rollback possible)",
            status.previous_database
        ),
        (Some(false), _) => println!("previous database: none"),
        (None, Some(e)) => println!("previous database: unknown ({e})"),
        (None, None) => {}
    }
    if let Some(recovered) = &status.recovered {
        println!("{}", recovered.summary());
    }
    Ok(Exit::Success)
}
