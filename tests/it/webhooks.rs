//! Chat webhooks against a local HTTP sink: each kind's payload for ok, ok-with-warnings and
//! failed runs; a sink that fails or hangs leaves the outcome alone and is counted; a
//! rollback is recorded, counted and notified.

use crate::common;

use common::env::Env;
use common::env::inject;
use common::sink::{Answer, Sink};
use common::staging::prod_dump;
use common::{smtp, unique};
use staging_refresh::metrics::Metrics;
use staging_refresh::report::redact::Recipients;
use staging_refresh::state::StateFile;

const KINDS: [&str; 4] = ["slack", "mattermost", "teams", "json"];

/// `[notify]` with email to a fresh recipient and one webhook per kind, each posting to
/// `/<kind>` on `sink`.
fn notify(sink: &Sink, extra: &str) -> String {
    let mut toml = format!(
        "\n[notify]\nsmtp_url = \"{}\"\nfrom = \"refresh@staging.example.com\"\n\
         to = [\"{}@staging.example.com\"]\n",
        smtp().url(),
        unique("admin")
    );
    for kind in KINDS {
        toml.push_str(&format!(
            "\n[[notify.webhook]]\nurl = \"{}/{kind}\"\nkind = \"{kind}\"\n{extra}",
            sink.url
        ));
    }
    toml
}

/// What every webhook got for one run, checked for its kind's shape and `severity`'s colour;
/// returns the headlines.
fn check_payloads(sink: &Sink, severity: &str) -> Vec<String> {
    let colour = match severity {
        "ok" => "#2e7d32",
        "warning" => "#b26a00",
        _ => "#c62828",
    };
    let mut headlines = Vec::new();
    for kind in KINDS {
        let got = sink.at(&format!("/{kind}"));
        let last = got.last().unwrap_or_else(|| panic!("{kind} got nothing"));
        let headline = match kind {
            "slack" | "mattermost" => {
                let attachment = &last["attachments"][0];
                assert_eq!(attachment["color"], colour, "{kind}: {last:#}");
                assert!(attachment["text"].as_str().unwrap().contains("Staging"));
                let facts: Vec<&str> = attachment["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["title"].as_str().unwrap())
                    .collect();
                assert!(facts.contains(&"duration"), "{kind}: {last:#}");
                last["text"].as_str().unwrap().to_owned()
            }
            "teams" => {
                assert_eq!(last["@type"], "MessageCard");
                assert_eq!(last["themeColor"], colour.trim_start_matches('#'));
                assert!(last["sections"][0]["facts"].as_array().unwrap().len() >= 2);
                last["summary"].as_str().unwrap().to_owned()
            }
            _ => {
                assert_eq!(last["severity"], severity, "{last:#}");
                assert!(last["sections"].as_array().unwrap().len() >= 3);
                last["headline"].as_str().unwrap().to_owned()
            }
        };
        headlines.push(headline);
    }
    headlines
}

/// The metrics a scrape would show for this env's state file.
fn metrics(env: &Env) -> String {
    let metrics = Metrics::new();
    metrics.restore(
        &StateFile::in_dir(&env.state_dir()).read().unwrap(),
        &Recipients::new(&env.loaded()),
    );
    metrics.text()
}

/// An env whose dump holds unmasked PII the scan finds (and `warn` lets through): a table
/// classified, wrongly, as holding nothing personal.
async fn env_with_pii() -> Env {
    let dump = inject(
        prod_dump(),
        "\\.",
        "CREATE TABLE public.support_ticket (id integer, contact_email text);\n\
         INSERT INTO public.support_ticket VALUES (1, 'jane@example.org');",
    );
    let mut env = Env::new(&dump).await;
    env.anonymize = "[[anonymize.table]]\ntable = \"support_ticket\"\nmode = \"keep\"\n".into();
    env
}

/// A refresh in `env` with every kind of webhook posting to `sink`: it exits `code`, and each
/// kind gets a well-formed message of `severity` whose headline starts with `headline`.
async fn refresh_told(sink: &Sink, mut env: Env, code: i32, severity: &str, headline: &str) -> Env {
    env.sections.push_str(&notify(sink, ""));
    let out = env.refresh().await;
    assert_eq!(out.code, code, "{out:?}");
    for told in check_payloads(sink, severity) {
        assert!(told.starts_with(headline), "{told}");
    }
    env
}

#[tokio::test]
async fn each_kind_gets_a_well_formed_message_for_ok_warning_and_failed_runs() {
    let sink = Sink::start(Answer::Ok).await;

    let env = refresh_told(&sink, Env::new(prod_dump()).await, 0, "ok", "OK: ").await;
    assert!(metrics(&env).contains("staging_refresh_last_run_warnings 0"));

    // A run with warnings still succeeds.
    let env = refresh_told(
        &sink,
        env_with_pii().await,
        0,
        "warning",
        "OK WITH WARNINGS: ",
    )
    .await;
    let slack = sink.at("/slack").last().unwrap().to_string();
    assert!(
        slack.contains("Warnings: the PII scan found 1 column possibly unmasked"),
        "{slack}"
    );
    assert!(!slack.contains("jane@example.org"), "{slack}");
    assert!(metrics(&env).contains("staging_refresh_last_run_warnings 1"));

    let failing = Env::new(&inject(prod_dump(), "\\.", "SELECT no_such_function();")).await;
    let env = refresh_told(&sink, failing, 1, "failed", "FAILED in restore: ").await;
    let teams = sink.at("/teams").last().unwrap().to_string();
    assert!(teams.contains("What to do"), "{teams}");
    assert!(
        metrics(&env)
            .contains(r#"staging_refresh_notifications_total{channel="teams",result="sent"} 1"#)
    );
}

/// A chat-only `[notify]` (no email) is a valid config: `check` says so, and a run posts.
#[tokio::test]
async fn a_chat_only_notify_runs_and_posts() {
    let sink = Sink::start(Answer::Ok).await;
    let mut env = Env::new(prod_dump()).await;
    env.sections.push_str(&format!(
        "\n[notify]\n[[notify.webhook]]\nurl = \"{}/json\"\nkind = \"json\"\n",
        sink.url
    ));
    let check = env.run(&["--json", "check"]).await;
    let notify = check
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "notify")
        .cloned();
    let notify = notify.unwrap_or_else(|| panic!("{check:?}"));
    assert_eq!(
        notify["detail"],
        "notify.webhook[0] (json) on ok, ok with warnings, failed"
    );
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let told = sink.at("/json");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["severity"], "ok");
    let metrics = metrics(&env);
    for series in [
        r#"staging_refresh_notifications_total{channel="json",result="sent"} 1"#,
        r#"staging_refresh_notifications_total{channel="email",result="sent"} 0"#,
        r#"staging_refresh_notifications_total{channel="email",result="failed"} 0"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn a_webhook_only_for_failures_stays_silent_after_a_good_run() {
    let sink = Sink::start(Answer::Ok).await;
    let mut env = Env::new(prod_dump()).await;
    env.sections.push_str(&notify(&sink, "on = [\"failed\"]\n"));
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(sink.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_sink_that_fails_or_hangs_leaves_the_outcome_and_is_counted() {
    for answer in [Answer::ServerError, Answer::Hang] {
        let sink = Sink::start(answer).await;
        let mut env = Env::new(prod_dump()).await;
        env.sections.push_str(&notify(&sink, "timeout = \"1s\"\n"));
        let out = env.refresh().await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.json()["outcome"], "ok");
        // The first attempt and the one retry.
        assert_eq!(sink.at("/slack").len(), 2);
        let metrics = metrics(&env);
        for kind in KINDS {
            assert!(
                metrics.contains(&format!(
                    "staging_refresh_notifications_total{{channel=\"{kind}\",result=\"failed\"}} 1"
                )),
                "{metrics}"
            );
        }
        assert!(
            metrics.contains(
                r#"staging_refresh_notifications_total{channel="email",result="sent"} 1"#
            )
        );
        assert!(
            !out.stderr.contains(&sink.url),
            "the URL is a secret: {out:?}"
        );
    }
}

#[tokio::test]
async fn a_rollback_is_a_recorded_run_in_status_metrics_and_chat() {
    let sink = Sink::start(Answer::Ok).await;
    let mut env = Env::new(prod_dump()).await;
    env.sections.push_str(&notify(&sink, ""));
    // Nothing to roll back to yet: a failed rollback, recorded and told as one.
    let none = env.run(&["rollback"]).await;
    assert_eq!(none.code, 1, "{none:?}");
    assert!(none.stderr.contains("to roll back to"), "{none:?}");
    let told = sink.at("/slack").last().unwrap().to_string();
    assert!(told.contains("ROLLBACK FAILED in cutover"), "{told}");
    assert!(
        told.contains("roll back again: `staging-refresh rollback`"),
        "{told}"
    );
    let failed = r#"staging_refresh_runs_total{kind="rollback",outcome="failed"} 1"#;
    assert!(metrics(&env).contains(failed), "{}", metrics(&env));

    assert_eq!(env.refresh().await.code, 0);
    let first = env.snapshot.clone();
    let taken = |metrics: &str| {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("staging_refresh_snapshot_taken"));
        line.unwrap().to_owned()
    };
    let first_taken = taken(&metrics(&env));
    // A second, newer snapshot: the first is kept as the previous database.
    env.snapshot = common::fixtures::dump_name(
        common::constants::PROD_DB,
        "prod-db",
        chrono::Utc::now() - chrono::Duration::minutes(5),
    );
    env.upload(common::fixtures::zstd(prod_dump()), None).await;
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["snapshot"]["name"], env.snapshot.as_str());

    let rollback = env.run(&["rollback"]).await;
    assert_eq!(rollback.code, 0, "{rollback:?}");
    let status = env.run(&["--json", "status"]).await.json();
    assert_eq!(status["last"]["kind"], "rollback", "{status:#}");
    assert_eq!(status["last"]["rollback"]["from"], env.snapshot.as_str());
    assert_eq!(status["last"]["rollback"]["to"], first.as_str());
    let text = env.run(&["status"]).await;
    assert!(text.stdout.contains("rolled back"), "{text:?}");

    let metrics = metrics(&env);
    for series in [
        r#"staging_refresh_runs_total{kind="rollback",outcome="ok"} 1"#,
        r#"staging_refresh_runs_total{kind="refresh",outcome="ok"} 2"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    assert_eq!(
        taken(&metrics),
        first_taken,
        "the snapshot-taken gauge moves back"
    );
    let json = sink.at("/json");
    let last = json.last().unwrap();
    assert!(
        last["headline"].as_str().unwrap().starts_with("ROLLBACK "),
        "{last:#}"
    );
    assert!(last.to_string().contains(&first), "{last:#}");
}
