//! The CFS node service in process, with real mounts: file systems come from an export table laid
//! out as the simulator's (`NfsMounter::SimExports`, `mount --bind`), so these tests need root, as
//! CI runs them.
//!
//! One file system's "server" is a FUSE file system made here whose `statfs` can be held without
//! an answer, as a `hard` NFS mount's is when its server is gone. The tests show that such a
//! mount holds up only its own volumes, that stats of it are answered as abnormal instead of
//! hanging, that a volume's directory is never reached through a symbolic link, that requests
//! name only paths under the kubelet directory, and that a node-wide mount is released when the
//! node's own binds are gone even while the controller (in `--mode all`) has the same file system
//! mounted. Each test owns a temporary directory; [`Env`]'s drop releases held stats and unmounts
//! everything under it, even when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use csi_cfs::nfs::{NfsMounter, Programs};
use csi_cfs::node::{NodeConfig, NodeService};
use csi_common::csi::pb;
use csi_common::csi::pb::node_server::Node;
use csi_common::mount::LinuxMounter;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, INodeNo, ReplyAttr, ReplyEntry,
    ReplyStatfs, Request,
};
use tonic::Code;

/// A file system of one empty directory whose statfs answers, or is held while `held` is Some.
struct StallFs {
    held: Arc<Mutex<Option<Vec<ReplyStatfs>>>>,
}

fn root_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo::ROOT,
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for StallFs {
    fn lookup(&self, _req: &Request, _parent: INodeNo, _name: &std::ffi::OsStr, reply: ReplyEntry) {
        reply.error(Errno::ENOENT);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            reply.attr(&Duration::from_secs(1), &root_attr());
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let mut held = self.held.lock().unwrap();
        match held.as_mut() {
            Some(replies) => replies.push(reply),
            None => reply.statfs(1000, 500, 500, 100, 50, 4096, 255, 4096),
        }
    }
}

const HEALTHY: &str = "10.0.0.1";
const STALLING: &str = "10.0.0.2";

struct Env {
    dir: tempfile::TempDir,
    node: NodeService<LinuxMounter>,
    held: Arc<Mutex<Option<Vec<ReplyStatfs>>>>,
    fuse: Option<fuser::BackgroundSession>,
}

impl Env {
    /// Stats are waited for at most `stat_limit`.
    fn new(stat_limit: Duration) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p);
        for p in ["exports", "data/fs1", "data/fs2", "kubelet", "mounts"] {
            std::fs::create_dir_all(path(p)).unwrap();
        }
        let held = Arc::new(Mutex::new(None));
        let fuse = fuser::spawn_mount(
            StallFs {
                held: Arc::clone(&held),
            },
            path("data/fs2"),
            &Config::default(),
        )
        .unwrap();
        for (ip, fs) in [(HEALTHY, "data/fs1"), (STALLING, "data/fs2")] {
            std::os::unix::fs::symlink(path(fs), path("exports").join(ip)).unwrap();
            std::fs::write(path("exports").join(format!("{ip}.fsid")), "abcd1234").unwrap();
        }
        let node = NodeService::new(
            Arc::new(LinuxMounter::with_stat_limit(stat_limit)),
            NodeConfig {
                node_id: "node-1".into(),
                mounts_dir: path("mounts"),
                nfs: NfsMounter::SimExports {
                    exports: path("exports"),
                    programs: Programs {
                        mount: "mount".into(),
                        umount: "umount".into(),
                        timeout: Duration::from_secs(20),
                    },
                },
                kubelet_dir: path("kubelet"),
                flavor: csi_cfs::Flavor::Cfs,
            },
        );
        Env {
            dir,
            node,
            held,
            fuse: Some(fuse),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn kubelet(&self, p: &str) -> String {
        self.path("kubelet").join(p).display().to_string()
    }

    fn hold_stats(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    fn answer_stats(&self) {
        for reply in self.held.lock().unwrap().take().unwrap_or_default() {
            reply.statfs(1000, 500, 500, 100, 50, 4096, 255, 4096);
        }
    }

    fn mounts_under(&self, sub: &str) -> Vec<String> {
        let base = self.path(sub).display().to_string();
        let prefix = format!("{}/", base.trim_end_matches('/'));
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| p.starts_with(&prefix))
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.answer_stats();
        let fuse_root = self.path("data/fs2").display().to_string();
        let mut mine: Vec<String> = self.mounts_under("");
        mine.retain(|p| *p != fuse_root);
        for point in mine.iter().rev() {
            let _ = std::process::Command::new("umount")
                .args(["-l", point])
                .status();
        }
        if let Some(fuse) = self.fuse.take() {
            let _ = fuse.umount_and_join();
        }
    }
}

fn context(host: &str, path: &str) -> HashMap<String, String> {
    HashMap::from([
        ("host".to_owned(), host.to_owned()),
        ("path".to_owned(), path.to_owned()),
    ])
}

fn capability() -> pb::VolumeCapability {
    use pb::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    pb::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

async fn stage(env: &Env, id: &str, host: &str, path: &str) -> Result<(), tonic::Status> {
    env.node
        .node_stage_volume(tonic::Request::new(pb::NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: env.kubelet(&format!("staging/{id}")),
            volume_capability: Some(capability()),
            volume_context: context(host, path),
            ..Default::default()
        }))
        .await
        .map(|_| ())
}

async fn publish(env: &Env, id: &str, host: &str, target: &str) -> Result<(), tonic::Status> {
    env.node
        .node_publish_volume(tonic::Request::new(pb::NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: env.kubelet(&format!("staging/{id}")),
            target_path: target.into(),
            volume_capability: Some(capability()),
            volume_context: context(host, "/"),
            ..Default::default()
        }))
        .await
        .map(|_| ())
}

async fn unstage(env: &Env, id: &str) {
    env.node
        .node_unstage_volume(tonic::Request::new(pb::NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: env.kubelet(&format!("staging/{id}")),
        }))
        .await
        .unwrap();
}

async fn unpublish(env: &Env, id: &str, target: &str) {
    env.node
        .node_unpublish_volume(tonic::Request::new(pb::NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.into(),
        }))
        .await
        .unwrap();
}

async fn stats(env: &Env, path: &str) -> pb::NodeGetVolumeStatsResponse {
    env.node
        .node_get_volume_stats(tonic::Request::new(pb::NodeGetVolumeStatsRequest {
            volume_id: "any".into(),
            volume_path: path.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
}

fn abnormal(answer: &pb::NodeGetVolumeStatsResponse) -> bool {
    answer.volume_condition.as_ref().is_some_and(|c| c.abnormal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_stops_answering_holds_up_only_its_own_volumes() {
    let env = Arc::new(Env::new(Duration::from_secs(4)));
    stage(&env, "stalling", STALLING, "/").await.unwrap();
    env.hold_stats();

    // A publish of the stalling volume checks its staging mount: the stat hangs.
    let target = env.kubelet("pods/a/mount");
    let stalled = {
        let (env, target) = (Arc::clone(&env), target.clone());
        tokio::spawn(async move { publish(&env, "stalling", STALLING, &target).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stalled.is_finished(),
        "the publish should be waiting on the stat"
    );

    // Meanwhile another file system's volume stages, publishes and reports, at once.
    let begun = Instant::now();
    stage(&env, "healthy", HEALTHY, "/").await.unwrap();
    publish(&env, "healthy", HEALTHY, &env.kubelet("pods/b/mount"))
        .await
        .unwrap();
    assert!(!abnormal(&stats(&env, &env.kubelet("pods/b/mount")).await));
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "the healthy volume waited {:?} behind the stalled one",
        begun.elapsed()
    );

    // The stalled publish gives up at the stat limit: UNAVAILABLE, not a hang.
    let answer = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the publish never returned")
        .unwrap();
    assert_eq!(answer.unwrap_err().code(), Code::Unavailable);

    // Asked again while the stat is still stuck: abnormal, answered at once.
    let begun = Instant::now();
    let answer = stats(&env, &env.kubelet("staging/stalling")).await;
    assert!(abnormal(&answer), "{answer:?}");
    assert!(begun.elapsed() < Duration::from_secs(1));

    // The server answers again: the volume is healthy and publishes.
    env.answer_stats();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!abnormal(
        &stats(&env, &env.kubelet("staging/stalling")).await
    ));
    publish(&env, "stalling", STALLING, &target).await.unwrap();

    unpublish(&env, "stalling", &target).await;
    unpublish(&env, "healthy", &env.kubelet("pods/b/mount")).await;
    unstage(&env, "stalling").await;
    unstage(&env, "healthy").await;
    assert_eq!(env.mounts_under("mounts"), Vec::<String>::new());
    assert_eq!(env.mounts_under("kubelet"), Vec::<String>::new());
}

#[tokio::test]
async fn a_volume_directory_reached_through_a_symbolic_link_is_never_mounted() {
    let env = Env::new(Duration::from_secs(4));
    let fs1 = env.path("data/fs1");
    std::fs::create_dir_all(fs1.join("real")).unwrap();
    std::fs::write(fs1.join("real/own-file"), b"mine").unwrap();
    // Links a user of the file system could make: to the node's /etc, and to another directory
    // of the same file system (the race of CVE-2021-25741 swaps one in after a check).
    std::os::unix::fs::symlink("/etc", fs1.join("to-etc")).unwrap();
    std::os::unix::fs::symlink(fs1.join("real"), fs1.join("to-real")).unwrap();
    std::fs::create_dir_all(fs1.join("dir")).unwrap();
    std::os::unix::fs::symlink("../real", fs1.join("dir/up")).unwrap();
    for path in ["/to-etc", "/to-real", "/dir/up", "/to-etc/ssl"] {
        let err = stage(&env, "linked", HEALTHY, path).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{path}: {err:?}");
        assert_eq!(env.mounts_under("kubelet"), Vec::<String>::new(), "{path}");
    }
    // The real directory stages, and shows its own content.
    stage(&env, "plain", HEALTHY, "/real").await.unwrap();
    let staged = PathBuf::from(env.kubelet("staging/plain"));
    assert_eq!(std::fs::read(staged.join("own-file")).unwrap(), b"mine");
    unstage(&env, "plain").await;
    assert_eq!(env.mounts_under("mounts"), Vec::<String>::new());
}

#[tokio::test]
async fn paths_outside_the_kubelet_directory_are_refused() {
    let env = Env::new(Duration::from_secs(4));
    let outside = env.path("elsewhere/target");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = env.path("elsewhere/victim-file");
    std::fs::write(&victim, b"keep me").unwrap();
    let escapes = format!("{}/../elsewhere/target", env.path("kubelet").display());
    for target in [outside.display().to_string(), escapes] {
        let err = publish(&env, "v", HEALTHY, &target).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{target}");
    }
    let err = env
        .node
        .node_unpublish_volume(tonic::Request::new(pb::NodeUnpublishVolumeRequest {
            volume_id: "v".into(),
            target_path: victim.display().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    let err = env
        .node
        .node_stage_volume(tonic::Request::new(pb::NodeStageVolumeRequest {
            volume_id: "v".into(),
            staging_target_path: "/etc".into(),
            volume_capability: Some(capability()),
            volume_context: context(HEALTHY, "/"),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(env.mounts_under("kubelet"), Vec::<String>::new());
    assert_eq!(env.mounts_under("mounts"), Vec::<String>::new());
    assert_eq!(env.mounts_under("elsewhere"), Vec::<String>::new());
}

#[tokio::test]
async fn the_controllers_own_mount_does_not_keep_the_node_wide_mount() {
    let env = Env::new(Duration::from_secs(4));
    stage(&env, "one", HEALTHY, "/").await.unwrap();
    assert_eq!(env.mounts_under("mounts").len(), 1);
    // In --mode all the controller mounts the same file system under its own directory.
    let controller = env.path("controller/fs1");
    std::fs::create_dir_all(&controller).unwrap();
    let status = std::process::Command::new("mount")
        .args([
            "--bind",
            &env.path("data/fs1").display().to_string(),
            &controller.display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    unstage(&env, "one").await;
    assert_eq!(
        env.mounts_under("mounts"),
        Vec::<String>::new(),
        "the node-wide mount outlived the last volume"
    );
    assert_eq!(env.mounts_under("controller").len(), 1);
}
