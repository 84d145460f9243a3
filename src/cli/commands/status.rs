//! `status`: the library's [`Status`] as text, or as the `--json` document.

use indicatif::HumanBytes;

use crate::cli::print_json;
use crate::config::Config;
use crate::error::Exit;
use crate::logging::one_line;
use crate::notify;
use crate::status::{self, Status};

pub async fn run(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let status = status::gather(config).await?;
    if json {
        print_json(&status)?;
    } else {
        print_text(config, &status);
    }
    Ok(Exit::Success)
}

fn print_text(config: &Config, status: &Status) {
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
            say!(
                "running: {} (pid {}), phase {}{progress}{snapshot}",
                r.run_id,
                r.pid,
                r.phase
            );
            if let Some(m) = &r.media {
                say!(
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
        None => say!("running: no"),
    }
    match (&status.daemon, &status.daemon_error) {
        (Some(d), _) => {
            let next = match &d.next_run_local {
                Some(at) => format!("next refresh {at}"),
                None => "no next refresh".into(),
            };
            say!(
                "daemon: running (pid {}), schedule \"{}\" in {}, {next}",
                d.pid,
                d.schedule,
                d.time_zone
            );
        }
        (None, Some(e)) => say!("daemon: cannot ask it ({e})"),
        (None, None) => say!(
            "daemon: not running (nothing listens on {}); no scheduled refresh",
            config.daemon.control_socket.display()
        ),
    }
    match &status.last {
        Some(report) => {
            say!("last run:");
            for line in notify::for_operator(config, report).lines() {
                match line {
                    "" => say!(),
                    line => say!("  {line}"),
                }
            }
        }
        None => say!("last run: none recorded"),
    }
    match &status.maintenance_flag {
        Some(flag) => say!("maintenance flag: RAISED {flag}"),
        None => say!("maintenance flag: not raised"),
    }
    match (&status.previous_kept, &status.previous_error) {
        (Some(true), _) => say!(
            "previous database: {} kept (rollback possible)",
            status.previous_database
        ),
        (Some(false), _) => say!("previous database: none"),
        (None, Some(e)) => say!("previous database: unknown ({e})"),
        (None, None) => {}
    }
    if let Some(recovered) = &status.recovered {
        say!("{}", recovered.summary());
    }
    match &status.drift {
        Some(drift) if drift.is_clean() => println!(
            "newest snapshot: every column of {} is classified (checked {})",
            drift.snapshot,
            drift.checked_at.format("%Y-%m-%d %H:%M UTC")
        ),
        Some(drift) => {
            println!(
                "newest snapshot: {} has {} UNCLASSIFIED column(s) (checked {}); the next \
                 refresh needs rules for them (`staging-refresh rules --snapshot {} --toml`):",
                drift.snapshot,
                drift.unclassified.len(),
                drift.checked_at.format("%Y-%m-%d %H:%M UTC"),
                drift.snapshot
            );
            for table in drift.by_table() {
                println!("  {}", one_line(&table));
            }
            if !drift.rules_for_nothing.is_empty() {
                println!(
                    "  rules naming what it does not have: {}",
                    one_line(&drift.rules_for_nothing.join(", "))
                );
            }
        }
        None => {}
    }
}
