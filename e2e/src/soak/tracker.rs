//! What the soak counts while it runs, shared by the workers and the chaos task: lifecycles per
//! driver, RPC errors by code, kills per kind and the recovery after each, lost bytes. It decides
//! nothing and starts nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::env::Driver;

/// Which side of a driver an RPC talks to: the controller (the cloud) or the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Controller,
    Node,
}

/// A kill whose recovery is still awaited: the next successful RPC, started after the kill, by a
/// lifecycle of one of `drivers` on `plane` (any plane when `None`).
#[derive(Debug)]
struct PendingKill {
    kind: String,
    at: Instant,
    drivers: Vec<Driver>,
    plane: Option<Plane>,
}

#[derive(Debug, Default)]
struct Inner {
    completed: BTreeMap<&'static str, u64>,
    failed: BTreeMap<&'static str, u64>,
    rpc_errors: BTreeMap<String, u64>,
    kills: BTreeMap<String, u64>,
    pending: Vec<PendingKill>,
    /// (kill kind, time to recover).
    recoveries: Vec<(String, Duration)>,
    lost: Vec<String>,
    failures: Vec<String>,
    files_verified: u64,
    bytes_verified: u64,
    stuck_windows: u64,
    /// Injected error answers by `cloud|cos/CODE`, summed over the simulator's lives.
    faults: BTreeMap<String, u64>,
    cloud_calls: u64,
}

/// The error codes fault rules answer with (error rates and rate limits); the simulator counts
/// them with every other error of the same code, and makes no other of these on its own here.
const INJECTED_CODES: &[&str] = &["InternalError", "RequestLimitExceeded", "SlowDown"];

#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
}

/// The figures at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub completed: BTreeMap<&'static str, u64>,
    pub failed: BTreeMap<&'static str, u64>,
    pub rpc_errors: BTreeMap<String, u64>,
    pub kills: BTreeMap<String, u64>,
    /// The slowest recovery, with the kind of kill.
    pub slowest_recovery: Option<(String, Duration)>,
    pub recoveries: usize,
    /// Kills after which no affected lifecycle succeeded an RPC before the end.
    pub unrecovered: Vec<String>,
    pub lost: Vec<String>,
    pub failures: Vec<String>,
    pub files_verified: u64,
    pub bytes_verified: u64,
    pub stuck_windows: u64,
    pub faults: BTreeMap<String, u64>,
    pub cloud_calls: u64,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A successful RPC that started at `started`: recovers every pending kill it answers.
    pub fn rpc_ok(&self, driver: Driver, plane: Plane, started: Instant) {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut recovered = Vec::new();
        inner.pending.retain(|kill| {
            let answers = started >= kill.at
                && kill.drivers.contains(&driver)
                && kill.plane.is_none_or(|p| p == plane);
            if answers {
                recovered.push((kill.kind.clone(), now.duration_since(kill.at)));
            }
            !answers
        });
        inner.recoveries.extend(recovered);
    }

    pub fn rpc_error(&self, op: &str, code: &str) {
        *self
            .lock()
            .rpc_errors
            .entry(format!("{op}/{code}"))
            .or_default() += 1;
    }

    /// A kill at `at` of a `kind` that `drivers` depend on (for their `plane`, or all).
    pub fn killed(&self, kind: &str, at: Instant, drivers: &[Driver], plane: Option<Plane>) {
        let mut inner = self.lock();
        *inner.kills.entry(kind.to_owned()).or_default() += 1;
        inner.pending.push(PendingKill {
            kind: kind.to_owned(),
            at,
            drivers: drivers.to_vec(),
            plane,
        });
    }

    /// Adds one life's worth of the simulator's counters (`GET /_sim/stats`, read before it is
    /// killed and at the end).
    pub fn add_sim_stats(&self, stats: &serde_json::Value) {
        let mut inner = self.lock();
        let Some(map) = stats.as_object() else {
            return;
        };
        for (action, counts) in map {
            let (plane, entries) = if action == "cos" {
                ("cos", counts.as_object().cloned().unwrap_or_default())
            } else {
                inner.cloud_calls += counts["calls"].as_u64().unwrap_or(0);
                let mut one = serde_json::Map::new();
                one.insert(action.clone(), counts.clone());
                ("cloud", one)
            };
            for op in entries.values() {
                for (code, n) in op["errors"].as_object().into_iter().flatten() {
                    if INJECTED_CODES.contains(&code.as_str()) {
                        *inner.faults.entry(format!("{plane}/{code}")).or_default() +=
                            n.as_u64().unwrap_or(0);
                    }
                }
            }
        }
    }

    pub fn stuck_window(&self) {
        self.lock().stuck_windows += 1;
    }

    pub fn completed(&self, driver: Driver) {
        *self.lock().completed.entry(driver.binary()).or_default() += 1;
    }

    pub fn failed(&self, driver: Driver, why: String) {
        let mut inner = self.lock();
        *inner.failed.entry(driver.binary()).or_default() += 1;
        inner.failures.push(why);
    }

    pub fn lost(&self, what: String) {
        self.lock().lost.push(what);
    }

    pub fn verified(&self, bytes: u64) {
        let mut inner = self.lock();
        inner.files_verified += 1;
        inner.bytes_verified += bytes;
    }

    pub fn figures(&self) -> Figures {
        let inner = self.lock();
        Figures {
            completed: inner.completed.clone(),
            failed: inner.failed.clone(),
            rpc_errors: inner.rpc_errors.clone(),
            kills: inner.kills.clone(),
            slowest_recovery: inner.recoveries.iter().max_by_key(|(_, d)| *d).cloned(),
            recoveries: inner.recoveries.len(),
            unrecovered: inner.pending.iter().map(|k| k.kind.clone()).collect(),
            lost: inner.lost.clone(),
            failures: inner.failures.clone(),
            files_verified: inner.files_verified,
            bytes_verified: inner.bytes_verified,
            stuck_windows: inner.stuck_windows,
            faults: inner.faults.clone(),
            cloud_calls: inner.cloud_calls,
        }
    }
}
