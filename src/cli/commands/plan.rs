//! `plan` (and `run --dry-run`): what a refresh would do, changing nothing.

use indicatif::HumanBytes;

use crate::cli::print_json;
use crate::config::Config;
use crate::error::Exit;
use crate::refresh::plan::{DatabasePlan, Plan};
use crate::refresh::{self, Options};
use crate::snapshot::Selection;

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
        println!("media: {}", media.summary());
    }
    Ok(Exit::Success)
}

fn print_database_plan(config: &Config, plan: &DatabasePlan) {
    println!("{}", plan.snapshot.describe());
    let total: u64 = plan.rows.values().sum();
    println!(
        "would restore {total} rows in {} tables ({} of SQL):",
        plan.rows.len(),
        HumanBytes(plan.bytes_sql)
    );
    for (table, rows) in &plan.rows {
        println!("  {table:<40} {rows:>12}");
    }
    for (reason, count) in &plan.statements_filtered {
        println!("would skip or rewrite {count}: {reason}");
    }
    println!(
        "would anonymize {} users (the admin is re-keyed in place) and neutralise {} integrations",
        plan.users_to_anonymize, plan.integrations_to_neutralise
    );
    for step in &plan.databases {
        println!("would {step}");
    }
    if !plan.target_marked {
        println!(
            "database {} is not marked as a refresh target: `run` would refuse (see init-target)",
            config.database.name
        );
    }
}
