//! What `cos-fuse host status` shows of a mount beyond its state: the volume (from the target
//! path), the bucket and prefix (from the daemon's command line, only those two flags), uptime and
//! resident memory (from `/proc`), and buffers, cache use, warm-up and last error (from the stats
//! file the daemon writes). It only reads; it never starts, stops or signals anything, and it
//! passes on no other argument of the daemon's, so no secret.

use std::path::{Component, Path};

use serde::Deserialize;

use super::records::{Record, Records};
use crate::protocol::{AuthFailureStatus, MAX_ERROR_CHARS, MountDetails, WarmupStatus};

/// Clock ticks per second in `/proc/PID/stat` and `/proc/uptime`'s terms: Linux reports
/// `USER_HZ`, which is 100 on every architecture it exports to user space.
const TICKS_PER_SECOND: u64 = 100;

/// The parts of the daemon's stats file read here (the samples are also read by `stats`).
#[derive(Debug, Default, Deserialize)]
struct StatsFile {
    #[serde(default)]
    samples: Vec<Sample>,
    #[serde(default)]
    status: DaemonStatus,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    value: u64,
}

/// What a daemon says of itself beyond its samples.
#[derive(Debug, Default, Deserialize)]
struct DaemonStatus {
    #[serde(default)]
    warmup: Option<WarmupStatus>,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    auth_failure: Option<AuthFailureStatus>,
}

/// Everything the host can tell of the mount recorded in `record` (whose daemon may be gone:
/// `alive` says whether `/proc` and the command line are its).
pub(super) fn details(records: &Records, record: &Record, alive: bool) -> MountDetails {
    let mut details = MountDetails {
        volume: volume_of(&record.target),
        ..MountDetails::default()
    };
    if alive {
        if let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", record.pid)) {
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            details.bucket = flag_value(&args, "--bucket");
            details.prefix = flag_value(&args, "--prefix");
        }
        details.uptime_secs = uptime_secs(record.start_ticks);
        details.rss_bytes = std::fs::read_to_string(format!("/proc/{}/status", record.pid))
            .ok()
            .and_then(|s| rss_bytes(&s));
    }
    let path = records.file_for(&record.target, "stats", "json");
    if let Some(stats) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<StatsFile>(&b).ok())
    {
        let sample = |name: &str| {
            stats
                .samples
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.value)
        };
        details.buffer_bytes = sample("tencentcloud_csi_fuse_memory_bytes");
        details.cache_used_bytes = sample("tencentcloud_csi_fuse_cache_used_bytes");
        details.cache_capacity_bytes = sample("tencentcloud_csi_fuse_cache_capacity_bytes");
        details.warmup = stats.status.warmup;
        details.last_error = stats.status.last_error.map(|e| bounded_error(&e));
        details.auth_failure = stats.status.auth_failure.map(|mut f| {
            f.code = f.code.chars().take(64).collect();
            f.op = f.op.chars().take(64).collect();
            f
        });
    }
    details
}

/// The volume a target belongs to: the component after `kubernetes.io~csi` (a pod's mount) or
/// `pv` (a staging mount) under kubelet, else the target's last component that is not `mount` or
/// `globalmount`.
pub(super) fn volume_of(target: &Path) -> String {
    let parts: Vec<String> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let after = |marker: &str| {
        parts
            .iter()
            .position(|p| p == marker)
            .and_then(|i| parts.get(i + 1))
            .cloned()
    };
    after("kubernetes.io~csi")
        .or_else(|| after("pv"))
        .or_else(|| {
            parts
                .iter()
                .rev()
                .find(|p| *p != "mount" && *p != "globalmount")
                .cloned()
        })
        .unwrap_or_default()
}

/// The value of `flag` in an argument vector: `--flag VALUE` or `--flag=VALUE`.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            return iter.next().cloned();
        }
        if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_owned());
        }
    }
    None
}

/// Seconds since a process that started `start_ticks` after boot started.
fn uptime_secs(start_ticks: u64) -> Option<u64> {
    if start_ticks == 0 {
        return None;
    }
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let since_boot: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let since_boot = since_boot.max(0.0) as u64;
    Some(since_boot.saturating_sub(start_ticks / TICKS_PER_SECOND))
}

/// `VmRSS` of a `/proc/PID/status`, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// An error's text on one line, cut to [`MAX_ERROR_CHARS`] characters.
pub(super) fn bounded_error(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one_line = one_line.trim();
    if one_line.chars().count() <= MAX_ERROR_CHARS {
        return one_line.to_owned();
    }
    let mut cut: String = one_line.chars().take(MAX_ERROR_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_named_from_kubelet_paths() {
        for (target, volume) in [
            (
                "/var/lib/kubelet/pods/1-2/volumes/kubernetes.io~csi/pvc-7/mount",
                "pvc-7",
            ),
            (
                "/var/lib/kubelet/plugins/kubernetes.io/csi/pv/pvc-8/globalmount",
                "pvc-8",
            ),
            ("/var/lib/kubelet/plugins/cos/mounts/abc123", "abc123"),
            ("/tmp/x/mount", "x"),
        ] {
            assert_eq!(volume_of(Path::new(target)), volume, "{target}");
        }
    }

    #[test]
    fn only_bucket_and_prefix_are_read_from_the_arguments() {
        let args: Vec<String> = [
            "cos-fuse",
            "mount",
            "--bucket",
            "b-1250000000",
            "--prefix=data/x",
            "--credentials-stdin",
            "/mnt",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            flag_value(&args, "--bucket").as_deref(),
            Some("b-1250000000")
        );
        assert_eq!(flag_value(&args, "--prefix").as_deref(), Some("data/x"));
        assert_eq!(flag_value(&args, "--endpoint"), None);
        assert_eq!(flag_value(&args, "--bucketx"), None);
    }

    #[test]
    fn rss_uptime_and_errors_are_read_and_bounded() {
        assert_eq!(
            rss_bytes("Name:\tcos-fuse\nVmRSS:\t   2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(rss_bytes("Name:\tx\n"), None);
        assert_eq!(uptime_secs(0), None);
        assert!(uptime_secs(1).is_some());
        let long = "e\n".repeat(300);
        let cut = bounded_error(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(!cut.contains('\n'));
        assert_eq!(bounded_error(" short "), "short");
    }

    #[test]
    fn the_daemons_auth_failure_is_read_from_its_stats_file() {
        let file: StatsFile = serde_json::from_str(
            r#"{"samples":[],"status":{"warmup":null,"last_error":null,
                "auth_failure":{"code":"ExpiredToken","op":"GetObject","at_unix_secs":7,"current":true}}}"#,
        )
        .unwrap();
        let failure = file.status.auth_failure.unwrap();
        assert_eq!(
            (failure.code.as_str(), failure.current),
            ("ExpiredToken", true)
        );
        // A daemon of before this field reports none.
        let old: StatsFile = serde_json::from_str(r#"{"status":{"last_error":"x"}}"#).unwrap();
        assert!(old.status.auth_failure.is_none());
    }
}
