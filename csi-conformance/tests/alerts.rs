//! The optional monitoring component (`deploy/components/monitoring`): its PrometheusRule passes
//! `promtool check rules`, every alert fires on the inputs of `tests/alerts-test.yaml` and stays
//! quiet on a healthy cluster's (`promtool test rules`), the rules and the Grafana dashboard query
//! only series our binaries serve (each looked up in the source file that serves it), and the
//! metrics Services of the bases reach ports the workloads declare.
//!
//! Tools: `promtool` (Debian's `prometheus` package), `python3` with PyYAML, `kubectl`. A missing
//! one fails the test with its name: nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Every series the rules and the dashboard may use: name, whether it is a histogram (then
/// `_bucket`, `_count` and `_sum` are its series), and the source file that serves it, relative
/// to the repository root. Add a series here only with the file whose code names it.
const SERIES: &[(&str, bool, &str)] = &[
    (
        "tencentcloud_csi_operation_duration_seconds",
        true,
        "csi-common/src/csi/rpclog.rs",
    ),
    (
        "tencentcloud_csi_operation_errors_total",
        false,
        "csi-common/src/csi/rpclog.rs",
    ),
    (
        "tencentcloud_csi_cloud_api_calls_total",
        false,
        "tcloud/src/client.rs",
    ),
    (
        "tencentcloud_csi_cloud_api_duration_seconds",
        true,
        "tcloud/src/client.rs",
    ),
    (
        "tencentcloud_csi_cloud_api_retries_total",
        false,
        "tcloud/src/client.rs",
    ),
    (
        "tencentcloud_csi_cloud_api_throttled_total",
        false,
        "tcloud/src/client.rs",
    ),
    (
        "tencentcloud_csi_cloud_api_paced_total",
        false,
        "tcloud/src/client.rs",
    ),
    (
        "tencentcloud_csi_cloud_wait_duration_seconds",
        true,
        "metrics-registry/src/lib.rs",
    ),
    (
        "tencentcloud_csi_mount_operation_duration_seconds",
        true,
        "csi-common/src/mount/metered.rs",
    ),
    (
        "tencentcloud_csi_mount_operation_errors_total",
        false,
        "csi-common/src/mount/metered.rs",
    ),
    (
        "tencentcloud_csi_fuse_host_daemons_started_total",
        false,
        "fuse-host/src/server/supervisor.rs",
    ),
    (
        "tencentcloud_csi_fuse_host_daemon_exits_total",
        false,
        "fuse-host/src/server/supervisor.rs",
    ),
    (
        "tencentcloud_csi_fuse_host_repairs_total",
        false,
        "fuse-host/src/server/supervisor.rs",
    ),
    (
        "tencentcloud_csi_fuse_host_operation_duration_seconds",
        true,
        "fuse-host/src/server/socket.rs",
    ),
    (
        "tencentcloud_csi_fuse_operations_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_operation_errors_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_bytes_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_memory_bytes",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_memory_peak_bytes",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_requests_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_bytes_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_origin_bytes_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_evictions_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_corrupt_blocks_total",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_used_bytes",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_cache_capacity_bytes",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_warmup_done_bytes",
        false,
        "fuse-host/src/server/stats.rs",
    ),
    (
        "tencentcloud_csi_fuse_warmup_total_bytes",
        false,
        "fuse-host/src/server/stats.rs",
    ),
];

/// Prefixes of our series: an identifier in a query starting with one of these must be in
/// [`SERIES`]. (PromQL functions and label names never start with them.)
/// The names before the project's prefix are here too: a query using one is an unknown series.
const OUR_PREFIXES: [&str; 5] = [
    metrics_registry::PREFIX,
    "csi_",
    "cloud_",
    "mount_",
    "fuse_",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn monitoring_dir() -> PathBuf {
    repo_root().join("deploy/components/monitoring")
}

/// Runs `program args...` in `dir`; a program that is not installed fails with how to get it.
fn run(program: &str, args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let hint = match program {
        "promtool" => {
            "promtool checks and unit-tests the alerts: install Debian's `prometheus` package \
             (apt-get install -y prometheus), which ships /usr/bin/promtool"
        }
        "python3" => "python3 with PyYAML reads the YAML files",
        "kubectl" => "kubectl renders deploy/ (`kubectl kustomize`); install kubectl",
        _ => "",
    };
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}. {hint}"));
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let output = child.wait_with_output().unwrap();
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    output
}

fn both(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// YAML documents to JSON values, through PyYAML.
fn yaml_to_json(yaml: &[u8], what: &str) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let out = run("python3", &["-c", SCRIPT], &repo_root(), Some(yaml));
    assert!(
        out.status.success(),
        "python3 could not read {what} as YAML (is PyYAML installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("{what}: expected a list of documents, got {other}"),
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The PrometheusRule of the component.
fn prometheus_rule() -> Value {
    let path = monitoring_dir().join("prometheusrule.yaml");
    let docs = yaml_to_json(&std::fs::read(&path).unwrap(), "prometheusrule.yaml");
    let rule = docs
        .into_iter()
        .find(|d| text(d, "/kind") == "PrometheusRule")
        .expect("no PrometheusRule in deploy/components/monitoring/prometheusrule.yaml");
    assert_eq!(text(&rule, "/apiVersion"), "monitoring.coreos.com/v1");
    rule
}

/// Every alert's name and expression.
fn alerts(rule: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for group in list(rule, "/spec/groups") {
        for r in list(group, "/rules") {
            found.push((text(r, "/alert").to_owned(), text(r, "/expr").to_owned()));
        }
    }
    found
}

/// The series names in a PromQL expression that look like ours (see [`OUR_PREFIXES`]), with
/// string literals (label values) left out.
fn series_in(expr: &str) -> BTreeSet<String> {
    let mut bare = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => bare.push(c),
        }
    }
    bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| OUR_PREFIXES.iter().any(|p| w.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// The [`SERIES`] entry a queried name belongs to, if any.
fn known(name: &str) -> Option<&'static (&'static str, bool, &'static str)> {
    SERIES.iter().find(|(series, histogram, _)| {
        name == *series
            || (*histogram
                && ["_bucket", "_count", "_sum"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(series)))
    })
}

/// Every `expr` and templating `query` in the dashboard, wherever it sits.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(q)) => out.push(q.clone()),
                    ("query", Value::String(q)) if q.contains('(') => out.push(q.clone()),
                    _ => dashboard_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dashboard_queries(i, out)),
        _ => {}
    }
}

#[test]
fn the_series_list_names_what_the_code_serves() {
    let root = repo_root();
    let rule_text = std::fs::read_to_string(monitoring_dir().join("prometheusrule.yaml")).unwrap();
    let mut missing = Vec::new();
    for (name, _, file) in SERIES {
        let source = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{file}, the source of {name}: {e}"));
        if !source.contains(&format!("\"{name}\"")) {
            missing.push(format!("{name} is not named in {file}"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    // The rule file says where each series it uses comes from.
    for (alert, expr) in alerts(&prometheus_rule()) {
        for series in series_in(&expr) {
            let (name, _, file) = known(&series)
                .unwrap_or_else(|| panic!("{alert}: {series} is not a series our binaries serve"));
            assert!(
                rule_text.contains(name) && rule_text.contains(file),
                "prometheusrule.yaml uses {name} ({alert}) without naming its source, {file}, \
                 in its header comment"
            );
        }
    }
}

#[test]
fn alerts_pass_promtool_check_and_unit_tests() {
    let rule = prometheus_rule();
    let groups = rule.pointer("/spec/groups").expect("spec.groups").clone();
    let scratch = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads the groups as a rule file.
    std::fs::write(
        scratch.path().join("rules.yaml"),
        serde_json::to_string_pretty(&serde_json::json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let tests_file = monitoring_dir().join("tests/alerts-test.yaml");
    std::fs::copy(&tests_file, scratch.path().join("alerts-test.yaml")).unwrap();

    let check = run(
        "promtool",
        &["check", "rules", "rules.yaml"],
        scratch.path(),
        None,
    );
    eprintln!("promtool check rules:\n{}", both(&check));
    assert!(
        check.status.success(),
        "promtool check rules failed:\n{}",
        both(&check)
    );
    let test = run(
        "promtool",
        &["test", "rules", "alerts-test.yaml"],
        scratch.path(),
        None,
    );
    eprintln!("promtool test rules:\n{}", both(&test));
    assert!(
        test.status.success(),
        "promtool test rules failed:\n{}",
        both(&test)
    );

    // Every alert is shown firing at least once and quiet at least once.
    let tests = yaml_to_json(&std::fs::read(&tests_file).unwrap(), "alerts-test.yaml");
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in list(&tests[0], "/tests") {
        for t in list(case, "/alert_rule_test") {
            let name = text(t, "/alertname").to_owned();
            if list(t, "/exp_alerts").is_empty() {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let names: BTreeSet<String> = alerts(&rule).into_iter().map(|(n, _)| n).collect();
    assert!(names.len() >= 6, "alerts: {names:?}");
    let never_fired: Vec<_> = names.difference(&fires).collect();
    let never_quiet: Vec<_> = names.difference(&quiet).collect();
    assert!(
        never_fired.is_empty() && never_quiet.is_empty(),
        "alerts-test.yaml must make every alert fire and stay quiet: never fired {never_fired:?}, \
         never shown quiet {never_quiet:?}"
    );
}

#[test]
fn the_dashboard_parses_and_queries_only_known_series() {
    let path = monitoring_dir().join("dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(
        !text(&dashboard, "/title").is_empty(),
        "the dashboard has no title"
    );
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "only {} queries", queries.len());
    let mut unknown = BTreeSet::new();
    for q in &queries {
        let named = series_in(q);
        assert!(
            !named.is_empty(),
            "a dashboard query uses none of our series: {q}"
        );
        unknown.extend(named.into_iter().filter(|s| known(s).is_none()));
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries series no binary serves: {unknown:?}"
    );
    // The component ships it as the ConfigMap's file.
    let kustomization =
        std::fs::read_to_string(monitoring_dir().join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("=dashboard.json"));
}

#[test]
fn metrics_services_reach_declared_ports_and_the_service_monitor_selects_them() {
    let root = repo_root();
    let out = run(
        "kubectl",
        &["kustomize", "deploy/overlays/tke"],
        &root,
        None,
    );
    assert!(out.status.success(), "kubectl kustomize: {}", both(&out));
    let docs = yaml_to_json(&out.stdout, "deploy/overlays/tke");
    let monitor = yaml_to_json(
        &std::fs::read(monitoring_dir().join("servicemonitor.yaml")).unwrap(),
        "servicemonitor.yaml",
    )
    .remove(0);
    let selector = monitor
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .expect("ServiceMonitor matchLabels")
        .clone();
    let endpoint_ports: BTreeSet<&str> = list(&monitor, "/spec/endpoints")
        .iter()
        .map(|e| text(e, "/port"))
        .collect();

    let workloads: Vec<&Value> = docs
        .iter()
        .filter(|d| matches!(text(d, "/kind"), "Deployment" | "DaemonSet"))
        .collect();
    let mut served = BTreeSet::new();
    let mut ports_used = BTreeSet::new();
    for svc in docs.iter().filter(|d| {
        text(d, "/kind") == "Service"
            && text(d, "/metadata/labels/app.kubernetes.io~1component") == "metrics"
    }) {
        let name = text(svc, "/metadata/name");
        for (k, v) in &selector {
            assert_eq!(
                svc.pointer(&format!("/metadata/labels/{}", k.replace('/', "~1"))),
                Some(v),
                "the ServiceMonitor does not select {name}"
            );
        }
        let app = text(svc, "/spec/selector/app");
        let workload = workloads
            .iter()
            .find(|w| text(w, "/spec/template/metadata/labels/app") == app)
            .unwrap_or_else(|| panic!("{name} selects app={app}, which no workload has"));
        let declared: BTreeSet<&str> = list(workload, "/spec/template/spec/containers")
            .iter()
            .flat_map(|c| list(c, "/ports"))
            .map(|p| text(p, "/name"))
            .collect();
        for port in list(svc, "/spec/ports") {
            let target = text(port, "/targetPort");
            assert!(
                declared.contains(target),
                "{name}: targetPort {target} is not a port of {}",
                text(workload, "/metadata/name")
            );
            assert!(
                endpoint_ports.contains(text(port, "/name")),
                "{name}: the ServiceMonitor scrapes no port named {}",
                text(port, "/name")
            );
            ports_used.insert(text(port, "/name").to_owned());
        }
        served.insert(text(workload, "/metadata/name").to_owned());
    }
    let all: BTreeSet<String> = workloads
        .iter()
        .map(|w| text(w, "/metadata/name").to_owned())
        .collect();
    assert_eq!(served, all, "every workload has a metrics Service");
    for port in endpoint_ports {
        assert!(
            ports_used.contains(port),
            "the ServiceMonitor scrapes a port no Service has: {port}"
        );
    }
    // The component is optional: the default overlay has none of its objects.
    assert!(
        !docs.iter().any(|d| matches!(
            text(d, "/kind"),
            "ServiceMonitor" | "PodMonitor" | "PrometheusRule"
        )),
        "deploy/overlays/tke must not need the monitoring CRDs"
    );
}

#[test]
fn the_monitoring_component_renders_in_an_overlay() {
    // A copy of deploy/ with an overlay of the TKE overlay plus the component, as the README
    // tells users to write it.
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("deploy");
    copy_tree(&repo_root().join("deploy"), &copy);
    let overlay = copy.join("overlays/monitored");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         namespace: kube-system\nresources:\n  - ../tke\ncomponents:\n  - ../../components/monitoring\n",
    )
    .unwrap();
    let out = run("kubectl", &["kustomize", "overlays/monitored"], &copy, None);
    assert!(out.status.success(), "kubectl kustomize: {}", both(&out));
    let docs = yaml_to_json(&out.stdout, "the monitored overlay");
    for (kind, name) in [
        ("ServiceMonitor", "tencentcloud-csi"),
        ("PrometheusRule", "tencentcloud-csi"),
        ("ConfigMap", "tencentcloud-csi-dashboard"),
    ] {
        let obj = docs
            .iter()
            .find(|d| text(d, "/kind") == kind && text(d, "/metadata/name") == name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered"));
        assert_eq!(text(obj, "/metadata/namespace"), "kube-system", "{kind}");
    }
    let dashboard = docs
        .iter()
        .find(|d| {
            text(d, "/kind") == "ConfigMap"
                && text(d, "/metadata/name") == "tencentcloud-csi-dashboard"
        })
        .unwrap();
    assert_eq!(text(dashboard, "/metadata/labels/grafana_dashboard"), "1");
    let json = text(dashboard, "/data/tencentcloud-csi.json");
    serde_json::from_str::<Value>(json).expect("the dashboard ConfigMap holds JSON");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
