//! Attach and detach as a state machine read from `DescribeDisks`: act only from a settled
//! state, wait within the caller's deadline (the retry resumes the wait), never report success
//! before the disk is `ATTACHED` on this node, and report an attach stuck in `ATTACHING`.
//! The AttachDisks and DetachDisks calls themselves go through the controller's
//! [`AttachBatcher`](crate::batcher::AttachBatcher), which shares them among concurrent callers.

use std::collections::HashMap;
use std::time::Duration;

use tcloud::ErrorKind;
use tcloud::cbs::{CbsApi, Disk, disk_state};
use tokio::time::Instant;

use super::{ControllerService, PUBLISH_CONTEXT_DISK_ID};
use crate::batcher::{Outcome, cloud_error};
use crate::error::{Error, Result};
use crate::watcher::{Poll, Wait};

/// An attach request that left the disk UNATTACHED this long is sent again.
const REISSUE_AFTER: Duration = Duration::from_secs(5);

impl<C: CbsApi> ControllerService<C> {
    fn watchdog(&self, disk_id: &str, node: &str) -> Result<()> {
        let mut since = self
            .attaching_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let first = *since.entry(disk_id.to_owned()).or_insert_with(Instant::now);
        let waited = first.elapsed();
        if waited > self.config.attach_timeout {
            tracing::error!(disk = disk_id, node, ?waited, "attach stuck in ATTACHING");
            return Err(Error::Internal(format!(
                "disk {disk_id} has been ATTACHING to {node} for {}s, longer than the {}s attach timeout: CBS has not completed the attach; check the disk in the CBS console",
                waited.as_secs(),
                self.config.attach_timeout.as_secs()
            )));
        }
        Ok(())
    }

    pub(super) fn clear_watchdog(&self, disk_id: &str) {
        self.attaching_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(disk_id);
    }

    /// Attaches `volume_id` to `node_id` (or confirms it); the time is recorded as
    /// `tencentcloud_csi_cloud_wait_duration_seconds{resource="disk", wait="the attach"}`.
    pub(super) async fn publish(
        &self,
        volume_id: &str,
        node_id: &str,
        deadline: Instant,
    ) -> Result<HashMap<String, String>> {
        let started = std::time::Instant::now();
        let result = self
            .attach_polling(volume_id, node_id, deadline, None)
            .await
            .map(|()| publish_context(volume_id));
        self.watcher.metrics.observe_cloud_wait(
            "disk",
            "the attach",
            crate::watcher::wait_outcome(&result),
            started.elapsed().as_secs_f64(),
        );
        result
    }

    /// Waits until disk `volume_id` is ATTACHED to `node_id`, attaching it from UNATTACHED.
    /// `attach_sent`: when an attach of it was already sent (a batched AttachDisks), so a
    /// lagging UNATTACHED is waited on rather than answered with a second attach at once.
    pub(super) async fn attach_polling(
        &self,
        volume_id: &str,
        node_id: &str,
        deadline: Instant,
        attach_sent: Option<Instant>,
    ) -> Result<()> {
        let mut attach_sent = attach_sent;
        let mut poll = match attach_sent {
            None => Poll::new(deadline),
            Some(_) => Poll::expecting(deadline, self.attach_time.get()),
        };
        loop {
            let disk = self.existing_disk(volume_id).await?;
            let elsewhere = disk.instance().is_some_and(|i| i != node_id);
            match disk.disk_state.as_str() {
                disk_state::ATTACHED | disk_state::ATTACHING if elsewhere => {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {volume_id} is attached to {}, not {node_id}; a CBS disk attaches to one node at a time",
                        disk.instance_id
                    )));
                }
                disk_state::ATTACHED => {
                    self.clear_watchdog(volume_id);
                    if let Some(sent) = attach_sent {
                        self.attach_time.record(sent.elapsed());
                    }
                    return Ok(());
                }
                disk_state::ATTACHING => self.watchdog(volume_id, node_id)?,
                // Describe results lag behind AttachDisks for a moment; re-issue only after that.
                disk_state::UNATTACHED
                    if attach_sent.is_none_or(|t| t.elapsed() > REISSUE_AFTER) =>
                {
                    attach_sent = Some(Instant::now());
                    poll = Poll::expecting(deadline, self.attach_time.get());
                    let sent = self.attach_one(volume_id, node_id, deadline).await;
                    attach_outcome(sent, volume_id, &disk.placement.zone, node_id)?;
                }
                // DETACHING (a late unpublish), EXPANDING, or an attach just sent: wait.
                _ => {}
            }
            poll.wait(volume_id, &disk.disk_state, "the attach").await?;
        }
    }

    pub(super) async fn unpublish(
        &self,
        volume_id: &str,
        node_id: &str,
        deadline: Instant,
    ) -> Result<()> {
        loop {
            let Some(disk) = self.disk(volume_id).await? else {
                return Ok(());
            };
            let here = node_id.is_empty() || disk.instance() == Some(node_id);
            match disk.disk_state.as_str() {
                disk_state::UNATTACHED => return Ok(()),
                _ if !here => return Ok(()),
                disk_state::ATTACHED => {
                    let instance = disk.instance().map(str::to_owned);
                    let ids = [volume_id.to_owned()];
                    let sent = self
                        .attacher
                        .detach(&ids, instance.as_deref(), deadline)
                        .await;
                    match sent.into_iter().next().unwrap_or(Ok(())) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                        Err(e) if e.kind() == ErrorKind::Busy => {}
                        Err(e) => return Err(cloud_error(e)),
                    }
                    self.clear_watchdog(volume_id);
                    let sent = Instant::now();
                    self.watcher
                        .wait_until(
                            volume_id,
                            deadline,
                            self.detach_time.get(),
                            "the detach",
                            |d| {
                                Ok(
                                    if d.disk_state == disk_state::UNATTACHED
                                        || (!node_id.is_empty() && d.instance() != Some(node_id))
                                    {
                                        Wait::Done
                                    } else {
                                        Wait::Continue
                                    },
                                )
                            },
                        )
                        .await?;
                    self.detach_time.record(sent.elapsed());
                    return Ok(());
                }
                // DETACHING, ATTACHING (let it finish, then detach), EXPANDING: wait for a settled state.
                _ => {
                    self.watcher
                        .wait_until(
                            volume_id,
                            deadline,
                            None,
                            "a settled state before detaching",
                            |d| {
                                Ok(match d.disk_state.as_str() {
                                    disk_state::ATTACHED | disk_state::UNATTACHED => Wait::Done,
                                    _ => Wait::Continue,
                                })
                            },
                        )
                        .await?;
                }
            }
        }
    }

    /// Sends the attach of one disk through the batcher; its answer as it concerns this disk.
    async fn attach_one(&self, volume_id: &str, node_id: &str, deadline: Instant) -> Outcome {
        let ids = [volume_id.to_owned()];
        let sent = self.attacher.attach(&ids, node_id, deadline).await;
        sent.into_iter().next().unwrap_or(Ok(()))
    }

    pub(super) async fn wait_settled(
        &self,
        volume_id: &str,
        deadline: Instant,
        what: &'static str,
    ) -> Result<Disk> {
        self.watcher
            .wait_until(volume_id, deadline, None, what, |d| {
                Ok(match d.disk_state.as_str() {
                    disk_state::ATTACHED | disk_state::UNATTACHED => Wait::Done,
                    _ => Wait::Continue,
                })
            })
            .await
    }
}

/// What an AttachDisks answer means: success, a race to look at again (`Ok`), or the error.
pub(super) fn attach_outcome(
    sent: Outcome,
    volume_id: &str,
    zone: &str,
    node_id: &str,
) -> Result<()> {
    match sent {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("InvalidInstanceId.NotFound") => Err(Error::NotFound(format!(
            "node {node_id} is not a CVM instance of this region"
        ))),
        Err(e) if e.code().is_some_and(|c| c.ends_with("ZoneNotMatch")) => {
            Err(Error::FailedPrecondition(format!(
                "volume {volume_id} is in zone {zone} and cannot attach to {node_id} in another zone: {e}"
            )))
        }
        Err(e) if e.kind() == ErrorKind::Quota => Err(Error::ResourceExhausted(format!(
            "node {node_id} cannot take more disks: {e}"
        ))),
        // Somebody else moved the disk meanwhile: the next look tells what happened.
        Err(e) if e.kind() == ErrorKind::Busy => {
            tracing::info!(error = %e, "attach raced a state change");
            Ok(())
        }
        Err(e) => Err(cloud_error(e)),
    }
}

pub(super) fn publish_context(volume_id: &str) -> HashMap<String, String> {
    [(PUBLISH_CONTEXT_DISK_ID.to_owned(), volume_id.to_owned())].into()
}
