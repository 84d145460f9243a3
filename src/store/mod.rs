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

mod bucket;
mod target;

use bucket::Bucket;
pub use bucket::SourceBucket;
pub use target::TargetBucket;
