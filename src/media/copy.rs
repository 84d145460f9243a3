//! Copying one object: server-side (CopyObject, or UploadPartCopy in equal parts above the
//! multipart threshold) when both buckets share an endpoint, otherwise a GET streamed into
//! a PUT (or into a multipart upload, one ranged GET per part), so memory stays bounded
//! whatever the object's size. Content type, the other standard headers and user metadata
//! travel with the object.

use std::ops::Range;

use md5::{Digest, Md5};

use super::report::CopyMode;
use super::retry::Backoff;
use crate::store::{ObjectInfo, SourceBucket, StoreError, TargetBucket};

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;

pub(super) struct Copier {
    pub source: SourceBucket,
    pub target: TargetBucket,
    pub mode: CopyMode,
    pub multipart_threshold: u64,
    pub part_size: u64,
}

impl Copier {
    pub(super) async fn copy(
        &self,
        object: &ObjectInfo,
        backoff: &Backoff,
    ) -> Result<(), StoreError> {
        let key = object.key.as_str();
        if object.size > self.multipart_threshold {
            return self.copy_in_parts(object, backoff).await;
        }
        match self.mode {
            CopyMode::ServerSide => {
                backoff
                    .run(|| self.target.copy_from(&self.source, key))
                    .await
            }
            CopyMode::Streamed => {
                backoff
                    .run(|| async {
                        let download = self.source.download(key, None, None).await?;
                        self.target.put(key, download).await
                    })
                    .await
            }
        }
    }

    /// Equal parts, each read from the source only while its ETag is still the listed one,
    /// so the parts cannot come from two versions. A failed upload is aborted.
    async fn copy_in_parts(
        &self,
        object: &ObjectInfo,
        backoff: &Backoff,
    ) -> Result<(), StoreError> {
        let key = object.key.as_str();
        let head = backoff.run(|| self.source.head(key)).await?;
        let upload = backoff
            .run(|| self.target.create_multipart(key, head.attributes.clone()))
            .await?;
        let upload = upload.as_str();
        let copied = async {
            let mut etags = Vec::new();
            for (number, range) in (1..).zip(parts(object.size, self.part_size)) {
                let etag = match self.mode {
                    CopyMode::ServerSide => {
                        backoff
                            .run(|| {
                                self.target.copy_part(
                                    &self.source,
                                    key,
                                    upload,
                                    number,
                                    range.clone(),
                                    &object.etag,
                                )
                            })
                            .await?
                    }
                    CopyMode::Streamed => {
                        backoff
                            .run(|| async {
                                let download = self
                                    .source
                                    .download(key, Some(range.clone()), Some(&object.etag))
                                    .await?;
                                self.target.upload_part(key, upload, number, download).await
                            })
                            .await?
                    }
                };
                etags.push(etag);
            }
            self.complete(key, upload, &etags, backoff).await
        }
        .await;
        if copied.is_err()
            && let Err(e) = self.target.abort_multipart(key, upload).await
        {
            tracing::warn!(key, error = %e, "could not abort a failed multipart upload");
        }
        copied
    }
}

impl Copier {
    /// CompleteMultipartUpload, or proof that it happened anyway: when the answer was lost
    /// (a retry then finds the upload gone) or could not be read, the object is there with
    /// the ETag S3 derives from its parts'.
    async fn complete(
        &self,
        key: &str,
        upload: &str,
        etags: &[String],
        backoff: &Backoff,
    ) -> Result<(), StoreError> {
        let Err(e) = backoff
            .run(|| self.target.complete_multipart(key, upload, etags.to_vec()))
            .await
        else {
            return Ok(());
        };
        match backoff.run(|| self.target.head(key)).await {
            Ok(head) if multipart_etag(etags).as_deref() == Some(head.etag.as_str()) => Ok(()),
            _ => Err(e),
        }
    }
}

/// `<MD5 of the parts' binary MD5s>-<parts>`, as S3 names a multipart object.
fn multipart_etag(parts: &[String]) -> Option<String> {
    let mut md5 = Md5::new();
    for etag in parts {
        md5.update(hex::decode(etag.trim_matches('"')).ok()?);
    }
    Some(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}

/// Byte ranges of equal parts (the last one shorter): `part_size`, grown in whole MiB when
/// the object would otherwise need more than S3's 10,000 parts.
fn parts(size: u64, part_size: u64) -> Vec<Range<u64>> {
    let smallest = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    let part = part_size.max(smallest).max(1);
    (0..size.div_ceil(part))
        .map(|i| i * part..((i + 1) * part).min(size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_derive_from_the_parts() {
        let parts = [
            "\"79b281060d337b9b2b84ccf390adcf74\"".to_owned(),
            "79b281060d337b9b2b84ccf390adcf74".to_owned(),
            "7202826a7791073fe2787f0c94603278".to_owned(),
        ];
        assert_eq!(
            multipart_etag(&parts).unwrap(),
            "a24cb680bf8f661c7fd99c2fd4d3ac2d-3"
        );
        assert_eq!(multipart_etag(&["not hex".into()]), None);
    }

    #[test]
    fn parts_are_equal_but_the_last_and_at_most_ten_thousand() {
        assert_eq!(
            parts(12 * MIB, 5 * MIB),
            [0..5 * MIB, 5 * MIB..10 * MIB, 10 * MIB..12 * MIB]
        );
        assert_eq!(parts(10 * MIB, 5 * MIB).len(), 2);
        let huge = parts(5 * 1024 * 1024 * MIB, 5 * MIB);
        assert!(huge.len() <= 10_000, "{}", huge.len());
        let first = huge[0].end - huge[0].start;
        assert_eq!(first % MIB, 0);
        assert!(
            huge[..huge.len() - 1]
                .iter()
                .all(|r| r.end - r.start == first)
        );
        assert_eq!(huge.last().unwrap().end, 5 * 1024 * 1024 * MIB);
    }
}
