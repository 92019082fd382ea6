//! The daemons' figures on the host's `/metrics`: each daemon writes samples to the file named by
//! [`STATS_ENV`]; every [`STATS_INTERVAL`] the host reads them all and serves them by kind.
//!
//! Gauges (memory held now, cache used) are sums (or maxima) over the daemons that report now.
//! Counters (`*_total`) only ever go up, as Prometheus expects: the host serves, per series, the
//! retained totals of daemons it no longer counts live ([`DaemonTotals`]' base) plus the last
//! values of the live ones. A daemon's last values fold into the base when its record or its stats
//! file goes, or when any of its counters goes down (it restarted and counts from 0 again). The
//! base is one number per kind and series, and it is kept in the state directory
//! ([`TOTALS_FILE`], 0600), so a restarted host goes on from where it was instead of serving a
//! drop that `rate()` would read as a reset. What is lost: increments a daemon made after the
//! host's last read before the daemon died (at most one interval), and all of a daemon's counts
//! when the totals file is lost or unreadable.
//!
//! Only the metrics, label keys and label values listed here pass, so a daemon cannot grow the
//! label sets. It reads files and sets families; it never starts, stops or asks a daemon anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_common::metrics::Metrics;
use serde::{Deserialize, Serialize};

use super::records::{Record, Records};

/// The variable telling a daemon where to write its figures for the host's `/metrics`.
pub const STATS_ENV: &str = "CSI_FUSE_STATS_FILE";
/// How often the host reads its daemons' figures.
pub(super) const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// The file in the state directory keeping the counters' base across host restarts.
pub(super) const TOTALS_FILE: &str = "metrics-totals.json";

/// What a daemon writes to `$CSI_FUSE_STATS_FILE`: samples of the metrics in [`DAEMON_METRICS`].
#[derive(Debug, Deserialize)]
struct DaemonStats {
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: u64,
}

/// How the samples of several daemons of one kind combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    Sum,
    /// A figure of something they share (the node's cache): the largest report.
    Max,
}

/// The daemons' metrics the host serves, by kind: name, type, help, how live daemons merge
/// (counters always sum, see the module note). Anything else a daemon reports is ignored, so a
/// daemon cannot grow the label sets.
const DAEMON_METRICS: &[(&str, &str, &str, Merge)] = &[
    (
        "tencentcloud_csi_fuse_operations_total",
        "counter",
        "FUSE requests the daemons served, by kind and operation.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_operation_errors_total",
        "counter",
        "FUSE requests answered with an error, by kind and operation.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_bytes_total",
        "counter",
        "Bytes read and written through FUSE mounts, by kind and direction.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_memory_bytes",
        "gauge",
        "Read-ahead and write buffer memory the daemons hold now.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_memory_peak_bytes",
        "gauge",
        "The most buffer memory one daemon held at once.",
        Merge::Max,
    ),
    (
        "tencentcloud_csi_fuse_cache_requests_total",
        "counter",
        "Block cache reads by result (hit or miss).",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_cache_bytes_total",
        "counter",
        "Bytes read through the block cache by result (hit or miss).",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_cache_origin_bytes_total",
        "counter",
        "Bytes the block cache fetched from the object store.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_cache_evictions_total",
        "counter",
        "Blocks evicted from the block cache.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_cache_corrupt_blocks_total",
        "counter",
        "Cached blocks that failed their checksum and were fetched again.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_cache_used_bytes",
        "gauge",
        "Bytes the node's block cache holds on disk.",
        Merge::Max,
    ),
    (
        "tencentcloud_csi_fuse_cache_capacity_bytes",
        "gauge",
        "The node's block cache capacity.",
        Merge::Max,
    ),
    (
        "tencentcloud_csi_fuse_warmup_done_bytes",
        "gauge",
        "Bytes of preloaded prefixes already in the cache.",
        Merge::Sum,
    ),
    (
        "tencentcloud_csi_fuse_warmup_total_bytes",
        "gauge",
        "Bytes of the prefixes being preloaded.",
        Merge::Sum,
    ),
];

/// Label keys a daemon may use, each with the values it may take; any other value is `other`.
const DAEMON_LABELS: &[(&str, &[&str])] = &[
    // The operations cos-fuse counts (`cos_fuse::fuse::counters::OPS`).
    (
        "op",
        &[
            "lookup",
            "getattr",
            "setattr",
            "mknod",
            "mkdir",
            "unlink",
            "rmdir",
            "rename",
            "open",
            "read",
            "write",
            "flush",
            "release",
            "fallocate",
            "fsync",
            "opendir",
            "readdir",
            "create",
            "symlink",
            "link",
        ],
    ),
    ("direction", &["read", "written"]),
    ("result", &["hit", "miss"]),
];

/// One served series: metric, kind, bounded labels (all from the lists above).
type SeriesKey = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// The metric's entry in [`DAEMON_METRICS`].
/// Also under the name without the project's prefix, as daemons (and saved totals) of releases
/// before it report them: a host upgraded under running daemons keeps counting them.
fn metric(name: &str) -> Option<&'static (&'static str, &'static str, &'static str, Merge)> {
    DAEMON_METRICS
        .iter()
        .find(|(n, ..)| *n == name || n.strip_prefix(csi_common::metrics::PREFIX) == Some(name))
}

/// The labels a daemon reported, cut to the listed keys and values.
fn bounded_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = labels
        .into_iter()
        .filter_map(|(key, value)| {
            let (key, values) = DAEMON_LABELS.iter().find(|(k, _)| k == key)?;
            let value = values.iter().find(|v| *v == value).copied();
            Some((*key, value.unwrap_or("other")))
        })
        .collect();
    out.sort_unstable();
    out
}

/// The counters' state across reads: what the live daemons said last, and the base retained from
/// the others. Bounded: the base has one number per kind and series, `last` one map per recorded
/// daemon.
#[derive(Debug, Default)]
pub(super) struct DaemonTotals {
    base: BTreeMap<SeriesKey, u64>,
    last: BTreeMap<PathBuf, BTreeMap<SeriesKey, u64>>,
    /// Where the state is kept; `None` keeps it in memory only.
    file: Option<PathBuf>,
    /// What was last written to `file`, so an unchanged state is not written again.
    written: Option<Vec<u8>>,
}

/// [`DaemonTotals`] on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedTotals {
    base: Vec<SavedSeries>,
    last: BTreeMap<PathBuf, Vec<SavedSeries>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedSeries {
    name: String,
    kind: String,
    labels: BTreeMap<String, String>,
    value: u64,
}

fn save_series(series: &BTreeMap<SeriesKey, u64>) -> Vec<SavedSeries> {
    series
        .iter()
        .map(|((name, kind, labels), value)| SavedSeries {
            name: (*name).to_owned(),
            kind: (*kind).to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: *value,
        })
        .collect()
}

/// Saved series back as keys; anything no longer listed (a renamed metric) is dropped.
fn load_series(saved: Vec<SavedSeries>) -> BTreeMap<SeriesKey, u64> {
    let mut out = BTreeMap::new();
    for series in saved {
        let Some(&(name, "counter", ..)) = metric(&series.name) else {
            continue;
        };
        let key = (
            name,
            kind_label(&series.kind),
            bounded_labels(&series.labels),
        );
        let total: &mut u64 = out.entry(key).or_default();
        *total = total.saturating_add(series.value);
    }
    out
}

impl DaemonTotals {
    /// The totals kept in `state_dir` ([`TOTALS_FILE`]); empty when there are none or they cannot
    /// be read (then the counters start again from the live daemons, which Prometheus reads as
    /// one reset).
    pub(super) fn load(state_dir: &Path) -> DaemonTotals {
        let file = state_dir.join(TOTALS_FILE);
        let saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<SavedTotals>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %file.display(), error = %e, "ignoring unreadable metric totals");
                SavedTotals::default()
            }),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %file.display(), error = %e, "cannot read metric totals");
                }
                SavedTotals::default()
            }
        };
        DaemonTotals {
            base: load_series(saved.base),
            last: saved
                .last
                .into_iter()
                .map(|(target, series)| (target, load_series(series)))
                .collect(),
            file: Some(file),
            written: None,
        }
    }

    /// Takes in what the daemon at `target` reports now. When any counter went down the daemon
    /// started again from 0: everything it said before goes into the base.
    fn observe(&mut self, target: &Path, now: BTreeMap<SeriesKey, u64>) {
        let last = self.last.entry(target.to_owned()).or_default();
        let reset = now
            .iter()
            .any(|(key, value)| last.get(key).is_some_and(|before| value < before));
        if reset {
            for (key, value) in std::mem::take(last) {
                let base = self.base.entry(key).or_default();
                *base = base.saturating_add(value);
            }
        }
        // A series the daemon no longer reports keeps its last value: it is still counted.
        last.extend(now);
    }

    /// Folds the last values of every daemon not in `live` into the base.
    fn retain_live(&mut self, live: &BTreeSet<PathBuf>) {
        let gone: Vec<PathBuf> = self
            .last
            .keys()
            .filter(|target| !live.contains(*target))
            .cloned()
            .collect();
        for target in gone {
            for (key, value) in self.last.remove(&target).unwrap_or_default() {
                let base = self.base.entry(key).or_default();
                *base = base.saturating_add(value);
            }
        }
    }

    /// Every counter series: the base plus the live daemons' last values.
    fn counters(&self) -> BTreeMap<SeriesKey, u64> {
        let mut out = self.base.clone();
        for series in self.last.values() {
            for (key, value) in series {
                let total = out.entry(key.clone()).or_default();
                *total = total.saturating_add(*value);
            }
        }
        out
    }

    /// Writes the state to its file (atomically, 0600) when it changed since the last write.
    fn persist(&mut self) {
        let Some(file) = &self.file else {
            return;
        };
        let saved = SavedTotals {
            base: save_series(&self.base),
            last: self
                .last
                .iter()
                .map(|(target, series)| (target.clone(), save_series(series)))
                .collect(),
        };
        let Ok(bytes) = serde_json::to_vec(&saved) else {
            return;
        };
        if self.written.as_ref() == Some(&bytes) {
            return;
        }
        match write_private(file, &bytes) {
            Ok(()) => self.written = Some(bytes),
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "cannot keep metric totals")
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file (mode 0600), synced, then renamed.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Reads every recorded daemon's figures and serves them (by kind) on `/metrics`: gauges over the
/// daemons reporting now, counters monotonic through `totals`.
pub(super) fn collect(records: &Records, metrics: &Metrics, totals: &mut DaemonTotals) {
    let recorded: Vec<Record> = records.all();
    let mut gauges: BTreeMap<SeriesKey, u64> = BTreeMap::new();
    let mut live: BTreeSet<PathBuf> = BTreeSet::new();
    for record in recorded {
        let path = records.file_for(&record.target, "stats", "json");
        let Some(stats) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<DaemonStats>(&b).ok())
        else {
            continue;
        };
        let kind = kind_label(&record.kind);
        let mut counters: BTreeMap<SeriesKey, u64> = BTreeMap::new();
        for sample in stats.samples {
            let Some(&(name, metric_type, _, merge)) = metric(&sample.name) else {
                continue;
            };
            let key = (name, kind, bounded_labels(&sample.labels));
            if metric_type == "counter" {
                // Values folded into `other` add up.
                let total = counters.entry(key).or_default();
                *total = total.saturating_add(sample.value);
            } else {
                let total = gauges.entry(key).or_default();
                *total = match merge {
                    Merge::Sum => total.saturating_add(sample.value),
                    Merge::Max => (*total).max(sample.value),
                };
            }
        }
        totals.observe(&record.target, counters);
        live.insert(record.target);
    }
    totals.retain_live(&live);
    totals.persist();
    let mut all = totals.counters();
    all.extend(gauges);
    for &(name, metric_type, help, _) in DAEMON_METRICS {
        let series: Vec<(Vec<(&'static str, &str)>, u64)> = all
            .iter()
            .filter(|((n, ..), _)| *n == name)
            .map(|((_, kind, labels), value)| {
                let mut pairs: Vec<(&'static str, &str)> = vec![("kind", kind)];
                pairs.extend(labels.iter().map(|(k, v)| (*k, *v)));
                (pairs, *value)
            })
            .collect();
        metrics.set_family(name, help, metric_type, &series);
    }
}

/// Labels are bounded: a kind outside the known set is `other`.
pub(super) fn kind_label(kind: &str) -> &'static str {
    match kind {
        "cos-fuse" => "cos-fuse",
        "goosefs-fuse" => "goosefs-fuse",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Host {
        _dir: tempfile::TempDir,
        state_dir: PathBuf,
        records: Records,
        metrics: std::sync::Arc<Metrics>,
        totals: DaemonTotals,
    }

    impl Host {
        fn new() -> Host {
            let dir = tempfile::tempdir().unwrap();
            let state_dir = dir.path().to_owned();
            Host {
                records: Records::open(&state_dir).unwrap(),
                totals: DaemonTotals::load(&state_dir),
                metrics: Metrics::new(),
                state_dir,
                _dir: dir,
            }
        }

        /// The host restarted: new records, registry and totals over the same state directory.
        fn restart(self) -> Host {
            Host {
                records: Records::open(&self.state_dir).unwrap(),
                totals: DaemonTotals::load(&self.state_dir),
                metrics: Metrics::new(),
                state_dir: self.state_dir,
                _dir: self._dir,
            }
        }

        fn record(&self, target: &str, kind: &str) {
            self.records
                .save(&Record {
                    target: PathBuf::from(target),
                    kind: kind.to_owned(),
                    fingerprint: "f".to_owned(),
                    pid: 1,
                    start_ticks: 1,
                })
                .unwrap();
        }

        /// The daemon at `target` writes its figures: `reads` read operations, `memory` held now.
        fn report(&self, target: &str, reads: u64, memory: u64) {
            let stats = serde_json::json!({ "samples": [
                { "name": "tencentcloud_csi_fuse_operations_total", "labels": { "op": "read" }, "value": reads },
                { "name": "tencentcloud_csi_fuse_memory_bytes", "labels": {}, "value": memory },
            ]});
            std::fs::write(
                self.records.file_for(Path::new(target), "stats", "json"),
                serde_json::to_vec(&stats).unwrap(),
            )
            .unwrap();
        }

        fn collect(&mut self) -> String {
            collect(&self.records, &self.metrics, &mut self.totals);
            self.metrics.render()
        }

        fn reads(&mut self) -> u64 {
            self.collect();
            self.metrics.counter(
                "tencentcloud_csi_fuse_operations_total",
                &[("kind", "cos-fuse"), ("op", "read")],
            )
        }

        fn memory(&mut self) -> Option<u64> {
            let text = self.collect();
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("tencentcloud_csi_fuse_memory_bytes{kind=\"cos-fuse\"} ")
                })
                .map(|v| v.parse().unwrap())
        }
    }

    /// Today's sum over live daemons drops by the exited daemon's count; served counters never do.
    #[test]
    fn an_exited_daemons_counts_stay_in_the_counter() {
        let mut host = Host::new();
        host.record("/mnt/a", "cos-fuse");
        host.record("/mnt/b", "cos-fuse");
        host.report("/mnt/a", 10, 100);
        host.report("/mnt/b", 4, 50);
        assert_eq!(host.reads(), 14);
        assert_eq!(host.memory(), Some(150));
        host.records.forget(Path::new("/mnt/a"));
        assert_eq!(host.reads(), 14, "a's 10 reads are kept");
        assert_eq!(host.memory(), Some(50), "gauges cover live daemons only");
        host.report("/mnt/b", 6, 50);
        assert_eq!(host.reads(), 16);
        host.records.forget(Path::new("/mnt/b"));
        assert_eq!(host.reads(), 16, "no daemon left, the counter stays");
        assert_eq!(host.memory(), None, "no daemon left, no memory figure");
    }

    /// A daemon that restarts counts from 0 again: its old count stays, its new one adds.
    #[test]
    fn a_restarted_daemons_counts_add_to_the_old_ones() {
        let mut host = Host::new();
        host.record("/mnt/a", "cos-fuse");
        host.report("/mnt/a", 10, 100);
        assert_eq!(host.reads(), 10);
        host.report("/mnt/a", 0, 0);
        assert_eq!(host.reads(), 10);
        host.report("/mnt/a", 3, 0);
        assert_eq!(host.reads(), 13);
        host.report("/mnt/a", 5, 0);
        assert_eq!(host.reads(), 15);
        // The stats file goes (the daemon's files were cleared) and a new daemon writes again.
        std::fs::remove_file(host.records.file_for(Path::new("/mnt/a"), "stats", "json")).unwrap();
        assert_eq!(host.reads(), 15);
        host.report("/mnt/a", 2, 0);
        assert_eq!(host.reads(), 17);
    }

    /// A restarted host goes on from its kept totals; the file is private to root.
    #[test]
    fn a_restarted_host_keeps_the_totals() {
        let mut host = Host::new();
        host.record("/mnt/a", "cos-fuse");
        host.record("/mnt/b", "cos-fuse");
        host.report("/mnt/a", 10, 0);
        host.report("/mnt/b", 4, 0);
        assert_eq!(host.reads(), 14);
        host.records.forget(Path::new("/mnt/a"));
        assert_eq!(host.reads(), 14);
        let file = host.state_dir.join(TOTALS_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // While the host is down, b reads 2 more; then the new host adopts it.
        host.report("/mnt/b", 6, 0);
        let mut host = host.restart();
        assert_eq!(host.reads(), 16);
        // An unreadable totals file starts again from the live daemons (one reset, no error).
        std::fs::write(&file, b"not json").unwrap();
        let mut host = host.restart();
        assert_eq!(host.reads(), 6);
    }

    /// A daemon of a release before the prefix (re-adopted by an upgraded host) keeps counting.
    #[test]
    fn unprefixed_names_of_older_daemons_are_read() {
        let mut host = Host::new();
        host.record("/mnt/a", "cos-fuse");
        let stats = serde_json::json!({ "samples": [
            { "name": "fuse_operations_total", "labels": { "op": "read" }, "value": 7 },
        ]});
        std::fs::write(
            host.records.file_for(Path::new("/mnt/a"), "stats", "json"),
            serde_json::to_vec(&stats).unwrap(),
        )
        .unwrap();
        assert_eq!(host.reads(), 7);
        assert!(!host.collect().contains("\nfuse_operations_total"));
    }

    /// Label keys and values outside the lists never reach `/metrics`.
    #[test]
    fn daemon_labels_are_bounded() {
        let mut host = Host::new();
        host.record("/mnt/a", "some-new-daemon");
        let stats = serde_json::json!({ "samples": [
            { "name": "tencentcloud_csi_fuse_operations_total",
              "labels": { "op": "/volumes/pvc-123/secret", "volume": "pvc-123" }, "value": 2 },
            { "name": "tencentcloud_csi_fuse_operations_total", "labels": { "op": "ioctl" }, "value": 3 },
            { "name": "tencentcloud_csi_fuse_bytes_total", "labels": { "direction": "sideways" }, "value": 4 },
            { "name": "made_up_total", "labels": {}, "value": 5 },
        ]});
        std::fs::write(
            host.records.file_for(Path::new("/mnt/a"), "stats", "json"),
            serde_json::to_vec(&stats).unwrap(),
        )
        .unwrap();
        let text = host.collect();
        assert!(
            text.contains("tencentcloud_csi_fuse_operations_total{kind=\"other\",op=\"other\"} 5"),
            "{text}"
        );
        assert!(
            text.contains(
                "tencentcloud_csi_fuse_bytes_total{direction=\"other\",kind=\"other\"} 4"
            ) || text.contains(
                "tencentcloud_csi_fuse_bytes_total{kind=\"other\",direction=\"other\"} 4"
            ),
            "{text}"
        );
        for absent in [
            "pvc-123", "secret", "ioctl", "sideways", "made_up", "volume",
        ] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }

    /// The host's `/metrics` (daemon figures, its own series, process and build info) passes the
    /// real `promtool check metrics`; without promtool this fails and says to install it.
    #[test]
    fn the_hosts_exposition_passes_promtool() {
        let mut host = Host::new();
        host.record("/mnt/a", "cos-fuse");
        host.record("/mnt/g", "goosefs-fuse");
        host.report("/mnt/a", 10, 100);
        let stats = serde_json::json!({ "samples": [
            { "name": "tencentcloud_csi_fuse_cache_requests_total", "labels": { "result": "hit" }, "value": 7 },
            { "name": "tencentcloud_csi_fuse_cache_used_bytes", "labels": {}, "value": 4096 },
            { "name": "tencentcloud_csi_fuse_bytes_total", "labels": { "direction": "read" }, "value": 1 },
        ]});
        std::fs::write(
            host.records.file_for(Path::new("/mnt/g"), "stats", "json"),
            serde_json::to_vec(&stats).unwrap(),
        )
        .unwrap();
        host.collect();
        host.metrics.inc(
            "tencentcloud_csi_fuse_host_daemons_started_total",
            "FUSE daemons the host started, by kind.",
            &[("kind", "cos-fuse")],
        );
        host.metrics.observe(
            "tencentcloud_csi_fuse_host_operation_duration_seconds",
            "FUSE host operations (mount, unmount, status, list) by outcome.",
            &[("op", "mount"), ("outcome", "ok")],
            0.2,
        );
        let text = host.metrics.exposition();
        assert!(text.contains("\nprocess_open_fds "), "{text}");
        if let Err(e) = csi_common::metrics::promtool_check(&text) {
            panic!("{e}");
        }
    }
}
