//! The outline's sections of figures: the snapshot, the timing, the data restored and
//! masked, the media mirror and the anonymization checks, as table rows and a few sentences.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use indicatif::HumanBytes;

use super::{Line, Section, Staging, row, seconds, text};
use crate::media::MediaReport;
use crate::report::RunReport;
use crate::snapshot::format_age;
use crate::util::counted;

pub(super) fn snapshot_section(report: &RunReport, now: DateTime<Utc>) -> Section {
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

pub(super) fn timing_section(report: &RunReport, total: f64) -> Section {
    let mut lines = vec![row([
        "started",
        &report
            .started_at
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    ])];
    for p in &report.phases {
        lines.push(row([&p.phase.to_string(), &seconds(p.seconds)]));
        for s in report.steps.iter().filter(|s| s.step.phase() == p.phase) {
            lines.push(row([&format!("  {}", s.step), &seconds(s.seconds)]));
        }
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

pub(super) fn data_section(staging: &Staging, report: &RunReport) -> Section {
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
                format!("is kept as {}", staging.previous_db)
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

pub(super) fn media_section(media: &MediaReport) -> Section {
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

pub(super) fn checks_section(report: &RunReport) -> Section {
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
            lines.push(row([&v.name, &v.detail]));
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

#[cfg(test)]
mod tests {
    use super::checks_section;
    use crate::report::RunReport;
    use crate::report::outline::{Line, row, text};
    use crate::verify::Finding;

    #[test]
    fn a_column_the_scan_found_two_ways_is_one_row() {
        let mut report = RunReport::new("r1".into());
        for (by, count) in [("column name", 3), ("sampled values", 2)] {
            report.pii_findings.push(Finding {
                table: "member".into(),
                column: "phone_number".into(),
                kind: "phone".into(),
                by: by.into(),
                count,
            });
        }
        let section = checks_section(&report);
        let rows: Vec<&Line> = section
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Row(_)))
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            rows[1],
            &row([
                "member.phone_number",
                "phone",
                "column name (3 values), sampled values (2 values)"
            ])
        );
        assert!(section.lines.contains(&text(
            "PII scan: 1 column possibly unmasked (values are not shown):"
        )));
    }
}
