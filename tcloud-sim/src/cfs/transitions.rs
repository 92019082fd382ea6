//! Completing `creating` → `available` with its data-plane side effect (the export), and keeping
//! the data plane in line with the state across restarts.
//!
//! A completion that fails (the export cannot be written) leaves the file system `creating` and
//! retries a second later. Creations started under a `stuck` fault wait while that fault is in
//! force, also across a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::Cfs;
use super::model::{LifeCycleState, MountTarget, Pending, well_formed_id};
use crate::error::ApiError;
use crate::state::unix_now_ms;

/// How often the ticker looks for due transitions.
pub const TICK: Duration = Duration::from_millis(20);
/// How long a failed completion waits before the next attempt.
const RETRY_MS: i64 = 1000;

impl Cfs {
    /// Starts the background task that completes due transitions every [`TICK`].
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cfs = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                cfs.complete_due().await;
            }
        })
    }

    /// Whether `pending` may complete now.
    fn is_due(&self, pending: &Pending, now_ms: i64) -> bool {
        pending.due_at_unix_ms <= now_ms && !(pending.stuck && self.faults.stuck(&pending.action))
    }

    /// Makes every due `creating` file system `available`; returns how many it completed.
    pub async fn complete_due(&self) -> usize {
        let now = unix_now_ms();
        let due: Vec<(String, Pending, Option<MountTarget>, bool)> = self.store.read(|s| {
            s.cfs
                .file_systems
                .iter()
                .filter_map(|f| {
                    let pending = f.pending.as_ref()?;
                    self.is_due(pending, now).then(|| {
                        (
                            f.file_system_id.clone(),
                            pending.clone(),
                            f.mount_target.clone(),
                            f.storage_type.is_turbo(),
                        )
                    })
                })
                .collect()
        });
        let mut completed = 0;
        for (id, pending, target, turbo) in due {
            match self.complete_one(&id, &pending, target, turbo).await {
                Ok(true) => completed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(file_system = %id, error = %e.message,
                        "CFS file system cannot become available; retrying in a second");
                    let _ = self.store.try_update(|s| {
                        if let Some(f) = s.cfs.file_system_mut(&id)
                            && let Some(p) = f.pending.as_mut()
                            && *p == pending
                        {
                            p.due_at_unix_ms = unix_now_ms() + RETRY_MS;
                        }
                        Ok(())
                    });
                }
            }
        }
        completed
    }

    /// Publishes the export (a Turbo file system's, `turbo`, with its root directory), then
    /// records `available` if the file system still has that same transition pending; otherwise
    /// takes the export back.
    async fn complete_one(
        &self,
        id: &str,
        pending: &Pending,
        target: Option<MountTarget>,
        turbo: bool,
    ) -> Result<bool, ApiError> {
        let layout = self.layout.clone();
        let fs_id = id.to_owned();
        let published = target.clone();
        crate::state::run_blocking(move || {
            layout.create_fs_dir(&fs_id, turbo)?;
            match &published {
                Some(t) => layout.publish(&t.ip_address, &fs_id, &t.fsid),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let recorded = self.store.try_update(|s| {
            let Some(f) = s.cfs.file_system_mut(id) else {
                return Ok(false);
            };
            if f.pending.as_ref() != Some(pending) {
                return Ok(false);
            }
            f.state = LifeCycleState::Available;
            f.pending = None;
            Ok(true)
        })?;
        if recorded {
            tracing::info!(file_system = id, ip = ?target.as_ref().map(|t| &t.ip_address), "CFS file system available");
        } else if let Some(t) = target
            && self.store.read(|s| s.cfs.file_system(id).is_none())
        {
            // Deleted meanwhile: the export must not outlive it.
            let layout = self.layout.clone();
            let _ = crate::state::run_blocking(move || layout.unpublish(&t.ip_address)).await;
        }
        Ok(recorded)
    }

    /// At start-up: every file system in the state has its directory (a Turbo one with its root
    /// directory), every available one with a mount target is in the export table exactly once,
    /// and nothing else is: stale exports and the directories of file systems the state no longer
    /// has (a delete interrupted by a stop) are removed.
    pub async fn reconcile(&self) {
        let file_systems = self.store.read(|s| s.cfs.file_systems.clone());
        let layout = self.layout.clone();
        let result = crate::state::run_blocking(move || {
            let mut exported = HashSet::new();
            for fs in &file_systems {
                let dir = layout.fs_dir(&fs.file_system_id);
                let turbo = fs.storage_type.is_turbo();
                if !dir.is_dir() || (turbo && !layout.turbo_root(&fs.file_system_id).is_dir()) {
                    if fs.state == LifeCycleState::Available {
                        tracing::warn!(file_system = %fs.file_system_id,
                            "the directory of an available CFS file system (or a Turbo one's root directory) was missing; it is empty now");
                    }
                    layout.create_fs_dir(&fs.file_system_id, turbo)?;
                }
                if fs.state != LifeCycleState::Available {
                    continue;
                }
                let Some(target) = &fs.mount_target else {
                    continue;
                };
                if !layout.is_published(&target.ip_address, &fs.file_system_id, &target.fsid) {
                    tracing::info!(file_system = %fs.file_system_id, ip = %target.ip_address,
                        "CFS export restored");
                    layout.publish(&target.ip_address, &fs.file_system_id, &target.fsid)?;
                }
                exported.insert(target.ip_address.clone());
                exported.insert(format!("{}.fsid", target.ip_address));
            }
            for name in layout.export_entries()? {
                if !exported.contains(&name) {
                    tracing::info!(entry = %name, "stale CFS export removed");
                    layout.remove_export_entry(&name)?;
                }
            }
            let known: HashSet<&str> = file_systems
                .iter()
                .map(|f| f.file_system_id.as_str())
                .collect();
            for name in layout.fs_dirs()? {
                if well_formed_id(&name, "cfs-") && !known.contains(name.as_str()) {
                    tracing::info!(directory = %name, "directory of a deleted CFS file system removed");
                    layout.remove_fs_dir(&name)?;
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot reconcile the CFS data plane with the state");
        }
    }
}
