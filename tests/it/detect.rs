//! What `rules` suggests for real applications' schemas, measured, and what a run does with
//! the suggestions pasted unreviewed. The fixtures in `tests/fixtures/detect/` imitate five
//! applications' conventions (a Rails app with Devise, a Django app, a GitLab-like schema with
//! CHECK-limited text, a Prisma e-commerce schema with json addresses, a SuiteCRM-like CRM),
//! each in a schema of its own beside the prod-shaped one, filled with synthetic people
//! (`synthetic.sql`). Every text-like column carries its truth as a comment: the mask family
//! it needs (`-- name`, `-- secret`, `-- json:<paths>`) or `-- keep`.
//!
//! `cargo test --test it detect:: -- --nocapture` prints recall and precision per fixture.

use crate::common;

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use serde_json::Value;

use common::env::{Env, inject};
use common::fixtures::{dump_sql, fixture_path, seed_prod_with, zstd};
use common::staging::prod_dump;
use common::{prod_postgres, unique};

const FIXTURES: &[&str] = &["rails", "django", "gitlab", "shop", "crm"];

/// One labelled column of a fixture.
#[derive(Debug, Clone)]
struct Label {
    schema: String,
    table: String,
    column: String,
    /// `keep`, a mask family (`email`, `name`, `secret`, ...), or `json:<path>,<path>`.
    truth: String,
}

impl Label {
    fn personal(&self) -> bool {
        self.truth != "keep"
    }

    fn sql_table(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }
}

/// The labels the fixture files' comments give their columns.
fn labels() -> Vec<Label> {
    let mut labels = Vec::new();
    for fixture in FIXTURES {
        let text = std::fs::read_to_string(fixture_path(&format!("detect/{fixture}.sql"))).unwrap();
        let mut table: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                table = Some(rest.trim_end_matches(" (").trim_matches('"').to_owned());
            } else if line.starts_with(");") {
                table = None;
            } else if let (Some(table), Some((definition, truth))) =
                (&table, line.rsplit_once(" -- "))
            {
                let definition = definition.trim_start();
                let column = match definition.strip_prefix('"') {
                    Some(quoted) => quoted.split('"').next().unwrap(),
                    None => definition.split_whitespace().next().unwrap(),
                };
                labels.push(Label {
                    schema: fixture.to_string(),
                    table: table.clone(),
                    column: column.to_owned(),
                    truth: truth.trim().to_owned(),
                });
            }
        }
    }
    labels
}

/// The prod-shaped database with every fixture in it, and its dump.
fn production() -> (String, Vec<u8>) {
    let prod = prod_postgres();
    let db = unique("apps");
    let mut files = vec!["detect/synthetic.sql".to_owned()];
    files.extend(FIXTURES.iter().map(|f| format!("detect/{f}.sql")));
    files.push("detect/done.sql".into());
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    seed_prod_with(prod, &db, 20, &files);
    let dump = dump_sql(prod, &db);
    (db, dump)
}

async fn env_with(dump: &[u8], source: &str) -> Env {
    let mut env = Env::empty().await;
    env.snapshot_database = source.to_owned();
    env.upload_taken(zstd(dump), Utc::now() - chrono::Duration::hours(1), true)
        .await;
    env
}

/// `rules --json`'s unclassified columns, by (table without quotes, column).
fn unclassified(doc: &Value) -> BTreeMap<(String, String), Value> {
    doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["mask"].is_null())
        .map(|c| {
            let table = c["table"].as_str().unwrap().replace('"', "");
            let column = c["column"].as_str().unwrap().to_owned();
            ((table, column), c.clone())
        })
        .collect()
}

/// Whether `suggestion` masks what `label` says the column holds: a mask that rewrites the
/// whole value (or each letter and digit of it) where a value is all personal, and for json
/// the labelled paths (or a prefix of them).
fn adequate(label: &Label, suggestion: &Value) -> bool {
    let mask = suggestion["mask"].as_str().unwrap();
    if mask == "null" || mask == "redact" {
        return true;
    }
    if let Some(paths) = label.truth.strip_prefix("json:") {
        let suggested = suggestion["paths"].as_object().cloned().unwrap_or_default();
        return mask == "json"
            && paths.split(',').all(|path| {
                suggested
                    .keys()
                    .any(|s| path == s || path.starts_with(&format!("{s}.")))
            });
    }
    let masks: &[&str] = match label.truth.as_str() {
        "email" => &["email", "hash", "token"],
        "phone" => &["phone", "token", "text"],
        "name" | "address" | "identity" => &["name", "text", "hash", "token"],
        "ip" => &["token", "text"],
        "secret" | "password" => &["token", "hash", "password"],
        // Free text: anything rewriting the whole of it (not `phone`, which leaves the rest).
        "text" => &["text", "token", "name", "hash", "email"],
        other => panic!("unknown label {other}"),
    };
    masks.contains(&mask)
}

#[derive(Default)]
struct Score {
    personal: usize,
    masked: usize,
    right: usize,
}

impl Score {
    fn recall(&self) -> f64 {
        self.right as f64 / self.personal as f64
    }
    fn precision(&self) -> f64 {
        self.right as f64 / self.masked as f64
    }
    fn row(&self, name: &str) -> String {
        format!(
            "{name:<10} {:>9} {:>9} {:>9} {:>7.3} {:>9.3}",
            self.personal,
            self.masked,
            self.right,
            self.recall(),
            self.precision()
        )
    }
}

#[tokio::test]
async fn rules_finds_the_personal_columns_of_real_applications_schemas() {
    let (source, dump) = production();
    let env = env_with(&dump, &source).await;
    let out = env.run(&["--json", "rules"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let listed = unclassified(&out.json());
    let labels = labels();
    let mut scores: BTreeMap<&str, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    for label in &labels {
        let key = (
            format!("{}.{}", label.schema, label.table),
            label.column.clone(),
        );
        let column = listed
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} is labelled, and `rules` does not list it"));
        let suggestion = &column["suggestion"];
        let score = scores.entry(label.schema.as_str()).or_default();
        let masked = suggestion["mask"] != "keep";
        let right = label.personal() && adequate(label, suggestion);
        score.personal += usize::from(label.personal());
        score.masked += usize::from(masked);
        score.right += usize::from(right);
        if right != label.personal() || (masked && !label.personal()) {
            misses.push(format!(
                "  {}.{}.{}: truth {}, suggested {} ({}); {}",
                label.schema,
                label.table,
                label.column,
                label.truth,
                suggestion["mask"],
                suggestion["why"],
                column["evidence"]["name"]
            ));
        }
    }
    let fixture_columns = listed
        .keys()
        .filter(|(t, _)| !t.starts_with("public."))
        .count();
    assert_eq!(
        fixture_columns,
        labels.len(),
        "every listed column is labelled"
    );
    let mut total = Score::default();
    println!("fixture     personal    masked     right  recall precision");
    for (fixture, score) in &scores {
        println!("{}", score.row(fixture));
        total.personal += score.personal;
        total.masked += score.masked;
        total.right += score.right;
    }
    println!("{}", total.row("all"));
    println!("misses:\n{}", misses.join("\n"));
    assert!(
        total.recall() >= 0.95 && total.precision() >= 0.9,
        "recall {:.3}, precision {:.3}; misses:\n{}",
        total.recall(),
        total.precision(),
        misses.join("\n")
    );
}

/// The distinct values of `expression` over `table` in `db` on the production server.
fn values(db: &str, table: &str, expression: &str) -> Vec<String> {
    let json = prod_postgres().query(
        db,
        &format!(
            "SELECT coalesce(json_agg(DISTINCT v), '[]') FROM (SELECT ({expression})::text AS v FROM {table}) x \
             WHERE v IS NOT NULL"
        ),
    );
    serde_json::from_str(&json).unwrap()
}

/// What a column's values look like in a dump: per value, or per json leaf at the labelled
/// paths, or per array element; bytea as the hex pg_dump writes.
fn column_values(db: &str, label: &Label) -> Vec<String> {
    let column = format!("\"{}\"", label.column);
    let table = label.sql_table();
    if let Some(paths) = label.truth.strip_prefix("json:") {
        return paths
            .split(',')
            .flat_map(|path| {
                let path: String = path.split('.').map(|p| format!(".\"{p}\"")).collect();
                values(
                    db,
                    &table,
                    &format!("jsonb_path_query({column}::jsonb, 'lax ${path}') #>> '{{}}'"),
                )
            })
            .collect();
    }
    let data_type = prod_postgres().query(
        db,
        &format!(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = '{}' \
             AND table_name = '{}' AND column_name = '{}'",
            label.schema, label.table, label.column
        ),
    );
    match data_type.as_str() {
        "ARRAY" => values(db, &table, &format!("unnest({column})")),
        "bytea" => values(db, &table, &format!("encode({column}, 'hex')")),
        _ => values(db, &table, &column),
    }
}

/// A value as a COPY row of a plain dump writes it.
fn copy_escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
}

#[tokio::test]
async fn pasted_suggestions_make_the_next_run_pass_and_mask_every_personal_value() {
    let (source, dump) = production();
    let mut env = env_with(&dump, &source).await;
    let json = env.run(&["--json", "rules"]).await;
    let suggested: BTreeMap<(String, String), String> = unclassified(&json.json())
        .into_iter()
        .map(|(key, c)| (key, c["suggestion"]["mask"].as_str().unwrap().to_owned()))
        .collect();
    let toml = env.run(&["rules", "--toml"]).await;
    assert_eq!(toml.code, 1, "{toml:?}");
    env.anonymize.push_str(&toml.stdout);
    let run = env.refresh().await;
    assert_eq!(run.code, 0, "{run:?}");

    // The columns the suggestions mask: none of their personal values may be on staging, save
    // those a column the suggestions keep holds too (the misses the measurement above
    // reports, which a reviewer adds) or contains. Checked: every value a masked value cannot contain by
    // chance: a whole name, an address line, a number, an email, a secret (a single first
    // name may be part of what the name mask writes).
    let labels = labels();
    let kept_by_suggestion =
        |l: &Label| suggested[&(format!("{}.{}", l.schema, l.table), l.column.clone())] == "keep";
    let kept: HashSet<String> = labels
        .iter()
        .filter(|l| kept_by_suggestion(l))
        .flat_map(|l| column_values(&source, l))
        .collect();
    let missed = labels
        .iter()
        .filter(|l| l.personal() && kept_by_suggestion(l))
        .count();
    let personal: Vec<String> = labels
        .iter()
        .filter(|l| l.personal() && !kept_by_suggestion(l))
        .flat_map(|l| column_values(&source, l))
        .filter(|v| {
            v.chars().count() >= 6
                && v.contains(|c: char| c.is_ascii_digit() || c == '@' || c == ' ')
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|v| !kept.iter().any(|k| k.contains(v.as_str())))
        .collect();
    assert!(personal.len() > 1000, "{} values", personal.len());
    let alternatives: Vec<String> = personal
        .iter()
        .map(|v| regex::escape(&copy_escaped(v)))
        .collect();
    let leaks = regex::RegexBuilder::new(&format!(
        r"(?:^|[^\p{{L}}\p{{N}}])({})(?:$|[^\p{{L}}\p{{N}}])",
        alternatives.join("|")
    ))
    .multi_line(true)
    .size_limit(1 << 30)
    .dfa_size_limit(1 << 30)
    .build()
    .unwrap();
    let staging = String::from_utf8(dump_sql(env.pg, &env.db)).unwrap();
    let found: HashSet<&str> = leaks
        .captures_iter(&staging)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(
        found.is_empty(),
        "{} of {} personal values are on staging: {found:?}",
        found.len(),
        personal.len()
    );
    println!(
        "{} personal values checked, none on staging; {missed} personal columns suggested keep",
        personal.len()
    );
}

#[tokio::test]
async fn the_scan_reports_names_addresses_and_ips_left_in_a_kept_column() {
    let dump = inject(
        prod_dump(),
        "\\.",
        "CREATE TABLE public.visit (id integer, note text, doc jsonb);\n\
         INSERT INTO public.visit VALUES (1, 'Visited by Jane Doe', '{\"ip\": \"203.0.113.54\"}'),\
         (2, 'Ship to 221B Baker Street, London', '{\"who\": \"Maria Garcia\"}'),\
         (3, 'login from 198.51.100.7', '{}');",
    );
    let mut env = Env::new(&dump).await;
    env.anonymize = "[[anonymize.table]]\ntable = \"visit\"\nmode = \"keep\"\n".into();
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let found = out.findings();
    for expected in [
        "public.visit.note name values 1",
        "public.visit.note address values 1",
        "public.visit.note ip values 1",
        "public.visit.doc ip values 1",
        "public.visit.doc name values 1",
    ] {
        assert!(
            found.contains(&expected.to_owned()),
            "{expected}: {found:?}"
        );
    }
    for value in ["Jane Doe", "Baker Street", "203.0.113.54", "Maria"] {
        assert!(!out.stdout.contains(value), "{value} reported: {out:?}");
    }
}

#[tokio::test]
async fn the_refusal_of_thousands_of_unclassified_columns_is_a_screenful() {
    let tables: String = (0..300)
        .map(|t| {
            let columns: Vec<String> = (0..10).map(|c| format!("c{c} text")).collect();
            format!("CREATE TABLE public.wide_{t} ({});\n", columns.join(", "))
        })
        .collect();
    // In the pre-data, as pg_dump writes every table before any row.
    let dump = inject(
        prod_dump(),
        "SET default_table_access_method = heap;",
        &tables,
    );
    let env = Env::new(&dump).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "3000 columns in 300 tables have no masking rule");
    let error = out.json()["error"].as_str().unwrap().to_owned();
    assert!(error.lines().count() <= 25, "{error}");
    assert!(
        error.contains(&format!(
            "`staging-refresh rules --toml --snapshot {}`",
            env.snapshot
        )),
        "{error}"
    );
    let report = out.json();
    assert_eq!(
        report["unclassified_columns"].as_array().unwrap().len(),
        3000
    );
    assert!(
        report["unclassified_columns"]
            .as_array()
            .unwrap()
            .contains(&Value::from("public.wide_299.c9 (text)"))
    );
}
