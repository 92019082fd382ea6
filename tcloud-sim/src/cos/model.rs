//! The COS store's vocabulary: an object's stored metadata and attributes, the conditions on a
//! write, what a `put` needs, and what a COS operation fails with ([`CosError`], with the multipart
//! rule it cites, [`MIN_PART_SIZE`]). Pure data: no I/O, no HTTP or S3 types.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The smallest size of every part of a multipart upload but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// What a COS operation can fail with; each variant names the bucket, key or upload concerned.
#[derive(Debug, thiserror::Error)]
pub enum CosError {
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("object {key:?} does not exist in bucket {bucket}")]
    NoSuchKey { bucket: String, key: String },
    #[error(
        "multipart upload {upload_id} of {key:?} does not exist (never created, completed or aborted)"
    )]
    NoSuchUpload { upload_id: String, key: String },
    #[error("upload {upload_id}: part {part_number} {reason}")]
    InvalidPart {
        upload_id: String,
        part_number: i32,
        reason: String,
    },
    #[error(
        "upload {upload_id}: parts must be listed in ascending order, but part {next} follows part {previous}"
    )]
    InvalidPartOrder {
        upload_id: String,
        previous: i32,
        next: i32,
    },
    #[error(
        "upload {upload_id}: part {part_number} is {size} bytes; every part but the last must be at least {MIN_PART_SIZE} bytes"
    )]
    EntityTooSmall {
        upload_id: String,
        part_number: u32,
        size: u64,
    },
    #[error("upload {upload_id}: CompleteMultipartUpload names no parts")]
    NoParts { upload_id: String },
    #[error(
        "{key:?}: Content-MD5 {expected} does not match the data received (its MD5 is {actual})"
    )]
    BadDigest {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("{key:?}: Content-MD5 {value:?} is not the base64 of a 16-byte MD5")]
    InvalidDigest { key: String, value: String },
    #[error("{key:?}: the body was {received} bytes but Content-Length said {expected}")]
    IncompleteBody {
        key: String,
        expected: u64,
        received: u64,
    },
    #[error("{key:?}: precondition failed: {condition}")]
    PreconditionFailed { key: String, condition: String },
    #[error("{key:?}: range {range} is not within the object's {size} bytes")]
    InvalidRange {
        key: String,
        range: String,
        size: u64,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{key:?}: reading the request body failed: {source}")]
    Body { key: String, source: BoxError },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl CosError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> CosError {
        let context = context.into();
        move |source| CosError::Io { context, source }
    }
}

/// The headers and user metadata stored with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `x-amz-meta-*` values by lowercase name (without the prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// One stored object: `objects/<sha256 of key>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    /// The file under `data/` holding the bytes.
    pub data: String,
    pub size: u64,
    /// Without quotes: the MD5 in hex, or `<md5 of part MD5s>-<parts>` for a multipart upload.
    pub etag: String,
    /// Unix seconds.
    pub last_modified: i64,
    #[serde(default)]
    pub attrs: ObjectAttrs,
    /// Parts of the multipart upload that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_count: Option<u32>,
}

/// When a write may replace what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteCondition {
    #[default]
    Always,
    /// `If-None-Match: *`: only if no object has the key.
    IfAbsent,
    /// `If-Match: *`: only if an object has the key.
    IfExists,
    /// `If-Match: "etag"`: only if the object has this ETag.
    IfMatch(String),
}

impl WriteCondition {
    pub(super) fn check(
        &self,
        key: &str,
        current: Option<&Arc<ObjectMeta>>,
    ) -> Result<(), CosError> {
        let failed = |condition: String| {
            Err(CosError::PreconditionFailed {
                key: key.to_owned(),
                condition,
            })
        };
        match (self, current) {
            (WriteCondition::Always, _) => Ok(()),
            (WriteCondition::IfAbsent, Some(_)) => {
                failed("If-None-Match: * and the object exists".into())
            }
            (WriteCondition::IfExists, None) => {
                failed("If-Match and the object does not exist".into())
            }
            (WriteCondition::IfMatch(_), None) => {
                failed("If-Match and the object does not exist".into())
            }
            (WriteCondition::IfMatch(etag), Some(meta)) if *etag != meta.etag => failed(format!(
                "If-Match {etag:?} but the object's ETag is {:?}",
                meta.etag
            )),
            _ => Ok(()),
        }
    }
}

/// What a `put` needs besides the key and the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutParams {
    pub attrs: ObjectAttrs,
    /// The `Content-MD5` header, base64.
    pub content_md5: Option<String>,
    pub content_length: Option<u64>,
    pub condition: WriteCondition,
}
