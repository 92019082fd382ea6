//! The daemon's figures for the FUSE host's `/metrics`: every few seconds (and at exit) the
//! counters are written, atomically, to the file the host named in `$CSI_FUSE_STATS_FILE`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cos_cache::CacheStatsSnapshot;
use cos_fuse::fs::FsStats;
use cos_fuse::fuse::FuseCounters;
use serde_json::{Value, json};

const INTERVAL: Duration = Duration::from_secs(2);

/// Where the figures come from.
pub struct Sources {
    pub counters: Arc<FuseCounters>,
    pub fs: Box<dyn Fn() -> FsStats + Send + Sync>,
    pub cache: Option<Box<dyn Fn() -> CacheStatsSnapshot + Send + Sync>>,
    /// Bytes done and total of the warm-up, when one runs.
    pub warmup: Arc<Mutex<Option<(u64, u64)>>>,
}

fn sample(name: &str, labels: Value, value: u64) -> Value {
    json!({ "name": name, "labels": labels, "value": value })
}

impl Sources {
    fn samples(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let fuse = self.counters.snapshot();
        for (op, (ok, errors)) in &fuse.ops {
            out.push(sample(
                "fuse_operations_total",
                json!({ "op": op }),
                ok + errors,
            ));
            out.push(sample(
                "fuse_operation_errors_total",
                json!({ "op": op }),
                *errors,
            ));
        }
        out.push(sample(
            "fuse_bytes_total",
            json!({ "direction": "read" }),
            fuse.bytes_read,
        ));
        out.push(sample(
            "fuse_bytes_total",
            json!({ "direction": "written" }),
            fuse.bytes_written,
        ));
        let fs = (self.fs)();
        out.push(sample("fuse_memory_bytes", json!({}), fs.memory_in_use));
        out.push(sample("fuse_memory_peak_bytes", json!({}), fs.memory_peak));
        if let Some(cache) = &self.cache {
            let c = cache();
            for (result, requests, bytes) in [
                ("hit", c.hit_requests, c.hit_bytes),
                ("miss", c.miss_requests, c.miss_bytes),
            ] {
                out.push(sample(
                    "fuse_cache_requests_total",
                    json!({ "result": result }),
                    requests,
                ));
                out.push(sample(
                    "fuse_cache_bytes_total",
                    json!({ "result": result }),
                    bytes,
                ));
            }
            out.push(sample(
                "fuse_cache_origin_bytes_total",
                json!({}),
                c.origin_bytes,
            ));
            out.push(sample("fuse_cache_evictions_total", json!({}), c.evictions));
            out.push(sample(
                "fuse_cache_corrupt_blocks_total",
                json!({}),
                c.corrupt_blocks,
            ));
            out.push(sample("fuse_cache_used_bytes", json!({}), c.used_bytes));
            out.push(sample(
                "fuse_cache_capacity_bytes",
                json!({}),
                c.capacity_bytes,
            ));
        }
        if let Some((done, total)) = *self.warmup.lock().unwrap_or_else(|p| p.into_inner()) {
            out.push(sample("fuse_warmup_done_bytes", json!({}), done));
            out.push(sample("fuse_warmup_total_bytes", json!({}), total));
        }
        out
    }

    /// Writes the figures once; a failure is logged, never fatal.
    pub fn write(&self, path: &PathBuf) {
        let body = json!({ "samples": self.samples() }).to_string();
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "cannot write the stats file");
        }
    }

    /// Writes the figures every few seconds, for as long as the runtime lives.
    pub fn spawn(self, path: PathBuf, rt: &tokio::runtime::Runtime) -> Arc<Sources> {
        let sources = Arc::new(self);
        let looping = Arc::clone(&sources);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            loop {
                tick.tick().await;
                looping.write(&path);
            }
        });
        sources
    }
}
