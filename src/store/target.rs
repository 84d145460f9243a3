//! A staging bucket: the writes (copies, uploads, deletes) only a target may make.

use super::*;

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
