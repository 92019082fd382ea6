//! [`FakeBuckets`]: in-memory buckets behind the [`Buckets`] and [`BucketApi`] seams, for tests
//! (feature `fake`, or this crate's tests). Buckets are keyed by endpoint and name, hold objects,
//! and accept only the keys they were given.
//!
//! Every answer is the one [`ObjectClient`](super::ObjectClient) gives for what the project's
//! simulator (`sim/src/cos/`, s3s underneath) sends back: the same [`ObjectError`] variants,
//! HTTP statuses and S3 codes, so `kind()` and `code()` answer as for a real server.
//! - Keys: an unknown SecretId is `403 InvalidAccessKeyId`, a wrong SecretKey `403
//!   SignatureDoesNotMatch`, a temporary key without its token `400 InvalidToken` (all
//!   [`Forbidden`](ObjectErrorKind::Forbidden) by code). A HEAD answer has no body, so there the
//!   status alone classifies: 403 is Forbidden, but 400 reads as `Invalid`, as with the real
//!   client.
//! - An unknown bucket is `404 NoSuchBucket` ([`NotFound`](ObjectErrorKind::NotFound)); for a
//!   HEAD it reads as a missing object and a DeleteObject succeeds, as the client accepts 404
//!   there.
//! - Listings follow ListObjectsV2: sorted keys, prefix, delimiter roll-up, at most 1000 per page
//!   (and `max-keys`), an opaque continuation token; a token the fake did not issue is
//!   `400 InvalidArgument`.
//! - DeleteObjects goes by batches of 1000, one request each, and reports the keys it could not
//!   delete ([`FakeBuckets::refuse_delete`]) with their code; missing keys count as deleted.
//! - Keys the client refuses before sending (empty, or with a `.`/`..` segment) are refused the
//!   same way, and so are configurations [`ObjectClient::new`](super::ObjectClient::new)
//!   refuses.
//!
//! Calls are counted per [`BucketOp`] as requests on the wire: what the client answers without
//! sending (an empty range, an empty key list, a refused key) is not counted. The `n`th request
//! of an operation can be made to fail with an error of a chosen kind, before or after it takes
//! effect. An injected [`Unavailable`](ObjectErrorKind::Unavailable) error stands for what the
//! client returns after its retries: the fake does not retry, time out or sleep.
//!
//! Each call suspends once (as a request on the wire would) and answers at once; it never
//! touches the network or the filesystem, and keeps no object metadata beyond the
//! body, its MD5 ETag and the time it was written.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use md5::{Digest, Md5};

use super::bucket::{BucketApi, Buckets, ListParams};
use super::config::resolve;
use super::{ListPage, ObjectConfig, ObjectCredentials, ObjectError, ObjectErrorKind, ObjectMeta};

/// The most keys one listing page holds and one DeleteObjects request names.
const MAX_PAGE: usize = 1000;

/// The requests [`BucketApi`] makes, for counting calls and injecting failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BucketOp {
    HeadObject,
    /// `get_object_range`.
    GetObject,
    PutObject,
    ListObjectsV2,
    /// One request per batch of 1000 keys.
    DeleteObjects,
    DeleteObject,
}

impl BucketOp {
    pub const ALL: [BucketOp; 6] = [
        BucketOp::HeadObject,
        BucketOp::GetObject,
        BucketOp::PutObject,
        BucketOp::ListObjectsV2,
        BucketOp::DeleteObjects,
        BucketOp::DeleteObject,
    ];

    /// The S3 action, as [`ObjectError`] names it in `op`.
    pub fn action(self) -> &'static str {
        match self {
            BucketOp::HeadObject => "HeadObject",
            BucketOp::GetObject => "GetObject",
            BucketOp::PutObject => "PutObject",
            BucketOp::ListObjectsV2 => "ListObjectsV2",
            BucketOp::DeleteObjects => "DeleteObjects",
            BucketOp::DeleteObject => "DeleteObject",
        }
    }
}

/// An error answer of the fake server, before the client turns it into an [`ObjectError`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: u16,
    code: String,
    message: String,
}

impl Refusal {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn no_such_bucket(bucket: &str) -> Self {
        Refusal::new(
            404,
            "NoSuchBucket",
            format!("The specified bucket {bucket} does not exist."),
        )
    }

    /// An error the client classifies as `kind`, as a server would send it for `op`.
    fn of_kind(op: BucketOp, kind: ObjectErrorKind, message: String) -> Self {
        let (status, code) = match (kind, op) {
            (ObjectErrorKind::NotFound, BucketOp::ListObjectsV2 | BucketOp::DeleteObjects) => {
                (404, "NoSuchBucket")
            }
            (ObjectErrorKind::NotFound, _) => (404, "NoSuchKey"),
            (ObjectErrorKind::Forbidden, _) => (403, "AccessDenied"),
            (ObjectErrorKind::Invalid, _) => (400, "InvalidArgument"),
            (ObjectErrorKind::Unavailable, _) => (500, "InternalError"),
        };
        Refusal::new(status, code, message)
    }
}

/// The HTTP status S3 answers a per-key error `code` with when it fails a whole request.
fn status_of(code: &str) -> u16 {
    match ObjectErrorKind::classify(0, code) {
        ObjectErrorKind::NotFound => 404,
        ObjectErrorKind::Forbidden => 403,
        ObjectErrorKind::Unavailable if code == "SlowDown" => 503,
        ObjectErrorKind::Unavailable => 500,
        ObjectErrorKind::Invalid => 400,
    }
}

/// A failure armed for the Nth request of an operation.
#[derive(Debug)]
struct Armed {
    op: BucketOp,
    /// Requests of `op` left before the one that fails (0: the next one fails).
    skip: u64,
    kind: ObjectErrorKind,
    /// The request takes effect and only its answer is lost.
    after_effect: bool,
}

/// A failure due on this request.
#[derive(Debug, Clone, Copy)]
struct Fired {
    kind: ObjectErrorKind,
    after_effect: bool,
}

#[derive(Debug, Clone)]
struct Stored {
    body: Bytes,
    etag: String,
    last_modified: SystemTime,
}

impl Stored {
    fn new(body: Bytes) -> Self {
        let etag = hex::encode(Md5::digest(&body));
        Stored {
            body,
            etag,
            last_modified: now(),
        }
    }

    fn meta(&self, key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_owned(),
            size: self.body.len() as u64,
            etag: self.etag.clone(),
            last_modified: self.last_modified,
        }
    }
}

/// Now, to the second: what HTTP dates carry.
fn now() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[derive(Debug, Default)]
struct BucketRecord {
    keys: Vec<ObjectCredentials>,
    objects: BTreeMap<String, Stored>,
    /// Keys whose deletion fails, with the S3 error code.
    refused: BTreeMap<String, String>,
}

impl BucketRecord {
    /// What the server answers a request signed with `presented`, when it is not accepted.
    fn check(&self, presented: &ObjectCredentials) -> Option<Refusal> {
        let Some(key) = self
            .keys
            .iter()
            .find(|k| k.secret_id == presented.secret_id)
        else {
            return Some(Refusal::new(
                403,
                "InvalidAccessKeyId",
                "The access key ID you provided does not exist in our records.",
            ));
        };
        if key.secret_key != presented.secret_key {
            return Some(Refusal::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ));
        }
        match &key.token {
            Some(token) if presented.token.as_ref() != Some(token) => Some(Refusal::new(
                400,
                "InvalidToken",
                "The provided token is malformed or otherwise invalid.",
            )),
            _ => None,
        }
    }

    /// Deletes `key` unless it is refused; a missing key is success.
    fn delete(&mut self, key: &str) -> Result<(), String> {
        if let Some(code) = self.refused.get(key) {
            return Err(code.clone());
        }
        self.objects.remove(key);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    /// By (endpoint, bucket name).
    buckets: BTreeMap<(String, String), BucketRecord>,
    calls: HashMap<BucketOp, u64>,
    armed: Vec<Armed>,
    opens: u64,
    requests: u64,
}

impl State {
    /// Counts a request of `op`; returns its number and the failure due on it, if any. Several
    /// failures armed for the same request: the first fires, the others are spent too.
    fn begin(&mut self, op: BucketOp) -> (u64, Option<Fired>) {
        self.requests += 1;
        let count = self.calls.entry(op).or_insert(0);
        *count += 1;
        let call = *count;
        let mut due = None;
        self.armed.retain_mut(|armed| {
            if armed.op != op {
                return true;
            }
            if armed.skip == 0 {
                due = due.or(Some(Fired {
                    kind: armed.kind,
                    after_effect: armed.after_effect,
                }));
                return false;
            }
            armed.skip -= 1;
            true
        });
        (call, due)
    }
}

/// `scheme://host[:port]`, lowercase, as the client resolves an endpoint; the text itself when
/// the client would refuse it.
fn endpoint_key(url: &str) -> String {
    match resolve(&ObjectConfig::new(url, "bucket")) {
        Ok(endpoint) => format!("{}://{}", endpoint.scheme, endpoint.host),
        Err(_) => url.trim().trim_end_matches('/').to_owned(),
    }
}

/// In-memory buckets. Clones share them: keep one in the test and give one to the code under
/// test.
#[derive(Debug, Clone, Default)]
pub struct FakeBuckets {
    state: Arc<Mutex<State>>,
}

impl FakeBuckets {
    /// No buckets at all.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`FakeBuckets::add_bucket`], for building.
    pub fn with_bucket(self, url: &str, bucket: &str, credentials: ObjectCredentials) -> Self {
        self.add_bucket(url, bucket, credentials);
        self
    }

    /// Makes bucket `bucket` of endpoint `url` exist, empty if it is new, and accept
    /// `credentials` (besides keys it accepted already). Credentials with a token are temporary
    /// keys: requests must carry that token; without one, any token is accepted.
    pub fn add_bucket(&self, url: &str, bucket: &str, credentials: ObjectCredentials) {
        let credentials = credentials.trimmed();
        let mut state = self.lock();
        let record = state
            .buckets
            .entry((endpoint_key(url), bucket.to_owned()))
            .or_default();
        record.keys.retain(|k| k.secret_id != credentials.secret_id);
        record.keys.push(credentials);
    }

    /// Removes a bucket and everything in it.
    pub fn remove_bucket(&self, url: &str, bucket: &str) {
        self.lock()
            .buckets
            .remove(&(endpoint_key(url), bucket.to_owned()));
    }

    /// Writes an object directly (not counted as a request): the data a test starts from. Fails
    /// with `NoSuchBucket` when the bucket does not exist.
    pub fn put(
        &self,
        url: &str,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<(), ObjectError> {
        let mut state = self.lock();
        let Some(record) = state
            .buckets
            .get_mut(&(endpoint_key(url), bucket.to_owned()))
        else {
            let refusal = Refusal::no_such_bucket(bucket);
            return Err(ObjectError::Service {
                op: BucketOp::PutObject.action(),
                resource: format!("{bucket}/{key}"),
                status: refusal.status,
                code: refusal.code,
                message: refusal.message,
                request_id: String::new(),
            });
        };
        record
            .objects
            .insert(key.to_owned(), Stored::new(body.into()));
        Ok(())
    }

    /// Makes deleting `key` fail with the S3 error `code` (e.g. `AccessDenied`): DeleteObjects
    /// reports it among the keys it could not delete, DeleteObject fails with it. Nothing happens
    /// when the bucket does not exist.
    pub fn refuse_delete(&self, url: &str, bucket: &str, key: &str, code: &str) {
        if let Some(record) = self
            .lock()
            .buckets
            .get_mut(&(endpoint_key(url), bucket.to_owned()))
        {
            record.refused.insert(key.to_owned(), code.to_owned());
        }
    }

    /// Lets `key` be deleted again.
    pub fn allow_delete(&self, url: &str, bucket: &str, key: &str) {
        if let Some(record) = self
            .lock()
            .buckets
            .get_mut(&(endpoint_key(url), bucket.to_owned()))
        {
            record.refused.remove(key);
        }
    }

    /// Makes the `n`th request of `op` (1-based, counted from now; 0 acts as 1) fail with an
    /// error of `kind`, without taking effect. The error is what a server answers for that kind
    /// (`404 NoSuchKey` or `NoSuchBucket`, `403 AccessDenied`, `400 InvalidArgument`,
    /// `500 InternalError`) as the client reports it: a NotFound on HeadObject reads as a
    /// missing object, and on DeleteObject as success.
    pub fn fail_nth(&self, op: BucketOp, n: u64, kind: ObjectErrorKind) {
        self.arm(op, n, kind, false);
    }

    /// Makes the `n`th request of `op` take effect and then fail as [`FakeBuckets::fail_nth`]
    /// says, as when the answer of a successful request is lost on its way back.
    pub fn lose_nth_response(&self, op: BucketOp, n: u64, kind: ObjectErrorKind) {
        self.arm(op, n, kind, true);
    }

    fn arm(&self, op: BucketOp, n: u64, kind: ObjectErrorKind, after_effect: bool) {
        self.lock().armed.push(Armed {
            op,
            skip: n.saturating_sub(1),
            kind,
            after_effect,
        });
    }

    /// How many requests of `op` were made, failed ones included.
    pub fn calls(&self, op: BucketOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// How many requests were made, of every operation.
    pub fn total_calls(&self) -> u64 {
        self.lock().requests
    }

    /// How many times a bucket was opened ([`Buckets::open`]), refused configurations included.
    pub fn opens(&self) -> u64 {
        self.lock().opens
    }

    /// Every object of the bucket, key to body; empty when the bucket does not exist.
    pub fn objects(&self, url: &str, bucket: &str) -> BTreeMap<String, Bytes> {
        self.lock()
            .buckets
            .get(&(endpoint_key(url), bucket.to_owned()))
            .map(|record| {
                record
                    .objects
                    .iter()
                    .map(|(key, stored)| (key.clone(), stored.body.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One object's body.
    pub fn object(&self, url: &str, bucket: &str, key: &str) -> Option<Bytes> {
        self.lock()
            .buckets
            .get(&(endpoint_key(url), bucket.to_owned()))
            .and_then(|record| record.objects.get(key))
            .map(|stored| stored.body.clone())
    }

    /// Whether the bucket exists.
    pub fn has_bucket(&self, url: &str, bucket: &str) -> bool {
        self.lock()
            .buckets
            .contains_key(&(endpoint_key(url), bucket.to_owned()))
    }
}

impl Buckets for FakeBuckets {
    type Bucket = FakeBucket;

    fn open(
        &self,
        config: ObjectConfig,
        credentials: ObjectCredentials,
    ) -> Result<FakeBucket, ObjectError> {
        self.lock().opens += 1;
        let endpoint = resolve(&config)?;
        Ok(FakeBucket {
            state: Arc::clone(&self.state),
            endpoint: format!("{}://{}", endpoint.scheme, endpoint.host),
            bucket: config.bucket,
            credentials: credentials.trimmed(),
        })
    }
}

/// One bucket of [`FakeBuckets`] as a client with given credentials sees it.
#[derive(Debug, Clone)]
pub struct FakeBucket {
    state: Arc<Mutex<State>>,
    endpoint: String,
    bucket: String,
    credentials: ObjectCredentials,
}

impl FakeBucket {
    fn resource(&self, subject: Option<&str>) -> String {
        match subject {
            Some(subject) => format!("{}/{subject}", self.bucket),
            None => self.bucket.clone(),
        }
    }

    /// What the client refuses before sending a request for `key`.
    fn check_key(&self, op: BucketOp, key: &str) -> Result<(), ObjectError> {
        let detail = if key.is_empty() {
            "the key is empty"
        } else if key
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            "the key has a '.' or '..' segment, which a URL cannot address"
        } else {
            return Ok(());
        };
        Err(ObjectError::InvalidArgument {
            op: op.action(),
            resource: self.resource(Some(key)),
            detail: detail.into(),
        })
    }

    /// One request: counted, its keys checked, an armed failure fired, then `effect` run on the
    /// bucket (`None` when it does not exist). A refusal becomes the client's error.
    fn request<T>(
        &self,
        op: BucketOp,
        subject: Option<&str>,
        effect: impl FnOnce(Option<&mut BucketRecord>) -> Result<T, Refusal>,
    ) -> Result<T, ObjectError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let (call, fired) = state.begin(op);
        let request_id = format!("fake-{:08}", state.requests);
        let record = state
            .buckets
            .get_mut(&(self.endpoint.clone(), self.bucket.clone()));
        let refused = record.as_ref().and_then(|r| r.check(&self.credentials));
        let outcome = match (refused, fired) {
            (Some(refusal), _) => Err(refusal),
            (None, Some(fired)) => {
                let what = if fired.after_effect {
                    let _ = effect(record);
                    "the request took effect but its answer was lost"
                } else {
                    "the request was refused"
                };
                Err(Refusal::of_kind(
                    op,
                    fired.kind,
                    format!("injected failure of {} call {call}: {what}.", op.action()),
                ))
            }
            (None, None) => effect(record),
        };
        outcome.map_err(|refusal| self.error(op, subject, refusal, request_id))
    }

    /// The client's error for an error answer: HEAD answers have no body, so no code or message.
    fn error(
        &self,
        op: BucketOp,
        subject: Option<&str>,
        refusal: Refusal,
        request_id: String,
    ) -> ObjectError {
        let (code, message) = if op == BucketOp::HeadObject {
            (String::new(), String::new())
        } else {
            (refusal.code, refusal.message)
        };
        ObjectError::Service {
            op: op.action(),
            resource: self.resource(subject),
            status: refusal.status,
            code,
            message,
            request_id,
        }
    }
}

/// Whether `error` is the server's answer `status`, which some operations take as an answer
/// (a 404 to HeadObject or DeleteObject).
fn accepted(error: &ObjectError, status: u16) -> bool {
    error.status() == Some(status) && matches!(error, ObjectError::Service { .. })
}

impl BucketApi for FakeBucket {
    async fn head_object(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        answer_later().await;
        const OP: BucketOp = BucketOp::HeadObject;
        self.check_key(OP, key)?;
        let bucket = self.bucket.clone();
        let answer = self.request(OP, Some(key), |record| {
            let record = record.ok_or_else(|| Refusal::no_such_bucket(&bucket))?;
            record
                .objects
                .get(key)
                .map(|stored| stored.meta(key))
                .ok_or_else(|| Refusal::new(404, "NoSuchKey", ""))
        });
        match answer {
            Ok(meta) => Ok(Some(meta)),
            Err(error) if accepted(&error, 404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn get_object_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, ObjectError> {
        answer_later().await;
        const OP: BucketOp = BucketOp::GetObject;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.check_key(OP, key)?;
        let bucket = self.bucket.clone();
        self.request(OP, Some(key), |record| {
            let record = record.ok_or_else(|| Refusal::no_such_bucket(&bucket))?;
            let stored = record.objects.get(key).ok_or_else(|| {
                Refusal::new(404, "NoSuchKey", "The specified key does not exist.")
            })?;
            if let Some(wanted) = if_match {
                let wanted = wanted.trim_matches('"');
                if wanted != "*" && wanted != stored.etag {
                    return Err(Refusal::new(
                        412,
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold.",
                    ));
                }
            }
            let len = stored.body.len();
            let from = usize::try_from(range.start).unwrap_or(usize::MAX).min(len);
            let to = usize::try_from(range.end).unwrap_or(usize::MAX).min(len);
            // Past the end: 416, which the client answers with no bytes.
            Ok(stored.body.slice(from..to.max(from)))
        })
    }

    async fn put_object(&self, key: &str, body: Bytes) -> Result<String, ObjectError> {
        answer_later().await;
        const OP: BucketOp = BucketOp::PutObject;
        self.check_key(OP, key)?;
        let bucket = self.bucket.clone();
        self.request(OP, Some(key), |record| {
            let record = record.ok_or_else(|| Refusal::no_such_bucket(&bucket))?;
            let stored = Stored::new(body);
            let etag = stored.etag.clone();
            record.objects.insert(key.to_owned(), stored);
            Ok(etag)
        })
    }

    async fn list_objects_v2(&self, params: ListParams<'_>) -> Result<ListPage, ObjectError> {
        answer_later().await;
        const OP: BucketOp = BucketOp::ListObjectsV2;
        let bucket = self.bucket.clone();
        self.request(OP, Some(params.prefix), |record| {
            let record = record.ok_or_else(|| Refusal::no_such_bucket(&bucket))?;
            let after = match params.continuation {
                Some(token) => Some(marker_of_token(token).ok_or_else(|| {
                    Refusal::new(
                        400,
                        "InvalidArgument",
                        format!("continuation-token {token:?} was not issued by this server"),
                    )
                })?),
                None => None,
            };
            let max = params
                .max_keys
                .map_or(MAX_PAGE, |n| usize::try_from(n).unwrap_or(MAX_PAGE))
                .min(MAX_PAGE);
            Ok(list(&record.objects, &params, after.as_deref(), max))
        })
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        answer_later().await;
        const OP: BucketOp = BucketOp::DeleteObjects;
        let mut failed = Vec::new();
        for batch in keys.chunks(MAX_PAGE) {
            let bucket = self.bucket.clone();
            let errors = self.request(OP, None, |record| {
                let record = record.ok_or_else(|| Refusal::no_such_bucket(&bucket))?;
                Ok(batch
                    .iter()
                    .filter_map(|key| record.delete(key).err().map(|code| (key.clone(), code)))
                    .collect::<Vec<_>>())
            })?;
            failed.extend(errors);
        }
        Ok(failed)
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        answer_later().await;
        const OP: BucketOp = BucketOp::DeleteObject;
        self.check_key(OP, key)?;
        let bucket = self.bucket.clone();
        let answer = self.request(OP, Some(key), |record| {
            let record = record.ok_or_else(|| Refusal::no_such_bucket(&bucket))?;
            record.delete(key).map_err(|code| {
                Refusal::new(
                    status_of(&code),
                    &code,
                    format!("{key} could not be deleted."),
                )
            })
        });
        match answer {
            Err(error) if accepted(&error, 404) => Ok(()),
            answer => answer,
        }
    }
}

/// Suspends once, as a request on the wire does: a caller looping over the fake still lets its
/// runtime run timers and other tasks.
async fn answer_later() {
    tokio::task::yield_now().await;
}

/// The continuation token that resumes after `marker` (opaque to clients).
fn continuation_token(marker: &str) -> String {
    hex::encode(marker.as_bytes())
}

fn marker_of_token(token: &str) -> Option<String> {
    String::from_utf8(hex::decode(token).ok()?).ok()
}

/// One ListObjectsV2 page of `objects`: keys under the prefix after `after`, those containing the
/// delimiter after the prefix rolled up into common prefixes, at most `max` of both together.
fn list(
    objects: &BTreeMap<String, Stored>,
    params: &ListParams<'_>,
    after: Option<&str>,
    max: usize,
) -> ListPage {
    let mut page = ListPage::default();
    if max == 0 {
        return page;
    }
    let prefix = params.prefix;
    let delimiter = params.delimiter.filter(|d| !d.is_empty());
    let mut cursor = match after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
        _ => Bound::Included(prefix.to_owned()),
    };
    let mut count = 0;
    let mut last: Option<String> = None;
    let mut truncated = false;
    while let Some((key, stored)) = objects
        .range::<String, _>((cursor.clone(), Bound::Unbounded))
        .next()
    {
        // The keys with the prefix are contiguous and the cursor starts within or after them.
        if !key.starts_with(prefix) {
            break;
        }
        let rolled = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_owned())
        });
        let Some(common) = rolled else {
            if count == max {
                truncated = true;
                break;
            }
            count += 1;
            last = Some(key.clone());
            page.objects.push(stored.meta(key));
            cursor = Bound::Excluded(key.clone());
            continue;
        };
        // Skip every key under this common prefix in one step.
        let jump = format!("{common}{}", char::MAX);
        cursor = Bound::Excluded(if *key > jump { key.clone() } else { jump });
        let returned_before = after.is_some_and(|after| common.as_str() <= after)
            || page.common_prefixes.last() == Some(&common);
        if returned_before {
            continue;
        }
        if count == max {
            truncated = true;
            break;
        }
        count += 1;
        last = Some(common.clone());
        page.common_prefixes.push(common);
    }
    if truncated {
        page.next_token = last.as_deref().map(continuation_token);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://cos.ap-guangzhou.myqcloud.com";
    const BUCKET: &str = "data-1250000000";

    fn keys() -> ObjectCredentials {
        ObjectCredentials::new("AKIDgood", "good-secret", None)
    }

    fn fake() -> FakeBuckets {
        FakeBuckets::new().with_bucket(URL, BUCKET, keys())
    }

    fn open(fake: &FakeBuckets, credentials: ObjectCredentials) -> FakeBucket {
        fake.open(ObjectConfig::new(URL, BUCKET), credentials)
            .unwrap()
    }

    fn service(error: &ObjectError) -> (u16, &str) {
        (error.status().unwrap(), error.code().unwrap_or(""))
    }

    #[tokio::test]
    async fn objects_round_trip_with_md5_etags_and_ranges() {
        let fake = fake();
        let b = open(&fake, keys());
        let etag = b.put_object("a/b", Bytes::from("hello")).await.unwrap();
        assert_eq!(etag, "5d41402abc4b2a76b9719d911017c592");
        let meta = b.head_object("a/b").await.unwrap().unwrap();
        assert_eq!((meta.size, meta.etag.as_str()), (5, etag.as_str()));
        assert_eq!(b.head_object("a/c").await.unwrap(), None);
        assert_eq!(b.get_object_range("a/b", 1..3, None).await.unwrap(), "el");
        assert_eq!(b.get_object_range("a/b", 3..99, None).await.unwrap(), "lo");
        assert_eq!(b.get_object_range("a/b", 9..99, None).await.unwrap(), "");
        let q = format!("\"{etag}\"");
        assert_eq!(
            b.get_object_range("a/b", 0..2, Some(&q)).await.unwrap(),
            "he"
        );
        let stale = b
            .get_object_range("a/b", 0..2, Some("0123"))
            .await
            .unwrap_err();
        assert_eq!(service(&stale), (412, "PreconditionFailed"));
        assert_eq!(stale.kind(), ObjectErrorKind::NotFound);
        let missing = b.get_object_range("a/c", 0..2, None).await.unwrap_err();
        assert_eq!(service(&missing), (404, "NoSuchKey"));
        assert_eq!(
            missing.to_string().split(':').next(),
            Some("GetObject data-1250000000/a/c")
        );
        assert_eq!(
            fake.objects(URL, BUCKET).into_iter().collect::<Vec<_>>(),
            vec![("a/b".to_owned(), Bytes::from("hello"))]
        );
        // What the client answers without sending is not a request.
        let before = fake.total_calls();
        assert_eq!(b.get_object_range("a/b", 2..2, None).await.unwrap(), "");
        assert_eq!(b.delete_objects(&[]).await.unwrap(), vec![]);
        let dots = b.put_object("a/../b", Bytes::new()).await.unwrap_err();
        assert!(
            matches!(dots, ObjectError::InvalidArgument { .. }),
            "{dots}"
        );
        let empty = b.delete_object("").await.unwrap_err();
        assert_eq!(empty.kind(), ObjectErrorKind::Invalid);
        assert_eq!(fake.total_calls(), before);
        assert_eq!(fake.calls(BucketOp::GetObject), 6);
    }

    #[tokio::test]
    async fn wrong_keys_are_refused_as_the_simulator_refuses_them() {
        let fake = fake();
        fake.add_bucket(
            URL,
            BUCKET,
            ObjectCredentials::new("AKIDtemp", "temp-secret", Some("tok")),
        );
        fake.put(URL, BUCKET, "k", "v").unwrap();
        let cases = [
            (("AKIDnope", "good-secret", None), 403, "InvalidAccessKeyId"),
            (
                ("AKIDgood", "bad-secret", None),
                403,
                "SignatureDoesNotMatch",
            ),
            (("AKIDtemp", "temp-secret", None), 400, "InvalidToken"),
            (
                ("AKIDtemp", "temp-secret", Some("old")),
                400,
                "InvalidToken",
            ),
        ];
        for ((id, secret, token), status, code) in cases {
            let b = open(&fake, ObjectCredentials::new(id, secret, token));
            let put = b.put_object("k", Bytes::from("x")).await.unwrap_err();
            assert_eq!(service(&put), (status, code), "{id}");
            assert_eq!(put.kind(), ObjectErrorKind::Forbidden, "{id}");
            let list = b.list_objects_v2(ListParams::prefix("")).await.unwrap_err();
            assert_eq!(list.kind(), ObjectErrorKind::Forbidden, "{id}");
            // A HEAD answer has no body: the status alone classifies, as for the real client.
            let head = b.head_object("k").await.unwrap_err();
            assert_eq!(service(&head), (status, ""), "{id}");
            let head_kind = if status == 403 {
                ObjectErrorKind::Forbidden
            } else {
                ObjectErrorKind::Invalid
            };
            assert_eq!(head.kind(), head_kind, "{id}");
        }
        assert_eq!(fake.object(URL, BUCKET, "k").unwrap(), "v");
        // Permanent keys take any token; a temporary key with its token is accepted; trimmed.
        let b = open(
            &fake,
            ObjectCredentials::new("AKIDgood", "good-secret", Some("t")),
        );
        assert!(b.head_object("k").await.unwrap().is_some());
        let b = open(
            &fake,
            ObjectCredentials::new("AKIDtemp\n", " temp-secret", Some("tok")),
        );
        assert!(b.head_object("k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn unknown_buckets_are_no_such_bucket_except_where_the_client_accepts_404() {
        let fake = fake();
        let b = fake
            .open(ObjectConfig::new(URL, "other-1250000000"), keys())
            .unwrap();
        let put = b.put_object("k", Bytes::new()).await.unwrap_err();
        assert_eq!(service(&put), (404, "NoSuchBucket"));
        assert_eq!(put.kind(), ObjectErrorKind::NotFound);
        let get = b.get_object_range("k", 0..1, None).await.unwrap_err();
        assert_eq!(service(&get), (404, "NoSuchBucket"));
        let list = b.list_objects_v2(ListParams::prefix("")).await.unwrap_err();
        assert_eq!(service(&list), (404, "NoSuchBucket"));
        let names = vec!["k".to_owned()];
        let bulk = b.delete_objects(&names).await.unwrap_err();
        assert_eq!(service(&bulk), (404, "NoSuchBucket"));
        assert_eq!(b.head_object("k").await.unwrap(), None);
        b.delete_object("k").await.unwrap();
        // Another endpoint is another bucket; the same endpoint spelled differently is the same.
        assert!(
            fake.open(
                ObjectConfig::new("https://cos.ap-beijing.myqcloud.com", BUCKET),
                keys()
            )
            .unwrap()
            .put_object("k", Bytes::new())
            .await
            .is_err()
        );
        let same = fake
            .open(
                ObjectConfig::new("HTTPS://COS.ap-guangzhou.myqcloud.com/", BUCKET),
                keys(),
            )
            .unwrap();
        same.put_object("k", Bytes::new()).await.unwrap();
        assert!(fake.object(URL, BUCKET, "k").is_some());
        assert!(!fake.has_bucket(URL, "other-1250000000"));
        assert!(fake.put(URL, "other-1250000000", "k", "v").is_err());
        // What ObjectClient::new refuses, open refuses.
        let bad = fake.open(ObjectConfig::new("ftp://x", BUCKET), keys());
        assert!(matches!(bad, Err(ObjectError::Config { .. })));
        assert_eq!(fake.opens(), 4);
    }

    #[tokio::test]
    async fn listing_pages_through_prefix_and_delimiter() {
        let fake = fake();
        for key in [
            "pv-1/", "pv-1/a", "pv-1/d/x", "pv-1/d/y", "pv-1/z", "pv-10/a", "pv-2",
        ] {
            fake.put(URL, BUCKET, key, "").unwrap();
        }
        let b = open(&fake, keys());
        let names = |page: &ListPage| -> Vec<String> {
            page.objects.iter().map(|o| o.key.clone()).collect()
        };
        let page = b
            .list_objects_v2(ListParams::prefix("pv-1/"))
            .await
            .unwrap();
        assert_eq!(
            names(&page),
            ["pv-1/", "pv-1/a", "pv-1/d/x", "pv-1/d/y", "pv-1/z"]
        );
        assert_eq!(page.next_token, None);
        let rolled = b
            .list_objects_v2(ListParams {
                delimiter: Some("/"),
                ..ListParams::prefix("pv-1/")
            })
            .await
            .unwrap();
        assert_eq!(names(&rolled), ["pv-1/", "pv-1/a", "pv-1/z"]);
        assert_eq!(rolled.common_prefixes, ["pv-1/d/"]);
        // Two at a time, the common prefix counting as one.
        let mut token: Option<String> = None;
        let mut pages = Vec::new();
        loop {
            let page = b
                .list_objects_v2(ListParams {
                    prefix: "pv-1/",
                    delimiter: Some("/"),
                    continuation: token.as_deref(),
                    max_keys: Some(2),
                })
                .await
                .unwrap();
            pages.push((names(&page), page.common_prefixes.clone()));
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            pages,
            [
                (s(&["pv-1/", "pv-1/a"]), s(&[])),
                (s(&["pv-1/z"]), s(&["pv-1/d/"])),
            ]
        );
        let zero = b
            .list_objects_v2(ListParams {
                max_keys: Some(0),
                ..ListParams::prefix("")
            })
            .await
            .unwrap();
        assert_eq!(zero, ListPage::default());
        let forged = b
            .list_objects_v2(ListParams {
                continuation: Some("not-a-token"),
                ..ListParams::prefix("")
            })
            .await
            .unwrap_err();
        assert_eq!(service(&forged), (400, "InvalidArgument"));
        assert_eq!(forged.kind(), ObjectErrorKind::Invalid);
    }

    #[tokio::test]
    async fn pages_hold_at_most_a_thousand_keys() {
        let fake = fake();
        for i in 0..1005 {
            fake.put(URL, BUCKET, &format!("k/{i:04}"), "").unwrap();
        }
        let b = open(&fake, keys());
        let page = b
            .list_objects_v2(ListParams {
                max_keys: Some(5000),
                ..ListParams::prefix("k/")
            })
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 1000);
        let rest = b
            .list_objects_v2(ListParams {
                continuation: page.next_token.as_deref(),
                ..ListParams::prefix("k/")
            })
            .await
            .unwrap();
        assert_eq!(rest.objects.len(), 5);
        assert_eq!(rest.objects[0].key, "k/1000");
        assert_eq!(rest.next_token, None);
    }

    #[tokio::test]
    async fn bulk_deletes_report_refused_keys_and_go_by_thousands() {
        let fake = fake();
        let keys_: Vec<String> = (0..2500).map(|i| format!("k/{i:04}")).collect();
        for key in &keys_ {
            fake.put(URL, BUCKET, key, "").unwrap();
        }
        fake.refuse_delete(URL, BUCKET, "k/0007", "AccessDenied");
        let b = open(&fake, keys());
        let mut asked = keys_[..10].to_vec();
        asked.push("k/missing".to_owned());
        let failed = b.delete_objects(&asked).await.unwrap();
        assert_eq!(failed, [("k/0007".to_owned(), "AccessDenied".to_owned())]);
        assert_eq!(fake.objects(URL, BUCKET).len(), 2491);
        // DeleteObject of a refused key fails with its code.
        let one = b.delete_object("k/0007").await.unwrap_err();
        assert_eq!(service(&one), (403, "AccessDenied"));
        fake.allow_delete(URL, BUCKET, "k/0007");
        b.delete_object("k/0007").await.unwrap();
        // The second batch of 1000 fails: the first is gone, the rest is still there.
        fake.fail_nth(BucketOp::DeleteObjects, 2, ObjectErrorKind::Unavailable);
        let before = fake.calls(BucketOp::DeleteObjects);
        let error = b.delete_objects(&keys_).await.unwrap_err();
        assert_eq!(service(&error), (500, "InternalError"));
        assert_eq!(error.kind(), ObjectErrorKind::Unavailable);
        assert_eq!(fake.calls(BucketOp::DeleteObjects) - before, 2);
        assert_eq!(fake.objects(URL, BUCKET).len(), 1500);
        assert_eq!(b.delete_objects(&keys_).await.unwrap(), vec![]);
        assert!(fake.objects(URL, BUCKET).is_empty());
    }

    #[tokio::test]
    async fn injected_failures_hit_exactly_the_nth_request_of_their_operation() {
        let fake = fake();
        let b = open(&fake, keys());
        fake.fail_nth(BucketOp::PutObject, 2, ObjectErrorKind::Forbidden);
        b.head_object("x").await.unwrap();
        b.put_object("a", Bytes::new()).await.unwrap();
        let error = b.put_object("b", Bytes::new()).await.unwrap_err();
        assert_eq!(service(&error), (403, "AccessDenied"));
        assert!(error.to_string().contains("PutObject call 2"), "{error}");
        b.put_object("c", Bytes::new()).await.unwrap();
        assert_eq!(
            fake.objects(URL, BUCKET).keys().collect::<Vec<_>>(),
            ["a", "c"]
        );
        // A lost answer: the write happened.
        fake.lose_nth_response(BucketOp::PutObject, 1, ObjectErrorKind::Unavailable);
        assert!(b.put_object("d", Bytes::new()).await.is_err());
        assert!(fake.object(URL, BUCKET, "d").is_some());
        // A 404 where the client accepts it: HEAD says missing, DeleteObject succeeds undone.
        fake.fail_nth(BucketOp::HeadObject, 1, ObjectErrorKind::NotFound);
        assert_eq!(b.head_object("a").await.unwrap(), None);
        fake.fail_nth(BucketOp::DeleteObject, 1, ObjectErrorKind::NotFound);
        b.delete_object("a").await.unwrap();
        assert!(fake.object(URL, BUCKET, "a").is_some());
        fake.fail_nth(BucketOp::HeadObject, 1, ObjectErrorKind::Unavailable);
        let head = b.head_object("a").await.unwrap_err();
        assert_eq!(
            (service(&head), head.kind()),
            ((500, ""), ObjectErrorKind::Unavailable)
        );
        let counts: Vec<u64> = BucketOp::ALL.iter().map(|op| fake.calls(*op)).collect();
        assert_eq!(counts, [3, 0, 4, 0, 0, 1]);
        assert_eq!(fake.total_calls(), 8);
    }

    /// The fake's errors are the ones the real client makes of a server's answers.
    #[tokio::test]
    async fn errors_match_the_real_client_facing_the_same_answers() {
        use crate::test_server::{Canned, TestServer, test_client};
        let server = TestServer::start(|r| match r.method.as_str() {
            "HEAD" => Canned::status(403),
            "PUT" => Canned::xml(
                403,
                "<Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error>",
            ),
            _ => Canned::xml(
                404,
                "<Error><Code>NoSuchBucket</Code><Message>m</Message></Error>",
            ),
        })
        .await;
        let real = test_client(&server, |_| {});
        let fake = FakeBuckets::new().with_bucket(
            &server.endpoint,
            crate::test_server::TEST_BUCKET,
            keys(),
        );
        let wrong = ObjectCredentials::new("AKIDgood", "bad-secret", None);
        let b = fake
            .open(
                ObjectConfig::new(&server.endpoint, crate::test_server::TEST_BUCKET),
                wrong,
            )
            .unwrap();
        let shape = |e: ObjectError| match e {
            ObjectError::Service {
                op,
                resource,
                status,
                code,
                ..
            } => (
                op,
                resource,
                status,
                code,
                ObjectErrorKind::classify(status, ""),
            ),
            other => panic!("not a service error: {other}"),
        };
        assert_eq!(
            shape(BucketApi::head_object(&real, "a/b").await.unwrap_err()),
            shape(b.head_object("a/b").await.unwrap_err())
        );
        assert_eq!(
            shape(
                BucketApi::put_object(&real, "a/b", Bytes::new())
                    .await
                    .unwrap_err()
            ),
            shape(b.put_object("a/b", Bytes::new()).await.unwrap_err())
        );
        fake.remove_bucket(&server.endpoint, crate::test_server::TEST_BUCKET);
        assert_eq!(
            shape(
                BucketApi::list_objects_v2(&real, ListParams::prefix("p/"))
                    .await
                    .unwrap_err()
            ),
            shape(
                b.list_objects_v2(ListParams::prefix("p/"))
                    .await
                    .unwrap_err()
            )
        );
        // A 404 is accepted by DeleteObject: success on both sides.
        BucketApi::delete_object(&real, "a/b").await.unwrap();
        b.delete_object("a/b").await.unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Paging through a listing, at any page size and with or without a delimiter, yields
        /// exactly what a filter over the sorted keys says, each page within its size.
        #[test]
        fn pages_add_up_to_the_reference_listing(
            names in proptest::collection::btree_set("[ab/]{1,5}", 0..40),
            prefix in "[ab/]{0,2}",
            max in 1u32..6,
            rolled in proptest::bool::ANY,
        ) {
            let fake = fake();
            for key in &names {
                fake.put(URL, BUCKET, key, "").unwrap();
            }
            let delimiter = rolled.then_some("/");
            let mut objects = Vec::new();
            let mut common = std::collections::BTreeSet::new();
            for key in names.iter().filter(|k| k.starts_with(&prefix)) {
                match delimiter.and_then(|d| key[prefix.len()..].find(d)) {
                    Some(i) => { common.insert(key[..prefix.len() + i + 1].to_owned()); }
                    None => objects.push(key.clone()),
                }
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let b = open(&fake, keys());
            let (mut got_objects, mut got_common) = (Vec::new(), Vec::new());
            let mut token: Option<String> = None;
            let mut pages = 0;
            loop {
                let page = runtime
                    .block_on(b.list_objects_v2(ListParams {
                        prefix: &prefix,
                        delimiter,
                        continuation: token.as_deref(),
                        max_keys: Some(max),
                    }))
                    .unwrap();
                proptest::prop_assert!(page.objects.len() + page.common_prefixes.len() <= max as usize);
                got_objects.extend(page.objects.into_iter().map(|o| o.key));
                got_common.extend(page.common_prefixes);
                pages += 1;
                proptest::prop_assert!(pages <= 100);
                match page.next_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            proptest::prop_assert_eq!(got_objects, objects);
            proptest::prop_assert_eq!(got_common, common.into_iter().collect::<Vec<_>>());
        }
    }
}
