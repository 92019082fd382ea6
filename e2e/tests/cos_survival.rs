//! COS mounts that never break, end to end with real FUSE mounts: the FUSE host killed as a
//! runtime stops its container, under a reader and a writer; a newer cos-fuse program taking a
//! mount over under a sequential read; two pods with different fsGroups on one volume.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::kubelet::{Kubelet, Volume, rwx};
use e2e::{Driver, Env, EnvOptions};

const BUCKET: &str = "sim-1250000000";

async fn start() -> (Env, Kubelet) {
    let env = Env::start(Driver::Cos, EnvOptions::default())
        .await
        .unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.secrets = HashMap::from([
        ("SecretId".to_owned(), env.secret_id.clone()),
        ("SecretKey".to_owned(), env.secret_key.clone()),
    ]);
    (env, k)
}

/// A static PV of the bucket's `path`, published at the pod `pod`'s target.
fn volume(env: &Env, id: &str, pod: &str, path: &str, group: &str) -> Volume {
    let pods = env.workdir.join("kubelet/pods").join(pod);
    Volume {
        id: id.to_owned(),
        capability: rwx(group),
        staging: env.workdir.join("kubelet/staging").join(pod),
        target: pods.join("mount"),
        publish_context: HashMap::new(),
        volume_context: HashMap::from([
            ("url".to_owned(), env.cos_url.clone()),
            ("bucket".to_owned(), BUCKET.to_owned()),
            ("path".to_owned(), path.to_owned()),
        ]),
    }
}

fn pattern(at: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((at + i as u64) % 251) as u8;
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// What a reader or writer thread saw.
#[derive(Debug, Default)]
struct Seen {
    done: u64,
    errors: Vec<String>,
    /// The longest wait for one operation.
    longest: Duration,
}

/// Reads `file` (of `size` bytes, [`pattern`]) over and over in 1 MiB reads through one open
/// handle, until `stop`.
fn reader(file: PathBuf, size: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        let handle = std::fs::File::open(&file).unwrap();
        let (mut buf, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        let mut at = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let began = Instant::now();
            match handle.read_at(&mut buf, at) {
                Ok(n) => {
                    pattern(at, &mut want[..n]);
                    if buf[..n] == want[..n] {
                        seen.done += 1;
                    } else {
                        seen.errors.push(format!("wrong bytes at {at}"));
                    }
                    at = if n == 0 { 0 } else { (at + n as u64) % size };
                }
                Err(e) => seen.errors.push(format!("read at {at}: {e}")),
            }
            seen.longest = seen.longest.max(began.elapsed());
        }
        seen
    })
}

/// Writes, fsyncs and closes `dir/w-N` for N = 0, 1, ... until `stop`; returns how many.
fn writer(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::SeqCst) {
            let began = Instant::now();
            let name = dir.join(format!("w-{}", seen.done));
            let body = format!("file {} written and synced", seen.done);
            let written = std::fs::File::create(&name).and_then(|mut f| {
                std::io::Write::write_all(&mut f, body.as_bytes())?;
                f.sync_all()
            });
            match written {
                Ok(()) => seen.done += 1,
                Err(e) => seen.errors.push(format!("{}: {e}", name.display())),
            }
            seen.longest = seen.longest.max(began.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    })
}

/// The memory limit of `pid`'s own cgroup (v1 `memory.limit_in_bytes`, v2 `memory.max`).
fn memory_limit(pid: u32) -> Option<u64> {
    let cgroups = cgroup_of(pid);
    let (hierarchy, path) = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            Some(("/sys/fs/cgroup/memory", path))
        } else if controllers.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        {
            Some(("/sys/fs/cgroup", path))
        } else {
            None
        }
    })?;
    let dir = Path::new(hierarchy).join(path.trim_start_matches('/'));
    ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .and_then(|v| v.trim().parse().ok())
}

fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_container_killed_under_a_reader_and_a_writer_breaks_nothing() {
    let (mut env, mut k) = start().await;
    env.fuse_host
        .as_mut()
        .unwrap()
        .containerize()
        .await
        .unwrap();
    let a = volume(&env, "survive-a", "pod-a", "/a", "");
    let b = volume(&env, "survive-b", "pod-b", "/b", "");
    k.publish(&a, false).await.unwrap();
    k.publish(&b, false).await.unwrap();
    let size = 16u64 << 20;
    let mut big = vec![0u8; size as usize];
    pattern(0, &mut big);
    std::fs::write(a.target.join("big.bin"), &big).unwrap();
    let before = std::fs::File::create(b.target.join("before.txt")).and_then(|mut f| {
        std::io::Write::write_all(&mut f, b"synced before")?;
        f.sync_all()
    });
    before.unwrap();
    let host = env.fuse_host.as_ref().unwrap();
    let daemons = host.daemon_pids();
    assert_eq!(daemons.len(), 2);
    let container = host.container.as_ref().unwrap();
    for pid in &daemons {
        assert!(
            cgroup_of(*pid).contains("/daemons/"),
            "daemon {pid} is not in a cgroup of its own: {}",
            cgroup_of(*pid)
        );
        assert!(!container.pids().contains(pid));
        assert_eq!(
            memory_limit(*pid),
            Some(1 << 30),
            "daemon {pid}'s own memory limit (the harness's --daemon-memory-max-mb 1024)"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reading = reader(a.target.join("big.bin"), size, stop.clone());
    let writing = writer(b.target.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let host = env.fuse_host.as_mut().unwrap();
    host.kill_host();
    assert!(
        host.container.as_ref().unwrap().pids().is_empty(),
        "the container is gone"
    );
    // No host at all for a while: the mounts serve on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for pid in &daemons {
        assert!(alive(*pid), "daemon {pid} died with the host's container");
    }
    host.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let (read, written) = (reading.join().unwrap(), writing.join().unwrap());
    assert!(read.errors.is_empty(), "the reader saw {:?}", read.errors);
    assert!(
        written.errors.is_empty(),
        "the writer saw {:?}",
        written.errors
    );
    assert!(read.done > 20 && written.done > 20, "{read:?} {written:?}");
    eprintln!(
        "host killed as its container: {} reads (longest {:?}), {} synced files (longest {:?}), no error",
        read.done, read.longest, written.done, written.longest
    );

    // Everything synced, before and during, is in the mount and in the bucket.
    let bucket = env.bucket().unwrap();
    let mut expected = vec![("before.txt".to_owned(), "synced before".to_owned())];
    expected.extend(
        (0..written.done).map(|n| (format!("w-{n}"), format!("file {n} written and synced"))),
    );
    for (name, body) in &expected {
        assert_eq!(
            std::fs::read_to_string(b.target.join(name)).unwrap(),
            *body,
            "{name} through the mount"
        );
        let object = bucket
            .get_object_range(&format!("b/{name}"), 0..body.len() as u64, None)
            .await
            .unwrap();
        assert_eq!(&object[..], body.as_bytes(), "{name} in the bucket");
    }

    // The new host re-adopted both mounts, with their connections: it restarts a dead daemon.
    let host = env.fuse_host.as_ref().unwrap();
    assert_eq!(sorted(host.daemon_pids()), sorted(daemons.clone()));
    for v in [&a, &b] {
        let condition = k.stats(v).await.unwrap().volume_condition.unwrap();
        assert!(!condition.abnormal, "{}", condition.message);
    }
    let a_pid = daemon_of(&env, &a);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon_of(&env, &a) == a_pid {
        assert!(
            Instant::now() < deadline,
            "the re-adopted mount's daemon was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut head = vec![0u8; 4096];
    std::fs::File::open(a.target.join("big.bin"))
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert_eq!(head[..], big[..4096]);

    k.unpublish(&a).await.unwrap();
    k.unpublish(&b).await.unwrap();
    env.stop().await.unwrap();
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

/// The PID the host records for the daemon under `v`'s bind: the one whose mount has the
/// target's device.
fn daemon_of(env: &Env, v: &Volume) -> u32 {
    let device = std::fs::metadata(&v.target).unwrap().dev();
    let host = env.fuse_host.as_ref().unwrap();
    let records = std::fs::read_dir(host.state_dir.join("mounts")).unwrap();
    for record in records.flatten() {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(record.path()).unwrap()).unwrap();
        let target = PathBuf::from(json["target"].as_str().unwrap());
        if std::fs::metadata(&target).is_ok_and(|m| m.dev() == device) {
            return u32::try_from(json["pid"].as_u64().unwrap()).unwrap();
        }
    }
    panic!("no recorded mount shows {}", v.target.display());
}

/// How much the upgrade test reads: 1 GiB, or `E2E_UPGRADE_READ_MIB`.
fn upgrade_read_bytes() -> u64 {
    std::env::var("E2E_UPGRADE_READ_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024)
        << 20
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_program_takes_a_mount_over_under_a_sequential_read() {
    let (mut env, mut k) = start().await;
    let v = volume(&env, "upgrade", "pod-u", "/u", "");
    let size = upgrade_read_bytes();
    let mut body = vec![0u8; size as usize];
    pattern(0, &mut body);
    env.bucket()
        .unwrap()
        .put_object("u/big.bin", Bytes::from(body))
        .await
        .unwrap();
    k.publish(&v, false).await.unwrap();
    let old = daemon_of(&env, &v);

    // The newer program: another file, as a new image's would be.
    let newer = env.workdir.join("cos-fuse-newer");
    std::fs::copy(e2e::bin_path("cos-fuse").unwrap(), &newer).unwrap();

    let file = v.target.join("big.bin");
    let (progress, done) = (Arc::new(std::sync::atomic::AtomicU64::new(0)), size);
    let reading = {
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            let handle = std::fs::File::open(&file).unwrap();
            let (mut buf, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
            let mut at = 0u64;
            while at < done {
                let began = Instant::now();
                match handle.read_at(&mut buf, at) {
                    Ok(0) => {
                        seen.errors.push(format!("end of file at {at}"));
                        break;
                    }
                    Ok(n) => {
                        pattern(at, &mut want[..n]);
                        if buf[..n] != want[..n] {
                            seen.errors.push(format!("wrong bytes at {at}"));
                        }
                        at += n as u64;
                        seen.done += 1;
                    }
                    Err(e) => seen.errors.push(format!("read at {at}: {e}")),
                }
                seen.longest = seen.longest.max(began.elapsed());
                progress.store(at, Ordering::SeqCst);
            }
            seen
        })
    };
    while progress.load(Ordering::SeqCst) < size / 8 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let host = env.fuse_host.as_mut().unwrap();
    host.restart_with_program(&newer).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let pid = daemon_of(&env, &v);
        if pid != old {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no newer daemon took the mount over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let taken_at = progress.load(Ordering::SeqCst);
    let seen = reading.join().unwrap();
    assert!(seen.errors.is_empty(), "the reader saw {:?}", seen.errors);
    assert!(
        taken_at < size,
        "the take-over ended after the read ({taken_at} of {size} bytes): it proved nothing"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{new}/exe")).unwrap(),
        newer
    );
    assert!(!alive(old), "the older daemon exited");
    eprintln!(
        "take-over under a {} MiB sequential read: {} reads, 0 failed, longest read {:?} (taken over by {} MiB)",
        size >> 20,
        seen.done,
        seen.longest,
        taken_at >> 20
    );
    k.unpublish(&v).await.unwrap();
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_with_different_fs_groups_share_a_volume_on_one_node() {
    let (mut env, mut k) = start().await;
    let first = volume(&env, "shared", "pod-g1", "/g", "1000");
    let second = volume(&env, "shared", "pod-g2", "/g", "2000");
    k.publish(&first, false).await.unwrap();
    k.publish(&second, false).await.unwrap();
    std::fs::write(first.target.join("from-1000"), b"one").unwrap();
    std::fs::write(second.target.join("from-2000"), b"two").unwrap();
    assert_eq!(
        std::fs::read(second.target.join("from-1000")).unwrap(),
        b"one"
    );
    assert_eq!(
        std::fs::read(first.target.join("from-2000")).unwrap(),
        b"two"
    );
    assert_eq!(
        std::fs::metadata(first.target.join("from-2000"))
            .unwrap()
            .gid(),
        1000
    );
    assert_eq!(
        std::fs::metadata(second.target.join("from-1000"))
            .unwrap()
            .gid(),
        2000
    );
    k.unpublish(&first).await.unwrap();
    assert_eq!(
        std::fs::read(second.target.join("from-1000")).unwrap(),
        b"one"
    );
    k.unpublish(&second).await.unwrap();
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_publish_secret_reaches_the_running_daemon_without_a_remount() {
    let (mut env, mut k) = start().await;
    let v = volume(&env, "rotate", "pod-r", "/r", "");
    k.publish(&v, false).await.unwrap();
    std::fs::write(v.target.join("one"), b"1").unwrap();
    let (device, daemon) = (
        std::fs::metadata(&v.target).unwrap().dev(),
        daemon_of(&env, &v),
    );

    // The Secret is rotated: both pairs are valid for a while, kubelet republishes with the new
    // one, then the old one is revoked.
    let keys_file = env.workdir.join("sim-keys");
    let (old_id, old_key) = (env.secret_id.clone(), env.secret_key.clone());
    let (new_id, new_key) = ("AKIDrotated00001", e2e::env::random_token(32));
    let both = format!("{old_id} {old_key}\n{new_id} {new_key}\n");
    e2e::env::private_file(&keys_file, &both).unwrap();
    k.secrets = HashMap::from([
        ("SecretId".to_owned(), new_id.to_owned()),
        ("SecretKey".to_owned(), new_key.clone()),
    ]);
    k.publish(&v, false).await.unwrap();
    // The daemon looks at its keys file every 3 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    e2e::env::private_file(&keys_file, &format!("{new_id} {new_key}\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    for n in 0..5 {
        let name = format!("after-{n}");
        std::fs::write(v.target.join(&name), b"new keys").unwrap();
        assert_eq!(std::fs::read(v.target.join(&name)).unwrap(), b"new keys");
        // A name never looked up: a request to the bucket with the keys the daemon uses now.
        assert!(!v.target.join(format!("absent-{n}")).exists());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        std::fs::metadata(&v.target).unwrap().dev(),
        device,
        "no remount"
    );
    assert_eq!(daemon_of(&env, &v), daemon, "the same daemon");
    let condition = k.stats(&v).await.unwrap().volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

    e2e::env::private_file(&keys_file, &both).unwrap();
    k.unpublish(&v).await.unwrap();
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_that_cannot_be_restarted_fails_its_mount_instead_of_hanging_it() {
    let (mut env, mut k) = start().await;
    let v = volume(&env, "unhealable", "pod-h", "/h", "");
    k.publish(&v, false).await.unwrap();
    std::fs::write(v.target.join("f"), b"f").unwrap();
    let daemon = daemon_of(&env, &v);

    // A host whose program cannot run: its take-over fails (the old daemon serves on), and so
    // does every restart of the daemon once it is killed.
    let broken = env.workdir.join("broken-cos-fuse");
    std::fs::write(&broken, "#!/bin/sh\necho cannot start >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let host = env.fuse_host.as_mut().unwrap();
    host.extra_args = vec!["--restart-backoff-ms".to_owned(), "50".to_owned()];
    host.restart_with_program(&broken).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read(v.target.join("f")).unwrap(), b"f");
    assert_eq!(
        daemon_of(&env, &v),
        daemon,
        "the failed take-over left the daemon serving"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // A read waits while restarts are tried, then fails: it never hangs.
    let (tx, rx) = std::sync::mpsc::channel();
    let file = v.target.join("f");
    let began = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&file).map_err(|e| e.raw_os_error()));
    });
    let answer = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a read of a mount whose daemon cannot be restarted hung for 30 s");
    // The read that waited ends with the connection (ECONNABORTED); later ones find it gone.
    use nix::errno::Errno;
    assert!(
        matches!(answer, Err(Some(e)) if e == Errno::ECONNABORTED as i32 || e == Errno::ENOTCONN as i32),
        "{answer:?} after {:?}",
        began.elapsed()
    );
    let later = std::fs::read(v.target.join("f")).map_err(|e| e.raw_os_error());
    assert_eq!(later, Err(Some(Errno::ENOTCONN as i32)));
    let condition = k.stats(&v).await.unwrap().volume_condition.unwrap();
    assert!(condition.abnormal, "{}", condition.message);
    let metrics = env.fuse_host.as_ref().unwrap().scrape().await.unwrap();
    assert!(
        metrics.contains(r#"tencentcloud_csi_fuse_host_daemon_restarts_total{kind="cos-fuse",result="given_up"} 1"#),
        "{metrics}"
    );

    // With a working program again, the next publish repairs the mount.
    let working = e2e::bin_path("cos-fuse").unwrap();
    env.fuse_host
        .as_mut()
        .unwrap()
        .restart_with_program(&working)
        .await
        .unwrap();
    k.publish(&v, false).await.unwrap();
    assert_eq!(std::fs::read(v.target.join("f")).unwrap(), b"f");
    k.unpublish(&v).await.unwrap();
    env.stop().await.unwrap();
}
