//! The SDK client of one bucket and its reads; the production bucket's read-only type.

use super::*;
use crate::config::ExposeSecret;

/// Connection details shared by both bucket types.
#[derive(Clone)]
pub(super) struct Bucket {
    pub(super) client: Client,
    pub(super) name: String,
    pub(super) endpoint: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{} at {}", self.name, self.endpoint)
    }
}

impl Bucket {
    pub(super) fn new(cfg: &BucketConfig) -> Bucket {
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
                id.expose_secret(),
                secret.expose_secret(),
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
    pub(super) fn without_retries(&self) -> Bucket {
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

    pub(super) fn error<E>(
        &self,
        what: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
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

    pub(super) fn list(
        &self,
        prefix: &str,
    ) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + '_ {
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
    pub(super) async fn list_page(
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

    pub(super) async fn head(&self, key: &str) -> Result<ObjectHead, StoreError> {
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
    pub(super) async fn download(
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

    pub(super) fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.name, utf8_percent_encode(key, COPY_SOURCE))
    }

    pub(super) async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
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

    pub(super) async fn get_small(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
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
    pub(super) async fn check(&self) -> Result<(), StoreError> {
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
    pub(super) fn build_error(&self, what: String, err: impl std::error::Error) -> StoreError {
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
pub struct SourceBucket(pub(super) Bucket);

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
