//! The daemons' figures on the host's `/metrics`: each daemon writes samples to the file named by
//! [`STATS_ENV`]; every [`STATS_INTERVAL`] the host reads them all and serves their sums by kind.
//! Only the metrics and label keys listed here pass, so a daemon cannot grow the label sets. It
//! reads files and sets gauges; it never starts, stops or asks a daemon anything.

use std::collections::BTreeMap;
use std::time::Duration;

use csi_common::metrics::Metrics;
use serde::Deserialize;

use super::records::{Record, Records};

/// The variable telling a daemon where to write its figures for the host's `/metrics`.
pub const STATS_ENV: &str = "CSI_FUSE_STATS_FILE";
/// How often the host reads its daemons' figures.
pub(super) const STATS_INTERVAL: Duration = Duration::from_secs(2);

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

/// The daemons' metrics the host serves, summed by kind: name, type, help, how to merge. Anything
/// else a daemon reports is ignored, so a daemon cannot grow the label sets.
const DAEMON_METRICS: &[(&str, &str, &str, Merge)] = &[
    (
        "fuse_operations_total",
        "counter",
        "FUSE requests the daemons served, by kind and operation.",
        Merge::Sum,
    ),
    (
        "fuse_operation_errors_total",
        "counter",
        "FUSE requests answered with an error, by kind and operation.",
        Merge::Sum,
    ),
    (
        "fuse_bytes_total",
        "counter",
        "Bytes read and written through FUSE mounts, by kind and direction.",
        Merge::Sum,
    ),
    (
        "fuse_memory_bytes",
        "gauge",
        "Read-ahead and write buffer memory the daemons hold now.",
        Merge::Sum,
    ),
    (
        "fuse_memory_peak_bytes",
        "gauge",
        "The most buffer memory one daemon held at once.",
        Merge::Max,
    ),
    (
        "fuse_cache_requests_total",
        "counter",
        "Block cache reads by result (hit or miss).",
        Merge::Sum,
    ),
    (
        "fuse_cache_bytes_total",
        "counter",
        "Bytes read through the block cache by result (hit or miss).",
        Merge::Sum,
    ),
    (
        "fuse_cache_origin_bytes_total",
        "counter",
        "Bytes the block cache fetched from the object store.",
        Merge::Sum,
    ),
    (
        "fuse_cache_evictions_total",
        "counter",
        "Blocks evicted from the block cache.",
        Merge::Sum,
    ),
    (
        "fuse_cache_corrupt_blocks_total",
        "counter",
        "Cached blocks that failed their checksum and were fetched again.",
        Merge::Sum,
    ),
    (
        "fuse_cache_used_bytes",
        "gauge",
        "Bytes the node's block cache holds on disk.",
        Merge::Max,
    ),
    (
        "fuse_cache_capacity_bytes",
        "gauge",
        "The node's block cache capacity.",
        Merge::Max,
    ),
    (
        "fuse_warmup_done_bytes",
        "gauge",
        "Bytes of preloaded prefixes already in the cache.",
        Merge::Sum,
    ),
    (
        "fuse_warmup_total_bytes",
        "gauge",
        "Bytes of the prefixes being preloaded.",
        Merge::Sum,
    ),
];

/// Label keys a daemon may use (with bounded values of its own: operation names, hit/miss).
const DAEMON_LABELS: &[&str] = &["op", "direction", "result"];

/// Reads every recorded daemon's figures and serves their sums (by kind) on `/metrics`.
pub(super) fn collect(records: &Records, metrics: &Metrics) {
    let recorded: Vec<Record> = records.all();
    type Key = (&'static str, &'static str, Vec<(&'static str, String)>);
    let mut totals: BTreeMap<Key, u64> = BTreeMap::new();
    for record in recorded {
        let path = records.file_for(&record.target, "stats", "json");
        let Some(stats) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<DaemonStats>(&b).ok())
        else {
            continue;
        };
        let kind = kind_label(&record.kind);
        for sample in stats.samples {
            let Some(&(name, _, _, merge)) =
                DAEMON_METRICS.iter().find(|(n, ..)| *n == sample.name)
            else {
                continue;
            };
            let labels: Vec<(&'static str, String)> = sample
                .labels
                .iter()
                .filter(|(_, value)| value.len() <= 32)
                .filter_map(|(key, value)| {
                    DAEMON_LABELS
                        .iter()
                        .find(|k| *k == key)
                        .map(|k| (*k, value.clone()))
                })
                .collect();
            let total = totals.entry((name, kind, labels)).or_default();
            *total = match merge {
                Merge::Sum => total.saturating_add(sample.value),
                Merge::Max => (*total).max(sample.value),
            };
        }
    }
    for ((name, kind, labels), value) in totals {
        if let Some(&(_, metric_type, help, _)) = DAEMON_METRICS.iter().find(|(n, ..)| *n == name) {
            let mut pairs: Vec<(&'static str, &str)> = vec![("kind", kind)];
            pairs.extend(labels.iter().map(|(k, v)| (*k, v.as_str())));
            metrics.set(name, help, metric_type, &pairs, value);
        }
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
