//! A local sandbox of everything staging-refresh talks to, for the demo and benchmarks:
//! a "production" PostgreSQL whose prod-shaped database is dumped to a snapshot bucket, a
//! "staging" PostgreSQL, an S3 server with production and staging media buckets, Redis and an
//! SMTP sink. Writes a ready-to-use `config.toml` into `--dir`, then runs until SIGINT/SIGTERM
//! and stops every service on the way out.
//!
//!   cargo run --example sandbox -- --dir target/sandbox [--users 200] [--media-objects 50]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use chrono::{Duration, Utc};
use clap::Parser;

use common::fixtures::{PROD_ADMIN_EMAIL, dump_name, dump_sql, seed_prod, upload_snapshot, zstd};
use common::services::{Redis, postgres, prod_postgres, s3, smtp};

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
    // Staging starts out with older, smaller data of its own.
    seed_prod(staging, "app", 20);
    let sql = dump_sql(prod, "app");
    let dump = zstd(&sql);
    let snapshots = s3.bucket("sartiq-snapshots").await;
    let now = Utc::now();
    for (age_hours, host) in [(27, "prod-db"), (3, "prod-db")] {
        let name = dump_name("app", host, now - Duration::hours(age_hours));
        upload_snapshot(s3, &snapshots, SNAPSHOT_PREFIX, &name, dump.clone(), true).await;
    }
    eprintln!(
        "sandbox: snapshot of {} SQL bytes, {} compressed, in s3://{snapshots}/{SNAPSHOT_PREFIX}",
        sql.len(),
        dump.len()
    );

    let media_prod = s3.bucket("shootify-media").await;
    let media_staging = s3.bucket("shootify-media-staging").await;
    for i in 0..args.media_objects {
        s3.put(
            &media_prod,
            &format!("media/{i:05}/file.png"),
            format!("image {i}"),
        )
        .await;
    }
    s3.put(
        &media_staging,
        "media/stale/orphan.png",
        "left over on staging",
    )
    .await;

    let config = args.dir.join("config.toml");
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

[anonymize]
prod_admin_email = "{PROD_ADMIN_EMAIL}"
admin_email = "admin@staging.example.com"
admin_password = "sandbox-admin-password"

[media]
enabled = true

[media.source]
{media_source}
[media.target]
{media_target}
[redis]
url = "{redis_url}"

[notify]
smtp_url = "{smtp_url}"
from = "staging-refresh@staging.example.com"
to = ["admin@staging.example.com"]

[metrics]
listen = "127.0.0.1:{metrics_port}"

[daemon]
state_dir = "{state}"
control_socket = "{state}/control.sock"
"#,
            snapshot_bucket = s3.bucket_toml(&snapshots),
            staging_url = staging.url("postgres"),
            media_source = s3.bucket_toml(&media_prod),
            media_target = s3.bucket_toml(&media_staging),
            redis_url = redis.url(),
            smtp_url = smtp.url(),
            metrics_port = common::services::free_port(),
            state = state.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        args.dir.join("sandbox.env"),
        format!(
            "PROD_PG={}\nSTAGING_PG={}\nS3_ENDPOINT={}\nREDIS_PORT={}\nSMTP_PORT={}\nSMTP_MAILDIR={}\n",
            prod.url("app"),
            staging.url("app"),
            s3.endpoint(),
            redis.port,
            smtp.port,
            smtp.maildir().display(),
        ),
    )
    .unwrap();
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
