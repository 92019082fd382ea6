//! Batched disk lookups: every caller that needs a disk's current state (every wait for
//! `ATTACHED`, `UNATTACHED`, the end of `EXPANDING`, every single-disk lookup) joins the next
//! `DescribeDisks` call, which asks for up to 100 disks at once. Fifty concurrent attaches cost one
//! describe per polling round, not fifty: the cloud's rate limit is shared by the whole account.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use csi_common::cloud::cbs::{CbsApi, DescribeDisksRequest, Disk, MAX_PAGE};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// How long the batcher waits for company before calling the cloud.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Each describe gets at most this long, within the waiter's own deadline.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

type Reply = oneshot::Sender<std::result::Result<Option<Disk>, Arc<Error>>>;

/// Polling cadence within a deadline: quick at first, then every two seconds at most.
#[derive(Debug)]
pub struct Poll {
    deadline: Instant,
    interval: Duration,
}

impl Poll {
    pub fn new(deadline: Instant) -> Self {
        Poll {
            deadline,
            interval: Duration::from_millis(100),
        }
    }

    /// Sleeps before the next look, or fails when the deadline would pass first.
    pub async fn wait(&mut self, disk_id: &str, state: &str, what: &str) -> Result<()> {
        if Instant::now() + self.interval >= self.deadline {
            return Err(Error::DeadlineExceeded(format!(
                "disk {disk_id} is still {state} while waiting for {what}; the next call resumes the wait"
            )));
        }
        tokio::time::sleep(self.interval).await;
        self.interval = (self.interval * 3 / 2).min(Duration::from_secs(2));
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct DiskWatcher {
    requests: mpsc::UnboundedSender<(String, Reply)>,
}

/// What a waiter is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Keep polling.
    Continue,
    /// The disk reached the wanted state.
    Done,
}

impl DiskWatcher {
    /// Starts the batching task; it ends when the last `DiskWatcher` clone is dropped.
    pub fn start<C: CbsApi>(cbs: Arc<C>) -> DiskWatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(cbs, rx));
        DiskWatcher { requests: tx }
    }

    /// The disk's current description, or `None` when it does not exist.
    pub async fn get(&self, disk_id: &str) -> Result<Option<Disk>> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((disk_id.to_owned(), tx))
            .map_err(|_| Error::Internal("the disk watcher stopped".into()))?;
        match rx.await {
            Ok(Ok(disk)) => Ok(disk),
            Ok(Err(shared)) => Err(Error::relay(&shared)),
            Err(_) => Err(Error::Internal("the disk watcher dropped a request".into())),
        }
    }

    /// Polls `disk_id` until `check` says [`Wait::Done`] (returning the disk), `check` fails, or
    /// `deadline` passes. Polls quickly at first, then less often.
    pub async fn wait_until(
        &self,
        disk_id: &str,
        deadline: Instant,
        what: &str,
        mut check: impl FnMut(&Disk) -> Result<Wait>,
    ) -> Result<Disk> {
        let mut poll = Poll::new(deadline);
        loop {
            let disk = self.get(disk_id).await?.ok_or_else(|| {
                Error::NotFound(format!(
                    "disk {disk_id} disappeared while waiting for {what}"
                ))
            })?;
            if check(&disk)? == Wait::Done {
                return Ok(disk);
            }
            poll.wait(disk_id, &disk.disk_state, what).await?;
        }
    }
}

async fn batch_loop<C: CbsApi>(cbs: Arc<C>, mut rx: mpsc::UnboundedReceiver<(String, Reply)>) {
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(BATCH_WINDOW).await;
        let mut waiting: HashMap<String, Vec<Reply>> = HashMap::new();
        waiting.entry(first.0).or_default().push(first.1);
        while let Ok((id, reply)) = rx.try_recv() {
            waiting.entry(id).or_default().push(reply);
        }
        let ids: Vec<String> = waiting.keys().cloned().collect();
        for chunk in ids.chunks(MAX_PAGE as usize) {
            let request = DescribeDisksRequest {
                disk_ids: chunk.to_vec(),
                limit: Some(MAX_PAGE),
                ..Default::default()
            };
            let result = cbs
                .describe_disks(&request, Some(Instant::now() + DESCRIBE_TIMEOUT))
                .await;
            match result {
                Ok(response) => {
                    let mut found: HashMap<String, Disk> = response
                        .disk_set
                        .into_iter()
                        .map(|d| (d.disk_id.clone(), d))
                        .collect();
                    for id in chunk {
                        for reply in waiting.remove(id).unwrap_or_default() {
                            let _ = reply.send(Ok(found.get(id).cloned()));
                        }
                        found.remove(id);
                    }
                }
                Err(error) => {
                    let shared = Arc::new(Error::Cloud(error));
                    for id in chunk {
                        for reply in waiting.remove(id).unwrap_or_default() {
                            let _ = reply.send(Err(Arc::clone(&shared)));
                        }
                    }
                }
            }
        }
    }
}
