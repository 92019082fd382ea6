//! Per-operation counters of the COS endpoint (`cos` in `GET /_sim/stats`): calls, successes,
//! errors by code, and the body bytes received from and sent to clients, which benchmarks read
//! as "bytes from origin".

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The operation name under which requests that never reached an operation (a bad signature, an
/// unknown route) are counted.
pub const NO_OPERATION: &str = "-";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStats {
    pub calls: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Request body bytes read.
    pub bytes_received: u64,
    /// Response body bytes sent.
    pub bytes_sent: u64,
}

#[derive(Debug, Default)]
pub struct CosStats {
    inner: Mutex<BTreeMap<String, OpStats>>,
}

impl CosStats {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, OpStats>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one answered call; `error` is its error code when it failed.
    pub fn record(&self, op: &str, error: Option<&str>, bytes_received: u64) {
        let mut map = self.lock();
        let entry = map.entry(op.to_owned()).or_default();
        entry.calls += 1;
        entry.bytes_received += bytes_received;
        match error {
            None => entry.ok += 1,
            Some(code) => *entry.errors.entry(code.to_owned()).or_default() += 1,
        }
    }

    /// Counts response body bytes as they leave.
    pub fn add_sent(&self, op: &str, bytes: u64) {
        self.lock().entry(op.to_owned()).or_default().bytes_sent += bytes;
    }

    pub fn snapshot(&self) -> BTreeMap<String, OpStats> {
        self.lock().clone()
    }

    pub fn reset(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_errors_and_bytes() {
        let stats = CosStats::default();
        stats.record("PutObject", None, 10);
        stats.record("PutObject", Some("SlowDown"), 3);
        stats.add_sent("GetObject", 7);
        stats.add_sent("GetObject", 5);
        let snapshot = stats.snapshot();
        let put = &snapshot["PutObject"];
        assert_eq!((put.calls, put.ok, put.bytes_received), (2, 1, 13));
        assert_eq!(put.errors["SlowDown"], 1);
        assert_eq!(snapshot["GetObject"].bytes_sent, 12);
        stats.reset();
        assert!(stats.snapshot().is_empty());
    }
}
