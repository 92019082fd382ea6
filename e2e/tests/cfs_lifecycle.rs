//! csi-cfs end to end: the simulator's file systems reached through the node's documented NFS
//! seam, real bind mounts, both modes, every delete policy, escape attempts, a controller restart
//! and a hung mount.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csi_proto::v1 as pb;
use e2e::cleanup::mounts_under;
use e2e::kubelet::{Kubelet, Volume, rwx};
use e2e::{Driver, Env, EnvOptions};

fn params(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut p: HashMap<String, String> =
        [("vpcid", "vpc-e2e00001"), ("subnetid", "subnet-e2e00001")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p
}

/// The simulator's directory of a file system, where its files really are.
fn fs_dir(env: &Env, volume_id: &str) -> PathBuf {
    let fs_id = volume_id.split('/').next().unwrap();
    env.workdir.join("sim-state/cfs/fs").join(fs_id)
}

async fn up(k: &mut Kubelet, name: &str) -> Volume {
    let volume = k.create(name, 1, rwx(""), None).await.unwrap();
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    volume
}

async fn down(k: &mut Kubelet, volume: &Volume) {
    k.unpublish(volume).await.unwrap();
    k.unstage(volume).await.unwrap();
    k.delete(volume).await.unwrap();
}

/// Every file below `root`, relative.
/// The subdirectory of a shared-instance volume ID, `<fs>/<policy>/<subdir>/<owner>`.
fn subdir_of(volume_id: &str) -> &str {
    volume_id.split('/').nth(2).unwrap()
}

/// A path of the simulator's CFS state that is not an instance's content: not under `fs/`, and not
/// inside an export link (which shows the instance, owner records included).
fn outside_the_instances(path: &str) -> bool {
    let in_an_export = path.starts_with("exports/") && path.matches('/').count() > 1;
    !path.starts_with("fs/") && !in_an_export
}

fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_file_system_per_volume() {
    let mut env = Env::start(Driver::Cfs, EnvOptions::default())
        .await
        .unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.parameters = params(&[]);
    let volume = up(&mut k, "pvc-whole").await;
    assert!(
        volume.id.starts_with("cfs-") && !volume.id.contains('/'),
        "{}",
        volume.id
    );
    for key in ["host", "path", "vers", "fsid"] {
        assert!(
            volume.volume_context.contains_key(key),
            "{key} in {:?}",
            volume.volume_context
        );
    }
    std::fs::write(volume.target.join("data.txt"), "whole").unwrap();
    assert_eq!(
        std::fs::read_to_string(fs_dir(&env, &volume.id).join("data.txt")).unwrap(),
        "whole"
    );
    // Idempotent repeats.
    assert_eq!(
        k.create("pvc-whole", 1, rwx(""), None).await.unwrap().id,
        volume.id
    );
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let stats = k.stats(&volume).await.unwrap();
    assert!(!stats.volume_condition.unwrap().abnormal);
    down(&mut k, &volume).await;
    assert!(
        !fs_dir(&env, &volume.id).exists(),
        "the file system is deleted with its volume"
    );
    k.delete(&volume).await.unwrap();
    assert!(
        mounts_under(&env.workdir)
            .iter()
            .all(|m| m.contains("cfs-controller")),
        "{:?}",
        mounts_under(&env.workdir)
    );
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_instance_volumes_are_isolated_and_each_policy_does_exactly_what_it_says() {
    let mut env = Env::start(Driver::Cfs, EnvOptions::default())
        .await
        .unwrap();
    let client = env.client().await.unwrap();
    let mut volumes = Vec::new();
    for policy in ["retain", "archive", "delete"] {
        let mut k = Kubelet::new(client.clone(), &env.workdir);
        k.parameters = params(&[("subdir-share", "true"), ("on-delete", policy)]);
        let a = up(&mut k, &format!("pvc-{policy}-a")).await;
        let b = up(&mut k, &format!("pvc-{policy}-b")).await;
        assert_eq!(
            a.id.split('/').next(),
            b.id.split('/').next(),
            "one instance per StorageClass"
        );
        assert_ne!(a.id, b.id);
        std::fs::write(a.target.join("secret-of-a"), policy).unwrap();
        assert!(
            !b.target.join("secret-of-a").exists(),
            "b must not see a's files"
        );
        assert!(b.target.read_dir().unwrap().next().is_none());
        volumes.push((policy, k, a, b));
    }
    for (policy, k, a, b) in &mut volumes {
        let root = fs_dir(&env, &a.id);
        let before = files(&root);
        down(k, a).await;
        down(k, b).await;
        let after = files(&root);
        let a_dir = subdir_of(&a.id).to_owned();
        match *policy {
            "retain" => {
                assert_eq!(before, after, "retain keeps every file");
                let record =
                    std::fs::read_to_string(root.join(format!(".csi-volumes/{a_dir}.json")))
                        .unwrap();
                assert!(record.contains("\"released\":true"), "{record}");
            }
            "archive" => {
                assert!(!root.join(&a_dir).exists());
                let archived: Vec<_> = after
                    .iter()
                    .filter(|f| f.starts_with(&format!("archived-{a_dir}-")))
                    .collect();
                assert!(
                    archived.iter().any(|f| f.ends_with("secret-of-a")),
                    "{after:?}"
                );
            }
            "delete" => {
                assert!(!root.join(&a_dir).exists());
                assert!(root.exists(), "never the instance itself");
                let gone: Vec<_> = before.iter().filter(|f| !after.contains(f)).collect();
                let b_dir = subdir_of(&b.id);
                assert!(
                    gone.iter().all(|f| f.starts_with(&a_dir)
                        || f.starts_with(b_dir)
                        || *f == &format!(".csi-volumes/{a_dir}.json")
                        || *f == &format!(".csi-volumes/{b_dir}.json")),
                    "{gone:?}"
                );
            }
            _ => unreachable!(),
        }
        // Deleting again is fine.
        k.delete(a).await.unwrap();
    }
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn escaping_patterns_are_neutralised_and_nothing_outside_the_root_is_touched() {
    let mut env = Env::start(Driver::Cfs, EnvOptions::default())
        .await
        .unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    let state = env.workdir.join("sim-state");
    let outside_before = files(&state.join("cfs"))
        .into_iter()
        .filter(|f| outside_the_instances(f))
        .count();
    for (pattern, expected) in [
        ("../../escape", "..-..-escape"),
        ("/etc/passwd", "-etc-passwd"),
        ("a/../../b", "a-..-..-b"),
    ] {
        k.parameters = params(&[
            ("subdir-share", "true"),
            ("on-delete", "delete"),
            ("subdir-pattern", pattern),
        ]);
        let volume = k
            .create(&format!("pvc-{expected}"), 1, rwx(""), None)
            .await
            .unwrap();
        assert!(
            subdir_of(&volume.id) == expected,
            "{pattern} -> {}",
            volume.id
        );
        assert!(fs_dir(&env, &volume.id).join(expected).is_dir());
        k.delete(&volume).await.unwrap();
        assert!(fs_dir(&env, &volume.id).is_dir());
    }
    for bad in ["..", ".", "${pvc.metadata.name"] {
        k.parameters = params(&[("subdir-share", "true"), ("subdir-pattern", bad)]);
        let err = k.create("pvc-bad", 1, rwx(""), None).await.unwrap_err();
        let status = err.downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{bad}: {status}"
        );
    }
    let outside_after = files(&state.join("cfs"))
        .into_iter()
        .filter(|f| outside_the_instances(f))
        .count();
    assert_eq!(
        outside_before + 2,
        outside_after,
        "only the instance's export link and fsid were added outside fs/"
    );
    assert!(!env.workdir.join("escape").exists() && !state.join("escape").exists());
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_controller_reuses_the_shared_instance() {
    let mut env = Env::start(Driver::Cfs, EnvOptions::default())
        .await
        .unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.parameters = params(&[("subdir-share", "true")]);
    let first = k.create("pvc-before", 1, rwx(""), None).await.unwrap();
    k.client = env.restart_driver().await.unwrap();
    let second = k.create("pvc-after", 1, rwx(""), None).await.unwrap();
    assert_eq!(first.id.split('/').next(), second.id.split('/').next());
    let stats = env.sim_stats().await.unwrap();
    assert_eq!(stats["CreateCfsFileSystem"]["calls"], 1, "{stats}");
    // ListVolumes sees both, with the IDs CreateVolume gave.
    let listed = k
        .client
        .controller
        .list_volumes(pb::ListVolumesRequest {
            max_entries: 1,
            starting_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let rest = k
        .client
        .controller
        .list_volumes(pb::ListVolumesRequest {
            max_entries: 0,
            starting_token: listed.next_token,
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = listed
        .entries
        .iter()
        .chain(&rest.entries)
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    ids.sort();
    let mut expected = vec![first.id.clone(), second.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_mount_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hung-mount");
    // A duration of its own, so tests running at the same time are told apart.
    std::fs::write(&hang, "#!/bin/sh\nsleep 301\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let options = EnvOptions {
        driver_args: vec![
            "--mount-program".into(),
            hang.display().to_string(),
            "--mount-timeout-secs".into(),
            "2".into(),
        ],
        ..Default::default()
    };
    let mut env = Env::start(Driver::Cfs, options).await.unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.parameters = params(&[]);
    let volume = k.create("pvc-hung", 1, rwx(""), None).await.unwrap();
    let start = Instant::now();
    let err = k.stage(&volume).await.unwrap_err();
    let elapsed = start.elapsed();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    assert!(
        elapsed < Duration::from_secs(10),
        "the RPC returned in {elapsed:?}, not hung"
    );
    // The shell running the script (argv[1]) or its sleep; the driver's own argv names it too.
    let script = hang.display().to_string();
    let still_running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|p| std::fs::read_to_string(p.path().join("cmdline")).ok())
            .any(|c| {
                let argv: Vec<&str> = c.split('\0').collect();
                argv.get(1) == Some(&script.as_str())
                    || argv[..argv.len().min(2)] == ["sleep", "301"]
            })
    };
    // SIGKILL is delivered, not waited for: on a loaded machine the process may take a moment
    // to be gone (a hung one would still be there after its 301 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while still_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!still_running(), "the hung mount process was killed");
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_unmount_is_killed_and_detached_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let umount = dir.path().join("hung-umount");
    // Hangs like an unmount of a dead NFS server, unless asked for a lazy detach.
    std::fs::write(
        &umount,
        "#!/bin/sh\nif [ \"$1\" = \"-l\" ]; then exec umount -l \"$2\"; fi\nsleep 302\n",
    )
    .unwrap();
    std::fs::set_permissions(&umount, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let options = EnvOptions {
        driver_args: vec![
            "--umount-program".into(),
            umount.display().to_string(),
            "--mount-timeout-secs".into(),
            "2".into(),
        ],
        ..Default::default()
    };
    let mut env = Env::start(Driver::Cfs, options).await.unwrap();
    let mut k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    k.parameters = params(&[]);
    let volume = up(&mut k, "pvc-hung-umount").await;
    let start = Instant::now();
    k.unpublish(&volume).await.unwrap();
    k.unstage(&volume).await.unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(20), "returned in {elapsed:?}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "the hung umount was waited for, then killed: {elapsed:?}"
    );
    let left: Vec<String> = mounts_under(&env.workdir)
        .into_iter()
        .filter(|m| !m.contains("cfs-controller"))
        .collect();
    assert!(left.is_empty(), "lazily detached, nothing left: {left:?}");
    k.delete(&volume).await.unwrap();
    env.stop().await.unwrap();
}
