//! The drivers' cloud client against the real simulator binary: signatures, the real error codes,
//! retries of throttled and failing calls bounded by the deadline, role credentials from instance
//! metadata, state across a simulator restart; and the official Python SDK against the simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::process::{Proc, bin_path};
use tcloud::cvm::{CVM, DescribeInstancesRequest};
use tcloud::signing::{SignInput, authorization};
use tcloud::{
    CloudClient, CloudConfig, CloudError, CredentialSource, Credentials, ErrorKind, MetadataClient,
};
use tokio::time::Instant;

const ID: &str = "AKIDsimtest0001";
const KEY: &str = "sim-test-secret-key";
const REGION: &str = "ap-guangzhou";

struct Sim {
    proc: Proc,
    url: String,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

impl Sim {
    async fn start(extra: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Self::start_in(dir, state, extra).await
    }

    async fn start_in(dir: tempfile::TempDir, state: PathBuf, extra: &[&str]) -> Sim {
        let keys = dir.path().join("keys");
        std::fs::write(&keys, format!("# test keys\n{ID} {KEY}\n")).unwrap();
        let mut args = vec![
            "--state-dir".to_string(),
            state.display().to_string(),
            "--keys-file".to_string(),
            keys.display().to_string(),
            "--region".to_string(),
            REGION.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.path().join(format!("sim-{}.log", fastrand::u32(..)));
        let mut proc =
            Proc::spawn("tcloud-sim", &bin_path("tcloud-sim").unwrap(), &args, &log).unwrap();
        let line = proc.read_line(Duration::from_secs(20)).await.unwrap();
        let url = line.strip_prefix("listening ").unwrap().to_owned();
        Sim {
            proc,
            url,
            _dir: dir,
            state,
        }
    }

    fn client(&self, credentials: Credentials) -> CloudClient {
        self.client_with(CredentialSource::Static(credentials))
    }

    fn client_with(&self, source: CredentialSource) -> CloudClient {
        let mut config = CloudConfig::new(&self.url, REGION);
        config.retry.base = Duration::from_millis(50);
        config.retry.max = Duration::from_millis(400);
        CloudClient::new(config, source).unwrap()
    }

    async fn stats(&self, action: &str) -> serde_json::Value {
        let body: serde_json::Value = reqwest::get(format!("{}/_sim/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body.get(action)
            .cloned()
            .unwrap_or(serde_json::json!({"calls": 0}))
    }

    async fn set_faults(&self, rules: serde_json::Value) {
        let status = reqwest::Client::new()
            .put(format!("{}/_sim/faults", self.url))
            .json(&rules)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    /// A raw POST with hand-made headers, for what our own client would never send.
    async fn raw(&self, headers: &[(&str, String)], body: &str) -> serde_json::Value {
        let mut request = reqwest::Client::new().post(&self.url).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap().json().await.unwrap()
    }
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

fn error_code(body: &serde_json::Value) -> &str {
    body["Response"]["Error"]["Code"]
        .as_str()
        .unwrap_or("<no error>")
}

fn signed_headers(
    sim: &Sim,
    action: &str,
    body: &str,
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    let host = host_of(&sim.url);
    let auth = authorization(&SignInput {
        service: "cvm",
        host: &host,
        content_type: "application/json",
        payload: body.as_bytes(),
        timestamp,
        secret_id: ID,
        secret_key: KEY,
    });
    vec![
        ("Content-Type", "application/json".to_string()),
        ("Authorization", auth),
        ("X-TC-Action", action.to_string()),
        ("X-TC-Version", CVM.version.to_string()),
        ("X-TC-Region", REGION.to_string()),
        ("X-TC-Timestamp", timestamp.to_string()),
    ]
}

#[tokio::test]
async fn signed_calls_succeed_and_bad_requests_get_the_real_codes() {
    let sim = Sim::start(&[]).await;
    let good = sim.client(Credentials::new(ID, KEY));
    let zones = good.describe_zones(None).await.unwrap();
    let names: Vec<_> = zones
        .iter()
        .map(|z| (z.zone.as_str(), z.zone_id.as_str()))
        .collect();
    assert_eq!(
        names,
        [("ap-guangzhou-3", "100003"), ("ap-guangzhou-4", "100004")]
    );

    let missing = DescribeInstancesRequest {
        instance_ids: vec!["ins-nope".into()],
        ..Default::default()
    };
    let err = good.describe_instances(&missing, None).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (ErrorKind::NotFound, Some("InvalidInstanceId.NotFound"))
    );

    let before = sim.stats("DescribeZones").await["calls"].as_u64().unwrap();
    let err = sim
        .client(Credentials::new(ID, "wrong-key"))
        .describe_zones(None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (ErrorKind::Auth, Some("AuthFailure.SignatureFailure"))
    );
    let after = sim.stats("DescribeZones").await["calls"].as_u64().unwrap();
    assert_eq!(after - before, 1, "an auth failure is not retried");

    let err = sim
        .client(Credentials::new("AKIDunknown", KEY))
        .describe_zones(None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure.SecretIdNotFound"));

    // A signature made ten minutes ago, otherwise perfect.
    let stale = tcloud::time::unix_now() - 600;
    let body = sim
        .raw(&signed_headers(&sim, "DescribeZones", "{}", stale), "{}")
        .await;
    assert_eq!(error_code(&body), "AuthFailure.SignatureExpire");
    assert!(body["Response"]["RequestId"].is_string());

    // Each required header, left out in turn.
    let now = tcloud::time::unix_now();
    for skip in [
        "X-TC-Action",
        "X-TC-Version",
        "X-TC-Timestamp",
        "Authorization",
        "X-TC-Region",
    ] {
        let headers: Vec<_> = signed_headers(&sim, "DescribeZones", "{}", now)
            .into_iter()
            .filter(|(n, _)| *n != skip)
            .collect();
        let body = sim.raw(&headers, "{}").await;
        assert_eq!(error_code(&body), "MissingParameter", "without {skip}");
        let message = body["Response"]["Error"]["Message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&skip.to_lowercase()),
            "{message}"
        );
    }

    // The body the signature covers, changed after signing.
    let headers = signed_headers(&sim, "DescribeZones", "{}", now);
    assert_eq!(
        error_code(&sim.raw(&headers, r#"{"Limit":1}"#).await),
        "AuthFailure.SignatureFailure"
    );
    // Unknown action, unknown parameter, wrong region: the real codes.
    let headers = signed_headers(&sim, "DescribeNothing", "{}", now);
    assert_eq!(error_code(&sim.raw(&headers, "{}").await), "InvalidAction");
    let body = r#"{"Bogus":1}"#;
    let headers = signed_headers(&sim, "DescribeInstances", body, now);
    assert_eq!(
        error_code(&sim.raw(&headers, body).await),
        "UnknownParameter"
    );
    let mut headers = signed_headers(&sim, "DescribeZones", "{}", now);
    headers.retain(|(n, _)| *n != "X-TC-Region");
    headers.push(("X-TC-Region", "eu-frankfurt".into()));
    assert_eq!(
        error_code(&sim.raw(&headers, "{}").await),
        "UnsupportedRegion"
    );
}

#[tokio::test]
async fn a_throttled_call_is_retried_until_the_deadline_then_reported() {
    let sim = Sim::start(&[
        "--fault",
        "DescribeZones:error_rate=1,error_code=RequestLimitExceeded",
    ])
    .await;
    let client = sim.client(Credentials::new(ID, KEY));
    let start = Instant::now();
    let err = client
        .describe_zones(Some(start + Duration::from_millis(1500)))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    let CloudError::DeadlineExceeded {
        attempts, ref last, ..
    } = err
    else {
        panic!("expected a deadline error, got {err}")
    };
    assert_eq!(err.kind(), ErrorKind::Throttled);
    assert_eq!(last.code(), Some("RequestLimitExceeded"));
    assert!(attempts >= 3, "retried: {attempts} attempts");
    assert!(
        elapsed < Duration::from_millis(1700),
        "gave up at the deadline, not after: {elapsed:?}"
    );
    assert!(
        elapsed > Duration::from_millis(500),
        "did not give up early: {elapsed:?}"
    );
    // The last attempt may be cut short by the deadline before the simulator counts it.
    let calls = sim.stats("DescribeZones").await["calls"].as_u64().unwrap();
    assert!(
        (u64::from(attempts) - 1..=u64::from(attempts)).contains(&calls),
        "{calls} calls reached the simulator for {attempts} attempts"
    );
    assert!(err.to_string().contains("gave up after"), "{err}");
}

#[tokio::test]
async fn an_attempt_cut_short_by_the_deadline_reports_the_failure_before_it() {
    // Every answer is a throttle that takes 900 ms: the second attempt starts at most 1 s in
    // (backoff 50-100 ms), so it is always still waiting when the 1.5 s deadline passes.
    let sim = Sim::start(&[
        "--fault",
        "DescribeZones:error_rate=1,error_code=RequestLimitExceeded,delay_ms=900",
    ])
    .await;
    let client = sim.client(Credentials::new(ID, KEY));
    let start = Instant::now();
    let err = client
        .describe_zones(Some(start + Duration::from_millis(1500)))
        .await
        .unwrap_err();
    let CloudError::DeadlineExceeded { ref last, .. } = err else {
        panic!("expected a deadline error, got {err}")
    };
    assert_eq!(
        last.code(),
        Some("RequestLimitExceeded"),
        "the throttle, not the cut attempt's timeout, is what the caller learns: {err}"
    );
    assert_eq!(err.kind(), ErrorKind::Throttled);
    assert!(
        start.elapsed() < Duration::from_millis(1700),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn rate_limited_and_failing_calls_complete_through_retries() {
    let sim = Sim::start(&[]).await;
    let client = sim.client(Credentials::new(ID, KEY));
    sim.set_faults(serde_json::json!([{ "action": "DescribeZones", "rate_limit": 5.0 }]))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move { client.describe_zones(Some(deadline)).await }
    });
    for result in futures_join_all(calls).await {
        result.unwrap();
    }
    let throttled = client
        .stats()
        .throttled
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(throttled > 0, "the limit was hit");
    let errors = sim.stats("DescribeZones").await["errors"]["RequestLimitExceeded"]
        .as_u64()
        .unwrap();
    assert_eq!(errors, throttled);

    sim.set_faults(
        serde_json::json!([{ "action": "*", "error_rate": 0.5, "error_code": "InternalError" }]),
    )
    .await;
    for _ in 0..10 {
        client
            .describe_zones(Some(Instant::now() + Duration::from_secs(20)))
            .await
            .unwrap();
    }
    // A permanent error is not retried even when faults are around.
    sim.set_faults(
        serde_json::json!([{ "action": "*", "error_rate": 1.0, "error_code": "InvalidParameter" }]),
    )
    .await;
    let before = sim.stats("DescribeZones").await["calls"].as_u64().unwrap();
    let err = client.describe_zones(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        sim.stats("DescribeZones").await["calls"].as_u64().unwrap() - before,
        1
    );
}

async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn role_credentials_from_metadata_sign_calls_and_survive_a_restart() {
    let mut sim = Sim::start(&[
        "--cam-role",
        "CSIRole",
        "--instance",
        "ins-role0001:ap-guangzhou-4",
    ])
    .await;
    let metadata = MetadataClient::new(&format!("{}/instances/ins-role0001", sim.url)).unwrap();
    assert_eq!(metadata.instance_id().await.unwrap(), "ins-role0001");
    assert_eq!(metadata.zone().await.unwrap(), "ap-guangzhou-4");
    assert_eq!(metadata.region().await.unwrap(), REGION);
    assert_eq!(metadata.cam_role().await.unwrap(), "CSIRole");
    let source = CredentialSource::discover(None, &[], |_| None, metadata.clone()).unwrap();
    let credentials = source.get().await.unwrap();
    assert!(credentials.token.is_some() && credentials.expires_at.is_some());
    sim.client_with(source).describe_zones(None).await.unwrap();

    // Temporary keys without their token are refused.
    let mut tokenless = credentials.clone();
    tokenless.token = None;
    let err = sim
        .client(tokenless)
        .describe_zones(None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure.TokenFailure"));

    // Restart the simulator on the same state directory: the issued keys still work.
    sim.proc.stop(Duration::from_secs(10)).await.unwrap();
    let Sim { _dir, state, .. } = sim;
    let restarted = Sim::start_in(
        _dir,
        state,
        &[
            "--cam-role",
            "CSIRole",
            "--instance",
            "ins-role0001:ap-guangzhou-4",
        ],
    )
    .await;
    restarted
        .client(credentials)
        .describe_zones(None)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_official_python_sdk_talks_to_the_simulator() {
    let sim = Sim::start(&[]).await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../csi-conformance/python/sdk_against_sim.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .args([&host_of(&sim.url), ID, KEY, REGION])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the SDK failed (is tencentcloud-sdk-python-common installed? .ci/run installs it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        result["zones"],
        serde_json::json!(["ap-guangzhou-3", "ap-guangzhou-4"])
    );
    assert_eq!(result["bad_key_code"], "AuthFailure.SignatureFailure");
}
