//! Any application's database: no application's table or column name is compiled in, and the
//! dumps real applications write restore with the README's recommended roles.

use crate::common;

use std::sync::OnceLock;

use common::env::{ADMIN_EMAIL, ADMIN_PASSWORD, Env, inject};
use common::fixtures::{dump_sql, seed_as_superuser};
use common::{Postgres, prod_postgres, unique};

/// The other application's accounts, its admin flag included, and rules for its other text.
const OTHER_ACCOUNTS: &str = r#"
[anonymize.accounts]
table = "public.users"
id = "id"
email = "email"
password = "encrypted_password"
name = "name"
superuser = "admin"
"#;
const OTHER_RULES: &str = r#"
[[anonymize.table]]
table = "public.posts"
mode = "keep"

[[anonymize.table]]
table = "partman.template_public_events"
mode = "keep"
"#;
const OTHER_ADMIN: &str = "root@other-app.example";
const OTHER_USERS: u64 = 50;

/// The accounts of the application without an admin, and rules for its other text.
const NO_ADMIN_ACCOUNTS: &str = r#"
[anonymize.accounts]
table = "auth.accounts"
id = "account_id"
email = "login_email"
password = "password_digest"
active = "enabled"
"#;
const NO_ADMIN_RULES: &str = r#"
[[anonymize.table]]
table = "public.notes"
mode = "keep"
"#;

/// `fixture` seeded on the production server as its superuser, dumped once per process.
fn dump_of(fixture: &'static str) -> Vec<u8> {
    static DUMPS: OnceLock<std::sync::Mutex<std::collections::BTreeMap<&str, Vec<u8>>>> =
        OnceLock::new();
    let mut dumps = DUMPS.get_or_init(Default::default).lock().unwrap();
    dumps
        .entry(fixture)
        .or_insert_with(|| {
            let db = unique("app_other");
            seed_as_superuser(prod_postgres(), &db, fixture);
            dump_sql(prod_postgres(), &db)
        })
        .clone()
}

/// A test world restoring `dump` of another application: its accounts and rules.
async fn other_env(dump: &[u8], accounts: &str, rules: &str, admin: Option<&str>) -> Env {
    let mut env = Env::new(dump).await;
    env.accounts = accounts.into();
    env.rules = rules.into();
    env.prod_admin_email = admin.map(str::to_owned);
    env
}

/// A template database on staging holding what the other application's dump creates and the
/// restore role may not: made once by a superuser, as the README's one-time step says. Its
/// partition manager's configuration table belongs to an extension, with a row of its own.
fn template(pg: &Postgres) -> String {
    template_with(
        pg,
        "CREATE SCHEMA extensions AUTHORIZATION pg_database_owner;
         CREATE SCHEMA partman AUTHORIZATION pg_database_owner;
         CREATE EXTENSION bloom SCHEMA public;
         CREATE EXTENSION moddatetime SCHEMA extensions;
         CREATE EXTENSION pg_stat_statements SCHEMA public;
         CREATE TABLE partman.part_config (parent_table text PRIMARY KEY, interval text);
         INSERT INTO partman.part_config VALUES ('public.events', 'template''s');
         ALTER EXTENSION moddatetime ADD TABLE partman.part_config;",
    )
}

/// A template database on staging made by its superuser running `sql` in it.
fn template_with(pg: &Postgres, sql: &str) -> String {
    let name = unique("app_template");
    pg.query(
        "postgres",
        &format!("CREATE DATABASE \"{name}\" IS_TEMPLATE true"),
    );
    pg.query(&name, sql);
    name
}

/// The 1-based line of `text` in `dump`.
fn line_of(dump: &[u8], text: &str) -> usize {
    let dump = std::str::from_utf8(dump).unwrap();
    dump.lines().position(|l| l == text).expect("in the dump") + 1
}

/// `pg_dump <args>` of `db` without owners, comments, blank lines and `\restrict` keys.
fn pg_dump(pg: &Postgres, db: &str, args: &[&str]) -> Vec<String> {
    let mut args = args.to_vec();
    args.push("--no-owner");
    String::from_utf8(common::fixtures::pg_dump(pg, db, &args))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with("\\"))
        .map(str::to_owned)
        .collect()
}

/// What the refresh reports as dropped that a superuser's psql restores: publications and
/// grants on the system catalogs.
fn dropped(line: &str) -> bool {
    line.contains("PUBLICATION")
        || ((line.starts_with("GRANT") || line.starts_with("REVOKE"))
            && line.contains(" pg_catalog."))
}

#[tokio::test]
async fn another_application_restores_with_the_recommended_roles_as_psql_restores_it() {
    let dump = dump_of("other-app.sql");
    // What only a superuser may create, however late in the dump: listed by plan, all at once.
    let with_event_trigger = inject(
        &dump,
        "GRANT SELECT ON TABLE public.posts TO PUBLIC;",
        "CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION public.audit();",
    );
    let mut env = other_env(
        &with_event_trigger,
        OTHER_ACCOUNTS,
        OTHER_RULES,
        Some(OTHER_ADMIN),
    )
    .await;
    env.init_target().await;

    // Without the one-time step: plan and check say what the restore role may not create,
    // and how a superuser makes it; a run stops at the first, before any data.
    let plan = env.run(&["--json", "plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let forbidden: Vec<String> = plan.json()["forbidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    let named = |what: &str| forbidden.iter().any(|f| f.contains(what));
    assert_eq!(forbidden.len(), 4, "{forbidden:#?}");
    for what in [
        "extension \"bloom\"",
        "extension \"moddatetime\"",
        "extension \"pg_stat_statements\"",
        "CREATE EVENT TRIGGER audit_ddl",
    ] {
        assert!(named(what), "{what} not in {forbidden:#?}");
    }
    assert!(
        !named("citext"),
        "a trusted extension is the restore role's to create"
    );
    let check = env.run(&["--json", "check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    let extensions = check
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "extensions")
        .cloned()
        .unwrap();
    let detail = extensions["detail"].as_str().unwrap();
    assert_eq!(extensions["ok"], false, "{detail}");
    assert!(
        detail.contains("\"bloom\"")
            && detail.contains("IS_TEMPLATE true")
            && !detail.contains("citext"),
        "{detail}"
    );
    let bloom = "CREATE EXTENSION IF NOT EXISTS bloom WITH SCHEMA public;";
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    env.assert_failed_cleanly(
        &out,
        &format!(
            "dump line {}: the restore role may not run \"CREATE EXTENSION IF NOT EXISTS bloom \
             WITH SCHEMA public\": only a superuser may create extension \"bloom\"",
            line_of(&with_event_trigger, bloom)
        ),
    );
    assert!(out.stderr.contains("set database.template = "), "{out:?}");
    assert_eq!(out.json()["failed_phase"], "restore");

    // With the template a superuser made once. The dump also carries the rows of an
    // extension's configuration table, which the restore role may not write.
    let template = template(env.pg);
    env.database = format!("template = \"{template}\"\n");
    let config_rows = "COPY partman.part_config (parent_table, \"interval\") FROM stdin;\n\
                       public.events\tproduction's\n\\.";
    let dump_with_config = inject(
        &dump,
        "SELECT pg_catalog.setval('public.users_id_seq', 50, true);",
        config_rows,
    );
    env.upload(common::fixtures::zstd(&dump_with_config), None)
        .await;
    let check = env.run(&["--json", "check"]).await;
    let extensions = check
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "extensions")
        .cloned()
        .unwrap();
    assert_eq!(extensions["ok"], true, "{extensions}");
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    let checks = report["verification"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:#?}");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "exactly one active superuser")
    );
    assert_eq!(report["pii_findings"], serde_json::json!([]));
    assert_eq!(
        report["unpopulated_views"],
        serde_json::json!(["public.monthly_signups"])
    );
    let filtered = report["statements_filtered"].as_object().unwrap();
    for reason in [
        "a publication",
        "GRANT/REVOKE on the system catalogs",
        "COMMENT ON EXTENSION",
        "CREATE EXTENSION of an extension the scratch database has from database.template",
        "CREATE SCHEMA of a schema the scratch database has from database.template",
        "COPY into an extension's table the restore role may not write",
        "OWNER TO",
    ] {
        assert!(
            filtered.keys().any(|k| k.starts_with(reason)),
            "{reason} not in {filtered:#?}"
        );
    }
    assert_eq!(
        env.query("SELECT interval FROM partman.part_config"),
        "template's"
    );

    // The admin's row is the staging admin, id kept; every other account is masked.
    assert_eq!(
        env.query("SELECT id, email, name, admin FROM users WHERE admin"),
        format!("1|{ADMIN_EMAIL}|Staging Admin|t")
    );
    let hash = env.query("SELECT encrypted_password FROM users WHERE id = 1");
    assert!(bcrypt::verify(ADMIN_PASSWORD, &hash).unwrap());
    assert_eq!(
        env.query(
            "SELECT count(*) FROM users WHERE id <> 1 AND email LIKE 'anon\\_%@staging.invalid' \
             AND name = 'Anonymized User' AND NOT admin"
        ),
        (OTHER_USERS - 1).to_string()
    );

    // A superuser's psql restore of the same dump: the same schema and data, but for what the
    // masks changed and what the refresh reported as dropped.
    let psql_db = format!("{}_psql", env.db);
    env.pg.create_db(&psql_db);
    let dump_file = env.dir.join("dump.sql");
    std::fs::write(&dump_file, &dump).unwrap();
    let restored = std::process::Command::new(Postgres::bin("psql"))
        .args(["-X", "-q", "-d", &env.pg.url(&psql_db), "-f"])
        .arg(&dump_file)
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let psql_schema: Vec<String> = pg_dump(env.pg, &psql_db, &["--schema-only"])
        .into_iter()
        .filter(|l| !dropped(l))
        .collect();
    let staging_schema = pg_dump(env.pg, &env.db, &["--schema-only"]);
    assert!(
        psql_schema
            .iter()
            .any(|l| l.contains("CREATE EXTENSION IF NOT EXISTS bloom"))
    );
    assert_eq!(staging_schema, psql_schema);
    let unmasked = ["--data-only", "--exclude-table-data=public.users"];
    assert_eq!(
        pg_dump(env.pg, &env.db, &unmasked),
        pg_dump(env.pg, &psql_db, &unmasked)
    );
    let kept = "SELECT id, created_at FROM users ORDER BY id";
    assert_eq!(env.query(kept), env.pg.query(&psql_db, kept));
}

#[tokio::test]
async fn without_a_production_admin_every_account_is_masked() {
    let dump = dump_of("no-admin-app.sql");
    let env = other_env(&dump, NO_ADMIN_ACCOUNTS, NO_ADMIN_RULES, None).await;
    let plan = env.run(&["plan"]).await;
    assert!(
        plan.stdout.contains(
            "would anonymize 40 users (no production admin is configured) in auth.accounts"
        ),
        "{plan:?}"
    );
    let out = env.refresh().await;
    assert_eq!(out.code, 0, "{out:?}");
    let names: Vec<String> = out.json()["verification"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["ok"], true, "{c}");
            c["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "restored tables hold only their COPY's rows",
            "non-admin emails in the reserved domain",
            "no login-capable account",
            "masked columns hold masked values"
        ]
    );
    assert_eq!(
        env.query(
            "SELECT count(*), count(*) FILTER (WHERE login_email LIKE 'anon\\_%@staging.invalid'),
                    count(password_digest), count(*) FILTER (WHERE password_digest LIKE '$2b$12$%')
             FROM auth.accounts"
        ),
        "40|40|36|36"
    );
}

#[tokio::test]
async fn what_the_accounts_section_names_and_the_dump_lacks_fails_before_the_data() {
    let dump = dump_of("no-admin-app.sql");
    let lacks = |accounts: &str, admin: Option<&'static str>| {
        let accounts = accounts.to_owned();
        let dump = dump.clone();
        async move { other_env(&dump, &accounts, NO_ADMIN_RULES, admin).await }
    };
    for (env, cause) in [
        (
            lacks(
                &NO_ADMIN_ACCOUNTS.replace("auth.accounts", "public.users"),
                None,
            )
            .await,
            "the dump has no table public.users (anonymize.accounts.table)",
        ),
        (
            lacks(
                &NO_ADMIN_ACCOUNTS.replace("\"password_digest\"", "\"password_hash\""),
                None,
            )
            .await,
            "the dump's table auth.accounts (anonymize.accounts.table) has no column \
             \"password_hash\" (anonymize.accounts.password)",
        ),
        (
            lacks(NO_ADMIN_ACCOUNTS, Some("nobody@example.org")).await,
            "no row of auth.accounts has the production admin email \"nobody@example.org\" in \
             login_email",
        ),
    ] {
        let plan = env.run(&["plan"]).await;
        assert!(
            plan.stdout.contains(&format!("run would fail: {cause}")),
            "{plan:?}"
        );
        let rules = env.run(&["rules"]).await;
        assert_eq!(rules.code, 1, "{rules:?}");
        assert!(rules.stdout.contains(cause), "{rules:?}");
        let out = env.refresh().await;
        env.assert_failed_cleanly(&out, cause);
        // In the restore, as the pre-data or the table's COPY passed: not after it.
        assert_eq!(out.json()["failed_phase"], "restore", "{out:?}");
    }
}

#[tokio::test]
async fn a_config_without_the_accounts_section_is_refused_naming_what_to_add() {
    let mut env = Env::new(b"-- never read\n").await;
    env.accounts.clear();
    let out = env.run(&["check"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("anonymize.accounts")
            && out.stderr.contains("[anonymize.accounts] table = "),
        "{out:?}"
    );
}

/// Table and column names of the application this was first written for: they belong in its
/// config (`etc/config.toml`, the tests' fixtures), never in `src/`. Its accounts' column
/// names (`full_name`, `hashed_password`, `is_superuser`, `is_active`) are every Django
/// application's too: the detectors know them as words, as they know `email`.
const APPLICATION_NAMES: &[&str] = &[
    "external_system_integration",
    "shootify",
    "push_service",
    "push_products",
];

/// Its users table, `public."user"`, however a source spells it.
const USER_TABLE: &[&str] = &[
    "public.\"user\"",
    "public.\\\"user\\\"",
    "\"public\", \"user\"",
    "parse(\"user\")",
];

#[test]
fn no_application_table_or_column_name_is_in_the_source() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let lower = line.to_lowercase();
                let word = |name: &str| {
                    lower.match_indices(name).any(|(at, _)| {
                        let after = lower[at + name.len()..].chars().next();
                        !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                };
                if APPLICATION_NAMES.iter().any(|name| lower.contains(name))
                    || USER_TABLE.iter().any(|spelling| lower.contains(spelling))
                    || word("public.user")
                {
                    found.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[tokio::test]
async fn a_postgis_and_pg_partman_application_restores_through_the_template() {
    let dump = dump_of("geo-app.sql");
    let accounts = r#"
[anonymize.accounts]
table = "public.accounts"
id = "id"
email = "email"
password = "password_hash"
name = "display_name"
"#;
    // A rule on the partitioned table covers the partitions pg_partman made.
    let rules = r#"
[[anonymize.table]]
table = "public.places"
mode = "keep"

[[anonymize.table]]
table = "public.events"
mode = "keep"

[[anonymize.table]]
table = "partman.template_public_events"
mode = "keep"
"#;
    let mut env = other_env(&dump, accounts, rules, Some("owner@geo-app.example")).await;
    env.init_target().await;
    // The README's one-time step: the extensions in the schemas production has them in.
    let template = template_with(
        env.pg,
        "CREATE EXTENSION postgis SCHEMA public;
         CREATE SCHEMA partman AUTHORIZATION pg_database_owner;
         CREATE EXTENSION pg_partman SCHEMA partman;",
    );
    env.database = format!("template = \"{template}\"\n");
    let out = env.run(&["--json", "run", "--skip-media"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    let checks = report["verification"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:#?}");
    // PostGIS's spatial_ref_sys and pg_partman's tables are the extensions': not scanned.
    assert_eq!(report["pii_findings"], serde_json::json!([]));
    let filtered = report["statements_filtered"].as_object().unwrap();
    assert!(
        filtered
            .keys()
            .any(|k| k.starts_with("COPY into an extension's table the restore role may not write")),
        "{filtered:#?}"
    );

    assert_eq!(
        env.query("SELECT public.ST_AsText(location) FROM places WHERE id = 4"),
        "POINT(4 2)"
    );
    // Every partition pg_partman made in production (and its default) is there.
    let attached = std::str::from_utf8(&dump)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("ALTER TABLE ONLY public.events ATTACH PARTITION"))
        .count();
    assert!(attached >= 3, "{attached} partitions in the dump");
    assert_eq!(
        env.query("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.events'::regclass"),
        attached.to_string()
    );
    assert_eq!(env.query("SELECT count(*) FROM events"), "40");
    assert_eq!(
        env.query("SELECT count(*) > 1000 FROM spatial_ref_sys"),
        "t",
        "the template's spatial_ref_sys"
    );
    assert_eq!(
        env.query("SELECT email, display_name FROM accounts WHERE id = 1"),
        format!("{ADMIN_EMAIL}|Staging Admin")
    );
    assert_eq!(
        env.query(
            "SELECT count(*) FROM accounts WHERE id <> 1 \
             AND email LIKE 'anon\\_%@staging.invalid' AND display_name = 'Anonymized User'"
        ),
        "19"
    );
}
