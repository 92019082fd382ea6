//! Per-volume in-flight guards: a second concurrent operation on the same volume gets ABORTED,
//! as the CSI spec asks, and the guard releases on drop even when the handler fails or panics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

#[derive(Debug)]
pub struct InFlightGuard {
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
            keys: Arc::clone(&self.keys),
            key: volume_id.to_owned(),
        })
    }

    pub fn is_busy(&self, volume_id: &str) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(volume_id)
    }
}

impl Drop for InFlightGuard {
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
}
