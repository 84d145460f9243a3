//! `rules` and `plan` against real PostgreSQL and S3: the prod-shaped snapshot plus two
//! columns no rule names, one holding emails and one holding nothing personal. `rules`
//! names both with a suggestion and the evidence (counts, never a value) and exits 1; its
//! `--toml` output, added to the config, classifies them, and the next run masks and keeps
//! what it says; `plan` shows what would be masked, kept and emptied.

use crate::common;

use chrono::Utc;

use common::env::Env;
use common::fixtures::{dump_sql, psql_as_owner, seed_prod, zstd};
use common::{prod_postgres, unique};

/// Users in this test's production database.
const USERS: u64 = 20;

/// Distinctive production values: the fixture's customers' emails and names, and the new
/// column's backup addresses.
const PRODUCTION_VALUES: &[&str] = &[
    "example-customer.com",
    "@recovery-",
    "Customer Number 7",
    "info@shootify.io",
];

/// The prod-shaped database with `recovery_email` (an address per user) and `ui_theme`
/// (dark or light) added to the users table, dumped; returns its name and the dump.
fn production() -> (String, Vec<u8>) {
    let prod = prod_postgres();
    let db = unique("app");
    seed_prod(prod, &db, USERS);
    psql_as_owner(
        prod,
        &db,
        &[
            "-c",
            "ALTER TABLE \"user\" ADD COLUMN recovery_email text, ADD COLUMN ui_theme varchar(12);
             UPDATE \"user\" SET recovery_email = replace(email, '@', '@recovery-'),
                                 ui_theme = CASE WHEN random() < 0.5 THEN 'dark' ELSE 'light' END;",
        ],
    );
    let dump = dump_sql(prod, &db);
    (db, dump)
}

async fn env() -> Env {
    let (source, dump) = production();
    let mut env = Env::empty().await;
    env.snapshot_database = source;
    env.upload_taken(zstd(&dump), Utc::now() - chrono::Duration::hours(1), true)
        .await;
    env
}

fn assert_no_production_value(text: &str) {
    for value in PRODUCTION_VALUES {
        assert!(!text.contains(value), "{value} printed in\n{text}");
    }
}

/// The line of `text` naming `column`.
fn line_of<'a>(text: &'a str, column: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{column} ")))
        .unwrap_or_else(|| panic!("{column} not listed in\n{text}"))
}

#[tokio::test]
async fn rules_names_unclassified_columns_with_evidence_and_its_toml_classifies_them() {
    let mut env = env().await;

    // `rules` needs no staging server: here none listens where the config points.
    let url = std::mem::replace(
        &mut env.url,
        format!(
            "postgres://nobody@127.0.0.1:{}/postgres",
            common::services::free_port()
        ),
    );
    let out = env.run(&["rules"]).await;
    env.url = url;
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_production_value(&format!("{}{}", out.stdout, out.stderr));
    let expected = [
        (
            "public.user.recovery_email",
            format!(
                "UNCLASSIFIED suggest email (the name and most values say so); \
                 evidence: name says email; {USERS} of {USERS} values hold email"
            ),
        ),
        (
            "public.user.ui_theme",
            format!(
                "UNCLASSIFIED review: probably keep, nothing personal seen; \
                 evidence: name says nothing; none of {USERS} values looks personal"
            ),
        ),
    ];
    for (column, listed) in expected {
        let line = line_of(&out.stdout, column);
        assert!(line.ends_with(&listed), "{line}\nexpected {listed}");
    }
    // Classified columns are listed with their rules.
    for (column, rule) in [
        ("public.user.email", "email anonymize.accounts"),
        ("public.user.settings", "keep column rule"),
        ("public.organization.name", "keep table rule"),
    ] {
        let words = line_of(&out.stdout, column)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(words.ends_with(rule), "{words}");
    }
    assert!(
        out.stdout
            .contains("2 unclassified columns: a run would fail"),
        "{out:?}"
    );

    let json = env.run(&["--json", "rules"]).await;
    assert_eq!(json.code, 1, "{json:?}");
    assert_no_production_value(&json.stdout);
    let doc = json.json();
    let column = |name: &str| {
        doc["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["table"] == "public.user" && c["column"] == name)
            .unwrap_or_else(|| panic!("{name} not in {doc}"))
            .clone()
    };
    let email = column("recovery_email");
    assert_eq!(email["mask"], serde_json::Value::Null, "{email}");
    assert_eq!(email["suggestion"]["mask"], "email", "{email}");
    assert_eq!(email["evidence"]["values"], USERS, "{email}");
    assert_eq!(email["evidence"]["kinds"]["email"], USERS, "{email}");
    let theme = column("ui_theme");
    assert_eq!(theme["suggestion"]["mask"], "keep", "{theme}");
    assert_eq!(theme["evidence"]["kinds"], serde_json::json!({}), "{theme}");
    assert_eq!(column("email")["rule"], "accounts");

    let toml = env.run(&["rules", "--toml"]).await;
    assert_eq!(toml.code, 1, "{toml:?}");
    assert_no_production_value(&toml.stdout);
    assert!(
        toml.stdout.contains(&format!(
            "# evidence: name says email; {USERS} of {USERS} values hold email\n\
             [[anonymize.column]]\ntable = \"public.user\"\ncolumn = \"recovery_email\"\n\
             mask = \"email\"\n"
        )),
        "{toml:?}"
    );
    assert!(
        toml.stdout.contains(
            "review: probably keep, nothing personal seen\n# evidence: name says nothing"
        ),
        "{toml:?}"
    );
    assert!(!toml.stdout.contains("table = \"public.organization\""));

    env.anonymize.push_str(&toml.stdout);
    let out = env.run(&["rules"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("every column is classified"), "{out:?}");

    let run = env.refresh().await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let kept = report["columns_kept"].to_string();
    assert!(kept.contains("public.user.ui_theme"), "{kept}");
    assert!(kept.contains("public.user.settings"), "{kept}");
    assert!(!kept.contains("recovery_email"), "{kept}");
    assert_eq!(
        report["masked_values"]["public.user"]["recovery_email"], USERS,
        "{report}"
    );
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\" WHERE recovery_email ~ '^anon_[0-9a-f]{16}@'"),
        USERS.to_string()
    );
    assert_eq!(
        env.query("SELECT count(*) FROM \"user\" WHERE ui_theme IN ('dark', 'light')"),
        USERS.to_string()
    );
    let status = env.run(&["status"]).await;
    let kept = kept.matches("public.").count();
    assert!(
        status
            .stdout
            .contains(&format!("{kept} columns kept as not personal")),
        "{status:?}"
    );
}

#[tokio::test]
async fn plan_names_the_masked_kept_emptied_and_unclassified_columns() {
    let mut env = env().await;
    env.anonymize.push_str(
        "\n[[anonymize.table]]\ntable = \"shooting\"\nmode = \"empty\"\n\
         \n[[anonymize.column]]\ntable = \"user\"\ncolumn = \"ui_theme\"\nmask = \"keep\"\n",
    );
    let out = env.run(&["plan"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_no_production_value(&out.stdout);
    let text = &out.stdout;
    assert!(
        text.contains(&format!(
            "would anonymize {} users (the admin is re-keyed in place)",
            USERS - 1
        )),
        "{text}"
    );
    let after = |heading: &str| {
        let at = text
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading:?} in\n{text}"));
        text[at..].to_owned()
    };
    let masked = after("masking in the restore stream:");
    for (column, mask) in [
        ("public.user.email", "email (anonymize.accounts)"),
        (
            "public.user.hashed_password",
            "password (anonymize.accounts)",
        ),
        (
            "public.external_system_integration.push_service_api_key",
            "null (column rule)",
        ),
    ] {
        assert!(line_of(&masked, column).ends_with(mask), "{masked}");
    }
    assert!(text.contains("would restore without rows: public.shooting"));
    let kept = after("would keep as not personal:");
    assert!(line_of(&kept, "public.user.ui_theme").ends_with("column rule"));
    assert!(line_of(&kept, "public.product.description").ends_with("table rule"));
    let unclassified = after("unclassified, run would fail (anonymize.unclassified = \"fail\")");
    assert!(line_of(&unclassified, "public.user.recovery_email").ends_with("text"));

    let json = env.run(&["--json", "plan"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    let masking = &json.json()["masking"];
    assert_eq!(masking["emptied"], serde_json::json!(["public.shooting"]));
    let unclassified: Vec<&str> = masking["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["mask"].is_null())
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(unclassified, ["recovery_email"], "{masking}");
}
