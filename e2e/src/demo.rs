//! `e2e demo`: the README's main job. Starts the simulator and each driver against it and shows,
//! step by step with timings, what each one does over its CSI socket.

use std::time::Instant;

use csi_proto::v1 as pb;

use crate::env::{Driver, Env, EnvOptions};
use crate::kubelet::{GIB, Kubelet, df_bytes, mount_capability};

/// The programs the demo's drivers and simulator run: losetup (the simulator's loop devices),
/// blkid, mkfs.xfs and xfs_growfs (the CBS volume). Mounts are mount(2) calls, FUSE as root needs no
/// fusermount3, and the demo formats no ext4.
const DEMO_TOOLS: &[&str] = &["losetup", "blkid", "mkfs.xfs", "xfs_growfs"];
/// The kernel devices it opens: the loop driver's control device and FUSE's.
const DEMO_DEVICES: &[&str] = &["/dev/loop-control", "/dev/fuse"];

/// Checks, before the first step, that everything in [`DEMO_TOOLS`] is on `PATH`, that the
/// [`DEMO_DEVICES`] exist and that we are root, so a missing one stops the demo at once with one
/// line naming all of them rather than halfway through.
fn preflight() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |tool: &str| {
        std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    };
    let mut missing: Vec<&str> = DEMO_TOOLS.iter().copied().filter(|t| !on_path(t)).collect();
    missing.extend(
        DEMO_DEVICES
            .iter()
            .copied()
            .filter(|d| !std::path::Path::new(d).exists()),
    );
    anyhow::ensure!(
        missing.is_empty(),
        "the demo cannot start, missing: {}; run `scripts/setup demo` as root (it installs them)",
        missing.join(", ")
    );
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "the demo needs root (it makes loop devices and mounts): run it as root"
    );
    Ok(())
}

/// Prints one step and how long it took.
pub fn step(label: &str, start: Instant, detail: &str) {
    println!(
        "  {:<38} {:>8.1} ms  {detail}",
        label,
        start.elapsed().as_secs_f64() * 1000.0
    );
}

fn describe_caps(caps: &[pb::PluginCapability]) -> String {
    use pb::plugin_capability::Type;
    let names: Vec<String> = caps
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(Type::Service(s)) => pb::plugin_capability::service::Type::try_from(s.r#type)
                .ok()
                .map(|t| t.as_str_name().to_owned()),
            Some(Type::VolumeExpansion(e)) => {
                pb::plugin_capability::volume_expansion::Type::try_from(e.r#type)
                    .ok()
                    .map(|t| format!("EXPANSION_{}", t.as_str_name()))
            }
            None => None,
        })
        .collect();
    if names.is_empty() {
        "(identity only so far)".to_owned()
    } else {
        names.join(", ")
    }
}

/// Identity round trip for one driver.
async fn identity(driver: Driver) -> anyhow::Result<()> {
    println!("{} ({})", driver.binary(), driver.csi_name());
    let start = Instant::now();
    let mut env = Env::start(driver, EnvOptions::default()).await?;
    step(
        "start simulator + driver",
        start,
        &format!("socket {}", env.socket.display()),
    );
    let mut client = env.client().await?;
    let start = Instant::now();
    let info = client
        .identity
        .get_plugin_info(pb::GetPluginInfoRequest {})
        .await?
        .into_inner();
    step(
        "GetPluginInfo",
        start,
        &format!("{} {}", info.name, info.vendor_version),
    );
    let start = Instant::now();
    let caps = client
        .identity
        .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
        .await?
        .into_inner();
    step(
        "GetPluginCapabilities",
        start,
        &describe_caps(&caps.capabilities),
    );
    let start = Instant::now();
    let probe = client
        .identity
        .probe(pb::ProbeRequest {})
        .await?
        .into_inner();
    step(
        "Probe",
        start,
        &format!("ready={}", probe.ready.unwrap_or(false)),
    );
    let start = Instant::now();
    env.stop().await?;
    step(
        "stop and clean up",
        start,
        "no socket, mount, loop device or file left",
    );
    Ok(())
}

/// A whole CBS volume lifecycle on real loop devices, real xfs and real bind mounts.
async fn cbs_lifecycle() -> anyhow::Result<()> {
    use std::time::Duration;
    println!("csi-cbs: a volume's whole life, on loop devices with xfs (needs root)");
    let start = Instant::now();
    let mut env = Env::start(Driver::Cbs, EnvOptions::default()).await?;
    step("start simulator + driver", start, "");
    let result = async {
        let mut k = Kubelet::new(env.client().await?, &env.workdir);
        let t = Instant::now();
        let mut volume = k
            .create("pvc-demo", 20, mount_capability("xfs"), None)
            .await?;
        step("CreateVolume 20 GiB xfs", t, &volume.id);
        let t = Instant::now();
        k.attach(&mut volume).await?;
        step(
            "ControllerPublishVolume",
            t,
            &format!("attached to {}", k.node_id),
        );
        let t = Instant::now();
        k.stage(&volume).await?;
        step("NodeStageVolume", t, "found by serial, formatted, mounted");
        let t = Instant::now();
        k.publish(&volume, false).await?;
        step("NodePublishVolume", t, &volume.target.display().to_string());
        let t = Instant::now();
        let data = volume.target.join("hello.txt");
        std::fs::write(&data, b"written before the snapshot\n")?;
        let read = std::fs::read_to_string(&data)?;
        // A snapshot holds what reached the disk, as on the real cloud: flush first.
        std::fs::File::open(&data)?.sync_all()?;
        nix::unistd::sync();
        step("write, read and flush a file", t, read.trim());
        let t = Instant::now();
        let snapshot = k
            .snapshot(&volume, "snapshot-demo", Duration::from_secs(60))
            .await?;
        step("CreateSnapshot (until ready)", t, &snapshot);
        let t = Instant::now();
        let mut restored = k
            .create(
                "pvc-demo-restored",
                40,
                mount_capability("xfs"),
                Some(&snapshot),
            )
            .await?;
        k.attach(&mut restored).await?;
        k.stage(&restored).await?;
        k.publish(&restored, true).await?;
        let copy = std::fs::read_to_string(restored.target.join("hello.txt"))?;
        anyhow::ensure!(copy == read, "restored data differs");
        step(
            "restore into 40 GiB, mount read-only",
            t,
            &format!(
                "{} has the file; df {:.1} GiB",
                restored.id,
                df_bytes(&restored.target)? as f64 / GIB as f64
            ),
        );
        let t = Instant::now();
        let before = df_bytes(&volume.target)?;
        let capacity = k.expand(&volume, 30).await?;
        let after = df_bytes(&volume.target)?;
        step(
            "expand online to 30 GiB",
            t,
            &format!(
                "device {} GiB; df {:.1} -> {:.1} GiB while mounted",
                capacity / GIB,
                before as f64 / GIB as f64,
                after as f64 / GIB as f64
            ),
        );
        let stats = k.stats(&volume).await?;
        let condition = stats
            .volume_condition
            .map(|c| c.message)
            .unwrap_or_default();
        step("NodeGetVolumeStats", t, &condition);
        let t = Instant::now();
        k.tear_down(&restored).await?;
        k.tear_down(&volume).await?;
        k.delete_snapshot(&snapshot).await?;
        step(
            "unpublish, unstage, detach, delete",
            t,
            "both volumes and the snapshot are gone",
        );
        anyhow::Ok(())
    }
    .await;
    let t = Instant::now();
    let stopped = env.stop().await;
    result?;
    stopped?;
    step(
        "stop and clean up",
        t,
        "no socket, mount, loop device or file left",
    );
    Ok(())
}

/// Two PVCs on one shared CFS instance, isolated, then deleted with the `archive` policy.
async fn cfs_shared() -> anyhow::Result<()> {
    use pb::volume_capability::access_mode::Mode;
    println!("csi-cfs: two volumes on one shared file system (subdir-share), archive on delete");
    let start = Instant::now();
    let mut env = Env::start(Driver::Cfs, EnvOptions::default()).await?;
    step(
        "start simulator + driver",
        start,
        "NFS through the simulator's export table (no NFS client here)",
    );
    let result = async {
        let mut k = Kubelet::new(env.client().await?, &env.workdir);
        k.parameters = [
            ("vpcid", "vpc-demo0001"),
            ("subnetid", "subnet-demo0001"),
            ("subdir-share", "true"),
            ("on-delete", "archive"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let rwx = pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode {
                mode: Mode::MultiNodeMultiWriter as i32,
            }),
            access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
        };
        let t = Instant::now();
        let a = k.create("pvc-team-a", 5, rwx.clone(), None).await?;
        step(
            "CreateVolume pvc-team-a",
            t,
            &format!("{} (instance created on first use)", a.id),
        );
        let t = Instant::now();
        let b = k.create("pvc-team-b", 5, rwx, None).await?;
        step(
            "CreateVolume pvc-team-b",
            t,
            &format!("{} (same instance, found by its tag)", b.id),
        );
        let t = Instant::now();
        for v in [&a, &b] {
            k.stage(v).await?;
            k.publish(v, false).await?;
        }
        step(
            "stage + publish both",
            t,
            "one NFS mount of the instance on the node, a bind per volume",
        );
        let t = Instant::now();
        std::fs::write(a.target.join("a.txt"), b"team a's data\n")?;
        let b_sees: Vec<_> = std::fs::read_dir(&b.target)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        anyhow::ensure!(b_sees.is_empty(), "b sees a's files: {b_sees:?}");
        step("write through a, look through b", t, "b sees nothing of a");
        let t = Instant::now();
        for v in [&a, &b] {
            k.unpublish(v).await?;
            k.unstage(v).await?;
            k.delete(v).await?;
        }
        let fs_id = a.id.split('/').next().unwrap_or_default();
        let root = env.workdir.join("sim-state/cfs/fs").join(fs_id);
        let mut archived: Vec<String> = std::fs::read_dir(&root)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        archived.sort();
        step(
            "delete both (on-delete: archive)",
            t,
            &format!("instance root now holds {archived:?}"),
        );
        anyhow::Ok(())
    }
    .await;
    let t = Instant::now();
    let stopped = env.stop().await;
    result?;
    stopped?;
    step("stop and clean up", t, "no socket, mount or file left");
    Ok(())
}

/// A CFS Turbo file system made in the simulator, a volume provisioned on it by the Turbo driver,
/// a file written through the volume and found on the file system, then the volume deleted.
async fn cfs_turbo() -> anyhow::Result<()> {
    println!(
        "csi-cfs --flavor turbo ({}): a volume on a CFS Turbo file system",
        Driver::CfsTurbo.csi_name()
    );
    let start = Instant::now();
    let mut env = Env::start(Driver::CfsTurbo, EnvOptions::default()).await?;
    let turbo = env
        .turbo
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the environment made no Turbo file system"))?;
    step(
        "simulator + Turbo file system + driver",
        start,
        &format!("{} host={} fsid={}", turbo.fs_id, turbo.host, turbo.fsid),
    );
    let result = async {
        let mut k = Kubelet::new(env.client().await?, &env.workdir);
        k.parameters = turbo.parameters(&[("on-delete", "delete")]);
        let t = Instant::now();
        let volume = k.create("pvc-turbo", 10, rwx(), None).await?;
        step("CreateVolume pvc-turbo", t, &volume.id);
        let t = Instant::now();
        k.stage(&volume).await?;
        k.publish(&volume, false).await?;
        step(
            "stage + publish",
            t,
            "the file system's /cfs mounted once (Lustre client via the seam), a bind",
        );
        let t = Instant::now();
        std::fs::write(volume.target.join("model.bin"), b"turbo data\n")?;
        let subdir = volume
            .volume_context
            .get("path")
            .map(|p| p.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let landed = turbo.root().join(&subdir).join("model.bin");
        anyhow::ensure!(
            std::fs::read(&landed)? == b"turbo data\n",
            "the file is not at {}",
            landed.display()
        );
        step(
            "write a file through the volume",
            t,
            &format!("on the file system at /cfs/{subdir}/model.bin"),
        );
        let t = Instant::now();
        k.unpublish(&volume).await?;
        k.unstage(&volume).await?;
        k.delete(&volume).await?;
        anyhow::ensure!(
            !turbo.root().join(&subdir).exists(),
            "/cfs/{subdir} is left"
        );
        step(
            "delete (on-delete: delete)",
            t,
            &format!("/cfs/{subdir} removed, /cfs kept"),
        );
        anyhow::Ok(())
    }
    .await;
    let t = Instant::now();
    let stopped = env.stop().await;
    result?;
    stopped?;
    step("stop and clean up", t, "no socket, mount or file left");
    Ok(())
}

pub async fn run() -> anyhow::Result<()> {
    preflight()?;
    println!("Tencent Cloud CSI bundle against tcloud-sim (no cloud account needed)\n");
    for driver in Driver::ALL {
        identity(driver).await?;
        println!();
    }
    cbs_lifecycle().await?;
    println!();
    cfs_shared().await?;
    println!();
    cfs_turbo().await?;
    println!();
    cos_bucket().await?;
    println!();
    goosefs_dataset().await?;
    println!("\ndemo finished");
    Ok(())
}

use crate::env::SIM_BUCKET as BUCKET;

fn rwx() -> pb::VolumeCapability {
    use pb::volume_capability::access_mode::Mode;
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    }
}

/// A static COS PV as TKE's documentation writes them, with the simulator's keys as its secret.
fn bucket_volume(
    env: &Env,
    k: &mut Kubelet,
    id: &str,
    pod: &str,
    extra: &[(&str, &str)],
) -> crate::kubelet::Volume {
    k.secrets = [
        ("SecretId".to_owned(), env.secret_id.clone()),
        ("SecretKey".to_owned(), env.secret_key.clone()),
    ]
    .into();
    let mut context: std::collections::HashMap<String, String> = [
        ("url".to_owned(), env.cos_url.clone()),
        ("bucket".to_owned(), BUCKET.to_owned()),
    ]
    .into();
    context.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    k.static_volume(id, pod, rwx(), context)
}

async fn cos_bucket() -> anyhow::Result<()> {
    println!("csi-cos: a bucket mounted by cos-fuse, which the FUSE host runs outside the plugin");
    let start = Instant::now();
    let mut env = Env::start(Driver::Cos, EnvOptions::default()).await?;
    step("start simulator + FUSE host + driver", start, &env.cos_url);
    let result = async {
        let mut k = Kubelet::new(env.client().await?, &env.workdir);
        let volume = bucket_volume(
            &env,
            &mut k,
            "cos-static-demo",
            "pod-a",
            &[("path", "/team")],
        );
        let t = Instant::now();
        k.publish(&volume, false).await?;
        step(
            "NodePublishVolume (static PV)",
            t,
            "bucket sim-1250000000, path /team",
        );
        let t = Instant::now();
        let root = &volume.target;
        std::fs::create_dir_all(root.join("logs"))?;
        std::fs::write(root.join("logs/app.log"), b"started\n")?;
        std::fs::write(root.join("data.bin"), vec![42u8; 16 << 20])?;
        step(
            "write 16 MiB + a log file",
            t,
            "multipart upload, committed at close",
        );
        let t = Instant::now();
        let back = std::fs::read(root.join("data.bin"))?;
        anyhow::ensure!(back.len() == 16 << 20 && back.iter().all(|b| *b == 42));
        step("read it back", t, "16 MiB, byte for byte");
        let t = Instant::now();
        std::fs::rename(root.join("logs"), root.join("logs-2026"))?;
        step(
            "rename a directory",
            t,
            "copy + delete of every key (not atomic)",
        );
        let t = Instant::now();
        env.restart_driver().await?;
        k.client = env.client().await?;
        std::fs::write(root.join("after-restart.txt"), b"still here\n")?;
        let pids = env
            .fuse_host
            .as_ref()
            .map(|h| h.daemon_pids())
            .unwrap_or_default();
        step(
            "SIGKILL the node plugin, restart it",
            t,
            &format!("the mount kept serving (daemon pid {pids:?})"),
        );
        let t = Instant::now();
        let condition = k.stats(&volume).await?.volume_condition.unwrap_or_default();
        step("NodeGetVolumeStats", t, &condition.message);
        let t = Instant::now();
        k.unpublish(&volume).await?;
        step("NodeUnpublishVolume", t, "unmounted, daemon stopped");
        let mut keys: Vec<String> = env
            .bucket()?
            .list_objects_v2("team/", None, None, None)
            .await?
            .objects
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        println!("  objects in the bucket now: {keys:?}");
        anyhow::Ok(())
    }
    .await;
    let t = Instant::now();
    let stopped = env.stop().await;
    result?;
    stopped?;
    step("stop and clean up", t, "no socket, mount or process left");
    Ok(())
}

async fn goosefs_dataset() -> anyhow::Result<()> {
    println!(
        "csi-goosefs: a dataset read through the node's block cache (COS profile: 20 ms, 200 Mbit/s)"
    );
    let start = Instant::now();
    let options = EnvOptions {
        sim_args: ["--cos-latency-ms", "20", "--cos-bandwidth-mbps", "200"]
            .map(str::to_owned)
            .to_vec(),
        ..EnvOptions::default()
    };
    let mut env = Env::start(Driver::Goosefs, options).await?;
    step("start simulator + FUSE host + driver", start, "");
    let result = async {
        let size = 32usize << 20;
        for (key, byte) in [
            ("datasets/train/shard-0.bin", 1u8),
            ("datasets/val/shard-0.bin", 2),
        ] {
            env.bucket()?
                .put_object(key, vec![byte; size].into())
                .await?;
        }
        let mut k = Kubelet::new(env.client().await?, &env.workdir);
        let volume = bucket_volume(
            &env,
            &mut k,
            "goosefs-demo",
            "pod-a",
            &[("path", "/datasets"), ("preload", "val")],
        );
        let t = Instant::now();
        k.publish(&volume, true).await?;
        step("NodePublishVolume (read-only, preload val/)", t, "");
        let read = |path: std::path::PathBuf| {
            let t = Instant::now();
            let bytes = std::fs::read(path)?;
            anyhow::Ok((bytes.len(), t))
        };
        let (n, t) = read(volume.target.join("train/shard-0.bin"))?;
        step(
            "read train/ cold (32 MiB)",
            t,
            &format!("{n} bytes from the origin"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let (n, t) = read(volume.target.join("val/shard-0.bin"))?;
        step("read val/ (warmed at mount)", t, &format!("{n} bytes"));
        let t = Instant::now();
        for pid in env
            .fuse_host
            .as_ref()
            .map(|h| h.daemon_pids())
            .unwrap_or_default()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        k.publish(&volume, true).await?;
        step(
            "kill the FUSE daemon, publish again",
            t,
            "the next publish repairs the mount",
        );
        let (n, t) = read(volume.target.join("train/shard-0.bin"))?;
        step(
            "read train/ warm (new daemon)",
            t,
            &format!("{n} bytes from the node's cache"),
        );
        k.unpublish(&volume).await?;
        anyhow::Ok(())
    }
    .await;
    let t = Instant::now();
    let stopped = env.stop().await;
    result?;
    stopped?;
    step("stop and clean up", t, "no socket, mount or process left");
    Ok(())
}
