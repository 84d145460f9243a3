//! S3-compatible object stores. A production bucket is a [`SourceBucket`]: its type offers
//! list, head and get only, so nothing in this program can write to it. Staging buckets are
//! [`TargetBucket`]s.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

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

impl ObjectInfo {
    fn from_listing(o: aws_sdk_s3::types::Object) -> ObjectInfo {
        ObjectInfo {
            key: o.key.unwrap_or_default(),
            size: o.size.unwrap_or(0).max(0) as u64,
            etag: o.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
            last_modified: o
                .last_modified
                .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        }
    }
}

/// One ListObjectsV2 response: objects in key order, and whether more follow.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub truncated: bool,
}

/// What a copy carries over besides the bytes: the standard headers and user metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// Reads the attributes off a GetObject or HeadObject response (same accessors, two types).
macro_rules! attributes_of {
    ($out:expr) => {
        ObjectAttributes {
            content_type: $out.content_type().map(str::to_owned),
            content_encoding: $out.content_encoding().map(str::to_owned),
            content_disposition: $out.content_disposition().map(str::to_owned),
            content_language: $out.content_language().map(str::to_owned),
            cache_control: $out.cache_control().map(str::to_owned),
            metadata: $out.metadata().cloned().unwrap_or_default(),
        }
    };
}

/// Sets the attributes on a PutObject or CreateMultipartUpload request.
macro_rules! with_attributes {
    ($request:expr, $attributes:expr) => {{
        let a: ObjectAttributes = $attributes;
        $request
            .set_content_type(a.content_type)
            .set_content_encoding(a.content_encoding)
            .set_content_disposition(a.content_disposition)
            .set_content_language(a.content_language)
            .set_cache_control(a.cache_control)
            .set_metadata(Some(a.metadata))
    }};
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Without the surrounding quotes.
    pub etag: String,
    pub attributes: ObjectAttributes,
}

/// An object being read: its body, length and attributes.
pub struct Download {
    pub body: ByteStream,
    pub length: u64,
    pub attributes: ObjectAttributes,
}

/// `x-amz-copy-source` is `bucket/key` URL-encoded; only unreserved characters and `/` stay.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

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

impl StoreError {
    /// The object asked for does not exist (the bucket does): deleted since it was listed.
    pub fn is_missing_object(&self) -> bool {
        self.kind == ErrorKind::NotFound && !self.message.starts_with("NoSuchBucket")
    }
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

    /// The same bucket with the SDK's own retries turned off, for a caller that retries
    /// (and counts retries) itself.
    fn without_retries(&self) -> Bucket {
        let config = self
            .client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Bucket {
            client: Client::from_conf(config),
            ..self.clone()
        }
    }

    fn error<E>(&self, what: impl Into<String>, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
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

    fn list(&self, prefix: &str) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        let prefix = prefix.to_owned();
        futures::stream::unfold(pages, |mut pages| async move {
            let page = pages.next().await?;
            Some((page, pages))
        })
        .map_err(move |e| self.error(format!("listing prefix {prefix:?}"), e))
        .map_ok(|page| {
            futures::stream::iter(
                page.contents
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| Ok(ObjectInfo::from_listing(o))),
            )
        })
        .try_flatten()
    }

    /// One page of at most `max_keys` objects with keys after `start_after`.
    async fn list_page(
        &self,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<ListPage, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .set_start_after(start_after.map(str::to_owned))
            .max_keys(max_keys)
            .send()
            .await
            .map_err(|e| self.error(format!("listing after {start_after:?}"), e))?;
        let truncated = out.is_truncated().unwrap_or(false);
        let objects = out
            .contents
            .unwrap_or_default()
            .into_iter()
            .map(ObjectInfo::from_listing)
            .collect();
        Ok(ListPage { objects, truncated })
    }

    async fn head(&self, key: &str) -> Result<ObjectHead, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(format!("reading the attributes of {key:?}"), e))?;
        Ok(ObjectHead {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
            attributes: attributes_of!(out),
        })
    }

    /// Starts reading `key` (the byte `range` of it, when given), refusing with
    /// PreconditionFailed when its ETag is no longer `if_match`.
    async fn download(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<Download, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)))
            .set_if_match(if_match.map(|e| format!("\"{e}\"")))
            .send()
            .await
            .map_err(|e| self.error(format!("reading {key:?}"), e))?;
        Ok(Download {
            length: out.content_length().unwrap_or(0).max(0) as u64,
            attributes: attributes_of!(out),
            body: out.body,
        })
    }

    fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.name, utf8_percent_encode(key, COPY_SOURCE))
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

impl Bucket {
    fn build_error(&self, what: String, err: impl std::error::Error) -> StoreError {
        StoreError {
            kind: ErrorKind::Permanent,
            what,
            bucket: self.name.clone(),
            endpoint: self.endpoint.clone(),
            message: err.to_string(),
        }
    }
}

fn classify<E>(err: &SdkError<E, HttpResponse>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            let code = e.code().unwrap_or("unknown error");
            let kind = match (code, status) {
                ("NoSuchKey" | "NoSuchBucket" | "NotFound", _) => ErrorKind::NotFound,
                (
                    "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                    | "TooManyRequests" | "OperationAborted",
                    _,
                ) => ErrorKind::Temporary,
                // Throttling and server trouble, whatever the body says (often nothing).
                (_, 429 | 500 | 502 | 503 | 504) => ErrorKind::Temporary,
                ("unknown error", 404) => ErrorKind::NotFound,
                _ => ErrorKind::Permanent,
            };
            let message = match e.message() {
                Some(m) => format!("{code}: {m}"),
                None => format!("{code} (HTTP {status})"),
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

/// The reads both bucket types offer, forwarded to the bucket inside.
macro_rules! reads {
    ($bucket:ident) => {
        pub fn new(cfg: &BucketConfig) -> $bucket {
            $bucket(Bucket::new(cfg))
        }
        pub fn name(&self) -> &str {
            &self.0.name
        }
        pub fn endpoint(&self) -> &str {
            &self.0.endpoint
        }
        /// Every object under `prefix`, in key order, page by page.
        pub fn list(
            &self,
            prefix: &str,
        ) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
            self.0.list(prefix)
        }
        /// The same bucket without the SDK's own retries (see [`StoreError::kind`] to retry).
        pub fn without_retries(&self) -> $bucket {
            $bucket(self.0.without_retries())
        }
        /// One page of objects with keys after `start_after`, in key order.
        pub async fn list_page(
            &self,
            start_after: Option<&str>,
            max_keys: i32,
        ) -> Result<ListPage, StoreError> {
            self.0.list_page(start_after, max_keys).await
        }
        /// Size, ETag and attributes of one object.
        pub async fn head(&self, key: &str) -> Result<ObjectHead, StoreError> {
            self.0.head(key).await
        }
        /// A small object read whole (checksum sidecars, markers); refuses more than `limit`
        /// bytes.
        pub async fn get_small(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
            self.0.get_small(key, limit).await
        }
        pub async fn check(&self) -> Result<(), StoreError> {
            self.0.check().await
        }
    };
}

impl SourceBucket {
    reads!(SourceBucket);

    pub async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.0.get(key).await
    }
    /// Starts reading `key`, or the byte `range` of it, only while its ETag is `if_match`.
    pub async fn download(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<Download, StoreError> {
        self.0.download(key, range, if_match).await
    }
}

/// A staging bucket this program may write to.
#[derive(Debug, Clone)]
pub struct TargetBucket(Bucket);

impl TargetBucket {
    reads!(TargetBucket);

    pub fn client(&self) -> &Client {
        &self.0.client
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
    /// Wraps an SDK error from a request made through [`TargetBucket::client`].
    pub fn error<E>(&self, what: impl Into<String>, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.0.error(what, err)
    }

    /// Server-side CopyObject of `source`'s `key` onto the same key here, with its content
    /// type and metadata. The request goes to this bucket's endpoint with this bucket's
    /// credentials, which must be allowed to read the source bucket.
    pub async fn copy_from(&self, source: &SourceBucket, key: &str) -> Result<(), StoreError> {
        self.0
            .client
            .copy_object()
            .bucket(&self.0.name)
            .key(key)
            .copy_source(source.0.copy_source(key))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                self.0
                    .error(format!("copying {key:?} from s3://{}", source.name()), e)
            })
    }

    /// Streams a download into `key`, with the attributes it came with.
    pub async fn put(&self, key: &str, download: Download) -> Result<(), StoreError> {
        let request = self
            .0
            .client
            .put_object()
            .bucket(&self.0.name)
            .key(key)
            .content_length(download.length as i64)
            .body(download.body);
        with_attributes!(request, download.attributes)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.0.error(format!("writing {key:?}"), e))
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart(
        &self,
        key: &str,
        attributes: ObjectAttributes,
    ) -> Result<String, StoreError> {
        let request = self
            .0
            .client
            .create_multipart_upload()
            .bucket(&self.0.name)
            .key(key);
        let out = with_attributes!(request, attributes)
            .send()
            .await
            .map_err(|e| {
                self.0
                    .error(format!("starting a multipart upload of {key:?}"), e)
            })?;
        out.upload_id.ok_or_else(|| StoreError {
            kind: ErrorKind::Permanent,
            what: format!("starting a multipart upload of {key:?}"),
            bucket: self.0.name.clone(),
            endpoint: self.0.endpoint.clone(),
            message: "the response had no upload id".into(),
        })
    }

    /// UploadPartCopy: part `part` of an upload of `key` is `range` of `source`'s `key`,
    /// only while the source's ETag is `if_match`. Returns the part's ETag.
    pub async fn copy_part(
        &self,
        source: &SourceBucket,
        key: &str,
        upload_id: &str,
        part: i32,
        range: Range<u64>,
        if_match: &str,
    ) -> Result<String, StoreError> {
        let out = self
            .0
            .client
            .upload_part_copy()
            .bucket(&self.0.name)
            .key(key)
            .upload_id(upload_id)
            .part_number(part)
            .copy_source(source.0.copy_source(key))
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .copy_source_if_match(format!("\"{if_match}\""))
            .send()
            .await
            .map_err(|e| self.0.error(format!("copying part {part} of {key:?}"), e))?;
        Ok(out
            .copy_part_result
            .and_then(|r| r.e_tag)
            .unwrap_or_default())
    }

    /// Uploads part `part` of an upload of `key` from a download. Returns the part's ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: i32,
        download: Download,
    ) -> Result<String, StoreError> {
        let out = self
            .0
            .client
            .upload_part()
            .bucket(&self.0.name)
            .key(key)
            .upload_id(upload_id)
            .part_number(part)
            .content_length(download.length as i64)
            .body(download.body)
            .send()
            .await
            .map_err(|e| self.0.error(format!("writing part {part} of {key:?}"), e))?;
        Ok(out.e_tag.unwrap_or_default())
    }

    /// Completes an upload from its parts' ETags, in part order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: Vec<String>,
    ) -> Result<(), StoreError> {
        let parts = etags
            .into_iter()
            .zip(1..)
            .map(|(etag, n)| CompletedPart::builder().part_number(n).e_tag(etag).build())
            .collect();
        self.0
            .client
            .complete_multipart_upload()
            .bucket(&self.0.name)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.0.error(format!("completing the upload of {key:?}"), e))
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.0
            .client
            .abort_multipart_upload()
            .bucket(&self.0.name)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.0.error(format!("aborting the upload of {key:?}"), e))
    }

    /// DeleteObjects of at most 1000 keys. Returns the keys the server could not delete,
    /// each with its reason.
    pub async fn delete_objects(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let what = || format!("deleting {} objects", keys.len());
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.0.build_error(what(), e))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| self.0.build_error(what(), e))?;
        let out = self
            .0
            .client
            .delete_objects()
            .bucket(&self.0.name)
            .delete(delete)
            .send()
            .await
            .map_err(|e| self.0.error(what(), e))?;
        Ok(out
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let reason = match (e.code, e.message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (c, m) => c.or(m).unwrap_or_else(|| "not deleted".into()),
                };
                (e.key.unwrap_or_default(), reason)
            })
            .collect())
    }
}
