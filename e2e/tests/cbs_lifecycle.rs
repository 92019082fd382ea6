//! The CBS driver end to end: the real `csi-cbs` binary against `tcloud-sim`, whose disks are
//! sparse files attached as real loop devices, formatted with real ext4 and xfs and mounted for
//! real. Covers snapshot restore into a larger volume, growth online and at staging, raw block
//! volumes, volume health, a crash in the middle of NodeStage, and whole lifecycles under injected
//! cloud faults.
//!
//! Every test ends by asserting that no mount and no loop device is left under its work directory
//! once its volumes were torn down, before `Env::stop` cleans up: so what is checked is that the
//! driver and the simulator cleaned up, not the harness. When a test fails, its `Env` is dropped,
//! which kills both processes and removes every mount, loop device and file, and the tails of the
//! run's logs are printed first.
//!
//! Needs root, `losetup`, `mkfs.ext4` and `mkfs.xfs`, and the workspace binaries
//! (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csi_proto::v1 as pb;
use e2e::cleanup::{loops_under, mounts_under};
use e2e::env::NODE_ID;
use e2e::kubelet::{GIB, Kubelet, Volume, block_capability, df_bytes, mount_capability};
use e2e::{Driver, Env, EnvOptions};
use pb::volume_usage::Unit;
use tonic::Code;

const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
/// How a sidecar retries a failed call in this file: attempts, and the pause between them.
const RETRY_ATTEMPTS: u32 = 30;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Prints the tail of every log of the run when the test panics: the `Env` dropped after it
/// removes the logs with the rest of the work directory. Declare it after the `Env`.
struct LogsOnPanic(PathBuf);

impl LogsOnPanic {
    fn new(env: &Env) -> LogsOnPanic {
        LogsOnPanic(env.workdir.join("logs"))
    }
}

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
                "==== {} (last 80 lines)\n{}",
                entry.path().display(),
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}

async fn start(sim_args: &[&str]) -> Env {
    Env::start(
        Driver::Cbs,
        EnvOptions {
            sim_args: sim_args.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        },
    )
    .await
    .expect("start tcloud-sim and csi-cbs")
}

async fn kubelet(env: &Env) -> Kubelet {
    Kubelet::new(env.client().await.unwrap(), &env.workdir)
}

/// Asserts that the driver and the simulator left no mount and no loop device behind, then stops
/// the environment. Call it once every volume was torn down.
async fn finish(mut env: Env) {
    let mounts = mounts_under(&env.workdir);
    assert!(
        mounts.is_empty(),
        "mounts left behind after every volume was torn down: {mounts:?}"
    );
    let loops = loops_under(&env.workdir);
    assert!(
        loops.is_empty(),
        "loop devices left behind after every volume was detached: {loops:?}"
    );
    env.stop().await.expect("stop the driver and the simulator");
}

/// How many mounts are stacked at exactly `path`, from `/proc/self/mountinfo`. (Our paths have no
/// characters that mountinfo escapes.)
fn mounts_at(path: &Path) -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    text.lines()
        .filter(|line| line.split(' ').nth(4) == Some(path))
        .count()
}

/// Where NodeStage mounts a volume: the staging directory, or the device file in it for a block
/// volume.
fn staged_at(volume: &Volume) -> PathBuf {
    match volume.capability.access_type {
        Some(pb::volume_capability::AccessType::Block(_)) => volume.staging.join(&volume.id),
        _ => volume.staging.clone(),
    }
}

/// The gRPC code of a failed Kubelet call.
fn code_of(error: &anyhow::Error) -> Option<Code> {
    error.downcast_ref::<tonic::Status>().map(|s| s.code())
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::iter::repeat_with(|| rng.u8(..)).take(len).collect()
}

/// Writes `data` and flushes it to the disk: a snapshot holds what reached the disk.
fn write_flushed(path: &Path, data: &[u8]) {
    let mut file = File::create(path).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
    nix::unistd::sync();
}

/// Asserts that a filesystem of `bytes` fills most of a `gib` GiB device.
fn assert_fills(bytes: u64, gib: i64, what: &str) {
    let device = (gib * GIB) as u64;
    assert!(
        bytes * 10 > device * 9 && bytes <= device,
        "{what}: df shows {bytes} bytes ({:.2} GiB), not close to the {gib} GiB device",
        bytes as f64 / GIB as f64
    );
}

/// NodeStage twice, then NodePublish twice: one mount at each path, as after a single call.
async fn stage_and_publish_twice(k: &mut Kubelet, volume: &Volume) {
    for _ in 0..2 {
        k.stage(volume).await.unwrap();
    }
    assert_eq!(
        mounts_at(&staged_at(volume)),
        1,
        "NodeStage twice must leave one mount at {}",
        staged_at(volume).display()
    );
    for _ in 0..2 {
        k.publish(volume, false).await.unwrap();
    }
    assert_eq!(
        mounts_at(&volume.target),
        1,
        "NodePublish twice must leave one mount at {}",
        volume.target.display()
    );
}

fn usage(stats: &pb::NodeGetVolumeStatsResponse, unit: Unit) -> &pb::VolumeUsage {
    stats
        .usage
        .iter()
        .find(|u| u.unit == unit as i32)
        .unwrap_or_else(|| panic!("no {unit:?} usage in {stats:?}"))
}

fn condition(stats: &pb::NodeGetVolumeStatsResponse) -> &pb::VolumeCondition {
    stats
        .volume_condition
        .as_ref()
        .unwrap_or_else(|| panic!("no volume condition in {stats:?}"))
}

/// Data written and flushed before a snapshot is in a volume restored from it into a larger ext4
/// volume, whose filesystem NodeStage grew to the new size. Stage and publish are idempotent.
#[tokio::test]
async fn ext4_snapshot_restores_into_a_larger_volume_grown_at_staging() {
    let env = start(&[]).await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;

    let mut source = k
        .create("pvc-ext4-source", 10, mount_capability("ext4"), None)
        .await
        .unwrap();
    k.attach(&mut source).await.unwrap();
    stage_and_publish_twice(&mut k, &source).await;
    assert_fills(df_bytes(&source.target).unwrap(), 10, "the source volume");
    let data = pattern(3 << 20, 1);
    write_flushed(&source.target.join("data.bin"), &data);
    // Taken while mounted, as the snapshotter does: the copy is crash-consistent, so the restored
    // ext4 has a journal to replay.
    let snapshot = k
        .snapshot(&source, "snapshot-ext4-source", SNAPSHOT_WAIT)
        .await
        .unwrap();

    let mut restored = k
        .create(
            "pvc-ext4-restored",
            30,
            mount_capability("ext4"),
            Some(&snapshot),
        )
        .await
        .unwrap();
    k.attach(&mut restored).await.unwrap();
    stage_and_publish_twice(&mut k, &restored).await;
    assert!(
        std::fs::read(restored.target.join("data.bin")).unwrap() == data,
        "the restored volume lacks the data written before the snapshot"
    );
    assert_fills(
        df_bytes(&restored.target).unwrap(),
        30,
        "the restored volume (restored from a 10 GiB snapshot into 30 GiB)",
    );

    k.tear_down(&restored).await.unwrap();
    k.tear_down(&source).await.unwrap();
    k.delete_snapshot(&snapshot).await.unwrap();
    finish(env).await;
}

/// Online growth of a mounted ext4 either works (with CAP_SYS_RESOURCE) or says UNAVAILABLE and
/// why, never a success that left df as it was; the next staging grows the filesystem, and
/// kubelet's retried NodeExpandVolume then succeeds.
#[tokio::test]
async fn ext4_expansion_grows_online_or_at_the_next_staging() {
    let env = start(&[]).await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;

    let mut volume = k
        .create("pvc-ext4-grow", 10, mount_capability("ext4"), None)
        .await
        .unwrap();
    k.attach(&mut volume).await.unwrap();
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let data = pattern(1 << 20, 2);
    write_flushed(&volume.target.join("data.bin"), &data);
    // A volume in use gets mounted again over its life (a pod moves, the node reboots): remount it
    // in a later second than its mkfs, as any volume but a brand-new one is.
    k.unpublish(&volume).await.unwrap();
    k.unstage(&volume).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let before = df_bytes(&volume.target).unwrap();
    assert_fills(before, 10, "the new volume");

    match k.expand(&volume, 20).await {
        Ok(capacity) => {
            assert_eq!(capacity, 20 * GIB, "NodeExpandVolume capacity");
            assert_fills(
                df_bytes(&volume.target).unwrap(),
                20,
                "NodeExpandVolume succeeded, so the mounted ext4",
            );
            eprintln!("online ext4 growth worked: this machine has CAP_SYS_RESOURCE");
        }
        Err(e) => {
            let status = e
                .downcast_ref::<tonic::Status>()
                .unwrap_or_else(|| panic!("expansion failed without a gRPC status: {e:#}"));
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(
                status.message().contains("CAP_SYS_RESOURCE"),
                "the error should say what is missing: {status:?}"
            );
            eprintln!(
                "online ext4 growth refused as expected: {}",
                status.message()
            );
        }
    }

    k.unpublish(&volume).await.unwrap();
    k.unstage(&volume).await.unwrap();
    assert_eq!(mounts_at(&volume.staging), 0, "unstaged, yet mounted");
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let after = df_bytes(&volume.target).unwrap();
    assert_fills(after, 20, "restaged on the 20 GiB device, the ext4");
    assert!(before < after, "df {before} -> {after}");
    assert!(
        std::fs::read(volume.target.join("data.bin")).unwrap() == data,
        "growth lost the data"
    );
    // Kubelet retries the node expansion until it succeeds: now there is nothing left to grow.
    assert_eq!(k.expand(&volume, 20).await.unwrap(), 20 * GIB);

    k.tear_down(&volume).await.unwrap();
    finish(env).await;
}

/// A mounted xfs grows online: df shows the new size while the volume stays mounted.
#[tokio::test]
async fn xfs_expansion_is_visible_in_df_while_mounted() {
    let env = start(&[]).await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;

    let mut volume = k
        .create("pvc-xfs-grow", 10, mount_capability("xfs"), None)
        .await
        .unwrap();
    k.attach(&mut volume).await.unwrap();
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let data = pattern(1 << 20, 3);
    write_flushed(&volume.target.join("data.bin"), &data);
    let before = df_bytes(&volume.target).unwrap();
    assert_fills(before, 10, "the new volume");

    let capacity = k.expand(&volume, 20).await.unwrap();
    assert_eq!(capacity, 20 * GIB, "NodeExpandVolume capacity");
    let after = df_bytes(&volume.target).unwrap();
    assert!(before < after, "df {before} -> {after}");
    assert_fills(after, 20, "the grown xfs");
    assert_eq!(mounts_at(&volume.target), 1);
    assert!(std::fs::read(volume.target.join("data.bin")).unwrap() == data);

    k.tear_down(&volume).await.unwrap();
    finish(env).await;
}

/// A block volume is published as a file bound to the disk's device: it has the volume's size,
/// and what is written through it lands on the CBS disk.
#[tokio::test]
async fn block_volume_target_is_the_disk() {
    let env = start(&[]).await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;

    let mut volume = k
        .create("pvc-block", 10, block_capability(), None)
        .await
        .unwrap();
    k.attach(&mut volume).await.unwrap();
    stage_and_publish_twice(&mut k, &volume).await;

    let meta = std::fs::metadata(&volume.target).unwrap();
    assert!(
        meta.file_type().is_block_device(),
        "{} is not a block device: {meta:?}",
        volume.target.display()
    );
    let mut device = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&volume.target)
        .unwrap();
    assert_eq!(
        device.seek(SeekFrom::End(0)).unwrap(),
        (10 * GIB) as u64,
        "size of the published block device"
    );
    let offset = (7 * GIB) as u64 + 123 * 4096;
    let data = pattern(256 << 10, 4);
    device.seek(SeekFrom::Start(offset)).unwrap();
    device.write_all(&data).unwrap();
    device.sync_all().unwrap();
    drop(device);

    let mut read_back = vec![0; data.len()];
    let mut device = File::open(&volume.target).unwrap();
    device.seek(SeekFrom::Start(offset)).unwrap();
    device.read_exact(&mut read_back).unwrap();
    drop(device);
    assert!(read_back == data, "read back through the target differs");
    // The bytes reached the simulated disk itself, its image file.
    let image = env
        .workdir
        .join("sim-state/cbs/disks")
        .join(format!("{}.img", volume.id));
    let mut image = File::open(&image).unwrap();
    image.seek(SeekFrom::Start(offset)).unwrap();
    image.read_exact(&mut read_back).unwrap();
    assert!(read_back == data, "the disk image lacks what was written");

    let stats = k.stats(&volume).await.unwrap();
    assert!(!condition(&stats).abnormal, "{stats:?}");
    assert_eq!(usage(&stats, Unit::Bytes).total, 10 * GIB, "{stats:?}");

    k.tear_down(&volume).await.unwrap();
    finish(env).await;
}

/// NodeGetVolumeStats reports usage of a healthy volume, calls a target that was unmounted behind
/// the driver's back abnormal, and NodePublish repairs it.
#[tokio::test]
async fn volume_stats_report_usage_and_an_unmounted_target() {
    let env = start(&[]).await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;

    let mut volume = k
        .create("pvc-stats", 10, mount_capability("ext4"), None)
        .await
        .unwrap();
    k.attach(&mut volume).await.unwrap();
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let data = pattern(8 << 20, 5);
    write_flushed(&volume.target.join("data.bin"), &data);

    let stats = k.stats(&volume).await.unwrap();
    assert!(!condition(&stats).abnormal, "{stats:?}");
    let bytes = usage(&stats, Unit::Bytes);
    assert_fills(bytes.total as u64, 10, "NodeGetVolumeStats total");
    assert!(
        bytes.used >= 8 << 20,
        "the 8 MiB file is not counted: {stats:?}"
    );
    assert!(bytes.available > 0 && bytes.available <= bytes.total - bytes.used);
    let inodes = usage(&stats, Unit::Inodes);
    assert!(
        inodes.total > 0 && inodes.used >= 2 && inodes.available > 0,
        "inode usage: {stats:?}"
    );
    assert!(inodes.used + inodes.available <= inodes.total, "{stats:?}");

    nix::mount::umount2(&volume.target, nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert_eq!(mounts_at(&volume.target), 0);
    let stats = k.stats(&volume).await.unwrap();
    let unmounted = condition(&stats);
    assert!(
        unmounted.abnormal && unmounted.message.contains("not mounted"),
        "{stats:?}"
    );

    k.publish(&volume, false).await.unwrap();
    assert_eq!(mounts_at(&volume.target), 1);
    let stats = k.stats(&volume).await.unwrap();
    assert!(!condition(&stats).abnormal, "{stats:?}");
    assert!(std::fs::read(volume.target.join("data.bin")).unwrap() == data);

    k.tear_down(&volume).await.unwrap();
    finish(env).await;
}

/// The loop device the simulator attached `volume` as: the target of the instance's by-id link.
fn device_of(env: &Env, volume: &Volume) -> PathBuf {
    let link = env
        .workdir
        .join("sim-state/instances")
        .join(NODE_ID)
        .join("dev/disk/by-id")
        .join(format!("virtio-{}", volume.id));
    std::fs::canonicalize(&link).unwrap()
}

/// Whether a `mkfs*` of `device` is running on this machine, from `/proc/*/cmdline`.
fn mkfs_running(device: &Path) -> bool {
    let device = device.as_os_str().as_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            return false;
        };
        let mut args = cmdline.split(|b| *b == 0);
        let program = args.next().unwrap_or_default();
        program.windows(4).any(|w| w == b"mkfs") && args.any(|a| a == device)
    })
}

/// When a round of the crash test kills the driver.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// As soon as the driver's `mkfs` of the volume shows in `/proc`.
    Mkfs,
    /// This long after NodeStage was sent.
    After(Duration),
}

/// SIGKILL of the driver while NodeStage formats and mounts: the retried NodeStage on the
/// restarted driver finishes the job with a single mount, and the data written then survives a
/// remount (no second format behind it). Several rounds, killed at different moments: while mkfs
/// runs, and 20-50 ms after the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_staging_is_finished_by_the_retry() {
    let mut env = start(&[]).await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;
    let mut outcomes = Vec::new();

    let rounds = [
        ("xfs", KillAt::Mkfs),
        ("ext4", KillAt::Mkfs),
        ("xfs", KillAt::After(Duration::from_millis(20))),
        ("ext4", KillAt::After(Duration::from_millis(45))),
    ];
    for (round, (fs, kill_at)) in rounds.into_iter().enumerate() {
        let mut volume = k
            .create(
                &format!("pvc-crash-{round}"),
                10,
                mount_capability(fs),
                None,
            )
            .await
            .unwrap();
        k.attach(&mut volume).await.unwrap();
        let device = device_of(&env, &volume);

        let started = Instant::now();
        let first_stage = tokio::spawn({
            let mut k = k.clone();
            let volume = volume.clone();
            async move { k.stage(&volume).await }
        });
        let mut saw_mkfs = false;
        match kill_at {
            KillAt::Mkfs => {
                while !first_stage.is_finished() && started.elapsed() < Duration::from_secs(5) {
                    if mkfs_running(&device) {
                        saw_mkfs = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            KillAt::After(delay) => tokio::time::sleep(delay).await,
        }
        let killed_at = started.elapsed();
        k = Kubelet::new(env.restart_driver().await.unwrap(), &env.workdir);
        let first = first_stage.await.unwrap();

        let mut errors = Vec::new();
        loop {
            match k.stage(&volume).await {
                Ok(()) => break,
                Err(e) if errors.len() + 1 < RETRY_ATTEMPTS as usize => {
                    errors.push(format!("{e:#}"));
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => panic!(
                    "round {round} ({fs}): NodeStage never succeeded after the crash: {e:#}; earlier: {errors:#?}"
                ),
            }
        }
        assert_eq!(
            mounts_at(&volume.staging),
            1,
            "round {round} ({fs}): one mount at the staging path"
        );
        k.publish(&volume, false).await.unwrap();
        let data = pattern(1 << 20, 100 + round as u64);
        let file = volume.target.join("data.bin");
        write_flushed(&file, &data);
        assert!(std::fs::read(&file).unwrap() == data);
        // A format still running behind the mount would show after a remount.
        k.unpublish(&volume).await.unwrap();
        k.unstage(&volume).await.unwrap();
        assert_eq!(mounts_at(&volume.staging), 0);
        k.stage(&volume).await.unwrap();
        k.publish(&volume, false).await.unwrap();
        assert!(
            std::fs::read(&file).unwrap() == data,
            "round {round} ({fs}): data lost across a remount"
        );
        k.tear_down(&volume).await.unwrap();
        outcomes.push(format!(
            "round {round} {fs} {kill_at:?}: killed after {killed_at:?}{}; first NodeStage {}; {} failed retries {errors:?}",
            if saw_mkfs { " while mkfs ran" } else { "" },
            match &first {
                Ok(()) => "had completed".to_owned(),
                Err(e) => format!("was cut off ({:?})", code_of(e)),
            },
            errors.len()
        ));
    }
    eprintln!("{}", outcomes.join("\n"));
    finish(env).await;
}

/// Retries a CSI call the way the sidecars do: on UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and
/// INTERNAL, a bounded number of times. Each attempt gets its own copy of the kubelet. Counts the
/// retries in `retries`.
async fn retried<T, F, Fut>(
    what: &str,
    retries: &mut u32,
    k: &Kubelet,
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut(Kubelet) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match call(k.clone()).await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let retryable = matches!(
                    code_of(&e),
                    Some(
                        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Internal
                    )
                );
                if !retryable || attempt >= RETRY_ATTEMPTS {
                    return Err(e.context(format!("{what} failed on attempt {attempt}")));
                }
                attempt += 1;
                *retries += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// One whole volume life through [`retried`]; returns how many calls were retried.
async fn lifecycle_under_faults(k: Kubelet, i: usize) -> anyhow::Result<u32> {
    let mut retries = 0;
    let fs = if i.is_multiple_of(2) { "ext4" } else { "xfs" };
    let name = format!("pvc-faults-{i}");
    let volume = retried("CreateVolume", &mut retries, &k, |mut k| {
        let name = name.clone();
        async move { k.create(&name, 10, mount_capability(fs), None).await }
    })
    .await?;
    let volume = retried("ControllerPublishVolume", &mut retries, &k, |mut k| {
        let mut volume = volume.clone();
        async move { k.attach(&mut volume).await.map(|()| volume) }
    })
    .await?;
    retried("NodeStageVolume", &mut retries, &k, |mut k| {
        let volume = volume.clone();
        async move { k.stage(&volume).await }
    })
    .await?;
    retried("NodePublishVolume", &mut retries, &k, |mut k| {
        let volume = volume.clone();
        async move { k.publish(&volume, false).await }
    })
    .await?;
    let data = pattern(256 << 10, 200 + i as u64);
    let file = volume.target.join("data.bin");
    write_flushed(&file, &data);
    anyhow::ensure!(std::fs::read(&file)? == data, "{name}: read back differs");
    let snapshot_name = format!("snapshot-faults-{i}");
    let snapshot = retried("CreateSnapshot", &mut retries, &k, |mut k| {
        let (volume, snapshot_name) = (volume.clone(), snapshot_name.clone());
        async move { k.snapshot(&volume, &snapshot_name, SNAPSHOT_WAIT).await }
    })
    .await?;
    retried("DeleteSnapshot", &mut retries, &k, |mut k| {
        let snapshot = snapshot.clone();
        async move { k.delete_snapshot(&snapshot).await }
    })
    .await?;
    retried("NodeUnpublishVolume", &mut retries, &k, |mut k| {
        let volume = volume.clone();
        async move { k.unpublish(&volume).await }
    })
    .await?;
    retried("NodeUnstageVolume", &mut retries, &k, |mut k| {
        let volume = volume.clone();
        async move { k.unstage(&volume).await }
    })
    .await?;
    retried("ControllerUnpublishVolume", &mut retries, &k, |mut k| {
        let volume = volume.clone();
        async move { k.detach(&volume).await }
    })
    .await?;
    retried("DeleteVolume", &mut retries, &k, |mut k| {
        let volume = volume.clone();
        async move { k.delete(&volume).await }
    })
    .await?;
    Ok(retries)
}

/// Six concurrent lifecycles against a cloud that fails one call in ten and rate-limits attach
/// and describe: each completes through sidecar-style retries, nothing is left in the cloud, and
/// the simulator's counters show the faults happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lifecycles_survive_cloud_faults() {
    let env = start(&[
        "--fault",
        "*:error_rate=0.1",
        "--fault",
        "AttachDisks:rate_limit=20",
        "--fault",
        "DescribeDisks:rate_limit=20",
    ])
    .await;
    let _logs = LogsOnPanic::new(&env);
    let mut k = kubelet(&env).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let tasks: Vec<_> = (0..6)
        .map(|i| tokio::spawn(lifecycle_under_faults(k.clone(), i)))
        .collect();
    let mut retries = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = tokio::time::timeout_at(deadline, task)
            .await
            .unwrap_or_else(|_| panic!("lifecycle {i} did not finish within 90 s"))
            .unwrap();
        retries.push(result.unwrap_or_else(|e| panic!("lifecycle {i}: {e:#}")));
    }

    // The project's reqwest has no default TLS provider; this client installs one.
    let http = tcloud::client::http_client(Duration::from_secs(10)).unwrap();
    let stats: serde_json::Value = http
        .get(format!("{}/_sim/stats", env.sim_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for (action, counts) in stats.as_object().unwrap() {
        for (code, n) in counts["errors"].as_object().into_iter().flatten() {
            *errors.entry(format!("{action}/{code}")).or_default() += n.as_u64().unwrap();
        }
    }
    let total = |code: &str| -> u64 {
        errors
            .iter()
            .filter(|(key, _)| key.ends_with(&format!("/{code}")))
            .map(|(_, n)| n)
            .sum()
    };
    let calls: BTreeMap<&str, u64> = stats
        .as_object()
        .unwrap()
        .iter()
        .map(|(action, counts)| (action.as_str(), counts["calls"].as_u64().unwrap_or(0)))
        .collect();
    eprintln!(
        "sim calls: {calls:?}\nsim errors: {errors:?}\nCSI calls retried per lifecycle: {retries:?}"
    );
    // One call in ten fails; whether the rate limits bite depends on how well the driver batches.
    assert!(
        total("InternalError") > 0,
        "no injected InternalError was counted: {stats}"
    );
    eprintln!(
        "RequestLimitExceeded answered: {}",
        total("RequestLimitExceeded")
    );

    // The faults are lifted so the final listing itself cannot fail.
    let status = http
        .put(format!("{}/_sim/faults", env.sim_url))
        .json(&serde_json::json!([]))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "PUT /_sim/faults: {status}");
    let volumes = k
        .client
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(volumes.entries.is_empty(), "disks left: {volumes:?}");
    let snapshots = k
        .client
        .controller
        .list_snapshots(pb::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        snapshots.entries.is_empty(),
        "snapshots left: {snapshots:?}"
    );
    finish(env).await;
}
