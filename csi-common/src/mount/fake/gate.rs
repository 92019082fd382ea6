//! [`FakeGate`]: a call of the fake mounter held until the test lets it go on, so a test can
//! act while an operation (a format, a growth) is in progress. It knows nothing of the fake.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The next call of an operation, held until the test releases it ([`FakeMounter::block_next`])
/// or drops the gate (so a failed test cannot leave a blocking task waiting forever).
#[derive(Debug)]
pub struct FakeGate {
    pub(super) inner: Arc<GateInner>,
}

impl Drop for FakeGate {
    fn drop(&mut self) {
        self.inner.release();
    }
}

#[derive(Debug, Default)]
pub(super) struct GateInner {
    state: (Mutex<GateState>, Condvar),
}

#[derive(Debug, Default)]
struct GateState {
    arrived: bool,
    released: bool,
}

impl FakeGate {
    /// Waits until the held call has arrived, or `timeout` passes; true when it has.
    pub fn wait_arrived(&self, timeout: Duration) -> bool {
        self.inner.wait_arrived(timeout)
    }

    /// Lets the held call go on (or the next one through, if it has not arrived yet).
    pub fn release(&self) {
        self.inner.release();
    }
}

impl GateInner {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_arrived(&self, timeout: Duration) -> bool {
        let gate = self.lock();
        let (gate, _) = self
            .state
            .1
            .wait_timeout_while(gate, timeout, |g| !g.arrived)
            .unwrap_or_else(|p| p.into_inner());
        gate.arrived
    }

    fn release(&self) {
        self.lock().released = true;
        self.state.1.notify_all();
    }

    /// The call's side: arrives and waits for the release.
    pub(super) fn pass(&self) {
        let mut gate = self.lock();
        gate.arrived = true;
        self.state.1.notify_all();
        let _released = self
            .state
            .1
            .wait_while(gate, |g| !g.released)
            .unwrap_or_else(|p| p.into_inner());
    }
}
