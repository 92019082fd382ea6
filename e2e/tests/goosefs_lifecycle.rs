//! csi-goosefs end to end: datasets in the simulator's bucket mounted by `cos-fuse` over the
//! node's block cache. Origin bytes are read from the simulator's own counters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials};
use csi_proto::v1 as pb;
use e2e::kubelet::{Kubelet, Volume};
use e2e::{Driver, Env, EnvOptions};
use pb::volume_capability::access_mode::Mode;

const BUCKET: &str = "sim-1250000000";
const MIB: usize = 1 << 20;

fn bucket(env: &Env) -> ObjectClient {
    ObjectClient::new(
        ObjectConfig::new(&env.cos_url, BUCKET),
        ObjectCredentials::new(&env.secret_id, &env.secret_key, None),
    )
    .unwrap()
}

async fn start(driver_args: &[&str]) -> (Env, Kubelet) {
    let options = EnvOptions {
        driver_args: driver_args.iter().map(|a| (*a).to_owned()).collect(),
        ..EnvOptions::default()
    };
    let env = Env::start(Driver::Goosefs, options).await.unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.secrets = HashMap::from([
        ("SecretId".to_owned(), env.secret_id.clone()),
        ("SecretKey".to_owned(), env.secret_key.clone()),
    ]);
    (env, k)
}

/// A static dataset PV; `name` is also its volume ID, so two names are two mounts.
fn dataset(env: &Env, name: &str, extra: &[(&str, &str)]) -> Volume {
    let mut context = HashMap::from([
        ("url".to_owned(), env.cos_url.clone()),
        ("bucket".to_owned(), BUCKET.to_owned()),
        ("path".to_owned(), "/datasets/imagenet".to_owned()),
        (
            "additional_args".to_owned(),
            "-ostat_cache_expire=1".to_owned(),
        ),
    ]);
    context.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Volume {
        id: format!("dataset-{name}"),
        capability: pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode {
                mode: Mode::MultiNodeReaderOnly as i32,
            }),
            access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
        },
        staging: env.workdir.join("kubelet/staging").join(name),
        target: env.workdir.join("kubelet/pods").join(name).join("mount"),
        publish_context: HashMap::new(),
        volume_context: context,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The value of one series in a `/metrics` text (0 when absent).
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn origin_get_bytes(env: &Env) -> u64 {
    env.sim_stats().await.unwrap()["cos"]["GetObject"]["bytes_sent"]
        .as_u64()
        .unwrap_or(0)
}

fn cache_dir(env: &Env) -> PathBuf {
    env.workdir.join("goosefs-cache")
}

/// Every block file of the cache, with its size.
fn blocks(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("blocks")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out
}

/// A mount served blocks another mount cached first proves, with one-byte GETs, that its own keys
/// may read the object; concurrent first readers of one object may each prove once.
const PROOF_BYTES_MAX: u64 = 8;

#[tokio::test(flavor = "multi_thread")]
async fn two_mounts_share_the_cache_and_it_survives_a_daemon_restart() {
    let (mut env, mut k) = start(&[]).await;
    let data = pattern(8 * MIB, 1);
    bucket(&env)
        .put_object("datasets/imagenet/shard-0.bin", Bytes::from(data.clone()))
        .await
        .unwrap();
    let a = dataset(&env, "pod-a", &[]);
    let b = dataset(&env, "pod-b", &[]);
    k.publish(&a, true).await.unwrap();
    k.publish(&b, true).await.unwrap();
    assert_eq!(env.fuse_host.as_ref().unwrap().daemon_pids().len(), 2);
    assert!(
        std::fs::write(a.target.join("new.txt"), b"x").is_err(),
        "datasets are read-only by default"
    );

    env.reset_sim_stats().await.unwrap();
    assert_eq!(std::fs::read(a.target.join("shard-0.bin")).unwrap(), data);
    let after_first = origin_get_bytes(&env).await;
    assert!(after_first >= data.len() as u64, "{after_first}");
    assert_eq!(std::fs::read(b.target.join("shard-0.bin")).unwrap(), data);
    // Served from the node's cache: the second mount's only GETs are its one-byte proofs that
    // its own keys may read the object (one per concurrent first reader at most).
    let after_second = origin_get_bytes(&env).await;
    assert!(
        (after_first + 1..=after_first + PROOF_BYTES_MAX).contains(&after_second),
        "the second mount reads the dataset from the node's cache: {after_first} then {after_second}"
    );

    // The daemon dies and is restarted by the next publish: the cache on disk is still warm.
    let pid = env.fuse_host.as_ref().unwrap().daemon_pids()[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    k.publish(&a, true).await.unwrap();
    k.publish(&b, true).await.unwrap();
    assert_eq!(std::fs::read(a.target.join("shard-0.bin")).unwrap(), data);
    assert_eq!(std::fs::read(b.target.join("shard-0.bin")).unwrap(), data);
    let after_restart = origin_get_bytes(&env).await;
    assert!(
        (after_second + 1..=after_second + 2 * PROOF_BYTES_MAX).contains(&after_restart),
        "a restarted daemon serves the dataset from the cache: {after_second} then {after_restart}"
    );
    // The FUSE host serves its daemons' figures, summed by kind, with bounded labels.
    let host = env.fuse_host.as_ref().unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        text = host.scrape().await.unwrap();
        if value(
            &text,
            "tencentcloud_csi_fuse_bytes_total{kind=\"cos-fuse\",direction=\"read\"}",
        ) > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for series in [
        "tencentcloud_csi_fuse_operations_total{kind=\"cos-fuse\",op=\"read\"}",
        "tencentcloud_csi_fuse_bytes_total{kind=\"cos-fuse\",direction=\"read\"}",
        "tencentcloud_csi_fuse_cache_requests_total{kind=\"cos-fuse\",result=\"hit\"}",
        "tencentcloud_csi_fuse_cache_origin_bytes_total{kind=\"cos-fuse\"}",
        "tencentcloud_csi_fuse_cache_capacity_bytes{kind=\"cos-fuse\"}",
        "tencentcloud_csi_fuse_host_daemons_started_total{kind=\"cos-fuse\"}",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert!(!text.contains("dataset-pod-a"), "no volume IDs in labels");
    k.unpublish(&a).await.unwrap();
    k.unpublish(&b).await.unwrap();
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_objects_are_fresh_and_corrupt_blocks_are_refetched() {
    let (mut env, mut k) = start(&[]).await;
    let store = bucket(&env);
    store
        .put_object(
            "datasets/imagenet/labels.txt",
            Bytes::from_static(b"version one"),
        )
        .await
        .unwrap();
    let a = dataset(&env, "pod-c", &[]);
    k.publish(&a, true).await.unwrap();
    assert_eq!(
        std::fs::read(a.target.join("labels.txt")).unwrap(),
        b"version one"
    );

    store
        .put_object(
            "datasets/imagenet/labels.txt",
            Bytes::from_static(b"version two!"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read(a.target.join("labels.txt")).unwrap(),
        b"version two!",
        "a changed object is read fresh once its metadata TTL passed"
    );

    let data = pattern(3 * MIB, 7);
    store
        .put_object("datasets/imagenet/shard-1.bin", Bytes::from(data.clone()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(std::fs::read(a.target.join("shard-1.bin")).unwrap(), data);
    // Blocks reach the disk in the background: wait for the shard's three.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while blocks(&cache_dir(&env))
        .iter()
        .filter(|(_, len)| *len > MIB as u64)
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the shard's blocks were not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Damage every cached block on disk: a fresh mount (no kernel page cache) must not see it.
    for (path, len) in blocks(&cache_dir(&env)) {
        let mut bytes = std::fs::read(&path).unwrap();
        let last = len as usize - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let fresh = dataset(&env, "pod-d", &[]);
    k.publish(&fresh, true).await.unwrap();
    env.reset_sim_stats().await.unwrap();
    assert_eq!(
        std::fs::read(fresh.target.join("shard-1.bin")).unwrap(),
        data,
        "corrupt blocks are never served"
    );
    assert!(
        origin_get_bytes(&env).await >= data.len() as u64,
        "the corrupt blocks were fetched again"
    );
    k.unpublish(&a).await.unwrap();
    k.unpublish(&fresh).await.unwrap();
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_stays_within_its_capacity_and_preload_warms_it() {
    let capacity = 6 * MIB as u64;
    let (mut env, mut k) = start(&["--cache-capacity", &capacity.to_string()]).await;
    let store = bucket(&env);
    let mut files = Vec::new();
    for i in 0..4u8 {
        let data = pattern(2 * MIB, i);
        let key = format!("datasets/imagenet/train/part-{i}.bin");
        store
            .put_object(&key, Bytes::from(data.clone()))
            .await
            .unwrap();
        files.push((format!("train/part-{i}.bin"), data));
    }
    let a = dataset(&env, "pod-e", &[]);
    k.publish(&a, true).await.unwrap();
    for (name, data) in &files {
        assert_eq!(&std::fs::read(a.target.join(name)).unwrap(), data);
        let used: u64 = blocks(&cache_dir(&env)).iter().map(|(_, len)| len).sum();
        assert!(
            used <= capacity,
            "{used} bytes cached with a capacity of {capacity}"
        );
    }
    k.unpublish(&a).await.unwrap();

    // Warm-up: a dataset that fits is fetched before anyone reads it.
    let small = pattern(MIB, 9);
    store
        .put_object("datasets/imagenet/val/v.bin", Bytes::from(small.clone()))
        .await
        .unwrap();
    let warmed = dataset(&env, "pod-f", &[("preload", "val")]);
    k.publish(&warmed, true).await.unwrap();
    let logs = env.fuse_host.as_ref().unwrap().state_dir.join("logs");
    let mut warmed_up = false;
    for _ in 0..100 {
        let said = std::fs::read_dir(&logs).unwrap().flatten().any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|l| l.contains("cache warm-up finished"))
        });
        if said {
            warmed_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(warmed_up, "the daemon reports the warm-up finished");
    env.reset_sim_stats().await.unwrap();
    assert_eq!(
        std::fs::read(warmed.target.join("val/v.bin")).unwrap(),
        small
    );
    assert_eq!(
        origin_get_bytes(&env).await,
        0,
        "a warmed dataset is read without touching the origin"
    );
    k.unpublish(&warmed).await.unwrap();
    env.stop().await.unwrap();
}
