//! The summary email after every run: what happened, what staging serves now and what to do
//! next, as plain text and HTML built from one outline. It carries what the run report holds
//! minus anything that could quote production data: PII findings name table and column, and
//! PostgreSQL's DETAIL/CONTEXT (which quote rows), type-error values and email addresses are
//! withheld from the error. An SMTP failure is logged and counted, never a failed run.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::HumanBytes;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use regex::{Captures, Regex};

use crate::config::{Config, NotifyConfig};
use crate::media::MediaReport;
use crate::report::{Outcome, Phase, RunReport};
use crate::snapshot::format_age;
use crate::state::StateFile;

/// Connecting, and each SMTP command, give up after this long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One email: subject and the same content as text and HTML.
#[derive(Debug, Clone)]
pub struct Summary {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify.smtp_url: {0}")]
    Url(lettre::transport::smtp::Error),
    #[error("{key}: {address:?} is not a usable address: {message}")]
    Address {
        key: &'static str,
        address: String,
        message: String,
    },
    #[error("building the email: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("sending through notify.smtp_url: {0}")]
    Send(lettre::transport::smtp::Error),
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

/// Sends `summary` to `notify.to`: plain SMTP, STARTTLS (`smtp://...?tls=required`) or
/// implicit TLS (`smtps://`), as the URL says.
pub async fn send(notify: &NotifyConfig, summary: &Summary) -> Result<(), NotifyError> {
    let mailbox = |key: &'static str, address: &str| {
        address
            .parse::<Mailbox>()
            .map_err(|e| NotifyError::Address {
                key,
                address: address.to_owned(),
                message: e.to_string(),
            })
    };
    let mut message = Message::builder()
        .from(mailbox("notify.from", &notify.from)?)
        .subject(&summary.subject);
    for to in &notify.to {
        message = message.to(mailbox("notify.to", to)?);
    }
    let message = message.multipart(MultiPart::alternative_plain_html(
        summary.text.clone(),
        summary.html.clone(),
    ))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(notify.smtp_url.expose())
        .map_err(NotifyError::Url)?
        .timeout(Some(SMTP_TIMEOUT))
        .build();
    transport.send(message).await.map_err(NotifyError::Send)?;
    Ok(())
}

/// One line of the outline.
enum Line {
    Text(String),
    /// A command to run, shown as code.
    Command(String),
    /// Cells of a table; consecutive rows form one table.
    Row(Vec<String>),
}

struct Section {
    title: &'static str,
    lines: Vec<Line>,
}

fn text(s: impl Into<String>) -> Line {
    Line::Text(s.into())
}

fn row<const N: usize>(cells: [&str; N]) -> Line {
    Line::Row(cells.iter().map(|c| c.to_string()).collect())
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format_age(Duration::from_secs_f64(s))
    }
}

fn outcome_word(outcome: Outcome) -> String {
    outcome.to_string().to_uppercase()
}

/// The email for `report`; `now` dates the snapshot's age.
pub fn summary(config: &Config, report: &RunReport, now: DateTime<Utc>) -> Summary {
    let snapshot = report.snapshot.as_ref().map(|s| s.name.as_str());
    let total = report
        .finished_at
        .map(|f| (f - report.started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or_else(|| report.phases.iter().map(|p| p.seconds).sum());
    let phase = match (report.outcome, report.failed_phase) {
        (Outcome::Ok, _) | (_, None) => String::new(),
        (_, Some(p)) => format!(" in {p}"),
    };
    let subject = format!(
        "[staging-refresh] {}{phase}: {} ({})",
        outcome_word(report.outcome),
        snapshot.unwrap_or("no snapshot selected"),
        seconds(total)
    );
    let mut sections = vec![Section {
        title: "",
        lines: staging_now(config, report),
    }];
    if let Some(error) = &report.error {
        let (shown, withheld) = without_values(error);
        let mut lines = vec![text(shown)];
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
        sections.push(checks_section(report));
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
    let title = format!("Staging refresh {}{phase}", outcome_word(report.outcome));
    Summary {
        text: render_text(&title, &sections),
        html: render_html(&title, &sections),
        subject,
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
    match report.outcome {
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
    let tables: std::collections::BTreeSet<&String> = report
        .rows_restored
        .keys()
        .chain(report.rows_anonymized.keys())
        .collect();
    let count = |map: &std::collections::BTreeMap<String, u64>, table: &String| {
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
        // Object keys can name customers' files: the email gives the count, `status` the keys.
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

fn checks_section(report: &RunReport) -> Section {
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
            lines.push(row([&v.name, &without_values(&v.detail).0]));
        }
    }
    if report.pii_findings.is_empty() {
        lines.push(text("PII scan: nothing unmasked found."));
    } else {
        lines.push(text(format!(
            "PII scan: {} possible unmasked columns (values are not shown):",
            report.pii_findings.len()
        )));
        lines.push(row(["column", "looks like", "values", "found by"]));
        for f in &report.pii_findings {
            lines.push(Line::Row(vec![
                format!("{}.{}", f.table, f.column),
                f.kind.clone(),
                f.count.to_string(),
                f.by.clone(),
            ]));
        }
    }
    Section {
        title: "Anonymization checks",
        lines,
    }
}

static TYPE_ERROR_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(for (?:type|enum) [^:"]+: )"(?:[^"]|"")*""#).expect("valid regex")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(://)?[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
        .expect("valid regex")
});

/// `error` without what can quote production data: PostgreSQL's DETAIL and CONTEXT (rows,
/// key values), the value in a type error, email addresses (a URL's user@host stays). Also
/// says whether anything was withheld.
fn without_values(error: &str) -> (String, bool) {
    let mut shown = error;
    for part in ["; DETAIL: ", "; CONTEXT: "] {
        if let Some(at) = shown.find(part) {
            shown = &shown[..at];
        }
    }
    let typed = TYPE_ERROR_VALUE.replace_all(shown, r#"${1}"[value withheld]""#);
    let masked = EMAIL.replace_all(&typed, |c: &Captures| match c.get(1) {
        Some(_) => c[0].to_owned(),
        None => "[email address withheld]".to_owned(),
    });
    let withheld = masked != error;
    (masked.into_owned(), withheld)
}

fn render_text(title: &str, sections: &[Section]) -> String {
    let mut out = format!("{title}\n");
    for section in sections {
        out.push('\n');
        if !section.title.is_empty() {
            out.push_str(section.title);
            out.push('\n');
        }
        let indent = if section.title.is_empty() { "" } else { "  " };
        let widths = column_widths(&section.lines);
        for line in &section.lines {
            match line {
                Line::Text(t) => out.push_str(&format!("{indent}{t}\n")),
                Line::Command(c) => out.push_str(&format!("{indent}    {c}\n")),
                Line::Row(cells) => {
                    let mut cols: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect();
                    if let Some(last) = cols.last_mut() {
                        *last = last.trim_end().to_owned();
                    }
                    out.push_str(&format!("{indent}{}\n", cols.join("  ")));
                }
            }
        }
    }
    out
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn render_html(title: &str, sections: &[Section]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n\
         <body style=\"font-family: sans-serif\">\n<h2>{t}</h2>\n",
        t = escape(title)
    );
    for section in sections {
        if !section.title.is_empty() {
            out.push_str(&format!("<h3>{}</h3>\n", escape(section.title)));
        }
        let mut in_table = false;
        for line in &section.lines {
            let is_row = matches!(line, Line::Row(_));
            if is_row != in_table {
                out.push_str(if is_row { "<table>\n" } else { "</table>\n" });
                in_table = is_row;
            }
            match line {
                Line::Text(t) => out.push_str(&format!("<p>{}</p>\n", escape(t))),
                Line::Command(c) => {
                    out.push_str(&format!("<pre><code>{}</code></pre>\n", escape(c)))
                }
                Line::Row(cells) => {
                    out.push_str("<tr>");
                    for c in cells {
                        out.push_str(&format!(
                            "<td style=\"padding-right: 1em\">{}</td>",
                            escape(c)
                        ));
                    }
                    out.push_str("</tr>\n");
                }
            }
        }
        if in_table {
            out.push_str("</table>\n");
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_lose_what_can_quote_production_data() {
        let (shown, withheld) = without_values(
            "restoring x: dump line 9: ERROR: could not create unique index \"user_email_key\"; \
             DETAIL: Key (email)=(jane@example.org) is duplicated.; CONTEXT: COPY user, line 3",
        );
        assert_eq!(
            shown,
            "restoring x: dump line 9: ERROR: could not create unique index \"user_email_key\""
        );
        assert!(withheld);

        let (shown, _) = without_values(
            "dump line 4: ERROR: invalid input syntax for type uuid: \"jane's \"\"id\"\"\"",
        );
        assert_eq!(
            shown,
            "dump line 4: ERROR: invalid input syntax for type uuid: \"[value withheld]\""
        );

        let (shown, _) = without_values(
            "no user has the production admin email \"boss@shootify.io\" \
             on postgres://refresh@db.internal:5432/postgres",
        );
        assert_eq!(
            shown,
            "no user has the production admin email \"[email address withheld]\" \
             on postgres://refresh@db.internal:5432/postgres"
        );

        let plain = "relation \"no_such_table\" does not exist";
        assert_eq!(without_values(plain), (plain.to_owned(), false));
    }

    #[test]
    fn html_escapes_and_text_aligns() {
        let sections = [Section {
            title: "T",
            lines: vec![
                row(["a", "<b>"]),
                row(["longer", "c & d"]),
                Line::Command("staging-refresh run".into()),
            ],
        }];
        let html = render_html("x", &sections);
        assert!(
            html.contains("<td style=\"padding-right: 1em\">&lt;b&gt;</td>"),
            "{html}"
        );
        assert!(html.contains("c &amp; d"));
        assert!(
            html.contains("</table>\n<pre><code>staging-refresh run</code></pre>"),
            "{html}"
        );
        let text = render_text("x", &sections);
        assert!(
            text.contains("\n  a       <b>\n  longer  c & d\n      staging-refresh run\n"),
            "{text}"
        );
    }
}
