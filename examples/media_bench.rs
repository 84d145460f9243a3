//! The pieces `bench/media` drives: the mirror run standalone from a config file (as
//! `run --skip-db` will run it), a delaying, request-counting proxy in front of the S3
//! server, and data set-up (populate, churn, reset a target).
//!
//!   media_bench mirror --config FILE               copy pass + delete pass, report as JSON
//!   media_bench proxy --upstream PORT --port PORT --delay-ms 20 --counts FILE
//!   media_bench populate --endpoint URL ... --bucket B --objects N
//!   media_bench churn --endpoint URL ... --bucket B --percent 1 --seed S
//!   media_bench reset --endpoint URL ... --bucket B  (empty it, then write the marker)

// The media tests' proxy: the benchmark listens on a port of its choosing and reads the
// request counts, and leaves the tests' helpers beside those unused.
#[allow(dead_code)]
#[path = "../tests/it/common/proxy.rs"]
mod proxy;

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use clap::{Args, Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};

use staging_refresh::config::{BucketConfig, Config, Secret};
use staging_refresh::media::{MediaProgress, Mirror, write_marker};
use staging_refresh::shutdown;
use staging_refresh::store::TargetBucket;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Mirror {
        #[arg(long)]
        config: PathBuf,
    },
    Proxy {
        #[arg(long)]
        upstream: u16,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 20)]
        delay_ms: u64,
        /// Written at SIGTERM: requests by S3 operation, `Name=count` per line.
        #[arg(long)]
        counts: PathBuf,
    },
    Populate {
        #[command(flatten)]
        bucket: BucketArgs,
        #[arg(long)]
        objects: usize,
    },
    Churn {
        #[command(flatten)]
        bucket: BucketArgs,
        #[arg(long, default_value_t = 1.0)]
        percent: f64,
        #[arg(long)]
        seed: u64,
    },
    Reset {
        #[command(flatten)]
        bucket: BucketArgs,
    },
}

#[derive(Args)]
struct BucketArgs {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    region: String,
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    access_key: String,
    #[arg(long)]
    secret_key: String,
}

impl BucketArgs {
    fn config(&self) -> BucketConfig {
        BucketConfig {
            endpoint: Some(self.endpoint.clone()),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            access_key_id: Some(Secret::from(self.access_key.as_str())),
            secret_access_key: Some(Secret::from(self.secret_key.as_str())),
        }
    }

    fn client(&self) -> aws_sdk_s3::Client {
        TargetBucket::new(&self.config()).client().clone()
    }
}

/// A media-shaped key: `media/<32 hex>/file.<ext>`.
fn key(rng: &mut fastrand::Rng) -> String {
    let ext = ["jpg", "png", "webp"][rng.usize(0..3)];
    format!("media/{:032x}/file.{ext}", rng.u128(..))
}

/// 1 to 4 KiB of bytes.
fn body(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = rng.usize(1024..=4096);
    (0..len).map(|_| rng.u8(..)).collect()
}

async fn put_many(b: &BucketArgs, objects: Vec<(String, Vec<u8>)>) {
    let client = b.client();
    futures::stream::iter(objects)
        .map(|(key, data)| {
            let client = &client;
            async move {
                client
                    .put_object()
                    .bucket(&b.bucket)
                    .key(&key)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

async fn keys(b: &BucketArgs) -> Vec<String> {
    TargetBucket::new(&b.config())
        .list("")
        .map_ok(|o| o.key)
        .try_collect()
        .await
        .expect("list")
}

async fn delete_many(b: &BucketArgs, keys: Vec<String>) {
    let client = b.client();
    for batch in keys.chunks(1000) {
        let objects = batch
            .iter()
            .map(|k| {
                aws_sdk_s3::types::ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .unwrap()
            })
            .collect();
        let delete = aws_sdk_s3::types::Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .unwrap();
        client
            .delete_objects()
            .bucket(&b.bucket)
            .delete(delete)
            .send()
            .await
            .expect("delete");
    }
}

#[tokio::main]
async fn main() {
    staging_refresh::logging::init(staging_refresh::logging::LogFormat::Plain, false);
    match Cli::parse().command {
        Command::Mirror { config } => {
            let config = Config::load(&config).expect("config");
            let mirror = Mirror::new(&config.media).expect("mirror");
            let progress = MediaProgress::new();
            let stop = shutdown::on_signals();
            let copied = mirror.copy_pass(&progress, &stop).await.expect("copy pass");
            let report = mirror.delete_pass(&copied, &progress, &stop).await;
            eprintln!("{}", report.summary());
            println!("{}", serde_json::to_string(&report).unwrap());
            if !report.ok() {
                std::process::exit(1);
            }
        }
        Command::Proxy {
            upstream,
            port,
            delay_ms,
            counts,
        } => {
            let options = proxy::ProxyOptions {
                delay: Duration::from_millis(delay_ms),
                ..Default::default()
            };
            let proxy = proxy::Proxy::listen(port, upstream, options).await;
            let stop = shutdown::on_signals();
            stop.cancelled().await;
            let lines: String = proxy
                .requests()
                .iter()
                .map(|(op, n)| format!("{op}={n}\n"))
                .collect();
            std::fs::write(counts, lines).unwrap();
        }
        Command::Populate { bucket, objects } => {
            let mut rng = fastrand::Rng::with_seed(objects as u64);
            let all = (0..objects)
                .map(|_| (key(&mut rng), body(&mut rng)))
                .collect();
            put_many(&bucket, all).await;
        }
        Command::Churn {
            bucket,
            percent,
            seed,
        } => {
            // Of the churned share: half rewritten, a quarter deleted, a quarter new keys.
            let mut rng = fastrand::Rng::with_seed(seed);
            let existing = keys(&bucket).await;
            let n = ((existing.len() as f64 * percent / 100.0).round() as usize).max(4);
            let picked: Vec<String> = rng.choose_multiple(existing.into_iter(), n / 4 * 3);
            let (rewrite, delete) = picked.split_at(n / 2);
            let mut puts: Vec<_> = rewrite
                .iter()
                .map(|k| (k.clone(), body(&mut rng)))
                .collect();
            puts.extend((0..n / 4).map(|_| (key(&mut rng), body(&mut rng))));
            put_many(&bucket, puts).await;
            delete_many(&bucket, delete.to_vec()).await;
        }
        Command::Reset { bucket } => {
            let all = keys(&bucket).await;
            delete_many(&bucket, all).await;
            write_marker(&TargetBucket::new(&bucket.config()))
                .await
                .expect("marker");
        }
    }
}
