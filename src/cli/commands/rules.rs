//! `rules`: the snapshot's columns with their masking rules, or for the unclassified ones a
//! suggestion and its evidence; `--toml` turns those into rules to review and paste.

use serde::Serialize;

use crate::cli::print_json;
use crate::config::{Config, Unclassified};
use crate::error::Exit;
use crate::logging::one_line;
use crate::refresh::plan;
use crate::report::SnapshotReport;
use crate::snapshot::Selection;
use crate::survey::{Columns, VALUE_PREFIX};

/// The `rules --json` document.
#[derive(Serialize)]
struct Document<'a> {
    snapshot: &'a SnapshotReport,
    #[serde(flatten)]
    columns: &'a Columns,
}

pub async fn run(
    config: &Config,
    snapshot: &Selection,
    toml: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    let (snapshot, columns) = plan::columns(config, snapshot).await?;
    if toml {
        print!("{}", rules_toml(&snapshot, &columns));
    } else if json {
        print_json(&Document {
            snapshot: &snapshot,
            columns: &columns,
        })?;
    } else {
        print_text(&snapshot, &columns);
    }
    Ok(
        if columns.unclassified().next().is_some() || !columns.accounts_problems.is_empty() {
            Exit::Failed
        } else {
            Exit::Success
        },
    )
}

fn print_text(snapshot: &SnapshotReport, columns: &Columns) {
    say!("{}", snapshot.describe());
    for c in &columns.columns {
        let name = one_line(&c.name());
        match (&c.mask, c.rule, &c.suggestion, &c.evidence) {
            (Some(mask), Some(rule), ..) => {
                say!("  {name:<48} {:<24} {mask:<12} {rule}", c.ty);
            }
            (_, _, Some(suggestion), Some(evidence)) => {
                let suggested = match suggestion.mask {
                    // Its `why` says "review: probably keep".
                    "keep" => suggestion.why.to_owned(),
                    mask => format!("suggest {mask} ({})", suggestion.why),
                };
                say!(
                    "  {name:<48} {:<24} UNCLASSIFIED {suggested}; evidence: {}",
                    c.ty,
                    evidence.describe()
                );
            }
            _ => unreachable!("a column has a rule or a suggestion"),
        }
    }
    for table in &columns.emptied {
        say!(
            "  {:<48} restored without rows (table rule)",
            one_line(table)
        );
    }
    for problem in &columns.accounts_problems {
        println!("a run would fail: {}", one_line(problem));
    }
    let unclassified = columns.unclassified().count();
    if unclassified == 0 {
        say!("every column is classified");
    } else {
        let consequence = match columns.unclassified_policy {
            Unclassified::Fail => "a run would fail (anonymize.unclassified = \"fail\")",
            Unclassified::Warn => {
                "a run would keep their values (anonymize.unclassified = \"warn\")"
            }
        };
        say!(
            "{unclassified} unclassified columns: {consequence}; `staging-refresh rules --toml \
             --snapshot {}` prints rules to start from (values examined: the first {} KiB of each)",
            one_line(&snapshot.name),
            VALUE_PREFIX >> 10
        );
    }
}

/// `[[anonymize.column]]` blocks for the unclassified columns, each with its evidence.
fn rules_toml(snapshot: &SnapshotReport, columns: &Columns) -> String {
    let mut out = format!(
        "# Masking rules for the unclassified columns of {}.\n\
         # Review each one, then add them to the [anonymize] section of the config.\n",
        one_line(&snapshot.name)
    );
    for problem in &columns.accounts_problems {
        out.push_str(&format!("# A run would fail: {}\n", one_line(problem)));
    }
    for c in columns.unclassified() {
        out.push('\n');
        out.push_str(
            &c.rule_toml()
                .expect("an unclassified column has a suggestion"),
        );
    }
    out
}
