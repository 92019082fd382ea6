//! Batched AttachDisks and DetachDisks: concurrent attaches (detaches) of disks to (from) the same
//! instance share calls of up to ten disks, the most CBS takes in one. The per-action rate limit
//! (20/s per account) then moves ten disks per slot instead of one.
//!
//! Per instance and action one call is in flight at a time. A request that finds none goes at
//! once, so a lone attach waits for nothing; requests that arrive meanwhile are gathered for the
//! next call. A disk already queued or in flight is joined, never sent twice. A caller that gave up
//! (its deadline passed, its RPC was cancelled) is dropped from the queue before the call goes.
//!
//! CBS refuses a whole call when one disk is wrong. A refusal that names a disk of the batch goes
//! to that disk's caller alone and the others are sent again at once; one that names none (a full
//! instance, an unknown instance) sends each disk on its own, so each caller gets its own answer.
//! Throttling and transient failures are retried for the whole batch by the cloud client, with
//! backoff and within its pacing, until the latest deadline among the batch's callers.
//!
//! This module only sends the calls and hands out their answers; what an answer means for a
//! disk's state machine is the controller's business (`controller::attach`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tcloud::CloudError;
use tcloud::cbs::CbsApi;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::Error;

/// Disks AttachDisks and DetachDisks take in one call.
pub const BATCH: usize = 10;

/// What one disk's caller gets: the call's answer as it concerns that disk.
pub type Outcome = std::result::Result<(), Arc<CloudError>>;

type Reply = oneshot::Sender<Outcome>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    Attach,
    Detach,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Attach => "AttachDisks",
            Action::Detach => "DetachDisks",
        }
    }
}

/// Calls are batched per action and instance (a detach may name no instance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    action: Action,
    instance: Option<String>,
}

/// One disk waiting for its call, with everyone waiting for it.
#[derive(Debug)]
struct Pending {
    disk_id: String,
    /// The latest deadline of its callers.
    deadline: Instant,
    replies: Vec<Reply>,
    /// Sent in a call of its own: its batch was refused without naming a disk.
    alone: bool,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    /// The disks of the call in flight.
    sending: Vec<Pending>,
}

#[derive(Debug)]
struct Inner<C> {
    cbs: Arc<C>,
    /// A key is present exactly while its sender task runs.
    queues: Mutex<HashMap<Key, Queue>>,
}

/// The batcher of attaches and detaches; cheap to share, its sender tasks end when idle.
#[derive(Debug)]
pub struct AttachBatcher<C> {
    inner: Arc<Inner<C>>,
}

impl<C: CbsApi> AttachBatcher<C> {
    pub fn new(cbs: Arc<C>) -> Self {
        AttachBatcher {
            inner: Arc::new(Inner {
                cbs,
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Attaches `disk_ids` to `instance` in as few calls as the traffic allows; answers each
    /// disk's outcome in order. Waits at most until `deadline`.
    pub async fn attach(
        &self,
        disk_ids: &[String],
        instance: &str,
        deadline: Instant,
    ) -> Vec<Outcome> {
        let key = Key {
            action: Action::Attach,
            instance: Some(instance.to_owned()),
        };
        self.submit(key, disk_ids, deadline).await
    }

    /// Detaches `disk_ids` from `instance` (any, when `None`); as [`attach`](Self::attach).
    pub async fn detach(
        &self,
        disk_ids: &[String],
        instance: Option<&str>,
        deadline: Instant,
    ) -> Vec<Outcome> {
        let key = Key {
            action: Action::Detach,
            instance: instance.map(str::to_owned),
        };
        self.submit(key, disk_ids, deadline).await
    }

    async fn submit(&self, key: Key, disk_ids: &[String], deadline: Instant) -> Vec<Outcome> {
        let action = key.action;
        let started = Instant::now();
        let mut receivers = Vec::with_capacity(disk_ids.len());
        {
            let mut queues = lock(&self.inner.queues);
            let idle = !queues.contains_key(&key);
            let queue = queues.entry(key.clone()).or_default();
            for disk_id in disk_ids {
                let (tx, rx) = oneshot::channel();
                receivers.push(rx);
                let joined = queue
                    .sending
                    .iter_mut()
                    .chain(queue.waiting.iter_mut())
                    .find(|p| p.disk_id == *disk_id);
                match joined {
                    Some(pending) => {
                        pending.replies.push(tx);
                        pending.deadline = pending.deadline.max(deadline);
                    }
                    None => queue.waiting.push_back(Pending {
                        disk_id: disk_id.clone(),
                        deadline,
                        replies: vec![tx],
                        alone: false,
                    }),
                }
            }
            if idle {
                tokio::spawn(send_loop(Arc::clone(&self.inner), key));
            }
        }
        let mut outcomes = Vec::with_capacity(receivers.len());
        for rx in receivers {
            outcomes.push(match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(Arc::new(CloudError::Decode {
                    action: action.name().to_owned(),
                    status: 0,
                    detail: "the batch sender stopped before answering".to_owned(),
                })),
                Err(_) => Err(Arc::new(gave_up(action, started.elapsed()))),
            });
        }
        outcomes
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A caller's deadline passed while its disk waited for a call (or for the call's answer).
fn gave_up(action: Action, waited: Duration) -> CloudError {
    CloudError::DeadlineExceeded {
        action: action.name().to_owned(),
        attempts: 0,
        elapsed: waited,
        last: Box::new(CloudError::Timeout {
            action: action.name().to_owned(),
            timeout: waited,
        }),
    }
}

/// Sends the queue of `key` call by call until it is empty, then removes it.
async fn send_loop<C: CbsApi>(inner: Arc<Inner<C>>, key: Key) {
    loop {
        let (ids, deadline) = {
            let mut queues = lock(&inner.queues);
            let Some(queue) = queues.get_mut(&key) else {
                return;
            };
            // Callers that gave up are not sent for: their retry asks again.
            queue.waiting.retain_mut(|p| {
                p.replies.retain(|r| !r.is_closed());
                !p.replies.is_empty()
            });
            queue.sending = take_batch(&mut queue.waiting);
            if queue.sending.is_empty() {
                queues.remove(&key);
                return;
            }
            let ids: Vec<String> = queue.sending.iter().map(|p| p.disk_id.clone()).collect();
            let deadline = queue.sending.iter().map(|p| p.deadline).max();
            (ids, deadline)
        };
        let result = match key.action {
            Action::Attach => {
                let instance = key.instance.as_deref().unwrap_or_default();
                inner.cbs.attach_disks(&ids, instance, deadline).await
            }
            Action::Detach => {
                inner
                    .cbs
                    .detach_disks(&ids, key.instance.as_deref(), deadline)
                    .await
            }
        };
        let mut queues = lock(&inner.queues);
        let Some(queue) = queues.get_mut(&key) else {
            return;
        };
        let sent = std::mem::take(&mut queue.sending);
        hand_out(result, sent, &mut queue.waiting);
    }
}

/// The next call's disks: the first one waiting alone, else up to [`BATCH`] others in order.
fn take_batch(waiting: &mut VecDeque<Pending>) -> Vec<Pending> {
    if waiting.front().is_some_and(|p| p.alone) {
        return waiting.pop_front().into_iter().collect();
    }
    let mut batch = Vec::new();
    let mut rest = VecDeque::with_capacity(waiting.len());
    while let Some(pending) = waiting.pop_front() {
        if batch.len() < BATCH && !pending.alone {
            batch.push(pending);
        } else {
            rest.push_back(pending);
        }
    }
    *waiting = rest;
    batch
}

/// Gives each disk of a call its outcome; disks whose outcome the call did not decide go back to
/// the head of the queue.
fn hand_out(
    result: std::result::Result<(), CloudError>,
    mut sent: Vec<Pending>,
    waiting: &mut VecDeque<Pending>,
) {
    let error = match result {
        Ok(()) => {
            for pending in sent {
                answer(pending, &Ok(()));
            }
            return;
        }
        Err(error) => error,
    };
    let blamed = sent
        .iter()
        .position(|p| names_disk(&error.to_string(), &p.disk_id));
    let whole_call = sent.len() == 1 || error.kind().is_retried_by_client() || error.is_deadline();
    match blamed {
        _ if whole_call => {
            let shared = Err(Arc::new(error));
            for pending in sent {
                answer(pending, &shared);
            }
        }
        Some(index) => {
            let refused = sent.remove(index);
            tracing::info!(disk = %refused.disk_id, others = sent.len(), error = %error, "a disk refused in a batch; sending the others again");
            answer(refused, &Err(Arc::new(error)));
            for pending in sent.into_iter().rev() {
                waiting.push_front(pending);
            }
        }
        None => {
            tracing::info!(disks = sent.len(), error = %error, "a batch refused without naming a disk; sending each disk on its own");
            for mut pending in sent.into_iter().rev() {
                pending.alone = true;
                waiting.push_front(pending);
            }
        }
    }
}

fn answer(pending: Pending, outcome: &Outcome) {
    for reply in pending.replies {
        let _ = reply.send(outcome.clone());
    }
}

/// Whether `message` names `disk_id` as a whole word (`disk-1` is not named by `disk-12`).
fn names_disk(message: &str, disk_id: &str) -> bool {
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    message.match_indices(disk_id).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + disk_id.len()..].chars().next();
        !before.is_some_and(is_id_char) && !after.is_some_and(is_id_char)
    })
}

/// A batch's error as this disk's caller's error: the error itself when nobody else holds it,
/// else a copy with the same code and message.
pub fn cloud_error(error: Arc<CloudError>) -> Error {
    match Arc::try_unwrap(error) {
        Ok(error) => Error::Cloud(error),
        Err(shared) => Error::Relayed {
            code: csi_common::csi::error::cloud_code(&shared),
            message: csi_common::csi::error_chain(&*shared),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcloud::ErrorKind;
    use tcloud::cbs::{CreateDisksRequest, Placement, disk_state};
    use tcloud::fake::{CbsOp, FakeCbs};

    const NODE: &str = "ins-sim00001";
    const OTHER_NODE: &str = "ins-other001";
    const LATENCY: Duration = Duration::from_millis(30);

    fn fake() -> FakeCbs {
        FakeCbs::new()
            .with_latency(LATENCY)
            .with_max_attach(40)
            .with_instance(OTHER_NODE, "ap-guangzhou-3")
    }

    async fn disks(fake: &FakeCbs, zone: &str, count: u32) -> Vec<String> {
        let request = CreateDisksRequest {
            placement: Placement {
                zone: zone.into(),
                ..Default::default()
            },
            disk_type: "CLOUD_PREMIUM".into(),
            disk_charge_type: "POSTPAID_BY_HOUR".into(),
            disk_size: 10,
            disk_count: count,
            ..Default::default()
        };
        fake.create_disks(&request, None).await.unwrap()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Attaches `id` to `node` in a task of its own, as a concurrent CSI call does.
    fn attach(
        batcher: &Arc<AttachBatcher<FakeCbs>>,
        id: &str,
        node: &'static str,
        deadline: Instant,
    ) -> tokio::task::JoinHandle<Outcome> {
        let (batcher, ids) = (Arc::clone(batcher), [id.to_owned()]);
        tokio::spawn(async move { batcher.attach(&ids, node, deadline).await.remove(0) })
    }

    /// Lets the tasks spawned so far run until they wait on the fake's latency.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn attached_to(fake: &FakeCbs, id: &str) -> Option<String> {
        let disk = fake.disk(id).unwrap();
        (disk.disk_state == disk_state::ATTACHED)
            .then_some(disk.instance_id)
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_is_sent_at_once() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 1).await;
        let batcher = AttachBatcher::new(Arc::new(fake.clone()));
        let start = Instant::now();
        let outcomes = batcher.attach(&ids, NODE, later()).await;
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
        let took = start.elapsed();
        assert!(
            took < LATENCY + Duration::from_millis(2),
            "it waited for company: {took:?}"
        );
        assert_eq!(fake.calls(CbsOp::AttachDisks), 1);
        // The sender is gone once idle; the next request again goes at once.
        let detached = batcher.detach(&ids, Some(NODE), later()).await;
        assert!(detached[0].is_ok(), "{detached:?}");
        assert!(start.elapsed() < LATENCY * 2 + Duration::from_millis(4));
        assert_eq!(fake.calls(CbsOp::DetachDisks), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_arriving_during_a_call_share_calls_of_ten() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 25).await;
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        let first = attach(&batcher, &ids[0], NODE, later());
        settle().await;
        let rest: Vec<_> = ids[1..]
            .iter()
            .map(|id| attach(&batcher, id, NODE, later()))
            .collect();
        assert!(first.await.unwrap().is_ok());
        for task in rest {
            assert!(task.await.unwrap().is_ok());
        }
        // Alone, then 10 + 10 + 4 (the fake refuses more than 10 disks a call).
        assert_eq!(fake.calls(CbsOp::AttachDisks), 4);
        for id in &ids {
            assert_eq!(attached_to(&fake, id).as_deref(), Some(NODE), "{id}");
        }

        // Detaches coalesce the same way.
        let detach = |id: &String| {
            let (batcher, ids) = (Arc::clone(&batcher), [id.clone()]);
            tokio::spawn(async move { batcher.detach(&ids, Some(NODE), later()).await.remove(0) })
        };
        let tasks: Vec<_> = ids.iter().map(detach).collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(fake.calls(CbsOp::DetachDisks), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn different_instances_are_never_mixed() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 10).await;
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        let node_of = |i: usize| {
            if i.is_multiple_of(2) {
                NODE
            } else {
                OTHER_NODE
            }
        };
        let tasks: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| attach(&batcher, id, node_of(i), later()))
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        // One call per instance, each of its own disks.
        assert_eq!(fake.calls(CbsOp::AttachDisks), 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(attached_to(&fake, id).as_deref(), Some(node_of(i)), "{id}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_disk_fails_only_its_caller() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 3).await;
        let elsewhere = disks(&fake, "ap-guangzhou-4", 1).await.remove(0);
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        let first = attach(&batcher, &ids[0], NODE, later());
        settle().await;
        let b = attach(&batcher, &ids[1], NODE, later());
        let refused = attach(&batcher, &elsewhere, NODE, later());
        let c = attach(&batcher, &ids[2], NODE, later());
        assert!(first.await.unwrap().is_ok());
        assert!(b.await.unwrap().is_ok());
        assert!(c.await.unwrap().is_ok());
        let error = refused.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("ZoneNotMatch"), "{error}");
        // Alone; the three refused for one; the two others again.
        assert_eq!(fake.calls(CbsOp::AttachDisks), 3);
        assert_eq!(attached_to(&fake, &elsewhere), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_naming_no_disk_sends_each_disk_alone() {
        let fake = fake().with_max_attach(3);
        let ids = disks(&fake, "ap-guangzhou-3", 4).await;
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        let first = attach(&batcher, &ids[0], NODE, later());
        settle().await;
        let rest: Vec<_> = ids[1..]
            .iter()
            .map(|id| attach(&batcher, id, NODE, later()))
            .collect();
        assert!(first.await.unwrap().is_ok());
        let mut outcomes = Vec::new();
        for task in rest {
            outcomes.push(task.await.unwrap());
        }
        // Room for two more: the first two alone succeed, the last is the full instance's.
        assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
        let error = outcomes[2].as_ref().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Quota, "{error}");
        assert_eq!(fake.calls(CbsOp::AttachDisks), 1 + 1 + 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_batch_answers_every_caller_without_splitting() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 3).await;
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        fake.fail_nth(CbsOp::AttachDisks, 2, "RequestLimitExceeded");
        let first = attach(&batcher, &ids[0], NODE, later());
        settle().await;
        let b = attach(&batcher, &ids[1], NODE, later());
        let c = attach(&batcher, &ids[2], NODE, later());
        assert!(first.await.unwrap().is_ok());
        for task in [b, c] {
            let error = task.await.unwrap().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Throttled, "{error}");
        }
        assert_eq!(fake.calls(CbsOp::AttachDisks), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_request_joins_the_queued_or_sent_one() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 2).await;
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        let first = attach(&batcher, &ids[0], NODE, later());
        settle().await;
        // A retry of the disk in flight, and two callers of a queued disk.
        let again = attach(&batcher, &ids[0], NODE, later());
        let b = attach(&batcher, &ids[1], NODE, later());
        let b_again = attach(&batcher, &ids[1], NODE, later());
        for task in [first, again, b, b_again] {
            assert!(task.await.unwrap().is_ok());
        }
        // Neither disk was sent twice (a second attach would be refused: it is attached).
        assert_eq!(fake.calls(CbsOp::AttachDisks), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gave_up_is_not_sent_for() {
        let fake = fake();
        let ids = disks(&fake, "ap-guangzhou-3", 2).await;
        let batcher = Arc::new(AttachBatcher::new(Arc::new(fake.clone())));
        let first = attach(&batcher, &ids[0], NODE, later());
        settle().await;
        let hasty = attach(&batcher, &ids[1], NODE, Instant::now() + LATENCY / 3);
        let error = hasty.await.unwrap().unwrap_err();
        assert!(error.is_deadline(), "{error}");
        assert!(first.await.unwrap().is_ok());
        settle().await;
        assert_eq!(fake.calls(CbsOp::AttachDisks), 1);
        assert_eq!(attached_to(&fake, &ids[1]), None);
    }

    #[test]
    fn a_disk_is_named_as_a_whole_word() {
        assert!(names_disk("The disk disk-1 is busy.", "disk-1"));
        assert!(names_disk("disk-1", "disk-1"));
        assert!(!names_disk("The disk disk-12 is busy.", "disk-1"));
        assert!(!names_disk("The disk xdisk-1 is busy.", "disk-1"));
        assert!(!names_disk("no disk here", "disk-1"));
    }
}
