//! Multipart uploads of a file's content: the part uploads running in the background, and the
//! commit of a streamed buffer or a staging file as one object (a single PUT when it is small).
//! What fails is aborted, so nothing partial becomes visible. Each upload is in the mount's
//! journal (when it has one) from before its creation to its completion or abort, so the next
//! daemon aborts it if this one dies in between; an upload the journal cannot know is not
//! started. It knows nothing of write modes, handles or the inode
//! table (`fs/write.rs` decides what to upload and when).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::context::Context;
use super::error::FsError;
use super::staging::StagingFile;
use crate::budget::Reservation;
use crate::config::MAX_PARTS;
use crate::errno::Errno;
use crate::store::{CompletedPart, ObjectStore, StoreError};
use crate::upload_journal::JournalEntry;

/// The largest object S3 and COS accept.
pub(crate) const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// The largest part S3 and COS accept.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// A multipart upload in progress: its parts running and done.
#[derive(Debug)]
pub(crate) struct Multipart {
    id: String,
    /// Bytes handed to part uploads: `[0, handed)`.
    pub(crate) handed: u64,
    /// The number of the next part (1-based).
    pub(crate) next_no: u32,
    tasks: JoinSet<Result<CompletedPart, StoreError>>,
    done: Vec<CompletedPart>,
    /// The upload's journal entry, removed when it is completed or aborted.
    journal: Option<JournalEntry>,
}

/// Size of part `number` (1-based) of a streamed upload: `first`, doubled every 1000 parts, so a
/// stream of unknown length can reach the maximum object size within 10000 parts.
pub(crate) fn stream_part_size(first: u64, number: u32) -> u64 {
    let tier = (number.saturating_sub(1) / 1000).min(12);
    first.saturating_mul(1u64 << tier).min(MAX_PART_SIZE)
}

impl Multipart {
    /// Starts a multipart upload of `key`. When the mount has a journal, the intent is written
    /// first, and without it the upload does not start (EIO): a daemon killed before it learns
    /// the upload's ID leaves an upload only the intent can find. The entry then gets the ID.
    pub(crate) async fn create<S: ObjectStore>(
        ctx: &Arc<Context<S>>,
        key: &str,
    ) -> Result<Self, FsError> {
        let mut journal = match ctx.staging.journal().map(|j| j.intend(key)) {
            None => None,
            Some(Ok(entry)) => Some(entry),
            Some(Err(e)) => {
                tracing::error!(key, error = %e, "cannot journal a multipart upload; it is not started");
                return Err(FsError::new(
                    Errno::EIO,
                    "upload: cannot journal the multipart upload",
                )
                .caused_by(e)
                .with_key(key));
            }
        };
        let id = match ctx.store.create_multipart(key).await {
            Ok(id) => id,
            Err(e) => {
                // Unavailable, it may have been started all the same: the intent stays for the
                // next start to resolve. Refused, nothing was started.
                if let Some(entry) = journal.take()
                    && !matches!(e, StoreError::Unavailable(_))
                {
                    entry.remove();
                }
                return Err(upload_error(key, e));
            }
        };
        if let Some(entry) = &mut journal
            && let Err(e) = entry.created(&id)
        {
            tracing::warn!(key, upload_id = %id, error = %e, "cannot record a multipart upload's ID in the journal; its intent stands for it");
        }
        Ok(Multipart {
            id,
            handed: 0,
            next_no: 1,
            tasks: JoinSet::new(),
            done: Vec::new(),
            journal,
        })
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
    pub(crate) fn reap(&mut self) -> Result<(), StoreError> {
        while let Some(r) = self.tasks.try_join_next() {
            self.collect(r)?;
        }
        Ok(())
    }

    /// Waits for one running part upload to end; false when none was running.
    pub(crate) async fn reap_one(&mut self) -> Result<bool, StoreError> {
        match self.tasks.join_next().await {
            Some(r) => self.collect(r).map(|()| true),
            None => Ok(false),
        }
    }

    /// Waits for every running part upload.
    pub(crate) async fn drain(&mut self) -> Result<(), StoreError> {
        while let Some(r) = self.tasks.join_next().await {
            self.collect(r)?;
        }
        Ok(())
    }

    /// Starts uploading the next part.
    pub(crate) fn spawn_part<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
        key: &str,
        body: Bytes,
        res: Option<Reservation>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), FsError> {
        if self.next_no > MAX_PARTS {
            return Err(FsError::new(
                Errno::EFBIG,
                format!("more than {MAX_PARTS} parts"),
            ));
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
pub(crate) async fn abort<S: ObjectStore>(ctx: &Arc<Context<S>>, key: &str, mut m: Multipart) {
    m.tasks.abort_all();
    while m.tasks.join_next().await.is_some() {}
    match ctx.store.abort_multipart(key, &m.id).await {
        // Failed, it stays in the journal: the next start tries again.
        Err(e) => {
            tracing::warn!(key, upload_id = %m.id, error = %e, "abort multipart upload failed");
        }
        Ok(()) => {
            if let Some(entry) = m.journal.take() {
                entry.remove();
            }
        }
    }
}

/// An upload of `key` failed with `e`: EIO, whatever the store said.
pub(crate) fn upload_error(key: &str, e: StoreError) -> FsError {
    FsError::store(key, e)
        .with_errno(Errno::EIO)
        .context("upload")
}

/// Commits a streamed file: the parts `mpu` uploaded (if any) and the rest, `buf` (whose memory
/// `res` holds).
pub(crate) async fn commit_stream<S: ObjectStore>(
    ctx: &Arc<Context<S>>,
    key: &str,
    mpu: Option<Multipart>,
    buf: BytesMut,
    res: Option<Reservation>,
) -> Result<String, FsError> {
    let Some(mut m) = mpu else {
        let etag = ctx.store.put(key, buf.freeze()).await;
        drop(res);
        return etag.map_err(|e| upload_error(key, e));
    };
    if !buf.is_empty()
        && let Err(e) = m.spawn_part(ctx, key, buf.freeze(), res, None)
    {
        abort(ctx, key, m).await;
        return Err(e.context("upload"));
    }
    finish(ctx, key, m).await
}

/// Waits for the parts of `m` and completes the upload.
async fn finish<S: ObjectStore>(
    ctx: &Arc<Context<S>>,
    key: &str,
    mut m: Multipart,
) -> Result<String, FsError> {
    if let Err(e) = m.drain().await {
        abort(ctx, key, m).await;
        return Err(upload_error(key, e));
    }
    m.done.sort_by_key(|p| p.number);
    match ctx.store.complete_multipart(key, &m.id, &m.done).await {
        Ok(etag) => {
            if let Some(entry) = m.journal.take() {
                entry.remove();
            }
            Ok(etag)
        }
        Err(e) => {
            abort(ctx, key, m).await;
            Err(upload_error(key, e))
        }
    }
}

/// Commits a staged file of `size` bytes: the parts `mpu` uploaded (if any, bytes `[0, base)`)
/// and bytes `[base, size)` from `file`.
pub(crate) async fn commit_staged<S: ObjectStore>(
    ctx: &Arc<Context<S>>,
    key: &str,
    mpu: Option<Multipart>,
    file: StagingFile,
    base: u64,
    size: u64,
) -> Result<String, FsError> {
    let total = size.saturating_sub(base);
    let local = |e: FsError| e.context("upload");
    if mpu.is_none() && total < ctx.cfg.part_size {
        let _res = ctx.budget.acquire(total).await;
        let body = file.read_at(0, total).await.map_err(local)?;
        return ctx
            .store
            .put(key, body)
            .await
            .map_err(|e| upload_error(key, e));
    }
    let mut m = match mpu {
        Some(m) => m,
        None => Multipart::create(ctx, key).await?,
    };
    let parts_left = u64::from(MAX_PARTS.saturating_sub(m.next_no.saturating_sub(1)));
    if total > 0 && parts_left == 0 {
        abort(ctx, key, m).await;
        return Err(FsError::new(
            Errno::EFBIG,
            format!("upload: more than {MAX_PARTS} parts"),
        ));
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
                .map_err(|e| FsError::new(Errno::EIO, "upload").caused_by(e))?;
            let res = ctx.budget.acquire(n).await;
            let body = file.read_at(off, n).await.map_err(local)?;
            m.reap().map_err(|e| upload_error(key, e))?;
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
