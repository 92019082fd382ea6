//! `metrics-registry`: Prometheus metrics, rendered in the text exposition format. Label sets are bounded by design:
//! RPC method and gRPC code, cloud service, action and outcome kind; never a volume, disk, node or
//! request ID. One registry per process, injected where it is recorded; no global.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

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

/// Prometheus label values escape backslash, quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    /// `cloud_wait_duration_seconds{resource, wait, outcome}`. All three are fixed words.
    pub fn observe_cloud_wait(
        &self,
        resource: &'static str,
        wait: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.observe(
            "cloud_wait_duration_seconds",
            "Time controllers spent waiting for cloud resources to reach a state, by wait and outcome.",
            &[("resource", resource), ("wait", wait), ("outcome", outcome)],
            seconds,
        );
    }

    /// Sets a value read from elsewhere (another process's counters): `kind` is `counter` or
    /// `gauge`.
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
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
                for (suffix, value) in [("sum", h.sum.to_string()), ("count", h.count.to_string())]
                {
                    let _ = write!(out, "{name}_{suffix}");
                    render_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {value}");
                }
            }
        }
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
            "csi_operation_errors_total",
            "Failed CSI calls.",
            &[("method", "CreateVolume"), ("code", "NotFound")],
        );
        metrics.inc(
            "csi_operation_errors_total",
            "Failed CSI calls.",
            &[("method", "CreateVolume"), ("code", "NotFound")],
        );
        metrics.observe(
            "csi_operation_duration_seconds",
            "CSI call latency.",
            &[("method", "Probe"), ("code", "Ok")],
            0.02,
        );
        let text = metrics.render();
        assert!(
            text.contains("# TYPE csi_operation_errors_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "csi_operation_errors_total{method=\"CreateVolume\",code=\"NotFound\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "csi_operation_duration_seconds_bucket{method=\"Probe\",code=\"Ok\",le=\"0.01\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "csi_operation_duration_seconds_bucket{method=\"Probe\",code=\"Ok\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("csi_operation_duration_seconds_count{method=\"Probe\",code=\"Ok\"} 1"),
            "{text}"
        );
        assert_eq!(
            metrics.counter(
                "csi_operation_errors_total",
                &[("method", "CreateVolume"), ("code", "NotFound")]
            ),
            2
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
