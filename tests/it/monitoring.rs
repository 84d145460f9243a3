//! The shipped Prometheus rules and Grafana dashboard: promtool checks and unit-tests the rules,
//! and every metric a rule or panel queries is one the daemon exports (and the reverse).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use regex::Regex;
use staging_refresh::config::Config;
use staging_refresh::metrics::Metrics;
use staging_refresh::report::redact::Recipients;
use staging_refresh::report::{Outcome, Phase, PhaseTiming, RunReport, SnapshotReport};
use staging_refresh::state::State;
use staging_refresh::verify::{Finding, Verification};

fn packaging(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(path)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(packaging("prometheus"))
        .output()
        .expect("promtool (Debian's prometheus package; scripts/setup installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules", "staging-refresh.rules.yml"]);
    promtool(&["test", "rules", "staging-refresh.tests.yml"]);
}

#[test]
fn every_alert_has_a_summary_a_description_a_runbook_and_a_unit_test() {
    let rules = std::fs::read_to_string(packaging("prometheus/staging-refresh.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(packaging("prometheus/staging-refresh.tests.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .split("- alert: ")
        .skip(1)
        .map(|a| a.lines().next().unwrap().trim())
        .collect();
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    for (alert, body) in alerts.iter().zip(rules.split("- alert: ").skip(1)) {
        for key in ["summary:", "description:", "runbook:"] {
            assert!(body.contains(key), "{alert} has no {key}");
        }
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "no unit test sees {alert} fire"
        );
    }
}

/// Every metric name the daemon's endpoint serves, with every labelled family populated.
fn exported() -> BTreeSet<String> {
    let mut report = RunReport::new("r1".into());
    report.outcome = Outcome::Ok;
    report.finished_at = Some(Utc::now());
    report.snapshot = Some(SnapshotReport {
        name: "pgsql_app_prod_20250101-030000.sql.zst".into(),
        key: "pgsql_app_prod_20250101-030000.sql.zst".into(),
        taken_at: Utc::now(),
        size: 1,
        checksum_verified: true,
    });
    report.phases = vec![PhaseTiming {
        phase: Phase::Restore,
        seconds: 1.0,
    }];
    report.rows_restored = BTreeMap::from([("public.t".into(), 1)]);
    report.rows_anonymized = BTreeMap::from([("public.t".into(), 1)]);
    report.verification = vec![Verification {
        name: "check".into(),
        ok: true,
        detail: String::new(),
    }];
    report.pii_findings = vec![Finding {
        table: "public.t".into(),
        column: "c".into(),
        kind: "email".into(),
        by: "column name".into(),
        count: 1,
    }];
    report.maintenance_seconds = Some(1.0);
    let metrics = Metrics::new();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/config.toml");
    let mut config = Config::load(&shipped).unwrap();
    // Its masking key, which hashes names, is made here, not in /var/lib.
    config.daemon.state_dir = common::test_dir("monitoring");
    metrics.restore(
        &State {
            last: Some(report.clone()),
            last_success: Some(report),
            ..State::default()
        },
        &Recipients::new(&config),
    );
    metrics
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

fn metric_names(text: &str) -> BTreeSet<String> {
    Regex::new(r"staging_refresh_[a-z0-9_]+")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// Every query string in the dashboard: panel targets and template variables.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[test]
fn rules_and_dashboard_query_only_exported_metrics_and_show_every_one() {
    let exported = exported();
    let rules = std::fs::read_to_string(packaging("prometheus/staging-refresh.rules.yml")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(packaging("grafana/staging-refresh.json")).unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let queried_by_rules = metric_names(&rules);
    let queried_by_panels = metric_names(&queries.join("\n"));
    assert!(queried_by_panels.len() > 15, "{queried_by_panels:?}");

    for (what, queried) in [("rule", &queried_by_rules), ("panel", &queried_by_panels)] {
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "a {what} queries metrics the daemon does not export: {unknown:?}"
        );
    }
    let shown: BTreeSet<String> = queried_by_rules
        .union(&queried_by_panels)
        .cloned()
        .collect();
    let unused: Vec<_> = exported.difference(&shown).collect();
    assert!(
        unused.is_empty(),
        "exported but neither alerted on nor shown: {unused:?}"
    );
}

#[test]
fn the_dashboard_is_importable_with_the_datasource_as_a_variable() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(packaging("grafana/staging-refresh.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard["uid"], "staging-refresh");
    assert!(
        dashboard["id"].is_null(),
        "an importable dashboard carries no id"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "datasource"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}
