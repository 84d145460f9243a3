//! The warning a new snapshot's unclassified columns earn, as an outline: what the next
//! refresh will do about them, the columns table by table, the rules to paste and how to
//! make them count. It names tables, columns and types, never a value.

use chrono::{DateTime, Utc};

use crate::config::Unclassified;
use crate::drift::Drift;
use crate::report::Severity;
use crate::report::outline::{Line, Outline, Section, text};

/// The warning for `drift`; `policy` is `anonymize.unclassified`, `next_run` the schedule's.
pub fn outline(drift: &Drift, policy: Unclassified, next_run: Option<DateTime<Utc>>) -> Outline {
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
        opening.push(text(match policy {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::DriftColumn;

    fn drift(unclassified: Vec<DriftColumn>, rules_for_nothing: Vec<String>) -> Drift {
        Drift {
            snapshot: "pgsql_app_db_20260102-030000.sql.zst".into(),
            taken_at: Utc::now(),
            checked_at: Utc::now(),
            unclassified,
            rules_for_nothing,
        }
    }

    fn column(table: &str, column: &str) -> DriftColumn {
        DriftColumn {
            table: table.into(),
            column: column.into(),
            ty: "text".into(),
            rule: format!(
                "[[anonymize.column]]\ntable = \"{table}\"\ncolumn = \"{column}\"\nmask = \"keep\"\n"
            ),
        }
    }

    fn text_of(outline: &Outline) -> String {
        crate::notify::text::render(outline)
    }

    #[test]
    fn the_warning_groups_columns_by_table_and_carries_their_rules() {
        let found = drift(
            vec![
                column("public.member", "nick"),
                column("public.member", "bio"),
                column("public.order", "note"),
            ],
            vec![],
        );
        let outline = outline(&found, Unclassified::Fail, None);
        assert_eq!(outline.severity, Severity::Warning);
        assert_eq!(
            outline.headline,
            "SCHEMA DRIFT: 3 unclassified column(s) in pgsql_app_db_20260102-030000.sql.zst"
        );
        let text = text_of(&outline);
        assert!(
            text.contains("public.member: nick (text), bio (text)\n"),
            "{text}"
        );
        assert!(text.contains("public.order: note (text)\n"), "{text}");
        assert!(text.contains("will refuse this snapshot"), "{text}");
        assert!(text.contains("      column = \"note\"\n"), "{text}");
        let warned = text_of(&super::outline(&found, Unclassified::Warn, None));
        assert!(warned.contains("will keep their values"), "{warned}");
    }

    #[test]
    fn rules_for_nothing_alone_are_warned_about_too() {
        let found = drift(vec![], vec!["public.member.nick".into()]);
        let outline = outline(&found, Unclassified::Fail, None);
        assert_eq!(
            outline.headline,
            "SCHEMA DRIFT: 1 rule(s) for nothing in pgsql_app_db_20260102-030000.sql.zst"
        );
        let text = text_of(&outline);
        assert!(text.contains("public.member.nick"), "{text}");
        assert!(!text.contains("will refuse"), "{text}");
    }
}
