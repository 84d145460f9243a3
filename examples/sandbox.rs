//! A local sandbox of everything staging-refresh talks to, for the demo and benchmarks:
//! a "production" PostgreSQL whose prod-shaped database is dumped to a snapshot bucket, a
//! "staging" PostgreSQL, an S3 server with production and staging media buckets, Redis, an
//! SMTP sink and a chat webhook sink. Writes a ready-to-use `config.toml` (and the newest dump as `dump.sql.zst`) into
//! `--dir`, then runs until SIGINT/SIGTERM and
//! stops every service on the way out.
//!
//!   cargo run --example sandbox -- --dir target/sandbox [--users 200] [--media-objects 50]
//!       [--small-users N]

// The test harness: the sandbox uses its services, fixtures and staging set-up, not the
// test helpers beside them (running the binary, the test world, gpg, the proxy, sinks).
#[allow(dead_code)]
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::PathBuf;

use chrono::{Duration, Utc};
use clap::Parser;
use futures::StreamExt;
use indicatif::HumanBytes;

use common::constants::PROD_ADMIN_EMAIL;
use common::fixtures::{dump_name, dump_zstd_to, seed_prod, upload_snapshot};
use common::staging::{OWNER, RESTORE_PASSWORD, refresh_role_url, seed_staging};
use common::{Redis, postgres, prod_postgres, s3, smtp};

#[derive(Parser)]
struct Args {
    /// Where config.toml, sandbox.env and the `ready` marker go.
    #[arg(long)]
    dir: PathBuf,
    /// Users in the production database (about 22 rows each).
    #[arg(long, default_value_t = 200)]
    users: u64,
    /// Objects in the production media bucket.
    #[arg(long, default_value_t = 50)]
    media_objects: usize,
    /// Also upload an older snapshot with this many users (benchmarks compare two sizes).
    #[arg(long)]
    small_users: Option<u64>,
}

const SNAPSHOT_PREFIX: &str = "snapshots/backend/production/";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).unwrap();
    let ready = args.dir.join("ready");
    let _ = std::fs::remove_file(&ready);

    eprintln!("sandbox: starting PostgreSQL (production and staging), S3, Redis, SMTP");
    let (prod, staging, s3, smtp) = (prod_postgres(), postgres(), s3(), smtp());
    let redis = Redis::start();

    eprintln!("sandbox: seeding production with {} users", args.users);
    seed_prod(prod, "app", args.users);
    // Staging starts out with data of its own, and a refresh role that is not a superuser.
    let staging_url = refresh_role_url(staging);
    seed_staging(staging, "app");
    // The newest dump as a file too, for benchmarks against `zstd -dc | psql`; streamed to
    // disk, as the benchmarks' dumps take gigabytes uncompressed.
    let dump_file = args.dir.join("dump.sql.zst");
    dump_zstd_to(prod, "app", &dump_file);
    let dump = std::fs::read(&dump_file).unwrap();
    let snapshots = s3.bucket("sartiq-snapshots").await;
    let now = Utc::now();
    for (age_hours, host) in [(27, "prod-db"), (3, "prod-db")] {
        let name = dump_name("app", host, now - Duration::hours(age_hours));
        upload_snapshot(s3, &snapshots, SNAPSHOT_PREFIX, &name, dump.clone(), true).await;
    }
    if let Some(users) = args.small_users {
        eprintln!("sandbox: seeding a second production database with {users} users");
        seed_prod(prod, "app_small", users);
        let small_file = args.dir.join("small.sql.zst");
        dump_zstd_to(prod, "app_small", &small_file);
        let name = dump_name("app", "prod-small", now - Duration::hours(4));
        let small = std::fs::read(&small_file).unwrap();
        upload_snapshot(s3, &snapshots, SNAPSHOT_PREFIX, &name, small, true).await;
        std::fs::write(args.dir.join("small-snapshot"), name).unwrap();
    }
    eprintln!(
        "sandbox: snapshot of {} compressed in s3://{snapshots}/{SNAPSHOT_PREFIX}",
        HumanBytes(dump.len() as u64)
    );
    drop(dump);

    let media_prod = s3.bucket("shootify-media").await;
    let media_staging = s3.bucket("shootify-media-staging").await;
    eprintln!("sandbox: putting {} media objects", args.media_objects);
    // Several puts at a time: benchmarks put 100k objects.
    futures::stream::iter(0..args.media_objects)
        .map(|i| {
            let media_prod = &media_prod;
            async move {
                let key = format!("media/{i:05}/file.png");
                s3.put(media_prod, &key, format!("image {i}")).await
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    s3.put(
        &media_staging,
        "media/stale/orphan.png",
        "left over on staging",
    )
    .await;

    eprintln!("sandbox: starting a local chat webhook sink");
    let webhook = common::sink::Sink::start(common::sink::Answer::Ok).await;
    let config = args.dir.join("config.toml");
    let metrics_port = common::services::free_port();
    let state = args.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"# Written by the sandbox: every service here runs on loopback.
[snapshot]
{snapshot_bucket}prefix = "{SNAPSHOT_PREFIX}"

[database]
url = "{staging_url}"
name = "app"
owner = "{OWNER}"
# The refresh role may not set the restore role's password: the operator gives it.
restore_password = "{RESTORE_PASSWORD}"

[anonymize]
prod_admin_email = "{PROD_ADMIN_EMAIL}"
admin_email = "admin@staging.example.com"
admin_password = "sandbox-admin-password"
{rules}{accounts}
[media]
enabled = true
# The sandbox's staging bucket starts nearly empty: allow its stale object to go.
max_delete = 10

[media.source]
{media_source}
[media.target]
{media_target}
[redis]
url = "{redis_url}"

[backend]
stop = ["sh", "-c", "echo \"$(date +%T.%N) backend stopped\" >> {backend_log}"]
start = ["sh", "-c", "echo \"$(date +%T.%N) backend started\" >> {backend_log}"]

[notify]
smtp_url = "{smtp_url}"
from = "staging-refresh@staging.example.com"
to = ["admin@staging.example.com"]

[[notify.webhook]]
url = "{webhook_url}/hooks/staging"
kind = "slack"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[daemon]
state_dir = "{state}"
control_socket = "{state}/control.sock"
"#,
            snapshot_bucket = s3.bucket_toml(&snapshots),
            rules = common::fixtures::PROD_RULES,
            accounts = common::fixtures::PROD_ACCOUNTS,
            backend_log = args.dir.join("backend.log").display(),
            media_source = s3.bucket_toml(&media_prod),
            media_target = s3.bucket_toml(&media_staging),
            redis_url = redis.url(),
            smtp_url = smtp.url(),
            webhook_url = webhook.url,
            state = state.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        args.dir.join("sandbox.env"),
        format!(
            "PROD_PG={}\nSTAGING_PG={}\nS3_ENDPOINT={}\nREDIS_PORT={}\nSMTP_PORT={}\nSMTP_MAILDIR={}\nMETRICS_URL=http://127.0.0.1:{}/metrics\n",
            prod.url("app"),
            staging.url("app"),
            s3.endpoint(),
            redis.port,
            smtp.port,
            smtp.maildir().display(),
            metrics_port,
        ),
    )
    .unwrap();
    // What the chat webhook receives, for the demo to show: written out as it arrives.
    let messages = args.dir.join("webhook-messages.json");
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let received: Vec<_> = webhook
                .received
                .lock()
                .unwrap()
                .iter()
                .map(|(_, b)| b.clone())
                .collect();
            let _ = std::fs::write(&messages, serde_json::to_string_pretty(&received).unwrap());
        }
    });
    std::fs::write(&ready, "").unwrap();
    eprintln!("sandbox: ready; config at {}", config.display());

    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("sandbox: stopping");
    let _ = std::fs::remove_file(&ready);
    drop(redis);
    // Returning runs the atexit handler that stops the other services.
}
