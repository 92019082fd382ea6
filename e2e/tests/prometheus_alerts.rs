//! The shipped stuck-attach alert against a real Prometheus: the environment `e2e serve` runs
//! (`tcloud-sim` and `csi-cbs` in mode `all`, its watchdog shortened to 3 s, its `/metrics` on a
//! loopback port) is scraped every second by `/usr/bin/prometheus`, which evaluates the rule
//! groups of `deploy/components/monitoring/prometheusrule.yaml` every second. A healthy attach
//! leaves `TencentCsiCbsAttachStuck` quiet; an attach the simulator holds in ATTACHING
//! (`AttachDisks:stuck=true`), retried as the external-attacher retries it, makes it fire.
//!
//! Everything is removed even when the test fails: the `Env` (dropped) kills the simulator and
//! the driver and removes their mounts, loop devices and files; [`Prometheus`] (dropped) kills
//! and reaps Prometheus, then removes its directory. The tails of the run's logs are printed
//! first.
//!
//! Needs root (the simulator attaches disks as loop devices), `/usr/bin/prometheus` (Debian's
//! `prometheus` package), `python3` with PyYAML, and the workspace binaries
//! (`cargo build --workspace --bins`). A missing one fails the test with its name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csi_proto::v1 as pb;
use e2e::kubelet::{Kubelet, mount_capability};
use e2e::{Driver, Env, EnvOptions};
use serde_json::{Value, json};
use tonic::Code;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const ALERT: &str = "TencentCsiCbsAttachStuck";
/// The `job` label, as the ServiceMonitor names the controller's metrics Service.
const JOB: &str = "csi-cbs-controller-metrics";
/// csi-cbs's `--attach-timeout-secs` here (120 s by default).
const ATTACH_TIMEOUT_SECS: u64 = 3;
/// How long the alert may take to fire once the attach is stuck.
const FIRE_WITHIN: Duration = Duration::from_secs(90);
/// How long Prometheus may take to start, scrape the driver and evaluate the rules.
const PROMETHEUS_READY: Duration = Duration::from_secs(30);
/// How long one ControllerPublishVolume may take (the watchdog answers after 3 s).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The external-attacher's pause between retries here (it backs off; 1 s keeps the test short).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A free loopback address (`127.0.0.1:PORT`).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// YAML documents to JSON values, through PyYAML (as csi-conformance/tests/alerts.rs reads them).
fn yaml_to_json(yaml: &[u8], what: &str) -> Vec<Value> {
    use std::io::Write;
    const SCRIPT: &str = "import json, sys, yaml\n\
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 (with PyYAML) to read {what}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = yaml.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
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

/// The rule groups of the shipped PrometheusRule, as a Prometheus rule file (JSON is YAML), with
/// one change: the `for:` of [`ALERT`] becomes `0s`. The shipped `for: 1m` only spans a scrape
/// round in a cluster; a test waiting a minute for it would prove nothing more. The expression,
/// and every other rule, is the shipped one, unchanged.
fn rule_file() -> String {
    let path = repo_root().join("deploy/components/monitoring/prometheusrule.yaml");
    let docs = yaml_to_json(&std::fs::read(&path).unwrap(), "prometheusrule.yaml");
    let rule = docs
        .into_iter()
        .find(|d| d.pointer("/kind").and_then(Value::as_str) == Some("PrometheusRule"))
        .expect("no PrometheusRule in deploy/components/monitoring/prometheusrule.yaml");
    let mut groups = rule.pointer("/spec/groups").expect("spec.groups").clone();
    let mut found = 0;
    for group in groups.as_array_mut().expect("spec.groups is a list") {
        for r in group["rules"].as_array_mut().expect("a group's rules") {
            if r["alert"] == ALERT {
                assert!(
                    r["expr"].as_str().is_some_and(|e| e.contains(
                        "tencentcloud_csi_operation_errors_total{method=\"ControllerPublishVolume\", code=\"Internal\"}"
                    )),
                    "{ALERT} no longer counts ControllerPublishVolume's INTERNAL answers: {}",
                    r["expr"]
                );
                r["for"] = json!("0s");
                found += 1;
            }
        }
    }
    assert_eq!(found, 1, "{ALERT} is not one rule of prometheusrule.yaml");
    serde_json::to_string_pretty(&json!({ "groups": groups })).unwrap()
}

/// A Prometheus server with its configuration, rules, data and log in a temporary directory.
/// Dropping it kills and reaps the process, then removes the directory.
struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    url: String,
    // Declared last: removed after the process is reaped.
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`HOST:PORT` serving `/metrics`) every second as job
    /// [`JOB`] and evaluating `rules` every second.
    fn start(target: &str, rules: &str) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} is missing: this test runs a real Prometheus. Install Debian's \
             `prometheus` package (apt-get install -y prometheus), as CI does"
        );
        let dir = tempfile::Builder::new()
            .prefix("csi-e2e-prometheus-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let config = json!({
            "global": { "scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s" },
            "rule_files": [dir.path().join("rules.yaml")],
            "scrape_configs": [{
                "job_name": JOB,
                "static_configs": [{ "targets": [target] }],
            }],
        });
        std::fs::write(
            dir.path().join("prometheus.yml"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        let address = free_address();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}"));
        Prometheus {
            child,
            url: format!("http://{address}"),
            dir,
        }
    }

    fn log_tail(&self) -> String {
        let log = self.dir.path().join("prometheus.log");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `GET /api/v1/<path>`'s `data`.
    async fn api(&self, path: &str) -> anyhow::Result<Value> {
        let http = tcloud::client::http_client(Duration::from_secs(5))?;
        let body: Value = http
            .get(format!("{}/api/v1/{path}", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(body["status"] == "success", "{path}: {body}");
        Ok(body["data"].clone())
    }

    /// The state (`pending`, `firing`) of each active alert named [`ALERT`].
    async fn alert_states(&self) -> Vec<String> {
        let data = self.api("alerts").await.expect("GET /api/v1/alerts");
        data["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|a| a["labels"]["alertname"] == ALERT)
            .map(|a| a["state"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// The value of an instant query's first sample, if it has one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let http = tcloud::client::http_client(Duration::from_secs(5)).unwrap();
        let body: Value = http
            .get(
                reqwest::Url::parse_with_params(
                    &format!("{}/api/v1/query", self.url),
                    [("query", promql)],
                )
                .ok()?,
            )
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }

    /// When the rule group holding [`ALERT`] was last evaluated (RFC 3339), if it was.
    async fn last_evaluation(&self) -> Option<String> {
        let data = self.api("rules").await.ok()?;
        data["groups"]
            .as_array()?
            .iter()
            .find(|g| {
                g["rules"]
                    .as_array()
                    .is_some_and(|rules| rules.iter().any(|r| r["name"] == ALERT))
            })
            .and_then(|g| g["lastEvaluation"].as_str())
            .filter(|t| !t.starts_with("0001-"))
            .map(str::to_owned)
    }

    /// Waits until Prometheus has scraped `promql`'s series with a value of at least `min`, and
    /// then evaluated the rules twice more (so the alert reflects that scrape).
    async fn wait_for_sample(&self, promql: &str, min: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.query(promql).await.is_some_and(|v| v >= min) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus had no sample of {promql} >= {min} within {timeout:?}; its log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for _ in 0..2 {
            let before = self.last_evaluation().await;
            loop {
                let now = self.last_evaluation().await;
                if now.is_some() && now != before {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Prometheus did not evaluate the rules within {timeout:?}; its log:\n{}",
                    self.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("==== prometheus (last 40 lines)\n{}", self.log_tail());
        }
    }
}

/// Prints the tail of every log of the environment when the test panics: the `Env` dropped
/// after it removes the logs with the rest of the work directory. Declare it after the `Env`.
struct LogsOnPanic(PathBuf);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "==== {} (last 60 lines)\n{}",
                entry.path().display(),
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// Replaces the simulator's fault rules (`PUT /_sim/faults`).
async fn put_faults(env: &Env, rules: Value) {
    let http = tcloud::client::http_client(Duration::from_secs(10)).unwrap();
    http.put(format!("{}/_sim/faults", env.sim_url))
        .json(&rules)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .expect("PUT /_sim/faults");
}

/// One ControllerPublishVolume of `volume_id` to the node, as the external-attacher sends it.
async fn publish(k: &mut Kubelet, volume_id: &str) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(pb::ControllerPublishVolumeRequest {
        volume_id: volume_id.to_owned(),
        node_id: k.node_id.clone(),
        volume_capability: Some(mount_capability("ext4")),
        ..Default::default()
    });
    request.set_timeout(PUBLISH_TIMEOUT);
    match tokio::time::timeout(
        PUBLISH_TIMEOUT + Duration::from_secs(5),
        k.client.controller.controller_publish_volume(request),
    )
    .await
    {
        Ok(result) => result.map(drop),
        Err(_) => panic!("ControllerPublishVolume of {volume_id} did not answer in time"),
    }
}

#[tokio::test]
async fn prometheus_fires_the_stuck_attach_alert_on_an_attach_stuck_in_attaching() {
    let started = Instant::now();
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: the simulator attaches disks as loop devices"
    );
    let rules = rule_file();
    let metrics_address = free_address();
    let env = Env::start(
        Driver::Cbs,
        EnvOptions {
            driver_args: vec![
                "--attach-timeout-secs".into(),
                ATTACH_TIMEOUT_SECS.to_string(),
                "--metrics-address".into(),
                metrics_address.clone(),
            ],
            ..Default::default()
        },
    )
    .await
    .expect("start tcloud-sim and csi-cbs");
    let _logs = LogsOnPanic(env.workdir.join("logs"));
    let prometheus = Prometheus::start(&metrics_address, &rules);
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);

    // Quiet baseline: a healthy attach and detach, scraped and evaluated, fire nothing.
    let volume = k
        .create("pvc-stuck-attach", 10, mount_capability("ext4"), None)
        .await
        .unwrap();
    publish(&mut k, &volume.id)
        .await
        .expect("a healthy ControllerPublishVolume");
    k.detach(&volume).await.unwrap();
    prometheus
        .wait_for_sample(
            &format!(
                "sum(tencentcloud_csi_operation_duration_seconds_count{{job=\"{JOB}\", method=\"ControllerPublishVolume\"}})"
            ),
            1.0,
            PROMETHEUS_READY,
        )
        .await;
    let states = prometheus.alert_states().await;
    assert!(
        states.is_empty(),
        "{ALERT} is {states:?} after a healthy attach, before any fault"
    );

    // The attach sticks in ATTACHING; the attacher retries until the watchdog answers INTERNAL,
    // and keeps retrying (as it does) while we wait for the alert. The error counter appears at
    // its first INTERNAL, so `increase` sees the retries' answers, not the first one.
    put_faults(&env, json!([{ "action": "AttachDisks", "stuck": true }])).await;
    let stuck_at = Instant::now();
    let mut internals = 0;
    let mut states = Vec::new();
    while !states.iter().any(|s| s == "firing") {
        assert!(
            stuck_at.elapsed() < FIRE_WITHIN,
            "{ALERT} did not fire within {FIRE_WITHIN:?} of a stuck attach ({internals} INTERNAL \
             answers; its states: {states:?}; errors scraped: {:?})",
            prometheus
                .query(
                    "tencentcloud_csi_operation_errors_total{method=\"ControllerPublishVolume\"}"
                )
                .await
        );
        match publish(&mut k, &volume.id).await {
            Err(status) if status.code() == Code::Internal => {
                assert!(
                    status.message().contains("ATTACHING"),
                    "INTERNAL, but not the watchdog's: {status:?}"
                );
                internals += 1;
            }
            other => panic!("a stuck attach answered {other:?}, not the watchdog's INTERNAL"),
        }
        states = prometheus.alert_states().await;
        if !states.iter().any(|s| s == "firing") {
            tokio::time::sleep(RETRY_PAUSE).await;
            states = prometheus.alert_states().await;
        }
    }
    eprintln!(
        "{ALERT} fired {:.1}s after the attach stuck ({internals} INTERNAL answers); test at {:.1}s",
        stuck_at.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The fault lifted, the attach completes; then the volume is detached and deleted.
    put_faults(&env, json!([])).await;
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    loop {
        match publish(&mut k, &volume.id).await {
            Ok(()) => break,
            Err(status) if Instant::now() < deadline => {
                eprintln!("ControllerPublishVolume after the fault lifted: {status:?}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(status) => panic!("the attach did not complete once the fault lifted: {status:?}"),
        }
    }
    k.detach(&volume).await.unwrap();
    k.delete(&volume).await.unwrap();
    let loops = e2e::cleanup::loops_under(&env.workdir);
    assert!(
        loops.is_empty(),
        "loop devices left behind after the volume was detached: {loops:?}"
    );
    drop(prometheus);
    let mut env = env;
    env.stop().await.expect("stop the driver and the simulator");
    eprintln!("wall time {:.1}s", started.elapsed().as_secs_f64());
}
