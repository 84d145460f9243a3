//! Failure advice per cause: a failed run's "What to do" (in `run`'s and `status`'s text, the
//! email and the chat message) says what to do for its cause, which the report keeps.

use crate::common;

use chrono::Utc;

use common::Run;
use common::env::{Env, inject};
use common::fixtures::{md5_hex, zstd};
use common::sink::{Answer, Sink};
use common::staging::prod_dump;
use common::{smtp, unique};

/// The "What to do" section of the last run, as `status` prints it.
async fn what_to_do(env: &Env) -> String {
    let status = env.run(&["status"]).await.stdout;
    let section = status.split("What to do").nth(1);
    section
        .unwrap_or_else(|| panic!("no advice in {status}"))
        .to_owned()
}

fn cause(out: &Run) -> serde_json::Value {
    out.json()["cause"].clone()
}

#[tokio::test]
async fn unclassified_columns_name_the_command_printing_their_rules_everywhere() {
    let dump = std::str::from_utf8(prod_dump()).unwrap();
    let table = "CREATE TABLE public.\"user\" (\n";
    let dump = dump.replacen(table, &format!("{table}    referral_note text,\n"), 1);
    let mut env = Env::new(dump.as_bytes()).await;
    let sink = Sink::start(Answer::Ok).await;
    let recipient = format!("{}@staging.example.com", unique("admin"));
    env.sections.push_str(&format!(
        "\n[notify]\nsmtp_url = \"{}\"\nfrom = \"refresh@staging.example.com\"\nto = [\"{recipient}\"]\n\
         [[notify.webhook]]\nurl = \"{}/slack\"\nkind = \"slack\"\n",
        smtp().url(),
        sink.url
    ));
    let out = env.refresh().await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(cause(&out)["kind"], "unclassified", "{out:?}");
    let command = format!("staging-refresh rules --snapshot {} --toml", env.snapshot);
    assert!(what_to_do(&env).await.contains(&command));
    let chat = sink.at("/slack").last().unwrap().to_string();
    assert!(chat.contains(&format!("`{command}`")), "{chat}");
    let email = smtp().messages_to(&recipient).join("\n");
    assert!(email.contains("rules --snapshot"), "{email}");
}

#[tokio::test]
async fn a_bad_snapshot_names_the_one_before_it() {
    let env = Env::empty().await;
    let before = env
        .upload_taken(
            zstd(prod_dump()),
            Utc::now() - chrono::Duration::hours(3),
            true,
        )
        .await;
    let sidecar = format!("{}  {}\n", md5_hex(b"something else"), env.snapshot);
    env.upload(zstd(prod_dump()), Some(sidecar)).await;
    let out = env.refresh().await;
    env.assert_failed_cleanly(&out, "checksum mismatch");
    assert_eq!(cause(&out)["previous"], before.as_str(), "{out:?}");
    let advice = what_to_do(&env).await;
    assert!(
        advice.contains(&format!("staging-refresh run --snapshot {before}")),
        "{advice}"
    );
    assert!(
        !advice.contains(&format!("--snapshot {}", env.snapshot)),
        "retrying it fails again: {advice}"
    );
}

#[tokio::test]
async fn a_missing_admin_names_the_key_and_where_it_was_looked_for() {
    let mut env = Env::new(prod_dump()).await;
    env.prod_admin_email = Some("nobody@shootify.io".into());
    let out = env.refresh().await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(cause(&out)["kind"], "admin_not_found", "{out:?}");
    let advice = what_to_do(&env).await;
    assert!(
        advice.contains("anonymize.prod_admin_email matched no row")
            && advice.contains("column email of public.user"),
        "{advice}"
    );
}

#[tokio::test]
async fn a_target_without_its_marker_is_told_to_run_init_target() {
    let env = Env::new(prod_dump()).await;
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(cause(&out)["kind"], "not_opted_in", "{out:?}");
    assert!(
        what_to_do(&env)
            .await
            .contains("staging-refresh init-target")
    );
}

#[tokio::test]
async fn an_extension_the_restore_role_may_not_create_says_how_to_make_it_possible() {
    let dump = inject(
        prod_dump(),
        "SET row_security = off;",
        "CREATE EXTENSION no_such_extension;",
    );
    let env = Env::new(&dump).await;
    let out = env.refresh().await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(cause(&out)["kind"], "forbidden", "{out:?}");
    let advice = what_to_do(&env).await;
    assert!(
        advice.contains("\"CREATE EXTENSION no_such_extension\"")
            && advice.contains("is not installed on the staging server"),
        "{advice}"
    );
}
