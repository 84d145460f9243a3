//! The warning a new snapshot's unclassified columns earn, as an outline: what the next
//! refresh will do about them, the columns table by table, the rules to paste and how to
//! make them count. It names tables, columns and types, never a value.

use chrono::{DateTime, Utc};

use crate::config::{Config, Unclassified};
use crate::drift::Drift;
use crate::report::Severity;
use crate::report::outline::{Line, Outline, Section, text};

pub fn outline(config: &Config, drift: &Drift, next_run: Option<DateTime<Utc>>) -> Outline {
    let name = &drift.snapshot;
    let columns = drift.unclassified.len();
    let when = match next_run {
        Some(at) => format!("The next refresh ({})", at.format("%Y-%m-%d %H:%M UTC")),
        None => "The next refresh".to_owned(),
    };
    let mut opening = vec![text(format!(
        "Production snapshot {name}, taken {}, has {columns} column(s) no masking rule \
         classifies.",
        drift.taken_at.format("%Y-%m-%d %H:%M UTC")
    ))];
    if columns > 0 {
        opening.push(text(match config.anonymize.unclassified {
            Unclassified::Fail => format!(
                "{when} will refuse this snapshot (anonymize.unclassified = \"fail\"): staging \
                 keeps its current data until rules classify them."
            ),
            Unclassified::Warn => format!(
                "{when} will keep their values as they are (anonymize.unclassified = \"warn\")."
            ),
        }));
    }
    let mut warnings: Vec<Line> = drift.by_table().into_iter().map(text).collect();
    if !drift.rules_for_nothing.is_empty() {
        warnings.push(text(format!(
            "Rules name what the snapshot does not have (renamed or dropped?): {}",
            drift.rules_for_nothing.join(", ")
        )));
    }
    let mut steps = Vec::new();
    if columns > 0 {
        steps.push(text(
            "Review these suggested rules (what the name and sampled values say, counts only), \
             add them under [anonymize] in the config, then reload the daemon, which classifies \
             the snapshot again:",
        ));
        steps.push(Line::Command(drift.rules_toml()));
        steps.push(Line::Command("systemctl reload staging-refresh".into()));
        steps.push(text(
            "They print again, with the rest of the snapshot's columns, with:",
        ));
        steps.push(Line::Command(format!(
            "staging-refresh rules --snapshot {name} --toml"
        )));
    } else {
        steps.push(text(
            "Fix or remove those rules in the config, then reload the daemon:",
        ));
        steps.push(Line::Command("systemctl reload staging-refresh".into()));
    }
    let what = if columns > 0 {
        format!("{columns} unclassified column(s)")
    } else {
        format!("{} rule(s) for nothing", drift.rules_for_nothing.len())
    };
    Outline {
        severity: Severity::Warning,
        headline: format!("SCHEMA DRIFT: {what} in {name}"),
        title: "Production's schema changed: new columns need masking rules".into(),
        sections: vec![
            Section {
                title: "",
                lines: opening,
            },
            Section {
                title: "Warnings",
                lines: warnings,
            },
            Section {
                title: "What to do",
                lines: steps,
            },
        ],
    }
}
