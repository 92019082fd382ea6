//! Per-volume in-flight guards: a second concurrent operation on the same volume gets ABORTED,
//! as the CSI spec asks, and the guard releases on drop even when the handler fails or panics.
//!
//! The guard protects work, not a handler: [`InFlightGuard::run_blocking`] moves a share of it into
//! the blocking task, so a handler dropped by its caller's deadline leaves the volume busy until
//! the work ends, and a tool left running past its timeout keeps it busy until the tool exits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{CsiError, CsiResult};
use crate::mount::MountError;
use crate::mount::command::StillRunning;

#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Marks one volume busy. Clones share the mark: the volume is free again when the last clone
/// drops.
#[derive(Debug, Clone)]
pub struct InFlightGuard {
    /// Only its drop matters: the last one frees the volume.
    _held: Arc<Held>,
}

#[derive(Debug)]
struct Held {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `volume_id` busy until the guard drops, or fails with ABORTED naming the volume.
    pub fn acquire(&self, volume_id: &str) -> Result<InFlightGuard, super::CsiError> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !keys.insert(volume_id.to_owned()) {
            return Err(super::CsiError::Aborted(format!(
                "an operation on volume {volume_id} is already in progress"
            )));
        }
        Ok(InFlightGuard {
            _held: Arc::new(Held {
                keys: Arc::clone(&self.keys),
                key: volume_id.to_owned(),
            }),
        })
    }

    pub fn is_busy(&self, volume_id: &str) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(volume_id)
    }
}

impl InFlightGuard {
    /// Runs `work` on the blocking pool with this volume held for as long as the work runs, even
    /// when the awaiting future is dropped first; and when the work fails on a tool left running
    /// past its timeout, for as long as that tool runs. A retry meanwhile gets ABORTED.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> CsiResult<T> + Send + 'static,
    ) -> CsiResult<T> {
        run_blocking(Some(self), work).await
    }
}

/// [`InFlightGuard::run_blocking`] with the guard optional: work that holds no volume (stats) runs
/// the same way.
pub async fn run_blocking<T: Send + 'static>(
    guard: Option<&InFlightGuard>,
    work: impl FnOnce() -> CsiResult<T> + Send + 'static,
) -> CsiResult<T> {
    let held = guard.cloned();
    tokio::task::spawn_blocking(move || {
        let result = work();
        if let (Some(held), Err(error)) = (held, &result)
            && let Some(running) = still_running(error)
        {
            running.keep_until_exit(held);
        }
        result
    })
    .await
    .map_err(|e| CsiError::Internal(format!("mount task failed: {e}")))?
}

/// The tool an error left running past its timeout, if any.
pub fn still_running(error: &CsiError) -> Option<&StillRunning> {
    match error {
        CsiError::Mount(MountError::Command(command)) => command.still_running(),
        _ => None,
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_aborted_until_release() {
        let inflight = InFlight::new();
        let guard = inflight.acquire("disk-1").unwrap();
        let err = inflight.acquire("disk-1").unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        assert!(err.to_string().contains("disk-1"));
        let _other = inflight.acquire("disk-2").unwrap();
        drop(guard);
        assert!(!inflight.is_busy("disk-1"));
        inflight.acquire("disk-1").unwrap();
    }

    #[test]
    fn guard_releases_on_panic() {
        let inflight = InFlight::new();
        let clone = inflight.clone();
        let result = std::panic::catch_unwind(move || {
            let _guard = clone.acquire("disk-9").unwrap();
            panic!("handler failed");
        });
        assert!(result.is_err());
        assert!(inflight.acquire("disk-9").is_ok());
    }

    #[test]
    fn a_clone_keeps_the_volume_busy_until_the_last_drops() {
        let inflight = InFlight::new();
        let guard = inflight.acquire("disk-3").unwrap();
        let share = guard.clone();
        drop(guard);
        assert!(inflight.is_busy("disk-3"));
        drop(share);
        assert!(!inflight.is_busy("disk-3"));
    }

    #[tokio::test]
    async fn blocking_work_holds_the_volume_after_its_caller_is_dropped() {
        let inflight = InFlight::new();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let guard = inflight.acquire("disk-4").unwrap();
        let call = {
            let guard = guard.clone();
            async move {
                guard
                    .run_blocking(move || {
                        let _ = released.recv();
                        Ok(())
                    })
                    .await
            }
        };
        drop(guard);
        // The caller's deadline: the handler future is dropped while the work runs.
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), call).await;
        assert!(timed_out.is_err());
        assert!(inflight.is_busy("disk-4"), "released while the work runs");
        release.send(()).unwrap();
        for _ in 0..200 {
            if !inflight.is_busy("disk-4") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("still busy after the work ended");
    }

    #[tokio::test]
    async fn a_tool_left_running_holds_the_volume_until_it_exits() {
        use crate::mount::CommandError;
        let inflight = InFlight::new();
        let running = StillRunning::new();
        let tool = running.clone();
        let guard = inflight.acquire("disk-5").unwrap();
        let err = guard
            .run_blocking(move || -> CsiResult<()> {
                Err(CsiError::Mount(MountError::Command(
                    CommandError::TimedOut {
                        program: "resize2fs".into(),
                        args: vec![],
                        timeout: std::time::Duration::from_secs(1),
                        still_running: Some(tool),
                    },
                )))
            })
            .await
            .unwrap_err();
        drop(guard);
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert!(inflight.is_busy("disk-5"), "released while the tool runs");
        running.exited();
        assert!(!inflight.is_busy("disk-5"));
    }
}
