//! Completing pending transitions, with their data-plane side effects, and keeping the data plane
//! in line with the state across restarts.
//!
//! - ATTACHING → ATTACHED: a loop device for the image, shown to the instance (link + serial).
//! - DETACHING → UNATTACHED: the instance's view removed, the loop device released.
//! - EXPANDING → back: the image grows, and the loop device with it when attached.
//! - CREATING → NORMAL (snapshots): the data was copied when the call was made.
//!
//! A completion that fails (say `losetup` does) leaves the transition pending and retries it a
//! second later, as a real stuck operation would look from outside. Transitions started under a
//! `stuck` fault wait while that fault is in force.

use std::sync::Arc;
use std::time::Duration;

use super::model::{DiskState, Pending, SnapshotState};
use super::{BlockDevices, Cbs};
use crate::error::ApiError;
use crate::state::unix_now_ms;

/// How often the ticker looks for due transitions.
pub const TICK: Duration = Duration::from_millis(20);
/// How long a failed completion waits before the next attempt.
const RETRY_MS: i64 = 1000;

impl Cbs {
    /// Starts the background task that completes due transitions every [`TICK`].
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cbs = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                cbs.complete_due().await;
            }
        })
    }

    /// Whether `pending` may complete now.
    fn is_due<S>(&self, pending: &Pending<S>, now_ms: i64) -> bool {
        pending.due_at_unix_ms <= now_ms && !(pending.stuck && self.faults.stuck(&pending.action))
    }

    /// Completes every transition that is due; returns how many completed.
    pub async fn complete_due(&self) -> usize {
        let now = unix_now_ms();
        let (disks, snapshots) = self.store.read(|s| {
            let disks: Vec<_> = s
                .cbs
                .disks
                .iter()
                .filter_map(|d| {
                    let pending = d.pending.as_ref()?;
                    self.is_due(pending, now)
                        .then(|| (d.disk_id.clone(), pending.clone()))
                })
                .collect();
            let snapshots: Vec<_> = s
                .cbs
                .snapshots
                .iter()
                .filter_map(|snap| {
                    let pending = snap.pending.as_ref()?;
                    self.is_due(pending, now)
                        .then(|| (snap.snapshot_id.clone(), pending.clone()))
                })
                .collect();
            (disks, snapshots)
        });
        let mut completed = 0;
        for (disk_id, pending) in disks {
            match self.complete_disk(&disk_id, &pending).await {
                Ok(()) => completed += 1,
                Err(e) => {
                    tracing::warn!(disk = %disk_id, action = %pending.action, error = %e.message,
                        "CBS transition failed; retrying in a second");
                    let _ = self.store.try_update(|s| {
                        if let Some(d) = s.cbs.disk_mut(&disk_id)
                            && let Some(p) = d.pending.as_mut()
                            && *p == pending
                        {
                            p.due_at_unix_ms = unix_now_ms() + RETRY_MS;
                        }
                        Ok(())
                    });
                }
            }
        }
        for (snapshot_id, pending) in snapshots {
            let done = self.store.try_update(|s| {
                if let Some(snap) = s
                    .cbs
                    .snapshots
                    .iter_mut()
                    .find(|x| x.snapshot_id == snapshot_id)
                    && snap.pending.as_ref() == Some(&pending)
                {
                    snap.state = SnapshotState::Normal;
                    snap.pending = None;
                }
                Ok(())
            });
            if done.is_ok() {
                completed += 1;
                tracing::info!(snapshot = %snapshot_id, "CBS snapshot NORMAL");
            }
        }
        completed
    }

    /// Performs the side effects of one disk transition, then records its end state, provided
    /// the disk still has that same transition pending.
    async fn complete_disk(
        &self,
        disk_id: &str,
        pending: &Pending<DiskState>,
    ) -> Result<(), ApiError> {
        let Some(disk) = self.store.read(|s| s.cbs.disk(disk_id).cloned()) else {
            return Ok(());
        };
        let image = self.layout.disk_image(disk_id);
        let devices = Arc::clone(&self.devices);
        let layout = self.layout.clone();
        let instance = disk.instance_id.clone().unwrap_or_default();
        let io = |e: std::io::Error| ApiError::internal(e.to_string());
        let id = disk_id.to_owned();
        let device = match (disk.state, pending.target) {
            (DiskState::Attaching, DiskState::Attached) => {
                let device = crate::state::run_blocking(move || {
                    let device = devices.attach(&image)?;
                    layout.publish(&instance, &id, &device)?;
                    Ok(device)
                })
                .await
                .map_err(io)?;
                Some(device)
            }
            (DiskState::Detaching, DiskState::Unattached) => {
                let device = disk.loop_device.clone();
                crate::state::run_blocking(move || {
                    layout.unpublish(&instance, &id, device.as_deref())?;
                    match &device {
                        Some(device) => devices.detach(device, &image),
                        None => Ok(()),
                    }
                })
                .await
                .map_err(io)?;
                None
            }
            (DiskState::Expanding, _) => {
                let size = pending.new_size.unwrap_or(disk.disk_size);
                let device = disk.loop_device.clone();
                crate::state::run_blocking(move || {
                    super::dataplane::grow_image(&image, size)?;
                    match &device {
                        Some(device) => devices.refresh_size(device, &image),
                        None => Ok(()),
                    }
                })
                .await
                .map_err(io)?;
                disk.loop_device.clone()
            }
            (state, target) => {
                return Err(ApiError::internal(format!(
                    "no way from {} to {}",
                    state.as_str(),
                    target.as_str()
                )));
            }
        };
        self.store.try_update(|s| {
            let Some(d) = s.cbs.disk_mut(disk_id) else {
                return Ok(());
            };
            if d.pending.as_ref() != Some(pending) {
                return Ok(());
            }
            d.state = pending.target;
            d.pending = None;
            d.loop_device = device.clone();
            if pending.target == DiskState::Unattached {
                d.instance_id = None;
            }
            if let Some(size) = pending.new_size {
                d.disk_size = size;
            }
            Ok(())
        })?;
        tracing::info!(disk = disk_id, state = pending.target.as_str(), device = ?device, "CBS transition complete");
        Ok(())
    }

    /// At start-up: creates the configured instances' device trees, and gives every disk the
    /// state calls attached a loop device backed by its image again (after a reboot, or when
    /// someone released it), rewriting the instance's link and serial.
    pub async fn reconcile(&self) {
        for instance in &self.sim.instances {
            if let Err(e) = self.layout.prepare_instance(&instance.id) {
                tracing::warn!(instance = %instance.id, error = %e, "cannot create the instance's device tree");
            }
        }
        let attached: Vec<(String, String, String)> = self.store.read(|s| {
            s.cbs
                .disks
                .iter()
                .filter(|d| matches!(d.state, DiskState::Attached | DiskState::Expanding))
                .filter_map(|d| {
                    Some((
                        d.disk_id.clone(),
                        d.instance_id.clone()?,
                        d.loop_device.clone()?,
                    ))
                })
                .collect()
        });
        for (disk_id, instance, recorded) in attached {
            let image = self.layout.disk_image(&disk_id);
            let devices: Arc<dyn BlockDevices> = Arc::clone(&self.devices);
            let layout = self.layout.clone();
            let id = disk_id.clone();
            let old = recorded.clone();
            let result = crate::state::run_blocking(move || {
                let device = if devices.backing_file(&old).as_deref() == Some(image.as_path()) {
                    old.clone()
                } else {
                    devices.attach(&image)?
                };
                if device != old {
                    layout.unpublish(&instance, &id, Some(&old))?;
                }
                layout.publish(&instance, &id, &device)?;
                Ok(device)
            })
            .await;
            match result {
                Ok(device) if device == recorded => {}
                Ok(device) => {
                    tracing::info!(disk = %disk_id, was = %recorded, now = %device, "CBS disk re-attached");
                    let _ = self.store.try_update(|s| {
                        if let Some(d) = s.cbs.disk_mut(&disk_id) {
                            d.loop_device = Some(device.clone());
                        }
                        Ok(())
                    });
                }
                Err(e) => {
                    tracing::warn!(disk = %disk_id, error = %e, "cannot re-attach a CBS disk the state says is attached");
                }
            }
        }
    }

    /// `--cbs-detach-on-exit`: releases every loop device and removes the instances' views; the
    /// state still says attached, so the next start attaches them again.
    pub async fn detach_all(&self) {
        let attached: Vec<(String, Option<String>, String)> = self.store.read(|s| {
            s.cbs
                .disks
                .iter()
                .filter_map(|d| {
                    Some((
                        d.disk_id.clone(),
                        d.instance_id.clone(),
                        d.loop_device.clone()?,
                    ))
                })
                .collect()
        });
        for (disk_id, instance, device) in attached {
            let image = self.layout.disk_image(&disk_id);
            let devices = Arc::clone(&self.devices);
            let layout = self.layout.clone();
            let id = disk_id.clone();
            let result = crate::state::run_blocking(move || {
                if let Some(instance) = &instance {
                    layout.unpublish(instance, &id, Some(&device))?;
                }
                devices.detach(&device, &image)
            })
            .await;
            if let Err(e) = result {
                tracing::warn!(disk = %disk_id, error = %e, "cannot detach on exit");
            }
        }
    }
}
