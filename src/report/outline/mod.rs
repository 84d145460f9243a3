//! One outline of a run report: what happened, what staging serves now and what to do next,
//! as titled sections of sentences, commands and table rows. Every reader of a report renders
//! this same outline: the operator's plain text (`run`, `status`), the summary email's text and
//! HTML, and the chat webhooks. The outline is built from the report and what the caller says
//! of the staging host ([`Staging`]); the renderers live with what sends them (`notify`).

mod advice;
mod figures;

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::redact::Recipients;
use super::{Outcome, Phase, RunKind, RunReport, Severity};
use crate::snapshot::format_age;
use figures::{checks_section, data_section, media_section, snapshot_section, timing_section};

/// One line of a section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Line {
    Text(String),
    /// A command to run, shown as code.
    Command(String),
    /// Cells of a table; consecutive rows form one table.
    Row(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    /// Empty for the untitled opening and closing sections.
    pub title: &'static str,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outline {
    /// Whether the run was ok, ok with warnings or failed: the colour of what renders it.
    pub severity: Severity,
    /// One line for a subject or a chat message: outcome, failed phase, snapshot, duration.
    pub headline: String,
    /// The heading above the sections.
    pub title: String,
    pub sections: Vec<Section>,
}

/// Who reads an outline, which decides what it shows of errors.
#[derive(Clone, Copy)]
pub enum Reader<'a> {
    /// The operator on the staging host: the whole error (values withheld from the server's
    /// messages, as the log and the state file keep it).
    Operator,
    /// Everyone an email or chat message reaches: the error built from its structure alone
    /// ([`RunReport::error_without_values`]), and every line as [`Recipients`] shows it.
    Recipients(&'a Recipients),
}

impl Reader<'_> {
    /// The run's error as this reader sees it, and whether anything of it was withheld.
    fn error(self, report: &RunReport) -> Option<(String, bool)> {
        let error = report.error.as_deref()?;
        Some(match self {
            Reader::Operator => (error.to_owned(), false),
            Reader::Recipients(_) => match &report.error_without_values {
                Some(without) => (without.clone(), without != error),
                // A report recorded before the error was kept without its values.
                None => ("(not shown here)".to_owned(), true),
            },
        })
    }
}

/// What an outline names that its report does not hold, given by the caller: the host the
/// run ran on and the staging databases a run leaves behind.
#[derive(Debug, Clone)]
pub struct Staging {
    pub host: String,
    /// The scratch database a failed refresh dropped.
    pub scratch_db: String,
    /// The database the replaced data is kept as, for `rollback`.
    pub previous_db: String,
}

pub fn text(s: impl Into<String>) -> Line {
    Line::Text(s.into())
}

pub fn row<const N: usize>(cells: [&str; N]) -> Line {
    Line::Row(cells.iter().map(|c| c.to_string()).collect())
}

/// A duration for a person: hundredths under 10s, tenths under a minute, then minutes/hours.
fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format_age(Duration::from_secs_f64(s))
    }
}

impl Outline {
    /// The outline of `report` for `reader`; `now` dates the snapshot's age.
    pub fn of(
        report: &RunReport,
        staging: &Staging,
        now: DateTime<Utc>,
        reader: Reader,
    ) -> Outline {
        let snapshot = report.snapshot.as_ref().map(|s| s.name.as_str());
        let total = report
            .finished_at
            .map(|f| (f - report.started_at).num_milliseconds() as f64 / 1000.0)
            .unwrap_or_else(|| report.phases.iter().map(|p| p.seconds).sum());
        let phase = match (report.outcome, report.failed_phase) {
            (Outcome::Ok, _) | (_, None) => String::new(),
            (_, Some(p)) => format!(" in {p}"),
        };
        let severity = report.severity();
        let outcome = match severity {
            Severity::Warning => severity.to_string(),
            _ => report.outcome.to_string(),
        }
        .to_uppercase();
        let mut sections = vec![Section {
            title: "",
            lines: staging_now(staging, report),
        }];
        let warnings = report.warnings();
        if !warnings.is_empty() {
            sections.push(Section {
                title: "Warnings",
                lines: warnings.into_iter().map(text).collect(),
            });
        }
        if let Some((error, withheld)) = reader.error(report) {
            let mut lines = vec![text(error)];
            if withheld {
                lines.push(text(
                    "(Parts that can quote production data are withheld here; \
                     `staging-refresh status` on the staging host shows the whole error.)",
                ));
            }
            sections.push(Section {
                title: "Error",
                lines,
            });
            sections.push(Section {
                title: "What to do",
                lines: next_steps(report),
            });
        }
        sections.push(snapshot_section(report, now));
        sections.push(timing_section(report, total));
        if !report.rows_restored.is_empty() || !report.rows_anonymized.is_empty() {
            sections.push(data_section(staging, report));
        }
        if !report.verification.is_empty() || !report.pii_findings.is_empty() {
            sections.push(checks_section(report));
        }
        if let Some(media) = &report.media {
            sections.push(media_section(media));
        }
        sections.push(Section {
            title: "",
            lines: vec![text(format!(
                "Run {} on {}, staging-refresh {}.",
                report.run_id,
                staging.host,
                env!("CARGO_PKG_VERSION")
            ))],
        });
        let what = match report.kind {
            RunKind::Refresh => "",
            RunKind::Rollback => "ROLLBACK ",
        };
        let outline = Outline {
            severity,
            headline: format!(
                "{what}{outcome}{phase}: {} ({})",
                snapshot.unwrap_or("no snapshot selected"),
                seconds(total)
            ),
            title: format!("Staging {} {outcome}{phase}", report.kind),
            sections,
        };
        match reader {
            Reader::Operator => outline,
            Reader::Recipients(recipients) => outline.shown_to(recipients),
        }
    }

    /// Every line as `recipients` see it.
    fn shown_to(mut self, recipients: &Recipients) -> Outline {
        self.headline = recipients.text(&self.headline);
        self.title = recipients.text(&self.title);
        for line in self.sections.iter_mut().flat_map(|s| s.lines.iter_mut()) {
            match line {
                Line::Text(t) | Line::Command(t) => *t = recipients.text(t),
                Line::Row(cells) => cells.iter_mut().for_each(|c| *c = recipients.text(c)),
            }
        }
        self
    }
}

/// What staging serves now, in a sentence or two.
fn staging_now(staging: &Staging, report: &RunReport) -> Vec<Line> {
    let name = report
        .snapshot
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or("(unknown)");
    let phase = report.failed_phase.unwrap_or(Phase::Prepare);
    let previous = &staging.previous_db;
    let mut lines = Vec::new();
    let rollback = report.rollback.clone().unwrap_or_default();
    let unknown = |s: Option<String>| s.unwrap_or_else(|| "(unknown snapshot)".into());
    match report.outcome {
        Outcome::Ok if report.kind == RunKind::Rollback => lines.push(text(format!(
            "Staging was rolled back: it serves the previous data again ({}); the data it \
             replaced ({}) is kept as database {previous}, and a second \
             `staging-refresh rollback` swaps it back.",
            unknown(rollback.to),
            unknown(rollback.from)
        ))),
        _ if report.kind == RunKind::Rollback => lines.push(text(format!(
            "The rollback failed; staging serves {} as before, unless the error says the swap \
             happened.",
            unknown(rollback.from)
        ))),
        Outcome::Ok if report.snapshot.is_none() => lines.push(text(
            "Staging's media bucket now mirrors production's; the database was left alone \
             (--skip-db).",
        )),
        Outcome::Ok => {
            lines.push(text(format!(
                "Staging now serves production snapshot {name}, anonymized."
            )));
            if report.previous_kept {
                lines.push(text(format!(
                    "The data it replaced is kept as database {previous}; \
                     `staging-refresh rollback` swaps it back."
                )));
            }
        }
        Outcome::Failed | Outcome::Cancelled if report.snapshot_live => lines.push(text(format!(
            "The refresh failed in the {phase} phase, after the new data was swapped in: staging \
             serves the new snapshot {name}, anonymized, but did not finish cleanly (see the \
             error below)."
        ))),
        Outcome::Failed => lines.push(text(format!(
            "The refresh failed in the {phase} phase. Staging still serves its previous data, \
             unchanged; the scratch database {} was dropped.",
            staging.scratch_db
        ))),
        Outcome::Cancelled => lines.push(text(format!(
            "The refresh was stopped by a signal in the {phase} phase, before the cutover. \
             Staging still serves its previous data, unchanged; the scratch database {} was \
             dropped.",
            staging.scratch_db
        ))),
        Outcome::Refused => lines.push(text(
            "A guard refused the refresh before anything changed. Staging still serves its \
             previous data, unchanged.",
        )),
    }
    if let Some(recovered) = &report.recovered {
        lines.push(text(format!(
            "An earlier run had died; this one first put staging back in order: {}.",
            recovered.summary()
        )));
    }
    lines
}

fn next_steps(report: &RunReport) -> Vec<Line> {
    let retry = match &report.snapshot {
        Some(s) => format!("staging-refresh run --snapshot {}", s.name),
        None => "staging-refresh run".into(),
    };
    if let Some(cause) = &report.cause {
        let snapshot = report.snapshot.as_ref().map(|s| s.name.as_str());
        return advice::advice(cause, snapshot, &retry);
    }
    let mut lines = Vec::new();
    match report.outcome {
        _ if report.kind == RunKind::Rollback => {
            lines.push(text(
                "`staging-refresh status` shows whether a previous database is kept; once the \
                 cause is fixed, roll back again:",
            ));
            lines.push(Line::Command("staging-refresh rollback".into()));
        }
        Outcome::Refused => {
            lines.push(text(
                "Fix what the error names, check the configuration and targets, then run again:",
            ));
            lines.push(Line::Command("staging-refresh check".into()));
            lines.push(Line::Command("staging-refresh run".into()));
        }
        _ if report.failed_phase == Some(Phase::Media) && report.maintenance_seconds.is_some() => {
            lines.push(text(
                "The database refresh is done and live; only media objects failed. Once the \
                 cause is fixed, mirror the media bucket again on its own:",
            ));
            lines.push(Line::Command("staging-refresh run --skip-db".into()));
        }
        _ if report.snapshot_live => {
            lines.push(text(
                "Check staging; `staging-refresh status` shows the maintenance flag and whether \
                 the previous database is kept. To put the previous data back:",
            ));
            lines.push(Line::Command("staging-refresh rollback".into()));
        }
        _ => {
            lines.push(text(
                "Fix the cause, then retry (the same snapshot, or `--snapshot latest`):",
            ));
            lines.push(Line::Command(retry));
            lines.push(text("or, through the daemon:"));
            lines.push(Line::Command("systemctl start staging-refresh@now".into()));
        }
    }
    lines
}

/// A small outline with every kind of line, for the renderers' tests.
#[cfg(test)]
pub(crate) fn example() -> Outline {
    Outline {
        severity: Severity::Ok,
        headline: String::new(),
        title: "x".into(),
        sections: vec![Section {
            title: "T",
            lines: vec![
                row(["a", "<b>"]),
                row(["longer", "c & d"]),
                Line::Command("staging-refresh run".into()),
            ],
        }],
    }
}
