//! `check`: is everything a refresh needs configured, reachable and opted in?
//! Each check is independent, so one problem does not hide the next.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::Utc;
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::{BucketConfig, Config};
use crate::database::extensions::{Extensions, Template};
use crate::database::restore_role::{self, Fitness};
use crate::database::sql::quote_ident;
use crate::database::{Server, markers};
use crate::drift::{self, Drift};
use crate::media::{self, MARKER_KEY};
use crate::restore;
use crate::restore::privileges::{Privileges, Verdict, created_extension};
use crate::restore::statement::Statement;
use crate::snapshot::{Catalog, Selection, Snapshot, format_age};
use crate::staging::redis;
use crate::store::{SourceBucket, TargetBucket};

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl CheckResult {
    fn from(name: &str, result: Result<String, String>) -> CheckResult {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        CheckResult {
            name: name.to_owned(),
            ok,
            detail,
        }
    }
}

/// Runs every check; the config itself (read from `path`) was validated when it loaded.
pub async fn run(config: &Config, path: &Path) -> Vec<CheckResult> {
    let mut results = vec![
        CheckResult::from("config", Ok("valid".into())),
        CheckResult::from("config file mode", config_mode(path)),
        CheckResult::from("notify", Ok(notifications(config))),
    ];
    let (snapshot_results, head) = snapshots(config).await;
    results.extend(snapshot_results);
    results.extend(database(config, head).await);
    if let Some(url) = &config.redis.url {
        let reachable = redis::ping(url).await.map(|()| "reachable".to_owned());
        results.push(CheckResult::from(
            "redis",
            reachable.map_err(|e| e.to_string()),
        ));
    }
    if let (true, Some(source), Some(target)) = (
        config.media.enabled,
        &config.media.source,
        &config.media.target,
    ) {
        results.extend([
            CheckResult::from("media source bucket", media_bucket(source).await),
            CheckResult::from("media target bucket", media_bucket(target).await),
            CheckResult::from("media target marker", media_marker(target).await),
            CheckResult::from("media target != source", media_distinct(source, target)),
        ]);
    }
    results
}

/// The config holds secrets: other users must not read it (owner and group may: the
/// package gives it to root:staging-refresh, mode 0640).
fn config_mode(path: &Path) -> Result<String, String> {
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    Ok(if mode & 0o004 != 0 {
        format!(
            "warning: {} is mode {mode:04o}, readable by every user, and it holds secrets; \
             `chmod o-rwx {}`",
            path.display(),
            path.display()
        )
    } else {
        format!("{} is mode {mode:04o}", path.display())
    })
}

/// Who is told after a run (and of a new snapshot's unclassified columns): email, webhooks,
/// both, or, said as a warning, no one.
fn notifications(config: &Config) -> String {
    let Some(notify) = &config.notify else {
        return "warning: no [notify] section: no one is told after a run".into();
    };
    let mut channels = Vec::new();
    if let Some(email) = notify.email() {
        channels.push(format!("email to {}", email.to.join(", ")));
    }
    for (i, hook) in notify.webhook.iter().enumerate() {
        let on: Vec<String> = hook.on.iter().map(ToString::to_string).collect();
        channels.push(format!(
            "notify.webhook[{i}] ({}) on {}",
            hook.kind,
            on.join(", ")
        ));
    }
    channels.join("; ")
}

/// The staging server: reachable, the target marked, the role not a superuser, the restore
/// role fit, the extensions the newest snapshot (`head`, its first statements) creates
/// available to it.
async fn database(config: &Config, head: Result<Vec<Statement>, String>) -> Vec<CheckResult> {
    let server = Server::new(&config.database.url);
    let client = match server.connect(None).await {
        Ok(client) => client,
        Err(e) => return vec![CheckResult::from("database", Err(e.to_string()))],
    };
    let name = &config.database.name;
    let reachable = match server.facts(&client).await {
        Ok((version, _)) => Ok(format!("{} (server version {version})", server.redacted())),
        Err(e) => Err(e.to_string()),
    };
    let marker = match markers::marked_at(&server, &client, name).await {
        Ok(Some(at)) => Ok(format!(
            "{name} marked as a refresh target on {}",
            at.format("%Y-%m-%d %H:%M UTC")
        )),
        Ok(None) => Err(format!(
            "{name} is not marked as a refresh target; run `staging-refresh init-target` to opt in"
        )),
        Err(e) => Err(e.to_string()),
    };
    let role = match server.connected_as_superuser(&client).await {
        Ok(true) => Ok(
            "warning: the role is a superuser; the dump runs as the restore role all the same, \
             but prefer a role with CREATEDB that is a member of database.owner"
                .to_owned(),
        ),
        Ok(false) => Ok("not a superuser".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let mut results = vec![
        CheckResult::from("database", reachable),
        CheckResult::from("target marker", marker),
        CheckResult::from("database role", role),
    ];
    let restore = restore_role(&server, &client, config).await;
    results.push(CheckResult::from("restore role", restore));
    results.push(CheckResult::from(
        "role privileges",
        privileges(&client, config.database.owner.as_deref())
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
    ));
    results.push(CheckResult::from(
        "extensions",
        extensions(&server, &client, config, head).await,
    ));
    results
}

/// `database.template`, when set, is a template the refresh role may copy; every extension
/// the newest snapshot creates is there, or the restore role may create it.
async fn extensions(
    server: &Server,
    client: &Client,
    config: &Config,
    head: Result<Vec<Statement>, String>,
) -> Result<String, String> {
    let database = &config.database;
    let template = Template::new(database.template.as_deref(), &database.name);
    if let Some(name) = &template.configured {
        let is_template: Option<bool> = client
            .query_opt(
                "SELECT datistemplate FROM pg_catalog.pg_database WHERE datname = $1",
                &[name],
            )
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.get(0));
        let quoted = quote_ident(name);
        match is_template {
            None => {
                return Err(format!(
                    "database.template {name:?} does not exist: as a superuser, once: CREATE \
                     DATABASE {quoted} IS_TEMPLATE true; then create in it the extensions the \
                     dump needs (`staging-refresh plan` lists them)"
                ));
            }
            Some(false) => {
                return Err(format!(
                    "database.template {name:?} is not a template the refresh role may copy: \
                     as a superuser: ALTER DATABASE {quoted} IS_TEMPLATE true;"
                ));
            }
            Some(true) => {}
        }
    }
    let role = restore_role::name(&database.name);
    let facts = Extensions::of_template(server, client, template.clone(), &role)
        .await
        .map_err(|e| e.to_string())?;
    let from = format!("the scratch database is made from {}", template.source());
    // A snapshot that cannot be read is the snapshot checks' to report; a run fails on it.
    let head = match head {
        Ok(head) => head,
        Err(e) => {
            return Ok(format!(
                "warning: the newest snapshot's start could not be read ({e}), so its \
                 extensions are not known; {from}"
            ));
        }
    };
    let privileges = Privileges::listing(facts);
    let mut created = Vec::new();
    let mut forbidden = Vec::new();
    for s in &head {
        let Some((name, _)) = created_extension(s) else {
            continue;
        };
        match privileges.statement(s) {
            Verdict::Forbidden(f) => forbidden.push(f.why),
            Verdict::Run | Verdict::Drop(_) => created.push(name),
        }
    }
    if !forbidden.is_empty() {
        return Err(forbidden.join("; "));
    }
    Ok(if created.is_empty() {
        format!("the newest snapshot creates no extension; {from}")
    } else {
        format!(
            "the newest snapshot creates {}: each there or the restore role's to create; {from}",
            created.join(", ")
        )
    })
}

/// The restore can log in as the restore role, which is fit, or the connected role may
/// create it (or this is the SQL to).
async fn restore_role(server: &Server, client: &Client, config: &Config) -> Result<String, String> {
    let role = restore_role::name(&config.database.name);
    let configured = config.database.restore_password.is_some();
    let error = |e: crate::database::DbError| e.to_string();
    if let Some(refused) = restore_role::cannot_log_in(server, client, &role, configured)
        .await
        .map_err(error)?
    {
        return Err(refused.message);
    }
    let login = if configured {
        "with database.restore_password_file"
    } else {
        "with a password set for each run"
    };
    match restore_role::fitness(server, client, &role)
        .await
        .map_err(error)?
    {
        Fitness::Fit => Ok(format!(
            "{role} is a member of nothing; the restore logs in as it {login}"
        )),
        Fitness::Unfit(why) => Err(why),
        Fitness::Missing if configured => {
            let refresh_role = server.current_role(client).await.map_err(error)?;
            Err(format!(
                "{role} does not exist; as a superuser run: {}",
                restore_role::create_sql(&role, &refresh_role)
            ))
        }
        Fitness::Missing => Ok(format!(
            "{role} does not exist yet; the first run creates it"
        )),
    }
}

/// What the cutover and the hand-over need: ending other roles' sessions on the live
/// database, and membership in `database.owner`.
async fn privileges(
    client: &Client,
    owner: Option<&str>,
) -> Result<Result<String, String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_user::text,
                 pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
                 $1::text IS NULL OR pg_catalog.pg_has_role(current_user, $1::text, 'MEMBER')",
            &[&owner],
        )
        .await?;
    let (role, can_signal, in_owner): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let mut missing = Vec::new();
    if !can_signal {
        missing.push(format!(
            "{role} cannot end the live database's sessions at cutover (GRANT pg_signal_backend \
             TO {})",
            quote_ident(&role)
        ));
    }
    if let (false, Some(owner)) = (in_owner, owner) {
        missing.push(format!(
            "{role} is not a member of database.owner {owner} (GRANT {} TO {})",
            quote_ident(owner),
            quote_ident(&role)
        ));
    }
    Ok(if !missing.is_empty() {
        Err(missing.join("; "))
    } else if owner.is_none() {
        Ok(format!(
            "warning: database.owner is not set, so staging's objects are handed to {role}, and \
             the dump's SECURITY DEFINER functions run as it; set database.owner"
        ))
    } else {
        Ok(format!(
            "{role} may end other roles' sessions (not a superuser's) and is a member of \
             database.owner"
        ))
    })
}

/// Listing is all `check` does, so the read-only bucket type serves for either side.
async fn media_bucket(cfg: &BucketConfig) -> Result<String, String> {
    let bucket = SourceBucket::new(cfg);
    bucket.check().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "s3://{} at {} can be listed",
        bucket.name(),
        bucket.endpoint()
    ))
}

async fn media_marker(target: &BucketConfig) -> Result<String, String> {
    let bucket = TargetBucket::new(target);
    match media::has_marker(&bucket).await {
        Ok(true) => Ok(format!("{MARKER_KEY} present")),
        Ok(false) => Err(format!(
            "{MARKER_KEY} missing: run `staging-refresh init-target` if s3://{} is staging's bucket",
            bucket.name()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn media_distinct(source: &BucketConfig, target: &BucketConfig) -> Result<String, String> {
    if media::same_bucket(source, target) {
        Err(format!(
            "media.target is media.source (s3://{}): the mirror would write to production",
            target.bucket
        ))
    } else {
        Ok(format!(
            "s3://{} is not s3://{}",
            target.bucket, source.bucket
        ))
    }
}

/// The snapshot bucket and its newest snapshot; an encrypted one must open with the
/// configured secret. Returns the newest snapshot's first statements too.
async fn snapshots(config: &Config) -> (Vec<CheckResult>, Result<Vec<Statement>, String>) {
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
    let newest = match newest_snapshot(config, &bucket).await {
        Ok(newest) => newest,
        Err(e) => {
            let unread = format!("no snapshot to read ({e})");
            return (
                vec![CheckResult::from("snapshot bucket", Err(e))],
                Err(unread),
            );
        }
    };
    let mut results = vec![CheckResult::from("snapshot bucket", Ok(newest.1))];
    let snapshot = newest.0;
    let source = restore::Source {
        bucket: &bucket,
        decrypt: config.snapshot.decrypt.as_ref(),
    };
    let head = restore::probe(source, &snapshot)
        .await
        .map_err(|e| e.to_string());
    if snapshot.encrypted {
        let opened = match &head {
            Ok(_) => Ok(format!("[snapshot.decrypt] opens {}", snapshot.name)),
            Err(e) => Err(e.clone()),
        };
        results.push(CheckResult::from("snapshot decryption", opened));
    }
    let columns = match drift::classify(config, &bucket, &snapshot).await {
        Ok(drift) => columns(&drift),
        Err(e) => Err(e.to_string()),
    };
    results.push(CheckResult::from("snapshot columns", columns));
    (results, head)
}

/// Whether the rules classify every column of the newest snapshot, as the daemon's watch
/// finds it: a column without a rule fails the check.
fn columns(drift: &Drift) -> Result<String, String> {
    let name = &drift.snapshot;
    let gone = match drift.rules_for_nothing.as_slice() {
        [] => String::new(),
        gone => format!(
            "; warning: rules name what it does not have: {}",
            gone.join(", ")
        ),
    };
    if drift.unclassified.is_empty() {
        return Ok(format!("every column of {name} is classified{gone}"));
    }
    Err(format!(
        "{} unclassified column(s) in {name}: {}{gone}; `staging-refresh rules --snapshot {name} \
         --toml` prints rules to review and add",
        drift.unclassified.len(),
        drift.by_table().join("; ")
    ))
}

async fn newest_snapshot(
    config: &Config,
    bucket: &SourceBucket,
) -> Result<(Snapshot, String), String> {
    bucket.check().await.map_err(|e| e.to_string())?;
    let catalog = Catalog::list(bucket, &config.snapshot, config.source_database())
        .await
        .map_err(|e| e.to_string())?;
    let newest = catalog
        .select(&Selection::Latest, Utc::now())
        .map_err(|e| e.to_string())?;
    let detail = format!(
        "{} snapshots; newest {} ({} old)",
        catalog.snapshots.len(),
        newest.name,
        format_age(newest.age(Utc::now()))
    );
    Ok((newest.clone(), detail))
}
