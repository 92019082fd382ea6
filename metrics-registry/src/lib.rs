//! `metrics-registry`: Prometheus metrics, rendered in the text exposition format (0.0.4). Label
//! sets are bounded by design: RPC method and gRPC code, cloud service, action and outcome kind;
//! never a volume, disk, node or request ID. One registry per process, injected where it is
//! recorded; no global. [`Metrics::exposition`] adds what every binary serves besides its own
//! figures: the `process_*` series (`process`) and `tencentcloud_csi_build_info` (`build_info`).
//! It knows no HTTP.

pub mod build_info;
mod process;
pub mod promtool;
mod text;

use text::{escape, escape_help, format_float};

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// The prefix of every series of ours (`process_*` are the standard's, unprefixed), so they never
/// collide with another exporter's in one Prometheus.
pub const PREFIX: &str = "tencentcloud_csi_";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Families {
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn render_labels(out: &mut String, labels: &Labels, extra: Option<(&str, &str)>) {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if !parts.is_empty() {
        let _ = write!(out, "{{{}}}", parts.join(","));
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn families(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one to the counter `name` with these labels.
    pub fn inc(&self, name: &'static str, help: &'static str, pairs: &[(&'static str, &str)]) {
        let mut families = self.families();
        families.help.entry(name).or_insert((help, "counter"));
        *families.counters.entry((name, labels(pairs))).or_default() += 1;
    }

    /// Records one observation, in seconds, in the histogram `name`.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&'static str, &str)],
        seconds: f64,
    ) {
        let mut families = self.families();
        families.help.entry(name).or_insert((help, "histogram"));
        let histogram = families
            .histograms
            .entry((name, labels(pairs)))
            .or_default();
        for (bucket, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Records a controller's wait for a cloud resource to reach a state:
    /// `tencentcloud_csi_cloud_wait_duration_seconds{resource, wait, outcome}`. All three are fixed words.
    pub fn observe_cloud_wait(
        &self,
        resource: &'static str,
        wait: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.observe(
            "tencentcloud_csi_cloud_wait_duration_seconds",
            "Time controllers spent waiting for cloud resources to reach a state, by wait and outcome.",
            &[("resource", resource), ("wait", wait), ("outcome", outcome)],
            seconds,
        );
    }

    /// Sets a value read from elsewhere (another process's counters): `kind` is `counter` or
    /// `gauge`. A counter set this way must never go down: the caller keeps it monotonic.
    pub fn set(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        pairs: &[(&'static str, &str)],
        value: u64,
    ) {
        let mut families = self.families();
        families.help.entry(name).or_insert((help, kind));
        families.counters.insert((name, labels(pairs)), value);
    }

    /// Replaces every series of the family `name` with `series` at once (a scrape sees the old set
    /// or the new one, never a mix): figures read from elsewhere, where a series can end. `kind`
    /// is `counter` or `gauge`; with no series the family is left out.
    pub fn set_family(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        series: &[(Vec<(&'static str, &str)>, u64)],
    ) {
        let mut families = self.families();
        families.counters.retain(|(n, _), _| *n != name);
        if series.is_empty() {
            families.help.remove(name);
            return;
        }
        families.help.insert(name, (help, kind));
        for (pairs, value) in series {
            families.counters.insert((name, labels(pairs)), *value);
        }
    }

    /// The value of a counter, for tests and benchmarks.
    pub fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> u64 {
        self.families()
            .counters
            .get(&(name, labels(pairs)))
            .copied()
            .unwrap_or(0)
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = self.families();
        let mut out = String::new();
        for (name, (help, kind)) in &families.help {
            let _ = writeln!(
                out,
                "# HELP {name} {}\n# TYPE {name} {kind}",
                escape_help(help)
            );
            for ((_, labels), value) in families
                .counters
                .range((*name, Vec::new())..)
                .take_while(|((n, _), _)| n == name)
            {
                out.push_str(name);
                render_labels(&mut out, labels, None);
                let _ = writeln!(out, " {value}");
            }
            for ((_, labels), h) in families
                .histograms
                .range((*name, Vec::new())..)
                .take_while(|((n, _), _)| n == name)
            {
                for (count, bound) in h.counts.iter().zip(BUCKETS) {
                    let _ = write!(out, "{name}_bucket");
                    render_labels(&mut out, labels, Some(("le", &bound.to_string())));
                    let _ = writeln!(out, " {count}");
                }
                let _ = write!(out, "{name}_bucket");
                render_labels(&mut out, labels, Some(("le", "+Inf")));
                let _ = writeln!(out, " {}", h.count);
                for (suffix, value) in
                    [("sum", format_float(h.sum)), ("count", h.count.to_string())]
                {
                    let _ = write!(out, "{name}_{suffix}");
                    render_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {value}");
                }
            }
        }
        out
    }

    /// What `/metrics` serves: the registry, then this process's `process_*` series (read now) and
    /// its build info.
    pub fn exposition(&self) -> String {
        let mut out = self.render();
        process::render(&mut out);
        build_info::render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.inc(
            "tencentcloud_csi_operation_errors_total",
            "Failed CSI calls.",
            &[("method", "CreateVolume"), ("code", "NotFound")],
        );
        metrics.inc(
            "tencentcloud_csi_operation_errors_total",
            "Failed CSI calls.",
            &[("method", "CreateVolume"), ("code", "NotFound")],
        );
        metrics.observe(
            "tencentcloud_csi_operation_duration_seconds",
            "CSI call latency.",
            &[("method", "Probe"), ("code", "Ok")],
            0.02,
        );
        let text = metrics.render();
        assert!(
            text.contains("# TYPE tencentcloud_csi_operation_errors_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "tencentcloud_csi_operation_errors_total{method=\"CreateVolume\",code=\"NotFound\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tencentcloud_csi_operation_duration_seconds_bucket{method=\"Probe\",code=\"Ok\",le=\"0.01\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tencentcloud_csi_operation_duration_seconds_bucket{method=\"Probe\",code=\"Ok\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tencentcloud_csi_operation_duration_seconds_count{method=\"Probe\",code=\"Ok\"} 1"
            ),
            "{text}"
        );
        assert_eq!(
            metrics.counter(
                "tencentcloud_csi_operation_errors_total",
                &[("method", "CreateVolume"), ("code", "NotFound")]
            ),
            2
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_family_set_from_elsewhere_is_replaced_whole() {
        let metrics = Metrics::new();
        metrics.set_family(
            "tencentcloud_csi_fuse_memory_bytes",
            "Memory.",
            "gauge",
            &[
                (vec![("kind", "cos-fuse")], 5),
                (vec![("kind", "goosefs-fuse")], 7),
            ],
        );
        metrics.set_family(
            "tencentcloud_csi_fuse_memory_bytes",
            "Memory.",
            "gauge",
            &[(vec![("kind", "cos-fuse")], 6)],
        );
        let text = metrics.render();
        assert!(
            text.contains("tencentcloud_csi_fuse_memory_bytes{kind=\"cos-fuse\"} 6"),
            "{text}"
        );
        assert!(!text.contains("goosefs-fuse"), "{text}");
        metrics.set_family(
            "tencentcloud_csi_fuse_memory_bytes",
            "Memory.",
            "gauge",
            &[],
        );
        assert_eq!(metrics.render(), "");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.25), "0.25");
    }

    /// The whole exposition, hostile label values included, passes the real `promtool check
    /// metrics`; without promtool this fails and says to install it.
    #[test]
    fn the_exposition_passes_promtool() {
        let metrics = Metrics::new();
        metrics.inc(
            "tencentcloud_csi_operation_errors_total",
            "Failed CSI calls, by method and gRPC code.",
            &[("method", "a\"b\\c\nd"), ("code", "Internal")],
        );
        metrics.observe(
            "tencentcloud_csi_operation_duration_seconds",
            "CSI call latency, by method and gRPC code.",
            &[("method", "Probe"), ("code", "Ok")],
            f64::INFINITY,
        );
        metrics.set(
            "tencentcloud_csi_fuse_memory_bytes",
            "Read-ahead and write buffer memory the daemons hold now.",
            "gauge",
            &[("kind", "cos-fuse")],
            3,
        );
        let text = metrics.exposition();
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "tencentcloud_csi_build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}: {text}"
            );
        }
        if let Err(e) = promtool::check_metrics(&text) {
            panic!("{e}");
        }
    }
}
