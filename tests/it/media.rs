//! The media mirror against a real S3 server (moto), driven through the library API, with a
//! fault-injecting proxy in front of it where a test needs throttling, resets or a second
//! endpoint.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;

use common::constants::{ADMIN_EMAIL, ADMIN_PASSWORD, S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY};
use common::proxy::{Proxy, ProxyOptions};
use common::s3;
use staging_refresh::config::{BucketConfig, MaxDelete, MediaConfig, Secret};
use staging_refresh::error::{Exit, exit_for};
use staging_refresh::media::{
    CopyMode, MARKER_KEY, MediaError, MediaProgress, MediaReport, Mirror, write_marker,
};
use staging_refresh::shutdown::CancellationToken;
use staging_refresh::store::TargetBucket;

const MIB: usize = 1024 * 1024;

/// Keys that break naive URL and header encoding.
fn tricky_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "with space/file name.jpg",
        "plus+sign/a+b.png",
        "percent%20literal/100%.txt",
        "hash#tag/x#y",
        "question?mark/what?.txt",
        "unicode/ümlaut-日本語-😀.txt",
        "double//slash",
        "trailing/slash/",
        "mixed a+b%c#d?e&f=g;h'i(j)*k~l",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    keys.push(format!("long/{}", "k".repeat(995)));
    keys.push(format!("long-unicode/{}", "é".repeat(493)));
    for k in &keys[keys.len() - 2..] {
        assert!(k.len() >= 999 && k.len() <= 1000, "{}", k.len());
    }
    keys
}

fn bucket_config(endpoint: &str, bucket: &str) -> BucketConfig {
    BucketConfig {
        endpoint: Some(endpoint.to_owned()),
        region: S3_REGION.into(),
        bucket: bucket.into(),
        access_key_id: Some(Secret::from(S3_ACCESS_KEY)),
        secret_access_key: Some(Secret::from(S3_SECRET_KEY)),
    }
}

fn media_config(source: BucketConfig, target: BucketConfig) -> MediaConfig {
    MediaConfig {
        enabled: true,
        concurrency: 16,
        max_delete: MaxDelete::Percent(10.0),
        multipart_threshold: 5 * MIB as u64,
        part_size: 5 * MIB as u64,
        source: Some(source),
        target: Some(target),
    }
}

/// Deterministic content of `len` bytes for object `n`.
fn body(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + n * 7) % 251) as u8).collect()
}

/// Waits into the next whole second, once the source is uploaded. Listings give whole
/// seconds, and the mirror counts a multipart copy as unchanged only when it is newer than
/// its source: a copy made in the second of the upload is made again by the next pass.
async fn next_second() {
    let nanos = 1_000_000_000 - u64::from(chrono::Utc::now().timestamp_subsec_nanos());
    tokio::time::sleep(std::time::Duration::from_nanos(nanos)).await;
}

async fn put_all(bucket: &str, objects: Vec<(String, Vec<u8>)>) {
    futures::stream::iter(objects)
        .for_each_concurrent(16, |(key, data)| async move {
            s3().put(bucket, &key, data).await
        })
        .await;
}

async fn put_with_attributes(bucket: &str, key: &str, data: Vec<u8>, content_type: &str) {
    s3().client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data))
        .content_type(content_type)
        .cache_control("max-age=60")
        .metadata("resource-id", "42")
        .metadata("origin", "prod upload")
        .send()
        .await
        .unwrap();
}

/// Every key in `bucket` with its size and ETag, listed independently of the engine.
async fn listing(bucket: &str) -> BTreeMap<String, (i64, String)> {
    let mut pages = s3()
        .client()
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    let mut all = BTreeMap::new();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents.unwrap_or_default() {
            all.insert(o.key.unwrap(), (o.size.unwrap(), o.e_tag.unwrap()));
        }
    }
    all
}

async fn get(bucket: &str, key: &str) -> aws_sdk_s3::operation::get_object::GetObjectOutput {
    s3().client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"))
}

async fn bytes(bucket: &str, key: &str) -> Vec<u8> {
    get(bucket, key)
        .await
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

/// Asserts the target holds exactly the source's keys (and the marker), compares the
/// bytes of `sample`, and returns the target's listing.
async fn assert_mirrored(source: &str, target: &str, sample: &[String]) {
    let src = listing(source).await;
    let mut tgt = listing(target).await;
    assert!(tgt.remove(MARKER_KEY).is_some(), "the marker was deleted");
    let src_keys: BTreeSet<_> = src.keys().collect();
    let tgt_keys: BTreeSet<_> = tgt.keys().collect();
    assert_eq!(
        src_keys.symmetric_difference(&tgt_keys).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "keys differ"
    );
    for (key, (size, _)) in &src {
        assert_eq!(tgt[key].0, *size, "size of {key:?}");
    }
    for key in sample {
        assert_eq!(
            bytes(source, key).await,
            bytes(target, key).await,
            "bytes of {key:?}"
        );
    }
}

async fn sync(mirror: &Mirror) -> MediaReport {
    let progress = MediaProgress::new();
    let shutdown = CancellationToken::new();
    let copied = mirror.copy_pass(&progress, &shutdown).await.unwrap();
    mirror.delete_pass(&copied, &progress, &shutdown).await
}

async fn marked_target(prefix: &str) -> String {
    let target = s3().bucket(prefix).await;
    write_marker(&TargetBucket::new(&bucket_config(
        &s3().endpoint(),
        &target,
    )))
    .await
    .unwrap();
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_ends_equal_to_the_source_and_a_resync_changes_nothing() {
    let source = s3().bucket("media-src").await;
    let target = marked_target("media-tgt").await;

    // 1200 ordinary objects, every 50th empty; the target already has most of them.
    let ordinary: Vec<(String, Vec<u8>)> = (0..1200)
        .map(|n| {
            let key = format!("media/{:04x}/img-{n}.jpg", (n * 7919) % 65536);
            (key, body(n, if n % 50 == 0 { 0 } else { 100 + n % 300 }))
        })
        .collect();
    let tricky: Vec<(String, Vec<u8>)> = tricky_keys()
        .into_iter()
        .enumerate()
        .map(|(n, k)| (k, body(n, n * 10)))
        .collect();
    let big_key = "video/big movie+1.mp4".to_string();
    let big = body(1, 11 * MIB);
    put_all(&source, ordinary.clone()).await;
    put_all(&source, tricky.clone()).await;
    put_with_attributes(&source, &big_key, big.clone(), "video/mp4").await;
    put_with_attributes(&source, "meta/photo.webp", body(3, 500), "image/webp").await;

    let identical = &ordinary[..1080];
    put_all(&target, identical.to_vec()).await;
    // Same keys, other content: 10 of another size, 10 of the same size.
    let changed: Vec<(String, Vec<u8>)> = ordinary[1080..1100]
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let len = if i < 10 { v.len() + 1 } else { v.len() };
            (k.clone(), body(9999 + i, len))
        })
        .collect();
    assert!(changed[15].1 != ordinary[1095].1 && changed[15].1.len() == ordinary[1095].1.len());
    put_all(&target, changed.clone()).await;
    let staging_only: Vec<(String, Vec<u8>)> = (0..30)
        .map(|n| (format!("media/stale/{n}.jpg"), body(n, 10)))
        .collect();
    put_all(&target, staging_only.clone()).await;
    let source_count = ordinary.len() + tricky.len() + 2;
    next_second().await;

    let mirror = Mirror::new(&media_config(
        bucket_config(&s3().endpoint(), &source),
        bucket_config(&s3().endpoint(), &target),
    ))
    .unwrap();
    assert_eq!(mirror.mode(), CopyMode::ServerSide);

    // The plan says what the sync will do, and does nothing.
    let before = listing(&target).await;
    let plan = mirror
        .plan(&MediaProgress::new(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(plan.listed_source, source_count as u64);
    assert_eq!(plan.listed_target, (identical.len() + 20 + 30) as u64);
    assert_eq!(plan.copy, (source_count - identical.len()) as u64);
    assert_eq!(plan.unchanged, identical.len() as u64);
    assert_eq!(plan.delete, 30);
    assert_eq!(plan.deletes_refused, None);
    assert_eq!(listing(&target).await, before);

    let report = sync(&mirror).await;
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.listed_source, source_count as u64);
    assert_eq!(report.copied, (source_count - identical.len()) as u64);
    assert_eq!(report.skipped, identical.len() as u64);
    assert_eq!(report.deleted, 30);
    assert_eq!(report.deletes_refused, None);
    assert!(report.copied_bytes >= big.len() as u64);

    let mut sample: Vec<String> = tricky.iter().map(|(k, _)| k.clone()).collect();
    sample.extend(changed.iter().map(|(k, _)| k.clone()));
    sample.extend(ordinary.iter().step_by(97).map(|(k, _)| k.clone()));
    sample.push(big_key.clone());
    assert_mirrored(&source, &target, &sample).await;

    // Above the lowered threshold the copy went in 5 MiB parts: a 3-part ETag.
    let etag = listing(&target).await[&big_key].1.clone();
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    for key in [big_key.as_str(), "meta/photo.webp"] {
        let out = get(&target, key).await;
        let want = if key == big_key {
            "video/mp4"
        } else {
            "image/webp"
        };
        assert_eq!(out.content_type(), Some(want), "{key}");
        let meta = out.metadata().unwrap();
        assert_eq!(
            meta.get("resource-id").map(String::as_str),
            Some("42"),
            "{key}"
        );
        assert_eq!(meta.get("origin").map(String::as_str), Some("prod upload"));
    }

    let again = sync(&mirror).await;
    assert!(again.ok(), "{again:#?}");
    assert_eq!(
        (again.copied, again.deleted, again.delete_candidates),
        (0, 0, 0),
        "{again:#?}"
    );
    assert_eq!(again.skipped, source_count as u64);
}

#[tokio::test]
async fn an_empty_source_deletes_nothing_and_says_why() {
    let source = s3().bucket("empty-src").await;
    let target = marked_target("full-tgt").await;
    let objects: Vec<_> = (0..5).map(|n| (format!("k{n}"), body(n, 10))).collect();
    put_all(&target, objects).await;
    let mirror = Mirror::new(&media_config(
        bucket_config(&s3().endpoint(), &source),
        bucket_config(&s3().endpoint(), &target),
    ))
    .unwrap();
    let report = sync(&mirror).await;
    assert_eq!(report.deleted, 0);
    assert_eq!(report.delete_candidates, 5);
    let reason = report.deletes_refused.unwrap();
    assert!(
        reason.contains("source bucket listed no objects"),
        "{reason}"
    );
    assert_eq!(listing(&target).await.len(), 6);
}

#[tokio::test]
async fn more_deletes_than_max_delete_deletes_nothing() {
    let source = s3().bucket("few-src").await;
    let target = marked_target("many-tgt").await;
    let shared: Vec<_> = (0..10).map(|n| (format!("k{n}"), body(n, 10))).collect();
    put_all(&source, shared.clone()).await;
    put_all(&target, shared).await;
    let stale: Vec<_> = (0..6).map(|n| (format!("stale{n}"), body(n, 10))).collect();
    put_all(&target, stale).await;

    for max_delete in [MaxDelete::Count(5), MaxDelete::Percent(25.0)] {
        let mut config = media_config(
            bucket_config(&s3().endpoint(), &source),
            bucket_config(&s3().endpoint(), &target),
        );
        config.max_delete = max_delete;
        let report = sync(&Mirror::new(&config).unwrap()).await;
        assert_eq!((report.deleted, report.delete_candidates), (0, 6));
        let reason = report.deletes_refused.unwrap();
        assert!(reason.contains("media.max_delete"), "{reason}");
        assert_eq!(listing(&target).await.len(), 17);
    }
}

#[tokio::test]
async fn a_target_without_marker_or_equal_to_the_source_is_refused() {
    let source = s3().bucket("src").await;
    let target = s3().bucket("unmarked").await;
    s3().put(&source, "a", "x").await;
    let mirror = Mirror::new(&media_config(
        bucket_config(&s3().endpoint(), &source),
        bucket_config(&s3().endpoint(), &target),
    ))
    .unwrap();
    let err = mirror
        .copy_pass(&MediaProgress::new(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::Refused(_)), "{err:?}");
    assert_eq!(exit_for(&err.into()), Exit::Refused);
    assert!(listing(&target).await.is_empty());

    let err = Mirror::new(&media_config(
        bucket_config(&s3().endpoint(), &source),
        bucket_config(&format!("{}/", s3().endpoint()), &source),
    ))
    .err()
    .unwrap();
    assert_eq!(exit_for(&err.into()), Exit::Refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_resets_are_retried_until_the_mirror_converges() {
    let source = s3().bucket("flaky-src").await;
    let target = marked_target("flaky-tgt").await;
    let objects: Vec<_> = (0..400)
        .map(|n| (format!("obj/{:03x}/{n}", n * 37 % 4096), body(n, 50 + n)))
        .collect();
    put_all(&source, objects.clone()).await;
    s3().put(&source, "big", body(5, 11 * MIB)).await;
    let stale: Vec<_> = (0..20)
        .map(|n| (format!("obj/stale{n}"), body(n, 5)))
        .collect();
    put_all(&target, stale).await;
    next_second().await;

    let proxy = Proxy::start(
        s3().port,
        ProxyOptions {
            fault_percent: 15,
            ..Default::default()
        },
    )
    .await;
    let mut config = media_config(
        bucket_config(&proxy.endpoint(), &source),
        bucket_config(&proxy.endpoint(), &target),
    );
    // All 20 target objects are stale: more than 10% of the target.
    config.max_delete = MaxDelete::Count(20);
    let mirror = Mirror::new(&config).unwrap();
    let report = sync(&mirror).await;
    assert!(report.ok(), "{report:#?}");
    assert_eq!((report.copied, report.deleted), (401, 20));
    assert!(proxy.faults() > 10, "{} faults", proxy.faults());
    assert!(report.retries >= proxy.faults(), "{report:#?}");
    let mut sample: Vec<String> = objects.iter().step_by(23).map(|(k, _)| k.clone()).collect();
    sample.push("big".into());
    assert_mirrored(&source, &target, &sample).await;

    let again = sync(&mirror).await;
    assert!(again.ok(), "{again:#?}");
    assert_eq!((again.copied, again.deleted), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_endpoints_stream_through_with_attributes_and_retries() {
    let source = s3().bucket("far-src").await;
    let target = marked_target("near-tgt").await;
    let mut objects: Vec<_> = tricky_keys()
        .into_iter()
        .enumerate()
        .map(|(n, k)| (k, body(n, n * 100)))
        .collect();
    objects.extend((0..60).map(|n| (format!("p/{n}"), body(n, n * 3))));
    put_all(&source, objects.clone()).await;
    put_with_attributes(&source, "big.mp4", body(2, 11 * MIB), "video/mp4").await;
    put_with_attributes(&source, "small.webp", body(3, 77), "image/webp").await;
    s3().put(&target, "p/0", "stale bytes").await;
    next_second().await;

    // The source through the proxy, the target direct: two endpoints, as two accounts are.
    let proxy = Proxy::start(
        s3().port,
        ProxyOptions {
            fault_percent: 10,
            ..Default::default()
        },
    )
    .await;
    let mirror = Mirror::new(&media_config(
        bucket_config(&proxy.endpoint(), &source),
        bucket_config(&s3().endpoint(), &target),
    ))
    .unwrap();
    assert_eq!(mirror.mode(), CopyMode::Streamed);
    let report = sync(&mirror).await;
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.copied, objects.len() as u64 + 2);
    assert_eq!(report.mode, CopyMode::Streamed);
    let requests = proxy.requests();
    assert!(!requests.contains_key("CopyObject"), "{requests:?}");
    assert!(
        requests["GetObject"] >= objects.len() as u64,
        "{requests:?}"
    );

    let mut sample: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    sample.extend(["big.mp4".into(), "small.webp".into()]);
    assert_mirrored(&source, &target, &sample).await;
    let etag = listing(&target).await["big.mp4"].1.clone();
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    for (key, content_type) in [("big.mp4", "video/mp4"), ("small.webp", "image/webp")] {
        let out = get(&target, key).await;
        assert_eq!(out.content_type(), Some(content_type));
        assert_eq!(out.cache_control(), Some("max-age=60"));
        assert_eq!(out.metadata().unwrap()["origin"], "prod upload");
    }

    let again = sync(&mirror).await;
    assert_eq!((again.copied, again.failed), (0, 0), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_stops_the_copy_pass_part_way() {
    let source = s3().bucket("stop-src").await;
    let target = marked_target("stop-tgt").await;
    let objects: Vec<_> = (0..600)
        .map(|n| (format!("o/{n:04}"), body(n, 20)))
        .collect();
    put_all(&source, objects).await;
    let proxy = Proxy::start(
        s3().port,
        ProxyOptions {
            delay: std::time::Duration::from_millis(30),
            ..Default::default()
        },
    )
    .await;
    let mut config = media_config(
        bucket_config(&proxy.endpoint(), &source),
        bucket_config(&proxy.endpoint(), &target),
    );
    config.concurrency = 4;
    let mirror = Mirror::new(&config).unwrap();
    let trigger = CancellationToken::new();
    let stop = trigger.clone();
    let progress = MediaProgress::new();
    let pass = mirror.copy_pass(&progress, &stop);
    // Stop once the pass is under way (a fixed delay raced the listing on a loaded machine).
    let (result, ()) = tokio::join!(pass, async {
        while progress.snapshot().copied == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        trigger.cancel();
    });
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    let copied = listing(&target).await.len() - 1;
    assert!(copied > 0 && copied < 600, "{copied} copied");
    assert_eq!(progress.snapshot().copied, copied as u64);
}

#[tokio::test]
async fn check_reports_both_media_buckets_and_the_marker() {
    // No database to reach (port 1): only the bucket checks matter, and no PostgreSQL starts.
    let snapshots = s3().bucket("snaps").await;
    let source = s3().bucket("chk-src").await;
    let target = s3().bucket("chk-tgt").await;
    let config = common::write_config(&format!(
        r#"[snapshot]
{snap}
[database]
url = "postgres://refresh@127.0.0.1:1/postgres"
[anonymize]
admin_email = "{ADMIN_EMAIL}"
admin_password = "{ADMIN_PASSWORD}"
{accounts}
[media]
enabled = true
[media.source]
{src}
[media.target]
{tgt}
"#,
        snap = s3().bucket_toml(&snapshots),
        src = s3().bucket_toml(&source),
        tgt = s3().bucket_toml(&target),
        accounts = common::fixtures::PROD_ACCOUNTS,
    ));
    let line = |out: &common::Run, name: &str| -> serde_json::Value {
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
            .clone()
    };
    let out = common::run(&config, &["--json", "check"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(line(&out, "media source bucket")["ok"], true);
    assert_eq!(line(&out, "media target bucket")["ok"], true);
    assert_eq!(line(&out, "media target != source")["ok"], true);
    let marker = line(&out, "media target marker");
    assert_eq!(marker["ok"], false);
    assert!(marker["detail"].as_str().unwrap().contains("init-target"));

    write_marker(&TargetBucket::new(&bucket_config(
        &s3().endpoint(),
        &target,
    )))
    .await
    .unwrap();
    let out = common::run(&config, &["--json", "check"]).await;
    assert_eq!(line(&out, "media target marker")["ok"], true, "{out:?}");
}
