//! What operators see without reading logs: the metrics endpoint (scraped over HTTP after real
//! refreshes, and again after a restart) and the summary email the SMTP sink received.

use crate::common;

use common::{scrape, value};

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use common::constants::{ADMIN_PASSWORD, S3_SECRET_KEY, SENTINEL};
use common::env::{Env, inject};
use common::fixtures::zstd;
use common::services::free_port;
use common::sink::{Answer, Sink};
use common::staging::prod_dump;
use common::{smtp, unique};
use staging_refresh::config::Config;
use staging_refresh::metrics::{self, Metrics, Sources};
use staging_refresh::shutdown::CancellationToken;
use staging_refresh::state::StateFile;

/// Values of the production fixture (tests/fixtures/prod-shaped.sql) no email may carry.
const PRODUCTION_VALUES: &[&str] = &[
    "example-customer.com",
    "Customer Number",
    "sk_live_",
    "partner1.example.com",
    "/api/push",
    "info@shootify.io",
    "ops@shootify.io",
    "$2b$12$KIXQJ1bQ8ZpvVh5YnYJrUe",
];

/// The test world with `extra` sections in its config.
async fn staging_with(extra: &str) -> Env {
    let mut env = Env::empty().await;
    env.sections.push_str(extra);
    env
}

/// Uploads `dump` (plain SQL) as a snapshot taken `age` ago; returns its name, time and size.
async fn upload(env: &Env, dump: &[u8], age: Duration) -> (String, DateTime<Utc>, u64) {
    // The name holds whole seconds.
    let taken_at = DateTime::from_timestamp((Utc::now() - age).timestamp(), 0).unwrap();
    let body = zstd(dump);
    let size = body.len() as u64;
    (env.upload_taken(body, taken_at, true).await, taken_at, size)
}

/// `[notify]` sending to `to` through `smtp_url`.
fn notify(smtp_url: &str, to: &str) -> String {
    format!(
        "[notify]\nsmtp_url = \"{smtp_url}\"\nfrom = \"staging-refresh@staging.example.com\"\nto = [\"{to}\"]\n"
    )
}

/// A fresh recipient address, so each test reads only its own mail.
fn recipient() -> String {
    format!("{}@staging.example.com", unique("admin"))
}

fn close_to(actual: f64, expected: DateTime<Utc>) -> bool {
    (actual - expected.timestamp_millis() as f64 / 1000.0).abs() < 0.01
}

/// Serves the metrics of `config`'s state dir on a free port, as the daemon does.
async fn serve(config: &Config) -> (metrics::Endpoint, CancellationToken) {
    let trigger = CancellationToken::new();
    let shutdown = trigger.clone();
    let endpoint = metrics::serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Metrics::new()),
        Sources::of(config),
        shutdown,
    )
    .await
    .unwrap();
    (endpoint, trigger)
}

#[tokio::test]
async fn metrics_tell_what_the_runs_did_and_survive_a_restart() {
    let staging = staging_with("").await;
    let config = staging.loaded();
    staging.init_target().await;
    let (endpoint, stop) = serve(&config).await;
    let (status, _, body) = common::http_get(endpoint.addr, "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    assert!(
        common::http_get(endpoint.addr, "/nope")
            .await
            .0
            .contains("404")
    );
    let before = scrape(endpoint.addr).await;
    assert_eq!(
        value(
            &before,
            r#"staging_refresh_runs_total{kind="refresh",outcome="ok"}"#
        ),
        0.0
    );
    assert_eq!(
        value(&before, "staging_refresh_last_success_timestamp_seconds"),
        0.0
    );
    let version = format!(
        "staging_refresh_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&before, &version), 1.0);

    // A successful refresh.
    let (_, good_taken, good_size) = upload(&staging, prod_dump(), Duration::hours(2)).await;
    let out = staging.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    let finished: DateTime<Utc> = report["finished_at"].as_str().unwrap().parse().unwrap();
    let after_ok = scrape(endpoint.addr).await;
    for (series, expected) in [
        (
            r#"staging_refresh_runs_total{kind="refresh",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"staging_refresh_runs_total{kind="refresh",outcome="failed"}"#,
            0.0,
        ),
        (r#"staging_refresh_last_run_outcome{outcome="ok"}"#, 1.0),
        (r#"staging_refresh_last_run_outcome{outcome="failed"}"#, 0.0),
        ("staging_refresh_snapshot_size_bytes", good_size as f64),
        ("staging_refresh_verification_failures", 0.0),
        ("staging_refresh_running", 0.0),
        ("staging_refresh_maintenance", 0.0),
        ("staging_refresh_email_failures_total", 0.0),
        (
            "staging_refresh_restored_bytes",
            report["bytes_restored"].as_f64().unwrap(),
        ),
        (
            "staging_refresh_maintenance_window_seconds",
            report["maintenance_seconds"].as_f64().unwrap(),
        ),
    ] {
        assert_eq!(value(&after_ok, series), expected, "{series}");
    }
    assert!(close_to(
        value(&after_ok, "staging_refresh_last_success_timestamp_seconds"),
        finished
    ));
    assert!(close_to(
        value(&after_ok, "staging_refresh_last_run_timestamp_seconds"),
        finished
    ));
    assert!(close_to(
        value(
            &after_ok,
            "staging_refresh_snapshot_taken_timestamp_seconds"
        ),
        good_taken
    ));
    for table in ["public.\\\"user\\\"", "public.product"] {
        let key = table.replace("\\\"", "\"");
        assert_eq!(
            value(
                &after_ok,
                &format!("staging_refresh_restored_rows{{table=\"{table}\"}}")
            ),
            report["rows_restored"][&key].as_f64().unwrap(),
            "{table}"
        );
    }
    assert_eq!(
        value(
            &after_ok,
            r#"staging_refresh_anonymized_rows{table="public.\"user\""}"#
        ),
        report["rows_anonymized"]["public.\"user\""]
            .as_f64()
            .unwrap()
    );
    for phase in ["prepare", "restore", "anonymize", "cutover", "cleanup"] {
        let seconds = value(
            &after_ok,
            &format!("staging_refresh_phase_duration_seconds{{phase=\"{phase}\"}}"),
        );
        assert!(seconds >= 0.0, "{phase}");
    }
    assert!(
        value(
            &after_ok,
            r#"staging_refresh_phase_duration_seconds{phase="restore"}"#
        ) > 0.0
    );

    // A newer snapshot that is broken: the refresh fails; staging keeps serving `good`.
    let broken = zstd(prod_dump());
    staging
        .upload_taken(
            broken[..broken.len() / 2].to_vec(),
            Utc::now() - Duration::minutes(10),
            false,
        )
        .await;
    let out = staging.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["failed_phase"], "restore");
    let failed_at: DateTime<Utc> = out.json()["finished_at"].as_str().unwrap().parse().unwrap();
    let after_failure = scrape(endpoint.addr).await;
    for (series, expected) in [
        (
            r#"staging_refresh_runs_total{kind="refresh",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"staging_refresh_runs_total{kind="refresh",outcome="failed"}"#,
            1.0,
        ),
        (r#"staging_refresh_last_run_outcome{outcome="ok"}"#, 0.0),
        (r#"staging_refresh_last_run_outcome{outcome="failed"}"#, 1.0),
        // What staging serves is still the good snapshot.
        ("staging_refresh_snapshot_size_bytes", good_size as f64),
    ] {
        assert_eq!(value(&after_failure, series), expected, "{series}");
    }
    assert!(close_to(
        value(&after_failure, "staging_refresh_last_run_timestamp_seconds"),
        failed_at
    ));
    assert!(close_to(
        value(
            &after_failure,
            "staging_refresh_last_success_timestamp_seconds"
        ),
        finished
    ));
    assert!(close_to(
        value(
            &after_failure,
            "staging_refresh_snapshot_taken_timestamp_seconds"
        ),
        good_taken
    ));
    assert!(
        !after_failure.contains_key(r#"staging_refresh_phase_duration_seconds{phase="cutover"}"#)
    );
    assert_eq!(
        value(&after_failure, "staging_refresh_maintenance_window_seconds"),
        report["maintenance_seconds"].as_f64().unwrap(),
        "the last cutover's window"
    );

    // A restart: a fresh endpoint reads the same state and says the same.
    stop.cancel();
    endpoint.stopped().await;
    let (restarted, _stop) = serve(&staging.loaded()).await;
    assert_eq!(scrape(restarted.addr).await, after_failure);

    // A maintenance flag left behind, and a run in progress, show.
    let raised = Utc::now() - Duration::minutes(20);
    std::fs::write(
        config.flag_file(),
        format!(
            r#"{{"run_id": "r1", "since": "{}", "snapshot": "s"}}"#,
            raised.to_rfc3339()
        ),
    )
    .unwrap();
    let state = StateFile::in_dir(&config.daemon.state_dir);
    let started = Utc::now() - Duration::minutes(3);
    state.update(|s| {
        s.current = Some(staging_refresh::state::CurrentRun {
            run_id: "r2".into(),
            pid: std::process::id(),
            started_at: started,
            phase: staging_refresh::report::Phase::Restore,
            snapshot: None,
            progress: None,
            media: None,
        })
    });
    let live = scrape(restarted.addr).await;
    assert_eq!(value(&live, "staging_refresh_maintenance"), 1.0);
    assert!(close_to(
        value(&live, "staging_refresh_maintenance_since_timestamp_seconds"),
        raised
    ));
    assert_eq!(value(&live, "staging_refresh_running"), 1.0);
    assert!(close_to(
        value(&live, "staging_refresh_run_started_timestamp_seconds"),
        started
    ));
    // A run recorded by a process that is gone is not running.
    state.update(|s| s.current.as_mut().unwrap().pid = u32::MAX / 2);
    std::fs::remove_file(config.flag_file()).unwrap();
    let gone = scrape(restarted.addr).await;
    assert_eq!(value(&gone, "staging_refresh_running"), 0.0);
    assert_eq!(
        value(&gone, "staging_refresh_run_started_timestamp_seconds"),
        0.0
    );
    assert_eq!(value(&gone, "staging_refresh_maintenance"), 0.0);
}

/// The one message `to` received: subject, text part, HTML part, and the raw message.
struct Email {
    subject: String,
    text: String,
    html: String,
    raw: String,
}

fn received(to: &str) -> Email {
    let messages = smtp().messages_to(to);
    assert_eq!(
        messages.len(),
        1,
        "expected one email to {to}: {messages:#?}"
    );
    let raw = messages.into_iter().next().unwrap();
    let parsed = mailparse::parse_mail(raw.as_bytes()).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let part = |mime: &str| {
        parsed
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .unwrap_or_else(|| panic!("no {mime} part in {raw}"))
            .get_body()
            .unwrap()
    };
    let subject = parsed
        .headers
        .iter()
        .find(|h| h.get_key().eq_ignore_ascii_case("subject"))
        .unwrap()
        .get_value();
    Email {
        subject,
        text: part("text/plain"),
        html: part("text/html"),
        raw,
    }
}

impl Email {
    fn subject_starts_with(&self, prefix: &str) {
        assert!(self.subject.starts_with(prefix), "{}", self.subject);
    }

    /// Both parts say `what`.
    fn says(&self, what: &str) {
        assert!(
            self.text.contains(what),
            "text part lacks {what:?}:\n{}",
            self.text
        );
        let html = what
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        assert!(
            self.html.contains(&html),
            "HTML part lacks {html:?}:\n{}",
            self.html
        );
    }

    /// Nothing secret and no production value anywhere in the message.
    fn leaks_nothing(&self) {
        for secret in [ADMIN_PASSWORD, S3_SECRET_KEY]
            .iter()
            .chain(PRODUCTION_VALUES)
        {
            for (part, body) in [
                ("raw", &self.raw),
                ("text", &self.text),
                ("html", &self.html),
            ] {
                assert!(!body.contains(secret), "{part} carries {secret:?}:\n{body}");
            }
        }
    }
}

#[tokio::test]
async fn the_summary_email_says_what_a_refresh_did_and_leaks_nothing() {
    let to = recipient();
    let staging = staging_with(&notify(&smtp().url(), &to)).await;
    staging.init_target().await;
    let (name, taken_at, _) = upload(&staging, prod_dump(), Duration::hours(3)).await;
    let out = staging.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();

    let email = received(&to);
    email.subject_starts_with(&format!("[staging-refresh] OK: {name} ("));
    email.says(&format!(
        "Staging now serves production snapshot {name}, anonymized."
    ));
    email.says(&format!(
        "The data it replaced is kept as database {}__previous",
        staging.db
    ));
    email.says(&taken_at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    email.says("(3h 0m ago)");
    email.says("checksum verified");
    for phase in [
        "prepare",
        "restore",
        "anonymize",
        "cutover",
        "cleanup",
        "maintenance window",
    ] {
        email.says(phase);
    }
    email.says("(staging was unavailable this long)");
    // Rows per table, restored and anonymized.
    let users = report["rows_restored"]["public.\"user\""].to_string();
    let anonymized = report["rows_anonymized"]["public.\"user\""].to_string();
    assert!(
        email
            .text
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["public.\"user\"", &users, &anonymized]),
        "{}",
        email.text
    );
    // Names on the left, counts lined up on the right.
    let cell = |align: &str, c: &str| {
        format!("<td style=\"padding-right: 1em; text-align: {align}\">{c}</td>")
    };
    let row = format!(
        "<tr>{}{}{}</tr>",
        cell("left", "public.&quot;user&quot;"),
        cell("right", &users),
        cell("right", &anonymized)
    );
    assert!(email.html.contains(&row), "{row} not in {}", email.html);
    email.says("Verification: all 7 checks passed.");
    email.says("PII scan: nothing unmasked found.");
    email.says(&format!("Run {}", report["run_id"].as_str().unwrap()));
    assert!(!email.text.contains("What to do"), "{}", email.text);
    email.leaks_nothing();
}

#[tokio::test]
async fn a_failure_email_names_the_phase_and_the_way_back_without_production_values() {
    // A duplicated row id: the primary key fails, and PostgreSQL's DETAIL quotes the value.
    // (Users' rows cannot be injected: an INSERT setting masked columns is refused.)
    let dump = std::str::from_utf8(prod_dump()).unwrap();
    let row = common::prod_postgres().query(
        "app",
        "SELECT id, owner_id FROM organization ORDER BY id LIMIT 1",
    );
    let (org, owner) = row.split_once('|').unwrap();
    let dump = dump.replacen(
        "\n\\.\n",
        &format!(
            "\n\\.\nINSERT INTO public.organization (id, owner_id, name, plan) \
             VALUES ('{org}', '{owner}', 'Duplicate', 'free');\n"
        ),
        1,
    );
    let to = recipient();
    let staging = staging_with(&notify(&smtp().url(), &to)).await;
    staging.init_target().await;
    let (name, _, _) = upload(&staging, dump.as_bytes(), Duration::hours(1)).await;
    let out = staging.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    // The whole error (stderr, the state file) names the index, with the value withheld.
    assert!(
        out.stderr.contains("could not create unique index")
            && out.stderr.contains("Key (id)=(…) is duplicated"),
        "{out:?}"
    );
    assert!(!out.stderr.contains(org), "{out:?}");
    assert_eq!(staging.query("SELECT note FROM sentinel"), SENTINEL);

    let email = received(&to);
    email.subject_starts_with(&format!("[staging-refresh] FAILED in restore: {name} ("));
    email.says("The refresh failed in the restore phase. Staging still serves its previous data, unchanged");
    email.says(
        "server error 23505 (unique violation) on schema \"public\", table \"organization\", \
         constraint \"organization_pkey\"",
    );
    email.says("`staging-refresh status` on the staging host shows the whole error");
    email.says(&format!("staging-refresh run --snapshot {name}"));
    email.says("systemctl start staging-refresh@now");
    email.says("none: staging stayed up");
    email.leaks_nothing();
    assert!(!email.raw.contains(org), "{}", email.raw);
}

/// A production value no channel but the staging host's own may carry: a customer's name
/// and phone number.
const CUSTOMER: &str = "Zebedee Quixworth +44 20 7946 0958";

/// `[notify]` to `to` and a `json` webhook posting to `sink`.
fn notify_and_post(to: &str, sink: &Sink) -> String {
    format!(
        "{}\n[[notify.webhook]]\nurl = \"{}/json\"\nkind = \"json\"\n",
        notify(&smtp().url(), to),
        sink.url
    )
}

/// What the metrics endpoint would serve for `env`'s state.
fn metrics_text(env: &Env) -> String {
    let metrics = Metrics::new();
    Sources::of(&env.loaded()).update(&metrics);
    metrics.text()
}

#[tokio::test]
async fn a_copy_failing_on_a_kept_value_sends_that_value_nowhere() {
    // A kept column's row the server refuses: its message and its context quote the value.
    let to = recipient();
    let sink = Sink::start(Answer::Ok).await;
    let mut staging = staging_with(&notify_and_post(&to, &sink)).await;
    staging.anonymize =
        "[[anonymize.column]]\ntable = \"public.note\"\ncolumn = \"tags\"\nmask = \"keep\"\n"
            .into();
    let dump = inject(
        prod_dump(),
        "\\.",
        &format!(
            "CREATE TABLE public.note (id integer, tags text[]);\n\
             COPY public.note (id, tags) FROM stdin;\n1\t{{\"{CUSTOMER}\"\n\\.\n"
        ),
    );
    staging.init_target().await;
    upload(&staging, &dump, Duration::hours(1)).await;
    let out = staging.run(&["run", "--skip-media"]).await;

    // The log line and the state file: the whole error, the value withheld.
    staging.assert_failed_cleanly(&out, "loading COPY data into public.note");
    assert!(
        out.stderr.contains("malformed array literal: \"…\"")
            && out
                .stderr
                .contains("CONTEXT: COPY note, line 1, column tags: \"…\""),
        "{out:?}"
    );
    let state = std::fs::read_to_string(staging.state_dir().join("state.json")).unwrap();
    assert!(state.contains("malformed array literal"), "{state}");
    // Email, chat and metrics: the structure alone.
    let email = received(&to);
    email.says("loading COPY data into public.note (COPY at dump line");
    email.says("server error 22P02 (invalid text representation) on COPY data line 1, column tags");
    email.leaks_nothing();
    let posted = sink.at("/json").last().expect("a webhook post").to_string();
    assert!(posted.contains("server error 22P02"), "{posted}");
    let metrics = metrics_text(&staging);
    assert!(metrics.contains("staging_refresh_last_run_outcome{outcome=\"failed\"} 1"));
    for (channel, text) in [
        ("stderr", &out.stderr),
        ("state", &state),
        ("email", &email.raw),
        ("email text", &email.text),
        ("email html", &email.html),
        ("webhook", &posted),
        ("metrics", &metrics),
    ] {
        for part in ["Zebedee", "Quixworth", "7946"] {
            assert!(!text.contains(part), "{channel} carries {part:?}:\n{text}");
        }
    }
}

#[tokio::test]
async fn a_table_named_after_a_customer_is_sent_out_by_a_hash() {
    // The name is the dump's, kept as it is in staging and shown whole on the staging host;
    // what is sent out shows it by a hash, the same in every channel.
    let to = recipient();
    let sink = Sink::start(Answer::Ok).await;
    let staging = staging_with(&notify_and_post(&to, &sink)).await;
    let dump = inject(
        prod_dump(),
        "\\.",
        &format!(
            "CREATE TABLE public.\"{CUSTOMER}\" (id integer);\n\
             COPY public.\"{CUSTOMER}\" (id) FROM stdin;\n1\n\\.\n"
        ),
    );
    staging.init_target().await;
    upload(&staging, &dump, Duration::hours(1)).await;
    let out = staging.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let table = format!("public.\"{CUSTOMER}\"");
    assert_eq!(out.json()["rows_restored"][&table], 1, "{}", out.stdout);

    let metrics = metrics_text(&staging);
    let label = regex::Regex::new(
        r#"staging_refresh_restored_rows\{table="(public\.\[hashed [0-9a-f]{8}\])"\} 1"#,
    )
    .unwrap();
    let hashed = &label
        .captures(&metrics)
        .unwrap_or_else(|| panic!("{metrics}"))[1];
    let email = received(&to);
    email.says(hashed);
    let posted = sink.at("/json").last().expect("a webhook post").to_string();
    assert!(posted.contains(hashed), "{posted}");
    for (channel, text) in [
        ("email", &email.raw),
        ("email text", &email.text),
        ("webhook", &posted),
        ("metrics", &metrics),
    ] {
        for part in ["Zebedee", "Quixworth", "7946"] {
            assert!(!text.contains(part), "{channel} carries {part:?}:\n{text}");
        }
    }
}

#[tokio::test]
async fn a_refused_run_is_emailed_as_refused() {
    let to = recipient();
    let staging = staging_with(&notify(&smtp().url(), &to)).await;
    // No init-target: the guard refuses.
    let out = staging.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    let email = received(&to);
    email.subject_starts_with("[staging-refresh] REFUSED in prepare: no snapshot selected (");
    email.says("A guard refused the refresh before anything changed.");
    email.says("not marked as a refresh target");
    email.says("staging-refresh check");
    email.leaks_nothing();
}

#[tokio::test]
async fn an_unreachable_or_insecure_smtp_server_is_counted_and_never_changes_the_outcome() {
    let to = recipient();
    let dead = format!("smtp://127.0.0.1:{}", free_port());
    let staging = staging_with(&notify(&dead, &to)).await;
    staging.init_target().await;
    upload(&staging, prod_dump(), Duration::hours(1)).await;
    let out = staging.run(&["run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("the summary email could not be sent"),
        "{out:?}"
    );
    let config = staging.loaded();
    let state = StateFile::in_dir(&config.daemon.state_dir).read().unwrap();
    assert_eq!(state.totals.email_failures, 1);

    // STARTTLS required, and the sink offers none: nothing goes out in clear.
    let insecure = common::write_config(
        &staging
            .config_text()
            .replace(&dead, &format!("{}?tls=required", smtp().url())),
    );
    let out = common::run(
        &insecure,
        &["run", "--skip-media", "--snapshot", "no-such-snapshot"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("the summary email could not be sent"),
        "{out:?}"
    );
    assert!(smtp().messages_to(&to).is_empty());

    let (endpoint, _stop) = serve(&config).await;
    let samples = scrape(endpoint.addr).await;
    assert_eq!(value(&samples, "staging_refresh_email_failures_total"), 2.0);
    assert_eq!(
        value(
            &samples,
            r#"staging_refresh_runs_total{kind="refresh",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            r#"staging_refresh_runs_total{kind="refresh",outcome="failed"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn a_failure_after_the_swap_says_the_new_data_is_live_and_how_to_roll_back() {
    let to = recipient();
    let backend = format!(
        "health_url = \"http://127.0.0.1:{}/health\"\nhealth_timeout = \"1s\"\n",
        free_port()
    );
    let staging = staging_with(&format!("{backend}\n{}", notify(&smtp().url(), &to))).await;
    staging.init_target().await;
    let (name, _, _) = upload(&staging, prod_dump(), Duration::hours(1)).await;
    let out = staging.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let report = out.json();
    assert_eq!(report["failed_phase"], "cutover");
    assert_eq!(report["snapshot_live"], true);

    let email = received(&to);
    email.subject_starts_with(&format!("[staging-refresh] FAILED in cutover: {name} ("));
    email.says(&format!(
        "The refresh failed in the cutover phase, after the new data was swapped in: staging serves the new snapshot {name}"
    ));
    email.says("staging-refresh rollback");
    email.says("unknown: the cutover did not finish");
    email.leaks_nothing();
}
