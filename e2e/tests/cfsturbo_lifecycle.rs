//! csi-cfs `--flavor turbo` (CFS Turbo) end to end: a Turbo file system the environment creates
//! in the simulator, reached through the node's documented seam (the simulator's export table) for
//! both the Lustre and the NFSv3 client, real bind mounts, every delete policy, escape and
//! collision attempts, a controller restart, a hung mount, and the old driver's PVs and IDs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::cleanup::mounts_under;
use e2e::env::TurboFs;
use e2e::kubelet::{Kubelet, Volume, rwx};
use e2e::{Driver, Env, EnvOptions};
use tonic::Code;

async fn start(options: EnvOptions) -> (Env, TurboFs, Kubelet) {
    let env = Env::start(Driver::CfsTurbo, options).await.unwrap();
    let turbo = env
        .turbo
        .clone()
        .expect("the environment made a Turbo file system");
    assert!(turbo.root().is_dir(), "{} has its /cfs", turbo.fs_id);
    let k = Kubelet::new(env.client().await.unwrap(), &env.workdir);
    (env, turbo, k)
}

/// The subdirectory of one of our volume IDs,
/// `cfsturbo/<host>/<fsid>/<proto>/<rootdir>/<on-delete>/<subdir>/<owner>`.
fn subdir_of(volume_id: &str) -> &str {
    assert!(volume_id.starts_with("cfsturbo/"), "{volume_id}");
    volume_id.split('/').nth(6).unwrap()
}

fn code(err: &anyhow::Error) -> Code {
    err.downcast_ref::<tonic::Status>()
        .unwrap_or_else(|| panic!("not a status: {err:#}"))
        .code()
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

/// Every path below `root`, relative, symlinks not followed.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// The mounts left under the work directory besides the controller's own mounts of roots.
fn node_mounts(env: &Env) -> Vec<String> {
    mounts_under(&env.workdir)
        .into_iter()
        .filter(|m| !m.contains("cfsturbo-controller"))
        .collect()
}

fn record(turbo: &TurboFs, subdir: &str) -> Option<serde_json::Value> {
    let path = turbo.root().join(format!(".csi-volumes/{subdir}.json"));
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_volumes_on_one_turbo_file_system_are_isolated() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    k.parameters = turbo.parameters(&[("on-delete", "delete")]);
    let a = up(&mut k, "pvc-turbo-a").await;
    let b = up(&mut k, "pvc-turbo-b").await;
    assert_ne!(subdir_of(&a.id), subdir_of(&b.id));
    for (key, value) in [
        ("host", turbo.host.as_str()),
        ("fsid", turbo.fsid.as_str()),
        ("proto", "lustre"),
        ("rootdir", "/cfs"),
    ] {
        assert_eq!(
            a.volume_context.get(key).map(String::as_str),
            Some(value),
            "{key} in {:?}",
            a.volume_context
        );
    }
    std::fs::write(a.target.join("only-a.txt"), "a's").unwrap();
    std::fs::write(b.target.join("only-b.txt"), "b's").unwrap();
    assert!(!b.target.join("only-a.txt").exists(), "b sees a's file");
    assert!(!a.target.join("only-b.txt").exists(), "a sees b's file");
    let names = |v: &Volume| files(&v.target);
    assert_eq!(names(&a), ["only-a.txt"]);
    assert_eq!(names(&b), ["only-b.txt"]);
    // The data is on the file system, under its root directory.
    let a_dir = turbo.root().join(subdir_of(&a.id));
    let b_dir = turbo.root().join(subdir_of(&b.id));
    assert_eq!(
        std::fs::read_to_string(a_dir.join("only-a.txt")).unwrap(),
        "a's"
    );
    assert_eq!(
        std::fs::read_to_string(b_dir.join("only-b.txt")).unwrap(),
        "b's"
    );
    let stats = k.stats(&a).await.unwrap();
    assert!(!stats.volume_condition.unwrap().abnormal);
    down(&mut k, &a).await;
    down(&mut k, &b).await;
    assert!(!a_dir.exists() && !b_dir.exists());
    assert!(turbo.root().is_dir(), "never the root directory itself");
    assert!(node_mounts(&env).is_empty(), "{:?}", node_mounts(&env));
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn retain_keeps_the_data_and_the_directory_until_its_volume_is_deleted() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    k.parameters = turbo.parameters(&[("on-delete", "retain"), ("subdir-pattern", "team-data")]);
    let first = up(&mut k, "pvc-first").await;
    assert_eq!(subdir_of(&first.id), "team-data");
    std::fs::write(first.target.join("kept.txt"), "kept").unwrap();
    // Another volume whose pattern gives the same directory waits until the first is deleted.
    let err = k.create("pvc-second", 1, rwx(""), None).await.unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err:#}");
    k.unpublish(&first).await.unwrap();
    k.unstage(&first).await.unwrap();
    let before = files(&turbo.root());
    k.delete(&first).await.unwrap();
    assert_eq!(files(&turbo.root()), before, "retain keeps every file");
    let released = record(&turbo, "team-data").unwrap();
    assert_eq!(released["volume"], "pvc-first", "{released}");
    assert_eq!(released["released"], true, "{released}");
    // Released: the next claim of the directory takes it, data and all.
    let second = up(&mut k, "pvc-second").await;
    assert_eq!(subdir_of(&second.id), "team-data");
    assert_ne!(second.id, first.id, "each claim has its own ID");
    assert_eq!(
        std::fs::read_to_string(second.target.join("kept.txt")).unwrap(),
        "kept"
    );
    // A late retry of the first's delete leaves the second's volume alone.
    k.delete(&first).await.unwrap();
    let held = record(&turbo, "team-data").unwrap();
    assert_eq!(held["volume"], "pvc-second", "{held}");
    assert_eq!(held["released"], false, "{held}");
    assert!(turbo.root().join("team-data/kept.txt").exists());
    let err = k.create("pvc-third", 1, rwx(""), None).await.unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err:#}");
    down(&mut k, &second).await;
    assert!(turbo.root().join("team-data/kept.txt").exists());
    assert_eq!(record(&turbo, "team-data").unwrap()["released"], true);
    assert!(node_mounts(&env).is_empty(), "{:?}", node_mounts(&env));
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_renames_and_delete_removes_exactly_the_leaf() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    let root = turbo.root();

    k.parameters = turbo.parameters(&[("on-delete", "archive")]);
    let archived = up(&mut k, "pvc-archived").await;
    let leaf = subdir_of(&archived.id).to_owned();
    std::fs::write(archived.target.join("old.txt"), "old").unwrap();
    down(&mut k, &archived).await;
    assert!(!root.join(&leaf).exists());
    assert!(record(&turbo, &leaf).is_none(), "the record goes with it");
    let renamed: Vec<String> = files(&root)
        .into_iter()
        .filter(|f| f.starts_with(&format!("archived-{leaf}-")) && f.ends_with("/old.txt"))
        .collect();
    assert_eq!(renamed.len(), 1, "{:?}", files(&root));
    let suffix = renamed[0]
        .strip_prefix(&format!("archived-{leaf}-"))
        .and_then(|rest| rest.strip_suffix("/old.txt"))
        .unwrap();
    assert!(suffix.bytes().all(|b| b.is_ascii_digit()), "{suffix}");
    k.delete(&archived).await.unwrap();

    k.parameters = turbo.parameters(&[("on-delete", "delete")]);
    let doomed = up(&mut k, "pvc-doomed").await;
    let neighbour = up(&mut k, "pvc-neighbour").await;
    let (leaf, other) = (subdir_of(&doomed.id), subdir_of(&neighbour.id));
    std::fs::create_dir_all(doomed.target.join("deep/er")).unwrap();
    std::fs::write(doomed.target.join("deep/er/file"), "x").unwrap();
    std::fs::write(neighbour.target.join("stays.txt"), "stays").unwrap();
    // A link inside the leaf to the neighbour: deleting the leaf must not follow it.
    std::os::unix::fs::symlink(root.join(other), doomed.target.join("link-out")).unwrap();
    k.unpublish(&doomed).await.unwrap();
    k.unstage(&doomed).await.unwrap();
    let before = files(&root);
    k.delete(&doomed).await.unwrap();
    let after = files(&root);
    let gone: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    assert!(
        gone.iter().all(|f| *f == leaf
            || f.starts_with(&format!("{leaf}/"))
            || **f == format!(".csi-volumes/{leaf}.json")),
        "{gone:?}"
    );
    assert!(gone.iter().any(|f| f.ends_with("deep/er/file")), "{gone:?}");
    assert!(
        after.iter().all(|f| before.contains(f)),
        "nothing was added"
    );
    assert_eq!(
        std::fs::read_to_string(neighbour.target.join("stays.txt")).unwrap(),
        "stays"
    );
    // Deleting again is fine and changes nothing.
    k.delete(&doomed).await.unwrap();
    assert_eq!(files(&root), after);
    down(&mut k, &neighbour).await;
    assert!(node_mounts(&env).is_empty(), "{:?}", node_mounts(&env));
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn escapes_and_collisions_are_refused() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    let root = turbo.root();
    let outside_before = files(&turbo.dir);

    // Patterns that name no directory of their own, or the records' one.
    for bad in [
        "..",
        ".",
        "${pvc.metadata.name",
        ".csi-volumes",
        "${unknown}",
    ] {
        k.parameters = turbo.parameters(&[("subdir-pattern", bad)]);
        let err = k.create("pvc-bad", 1, rwx(""), None).await.unwrap_err();
        assert_eq!(code(&err), Code::InvalidArgument, "{bad}: {err:#}");
    }
    // Patterns with separators stay one directory under the root.
    for (pattern, expected) in [
        ("../../escape", "..-..-escape"),
        ("/etc/passwd", "-etc-passwd"),
    ] {
        k.parameters = turbo.parameters(&[("subdir-pattern", pattern), ("on-delete", "delete")]);
        let volume = k
            .create(&format!("pvc-{expected}"), 1, rwx(""), None)
            .await
            .unwrap();
        assert_eq!(subdir_of(&volume.id), expected, "{pattern}");
        assert!(root.join(expected).is_dir());
        k.delete(&volume).await.unwrap();
        assert!(!root.join(expected).exists());
    }
    assert!(!turbo.dir.join("escape").exists() && !env.workdir.join("escape").exists());

    // Static PVs: `..` in the path, and links planted on the file system pointing out of it.
    std::fs::create_dir_all(root.join("nest")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("nest/evil")).unwrap();
    let attributes = |path: &str| -> HashMap<String, String> {
        [
            ("host", turbo.host.as_str()),
            ("fsid", turbo.fsid.as_str()),
            ("path", path),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    for (path, expected) in [
        ("/../..", Code::InvalidArgument),
        ("/nest/../../etc", Code::InvalidArgument),
        ("/evil", Code::FailedPrecondition),
        ("/nest/evil", Code::FailedPrecondition),
    ] {
        let volume = k.static_volume("static-escape", "pod-escape", rwx(""), attributes(path));
        let err = k.stage(&volume).await.unwrap_err();
        assert_eq!(code(&err), expected, "{path}: {err:#}");
        assert!(
            !volume.staging.exists() || files(&volume.staging).is_empty(),
            "{path}: nothing of /etc shows at the staging path"
        );
        k.unstage(&volume).await.unwrap();
    }
    assert!(node_mounts(&env).is_empty(), "{:?}", node_mounts(&env));

    // Two claims whose patterns give one directory.
    let mut claim = turbo.parameters(&[("subdir-pattern", "${pvc.metadata.namespace}")]);
    claim.insert("csi.storage.k8s.io/pvc/namespace".into(), "team".into());
    claim.insert("csi.storage.k8s.io/pvc/name".into(), "data-1".into());
    k.parameters = claim.clone();
    let first = k.create("pvc-claim-1", 1, rwx(""), None).await.unwrap();
    assert_eq!(subdir_of(&first.id), "team");
    claim.insert("csi.storage.k8s.io/pvc/name".into(), "data-2".into());
    k.parameters = claim;
    let err = k.create("pvc-claim-2", 1, rwx(""), None).await.unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err:#}");
    assert!(format!("{err:#}").contains("pvc-claim-1"), "{err:#}");
    // The same name with another size is a collision too.
    let err = k.create("pvc-claim-1", 2, rwx(""), None).await.unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err:#}");

    // Outside the root directory nothing changed.
    let outside_after: Vec<String> = files(&turbo.dir)
        .into_iter()
        .filter(|f| !f.starts_with("cfs/"))
        .collect();
    let outside_before: Vec<String> = outside_before
        .into_iter()
        .filter(|f| !f.starts_with("cfs/"))
        .collect();
    assert_eq!(outside_before, outside_after);
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_controller_is_idempotent() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    k.parameters = turbo.parameters(&[("on-delete", "delete")]);
    let before = up(&mut k, "pvc-restart").await;
    std::fs::write(before.target.join("survives.txt"), "yes").unwrap();
    k.client = env.restart_driver().await.unwrap();
    let after = k.create("pvc-restart", 1, rwx(""), None).await.unwrap();
    assert_eq!(after.id, before.id, "the same volume after a restart");
    assert_eq!(after.volume_context, before.volume_context);
    // The node side repeats too: stage and publish again are accepted as done.
    k.stage(&before).await.unwrap();
    k.publish(&before, false).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(before.target.join("survives.txt")).unwrap(),
        "yes"
    );
    let leaf = turbo.root().join(subdir_of(&before.id));
    k.unpublish(&before).await.unwrap();
    k.unstage(&before).await.unwrap();
    k.delete(&before).await.unwrap();
    assert!(!leaf.exists());
    k.client = env.restart_driver().await.unwrap();
    k.delete(&before).await.unwrap();
    k.delete(&before).await.unwrap();
    assert!(turbo.root().is_dir());
    assert!(node_mounts(&env).is_empty(), "{:?}", node_mounts(&env));
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_turbo_mount_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hung-turbo-mount");
    // A duration of its own, so tests running at the same time are told apart.
    std::fs::write(&hang, "#!/bin/sh\nsleep 303\n").unwrap();
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
    let (mut env, turbo, mut k) = start(options).await;
    let context: HashMap<String, String> = [("host", &turbo.host), ("fsid", &turbo.fsid)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    let volume = k.static_volume("turbo-hung", "pod-hung", rwx(""), context);
    let start = Instant::now();
    let err = k.stage(&volume).await.unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(code(&err), Code::DeadlineExceeded, "{err:#}");
    assert!(
        elapsed < Duration::from_secs(10),
        "the RPC returned in {elapsed:?}, not hung"
    );
    // The shell running the script (argv[1]) or its sleep; the driver's own argv names it too.
    let script = hang.display().to_string();
    let still_running = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read_to_string(p.path().join("cmdline")).ok())
        .any(|c| {
            let argv: Vec<&str> = c.split('\0').collect();
            argv.get(1) == Some(&script.as_str()) || argv[..argv.len().min(2)] == ["sleep", "303"]
        });
    assert!(!still_running, "the hung mount process was killed");
    assert!(node_mounts(&env).is_empty(), "{:?}", node_mounts(&env));
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_driver_static_pv_stages_and_publishes() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    std::fs::write(turbo.root().join("already-there.txt"), "old data").unwrap();
    // As the old driver's users wrote them: any handle, mixed-case keys, NFSv3.
    let context: HashMap<String, String> = [
        ("Host", turbo.host.as_str()),
        ("FSID", turbo.fsid.as_str()),
        ("rootDir", "/cfs"),
        ("Path", "/"),
        ("PROTO", "nfs"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let volume = k.static_volume("turbo-pv-handwritten", "pod-old", rwx(""), context);
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(volume.target.join("already-there.txt")).unwrap(),
        "old data"
    );
    std::fs::write(volume.target.join("new.txt"), "new").unwrap();
    assert_eq!(
        std::fs::read_to_string(turbo.root().join("new.txt")).unwrap(),
        "new"
    );
    // Repeats are accepted.
    k.stage(&volume).await.unwrap();
    k.publish(&volume, false).await.unwrap();
    let stats = k.stats(&volume).await.unwrap();
    assert!(!stats.volume_condition.unwrap().abnormal);
    k.unpublish(&volume).await.unwrap();
    k.unstage(&volume).await.unwrap();
    // A static PV's handle is not ours to delete.
    k.delete(&volume).await.unwrap();
    assert!(turbo.root().join("new.txt").exists());
    assert!(
        mounts_under(&env.workdir).is_empty(),
        "{:?}",
        mounts_under(&env.workdir)
    );
    env.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_driver_dynamic_volume_is_deleted_leaf_only() {
    let (mut env, turbo, mut k) = start(EnvOptions::default()).await;
    let root = turbo.root();
    // What Tencent's driver left: /cfs/<cluster>/<pv>, beside other volumes of the cluster.
    for dir in ["cls-old/pvc-old/sub", "cls-old/pvc-other", "pvc-old"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("data"), dir).unwrap();
    }
    let before = files(&root);
    let id = format!("{}-{}-/cls-old/pvc-old", turbo.fsid, turbo.host);
    let volume = k.static_volume(&id, "pod-gone", rwx(""), HashMap::new());
    k.delete(&volume).await.unwrap();
    let after = files(&root);
    let gone: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    assert_eq!(
        gone,
        [
            "cls-old/pvc-old",
            "cls-old/pvc-old/sub",
            "cls-old/pvc-old/sub/data"
        ],
        "{after:?}"
    );
    assert!(after.iter().all(|f| before.contains(f)), "{after:?}");
    k.delete(&volume).await.unwrap();
    assert_eq!(files(&root), after);
    env.stop().await.unwrap();
}
