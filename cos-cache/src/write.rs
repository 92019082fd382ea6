//! Write-behind: blocks fetched for a caller's read are written to disk by background threads,
//! so a reader never waits for the disk. The queue is bounded in bytes (`write_queue_bytes`): a
//! block that does not fit is not written (the reader has it already; the next cold read of it
//! fetches it again), so a slow disk costs hits, never read latency. Each queued block carries its
//! fetch lock, released once the block is written or given up: another reader waits for it (and
//! finds it in the memory tier or on disk) rather than fetching it twice. A block is written
//! whole or not at all (`disk`), so nothing torn ever becomes visible. Dropping the queue waits
//! for what is queued to be written. It knows nothing of object
//! stores or reads; what to do with a block is the `work` it is given.

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::watch;

use crate::block::BlockId;
use crate::lock::FetchLock;

/// One block to write, with the fetch lock to release afterwards.
#[derive(Debug)]
pub(crate) struct WriteJob {
    pub id: BlockId,
    pub object_size: u64,
    pub data: Bytes,
    /// Held until the block is written or given up (released on drop).
    pub _lock: Option<FetchLock>,
}

type Work = Arc<dyn Fn(&WriteJob) + Send + Sync>;

/// The queue and its writer threads. Dropping it waits for the threads to finish what is
/// queued (so a daemon that exits, or a store dropped and opened again, finds its blocks on disk).
pub(crate) struct WriteBehind {
    /// `None` once dropping.
    tx: Option<Sender<WriteJob>>,
    threads: Vec<JoinHandle<()>>,
    /// Bytes queued or being written.
    queued: Arc<watch::Sender<u64>>,
    limit: u64,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("queued", &*self.queued.borrow())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl WriteBehind {
    /// Starts `threads` writers doing `work` for each job, at most `limit` bytes queued.
    pub(crate) fn start(
        threads: usize,
        limit: u64,
        work: impl Fn(&WriteJob) + Send + Sync + 'static,
    ) -> io::Result<WriteBehind> {
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(watch::Sender::new(0u64));
        let work: Work = Arc::new(work);
        let mut handles = Vec::with_capacity(threads.max(1));
        for n in 0..threads.max(1) {
            let (rx, queued, work) = (Arc::clone(&rx), Arc::clone(&queued), Arc::clone(&work));
            let spawned = std::thread::Builder::new()
                .name(format!("cos-cache-write-{n}"))
                .spawn(move || writer(&rx, &queued, &*work));
            // On failure, the threads already started end as `tx` is dropped.
            handles.push(spawned?);
        }
        Ok(WriteBehind {
            tx: Some(tx),
            threads: handles,
            queued,
            limit,
        })
    }

    /// Queues a block; false when the queue is full (or the writers are gone): the block is
    /// dropped then, and its fetch lock released.
    #[must_use]
    pub(crate) fn submit(&self, job: WriteJob) -> bool {
        let len = job.data.len() as u64;
        let admitted = self.queued.send_if_modified(|q| {
            let fits = q.saturating_add(len) <= self.limit;
            if fits {
                *q += len;
            }
            fits
        });
        if !admitted {
            return false;
        }
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            self.queued.send_modify(|q| *q = q.saturating_sub(len));
        }
        sent
    }

    /// Waits until every block queued so far is written (or given up).
    pub(crate) async fn flush(&self) {
        let mut rx = self.queued.subscribe();
        let _ = rx.wait_for(|q| *q == 0).await;
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn writer(
    rx: &Mutex<Receiver<WriteJob>>,
    queued: &watch::Sender<u64>,
    work: &(dyn Fn(&WriteJob) + Send + Sync),
) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else {
            return;
        };
        let len = job.data.len() as u64;
        work(&job);
        // The lock goes before the count: whoever flushed finds the block's fetch lock free.
        drop(job);
        queued.send_modify(|q| *q = q.saturating_sub(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    fn job(len: usize) -> WriteJob {
        WriteJob {
            id: BlockId::new("b", "k", "e", 4096, 0),
            object_size: len as u64,
            data: Bytes::from(vec![0u8; len]),
            _lock: None,
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_rather_than_waits_and_flush_waits_for_the_rest() {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let done = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&done);
        let w = WriteBehind::start(1, 10, move |j| {
            // Each write waits for the test's go.
            let _ = gate.lock().unwrap().recv();
            counted.fetch_add(j.data.len() as u64, Ordering::SeqCst);
        })
        .unwrap();
        assert!(w.submit(job(4)));
        assert!(w.submit(job(6)));
        assert!(!w.submit(job(1)), "over the limit: refused at once");
        let flushed = tokio::time::timeout(Duration::from_millis(100), w.flush()).await;
        assert!(flushed.is_err(), "flush waits for the writer");
        gate_tx.send(()).unwrap();
        gate_tx.send(()).unwrap();
        w.flush().await;
        assert_eq!(done.load(Ordering::SeqCst), 10);
        assert!(w.submit(job(10)), "room again");
        gate_tx.send(()).unwrap();
        w.flush().await;
        assert_eq!(done.load(Ordering::SeqCst), 20);
    }
}
