//! csi-cos end to end: the simulator's bucket mounted for real by `cos-fuse`, which the FUSE host
//! runs outside the node plugin; files written and read through the kernel and checked in the
//! bucket; a node plugin killed and restarted under a live mount; a killed daemon replaced on its
//! kernel connection under readers, with no remount; an upload failing mid-file; prefix-per-PV provisioning with both delete policies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use bytes::Bytes;
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials};
use e2e::cleanup::mounts_under;
use e2e::kubelet::{Kubelet, Volume, rwx};
use e2e::{Driver, Env, EnvOptions};

const BUCKET: &str = "sim-1250000000";

fn bucket(env: &Env) -> ObjectClient {
    ObjectClient::new(
        ObjectConfig::new(&env.cos_url, BUCKET),
        ObjectCredentials::new(&env.secret_id, &env.secret_key, None),
    )
    .unwrap()
}

async fn start() -> (Env, Kubelet) {
    let env = Env::start(Driver::Cos, EnvOptions::default())
        .await
        .unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.secrets = HashMap::from([
        ("SecretId".to_owned(), env.secret_id.clone()),
        ("SecretKey".to_owned(), format!("{}\n", env.secret_key)),
    ]);
    (env, k)
}

/// A static PV, as TKE's documentation writes them.
fn static_volume(env: &Env, name: &str, path: &str, args: &str) -> Volume {
    let pods = env.workdir.join("kubelet/pods").join(name);
    Volume {
        id: format!("static-{name}"),
        capability: rwx(""),
        staging: env.workdir.join("kubelet/staging").join(name),
        target: pods.join("mount"),
        publish_context: HashMap::new(),
        volume_context: HashMap::from([
            ("url".to_owned(), env.cos_url.clone()),
            ("bucket".to_owned(), BUCKET.to_owned()),
            ("path".to_owned(), path.to_owned()),
            ("additional_args".to_owned(), args.to_owned()),
        ]),
    }
}

fn daemon_pids(env: &Env) -> Vec<u32> {
    env.fuse_host.as_ref().unwrap().daemon_pids()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_written_through_the_mount_are_objects_in_the_bucket() {
    let (mut env, mut k) = start().await;
    let volume = static_volume(
        &env,
        "pod-a",
        "/team/data",
        "-oallow_other -ouid=1000 -ostat_cache_expire=1",
    );
    k.publish(&volume, false).await.unwrap();
    let root = &volume.target;

    std::fs::write(root.join("hello.txt"), b"hello from a pod").unwrap();
    std::fs::create_dir_all(root.join("logs/2026")).unwrap();
    std::fs::write(root.join("logs/2026/a.log"), b"one").unwrap();
    std::fs::write(root.join("logs/2026/b.log"), b"two").unwrap();
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("hello.txt"))
        .unwrap();
    appended.write_all(b", appended").unwrap();
    drop(appended);
    std::fs::rename(root.join("logs"), root.join("archive")).unwrap();
    assert_eq!(
        std::fs::metadata(root.join("hello.txt")).unwrap().uid(),
        1000
    );

    let b = bucket(&env);
    let hello = b
        .get_object_range("team/data/hello.txt", 0..1024, None)
        .await
        .unwrap();
    assert_eq!(&hello[..], b"hello from a pod, appended");
    let keys: Vec<String> = b
        .list_objects_v2("team/data/", None, None, None)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        keys.contains(&"team/data/archive/2026/a.log".to_owned()),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("team/data/logs/")),
        "{keys:?}"
    );

    // An object written by someone else shows up in the mount.
    // An object written by someone else shows up once the caches' TTL (1 s here) has passed.
    b.put_object("team/data/from-outside.txt", Bytes::from_static(b"outside"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read(root.join("from-outside.txt")).unwrap(),
        b"outside"
    );

    let stats = k.stats(&volume).await.unwrap();
    let condition = stats.volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

    k.unpublish(&volume).await.unwrap();
    assert!(
        mounts_under(&env.workdir).is_empty(),
        "{:?}",
        mounts_under(&env.workdir)
    );
    assert!(
        daemon_pids(&env).is_empty(),
        "the daemon is stopped with its last bind"
    );
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_plugin_leaves_the_mount_serving_and_two_pods_share_one_daemon() {
    let (mut env, mut k) = start().await;
    let first = static_volume(&env, "pod-b1", "/shared", "");
    let mut second = first.clone();
    second.target = env.workdir.join("kubelet/pods/pod-b2/mount");
    k.publish(&first, false).await.unwrap();
    k.publish(&second, true).await.unwrap();
    assert_eq!(daemon_pids(&env).len(), 1, "one daemon per volume per node");
    std::fs::write(first.target.join("before.txt"), b"before").unwrap();
    assert_eq!(
        std::fs::read(second.target.join("before.txt")).unwrap(),
        b"before"
    );
    assert!(
        std::fs::write(second.target.join("nope.txt"), b"x").is_err(),
        "the read-only pod cannot write"
    );

    env.restart_driver().await.unwrap();
    let mut k = Kubelet {
        client: env.client().await.unwrap(),
        ..k
    };
    std::fs::write(first.target.join("after.txt"), b"after the plugin restart").unwrap();
    assert_eq!(
        std::fs::read(first.target.join("after.txt")).unwrap(),
        b"after the plugin restart"
    );
    // The restarted plugin confirms the existing mount instead of making another.
    k.publish(&first, false).await.unwrap();
    assert_eq!(daemon_pids(&env).len(), 1);

    k.unpublish(&second).await.unwrap();
    assert!(
        first.target.join("after.txt").exists(),
        "the other pod keeps its mount"
    );
    k.unpublish(&first).await.unwrap();
    assert!(
        mounts_under(&env.workdir).is_empty(),
        "{:?}",
        mounts_under(&env.workdir)
    );
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_is_replaced_on_its_connection_under_a_reader() {
    let (mut env, mut k) = start().await;
    let volume = static_volume(&env, "pod-c", "/", "");
    k.publish(&volume, false).await.unwrap();
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(volume.target.join("big.bin"), &big).unwrap();
    std::fs::write(volume.target.join("kept.txt"), b"kept").unwrap();
    let pids = daemon_pids(&env);
    assert_eq!(pids.len(), 1);
    let device = std::fs::metadata(&volume.target).unwrap().dev();

    // A reader holding the big file open, and one opening the small file by name, throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, dir, big) = (stop.clone(), volume.target.clone(), big.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let (mut reads, mut errors) = (0u64, Vec::new());
            let file = std::fs::File::open(dir.join("big.bin")).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match file.read_at(&mut buf, at as u64) {
                    Ok(n) if buf[..n] == big[at..at + n] => reads += 1,
                    Ok(n) => errors.push(format!("wrong bytes at {at} ({n})")),
                    Err(e) => errors.push(format!("read at {at}: {e}")),
                }
                match std::fs::read(dir.join("kept.txt")) {
                    Ok(b) if b == b"kept" => reads += 1,
                    Ok(b) => errors.push(format!("kept.txt read {b:?}")),
                    Err(e) => errors.push(format!("kept.txt: {e}")),
                }
                at = (at + (1 << 20)) % big.len();
            }
            (reads, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let replaced = loop {
        let now = daemon_pids(&env);
        if now.len() == 1 && now[0] != pids[0] {
            break now[0];
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no daemon replaced {} within 20 s",
            pids[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (reads, errors) = reader.join().unwrap();
    assert!(errors.is_empty(), "the readers saw errors: {errors:?}");
    assert!(reads > 10, "only {reads} reads");
    assert_eq!(
        std::fs::metadata(&volume.target).unwrap().dev(),
        device,
        "the same mount answers: no remount"
    );
    assert!(alive(replaced));
    let condition = k.stats(&volume).await.unwrap().volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);
    let metrics = env.fuse_host.as_ref().unwrap().scrape().await.unwrap();
    assert!(
        metrics.contains(
            r#"tencentcloud_csi_fuse_host_daemon_restarts_total{kind="cos-fuse",result="ok"} 1"#
        ),
        "{metrics}"
    );
    // New files and names still work through the new daemon.
    std::fs::write(volume.target.join("after.txt"), b"after").unwrap();
    assert_eq!(
        std::fs::read(volume.target.join("after.txt")).unwrap(),
        b"after"
    );
    k.unpublish(&volume).await.unwrap();
    env.stop().await.unwrap();
}

/// The kernel asks a mount's daemon for the root's attributes once they are older than
/// `stat_cache_expire`: a daemon killed on an idle mount leaves the next look at the mount point
/// waiting for its successor, so the successor must serve before it looks there itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_on_an_idle_mount_is_replaced_and_the_mount_answers() {
    let (mut env, mut k) = start().await;
    let volume = static_volume(&env, "pod-e", "/", "-ostat_cache_expire=1");
    k.publish(&volume, false).await.unwrap();
    std::fs::write(volume.target.join("idle.txt"), b"idle").unwrap();
    let pids = daemon_pids(&env);
    assert_eq!(pids.len(), 1);
    // Idle past the attribute cache, then the kill.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Read in a thread of its own: a hung mount must fail the test, not hang it.
    let (tx, rx) = std::sync::mpsc::channel();
    let file = volume.target.join("idle.txt");
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(file).map_err(|e| e.to_string()));
    });
    let read = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the mount hung for 20 s after its daemon was killed");
    assert_eq!(read.unwrap(), b"idle");
    // The host records the successor once it serves: a moment after the read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while daemon_pids(&env) == pids {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host still records the dead daemon {}",
            pids[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(daemon_pids(&env).len(), 1);
    k.unpublish(&volume).await.unwrap();
    env.stop().await.unwrap();
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_failing_mid_file_fails_the_close_and_leaves_no_object() {
    let (mut env, mut k) = start().await;
    let volume = static_volume(&env, "pod-d", "/", "");
    k.publish(&volume, false).await.unwrap();
    let http = reqwest::Client::new();
    let set_faults = |rules: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/_sim/faults", env.sim_url);
        async move {
            http.put(url)
                .json(&rules)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    };
    let path = volume.target.join("big.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..12 {
        file.write_all(&chunk).unwrap();
    }
    set_faults(serde_json::json!([
        { "action": "UploadPart", "error_rate": 1.0 },
        { "action": "PutObject", "error_rate": 1.0 }
    ]))
    .await;
    for _ in 0..12 {
        // Writes may already fail once a part upload failed; the close must fail in any case.
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let closed = file.sync_all();
    drop(file);
    assert!(closed.is_err(), "fsync after a failed upload must fail");
    set_faults(serde_json::json!([])).await;
    assert_eq!(
        bucket(&env).head_object("big.bin").await.unwrap(),
        None,
        "no partial object is visible"
    );
    k.unpublish(&volume).await.unwrap();
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_per_volume_is_kept_or_deleted_as_the_class_says() {
    let (mut env, mut k) = start().await;
    let b = bucket(&env);
    for (name, on_delete) in [("pvc-keep", "retain"), ("pvc-drop", "delete")] {
        k.parameters = HashMap::from([
            ("url".to_owned(), env.cos_url.clone()),
            ("bucket".to_owned(), BUCKET.to_owned()),
            ("path".to_owned(), "/k8s".to_owned()),
            ("onDelete".to_owned(), on_delete.to_owned()),
            ("csi.storage.k8s.io/pvc/name".to_owned(), "claim".to_owned()),
        ]);
        let volume = k.create(name, 1, rwx("2000"), None).await.unwrap();
        assert_eq!(volume.volume_context["path"], format!("/k8s/{name}"));
        let again = k.create(name, 1, rwx("2000"), None).await.unwrap();
        assert_eq!(again.id, volume.id, "CreateVolume is idempotent");
        k.publish(&volume, false).await.unwrap();
        std::fs::write(volume.target.join("data.txt"), name).unwrap();
        assert_eq!(
            std::fs::metadata(volume.target.join("data.txt"))
                .unwrap()
                .gid(),
            2000,
            "the pod's fsGroup owns the files"
        );
        k.unpublish(&volume).await.unwrap();
        k.delete(&volume).await.unwrap();
        k.delete(&volume).await.unwrap();
        let left = b
            .list_objects_v2(&format!("k8s/{name}/"), None, None, None)
            .await
            .unwrap()
            .objects
            .len();
        match on_delete {
            "retain" => assert_eq!(left, 2, "marker and data kept"),
            _ => assert_eq!(left, 0, "exactly the prefix is gone"),
        }
    }
    assert!(
        b.head_object("k8s/pvc-keep/data.txt")
            .await
            .unwrap()
            .is_some(),
        "deleting one prefix leaves the other"
    );
    env.stop().await.unwrap();
}
