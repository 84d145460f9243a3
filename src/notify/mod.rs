//! What people read of a run, all rendered from the run report's outline
//! ([`crate::report::outline`]): the operator's plain text ([`for_operator`]), and what is sent
//! out after every run, the summary email (plain text and HTML) and the chat webhooks
//! ([`webhook`]). Everything sent carries what the run report holds minus anything that could
//! quote production data ([`Recipients`]). The same channels carry the daemon's warning of a
//! new snapshot's unclassified columns ([`drift`], an outline of its own). A failure to send
//! is logged and counted, never a failed run.

mod drift;
mod email;
mod html;
mod text;
mod webhook;

use chrono::{DateTime, Utc};

use email::send;

use crate::config::Config;
use crate::drift::Drift;
use crate::report::RunReport;
use crate::report::outline::{Outline, Reader, Staging};
use crate::report::redact::Recipients;
use crate::state::StateFile;

/// One email: subject and the same content as text and HTML.
#[derive(Debug, Clone)]
pub struct Summary {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Tells every channel of `[notify]` how a run went.
pub async fn after_run(config: &Config, report: &RunReport) {
    let recipients = Recipients::new(config);
    tell(config, &outline(config, report, Utc::now(), &recipients)).await;
}

/// Warns every channel of `[notify]` that a new snapshot has columns no rule classifies (or
/// rules naming what it does not have), with the rules to add; `next_run` is the schedule's.
pub async fn drift(config: &Config, drift: &Drift, next_run: Option<DateTime<Utc>>) {
    let policy = config.anonymize.unclassified;
    tell(config, &drift::outline(drift, policy, next_run)).await;
}

/// Emails `outline` when `[notify]` has email, and posts it to each webhook whose `on` lists
/// its severity. Each attempt is counted by channel and result in the state file (the
/// metrics' notification counter); a failure is logged, and never changes a run's outcome.
async fn tell(config: &Config, outline: &Outline) {
    let Some(notify) = &config.notify else {
        return;
    };
    let mut results = Vec::new();
    if let Some(email) = notify.email() {
        let sent = send(email, &summary(outline)).await;
        match &sent {
            Ok(()) => tracing::info!(to = email.to.len(), "summary email sent"),
            Err(e) => tracing::warn!(error = %e, "the summary email could not be sent"),
        }
        results.push(("email".to_owned(), sent.is_ok()));
    }
    for (index, hook) in notify.webhook.iter().enumerate() {
        if !hook.on.contains(&outline.severity) {
            continue;
        }
        let sent = webhook::send(index, hook, outline).await;
        match &sent {
            Ok(()) => tracing::info!(index, kind = %hook.kind, "webhook message sent"),
            Err(e) => tracing::warn!(error = %e, "the webhook message could not be sent"),
        }
        results.push((hook.kind.to_string(), sent.is_ok()));
    }
    StateFile::in_dir(&config.daemon.state_dir).update(|s| {
        for (channel, sent) in &results {
            let result = if *sent { "sent" } else { "failed" };
            s.totals.add_notification(channel, result);
        }
    });
}

/// The report for the operator: its outline as plain text, the whole error included.
pub fn for_operator(config: &Config, report: &RunReport) -> String {
    text::render(&Outline::of(
        report,
        &staging(config),
        Utc::now(),
        Reader::Operator,
    ))
}

/// This host and the staging databases `config` names, as an outline names them.
fn staging(config: &Config) -> Staging {
    Staging {
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown host".into()),
        scratch_db: config.scratch_db(),
        previous_db: config.previous_db(),
    }
}

/// The outline of `report` as everyone it is sent to may read it; `now` dates the snapshot's
/// age.
fn outline(
    config: &Config,
    report: &RunReport,
    now: DateTime<Utc>,
    recipients: &Recipients,
) -> Outline {
    Outline::of(
        report,
        &staging(config),
        now,
        Reader::Recipients(recipients),
    )
}

/// The email of an outline.
fn summary(outline: &Outline) -> Summary {
    Summary {
        subject: format!("[staging-refresh] {}", outline.headline),
        text: text::render(outline),
        html: html::render(outline),
    }
}
