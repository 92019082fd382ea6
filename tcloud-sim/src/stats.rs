//! The cloud API's counters: calls, successes and errors by code, per action, recorded by the
//! front door for every call and read (or reset) through `GET|DELETE /_sim/stats`. The COS
//! endpoint keeps its own (`cos::CosStats`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;

/// Calls, successes and errors per action, for benchmarks and tests (`GET /_sim/stats`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ActionStats {
    pub calls: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<BTreeMap<String, ActionStats>>,
}

impl Stats {
    pub(crate) fn record(&self, action: &str, result: &Result<Value, ApiError>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(action.to_owned()).or_default();
        entry.calls += 1;
        match result {
            Ok(_) => entry.ok += 1,
            Err(e) => *entry.errors.entry(e.code.clone()).or_default() += 1,
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, ActionStats> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
