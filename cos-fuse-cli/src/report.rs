//! The daemon's figures for the FUSE host's `/metrics`: every few seconds (and at exit) the
//! counters are written, atomically, to the file the host named in `$CSI_FUSE_STATS_FILE`, with
//! what `cos-fuse host status` shows beside them: the warm-up's progress and the last error
//! (bounded, never a key).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cos_cache::{CacheStatsSnapshot, PreloadProgress};
use cos_fuse::fs::FsStats;
use cos_fuse::fuse::FuseCounters;
use serde_json::{Value, json};

const INTERVAL: Duration = Duration::from_secs(2);

/// Where the figures come from.
pub struct Sources {
    pub counters: Arc<FuseCounters>,
    pub fs: Box<dyn Fn() -> FsStats + Send + Sync>,
    pub cache: Option<Box<dyn Fn() -> CacheStatsSnapshot + Send + Sync>>,
    /// The warm-up's progress and the last error.
    pub status: SharedStatus,
}

/// What the daemon says of itself in the stats file beyond its samples.
#[derive(Debug, Default)]
pub struct DaemonStatus {
    warmup: Option<PreloadProgress>,
    last_error: Option<String>,
    /// The bucket client's view of its keys: the last request refused for them.
    auth: Option<Arc<cos_client::AuthWatch>>,
}

/// The daemon's status, shared between what changes it and the writer.
pub type SharedStatus = Arc<Mutex<DaemonStatus>>;

/// The most characters of the last error written.
const MAX_ERROR_CHARS: usize = fuse_host::MAX_ERROR_CHARS;

impl DaemonStatus {
    pub fn set_warmup(status: &SharedStatus, progress: PreloadProgress) {
        status.lock().unwrap_or_else(|p| p.into_inner()).warmup = Some(progress);
    }

    /// Reports the last authentication failure of the client `auth` watches (its code and
    /// operation, never a key), and whether the most recent request was one.
    pub fn watch_auth(status: &SharedStatus, auth: Arc<cos_client::AuthWatch>) {
        status.lock().unwrap_or_else(|p| p.into_inner()).auth = Some(auth);
    }

    pub fn warmup(status: &SharedStatus) -> Option<PreloadProgress> {
        status.lock().unwrap_or_else(|p| p.into_inner()).warmup
    }

    /// Keeps `error` as the last one: on one line, at most [`MAX_ERROR_CHARS`] characters. The
    /// callers pass error texts, which never hold a key.
    pub fn set_error(status: &SharedStatus, error: &str) {
        let one_line: String = error
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_ERROR_CHARS)
            .collect();
        status.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(one_line);
    }

    fn to_json(&self) -> Value {
        let warmup = self.warmup.map(|p| {
            json!({
                "objects_done": p.objects_done,
                "objects_total": p.objects_total,
                "bytes_done": p.bytes_done,
                "bytes_total": p.bytes_total,
            })
        });
        let auth_failure = self.auth.as_ref().and_then(|auth| {
            let last = auth.last_failure()?;
            Some(json!({
                "code": last.code,
                "op": last.op,
                "at_unix_secs": last.at_unix_secs,
                "current": auth.failing().is_some(),
            }))
        });
        json!({ "warmup": warmup, "last_error": self.last_error, "auth_failure": auth_failure })
    }
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
                "tencentcloud_csi_fuse_operations_total",
                json!({ "op": op }),
                ok + errors,
            ));
            out.push(sample(
                "tencentcloud_csi_fuse_operation_errors_total",
                json!({ "op": op }),
                *errors,
            ));
        }
        out.push(sample(
            "tencentcloud_csi_fuse_bytes_total",
            json!({ "direction": "read" }),
            fuse.bytes_read,
        ));
        out.push(sample(
            "tencentcloud_csi_fuse_bytes_total",
            json!({ "direction": "written" }),
            fuse.bytes_written,
        ));
        let fs = (self.fs)();
        out.push(sample(
            "tencentcloud_csi_fuse_memory_bytes",
            json!({}),
            fs.memory_in_use,
        ));
        out.push(sample(
            "tencentcloud_csi_fuse_memory_peak_bytes",
            json!({}),
            fs.memory_peak,
        ));
        if let Some(cache) = &self.cache {
            let c = cache();
            for (result, requests, bytes) in [
                ("hit", c.hit_requests, c.hit_bytes),
                ("miss", c.miss_requests, c.miss_bytes),
            ] {
                out.push(sample(
                    "tencentcloud_csi_fuse_cache_requests_total",
                    json!({ "result": result }),
                    requests,
                ));
                out.push(sample(
                    "tencentcloud_csi_fuse_cache_bytes_total",
                    json!({ "result": result }),
                    bytes,
                ));
            }
            out.push(sample(
                "tencentcloud_csi_fuse_cache_origin_bytes_total",
                json!({}),
                c.origin_bytes,
            ));
            out.push(sample(
                "tencentcloud_csi_fuse_cache_evictions_total",
                json!({}),
                c.evictions,
            ));
            out.push(sample(
                "tencentcloud_csi_fuse_cache_corrupt_blocks_total",
                json!({}),
                c.corrupt_blocks,
            ));
            out.push(sample(
                "tencentcloud_csi_fuse_cache_used_bytes",
                json!({}),
                c.used_bytes,
            ));
            out.push(sample(
                "tencentcloud_csi_fuse_cache_capacity_bytes",
                json!({}),
                c.capacity_bytes,
            ));
        }
        if let Some(p) = DaemonStatus::warmup(&self.status) {
            out.push(sample(
                "tencentcloud_csi_fuse_warmup_done_bytes",
                json!({}),
                p.bytes_done,
            ));
            out.push(sample(
                "tencentcloud_csi_fuse_warmup_total_bytes",
                json!({}),
                p.bytes_total,
            ));
        }
        out
    }

    /// Writes the figures once; a failure is logged, never fatal.
    pub fn write(&self, path: &PathBuf) {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_json();
        let body = json!({ "samples": self.samples(), "status": status }).to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_holds_warmup_and_a_bounded_one_line_error() {
        let status = SharedStatus::default();
        assert_eq!(
            status.lock().unwrap().to_json(),
            json!({ "warmup": null, "last_error": null, "auth_failure": null })
        );
        DaemonStatus::set_warmup(
            &status,
            PreloadProgress {
                objects_done: 1,
                objects_total: 2,
                bytes_done: 3,
                bytes_total: 4,
            },
        );
        DaemonStatus::set_error(&status, &format!("line one\n{}", "x".repeat(500)));
        let value = status.lock().unwrap().to_json();
        assert_eq!(value["warmup"]["objects_total"], 2);
        assert_eq!(value["warmup"]["bytes_done"], 3);
        let error = value["last_error"].as_str().unwrap();
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS);
        assert!(error.starts_with("line one x"), "{error}");
    }
}
