//! `plan` (and `run --dry-run`): what a refresh would do, changing nothing.

use indicatif::HumanBytes;

use crate::cli::print_json;
use crate::config::Config;
use crate::error::Exit;
use crate::logging::one_line;
use crate::refresh::plan::{DatabasePlan, Plan};
use crate::refresh::{self, Options};
use crate::snapshot::Selection;
use crate::survey::{Classified, Columns};

pub async fn run(
    config: &Config,
    snapshot: &Selection,
    options: &Options,
    json: bool,
) -> anyhow::Result<Exit> {
    let plan: Plan = refresh::plan::plan(config, snapshot, options).await?;
    if json {
        print_json(&plan)?;
        return Ok(Exit::Success);
    }
    if let Some(database) = &plan.database {
        print_database_plan(config, database);
    }
    if let Some(media) = &plan.media {
        say!("media: {}", media.summary());
    }
    Ok(Exit::Success)
}

fn print_database_plan(config: &Config, plan: &DatabasePlan) {
    say!("{}", plan.snapshot.describe());
    let total: u64 = plan.rows.values().sum();
    say!(
        "would restore {total} rows in {} tables ({} of SQL):",
        plan.rows.len(),
        HumanBytes(plan.bytes_sql)
    );
    for (table, rows) in &plan.rows {
        say!("  {table:<40} {rows:>12}");
    }
    for (reason, count) in &plan.statements_filtered {
        say!("would skip or rewrite {count}: {reason}");
    }
    let admin = if config.anonymize.prod_admin_email.is_some() {
        "the admin is re-keyed in place"
    } else {
        "no production admin is configured"
    };
    say!(
        "would anonymize {} users ({admin}) in {}, masking in the restore stream:",
        plan.users_to_anonymize,
        config.anonymize.accounts.table
    );
    print_masking(&plan.masking);
    if !plan.forbidden.is_empty() {
        say!(
            "the restore role may not run {} statements of the dump; a run would stop at the \
             first:",
            plan.forbidden.len()
        );
        for forbidden in &plan.forbidden {
            say!("  {}", one_line(forbidden));
        }
    }
    for step in &plan.databases {
        say!("would {step}");
    }
    if !plan.target_marked {
        say!(
            "database {} is not marked as a refresh target: `run` would refuse (see init-target)",
            config.database.name
        );
    }
}

/// What the masking would do: masked and kept columns, emptied tables, unclassified columns.
fn print_masking(masking: &Columns) {
    let line = |c: &Classified, what: &str| {
        say!("  {:<48} {what}", one_line(&c.name()));
    };
    let (kept, masked): (Vec<&Classified>, Vec<&Classified>) = masking
        .columns
        .iter()
        .filter(|c| c.mask.is_some())
        .partition(|c| c.mask.as_deref() == Some("keep"));
    for c in masked {
        line(
            c,
            &format!("{} ({})", c.mask.as_deref().unwrap_or_default(), rule(c)),
        );
    }
    for table in &masking.emptied {
        say!("would restore without rows: {}", one_line(table));
    }
    if !kept.is_empty() {
        say!("would keep as not personal:");
        for c in kept {
            line(c, &rule(c));
        }
    }
    let unclassified: Vec<&Classified> = masking.unclassified().collect();
    if !unclassified.is_empty() {
        let consequence = if masking.run_would_fail() {
            "run would fail (anonymize.unclassified = \"fail\")"
        } else {
            "values would be kept (anonymize.unclassified = \"warn\")"
        };
        say!("unclassified, {consequence}; `staging-refresh rules` suggests rules:");
        for c in unclassified {
            line(c, &c.ty);
        }
    }
    for problem in &masking.accounts_problems {
        println!("run would fail: {}", one_line(problem));
    }
}

fn rule(c: &Classified) -> String {
    c.rule.map(|r| r.to_string()).unwrap_or_default()
}
