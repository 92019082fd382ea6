//! `MemStore`: an in-memory [`ObjectStore`] with S3 semantics, request and byte counters, latency
//! and fault injection, for tests. It must behave like a real server where the file system can
//! tell (ETags, invisible multipart uploads, paginated delimiter listings), nothing more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

use crate::store::{CompletedPart, ListPage, MultipartUpload, ObjectMeta, ObjectStore, StoreError};

/// One kind of store request, for counters, latency and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    List,
    Head,
    Get,
    Put,
    CreateMultipart,
    UploadPart,
    CompleteMultipart,
    AbortMultipart,
    ListMultipartUploads,
    Copy,
    Delete,
}

/// Counters of the requests a store served (failed ones included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStats {
    pub requests: BTreeMap<Op, u64>,
    /// Body bytes returned by GETs.
    pub bytes_read: u64,
    /// Body bytes received by PUTs and part uploads.
    pub bytes_written: u64,
    /// The most GETs that were running at once.
    pub max_concurrent_gets: u64,
    /// The ranges GETs asked for, in order.
    pub get_ranges: Vec<Range<u64>>,
}

impl MemStats {
    pub fn count(&self, op: Op) -> u64 {
        self.requests.get(&op).copied().unwrap_or(0)
    }
}

type FaultPredicate = Box<dyn Fn(Op, &str) -> bool + Send + Sync>;

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    etag: String,
    last_modified: SystemTime,
}

#[derive(Debug)]
struct Upload {
    key: String,
    initiated: SystemTime,
    parts: BTreeMap<u32, (String, Bytes)>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Object>,
    uploads: HashMap<String, Upload>,
    serial: u64,
    stats: MemStats,
    running_gets: u64,
    /// Per operation: calls to let through, then calls to fail.
    fail_after: HashMap<Op, (u64, u64)>,
    /// Per operation: the error its injected failures return (else `Unavailable`).
    fail_with: HashMap<Op, StoreError>,
    predicate: Option<FaultPredicate>,
    /// Operations whose calls take effect and then never answer.
    stalled: HashSet<Op>,
    /// The time stamped on uploads started; `None`: the real time.
    clock: Option<SystemTime>,
    latency: HashMap<Op, Duration>,
    max_page: u32,
    min_part_size: u64,
    read_unit: Option<u64>,
}

/// The in-memory store. Clones share the same objects.
#[derive(Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MemStore")
            .field("objects", &s.objects.len())
            .field("uploads", &s.uploads.len())
            .finish()
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Real servers refuse parts under 5 MiB except the last.
pub const S3_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl MemStore {
    /// An empty store with S3's limits: pages of at most 1000 keys, parts of at least 5 MiB.
    pub fn new() -> Self {
        MemStore {
            state: Arc::new(Mutex::new(State {
                max_page: 1000,
                min_part_size: S3_MIN_PART_SIZE,
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to a test, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Caps the keys of one list page below 1000 (forces pagination in tests).
    pub fn set_max_page(&self, n: u32) {
        self.lock().max_page = n.clamp(1, 1000);
    }

    /// What `read_unit` answers, to stand in for a block cache.
    pub fn set_read_unit(&self, unit: Option<u64>) {
        self.lock().read_unit = unit;
    }

    /// Smallest part (but the last) that `complete_multipart` accepts.
    pub fn set_min_part_size(&self, bytes: u64) {
        self.lock().min_part_size = bytes;
    }

    /// Every call of `op` waits this long first.
    pub fn set_latency(&self, op: Op, d: Duration) {
        self.lock().latency.insert(op, d);
    }

    /// The next `n` calls of `op` fail with `Unavailable`.
    pub fn fail_next(&self, op: Op, n: u64) {
        self.fail_after(op, 0, n);
    }

    /// The next `skip` calls of `op` succeed, then `n` fail with `Unavailable`.
    pub fn fail_after(&self, op: Op, skip: u64, n: u64) {
        let mut s = self.lock();
        s.fail_after.insert(op, (skip, n));
        s.fail_with.remove(&op);
    }

    /// The next `n` calls of `op` fail with `error` (such as the `Forbidden` of a 403).
    pub fn fail_next_with(&self, op: Op, n: u64, error: StoreError) {
        let mut s = self.lock();
        s.fail_after.insert(op, (0, n));
        s.fail_with.insert(op, error);
    }

    /// Calls for which `pred(op, key)` is true fail with `Unavailable`, until cleared.
    pub fn fail_when(&self, pred: impl Fn(Op, &str) -> bool + Send + Sync + 'static) {
        self.lock().predicate = Some(Box::new(pred));
    }

    /// Calls of `op` take effect and then never answer, until cleared: an answer lost on the
    /// way, or a client killed while it waits. Only `CreateMultipart` honours it.
    pub fn stall_answers(&self, op: Op) {
        self.lock().stalled.insert(op);
    }

    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.fail_after.clear();
        s.fail_with.clear();
        s.predicate = None;
        s.stalled.clear();
    }

    /// The time the store stamps on the uploads it starts from now on (their `initiated`);
    /// `None`: the real time.
    pub fn set_clock(&self, now: Option<SystemTime>) {
        self.lock().clock = now;
    }

    pub fn stats(&self) -> MemStats {
        self.lock().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.lock().stats = MemStats::default();
    }

    /// Puts an object directly (setting up a test), without counting a request.
    pub fn insert(&self, key: &str, data: impl Into<Bytes>) {
        let mut s = self.lock();
        let etag = next_etag(&mut s, "");
        s.objects.insert(
            key.to_string(),
            Object {
                data: data.into(),
                etag,
                last_modified: SystemTime::now(),
            },
        );
    }

    /// An object's bytes, without counting a request.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).map(|o| o.data.clone())
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Counts the call, applies latency and injected faults.
    async fn enter(&self, op: Op, key: &str) -> Result<(), StoreError> {
        let delay = {
            let mut s = self.lock();
            *s.stats.requests.entry(op).or_insert(0) += 1;
            s.latency.get(&op).copied()
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut s = self.lock();
        let mut fail = s.predicate.as_ref().is_some_and(|p| p(op, key));
        let mut chosen = None;
        if let Some((skip, n)) = s.fail_after.get_mut(&op) {
            if *skip > 0 {
                *skip -= 1;
            } else if *n > 0 {
                *n -= 1;
                fail = true;
                chosen = s.fail_with.get(&op).cloned();
            }
        }
        if fail {
            return Err(chosen.unwrap_or_else(|| {
                StoreError::Unavailable(format!("injected {op:?} failure: {key}"))
            }));
        }
        Ok(())
    }

    /// Bytes `range` of the object as a slice of it (no copy), counted as a GET.
    async fn slice_of(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        {
            let mut s = self.lock();
            s.running_gets += 1;
            let running = s.running_gets;
            s.stats.max_concurrent_gets = s.stats.max_concurrent_gets.max(running);
            s.stats.get_ranges.push(range.clone());
        }
        let _running = GetGuard(self);
        self.enter(Op::Get, key).await?;
        let mut s = self.lock();
        let obj = s
            .objects
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        if if_match.is_some_and(|e| e != obj.etag) {
            return Err(StoreError::NotFound(format!("{key} (etag changed)")));
        }
        let size = obj.data.len() as u64;
        if range.start > range.end || (range.start >= size && size > 0) {
            return Err(StoreError::Invalid(format!(
                "{key}: range {range:?} of {size} bytes"
            )));
        }
        let start = usize::try_from(range.start.min(size)).unwrap_or(usize::MAX);
        let end = usize::try_from(range.end.min(size)).unwrap_or(usize::MAX);
        let data = obj.data.slice(start..end);
        s.stats.bytes_read += data.len() as u64;
        Ok(data)
    }
}

fn next_etag(s: &mut State, suffix: &str) -> String {
    s.serial += 1;
    format!("{:032x}{suffix}", s.serial)
}

/// `data`, which starts at `start` of its object, cut where the object's multiples of `unit` fall.
fn pieces(data: &Bytes, start: u64, unit: u64) -> Vec<Bytes> {
    let unit = unit.max(1);
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let offset = start + at as u64;
        let room = unit - offset % unit;
        let to = data
            .len()
            .min(at.saturating_add(usize::try_from(room).unwrap_or(usize::MAX)));
        out.push(data.slice(at..to));
        at = to;
    }
    out
}

fn meta(key: &str, o: &Object) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: o.data.len() as u64,
        etag: o.etag.clone(),
        last_modified: o.last_modified,
    }
}

/// Decrements the running-GET count when a GET ends, however it ends.
struct GetGuard<'a>(&'a MemStore);

impl Drop for GetGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.running_gets = s.running_gets.saturating_sub(1);
    }
}

impl ObjectStore for MemStore {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage, StoreError> {
        self.enter(Op::List, prefix).await?;
        let s = self.lock();
        let limit = max_keys.unwrap_or(1000).clamp(1, s.max_page) as usize;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut page = ListPage::default();
        let mut emitted = 0usize;
        // The last key ("k:") or common prefix ("p:") of this page: the next page's token.
        let mut last: Option<String> = None;
        let (resume_after, skip_under) = match continuation {
            Some(t) => match (t.strip_prefix("k:"), t.strip_prefix("p:")) {
                (Some(k), _) => (Some(k), None),
                (_, Some(p)) => (Some(p), Some(p)),
                _ => return Err(StoreError::Invalid(format!("bad continuation token {t:?}"))),
            },
            None => (None, None),
        };
        let start = resume_after.unwrap_or(prefix).max(prefix);
        for (key, obj) in s
            .objects
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
        {
            if !key.starts_with(prefix) {
                break;
            }
            if resume_after.is_some_and(|r| key.as_str() <= r)
                || skip_under.is_some_and(|p| key.starts_with(p))
            {
                continue;
            }
            let rest = &key[prefix.len()..];
            let cp = delimiter
                .and_then(|d| rest.find(d).map(|i| i + d.len()))
                .map(|end| &key[..prefix.len() + end]);
            if let Some(cp) = cp
                && page.common_prefixes.last().is_some_and(|l| l == cp)
            {
                continue;
            }
            if emitted == limit {
                page.next_token = last;
                break;
            }
            emitted += 1;
            match cp {
                Some(cp) => {
                    page.common_prefixes.push(cp.to_string());
                    last = Some(format!("p:{cp}"));
                }
                None => {
                    page.objects.push(meta(key, obj));
                    last = Some(format!("k:{key}"));
                }
            }
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.enter(Op::Head, key).await?;
        Ok(self.lock().objects.get(key).map(|o| meta(key, o)))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        // A block cache holds a range in blocks: one that spans two is stitched, a copy.
        Ok(crate::store::concat(
            self.get_range_pieces(key, range, if_match).await?,
        ))
    }

    /// With a read unit, slices of the object cut at the unit's multiples, as a block cache
    /// answers; else the range as one piece.
    async fn get_range_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        let start = range.start;
        let data = self.slice_of(key, range, if_match).await?;
        Ok(match self.lock().read_unit {
            Some(unit) => pieces(&data, start, unit),
            None => vec![data],
        })
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        self.enter(Op::Put, key).await?;
        let mut s = self.lock();
        s.stats.bytes_written += body.len() as u64;
        let etag = next_etag(&mut s, "");
        s.objects.insert(
            key.to_string(),
            Object {
                data: body,
                etag: etag.clone(),
                last_modified: SystemTime::now(),
            },
        );
        Ok(etag)
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.enter(Op::CreateMultipart, key).await?;
        {
            let mut s = self.lock();
            s.serial += 1;
            let id = format!("upload-{}", s.serial);
            let initiated = s.clock.unwrap_or_else(SystemTime::now);
            s.uploads.insert(
                id.clone(),
                Upload {
                    key: key.to_string(),
                    initiated,
                    parts: BTreeMap::new(),
                },
            );
            if !s.stalled.contains(&Op::CreateMultipart) {
                return Ok(id);
            }
        }
        std::future::pending().await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        self.enter(Op::UploadPart, key).await?;
        if !(1..=10_000).contains(&number) {
            return Err(StoreError::Invalid(format!("{key}: part number {number}")));
        }
        let mut s = self.lock();
        s.stats.bytes_written += body.len() as u64;
        let etag = next_etag(&mut s, "");
        let upload = s
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| StoreError::NotFound(format!("{key}: upload {upload_id}")))?;
        upload.parts.insert(number, (etag.clone(), body));
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<String, StoreError> {
        self.enter(Op::CompleteMultipart, key).await?;
        let mut s = self.lock();
        let min = s.min_part_size;
        let upload = s
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| StoreError::NotFound(format!("{key}: upload {upload_id}")))?;
        if parts.is_empty() {
            return Err(StoreError::Invalid(format!("{key}: no parts")));
        }
        let mut data = BytesMut::new();
        let mut previous = 0;
        for (i, part) in parts.iter().enumerate() {
            let (etag, body) = upload
                .parts
                .get(&part.number)
                .filter(|(etag, _)| *etag == part.etag)
                .ok_or_else(|| {
                    StoreError::Invalid(format!("{key}: part {} unknown", part.number))
                })?;
            if part.number <= previous {
                return Err(StoreError::Invalid(format!("{key}: parts out of order")));
            }
            if i + 1 < parts.len() && (body.len() as u64) < min {
                return Err(StoreError::Invalid(format!(
                    "{key}: part {} is {} bytes, under {min}",
                    part.number,
                    body.len()
                )));
            }
            let _ = etag;
            previous = part.number;
            data.extend_from_slice(body);
        }
        s.uploads.remove(upload_id);
        let etag = next_etag(&mut s, &format!("-{}", parts.len()));
        s.objects.insert(
            key.to_string(),
            Object {
                data: data.freeze(),
                etag: etag.clone(),
                last_modified: SystemTime::now(),
            },
        );
        Ok(etag)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.enter(Op::AbortMultipart, key).await?;
        let mut s = self.lock();
        match s.uploads.get(upload_id) {
            Some(u) if u.key == key => {
                s.uploads.remove(upload_id);
                Ok(())
            }
            _ => Err(StoreError::NotFound(format!("{key}: upload {upload_id}"))),
        }
    }

    fn call_time_limit(&self) -> Duration {
        crate::store::DEFAULT_CALL_TIME_LIMIT
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, StoreError> {
        self.enter(Op::ListMultipartUploads, prefix).await?;
        let s = self.lock();
        let mut uploads: Vec<MultipartUpload> = s
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| MultipartUpload {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: u.initiated,
            })
            .collect();
        uploads.sort_by(|a, b| {
            (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id))
        });
        Ok(uploads)
    }

    async fn copy(&self, from: &str, to: &str) -> Result<String, StoreError> {
        self.enter(Op::Copy, from).await?;
        let mut s = self.lock();
        let data = s
            .objects
            .get(from)
            .map(|o| o.data.clone())
            .ok_or_else(|| StoreError::NotFound(from.to_string()))?;
        let etag = next_etag(&mut s, "");
        s.objects.insert(
            to.to_string(),
            Object {
                data,
                etag: etag.clone(),
                last_modified: SystemTime::now(),
            },
        );
        Ok(etag)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.enter(Op::Delete, key).await?;
        self.lock().objects.remove(key);
        Ok(())
    }

    fn read_unit(&self) -> Option<u64> {
        self.lock().read_unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn list_all(
        s: &MemStore,
        prefix: &str,
        delim: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let mut token = None;
        let (mut keys, mut cps) = (vec![], vec![]);
        loop {
            let page = s.list(prefix, delim, token.as_deref(), None).await.unwrap();
            keys.extend(page.objects.into_iter().map(|o| o.key));
            cps.extend(page.common_prefixes);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return (keys, cps),
            }
        }
    }

    #[tokio::test]
    async fn listing_with_delimiter_paginates_without_duplicates() {
        let s = MemStore::new();
        for k in [
            "a", "a-b", "a/1", "a/2", "a/b/3", "b/1", "b/2", "c", "d/e/f", "z",
        ] {
            s.insert(k, "x");
        }
        for page in [1, 2, 3, 1000] {
            s.set_max_page(page);
            let (keys, cps) = list_all(&s, "", Some("/")).await;
            assert_eq!(keys, ["a", "a-b", "c", "z"], "page {page}");
            assert_eq!(cps, ["a/", "b/", "d/"], "page {page}");
            let (keys, cps) = list_all(&s, "a/", Some("/")).await;
            assert_eq!(keys, ["a/1", "a/2"], "page {page}");
            assert_eq!(cps, ["a/b/"], "page {page}");
            let (keys, cps) = list_all(&s, "", None).await;
            assert_eq!(keys.len(), 10);
            assert!(cps.is_empty());
        }
        let page = s.list("", Some("/"), None, Some(2)).await.unwrap();
        assert_eq!(page.objects.len() + page.common_prefixes.len(), 2);
        assert!(page.next_token.is_some());
    }

    #[tokio::test]
    async fn multipart_is_invisible_until_complete_and_etags_change() {
        let s = MemStore::new();
        s.set_min_part_size(3);
        let id = s.create_multipart("k").await.unwrap();
        let e1 = s
            .upload_part("k", &id, 1, Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(s.head("k").await.unwrap(), None);
        let e2 = s
            .upload_part("k", &id, 2, Bytes::from_static(b"d"))
            .await
            .unwrap();
        let parts = [
            CompletedPart {
                number: 1,
                etag: e1.clone(),
            },
            CompletedPart {
                number: 2,
                etag: e2,
            },
        ];
        let etag = s.complete_multipart("k", &id, &parts).await.unwrap();
        assert_eq!(s.object("k").unwrap(), "abcd");
        let put = s.put("k", Bytes::from_static(b"abcd")).await.unwrap();
        assert_ne!(etag, put, "every write changes the ETag");
        assert_eq!(s.pending_uploads(), 0);
        let short = s.create_multipart("k").await.unwrap();
        let p1 = s
            .upload_part("k", &short, 1, Bytes::from_static(b"a"))
            .await
            .unwrap();
        let p2 = s
            .upload_part("k", &short, 2, Bytes::from_static(b"b"))
            .await
            .unwrap();
        let too_small = [
            CompletedPart {
                number: 1,
                etag: p1,
            },
            CompletedPart {
                number: 2,
                etag: p2,
            },
        ];
        assert!(matches!(
            s.complete_multipart("k", &short, &too_small).await,
            Err(StoreError::Invalid(_))
        ));
        s.abort_multipart("k", &short).await.unwrap();
        assert_eq!(s.pending_uploads(), 0);
    }

    #[tokio::test]
    async fn ranges_if_match_and_faults() {
        let s = MemStore::new();
        s.insert("k", "hello world");
        let etag = s.head("k").await.unwrap().unwrap().etag;
        assert_eq!(
            s.get_range("k", 6..100, Some(&etag)).await.unwrap(),
            "world"
        );
        assert!(matches!(
            s.get_range("k", 0..1, Some("other")).await,
            Err(StoreError::NotFound(_))
        ));
        s.fail_after(Op::Get, 1, 1);
        assert!(s.get_range("k", 0..1, None).await.is_ok());
        assert!(s.get_range("k", 0..1, None).await.is_err());
        assert!(s.get_range("k", 0..1, None).await.is_ok());
        s.fail_when(|op, key| op == Op::Delete && key == "k");
        assert!(s.delete("k").await.is_err());
        s.clear_faults();
        s.delete("k").await.unwrap();
        s.delete("k").await.unwrap();
        let st = s.stats();
        assert_eq!(st.count(Op::Get), 5);
        assert_eq!(st.count(Op::Delete), 3);
        assert_eq!(st.bytes_read, 7);
    }

    #[tokio::test]
    async fn uploads_are_listed_with_their_start_and_a_stalled_create_takes_effect() {
        let s = MemStore::new();
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        s.set_clock(Some(then));
        let old = s.create_multipart("a/k").await.unwrap();
        s.set_clock(None);
        let before = SystemTime::now();
        let new = s.create_multipart("a/k").await.unwrap();
        s.create_multipart("b").await.unwrap();
        let listed = s.list_multipart_uploads("a/").await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].upload_id.as_str(), listed[0].initiated),
            (old.as_str(), then)
        );
        assert_eq!(listed[1].upload_id, new);
        assert!(listed[1].initiated >= before);
        assert_eq!(s.stats().count(Op::ListMultipartUploads), 1);

        s.stall_answers(Op::CreateMultipart);
        let stalled = tokio::time::timeout(Duration::from_millis(50), s.create_multipart("c"));
        assert!(stalled.await.is_err(), "no answer");
        assert_eq!(s.list_multipart_uploads("c").await.unwrap().len(), 1);
        s.clear_faults();
        s.create_multipart("c").await.unwrap();
    }

    #[tokio::test]
    async fn a_chosen_error_is_injected_until_plain_failures_are_asked_for() {
        let s = MemStore::new();
        s.insert("k", "v");
        let denied = StoreError::Forbidden("GetObject b/k: HTTP 403 AccessDenied".into());
        s.fail_next_with(Op::Get, 1, denied.clone());
        assert_eq!(s.get_range("k", 0..1, None).await, Err(denied));
        assert_eq!(s.get_range("k", 0..1, None).await.unwrap(), "v");
        s.fail_next(Op::Get, 1);
        assert!(matches!(
            s.get_range("k", 0..1, None).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
