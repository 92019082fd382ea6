//! The fake's clock for CBS transitions: starting one ([`State::pending`]) and completing every
//! due one at the next call ([`State::settle`]): ATTACHING → ATTACHED, DETACHING → UNATTACHED,
//! EXPANDING → the disk's previous state with its new size, and a CREATING snapshot → NORMAL. A
//! transition started while its operation is held (`FakeCbs::set_stuck`) waits until released.
//!
//! It reads time only through the `now` its callers pass, and never checks a request.

use tokio::time::Instant;

use super::model::{CbsOp, DiskState, Pending, SnapshotState, State};

impl State {
    /// A transition started now by `op`.
    pub(super) fn pending<S>(
        &self,
        op: CbsOp,
        target: S,
        now: Instant,
        new_size: Option<u64>,
    ) -> Pending<S> {
        Pending {
            op,
            target,
            started: now,
            due: now + self.transition_time,
            stuck: self.injector.is_stuck(op),
            new_size,
        }
    }

    pub(super) fn is_due<S>(&self, pending: &Pending<S>, now: Instant) -> bool {
        pending.due <= now && !(pending.stuck && self.injector.is_stuck(pending.op))
    }

    /// Completes every transition that is due at `now`.
    pub(super) fn settle(&mut self, now: Instant) {
        let due_disks: Vec<usize> = (0..self.disks.len())
            .filter(|&i| {
                self.disks[i]
                    .pending
                    .as_ref()
                    .is_some_and(|p| self.is_due(p, now))
            })
            .collect();
        for i in due_disks {
            let disk = &mut self.disks[i];
            let Some(pending) = disk.pending.take() else {
                continue;
            };
            match (disk.state, pending.target) {
                (DiskState::Attaching, DiskState::Attached) => disk.on_instance = true,
                (DiskState::Detaching, DiskState::Unattached) => {
                    disk.on_instance = false;
                    disk.instance_id = None;
                }
                _ => {}
            }
            if let Some(size) = pending.new_size {
                disk.disk_size = size;
            }
            disk.state = pending.target;
        }
        let due_snapshots: Vec<usize> = (0..self.snapshots.len())
            .filter(|&i| {
                self.snapshots[i]
                    .pending
                    .as_ref()
                    .is_some_and(|p| self.is_due(p, now))
            })
            .collect();
        for i in due_snapshots {
            let snapshot = &mut self.snapshots[i];
            snapshot.pending = None;
            snapshot.state = SnapshotState::Normal;
        }
    }
}
