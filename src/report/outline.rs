//! One outline of a run report: what happened, what staging serves now and what to do next,
//! as titled sections of sentences, commands and table rows. Every reader of a report renders
//! this same outline: `RunReport::summary` (the plain text here), the summary email's text and
//! HTML, and `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::HumanBytes;

use super::{Outcome, Phase, RunKind, RunReport, Severity, counted};
use crate::config::Config;
use crate::media::MediaReport;
use crate::snapshot::format_age;

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
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// The operator on the staging host: the whole error.
    Operator,
    /// Everyone an email or chat message reaches: the error without the server's values
    /// ([`RunReport::error_without_values`]), passed through this filter for what else can
    /// quote production data; failed checks' details pass through it too.
    Recipients(fn(&str) -> String),
}

impl Reader {
    /// The run's error as this reader sees it, and whether anything of it was withheld.
    fn error(self, report: &RunReport) -> Option<(String, bool)> {
        let error = report.error.as_deref()?;
        Some(match self {
            Reader::Operator => (error.to_owned(), false),
            Reader::Recipients(filter) => match &report.error_without_values {
                Some(without) => {
                    let shown = filter(without);
                    let withheld = shown != error;
                    (shown, withheld)
                }
                // A report recorded before the error was kept without its values.
                None => ("(not shown here)".to_owned(), true),
            },
        })
    }

    /// A text of our own (a check's detail) as this reader sees it.
    fn detail(self, detail: &str) -> String {
        match self {
            Reader::Operator => detail.to_owned(),
            Reader::Recipients(filter) => filter(detail),
        }
    }
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
    pub fn of(report: &RunReport, config: &Config, now: DateTime<Utc>, reader: Reader) -> Outline {
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
            lines: staging_now(config, report),
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
            sections.push(data_section(config, report));
        }
        if !report.verification.is_empty() || !report.pii_findings.is_empty() {
            sections.push(checks_section(report, reader));
        }
        if let Some(media) = &report.media {
            sections.push(media_section(media));
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown host".into());
        sections.push(Section {
            title: "",
            lines: vec![text(format!(
                "Run {} on {host}, staging-refresh {}.",
                report.run_id,
                env!("CARGO_PKG_VERSION")
            ))],
        });
        let what = match report.kind {
            RunKind::Refresh => "",
            RunKind::Rollback => "ROLLBACK ",
        };
        Outline {
            severity,
            headline: format!(
                "{what}{outcome}{phase}: {} ({})",
                snapshot.unwrap_or("no snapshot selected"),
                seconds(total)
            ),
            title: format!("Staging {} {outcome}{phase}", report.kind),
            sections,
        }
    }
}

/// What staging serves now, in a sentence or two.
fn staging_now(config: &Config, report: &RunReport) -> Vec<Line> {
    let name = report
        .snapshot
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or("(unknown)");
    let phase = report.failed_phase.unwrap_or(Phase::Prepare);
    let previous = config.previous_db();
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
            config.scratch_db()
        ))),
        Outcome::Cancelled => lines.push(text(format!(
            "The refresh was stopped by a signal in the {phase} phase, before the cutover. \
             Staging still serves its previous data, unchanged; the scratch database {} was \
             dropped.",
            config.scratch_db()
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

fn snapshot_section(report: &RunReport, now: DateTime<Utc>) -> Section {
    let lines = match &report.snapshot {
        Some(s) => vec![
            row(["name", &s.name]),
            row([
                "taken at",
                &format!(
                    "{} ({} ago)",
                    s.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    format_age((now - s.taken_at).to_std().unwrap_or_default())
                ),
            ]),
            row([
                "size",
                &format!(
                    "{}, checksum {}",
                    HumanBytes(s.size),
                    if s.checksum_verified {
                        "verified"
                    } else {
                        "not verified"
                    }
                ),
            ]),
        ],
        None => vec![text("No snapshot was selected.")],
    };
    Section {
        title: "Snapshot",
        lines,
    }
}

fn timing_section(report: &RunReport, total: f64) -> Section {
    let mut lines = vec![row([
        "started",
        &report
            .started_at
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    ])];
    for p in &report.phases {
        lines.push(row([&p.phase.to_string(), &seconds(p.seconds)]));
    }
    lines.push(row(["total", &seconds(total)]));
    lines.push(row([
        "maintenance window",
        &match report.maintenance_seconds {
            Some(m) => format!("{} (staging was unavailable this long)", seconds(m)),
            None if report.snapshot_live => "unknown: the cutover did not finish".into(),
            None => "none: staging stayed up".into(),
        },
    ]));
    Section {
        title: "Timing",
        lines,
    }
}

fn data_section(config: &Config, report: &RunReport) -> Section {
    let mut lines = vec![row(["table", "rows restored", "rows anonymized"])];
    let tables: BTreeSet<&String> = report
        .rows_restored
        .keys()
        .chain(report.rows_anonymized.keys())
        .collect();
    let count = |map: &BTreeMap<String, u64>, table: &String| {
        map.get(table).map(u64::to_string).unwrap_or_default()
    };
    for table in tables {
        lines.push(Line::Row(vec![
            table.clone(),
            count(&report.rows_restored, table),
            count(&report.rows_anonymized, table),
        ]));
    }
    lines.push(Line::Row(vec![
        "total".into(),
        report.rows_restored.values().sum::<u64>().to_string(),
        report.rows_anonymized.values().sum::<u64>().to_string(),
    ]));
    if !report.masked_values.is_empty() || !report.columns_kept.is_empty() {
        let columns: usize = report.masked_values.values().map(BTreeMap::len).sum();
        let values: u64 = report.masked_values.values().flat_map(|c| c.values()).sum();
        lines.push(text(format!(
            "{values} values masked in {} before they reached staging; {} emptied; {} kept \
             as not personal.",
            counted(columns, "column"),
            counted(report.tables_emptied.len(), "table"),
            counted(report.columns_kept.len(), "column")
        )));
    }
    if !report.tables_emptied.is_empty() {
        let tables: Vec<String> = report
            .tables_emptied
            .iter()
            .map(|(t, n)| format!("{t} ({n} rows)"))
            .collect();
        lines.push(text(format!(
            "Restored without rows: {}.",
            tables.join(", ")
        )));
    }
    lines.push(text(format!(
        "{} of SQL restored from {} downloaded.",
        HumanBytes(report.bytes_restored),
        HumanBytes(report.bytes_downloaded)
    )));
    if report.maintenance_seconds.is_some() {
        lines.push(text(format!(
            "Redis {}; the replaced database {}.",
            if report.redis_flushed {
                "was flushed"
            } else {
                "was not flushed (none configured)"
            },
            if report.previous_kept {
                format!("is kept as {}", config.previous_db())
            } else {
                "was dropped".into()
            }
        )));
    }
    Section {
        title: "Data",
        lines,
    }
}

fn media_section(media: &MediaReport) -> Section {
    let mut lines = vec![
        row(["from", &media.source]),
        row(["to", &media.target]),
        row([
            "copied",
            &format!(
                "{} objects, {}",
                media.copied,
                HumanBytes(media.copied_bytes)
            ),
        ]),
        row(["unchanged", &media.skipped.to_string()]),
        row([
            "deleted",
            &match &media.deletes_refused {
                Some(reason) => format!("none: {reason}"),
                None => media.deleted.to_string(),
            },
        ]),
        row(["retried requests", &media.retries.to_string()]),
        row([
            "time",
            &format!(
                "copy {}, delete {}",
                seconds(media.copy_seconds),
                seconds(media.delete_seconds)
            ),
        ]),
    ];
    if media.failed > 0 {
        // Object keys can name customers' files: the outline gives the count, `status --json`
        // the keys.
        lines.push(text(format!(
            "{} objects FAILED; `staging-refresh status --json` lists their keys and errors.",
            media.failed
        )));
    }
    Section {
        title: "Media",
        lines,
    }
}

fn checks_section(report: &RunReport, reader: Reader) -> Section {
    let mut lines = Vec::new();
    let failed: Vec<_> = report.verification.iter().filter(|v| !v.ok).collect();
    if report.verification.is_empty() {
        lines.push(text("Verification did not complete."));
    } else if failed.is_empty() {
        lines.push(text(format!(
            "Verification: all {} checks passed.",
            report.verification.len()
        )));
    } else {
        lines.push(text(format!(
            "Verification FAILED: {} of {} checks.",
            failed.len(),
            report.verification.len()
        )));
        for v in failed {
            lines.push(row([&v.name, &reader.detail(&v.detail)]));
        }
    }
    if report.pii_findings.is_empty() {
        lines.push(text("PII scan: nothing unmasked found."));
    } else {
        lines.push(text(format!(
            "PII scan: {} possibly unmasked (values are not shown):",
            counted(report.pii_columns(), "column")
        )));
        lines.push(row(["column", "looks like", "found by"]));
        // One row per column, however many ways it was found.
        let mut columns: BTreeMap<String, (BTreeSet<&str>, Vec<String>)> = BTreeMap::new();
        for f in &report.pii_findings {
            let (kinds, by) = columns
                .entry(format!("{}.{}", f.table, f.column))
                .or_default();
            kinds.insert(&f.kind);
            by.push(format!("{} ({} values)", f.by, f.count));
        }
        for (column, (kinds, by)) in columns {
            lines.push(Line::Row(vec![
                column,
                kinds.into_iter().collect::<Vec<_>>().join(", "),
                by.join(", "),
            ]));
        }
    }
    Section {
        title: "Anonymization checks",
        lines,
    }
}

/// The plain text: the title, then each section under its title, indented, its rows aligned
/// in columns and its commands indented further.
impl fmt::Display for Outline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        for section in &self.sections {
            writeln!(f)?;
            if !section.title.is_empty() {
                writeln!(f, "{}", section.title)?;
            }
            let indent = if section.title.is_empty() { "" } else { "  " };
            let widths = column_widths(&section.lines);
            for line in &section.lines {
                match line {
                    Line::Text(t) => writeln!(f, "{indent}{t}")?,
                    Line::Command(c) => writeln!(f, "{indent}    {c}")?,
                    Line::Row(cells) => {
                        let mut cols: Vec<String> = cells
                            .iter()
                            .zip(&widths)
                            .map(|(c, w)| format!("{c:<w$}"))
                            .collect();
                        if let Some(last) = cols.last_mut() {
                            *last = last.trim_end().to_owned();
                        }
                        writeln!(f, "{indent}{}", cols.join("  "))?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn column_widths(lines: &[Line]) -> Vec<usize> {
    let mut widths = Vec::new();
    for line in lines {
        if let Line::Row(cells) = line {
            widths.resize(widths.len().max(cells.len()), 0);
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    widths
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

#[cfg(test)]
mod tests {
    use super::{Line, Reader, checks_section};
    use crate::report::RunReport;
    use crate::verify::Finding;

    #[test]
    fn a_column_the_scan_found_two_ways_is_one_row() {
        let mut report = RunReport::new("r1".into());
        for (by, count) in [("column name", 3), ("sampled values", 2)] {
            report.pii_findings.push(Finding {
                table: "user".into(),
                column: "phone_number".into(),
                kind: "phone".into(),
                by: by.into(),
                count,
            });
        }
        let section = checks_section(&report, Reader::Operator);
        let rows: Vec<&Line> = section
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Row(_)))
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            rows[1],
            &super::row([
                "user.phone_number",
                "phone",
                "column name (3 values), sampled values (2 values)"
            ])
        );
        assert!(section.lines.contains(&super::text(
            "PII scan: 1 column possibly unmasked (values are not shown):"
        )));
    }

    #[test]
    fn text_aligns_rows_and_indents_commands() {
        assert_eq!(
            super::example().to_string(),
            "x\n\nT\n  a       <b>\n  longer  c & d\n      staging-refresh run\n"
        );
    }
}
