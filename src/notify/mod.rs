//! What is sent out after every run: the summary email, built from the run report's outline
//! ([`crate::report::outline`]) as plain text and HTML. Everything sent carries what the run
//! report holds minus anything that could quote production data ([`redact`]). A failure to
//! send is logged and counted, never a failed run.

mod email;
mod html;
mod redact;

use chrono::{DateTime, Utc};

use email::send;

use crate::config::Config;
use crate::report::RunReport;
use crate::report::outline::{Outline, Reader};
use crate::state::StateFile;

/// One email: subject and the same content as text and HTML.
#[derive(Debug, Clone)]
pub struct Summary {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Emails the run's summary when `[notify]` is configured. A failure is logged and counted in
/// the state file (the metrics' email failure counter), and never changes the run's outcome.
pub async fn after_run(config: &Config, report: &RunReport) {
    let Some(notify) = &config.notify else {
        return;
    };
    match send(notify, &summary(config, report, Utc::now())).await {
        Ok(()) => tracing::info!(to = notify.to.len(), "summary email sent"),
        Err(e) => {
            tracing::warn!(error = %e, "the summary email could not be sent");
            StateFile::in_dir(&config.daemon.state_dir).update(|s| s.totals.email_failures += 1);
        }
    }
}

/// The outline of `report` as everyone it is sent to may read it; `now` dates the snapshot's
/// age.
fn outline(config: &Config, report: &RunReport, now: DateTime<Utc>) -> Outline {
    Outline::of(
        report,
        config,
        now,
        Reader::Recipients(redact::without_values),
    )
}

/// The email for `report`; `now` dates the snapshot's age.
pub fn summary(config: &Config, report: &RunReport, now: DateTime<Utc>) -> Summary {
    let outline = outline(config, report, now);
    Summary {
        subject: format!("[staging-refresh] {}", outline.headline),
        text: outline.to_string(),
        html: html::render(&outline),
    }
}
