//! Batched disk lookups: every caller that needs a disk's current state (every wait for
//! `ATTACHED`, `UNATTACHED`, the end of `EXPANDING`, every lookup by ID or by name) joins the next
//! `DescribeDisks` call, which asks for up to 100 disks at once. Fifty concurrent attaches cost one
//! describe per polling round, not fifty: the cloud's rate limit is shared by the whole account.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use csi_common::metrics::Metrics;
use tcloud::cbs::{CbsApi, DescribeDisksRequest, Disk, Filter, MAX_PAGE};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// How long the batcher waits for company before calling the cloud, when others are queued
/// already (a lone lookup goes at once; lookups arriving during a call join the next one).
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Each describe gets at most this long, within the waiter's own deadline.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

type Reply = oneshot::Sender<std::result::Result<Vec<Disk>, Arc<Error>>>;

/// What a caller looks a disk up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(String),
    Name(String),
}

/// The real API takes at most 5 values per filter.
const NAMES_PER_CALL: usize = 5;

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
                "{disk_id} is still {state} while waiting for {what}; the next call resumes the wait"
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
    requests: mpsc::UnboundedSender<(Key, Reply)>,
    /// Where time spent waiting on disk states is recorded.
    pub metrics: Arc<Metrics>,
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
        DiskWatcher {
            requests: tx,
            metrics: Metrics::new(),
        }
    }

    /// The disk's current description, or `None` when it does not exist.
    pub async fn get(&self, disk_id: &str) -> Result<Option<Disk>> {
        Ok(self
            .lookup(Key::Id(disk_id.to_owned()))
            .await?
            .into_iter()
            .next())
    }

    /// Every disk named exactly `name` (creates look themselves up by name for idempotency).
    pub async fn by_name(&self, name: &str) -> Result<Vec<Disk>> {
        self.lookup(Key::Name(name.to_owned())).await
    }

    async fn lookup(&self, key: Key) -> Result<Vec<Disk>> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((key, tx))
            .map_err(|_| Error::Internal("the disk watcher stopped".into()))?;
        match rx.await {
            Ok(Ok(disks)) => Ok(disks),
            Ok(Err(shared)) => Err(Error::relay(&shared)),
            Err(_) => Err(Error::Internal("the disk watcher dropped a request".into())),
        }
    }

    /// Polls `disk_id` until `check` says [`Wait::Done`] (returning the disk), `check` fails, or
    /// `deadline` passes. Polls quickly at first, then less often. With `expected` (a transition
    /// of that usual length was just started), the first look comes after it, not at once. The
    /// time spent is recorded as
    /// `tencentcloud_csi_cloud_wait_duration_seconds{resource="disk", wait=what, outcome}` (`what`
    /// is a fixed phrase, so the label stays bounded).
    pub async fn wait_until(
        &self,
        disk_id: &str,
        deadline: Instant,
        expected: Option<Duration>,
        what: &'static str,
        check: impl FnMut(&Disk) -> Result<Wait>,
    ) -> Result<Disk> {
        let started = std::time::Instant::now();
        let result = self
            .poll_until(disk_id, deadline, expected, what, check)
            .await;
        self.metrics.observe_cloud_wait(
            "disk",
            what,
            wait_outcome(&result),
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn poll_until(
        &self,
        disk_id: &str,
        deadline: Instant,
        expected: Option<Duration>,
        what: &str,
        mut check: impl FnMut(&Disk) -> Result<Wait>,
    ) -> Result<Disk> {
        let mut poll = Poll::expecting(deadline, expected);
        // A transition of known length just started: a look now would only see it begun, and
        // would push every later look back by its own round trip.
        if expected.is_some() {
            poll.wait(disk_id, "in transition", what).await?;
        }
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

/// The `outcome` label of a wait: the state was reached, the deadline passed first, or it failed.
pub fn wait_outcome<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "reached",
        Err(Error::DeadlineExceeded(_)) => "deadline",
        Err(_) => "error",
    }
}

async fn batch_loop<C: CbsApi>(cbs: Arc<C>, mut rx: mpsc::UnboundedReceiver<(Key, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut waiting: HashMap<Key, Vec<Reply>> = HashMap::new();
        waiting.entry(first.0).or_default().push(first.1);
        while let Ok((key, reply)) = rx.try_recv() {
            waiting.entry(key).or_default().push(reply);
        }
        // Company now means more on the way: give it a moment to join this call.
        if waiting.values().map(Vec::len).sum::<usize>() > 1 {
            tokio::time::sleep(BATCH_WINDOW).await;
            while let Ok((key, reply)) = rx.try_recv() {
                waiting.entry(key).or_default().push(reply);
            }
        }
        let (mut ids, mut names) = (Vec::new(), Vec::new());
        for key in waiting.keys() {
            match key {
                Key::Id(id) => ids.push(id.clone()),
                Key::Name(name) => names.push(name.clone()),
            }
        }
        let by_id = ids
            .chunks(MAX_PAGE as usize)
            .map(|chunk| DescribeDisksRequest {
                disk_ids: chunk.to_vec(),
                limit: Some(MAX_PAGE),
                ..Default::default()
            });
        let by_name = names
            .chunks(NAMES_PER_CALL)
            .map(|chunk| DescribeDisksRequest {
                filters: vec![Filter {
                    name: "disk-name".into(),
                    values: chunk.to_vec(),
                }],
                limit: Some(MAX_PAGE),
                ..Default::default()
            });
        for request in by_id.chain(by_name) {
            let keys: Vec<Key> = request
                .disk_ids
                .iter()
                .map(|id| Key::Id(id.clone()))
                .chain(
                    request
                        .filters
                        .iter()
                        .flat_map(|f| f.values.iter().map(|n| Key::Name(n.clone()))),
                )
                .collect();
            let result = cbs
                .describe_disks(&request, Some(Instant::now() + DESCRIBE_TIMEOUT))
                .await;
            match result {
                Ok(response) => {
                    for key in keys {
                        let matching: Vec<Disk> = response
                            .disk_set
                            .iter()
                            .filter(|d| match &key {
                                Key::Id(id) => d.disk_id == *id,
                                Key::Name(name) => d.disk_name == *name,
                            })
                            .cloned()
                            .collect();
                        for reply in waiting.remove(&key).unwrap_or_default() {
                            let _ = reply.send(Ok(matching.clone()));
                        }
                    }
                }
                Err(error) => {
                    let shared = Arc::new(Error::Cloud(error));
                    for key in keys {
                        for reply in waiting.remove(&key).unwrap_or_default() {
                            let _ = reply.send(Err(Arc::clone(&shared)));
                        }
                    }
                }
            }
        }
    }
}
