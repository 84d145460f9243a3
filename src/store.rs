//! S3-compatible object stores. A production bucket is a [`SourceBucket`]: its type offers
//! list, head and get only, so nothing in this program can write to it. Staging buckets are
//! [`TargetBucket`]s.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};

use crate::config::BucketConfig;

/// One object as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Without the surrounding quotes S3 puts on it.
    pub etag: String,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying later: throttling, timeouts, connection resets, 5xx.
    Temporary,
    /// Credentials, permissions, a missing bucket or key: retrying will not help.
    Permanent,
    NotFound,
}

/// A failed request, described without any credential.
#[derive(Debug, thiserror::Error)]
#[error("{what} (s3://{bucket} at {endpoint}): {message}")]
pub struct StoreError {
    pub kind: ErrorKind,
    pub what: String,
    pub bucket: String,
    pub endpoint: String,
    pub message: String,
}

/// Connection details shared by both bucket types.
#[derive(Clone)]
struct Bucket {
    client: Client,
    name: String,
    endpoint: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{} at {}", self.name, self.endpoint)
    }
}

impl Bucket {
    fn new(cfg: &BucketConfig) -> Bucket {
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new(cfg.region.clone()))
            .force_path_style(true)
            // S3-compatible stores (R2, Garage, MinIO) differ in their support of the SDK's
            // newer default checksums; send and check them only where the API requires it.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::adaptive().with_max_attempts(6))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            builder = builder.credentials_provider(Credentials::new(
                id.expose(),
                secret.expose(),
                None,
                None,
                "staging-refresh config",
            ));
        }
        Bucket {
            client: Client::from_conf(builder.build()),
            name: cfg.bucket.clone(),
            endpoint: cfg
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS region {}", cfg.region)),
        }
    }

    fn error<E, R>(&self, what: impl Into<String>, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let (kind, message) = classify(&err);
        StoreError {
            kind,
            what: what.into(),
            bucket: self.name.clone(),
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<String>,
    ) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .set_start_after(start_after)
            .into_paginator()
            .send();
        let prefix = prefix.to_owned();
        futures::stream::unfold(pages, |mut pages| async move {
            let page = pages.next().await?;
            Some((page, pages))
        })
        .map_err(move |e| self.error(format!("listing prefix {prefix:?}"), e))
        .map_ok(|page| {
            futures::stream::iter(page.contents.unwrap_or_default().into_iter().map(|o| {
                Ok(ObjectInfo {
                    key: o.key.unwrap_or_default(),
                    size: o.size.unwrap_or(0).max(0) as u64,
                    etag: o.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
                    last_modified: o
                        .last_modified
                        .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            }))
        })
        .try_flatten()
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(format!("reading {key:?}"), e))?;
        Ok(out.body)
    }

    async fn get_small(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        let body = self.get(key).await?;
        let bytes = body.collect().await.map_err(|e| StoreError {
            kind: ErrorKind::Temporary,
            what: format!("reading {key:?}"),
            bucket: self.name.clone(),
            endpoint: self.endpoint.clone(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
        let bytes = bytes.into_bytes();
        if bytes.len() > limit {
            return Err(StoreError {
                kind: ErrorKind::Permanent,
                what: format!("reading {key:?}"),
                bucket: self.name.clone(),
                endpoint: self.endpoint.clone(),
                message: format!("{} bytes, expected at most {limit}", bytes.len()),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Proves the bucket exists and the credentials may list it.
    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .list_objects_v2()
            .bucket(&self.name)
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("listing the bucket", e))
    }
}

fn classify<E, R>(err: &SdkError<E, R>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("unknown error");
            let kind = match code {
                "NoSuchKey" | "NoSuchBucket" | "NotFound" => ErrorKind::NotFound,
                "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                | "TooManyRequests" => ErrorKind::Temporary,
                _ => ErrorKind::Permanent,
            };
            let message = match e.message() {
                Some(m) => format!("{code}: {m}"),
                None => code.to_owned(),
            };
            (kind, message)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Temporary, "timed out".into()),
        SdkError::DispatchFailure(_) => (
            ErrorKind::Temporary,
            format!("cannot connect: {}", DisplayErrorContext(err)),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Temporary,
            format!("unreadable response: {}", DisplayErrorContext(err)),
        ),
        _ => (ErrorKind::Permanent, DisplayErrorContext(err).to_string()),
    }
}

/// A production bucket: list, head and get only.
#[derive(Debug, Clone)]
pub struct SourceBucket(Bucket);

impl SourceBucket {
    pub fn new(cfg: &BucketConfig) -> SourceBucket {
        SourceBucket(Bucket::new(cfg))
    }
    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn endpoint(&self) -> &str {
        &self.0.endpoint
    }
    /// Every object under `prefix`, in key order, page by page.
    pub fn list(&self, prefix: &str) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
        self.0.list(prefix, None)
    }
    /// Objects under `prefix` with keys after `start_after`, in key order.
    pub fn list_after(
        &self,
        prefix: &str,
        start_after: String,
    ) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
        self.0.list(prefix, Some(start_after))
    }
    pub async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.0.get(key).await
    }
    /// A small object read whole (checksum sidecars); refuses more than `limit` bytes.
    pub async fn get_small(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        self.0.get_small(key, limit).await
    }
    pub async fn check(&self) -> Result<(), StoreError> {
        self.0.check().await
    }
}

/// A staging bucket this program may write to.
#[derive(Debug, Clone)]
pub struct TargetBucket(Bucket);

impl TargetBucket {
    pub fn new(cfg: &BucketConfig) -> TargetBucket {
        TargetBucket(Bucket::new(cfg))
    }
    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn endpoint(&self) -> &str {
        &self.0.endpoint
    }
    pub fn client(&self) -> &Client {
        &self.0.client
    }
    pub fn list(&self, prefix: &str) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
        self.0.list(prefix, None)
    }
    pub fn list_after(
        &self,
        prefix: &str,
        start_after: String,
    ) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
        self.0.list(prefix, Some(start_after))
    }
    pub async fn get_small(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        self.0.get_small(key, limit).await
    }
    pub async fn put_small(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.0
            .client
            .put_object()
            .bucket(&self.0.name)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.0.error(format!("writing {key:?}"), e))
    }
    pub async fn check(&self) -> Result<(), StoreError> {
        self.0.check().await
    }
    /// Wraps an SDK error from a request made through [`TargetBucket::client`].
    pub fn error<E, R>(&self, what: impl Into<String>, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        self.0.error(what, err)
    }
}
