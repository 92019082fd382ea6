//! The object store the file system runs on: the few S3 operations it needs, as a trait, so the
//! core is tested against an in-memory store and served over COS (or any S3 server) in production.

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// What a store knows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key, including any mount prefix.
    pub key: String,
    pub size: u64,
    /// The entity tag as the server sent it, without quotes.
    pub etag: String,
    pub last_modified: SystemTime,
}

/// One page of a ListObjectsV2 listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects directly under the prefix (all of them below it when no delimiter was given).
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the "directories", each ending with the delimiter.
    pub common_prefixes: Vec<String>,
    /// Present when there are more results: pass it back to get the next page.
    pub next_token: Option<String>,
}

/// A part of a multipart upload, as CompleteMultipartUpload wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based, at most 10000.
    pub number: u32,
    pub etag: String,
}

/// What a store tells of one multipart upload in progress (neither completed nor aborted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
    /// When the server started it, by the server's clock (COS and S3 say it to the second).
    pub initiated: SystemTime,
}

/// [`ObjectStore::call_time_limit`] of a store that does not say: cos-client's defaults, 5
/// attempts of 30 s each and 4 backoffs of at most 5 s between them.
pub const DEFAULT_CALL_TIME_LIMIT: Duration = Duration::from_secs(170);

/// Why a store operation failed. The file system maps these to errno values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("access denied: {0}")]
    Forbidden(String),
    /// A precondition or argument the server refused (e.g. a part too small).
    #[error("refused: {0}")]
    Invalid(String),
    /// The server or network failed; the caller may retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The operations the file system needs. Keys are full object keys (no leading slash).
/// Implementations retry transient failures themselves; an error here is final.
pub trait ObjectStore: Send + Sync + 'static {
    fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// `Ok(None)` when the object does not exist.
    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectMeta>, StoreError>> + Send;

    /// Bytes `range` of the object (shorter at its end). When `if_match` is given and the object's
    /// ETag differs, fails with `NotFound` (the object the caller knew is gone).
    fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send;

    /// What `get_range` returns, as the consecutive pieces the store holds it in (a block
    /// cache's blocks), so a caller answering a smaller read slices one piece instead of a copy
    /// of the whole range. The default: `get_range`'s answer as the one piece.
    fn get_range_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send {
        async move { Ok(vec![self.get_range(key, range, if_match).await?]) }
    }

    /// Writes a whole object; returns its ETag.
    fn put(
        &self,
        key: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Starts a multipart upload; returns its upload ID.
    fn create_multipart(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Uploads part `number` (1-based); returns its ETag. Every part but the last is at least
    /// 5 MiB on real servers.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Makes the object visible; returns its ETag. Nothing is visible before this succeeds.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every multipart upload in progress whose key starts with `prefix`, all pages of the
    /// listing gathered.
    fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<MultipartUpload>, StoreError>> + Send;

    /// The longest one request can take, its retries included: an upload that a
    /// `create_multipart` started was initiated within this of the call's start.
    fn call_time_limit(&self) -> Duration;

    /// Server-side copy (multipart copy for large objects is the implementation's business);
    /// returns the new object's ETag.
    fn copy(&self, from: &str, to: &str)
    -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Deleting a missing key succeeds, as in S3.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The unit ranged reads are best cut in, such as a block cache's block: read-ahead then
    /// asks for whole, aligned units, so no unit is fetched for two requests and none is
    /// stitched together from several. `None` (the default): every range is as good as another.
    fn read_unit(&self) -> Option<u64> {
        None
    }
}

/// `pieces` as one buffer: the piece itself when there is one, else a copy of them in order.
pub fn concat(mut pieces: Vec<Bytes>) -> Bytes {
    match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => {
            let mut out = bytes::BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
            for p in pieces {
                out.extend_from_slice(&p);
            }
            out.freeze()
        }
    }
}
