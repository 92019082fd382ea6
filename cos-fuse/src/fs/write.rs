//! The content of a file open for writing, shared by all its handles, and how it reaches the
//! store. Owns the write modes, the switch to a staging file, and when to upload and commit (the
//! uploads themselves are `fs/upload.rs`'s); it must not touch the inode table or the caches
//! (the caller does, with the commit's result).
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
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinSet;

use super::context::Context;
use super::error::FsError;
use super::read::Version;
use super::staging::StagingFile;
use super::types::Allocate;
use super::upload::{
    MAX_OBJECT_SIZE, Multipart, abort, commit_staged, commit_stream, stream_part_size, upload_error,
};
use crate::budget::Reservation;
use crate::errno::Errno;
use crate::store::{ObjectStore, StoreError};

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

impl Stream {
    fn handed(&self) -> u64 {
        self.mpu.as_ref().map_or(0, |m| m.handed)
    }

    fn next_no(&self) -> u32 {
        self.mpu.as_ref().map_or(1, |m| m.next_no)
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
    /// Marks the file failed and drops its content and uploads; returns `error`.
    async fn fail<S: ObjectStore>(&mut self, ctx: &Arc<Context<S>>, error: FsError) -> FsError {
        self.failed = true;
        self.discard_content(ctx).await;
        error
    }

    /// What every operation of a failed file returns (the failure itself was returned once).
    pub(crate) fn failed_before(&self) -> FsError {
        FsError::new(Errno::EIO, "an earlier upload of this file failed").with_key(&self.key)
    }

    /// A rewrite of bytes below `base`, which were uploaded already.
    fn uploaded_already(&self, base: u64) -> FsError {
        FsError::new(
            Errno::EINVAL,
            format!("the bytes before offset {base} are uploaded already"),
        )
        .with_key(&self.key)
    }

    async fn discard_content<S: ObjectStore>(&mut self, ctx: &Arc<Context<S>>) {
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
    pub(crate) async fn discard<S: ObjectStore>(&mut self, ctx: &Arc<Context<S>>) {
        self.unlinked = true;
        self.dirty = false;
        self.discard_content(ctx).await;
    }

    pub(crate) async fn write<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
        off: u64,
        data: &[u8],
        rdwr: bool,
    ) -> Result<(), FsError> {
        if self.failed {
            return Err(self.failed_before());
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
                    return Err(self.uploaded_already(handed));
                }
                off == self.size && !(rdwr && handed == 0)
            }
            Mode::Staged(sg) => {
                if off < sg.base {
                    return Err(self.uploaded_already(sg.base));
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
        ctx: &Arc<Context<S>>,
        data: &[u8],
    ) -> Result<(), FsError> {
        let mut rest = data;
        while !rest.is_empty() {
            let Mode::Stream(st) = &mut self.mode else {
                return Err(Errno::EIO.into());
            };
            if let Some(m) = &mut st.mpu
                && let Err(e) = m.reap()
            {
                let e = upload_error(&self.key, e);
                return Err(self.fail(ctx, e).await);
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
                    Err(e) => {
                        let e = upload_error(&self.key, e);
                        return Err(self.fail(ctx, e).await);
                    }
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
                return Err(Errno::EIO.into());
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
                    match Multipart::create(ctx, &self.key).await {
                        Ok(m) => st.mpu = Some(m),
                        Err(e) => return Err(self.fail(ctx, e).await),
                    }
                }
                let body = st.buf.split().freeze();
                let res = st.res.take();
                if let Some(m) = &mut st.mpu
                    && let Err(e) = m.spawn_part(ctx, &self.key, body, res, None)
                {
                    return Err(self.fail(ctx, e.with_key(&self.key)).await);
                }
            }
        }
        Ok(())
    }

    async fn staged_write(&mut self, off: u64, data: Bytes) -> Result<(), FsError> {
        let Mode::Staged(sg) = &mut self.mode else {
            return Err(Errno::EIO.into());
        };
        let rel = off.checked_sub(sg.base).ok_or(Errno::EINVAL)?;
        sg.file.write_at(rel, data.clone()).await?;
        self.size = self.size.max(off + data.len() as u64);
        Ok(())
    }

    /// Moves the content to a staging file, keeping its first `keep` bytes of a clean object.
    async fn stage<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
        keep: u64,
    ) -> Result<(), FsError> {
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
                    return Err(Errno::EIO.into());
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
        ctx: &Arc<Context<S>>,
        file: &mut StagingFile,
        n: u64,
    ) -> Result<(), FsError> {
        if n == 0 {
            return Ok(());
        }
        if n > ctx.cfg.staging_max_bytes {
            return Err(FsError::new(
                Errno::EFBIG,
                format!("rewriting an object of {n} bytes, over staging_max_bytes"),
            )
            .with_key(&self.key));
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
            let what = "downloading the object to rewrite it";
            let (off, len, data, _res) =
                done.map_err(|e| FsError::new(Errno::EIO, what).caused_by(e))?;
            let data = data.map_err(|e| {
                // The object this file was opened on is gone or was replaced.
                let stale = matches!(e, StoreError::NotFound(_));
                let error = FsError::store(&self.key, e).context(what);
                if stale {
                    error.with_errno(Errno::ESTALE)
                } else {
                    error
                }
            })?;
            if data.len() as u64 != len {
                return Err(FsError::new(Errno::ESTALE, what)
                    .context("the object changed")
                    .with_key(&self.key));
            }
            file.write_at(off, data).await?;
        }
    }

    pub(crate) async fn truncate<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
        n: u64,
    ) -> Result<(), FsError> {
        if self.failed {
            return Err(self.failed_before());
        }
        if n > MAX_OBJECT_SIZE {
            return Err(Errno::EFBIG.into());
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
            Mode::Stream(st) if n < st.handed() => return Err(self.uploaded_already(st.handed())),
            Mode::Staged(sg) if n < sg.base => return Err(self.uploaded_already(sg.base)),
            _ => {}
        }
        self.stage(ctx, n).await?;
        let Mode::Staged(sg) = &mut self.mode else {
            return Err(Errno::EIO.into());
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
        ctx: &Arc<Context<S>>,
        off: u64,
        end: u64,
        how: Allocate,
    ) -> Result<(), FsError> {
        if self.failed {
            return Err(self.failed_before());
        }
        if end > MAX_OBJECT_SIZE {
            return Err(Errno::EFBIG.into());
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
    pub(crate) async fn read_local(&self, off: u64, len: u64) -> Result<Option<Bytes>, FsError> {
        let end = off.saturating_add(len).min(self.size);
        match &self.mode {
            Mode::Clean if self.is_new || self.unlinked => Ok(Some(Bytes::new())),
            Mode::Clean => Ok(None),
            _ if off >= end => Ok(Some(Bytes::new())),
            Mode::Stream(st) => {
                let base = st.handed();
                let (Some(from), Some(to)) = (off.checked_sub(base), end.checked_sub(base)) else {
                    return Err(self.uploaded_already(base));
                };
                let from = usize::try_from(from).map_err(|_| Errno::EINVAL)?;
                let to = usize::try_from(to).map_err(|_| Errno::EINVAL)?;
                Ok(Some(Bytes::copy_from_slice(
                    st.buf.get(from..to).ok_or(Errno::EIO)?,
                )))
            }
            Mode::Staged(sg) => {
                let rel = off
                    .checked_sub(sg.base)
                    .ok_or_else(|| self.uploaded_already(sg.base))?;
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
    /// state is marked failed and EIO is returned, with the cause.
    pub(crate) async fn commit<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
    ) -> Result<Option<String>, FsError> {
        if self.failed {
            return Err(self.failed_before());
        }
        if self.unlinked || !self.dirty {
            return Ok(None);
        }
        let key = self.key.clone();
        let result = match mem::replace(&mut self.mode, Mode::Clean) {
            Mode::Clean => Ok(None),
            Mode::Stream(Stream { mpu, buf, res }) => {
                commit_stream(ctx, &key, mpu, buf, res).await.map(Some)
            }
            Mode::Staged(Staged { mpu, file, base }) => {
                commit_staged(ctx, &key, mpu, file, base, self.size)
                    .await
                    .map(Some)
            }
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
                self.failed = true;
                Err(e.with_errno(Errno::EIO).with_key(&key))
            }
        }
    }
}
