//! The command line of the operator contract ([`args`]), and [`run`], which hands each command
//! to its file in `commands/`: those run the library and print what it returns.

/// `println!` for what a command shows: a name from the dump, an object key or a server's
/// message can hold control characters that would drive the terminal; they are escaped
/// ([`crate::logging::printable`]).
macro_rules! say {
    () => {
        println!()
    };
    ($($arg:tt)*) => {
        println!("{}", $crate::logging::printable(&format!($($arg)*)))
    };
}

mod args;
mod commands;

pub use args::{Cli, Command};

use serde::Serialize;

use crate::config::Config;
use crate::daemon;
use crate::error::Exit;
use crate::lock::LockError;
use crate::refresh::Options;

/// Runs one command; the returned code is the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Snapshots { limit } => {
            commands::snapshots::run(&config, limit, cli.json, cli.verbose).await
        }
        Command::Check => commands::check::run(&config, &cli.config, cli.json).await,
        Command::Plan { snapshot } => {
            commands::plan::run(&config, &snapshot, &Options::default(), cli.json).await
        }
        Command::Rules { snapshot, toml } => {
            commands::rules::run(&config, &snapshot, toml, cli.json).await
        }
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
                commands::plan::run(&config, &snapshot, &options, cli.json).await
            } else {
                commands::run::foreground(&config, &snapshot, &options, cli.json).await
            }
        }
        Command::InitTarget => commands::init_target::run(&config).await,
        Command::Rollback => commands::rollback::run(&config).await,
        Command::Status => commands::status::run(&config, cli.json).await,
        Command::Daemon => daemon::serve(&cli.config, config)
            .await
            .map(|()| Exit::Success)
            .map_err(Into::into),
        Command::Trigger { wait, snapshot } => {
            commands::run::trigger(&config, &snapshot, wait, cli.json).await
        }
    }
}

/// The `--json` document: one pretty-printed JSON value on stdout.
fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A held lock as its own error, so the exit code is 4.
fn lock_error(err: LockError) -> anyhow::Error {
    match err {
        LockError::Locked(locked) => locked.into(),
        other => other.into(),
    }
}
