//! The target bucket's opt-in marker: an object `init-target` writes, without which the
//! mirror refuses to write to the bucket, and which the mirror never copies over or deletes.

use chrono::Utc;

use crate::store::{StoreError, TargetBucket};

/// The marker's key, at the top of the target bucket.
pub const MARKER_KEY: &str = ".staging-refresh-target";

/// Marks `target` as a bucket the mirror may overwrite and delete from.
pub async fn write_marker(target: &TargetBucket) -> Result<(), StoreError> {
    let body = serde_json::json!({
        "staging_refresh_target": true,
        "written_at": Utc::now().to_rfc3339(),
        "meaning": "staging-refresh mirrors the production media bucket into this bucket and deletes what production does not have",
    });
    target
        .put_small(MARKER_KEY, body.to_string().into_bytes())
        .await
}

/// Whether `target` carries the marker.
pub async fn has_marker(target: &TargetBucket) -> Result<bool, StoreError> {
    match target.get_small(MARKER_KEY, 64 * 1024).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_missing_object() => Ok(false),
        Err(e) => Err(e),
    }
}
