//! Schema drift caught when a snapshot lands: the daemon's watch lists the bucket on its own
//! schedule, classifies a new snapshot's columns against the rules, warns on every channel
//! once with the rules to paste, sets the gauge and `status`; a rule and a reload clear it.
//! `check` classifies the newest snapshot the same way.

use crate::common;

use std::time::Duration;

use common::env::Env;
use common::sink::{Answer, Sink};
use common::staging::prod_dump;
use common::{scrape, smtp, unique, value};

use crate::daemon::{Daemon, NotifySocket, wait_until};

/// The production dump, its users table grown a `text` column (pg_dump's COPY lists its
/// columns, so the data without it stays valid: the column restores as NULL).
fn dump_with_new_column() -> Vec<u8> {
    let dump = std::str::from_utf8(prod_dump()).unwrap();
    let table = "CREATE TABLE public.\"user\" (\n";
    assert!(dump.contains(table));
    dump.replacen(table, &format!("{table}    referral_note text,\n"), 1)
        .into_bytes()
}

/// The text part of each email to `to`.
fn emails_to(to: &str) -> Vec<(String, String)> {
    smtp()
        .messages_to(to)
        .iter()
        .map(|raw| {
            let mail = mailparse::parse_mail(raw.as_bytes()).unwrap();
            let subject = mail
                .headers
                .iter()
                .find(|h| h.get_key().eq_ignore_ascii_case("subject"))
                .unwrap()
                .get_value();
            let text = mail
                .subparts
                .iter()
                .find(|p| p.ctype.mimetype == "text/plain")
                .unwrap()
                .get_body()
                .unwrap();
            (subject, text)
        })
        .collect()
}

const RULE: &str = "[[anonymize.column]]\ntable = \"public.user\"\ncolumn = \"referral_note\"\n";

#[tokio::test]
async fn a_new_unclassified_column_is_warned_about_when_its_snapshot_lands() {
    let sink = Sink::start(Answer::Ok).await;
    let mut env = Env::new(prod_dump()).await;
    let recipient = format!("{}@staging.example.com", unique("admin"));
    // The schedule's next run is a year away: only the watch can tell.
    env.schedule = "cron = \"0 0 3 1 1 *\"\ncatch_up = false\nwatch = \"1s\"\n".into();
    env.sections.push_str(&format!(
        "\n[notify]\nsmtp_url = \"{}\"\nfrom = \"refresh@staging.example.com\"\nto = [\"{recipient}\"]\n\
         [[notify.webhook]]\nurl = \"{}/json\"\nkind = \"json\"\n",
        smtp().url(),
        sink.url
    ));
    env.config();
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start(&env, &notify, None);
    notify.wait_for("READY=1", 1).await;
    let status = || async { env.run(&["--json", "status"]).await.json() };
    // The snapshot there at start is classified: nothing to say.
    let first = env.snapshot.clone();
    let mut seen = serde_json::Value::Null;
    for _ in 0..200 {
        seen = status().await;
        if seen["drift"]["snapshot"] == first.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen["drift"]["unclassified"],
        serde_json::json!([]),
        "{seen:#}"
    );
    assert_eq!(
        value(
            &scrape(env.metrics).await,
            "staging_refresh_unclassified_columns"
        ),
        0.0
    );

    // A new snapshot lands with a new text column.
    let newer = chrono::Utc::now() + chrono::Duration::seconds(1);
    let name = env
        .upload_taken(
            common::fixtures::zstd(&dump_with_new_column()),
            newer,
            false,
        )
        .await;
    wait_until("the json webhook", Duration::from_secs(60), || {
        !sink.at("/json").is_empty()
    })
    .await;
    let told = sink.at("/json");
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_eq!(told[0]["severity"], "warning");
    let headline = told[0]["headline"].as_str().unwrap();
    assert_eq!(
        headline,
        format!("SCHEMA DRIFT: 1 unclassified column(s) in {name}")
    );
    let payload = told[0].to_string();
    assert!(
        payload.contains("public.user: referral_note (text)"),
        "{payload}"
    );
    assert!(
        payload.contains(&RULE.replace('"', "\\\"").replace('\n', "\\n")),
        "{payload}"
    );
    wait_until("the email", Duration::from_secs(30), || {
        !smtp().messages_to(&recipient).is_empty()
    })
    .await;
    let emails = emails_to(&recipient);
    assert_eq!(emails.len(), 1);
    let (subject, text) = &emails[0];
    assert_eq!(subject, &format!("[staging-refresh] {headline}"));
    for line in RULE.lines() {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(
        text.contains(&format!("staging-refresh rules --snapshot {name} --toml")),
        "{text}"
    );

    let samples = scrape(env.metrics).await;
    assert_eq!(value(&samples, "staging_refresh_unclassified_columns"), 1.0);
    let json = status().await;
    assert_eq!(json["drift"]["snapshot"], name.as_str());
    assert_eq!(json["drift"]["unclassified"][0]["column"], "referral_note");
    let text = env.run(&["status"]).await.stdout;
    assert!(text.contains("1 UNCLASSIFIED column(s)"), "{text}");
    assert!(text.contains("public.user: referral_note (text)"), "{text}");
    // `check` classifies the newest snapshot too, and fails while a column is unclassified.
    let check = env.run(&["check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stdout.contains("FAIL  snapshot columns"), "{check:?}");

    // Once per snapshot: the next listings say nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.at("/json").len(), 1);
    assert_eq!(smtp().messages_to(&recipient).len(), 1);

    // The rule added and a reload: classified again, cleared, and no more warnings.
    env.anonymize = format!("{RULE}mask = \"text\"\n");
    env.config();
    daemon.signal(libc::SIGHUP);
    notify.wait_for("READY=1", 2).await;
    wait_until("the gauge to clear", Duration::from_secs(60), || {
        let state = std::fs::read(env.state_dir().join("state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
        state["drift"]["unclassified"] == serde_json::json!([])
    })
    .await;
    assert_eq!(
        value(
            &scrape(env.metrics).await,
            "staging_refresh_unclassified_columns"
        ),
        0.0
    );
    let text = env.run(&["status"]).await.stdout;
    assert!(
        text.contains(&format!("every column of {name} is classified")),
        "{text}"
    );
    assert_eq!(sink.at("/json").len(), 1);
    let check = env.run(&["check"]).await;
    assert!(check.stdout.contains("ok    snapshot columns"), "{check:?}");
    assert_eq!(
        daemon.stop(Duration::from_secs(10)).await,
        0,
        "{}",
        daemon.log()
    );
}
