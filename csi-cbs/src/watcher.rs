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

/// Polling cadence within a deadline. When the usual length of the awaited transition is known,
/// the first look comes at 90% of it and then every 50 ms: close to the real end, with few calls.
/// Otherwise every 100 ms. After the quick phase it backs off to every two seconds for stragglers.
/// Batching keeps frequent looks cheap: one describe serves every waiter.
#[derive(Debug)]
pub struct Poll {
    deadline: Instant,
    started: Instant,
    next: Duration,
    quick: Duration,
    quick_phase: Duration,
}

const SLOW_POLL: Duration = Duration::from_secs(2);

impl Poll {
    pub fn new(deadline: Instant) -> Self {
        Self::expecting(deadline, None)
    }

    pub fn expecting(deadline: Instant, expected: Option<Duration>) -> Self {
        let (next, quick, quick_phase) = match expected {
            Some(e) => (
                e.mul_f64(0.9),
                Duration::from_millis(50),
                (e * 2).max(Duration::from_secs(5)),
            ),
            None => (
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_secs(5),
            ),
        };
        Poll {
            deadline,
            started: Instant::now(),
            next,
            quick,
            quick_phase,
        }
    }

    /// Sleeps before the next look, or fails when the deadline would pass first.
    pub async fn wait(&mut self, disk_id: &str, state: &str, what: &str) -> Result<()> {
        if Instant::now() + self.next >= self.deadline {
            return Err(Error::DeadlineExceeded(format!(
                "disk {disk_id} is still {state} while waiting for {what}; the next call resumes the wait"
            )));
        }
        tokio::time::sleep(self.next).await;
        self.next = if self.started.elapsed() < self.quick_phase {
            self.quick
        } else {
            (self.next.max(self.quick) * 3 / 2).min(SLOW_POLL)
        };
        Ok(())
    }
}

/// The usual length of one kind of transition (attach, detach, resize), as an exponentially
/// weighted moving average of what this controller observed.
#[derive(Debug, Default)]
pub struct Learned(std::sync::Mutex<Option<Duration>>);

impl Learned {
    pub fn get(&self) -> Option<Duration> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, observed: Duration) {
        let mut average = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *average = Some(match *average {
            Some(old) => old.mul_f64(0.7) + observed.mul_f64(0.3),
            None => observed,
        });
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
        expected: Option<Duration>,
        what: &str,
        mut check: impl FnMut(&Disk) -> Result<Wait>,
    ) -> Result<Disk> {
        let mut poll = Poll::expecting(deadline, expected);
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
