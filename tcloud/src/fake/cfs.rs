//! [`FakeCfs`]: a stateful in-memory [`CfsApi`] (CFS file systems, their mount targets and GID
//! quotas) that answers as the simulator's CFS service does (`sim/src/cfs*`): the same request
//! checks, `creating` → `available` life cycle, ClientToken idempotency (tokens live 2 hours and
//! die with their file system), paging and error codes. A new file system becomes `available`
//! after [`FakeCfs::with_transition_time`], checked lazily at every call on `tokio::time::Instant`.
//!
//! It exports nothing and owns no directory: the mount target is an address and an fsid only.
//!
//! The module root holds the fake itself: its configuration, the inspection methods tests use, and
//! the [`CfsApi`] impl that runs every call through one lock. What the fake holds is in `model`,
//! the actions in `filesystems`, and their argument rules in `checks`.

mod checks;
mod filesystems;
mod model;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

pub use model::{CLIENT_TOKEN_TTL, CfsOp, DEFAULT_PGROUP, FakeFileSystem};
use model::{FileSystemRecord, State};

use crate::cfs::{
    CfsApi, CreateFileSystemRequest, DescribeFileSystemsRequest, DescribeFileSystemsResponse,
    MountTarget,
};
use crate::error::CloudError;
use crate::fake::{ApiError, run_call, zones_from};

/// The in-memory CFS. Clones share one state, so a test can keep a handle to the fake it gave
/// to the code under test.
#[derive(Debug, Clone)]
pub struct FakeCfs {
    state: Arc<Mutex<State>>,
}

impl Default for FakeCfs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCfs {
    /// The simulator's defaults: zones `ap-guangzhou-3` (100003) and `ap-guangzhou-4` (100004),
    /// only the permission group `pgroupbasic`, no file-system limit, DescribeCfsFileSystems of an
    /// unknown ID answering an empty list, and file systems available by the next call.
    pub fn new() -> Self {
        FakeCfs {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a new file system stays `creating`. Zero (the default): the next call sees it
    /// `available`.
    pub fn with_transition_time(self, time: Duration) -> Self {
        self.set_transition_time(time);
        self
    }

    /// Changes the transition time for file systems created from now on.
    pub fn set_transition_time(&self, time: Duration) {
        self.lock().transition_time = time;
    }

    /// Replaces the zones, as `(name, numeric ID)` pairs like `("ap-guangzhou-3", "100003")`.
    pub fn with_zones(self, zones: &[(&str, &str)]) -> Self {
        self.lock().zones = zones_from(zones);
        self
    }

    /// A permission group that exists besides `pgroupbasic` (`--cfs-pgroup`).
    pub fn with_pgroup(self, pgroup_id: &str) -> Self {
        self.lock().pgroups.push(pgroup_id.to_owned());
        self
    }

    /// Most file systems the account may hold (`--cfs-max-file-systems`).
    pub fn with_max_file_systems(self, max: u64) -> Self {
        self.lock().max_file_systems = Some(max);
        self
    }

    /// DescribeCfsFileSystems of an unknown `FileSystemId` fails with
    /// `ResourceNotFound.FileSystemNotFound` instead of answering an empty list
    /// (`--cfs-describe-not-found-error`).
    pub fn with_describe_not_found_error(self) -> Self {
        self.lock().describe_not_found_error = true;
        self
    }

    /// Makes the `n`th call of `op` (1-based, counted from now) fail with the API error `code`,
    /// without taking effect.
    pub fn fail_nth(&self, op: CfsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, false);
    }

    /// Makes the `n`th call of `op` take effect and then fail with `code`, as when the answer of
    /// a successful call is lost on its way back.
    pub fn lose_nth_response(&self, op: CfsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, true);
    }

    /// Holds file systems created from now on in `creating` while `op` (CreateFileSystem) is
    /// held: the simulator's `stuck` fault.
    pub fn set_stuck(&self, op: CfsOp, stuck: bool) {
        self.lock().injector.set_stuck(op, stuck);
    }

    /// How many times `op` was called, failed calls included.
    pub fn calls(&self, op: CfsOp) -> u64 {
        self.lock().injector.calls(op)
    }

    /// Sets the bytes `SizeByte` reports for an available file system. False when there is no
    /// such file system.
    pub fn set_used_bytes(&self, file_system_id: &str, bytes: u64) -> bool {
        self.lock()
            .file_system_mut(file_system_id)
            .map(|f| f.used_bytes = bytes)
            .is_some()
    }

    /// Every file system, in creation order.
    pub fn file_systems(&self) -> Vec<FakeFileSystem> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
            .file_systems
            .iter()
            .map(FileSystemRecord::inspect)
            .collect()
    }

    pub fn file_system(&self, file_system_id: &str) -> Option<FakeFileSystem> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
            .file_system(file_system_id)
            .map(FileSystemRecord::inspect)
    }

    /// The file system a live ClientToken answers with.
    pub fn client_token(&self, token: &str) -> Option<String> {
        let state = self.lock();
        state
            .token_target(token, Instant::now())
            .map(|f| f.file_system_id.clone())
    }

    /// Runs one API call: counts it, completes due transitions, applies an injected failure.
    fn call<R>(
        &self,
        op: CfsOp,
        f: impl FnOnce(&mut State, Instant) -> Result<R, ApiError>,
    ) -> Result<R, CloudError> {
        run_call(&mut *self.lock(), op, op.action(), f)
    }
}

impl CfsApi for FakeCfs {
    async fn create_file_system(
        &self,
        request: &CreateFileSystemRequest,
        _deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        self.call(CfsOp::CreateFileSystem, |s, now| {
            s.create_file_system(request, now)
        })
    }

    async fn describe_file_systems(
        &self,
        request: &DescribeFileSystemsRequest,
        _deadline: Option<Instant>,
    ) -> Result<DescribeFileSystemsResponse, CloudError> {
        self.call(CfsOp::DescribeFileSystems, |s, _| {
            s.describe_file_systems(request)
        })
    }

    async fn describe_mount_targets(
        &self,
        file_system_id: &str,
        _deadline: Option<Instant>,
    ) -> Result<Vec<MountTarget>, CloudError> {
        self.call(CfsOp::DescribeMountTargets, |s, _| {
            s.describe_mount_targets(file_system_id)
        })
    }

    async fn delete_file_system(
        &self,
        file_system_id: &str,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CfsOp::DeleteFileSystem, |s, now| {
            s.delete_file_system(file_system_id, now)
        })
    }

    async fn set_group_quota(
        &self,
        file_system_id: &str,
        gid: u32,
        capacity_gib: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CfsOp::SetGroupQuota, |s, _| {
            s.set_group_quota(file_system_id, gid, capacity_gib)
        })
    }
}
