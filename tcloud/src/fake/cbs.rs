//! [`FakeCbs`]: a stateful in-memory [`CbsApi`] (CBS disks, snapshots and attachments, plus CVM
//! `DescribeZones`) that answers as the simulator's CBS service does (`sim/src/cbs*`): the same
//! request checks, disk and snapshot states, ClientToken idempotency, filters, paging and error
//! codes. Transitions (ATTACHING, DETACHING, EXPANDING, CREATING) complete after
//! [`FakeCbs::with_transition_time`], checked lazily at every call on `tokio::time::Instant`.
//!
//! It owns no device and no file: "attached" is a flag. Node-side effects (a device appearing)
//! are the mount fake's business.
//!
//! The module root holds the fake itself: its configuration, the inspection methods tests use, and
//! the [`CbsApi`] impl that runs every call through one lock. What the fake holds is in `model`;
//! each group of actions in its own module (`disks`, `attach`, `snapshots`, `settings`), their
//! shared request rules in `checks`, and the completion of transitions in `transitions`.

mod attach;
mod checks;
mod disks;
mod model;
mod settings;
mod snapshots;
#[cfg(test)]
mod tests;
mod transitions;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

pub use model::{CbsOp, FakeDisk, FakeSnapshot};
use model::{DiskRecord, State};

use crate::cbs::{
    CbsApi, CreateDisksRequest, CreateSnapshotRequest, DescribeDisksRequest, DescribeDisksResponse,
    DescribeSnapshotsRequest, DescribeSnapshotsResponse,
};
use crate::cvm::ZoneInfo;
use crate::error::CloudError;
use crate::fake::{ApiError, run_call, zones_from};

/// The in-memory CBS. Clones share one state, so a test can keep a handle to the fake it gave
/// to the code under test.
#[derive(Debug, Clone)]
pub struct FakeCbs {
    state: Arc<Mutex<State>>,
}

impl Default for FakeCbs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCbs {
    /// The simulator's defaults: zones `ap-guangzhou-3` (100003) and `ap-guangzhou-4` (100004),
    /// instance `ins-sim00001` in `ap-guangzhou-3`, at most 20 disks per instance, no zone
    /// quotas, no auto-snapshot policies, and transitions that complete by the next call.
    pub fn new() -> Self {
        FakeCbs {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long ATTACHING, DETACHING, EXPANDING and CREATING last. Zero (the default): the next
    /// call sees the final state.
    pub fn with_transition_time(self, time: Duration) -> Self {
        self.set_transition_time(time);
        self
    }

    /// Changes the transition time for transitions started from now on.
    pub fn set_transition_time(&self, time: Duration) {
        self.lock().transition_time = time;
    }

    /// Replaces the zones, as `(name, numeric ID)` pairs like `("ap-guangzhou-3", "100003")`.
    /// Instances keep their zones.
    pub fn with_zones(self, zones: &[(&str, &str)]) -> Self {
        self.lock().zones = zones_from(zones);
        self
    }

    /// Adds (or moves) an instance disks can attach to.
    pub fn with_instance(self, instance_id: &str, zone: &str) -> Self {
        self.lock()
            .instances
            .insert(instance_id.to_owned(), zone.to_owned());
        self
    }

    /// Most disks attached to one instance (the simulator's `--cbs-max-attach`).
    pub fn with_max_attach(self, max: u64) -> Self {
        self.lock().max_attach = max;
        self
    }

    /// Most disks `zone` may hold (`--cbs-quota`); beyond it CreateDisks fails with
    /// `ResourceInsufficient.OverQuota`.
    pub fn with_zone_quota(self, zone: &str, max: u64) -> Self {
        self.lock().quotas.insert(zone.to_owned(), max);
        self
    }

    /// An auto-snapshot policy that exists (`--cbs-auto-snapshot-policy`).
    pub fn with_auto_snapshot_policy(self, policy_id: &str) -> Self {
        self.lock()
            .auto_snapshot_policies
            .push(policy_id.to_owned());
        self
    }

    /// Makes the `n`th call of `op` (1-based, counted from now) fail with the API error `code`,
    /// without taking effect.
    pub fn fail_nth(&self, op: CbsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, false);
    }

    /// Makes the `n`th call of `op` take effect and then fail with `code`, as when the answer of
    /// a successful call is lost on its way back.
    pub fn lose_nth_response(&self, op: CbsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, true);
    }

    /// Holds the transitions `op` starts from now on (AttachDisks, DetachDisks, ResizeDisk,
    /// CreateSnapshot) until it is released: the simulator's `stuck` fault.
    pub fn set_stuck(&self, op: CbsOp, stuck: bool) {
        self.lock().injector.set_stuck(op, stuck);
    }

    /// How many times `op` was called, failed calls included.
    pub fn calls(&self, op: CbsOp) -> u64 {
        self.lock().injector.calls(op)
    }

    /// Every disk, in creation order, terminated prepaid disks (TORECYCLE) included.
    pub fn disks(&self) -> Vec<FakeDisk> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state.disks.iter().map(DiskRecord::inspect).collect()
    }

    pub fn disk(&self, disk_id: &str) -> Option<FakeDisk> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state.disk(disk_id).map(DiskRecord::inspect)
    }

    /// Every snapshot, in creation order.
    pub fn snapshots(&self) -> Vec<FakeSnapshot> {
        let now = Instant::now();
        let mut state = self.lock();
        state.settle(now);
        state.snapshots.iter().map(|s| s.inspect(now)).collect()
    }

    pub fn snapshot(&self, snapshot_id: &str) -> Option<FakeSnapshot> {
        let now = Instant::now();
        let mut state = self.lock();
        state.settle(now);
        state.snapshot(snapshot_id).map(|s| s.inspect(now))
    }

    /// The disk IDs a CreateDisks ClientToken answers with.
    pub fn client_token(&self, token: &str) -> Option<Vec<String>> {
        self.lock().client_tokens.get(token).cloned()
    }

    /// How long every call takes before it is answered (default zero), on tokio's clock: the
    /// simulator's `--latency-ms`, so concurrent callers overlap as they do against the cloud.
    pub fn with_latency(self, latency: Duration) -> Self {
        self.lock().latency = latency;
        self
    }

    async fn delay(&self) {
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// Runs one API call: counts it, completes due transitions, applies an injected failure.
    fn call<R>(
        &self,
        op: CbsOp,
        f: impl FnOnce(&mut State, Instant) -> Result<R, ApiError>,
    ) -> Result<R, CloudError> {
        run_call(&mut *self.lock(), op, op.action(), f)
    }
}

impl CbsApi for FakeCbs {
    async fn create_disks(
        &self,
        request: &CreateDisksRequest,
        _deadline: Option<Instant>,
    ) -> Result<Vec<String>, CloudError> {
        self.delay().await;
        self.call(CbsOp::CreateDisks, |s, _| s.create_disks(request))
    }

    async fn describe_disks(
        &self,
        request: &DescribeDisksRequest,
        _deadline: Option<Instant>,
    ) -> Result<DescribeDisksResponse, CloudError> {
        self.delay().await;
        self.call(CbsOp::DescribeDisks, |s, _| s.describe_disks(request))
    }

    async fn attach_disks(
        &self,
        disk_ids: &[String],
        instance_id: &str,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::AttachDisks, |s, now| {
            s.attach_disks(disk_ids, instance_id, now)
        })
    }

    async fn detach_disks(
        &self,
        disk_ids: &[String],
        instance_id: Option<&str>,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::DetachDisks, |s, now| {
            s.detach_disks(disk_ids, instance_id, now)
        })
    }

    async fn resize_disk(
        &self,
        disk_id: &str,
        size_gib: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::ResizeDisk, |s, now| {
            s.resize_disk(disk_id, size_gib, now)
        })
    }

    async fn terminate_disks(
        &self,
        disk_ids: &[String],
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::TerminateDisks, |s, _| s.terminate_disks(disk_ids))
    }

    async fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        _deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        self.delay().await;
        self.call(CbsOp::CreateSnapshot, |s, now| {
            s.create_snapshot(request, now)
        })
    }

    async fn describe_snapshots(
        &self,
        request: &DescribeSnapshotsRequest,
        _deadline: Option<Instant>,
    ) -> Result<DescribeSnapshotsResponse, CloudError> {
        self.delay().await;
        self.call(CbsOp::DescribeSnapshots, |s, now| {
            s.describe_snapshots(request, now)
        })
    }

    async fn delete_snapshots(
        &self,
        snapshot_ids: &[String],
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::DeleteSnapshots, |s, _| {
            s.delete_snapshots(snapshot_ids)
        })
    }

    async fn bind_auto_snapshot_policy(
        &self,
        policy_id: &str,
        disk_ids: &[String],
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::BindAutoSnapshotPolicy, |s, _| {
            s.bind_auto_snapshot_policy(policy_id, disk_ids)
        })
    }

    async fn modify_disk_extra_performance(
        &self,
        disk_id: &str,
        throughput_mbps: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::ModifyDiskExtraPerformance, |s, _| {
            s.modify_disk_extra_performance(disk_id, throughput_mbps)
        })
    }

    async fn modify_disk_type(
        &self,
        disk_id: &str,
        disk_type: &str,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.delay().await;
        self.call(CbsOp::ModifyDiskType, |s, _| {
            s.modify_disk_type(disk_id, disk_type)
        })
    }

    async fn describe_zones(
        &self,
        _deadline: Option<Instant>,
    ) -> Result<Vec<ZoneInfo>, CloudError> {
        self.delay().await;
        self.call(CbsOp::DescribeZones, |s, _| Ok(s.describe_zones()))
    }
}
