//! A `cos-fuse mount --credentials-role` (how the node plugins mount a PV without a publish
//! Secret where `--node-credentials=allow`) against the simulator with 60-second CAM role keys
//! (`--role-key-ttl-secs 60`): the daemon refreshes the keys itself before they expire, so reads
//! of new objects keep working for more than two minutes (two key lifetimes and more), and it does
//! not fetch keys on every request. And a `cos-fuse mount --credentials-file` (how the FUSE host
//! starts daemons) whose file is replaced, as the host does when a republish brings a rotated
//! Secret: the running daemon uses the new keys within seconds, without a remount; while they are
//! refused, its stats file reports the error code and clears it after the next success.
//!
//! Needs root (a FUSE mount) and /dev/fuse. A guard unmounts the mount point (lazily if it must),
//! and the daemon and the simulator are killed when their handles drop, even when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials};
use e2e::bin_path;
use e2e::cleanup::mounts_under;
use e2e::process::Proc;

const SIM_BUCKET: &str = "sim-1250000000";
const SIM_ID: &str = "AKIDrolesim0001";
const SIM_KEY: &str = "role-sim-secret-key";
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the role test reads: longer than two lifetimes of the role's keys, or
/// `E2E_ROLE_READ_SECS` (the closing note's five-minute run).
fn read_for() -> Duration {
    let secs = std::env::var("E2E_ROLE_READ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(130);
    Duration::from_secs(secs)
}

fn is_mounted(point: &Path) -> bool {
    mounts_under(point).iter().any(|m| Path::new(m) == point)
}

/// Unmounts `point` when dropped (after the daemon is killed its mount answers ENOTCONN).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let target = self.0.to_string_lossy().into_owned();
            let plain = Command::new("umount").arg(&target).status();
            if !plain.is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").args(["-l", &target]).status();
            }
        }
    }
}

async fn start_sim(dir: &Path) -> (Proc, String, String) {
    let keys = dir.join("sim-keys");
    std::fs::write(&keys, format!("{SIM_ID} {SIM_KEY}\n")).unwrap();
    let state = dir.join("sim-state");
    std::fs::create_dir(&state).unwrap();
    let args: Vec<String> = [
        "--state-dir",
        &state.display().to_string(),
        "--keys-file",
        &keys.display().to_string(),
        "--cam-role",
        "csi-node-role",
        "--role-key-ttl-secs",
        "60",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut sim = Proc::spawn(
        "tcloud-sim",
        &bin_path("tcloud-sim").unwrap(),
        &args,
        &dir.join("sim.log"),
    )
    .unwrap();
    let first = sim.read_line(START_TIMEOUT).await.unwrap();
    let second = sim.read_line(START_TIMEOUT).await.unwrap();
    let (Some(api), Some(cos)) = (
        first.trim().strip_prefix("listening "),
        second.trim().strip_prefix("cos "),
    ) else {
        panic!("tcloud-sim printed {first:?} and {second:?}");
    };
    let (api, cos) = (api.to_owned(), cos.to_owned());
    if let Some(mut out) = sim.stdout.take() {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
        });
    }
    (sim, api, cos)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_with_60_second_role_keys_reads_for_over_two_minutes() {
    let dir = tempfile::Builder::new()
        .prefix("cos-role-keys")
        .tempdir()
        .unwrap();
    let (_sim, metadata, endpoint) = start_sim(dir.path()).await;
    let point = dir.path().join("mnt");
    let _unmount = Unmount(point.clone());
    let metadata_arg = ["--credentials-role", "--metadata-endpoint", &metadata];
    let (_daemon, log) = mount(dir.path(), &endpoint, &metadata_arg).await;
    let bucket = sim_bucket(&endpoint);
    let started = Instant::now();
    let mut reads = 0;
    let read_for = read_for();
    while started.elapsed() < read_for {
        // A new object each time: the read goes to the bucket, with the daemon's current keys.
        let name = format!("role-{reads}");
        let data = format!("object {reads} at {:?}", started.elapsed());
        bucket
            .put_object(&name, Bytes::from(data.clone()))
            .await
            .unwrap();
        let read = std::fs::read_to_string(point.join(&name)).unwrap_or_else(|e| {
            panic!(
                "read {name} after {:?}: {e}; daemon log: {}",
                started.elapsed(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert_eq!(read, data);
        reads += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(reads > 50, "only {reads} reads");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("ExpiredToken") && !log_text.contains("cannot refresh"),
        "{log_text}"
    );
}

/// Mounts the simulator's bucket with `cos-fuse mount` at `dir/mnt` (staging in `dir/staging`),
/// with `credentials` saying where its keys come from; returns the daemon and its log once the
/// mount is up.
async fn mount(dir: &Path, endpoint: &str, credentials: &[&str]) -> (Proc, PathBuf) {
    let point = dir.join("mnt");
    std::fs::create_dir(&point).unwrap();
    let staging = dir.join("staging");
    std::fs::create_dir(&staging).unwrap();
    let staging_option = format!("staging_dir={}", staging.display());
    let point_arg = point.display().to_string();
    let mut args: Vec<&str> = vec!["mount", "--endpoint", endpoint, "--bucket", SIM_BUCKET];
    args.extend_from_slice(credentials);
    args.extend([
        "-o",
        "use_path_request_style",
        "-o",
        &staging_option,
        &point_arg,
    ]);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let log = dir.join("cos-fuse.log");
    let daemon = Proc::spawn("cos-fuse", &bin_path("cos-fuse").unwrap(), &args, &log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(&point) {
        assert!(
            Instant::now() < deadline,
            "not mounted: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (daemon, log)
}

/// A client of the simulator's bucket with its fixed keys.
fn sim_bucket(endpoint: &str) -> ObjectClient {
    let mut config = ObjectConfig::new(endpoint, SIM_BUCKET);
    config.path_style = true;
    ObjectClient::new(config, ObjectCredentials::new(SIM_ID, SIM_KEY, None)).unwrap()
}

fn write_keys(path: &Path, id: &str, key: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    std::io::Write::write_all(
        &mut file,
        format!(r#"{{"SecretId":"{id}","SecretKey":"{key}"}}"#).as_bytes(),
    )
    .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Reads `name` through the mount until `ok(result)` holds, for at most `within`.
async fn read_until(
    point: &Path,
    name: &str,
    within: Duration,
    ok: impl Fn(&std::io::Result<String>) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok(&std::fs::read_to_string(point.join(name))) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

fn stats_auth(stats: &Path) -> serde_json::Value {
    std::fs::read(stats)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["status"]["auth_failure"].clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_credentials_file_reaches_the_running_daemon() {
    let dir = tempfile::Builder::new()
        .prefix("cos-key-file")
        .tempdir()
        .unwrap();
    let (_sim, _metadata, endpoint) = start_sim(dir.path()).await;
    let point = dir.path().join("mnt");
    let keys = dir.path().join("keys.json");
    write_keys(&keys, SIM_ID, SIM_KEY);
    let stats = dir.path().join("stats.json");
    let _unmount = Unmount(point.clone());
    let (keys_arg, stats_arg) = (keys.display().to_string(), stats.display().to_string());
    let (_daemon, log) = mount(
        dir.path(),
        &endpoint,
        &["--credentials-file", &keys_arg, "--stats-file", &stats_arg],
    )
    .await;
    let bucket = sim_bucket(&endpoint);
    let put = |name: &'static str| {
        let bucket = bucket.clone();
        async move {
            bucket
                .put_object(name, Bytes::from_static(b"data"))
                .await
                .unwrap();
        }
    };
    put("first").await;
    assert_eq!(
        std::fs::read_to_string(point.join("first")).unwrap(),
        "data"
    );
    // Keys the bucket refuses (a rotation gone wrong): new reads fail within a few seconds.
    write_keys(&keys, "AKIDunknown000001", "wrong-key");
    put("second").await;
    assert!(
        read_until(&point, "second", Duration::from_secs(15), |r| r.is_err()).await,
        "the daemon kept its old keys: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_auth(&stats)["current"] != serde_json::Value::Bool(true) {
        assert!(Instant::now() < deadline, "stats: {}", stats_auth(&stats));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stats_auth(&stats)["code"], "InvalidAccessKeyId");
    // The good keys again: reads work without a remount, and the failure is no longer current.
    write_keys(&keys, SIM_ID, SIM_KEY);
    put("third").await;
    assert!(
        read_until(&point, "third", Duration::from_secs(15), |r| r
            .as_ref()
            .is_ok_and(|t| t == "data"))
        .await,
        "the new keys did not reach the daemon: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_auth(&stats)["current"] != serde_json::Value::Bool(false) {
        assert!(Instant::now() < deadline, "stats: {}", stats_auth(&stats));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("wrong-key"),
        "a key in the log: {log_text}"
    );
}
