//! The content of a file open for writing, shared by all its handles, and how it reaches the
//! store. Owns the streaming multipart upload, the switch to a staging file, and the commit; it
//! must not touch the inode table or the caches (the caller does, with the commit's result).
//!
//! Modes:
//! - `Clean`: the content is the object `key` at ETag `base_etag` (nothing local).
//! - `Stream`: new content written from offset 0 in order: full parts are uploaded as they fill
//!   (the multipart upload starts with the first full part), the rest is buffered in memory.
//! - `Staged`: bytes `[base, size)` are in a local staging file; `[0, base)` (if a stream came
//!   first) are parts already uploaded. Non-sequential writes, appends and rewrites of existing
//!   objects, truncation to a non-zero size, and a memory budget too tight to buffer a part all
//!   lead here.
//!
//! Bytes below `base` (already uploaded) cannot be rewritten or read back: EINVAL.

use std::mem;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, MutexGuard, OwnedSemaphorePermit};
use tokio::task::JoinSet;

use super::read::Version;
use super::staging::StagingFile;
use super::{Allocate, Inner};
use crate::budget::Reservation;
use crate::config::MAX_PARTS;
use crate::errno::Errno;
use crate::store::{CompletedPart, ObjectStore, StoreError};

/// The largest object S3 and COS accept.
pub(crate) const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// The largest part S3 and COS accept.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Chunk of an existing object downloaded into a staging file per GET.
const DOWNLOAD_CHUNK: u64 = 8 * 1024 * 1024;
/// GETs of one download running at once.
const DOWNLOAD_PARALLEL: usize = 4;
/// Zeroes of an `fallocate` are written this many at a time.
const ZERO_CHUNK: usize = 1024 * 1024;

/// The write state of one inode, shared by its write handles.
#[derive(Debug)]
pub(crate) struct WriteFile {
    state: Mutex<WriteState>,
    /// `state.size`, readable without waiting for a running write or upload.
    size: AtomicU64,
    mtime: StdMutex<SystemTime>,
}

#[derive(Debug)]
pub(crate) struct WriteState {
    pub(crate) key: String,
    pub(crate) size: u64,
    /// Content differs from the store.
    pub(crate) dirty: bool,
    /// Never committed: the object does not exist (in this mount's view).
    pub(crate) is_new: bool,
    /// Removed from the namespace: writes are discarded, nothing is committed.
    pub(crate) unlinked: bool,
    /// An upload failed: every operation returns EIO.
    pub(crate) failed: bool,
    pub(crate) base_etag: Option<String>,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Clean,
    Stream(Stream),
    Staged(Staged),
}

#[derive(Debug, Default)]
struct Stream {
    mpu: Option<Multipart>,
    buf: BytesMut,
    res: Option<Reservation>,
}

#[derive(Debug)]
struct Staged {
    mpu: Option<Multipart>,
    file: StagingFile,
    base: u64,
}

#[derive(Debug)]
struct Multipart {
    id: String,
    /// Bytes handed to part uploads: `[0, handed)`.
    handed: u64,
    next_no: u32,
    tasks: JoinSet<Result<CompletedPart, StoreError>>,
    done: Vec<CompletedPart>,
}

/// Size of part `number` (1-based) of a streamed upload: `first`, doubled every 1000 parts, so a
/// stream of unknown length can reach the maximum object size within 10000 parts.
pub(crate) fn stream_part_size(first: u64, number: u32) -> u64 {
    let tier = (number.saturating_sub(1) / 1000).min(12);
    first.saturating_mul(1u64 << tier).min(MAX_PART_SIZE)
}

impl Stream {
    fn handed(&self) -> u64 {
        self.mpu.as_ref().map_or(0, |m| m.handed)
    }

    fn next_no(&self) -> u32 {
        self.mpu.as_ref().map_or(1, |m| m.next_no)
    }
}

impl Multipart {
    fn new(id: String) -> Self {
        Multipart {
            id,
            handed: 0,
            next_no: 1,
            tasks: JoinSet::new(),
            done: Vec::new(),
        }
    }

    fn collect(
        &mut self,
        r: Result<Result<CompletedPart, StoreError>, tokio::task::JoinError>,
    ) -> Result<(), StoreError> {
        match r {
            Ok(Ok(part)) => {
                self.done.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StoreError::Unavailable(format!("part upload task: {e}"))),
        }
    }

    /// Collects finished part uploads without waiting; the first failure is returned.
    fn reap(&mut self) -> Result<(), StoreError> {
        while let Some(r) = self.tasks.try_join_next() {
            self.collect(r)?;
        }
        Ok(())
    }

    /// Waits for one running part upload to end; false when none was running.
    async fn reap_one(&mut self) -> Result<bool, StoreError> {
        match self.tasks.join_next().await {
            Some(r) => self.collect(r).map(|()| true),
            None => Ok(false),
        }
    }

    /// Waits for every running part upload.
    async fn drain(&mut self) -> Result<(), StoreError> {
        while let Some(r) = self.tasks.join_next().await {
            self.collect(r)?;
        }
        Ok(())
    }

    /// Starts uploading the next part.
    fn spawn_part<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Inner<S>>,
        key: &str,
        body: Bytes,
        res: Option<Reservation>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Errno> {
        if self.next_no > MAX_PARTS {
            return Err(Errno::EFBIG);
        }
        let number = self.next_no;
        self.next_no += 1;
        self.handed += body.len() as u64;
        let ctx = Arc::clone(ctx);
        let key = key.to_string();
        let id = self.id.clone();
        self.tasks.spawn(async move {
            let _slot = match slot {
                Some(s) => s,
                None => Arc::clone(&ctx.upload_slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Unavailable("upload slots closed".into()))?,
            };
            let etag = ctx.store.upload_part(&key, &id, number, body).await?;
            drop(res);
            Ok(CompletedPart { number, etag })
        });
        Ok(())
    }
}

/// Stops the part uploads and aborts the upload (best effort: an abort that fails leaves
/// invisible parts the bucket's lifecycle rule cleans).
async fn abort<S: ObjectStore>(ctx: &Arc<Inner<S>>, key: &str, mut m: Multipart) {
    m.tasks.abort_all();
    while m.tasks.join_next().await.is_some() {}
    if let Err(e) = ctx.store.abort_multipart(key, &m.id).await {
        tracing::warn!(key, upload_id = %m.id, error = %e, "abort multipart upload failed");
    }
}

impl WriteFile {
    /// The write state of an existing object.
    pub(crate) fn existing(
        key: String,
        size: u64,
        etag: Option<String>,
        mtime: SystemTime,
    ) -> Self {
        Self::with(
            WriteState {
                key,
                size,
                dirty: false,
                is_new: false,
                unlinked: false,
                failed: false,
                base_etag: etag,
                mode: Mode::Clean,
            },
            mtime,
        )
    }

    /// The write state of a file just created: empty, to be committed even if never written.
    pub(crate) fn created(key: String) -> Self {
        Self::with(
            WriteState {
                key,
                size: 0,
                dirty: true,
                is_new: true,
                unlinked: false,
                failed: false,
                base_etag: None,
                mode: Mode::Stream(Stream::default()),
            },
            SystemTime::now(),
        )
    }

    fn with(state: WriteState, mtime: SystemTime) -> Self {
        WriteFile {
            size: AtomicU64::new(state.size),
            state: Mutex::new(state),
            mtime: StdMutex::new(mtime),
        }
    }

    pub(crate) async fn lock(&self) -> MutexGuard<'_, WriteState> {
        self.state.lock().await
    }

    /// Size and modification time as of the last finished operation.
    pub(crate) fn size_and_mtime(&self) -> (u64, SystemTime) {
        let mtime = *self.mtime.lock().unwrap_or_else(|p| p.into_inner());
        (self.size.load(Ordering::SeqCst), mtime)
    }

    /// Publishes `st`'s size (call after every change, with the state still locked).
    pub(crate) fn publish(&self, st: &WriteState, touched: bool) {
        self.size.store(st.size, Ordering::SeqCst);
        if touched {
            *self.mtime.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
        }
    }
}

impl WriteState {
    /// Marks the file failed and drops its content and uploads.
    async fn fail<S: ObjectStore>(&mut self, ctx: &Arc<Inner<S>>) -> Errno {
        self.failed = true;
        self.discard_content(ctx).await;
        Errno::EIO
    }

    async fn discard_content<S: ObjectStore>(&mut self, ctx: &Arc<Inner<S>>) {
        let mpu = match mem::replace(&mut self.mode, Mode::Clean) {
            Mode::Clean => None,
            Mode::Stream(st) => st.mpu,
            Mode::Staged(sg) => sg.mpu,
        };
        if let Some(m) = mpu {
            abort(ctx, &self.key, m).await;
        }
    }

    /// The file was unlinked or replaced: nothing of it will be committed.
    pub(crate) async fn discard<S: ObjectStore>(&mut self, ctx: &Arc<Inner<S>>) {
        self.unlinked = true;
        self.dirty = false;
        self.discard_content(ctx).await;
    }

    pub(crate) async fn write<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Inner<S>>,
        off: u64,
        data: &[u8],
        rdwr: bool,
    ) -> Result<(), Errno> {
        if self.failed {
            return Err(Errno::EIO);
        }
        let end = off
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_OBJECT_SIZE)
            .ok_or(Errno::EFBIG)?;
        if self.unlinked {
            self.size = self.size.max(end);
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let stream = match &self.mode {
            Mode::Clean => self.size == 0 && off == 0 && !rdwr,
            Mode::Stream(st) => {
                let handed = st.handed();
                if off < handed {
                    return Err(Errno::EINVAL);
                }
                off == self.size && !(rdwr && handed == 0)
            }
            Mode::Staged(sg) => {
                if off < sg.base {
                    return Err(Errno::EINVAL);
                }
                false
            }
        };
        if stream {
            if matches!(self.mode, Mode::Clean) {
                self.mode = Mode::Stream(Stream::default());
            }
            self.dirty = true;
            return self.stream_append(ctx, data).await;
        }
        let keep = self.size;
        self.stage(ctx, keep).await?;
        self.dirty = true;
        self.staged_write(off, Bytes::copy_from_slice(data)).await
    }

    async fn stream_append<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Inner<S>>,
        data: &[u8],
    ) -> Result<(), Errno> {
        let mut rest = data;
        while !rest.is_empty() {
            let Mode::Stream(st) = &mut self.mode else {
                return Err(Errno::EIO);
            };
            if let Some(m) = &mut st.mpu
                && m.reap().is_err()
            {
                return Err(self.fail(ctx).await);
            }
            let limit = stream_part_size(ctx.cfg.part_size, st.next_no());
            let room = limit.saturating_sub(st.buf.len() as u64).max(1);
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(rest.len());
            let mut res = ctx.budget.try_acquire_optional(take as u64);
            // Wait for this file's own uploads to free their buffers, one at a time so the
            // others keep the connection pipeline full.
            while res.is_none()
                && let Some(m) = &mut st.mpu
            {
                match m.reap_one().await {
                    Ok(true) => res = ctx.budget.try_acquire_optional(take as u64),
                    Ok(false) => break,
                    Err(_) => return Err(self.fail(ctx).await),
                }
            }
            let Some(res) = res else {
                // The budget is held elsewhere: continue in a staging file, not in memory.
                let keep = self.size;
                self.stage(ctx, keep).await?;
                let off = self.size;
                return self.staged_write(off, Bytes::copy_from_slice(rest)).await;
            };
            let Mode::Stream(st) = &mut self.mode else {
                return Err(Errno::EIO);
            };
            match &mut st.res {
                Some(r) => r.merge(res),
                None => st.res = Some(res),
            }
            let (now, later) = rest.split_at(take);
            if st.buf.is_empty() {
                // The whole part at once: growing it by doubling would copy it again and again.
                st.buf
                    .reserve(usize::try_from(limit).unwrap_or(usize::MAX).max(take));
            }
            st.buf.extend_from_slice(now);
            rest = later;
            self.size += take as u64;
            if st.buf.len() as u64 >= limit {
                if st.mpu.is_none() {
                    match ctx.store.create_multipart(&self.key).await {
                        Ok(id) => st.mpu = Some(Multipart::new(id)),
                        Err(_) => return Err(self.fail(ctx).await),
                    }
                }
                let body = st.buf.split().freeze();
                let res = st.res.take();
                if let Some(m) = &mut st.mpu
                    && let Err(e) = m.spawn_part(ctx, &self.key, body, res, None)
                {
                    self.fail(ctx).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn staged_write(&mut self, off: u64, data: Bytes) -> Result<(), Errno> {
        let Mode::Staged(sg) = &mut self.mode else {
            return Err(Errno::EIO);
        };
        let rel = off.checked_sub(sg.base).ok_or(Errno::EINVAL)?;
        sg.file.write_at(rel, data.clone()).await?;
        self.size = self.size.max(off + data.len() as u64);
        Ok(())
    }

    /// Moves the content to a staging file, keeping its first `keep` bytes of a clean object.
    async fn stage<S: ObjectStore>(&mut self, ctx: &Arc<Inner<S>>, keep: u64) -> Result<(), Errno> {
        if matches!(self.mode, Mode::Staged(_)) {
            return Ok(());
        }
        let mut file = ctx.staging.create().await?;
        match &self.mode {
            Mode::Clean => {
                let keep = keep.min(self.size);
                self.download(ctx, &mut file, keep).await?;
                self.size = keep;
                self.mode = Mode::Staged(Staged {
                    mpu: None,
                    file,
                    base: 0,
                });
            }
            Mode::Stream(st) => {
                if !st.buf.is_empty() {
                    file.write_at(0, Bytes::copy_from_slice(&st.buf)).await?;
                }
                let Mode::Stream(st) = mem::replace(&mut self.mode, Mode::Clean) else {
                    return Err(Errno::EIO);
                };
                let base = st.handed();
                self.mode = Mode::Staged(Staged {
                    mpu: st.mpu,
                    file,
                    base,
                });
            }
            Mode::Staged(_) => {}
        }
        Ok(())
    }

    /// Copies bytes `[0, n)` of the clean object into `file`.
    async fn download<S: ObjectStore>(
        &self,
        ctx: &Arc<Inner<S>>,
        file: &mut StagingFile,
        n: u64,
    ) -> Result<(), Errno> {
        if n == 0 {
            return Ok(());
        }
        if n > ctx.cfg.staging_max_bytes {
            return Err(Errno::EFBIG);
        }
        let mut tasks: JoinSet<(u64, u64, Result<Bytes, StoreError>, Reservation)> = JoinSet::new();
        let mut next = 0;
        loop {
            // Up to DOWNLOAD_PARALLEL GETs; beyond the first only with memory to spare, so
            // waiting for memory never blocks on what these GETs themselves hold.
            while next < n && tasks.len() < DOWNLOAD_PARALLEL {
                let len = DOWNLOAD_CHUNK.min(n - next);
                let res = if tasks.is_empty() {
                    ctx.budget.acquire(len).await
                } else {
                    match ctx.budget.try_acquire_optional(len) {
                        Some(r) => r,
                        None => break,
                    }
                };
                let (ctx, key, etag) = (Arc::clone(ctx), self.key.clone(), self.base_etag.clone());
                let off = next;
                tasks.spawn(async move {
                    let r = ctx
                        .store
                        .get_range(&key, off..off + len, etag.as_deref())
                        .await;
                    (off, len, r, res)
                });
                next += len;
            }
            let Some(done) = tasks.join_next().await else {
                return Ok(());
            };
            let (off, len, data, _res) = done.map_err(|_| Errno::EIO)?;
            let data = data.map_err(|e| match e {
                StoreError::NotFound(_) => Errno::ESTALE,
                other => Errno::from(other),
            })?;
            if data.len() as u64 != len {
                return Err(Errno::ESTALE);
            }
            file.write_at(off, data).await?;
        }
    }

    pub(crate) async fn truncate<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Inner<S>>,
        n: u64,
    ) -> Result<(), Errno> {
        if self.failed {
            return Err(Errno::EIO);
        }
        if n > MAX_OBJECT_SIZE {
            return Err(Errno::EFBIG);
        }
        if self.unlinked {
            self.size = n;
            return Ok(());
        }
        if n == 0 {
            self.discard_content(ctx).await;
            self.mode = Mode::Stream(Stream::default());
            self.size = 0;
            self.dirty = true;
            return Ok(());
        }
        if n == self.size {
            return Ok(());
        }
        match &self.mode {
            Mode::Stream(st) if n < st.handed() => return Err(Errno::EINVAL),
            Mode::Staged(sg) if n < sg.base => return Err(Errno::EINVAL),
            _ => {}
        }
        self.stage(ctx, n).await?;
        let Mode::Staged(sg) = &mut self.mode else {
            return Err(Errno::EIO);
        };
        sg.file.set_len(n - sg.base).await?;
        self.size = n;
        self.dirty = true;
        Ok(())
    }

    /// `fallocate` of `[off, end)`: zeroes what `how` zeroes inside the file, then grows the
    /// file to `end` unless told to keep its size.
    pub(crate) async fn allocate<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Inner<S>>,
        off: u64,
        end: u64,
        how: Allocate,
    ) -> Result<(), Errno> {
        if self.failed {
            return Err(Errno::EIO);
        }
        if end > MAX_OBJECT_SIZE {
            return Err(Errno::EFBIG);
        }
        let (zero, keep_size) = match how {
            Allocate::Reserve { keep_size } => (false, keep_size),
            Allocate::PunchHole => (true, true),
            Allocate::ZeroRange { keep_size } => (true, keep_size),
        };
        let zero_to = end.min(self.size);
        if zero && off < zero_to {
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut at = off;
            while at < zero_to {
                let n = usize::try_from(zero_to - at).map_or(ZERO_CHUNK, |n| n.min(ZERO_CHUNK));
                // As a write through a read-write handle: into the staging file.
                self.write(ctx, at, &zeros[..n], true).await?;
                at += n as u64;
            }
        }
        if !keep_size && end > self.size {
            self.truncate(ctx, end).await?;
        }
        Ok(())
    }

    /// Bytes `[off, off+len)` of pending content; `None` when the content is the clean object
    /// (read it from the store at [`WriteState::version`]).
    pub(crate) async fn read_local(&self, off: u64, len: u64) -> Result<Option<Bytes>, Errno> {
        let end = off.saturating_add(len).min(self.size);
        match &self.mode {
            Mode::Clean if self.is_new || self.unlinked => Ok(Some(Bytes::new())),
            Mode::Clean => Ok(None),
            _ if off >= end => Ok(Some(Bytes::new())),
            Mode::Stream(st) => {
                let base = st.handed();
                let (Some(from), Some(to)) = (off.checked_sub(base), end.checked_sub(base)) else {
                    return Err(Errno::EINVAL);
                };
                let from = usize::try_from(from).map_err(|_| Errno::EINVAL)?;
                let to = usize::try_from(to).map_err(|_| Errno::EINVAL)?;
                Ok(Some(Bytes::copy_from_slice(
                    st.buf.get(from..to).ok_or(Errno::EIO)?,
                )))
            }
            Mode::Staged(sg) => {
                let rel = off.checked_sub(sg.base).ok_or(Errno::EINVAL)?;
                Ok(Some(sg.file.read_at(rel, end - off).await?))
            }
        }
    }

    /// The object version a clean state stands for: key, ETag and size.
    pub(crate) fn version(&self) -> Option<Version> {
        match (&self.mode, &self.base_etag) {
            (Mode::Clean, Some(etag)) if !self.is_new && !self.unlinked => Some(Version {
                key: self.key.clone(),
                etag: etag.clone(),
                size: self.size,
            }),
            _ => None,
        }
    }

    /// Uploads pending content. `Ok(Some(etag))` when an object was written, `Ok(None)` when
    /// there was nothing to do. On failure the upload is aborted, nothing becomes visible, the
    /// state is marked failed and EIO is returned.
    pub(crate) async fn commit<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Inner<S>>,
    ) -> Result<Option<String>, Errno> {
        if self.failed {
            return Err(Errno::EIO);
        }
        if self.unlinked || !self.dirty {
            return Ok(None);
        }
        let key = self.key.clone();
        let result = match mem::replace(&mut self.mode, Mode::Clean) {
            Mode::Clean => Ok(None),
            Mode::Stream(st) => commit_stream(ctx, &key, st).await.map(Some),
            Mode::Staged(sg) => commit_staged(ctx, &key, sg, self.size).await.map(Some),
        };
        match result {
            Ok(etag) => {
                self.dirty = false;
                if etag.is_some() {
                    self.is_new = false;
                    self.base_etag = etag.clone();
                }
                Ok(etag)
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "upload failed");
                self.failed = true;
                Err(Errno::EIO)
            }
        }
    }
}

async fn commit_stream<S: ObjectStore>(
    ctx: &Arc<Inner<S>>,
    key: &str,
    st: Stream,
) -> Result<String, StoreError> {
    let Stream { mpu, buf, res } = st;
    let Some(mut m) = mpu else {
        let etag = ctx.store.put(key, buf.freeze()).await;
        drop(res);
        return etag;
    };
    if !buf.is_empty()
        && let Err(e) = m.spawn_part(ctx, key, buf.freeze(), res, None)
    {
        abort(ctx, key, m).await;
        return Err(StoreError::Invalid(format!("{key}: {e}")));
    }
    finish(ctx, key, m).await
}

async fn finish<S: ObjectStore>(
    ctx: &Arc<Inner<S>>,
    key: &str,
    mut m: Multipart,
) -> Result<String, StoreError> {
    if let Err(e) = m.drain().await {
        abort(ctx, key, m).await;
        return Err(e);
    }
    m.done.sort_by_key(|p| p.number);
    match ctx.store.complete_multipart(key, &m.id, &m.done).await {
        Ok(etag) => Ok(etag),
        Err(e) => {
            abort(ctx, key, m).await;
            Err(e)
        }
    }
}

async fn commit_staged<S: ObjectStore>(
    ctx: &Arc<Inner<S>>,
    key: &str,
    sg: Staged,
    size: u64,
) -> Result<String, StoreError> {
    let Staged { mpu, file, base } = sg;
    let total = size.saturating_sub(base);
    let local = |e: Errno| StoreError::Invalid(format!("{key}: staging file: {e}"));
    if mpu.is_none() && total < ctx.cfg.part_size {
        let _res = ctx.budget.acquire(total).await;
        let body = file.read_at(0, total).await.map_err(local)?;
        return ctx.store.put(key, body).await;
    }
    let mut m = match mpu {
        Some(m) => m,
        None => Multipart::new(ctx.store.create_multipart(key).await?),
    };
    let parts_left = u64::from(MAX_PARTS.saturating_sub(m.next_no.saturating_sub(1)));
    if total > 0 && parts_left == 0 {
        abort(ctx, key, m).await;
        return Err(StoreError::Invalid(format!(
            "{key}: more than {MAX_PARTS} parts"
        )));
    }
    let part = stream_part_size(ctx.cfg.part_size, m.next_no)
        .max(total.div_ceil(parts_left.max(1)))
        .min(MAX_PART_SIZE);
    let mut off = 0;
    while off < total {
        let n = part.min(total - off);
        let step = async {
            let slot = Arc::clone(&ctx.upload_slots)
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Unavailable("upload slots closed".into()))?;
            let res = ctx.budget.acquire(n).await;
            let body = file.read_at(off, n).await.map_err(local)?;
            m.reap()?;
            m.spawn_part(ctx, key, body, Some(res), Some(slot))
                .map_err(local)
        };
        if let Err(e) = step.await {
            abort(ctx, key, m).await;
            return Err(e);
        }
        off += n;
    }
    finish(ctx, key, m).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_parts_grow_to_reach_the_largest_object() {
        let first = 8 * 1024 * 1024;
        assert_eq!(stream_part_size(first, 1), first);
        assert_eq!(stream_part_size(first, 1000), first);
        assert_eq!(stream_part_size(first, 1001), 2 * first);
        let total: u64 = (1..=MAX_PARTS).map(|n| stream_part_size(first, n)).sum();
        assert!(total >= MAX_OBJECT_SIZE, "{total}");
        assert_eq!(stream_part_size(u64::MAX, 9999), MAX_PART_SIZE);
    }
}
