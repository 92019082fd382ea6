//! The CBS node service against the in-memory `FakeMounter` and a temporary sysfs/dev tree: every
//! RPC's validation, idempotency, crash recovery, growth, health reporting and in-flight guard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_cbs::device::DeviceRoots;
use csi_cbs::node::{NodeConfig, NodeService};
use csi_cbs::topology::TOPOLOGY_KEY;
use csi_common::csi::pb;
use csi_common::csi::pb::node_server::Node as _;
use csi_common::csi::pb::volume_capability::access_mode::Mode;
use csi_common::mount::fake::{FakeGate, FakeMounter, FakeOp};
use csi_common::mount::{DeviceContent, MountInfo, Mounter};
use tonic::{Code, Request, Status};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const VOL: &str = "disk-aaaaaaaa";
const OTHER_VOL: &str = "disk-bbbbbbbb";
const ALL_OPS: [FakeOp; 10] = [
    FakeOp::Mounts,
    FakeOp::Mount,
    FakeOp::Bind,
    FakeOp::Unmount,
    FakeOp::Probe,
    FakeOp::Format,
    FakeOp::Grow,
    FakeOp::FsSize,
    FakeOp::DeviceSize,
    FakeOp::Stats,
];

/// A node: a temporary directory holding `by-id/`, `sys/block/<name>/serial`, `dev/<name>` and the
/// kubelet paths, a fake mounter whose devices are `<dev_root>/<name>`, and the service under test.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    roots: DeviceRoots,
    fake: FakeMounter,
    service: NodeService<FakeMounter>,
}

impl Fixture {
    fn new() -> Self {
        Self::with(Duration::from_millis(100), "ap-guangzhou-3")
    }

    fn with(device_wait: Duration, zone: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let roots = DeviceRoots {
            by_id_dir: root.join("by-id"),
            sysfs_root: root.join("sys"),
            dev_root: root.join("dev"),
        };
        fs::create_dir_all(&roots.by_id_dir).unwrap();
        fs::create_dir_all(roots.sysfs_root.join("block")).unwrap();
        fs::create_dir_all(&roots.dev_root).unwrap();
        let fake = FakeMounter::new();
        let service = NodeService::new(
            Arc::new(fake.clone()),
            NodeConfig {
                node_id: "ins-node1".into(),
                zone: zone.into(),
                max_volumes_per_node: 19,
                devices: roots.clone(),
                device_wait,
                kubelet_dir: root.join("kubelet"),
            },
        );
        Fixture {
            _dir: dir,
            root,
            roots,
            fake,
            service,
        }
    }

    /// Attaches a disk: its sysfs serial, its device node and the fake block device.
    fn attach(&self, name: &str, serial: &str, size: u64, content: DeviceContent) -> PathBuf {
        let sys = self.roots.sysfs_root.join("block").join(name);
        fs::create_dir_all(&sys).unwrap();
        fs::write(sys.join("serial"), format!("{serial}\n")).unwrap();
        let device = self.roots.dev_root.join(name);
        fs::write(&device, "").unwrap();
        self.fake.add_device(&device, size, content);
        device
    }

    fn staging(&self, volume_id: &str) -> PathBuf {
        self.root
            .join("kubelet/plugins/cbs/staging")
            .join(volume_id)
    }

    fn target(&self, pod: &str) -> PathBuf {
        self.root
            .join("kubelet/pods")
            .join(pod)
            .join("volumes/vol/mount")
    }

    fn block_target(&self, pod: &str) -> PathBuf {
        self.root
            .join("kubelet/pods")
            .join(pod)
            .join("volumeDevices/vol")
    }

    fn mount_at(&self, path: &Path) -> Option<MountInfo> {
        self.fake.mount_at(path).unwrap()
    }

    /// How many mounts are stacked at exactly `path`.
    fn mounts_at(&self, path: &Path) -> usize {
        let point = path.to_string_lossy();
        self.fake
            .mounts()
            .unwrap()
            .iter()
            .filter(|m| m.mount_point == point)
            .count()
    }

    fn total_calls(&self) -> u64 {
        ALL_OPS.iter().map(|op| self.fake.calls(*op)).sum()
    }

    async fn stage(
        &self,
        volume_id: &str,
        staging: &Path,
        capability: pb::VolumeCapability,
    ) -> Result<(), Status> {
        self.service
            .node_stage_volume(Request::new(stage_req(volume_id, staging, capability)))
            .await
            .map(drop)
    }

    async fn unstage(&self, volume_id: &str, staging: &Path) -> Result<(), Status> {
        self.service
            .node_unstage_volume(Request::new(pb::NodeUnstageVolumeRequest {
                volume_id: volume_id.into(),
                staging_target_path: path_str(staging),
            }))
            .await
            .map(drop)
    }

    async fn publish(
        &self,
        volume_id: &str,
        staging: &Path,
        target: &Path,
        capability: pb::VolumeCapability,
        readonly: bool,
    ) -> Result<(), Status> {
        self.service
            .node_publish_volume(Request::new(publish_req(
                volume_id, staging, target, capability, readonly,
            )))
            .await
            .map(drop)
    }

    async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), Status> {
        self.service
            .node_unpublish_volume(Request::new(pb::NodeUnpublishVolumeRequest {
                volume_id: volume_id.into(),
                target_path: path_str(target),
            }))
            .await
            .map(drop)
    }

    async fn expand(
        &self,
        volume_id: &str,
        path: &Path,
        capability: Option<pb::VolumeCapability>,
    ) -> Result<i64, Status> {
        self.service
            .node_expand_volume(Request::new(pb::NodeExpandVolumeRequest {
                volume_id: volume_id.into(),
                volume_path: path_str(path),
                volume_capability: capability,
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().capacity_bytes)
    }

    async fn stats(
        &self,
        volume_id: &str,
        path: &Path,
    ) -> Result<pb::NodeGetVolumeStatsResponse, Status> {
        self.service
            .node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
                volume_id: volume_id.into(),
                volume_path: path_str(path),
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner())
    }

    /// Attaches `VOL` as a blank `vdb`, stages it as ext4 and publishes it at `target("p1")`.
    async fn staged_and_published(&self) -> (PathBuf, PathBuf, PathBuf) {
        let device = self.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = self.staging(VOL);
        let target = self.target("p1");
        self.stage(VOL, &staging, writer("ext4")).await.unwrap();
        self.publish(VOL, &staging, &target, writer("ext4"), false)
            .await
            .unwrap();
        (device, staging, target)
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn mount_cap(fs_type: &str, mode: Mode, flags: &[&str]) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: fs_type.into(),
                mount_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
                ..Default::default()
            },
        )),
    }
}

fn writer(fs_type: &str) -> pb::VolumeCapability {
    mount_cap(fs_type, Mode::SingleNodeWriter, &[])
}

fn block_cap(mode: Mode) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(pb::volume_capability::AccessType::Block(
            pb::volume_capability::BlockVolume {},
        )),
    }
}

fn stage_req(
    volume_id: &str,
    staging: &Path,
    capability: pb::VolumeCapability,
) -> pb::NodeStageVolumeRequest {
    pb::NodeStageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: path_str(staging),
        volume_capability: Some(capability),
        ..Default::default()
    }
}

fn publish_req(
    volume_id: &str,
    staging: &Path,
    target: &Path,
    capability: pb::VolumeCapability,
    readonly: bool,
) -> pb::NodePublishVolumeRequest {
    pb::NodePublishVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: path_str(staging),
        target_path: path_str(target),
        volume_capability: Some(capability),
        readonly,
        ..Default::default()
    }
}

fn has(options: &[String], option: &str) -> bool {
    options.iter().any(|o| o == option)
}

// ---------------------------------------------------------------------------------------------
// NodeStageVolume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stage_rejects_malformed_requests_before_touching_anything() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = path_str(&node.staging(VOL));
    let good = stage_req(VOL, &node.staging(VOL), writer("ext4"));
    let cases: Vec<(&str, pb::NodeStageVolumeRequest, &str)> = vec![
        (
            "missing volume_id",
            pb::NodeStageVolumeRequest {
                volume_id: String::new(),
                ..good.clone()
            },
            "volume_id",
        ),
        (
            "missing staging path",
            pb::NodeStageVolumeRequest {
                staging_target_path: String::new(),
                ..good.clone()
            },
            "staging_target_path",
        ),
        (
            "relative staging path",
            pb::NodeStageVolumeRequest {
                staging_target_path: "kubelet/staging".into(),
                ..good.clone()
            },
            "absolute",
        ),
        (
            "staging path outside the kubelet directory",
            pb::NodeStageVolumeRequest {
                staging_target_path: "/etc".into(),
                ..good.clone()
            },
            "--kubelet-dir",
        ),
        (
            "staging path escaping the kubelet directory",
            pb::NodeStageVolumeRequest {
                staging_target_path: format!(
                    "{}/../../outside",
                    path_str(&node.root.join("kubelet"))
                ),
                ..good.clone()
            },
            "plain path",
        ),
        (
            "missing capability",
            pb::NodeStageVolumeRequest {
                volume_capability: None,
                ..good.clone()
            },
            "volume_capability",
        ),
        (
            "capability without access mode",
            pb::NodeStageVolumeRequest {
                volume_capability: Some(pb::VolumeCapability {
                    access_mode: None,
                    ..writer("ext4")
                }),
                ..good.clone()
            },
            "access_mode",
        ),
        (
            "multi-node access mode",
            pb::NodeStageVolumeRequest {
                volume_capability: Some(mount_cap("ext4", Mode::MultiNodeMultiWriter, &[])),
                ..good.clone()
            },
            "MULTI_NODE_MULTI_WRITER",
        ),
        (
            "unsupported filesystem",
            pb::NodeStageVolumeRequest {
                volume_capability: Some(writer("btrfs")),
                ..good.clone()
            },
            "btrfs",
        ),
    ];
    for (name, req, mentions) in cases {
        let err = node
            .service
            .node_stage_volume(Request::new(req))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(
            err.message().contains(mentions),
            "{name}: {:?} should mention {mentions:?}",
            err.message()
        );
    }
    assert_eq!(node.total_calls(), 0, "no mounter call for a bad request");
    assert!(!Path::new(&staging).exists(), "no staging directory made");
}

/// The volume ID names a file in the staging directory (block volumes): one that is not a disk
/// ID could name any path, so it is NOT_FOUND before anything is touched, in every node call.
#[tokio::test]
async fn a_volume_id_that_is_not_a_disk_id_never_reaches_a_path() {
    let node = Fixture::new();
    let staging = node.staging(VOL);
    let target = node.block_target("p1");
    for id in [
        "../../../../etc/passwd",
        "/etc/passwd",
        "disk-../x",
        "vol-1",
        "disk-",
    ] {
        let stage = node
            .stage(id, &staging, block_cap(Mode::SingleNodeWriter))
            .await
            .unwrap_err();
        assert_eq!(stage.code(), Code::NotFound, "{id}: {stage:?}");
        let unstage = node.unstage(id, &staging).await.unwrap_err();
        assert_eq!(unstage.code(), Code::NotFound, "{id}: {unstage:?}");
        let publish = node
            .publish(
                id,
                &staging,
                &target,
                block_cap(Mode::SingleNodeWriter),
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(publish.code(), Code::NotFound, "{id}: {publish:?}");
        let unpublish = node.unpublish(id, &target).await.unwrap_err();
        assert_eq!(unpublish.code(), Code::NotFound, "{id}: {unpublish:?}");
        // A missing field is still INVALID_ARGUMENT, whatever the ID (csi-sanity sends "id").
        let missing = node.unstage(id, Path::new("")).await.unwrap_err();
        assert_eq!(missing.code(), Code::InvalidArgument, "{id}: {missing:?}");
    }
    assert_eq!(node.total_calls(), 0);
}

#[test]
fn stage_rejects_every_relative_staging_path() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    proptest!(config, |(path in "[a-zA-Z0-9._ ~-][a-zA-Z0-9._/ ~-]{0,40}")| {
        let req = pb::NodeStageVolumeRequest {
            staging_target_path: path.clone(),
            ..stage_req(VOL, Path::new("/unused"), writer("ext4"))
        };
        let err = runtime
            .block_on(node.service.node_stage_volume(Request::new(req)))
            .unwrap_err();
        prop_assert_eq!(err.code(), Code::InvalidArgument, "{:?}: {:?}", path, err);
        prop_assert_eq!(node.total_calls(), 0);
    });
}

#[tokio::test]
async fn stage_without_the_device_is_not_found_after_the_wait() {
    let node = Fixture::with(Duration::from_millis(100), "");
    // Another disk is attached; ours is not.
    node.attach("vdc", OTHER_VOL, GIB, DeviceContent::Blank);
    let started = std::time::Instant::now();
    let err = node
        .stage(VOL, &node.staging(VOL), writer("ext4"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains(VOL), "{:?}", err.message());
    assert!(
        waited >= Duration::from_millis(40),
        "gave up at once: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "waited too long: {waited:?}"
    );
    assert_eq!(node.fake.calls(FakeOp::Mount), 0);
    assert_eq!(node.fake.calls(FakeOp::Format), 0);
}

#[tokio::test]
async fn stage_waits_no_longer_than_the_request_deadline() {
    let node = Fixture::with(Duration::from_secs(30), "");
    let mut request = Request::new(stage_req(VOL, &node.staging(VOL), writer("ext4")));
    request
        .metadata_mut()
        .insert("grpc-timeout", "200m".parse().unwrap());
    let started = std::time::Instant::now();
    let err = node.service.node_stage_volume(request).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ignored the deadline: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stage_finds_a_device_that_appears_during_the_wait() {
    let node = Fixture::with(Duration::from_secs(10), "");
    let staging = node.staging(VOL);
    let (staged, device) = tokio::join!(node.stage(VOL, &staging, writer("ext4")), async {
        tokio::time::sleep(Duration::from_millis(120)).await;
        node.attach("vdb", VOL, GIB, DeviceContent::Blank)
    });
    staged.unwrap();
    assert_eq!(node.mount_at(&staging).unwrap().source, path_str(&device));
}

struct BlankCase {
    name: &'static str,
    capability: pb::VolumeCapability,
    want_fs: &'static str,
    want_read_only: bool,
    /// Options that must (true) or must not (false) be among the mount's per-mount or superblock
    /// options.
    options: &'static [(&'static str, bool)],
}

#[tokio::test]
async fn stage_formats_a_blank_device_with_the_requested_filesystem() {
    let cases = [
        BlankCase {
            name: "no fs_type: ext4",
            capability: writer(""),
            want_fs: "ext4",
            want_read_only: false,
            options: &[("nouuid", false), ("ro", false)],
        },
        BlankCase {
            name: "ext4",
            capability: writer("ext4"),
            want_fs: "ext4",
            want_read_only: false,
            options: &[("nouuid", false)],
        },
        BlankCase {
            name: "ext3",
            capability: writer("ext3"),
            want_fs: "ext3",
            want_read_only: false,
            options: &[("nouuid", false)],
        },
        BlankCase {
            name: "xfs gets nouuid",
            capability: writer("xfs"),
            want_fs: "xfs",
            want_read_only: false,
            options: &[("nouuid", true), ("ro", false)],
        },
        BlankCase {
            name: "reader-only gets ro",
            capability: mount_cap("ext4", Mode::SingleNodeReaderOnly, &[]),
            want_fs: "ext4",
            want_read_only: true,
            options: &[("ro", true), ("nouuid", false)],
        },
        BlankCase {
            name: "reader-only xfs with user flags",
            capability: mount_cap("xfs", Mode::SingleNodeReaderOnly, &["noatime", "discard"]),
            want_fs: "xfs",
            want_read_only: true,
            options: &[
                ("ro", true),
                ("nouuid", true),
                ("noatime", true),
                ("discard", true),
            ],
        },
        BlankCase {
            name: "user nouuid is not doubled",
            capability: mount_cap("xfs", Mode::SingleNodeWriter, &["nouuid"]),
            want_fs: "xfs",
            want_read_only: false,
            options: &[("nouuid", true)],
        },
    ];
    for case in cases {
        let name = case.name;
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, 10 * GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        node.stage(VOL, &staging, case.capability)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));

        assert_eq!(node.fake.calls(FakeOp::Format), 1, "{name}");
        assert_eq!(
            node.fake.device(&device).unwrap().content,
            DeviceContent::Filesystem(case.want_fs.into()),
            "{name}"
        );
        let mount = node.mount_at(&staging).expect(name);
        assert_eq!(mount.source, path_str(&device), "{name}");
        assert_eq!(mount.fs_type, case.want_fs, "{name}");
        assert_eq!(
            mount.is_read_only(),
            case.want_read_only,
            "{name}: {mount:?}"
        );
        let all: Vec<String> = mount
            .options
            .iter()
            .chain(&mount.super_options)
            .cloned()
            .collect();
        for (option, present) in case.options {
            assert_eq!(
                has(&all, option),
                *present,
                "{name}: option {option} in {all:?}"
            );
        }
        assert_eq!(
            all.iter().filter(|o| *o == "nouuid").count(),
            usize::from(case.want_fs == "xfs"),
            "{name}: {all:?}"
        );
    }
}

/// The StorageClass's unprefixed `fstype` (in the volume context, as Tencent's driver kept it)
/// formats a blank device when the capability names no file system; the capability wins.
#[tokio::test]
async fn the_volume_contexts_fstype_formats_when_the_capability_names_none() {
    for (capability_fs, context_fs, want) in [
        ("", Some("xfs"), Ok("xfs")),
        ("", Some("ext3"), Ok("ext3")),
        ("ext4", Some("xfs"), Ok("ext4")),
        ("", None, Ok("ext4")),
        (
            "",
            Some("btrfs"),
            Err("volume_context fstype \"btrfs\" is not ext4, ext3 or xfs"),
        ),
    ] {
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, 10 * GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        let mut request = stage_req(VOL, &staging, writer(capability_fs));
        if let Some(fs) = context_fs {
            request.volume_context.insert("fstype".into(), fs.into());
        }
        let staged = node.service.node_stage_volume(Request::new(request)).await;
        match want {
            Ok(fs) => {
                staged.unwrap_or_else(|e| panic!("{capability_fs:?}/{context_fs:?}: {e:?}"));
                assert_eq!(
                    node.fake.device(&device).unwrap().content,
                    DeviceContent::Filesystem(fs.into()),
                    "{capability_fs:?}/{context_fs:?}"
                );
            }
            Err(message) => {
                let status = staged.unwrap_err();
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
                assert!(status.message().contains(message), "{}", status.message());
                assert_eq!(node.fake.calls(FakeOp::Format), 0, "nothing formatted");
            }
        }
    }
}

#[tokio::test]
async fn stage_never_formats_a_device_with_a_filesystem() {
    let cases = [
        ("xfs found, ext4 asked", "xfs", "ext4"),
        ("ext4 found, xfs asked", "ext4", "xfs"),
        ("ext3 found, default asked", "ext3", ""),
        ("ext4 found, ext4 asked", "ext4", "ext4"),
    ];
    for (name, found, requested) in cases {
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, GIB, DeviceContent::Filesystem(found.into()));
        let staging = node.staging(VOL);
        node.stage(VOL, &staging, writer(requested))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(node.fake.calls(FakeOp::Format), 0, "{name}");
        let mount = node.mount_at(&staging).expect(name);
        assert_eq!(mount.fs_type, found, "{name}");
        assert_eq!(mount.source, path_str(&device), "{name}");
        assert_eq!(
            node.fake.device(&device).unwrap().content,
            DeviceContent::Filesystem(found.into()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn stage_refuses_partition_tables_and_other_signatures() {
    let cases = [
        DeviceContent::PartitionTable("gpt".into()),
        DeviceContent::PartitionTable("dos".into()),
        DeviceContent::Other("LVM2_member".into()),
        DeviceContent::Other("swap".into()),
    ];
    for content in cases {
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, GIB, content.clone());
        let staging = node.staging(VOL);
        let err = node.stage(VOL, &staging, writer("ext4")).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{content:?}: {err:?}");
        assert_eq!(node.fake.calls(FakeOp::Format), 0, "{content:?}");
        assert_eq!(node.fake.calls(FakeOp::Mount), 0, "{content:?}");
        assert!(node.mount_at(&staging).is_none(), "{content:?}");
        assert_eq!(node.fake.device(&device).unwrap().content, content);
    }
}

#[tokio::test]
async fn repeat_stage_is_a_no_op() {
    for fs_type in ["ext4", "xfs"] {
        let node = Fixture::new();
        node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        node.stage(VOL, &staging, writer(fs_type)).await.unwrap();
        node.stage(VOL, &staging, writer(fs_type)).await.unwrap();
        node.stage(VOL, &staging, writer(fs_type)).await.unwrap();
        assert_eq!(node.fake.calls(FakeOp::Format), 1, "{fs_type}");
        assert_eq!(node.fake.calls(FakeOp::Probe), 1, "{fs_type}");
        assert_eq!(node.fake.calls(FakeOp::Mount), 1, "{fs_type}");
        assert_eq!(node.fake.calls(FakeOp::Grow), 0, "{fs_type}");
        assert_eq!(node.mounts_at(&staging), 1, "{fs_type}");
    }
}

#[tokio::test]
async fn stage_remounts_a_broken_staging_mount() {
    let node = Fixture::new();
    let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert!(node.fake.break_mount(&staging));

    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert!(node.fake.calls(FakeOp::Unmount) >= 1);
    assert_eq!(node.fake.calls(FakeOp::Mount), 2);
    assert_eq!(node.fake.calls(FakeOp::Format), 1, "never formatted again");
    assert_eq!(node.mounts_at(&staging), 1);
    assert_eq!(node.mount_at(&staging).unwrap().source, path_str(&device));
    assert!(node.fake.stats(&staging).is_ok(), "the new mount answers");
}

#[tokio::test]
async fn stage_grows_a_filesystem_smaller_than_its_device() {
    // (name, filesystem, device growth, grows). ext* must grow before the mount (online growth is
    // denied, so a grow after mounting would fail); xfs only grows mounted (the fake refuses
    // otherwise).
    let cases = [
        ("ext4 grown by 1 GiB", "ext4", GIB, true),
        ("ext3 grown by 1 GiB", "ext3", GIB, true),
        ("ext4 within the slack", "ext4", 32 * MIB, false),
        ("xfs grown by 1 GiB", "xfs", GIB, true),
        ("xfs within the slack", "xfs", 32 * MIB, false),
    ];
    for (name, fs_type, growth, grows) in cases {
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, GIB, DeviceContent::Filesystem(fs_type.into()));
        assert!(node.fake.set_device_size(&device, GIB + growth));
        node.fake.deny_online_ext_grow(true);
        let staging = node.staging(VOL);
        node.stage(VOL, &staging, writer(fs_type))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(node.fake.calls(FakeOp::Grow), u64::from(grows), "{name}");
        let want = if grows { GIB + growth } else { GIB };
        assert_eq!(
            node.fake.device(&device).unwrap().fs_size,
            Some(want),
            "{name}"
        );
        assert_eq!(node.fake.calls(FakeOp::Format), 0, "{name}");
        assert_eq!(node.mount_at(&staging).expect(name).fs_type, fs_type);
    }
}

/// CSI: NodeStage of a volume already staged compatibly at the path MUST reply OK. A disk grown
/// since it was staged must not turn a repeat stage (kubelet restart, a second pod) into an error
/// on a node where ext4 cannot grow online; NodeExpandVolume reports that instead.
#[tokio::test]
async fn repeat_stage_of_a_grown_ext4_volume_succeeds_without_online_growth() {
    let node = Fixture::new();
    let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert!(node.fake.set_device_size(&device, 2 * GIB));
    node.fake.deny_online_ext_grow(true);

    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert_eq!(node.mounts_at(&staging), 1);
}

#[tokio::test]
async fn stage_uses_the_serial_over_a_stale_by_id_link() {
    let node = Fixture::new();
    let wrong = node.attach("vdb", OTHER_VOL, GIB, DeviceContent::Blank);
    let right = node.attach("vdc", VOL, GIB, DeviceContent::Blank);
    // The link of VOL points at OTHER_VOL's device.
    std::os::unix::fs::symlink(&wrong, node.roots.by_id_dir.join(format!("virtio-{VOL}"))).unwrap();

    let staging = node.staging(VOL);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert_eq!(node.mount_at(&staging).unwrap().source, path_str(&right));
    assert_eq!(
        node.fake.device(&wrong).unwrap().content,
        DeviceContent::Blank,
        "the other disk is untouched"
    );
}

#[tokio::test]
async fn stage_uses_a_by_id_link_whose_serial_matches() {
    let node = Fixture::new();
    node.attach("vdb", OTHER_VOL, GIB, DeviceContent::Blank);
    let right = node.attach("vdc", VOL, GIB, DeviceContent::Blank);
    std::os::unix::fs::symlink(&right, node.roots.by_id_dir.join(format!("virtio-{VOL}"))).unwrap();
    let staging = node.staging(VOL);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert_eq!(node.mount_at(&staging).unwrap().source, path_str(&right));
}

#[tokio::test]
async fn stage_refuses_a_staging_path_holding_another_device() {
    let node = Fixture::new();
    let ours = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let theirs = node.attach(
        "vdc",
        OTHER_VOL,
        GIB,
        DeviceContent::Filesystem("ext4".into()),
    );
    let staging = node.staging(VOL);
    fs::create_dir_all(&staging).unwrap();
    node.fake.mount(&theirs, &staging, "ext4", &[]).unwrap();

    let err = node.stage(VOL, &staging, writer("ext4")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(node.mount_at(&staging).unwrap().source, path_str(&theirs));
    assert_eq!(node.mounts_at(&staging), 1);
    assert_eq!(node.fake.calls(FakeOp::Format), 0);
    assert_eq!(
        node.fake.device(&ours).unwrap().content,
        DeviceContent::Blank
    );
}

// ---------------------------------------------------------------------------------------------
// Block volumes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn block_volume_stage_publish_unpublish_unstage() {
    let node = Fixture::new();
    node.attach("vdb", VOL, 5 * GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    let staged_file = staging.join(VOL);
    let target = node.block_target("p1");
    let cap = block_cap(Mode::SingleNodeWriter);

    node.stage(VOL, &staging, cap.clone()).await.unwrap();
    let staged = node.mount_at(&staged_file).expect("the device is bound");
    assert!(staged.root.ends_with("/vdb"), "{staged:?}");
    assert!(!staged.is_read_only());
    assert!(staged_file.is_file());
    assert_eq!(
        node.fake.calls(FakeOp::Probe),
        0,
        "a block volume is never probed"
    );
    assert_eq!(node.fake.calls(FakeOp::Format), 0);
    assert!(
        node.mount_at(&staging).is_none(),
        "nothing mounted on the directory"
    );

    node.stage(VOL, &staging, cap.clone()).await.unwrap();
    assert_eq!(
        node.fake.calls(FakeOp::Bind),
        1,
        "repeat stage binds nothing"
    );

    node.publish(VOL, &staging, &target, cap.clone(), false)
        .await
        .unwrap();
    let published = node.mount_at(&target).expect("the staged file is bound");
    assert!(published.root.ends_with("/vdb"), "{published:?}");
    assert!(!published.is_read_only());
    assert!(target.is_file(), "a block target is a file");

    node.publish(VOL, &staging, &target, cap.clone(), false)
        .await
        .unwrap();
    assert_eq!(
        node.fake.calls(FakeOp::Bind),
        2,
        "repeat publish binds nothing"
    );
    assert_eq!(node.mounts_at(&target), 1);

    let stats = node.stats(VOL, &target).await.unwrap();
    assert_eq!(stats.usage.len(), 1);
    assert_eq!(stats.usage[0].total, (5 * GIB) as i64);
    assert_eq!(stats.usage[0].unit, pb::volume_usage::Unit::Bytes as i32);
    assert!(!stats.volume_condition.unwrap().abnormal);

    node.unpublish(VOL, &target).await.unwrap();
    assert!(node.mount_at(&target).is_none());
    assert!(!target.exists(), "the target file is removed");

    node.unstage(VOL, &staging).await.unwrap();
    assert!(node.mount_at(&staged_file).is_none());
    assert!(!staged_file.exists(), "the staged file is removed");
    node.unstage(VOL, &staging).await.unwrap();
}

#[tokio::test]
async fn block_volume_publishes_read_only() {
    let cases = [
        ("readonly flag", Mode::SingleNodeWriter, true),
        ("reader-only mode", Mode::SingleNodeReaderOnly, false),
    ];
    for (name, mode, readonly) in cases {
        let node = Fixture::new();
        node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        let target = node.block_target("p1");
        node.stage(VOL, &staging, block_cap(mode)).await.unwrap();
        node.publish(VOL, &staging, &target, block_cap(mode), readonly)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(node.mount_at(&target).expect(name).is_read_only(), "{name}");
    }
}

#[tokio::test]
async fn block_publish_of_an_unstaged_volume_is_a_failed_precondition() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    let target = node.block_target("p1");
    let err = node
        .publish(
            VOL,
            &staging,
            &target,
            block_cap(Mode::SingleNodeWriter),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(node.fake.calls(FakeOp::Bind), 0);
}

// ---------------------------------------------------------------------------------------------
// NodePublishVolume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn publish_rejects_malformed_requests() {
    let node = Fixture::new();
    let good = publish_req(
        VOL,
        &node.staging(VOL),
        &node.target("p1"),
        writer("ext4"),
        false,
    );
    let cases: Vec<(&str, pb::NodePublishVolumeRequest)> = vec![
        (
            "missing volume_id",
            pb::NodePublishVolumeRequest {
                volume_id: String::new(),
                ..good.clone()
            },
        ),
        (
            "missing staging path",
            pb::NodePublishVolumeRequest {
                staging_target_path: String::new(),
                ..good.clone()
            },
        ),
        (
            "missing target path",
            pb::NodePublishVolumeRequest {
                target_path: String::new(),
                ..good.clone()
            },
        ),
        (
            "relative target path",
            pb::NodePublishVolumeRequest {
                target_path: "pods/p1/mount".into(),
                ..good.clone()
            },
        ),
        (
            "missing capability",
            pb::NodePublishVolumeRequest {
                volume_capability: None,
                ..good.clone()
            },
        ),
        (
            "multi-node mode",
            pb::NodePublishVolumeRequest {
                volume_capability: Some(mount_cap("ext4", Mode::MultiNodeReaderOnly, &[])),
                ..good.clone()
            },
        ),
    ];
    for (name, req) in cases {
        let err = node
            .service
            .node_publish_volume(Request::new(req))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
    }
    assert_eq!(node.total_calls(), 0);
}

#[tokio::test]
async fn publish_of_an_unstaged_volume_is_a_failed_precondition() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    fs::create_dir_all(&staging).unwrap();
    let target = node.target("p1");
    let err = node
        .publish(VOL, &staging, &target, writer("ext4"), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(VOL), "{:?}", err.message());
    assert_eq!(node.fake.calls(FakeOp::Bind), 0);
    assert!(node.mount_at(&target).is_none());
}

#[tokio::test]
async fn publish_binds_the_staging_mount_read_only_when_asked() {
    // (name, stage mode, publish mode, readonly flag, read-only bind)
    let cases = [
        (
            "writable",
            Mode::SingleNodeWriter,
            Mode::SingleNodeWriter,
            false,
            false,
        ),
        (
            "readonly flag",
            Mode::SingleNodeWriter,
            Mode::SingleNodeWriter,
            true,
            true,
        ),
        (
            "reader-only mode",
            Mode::SingleNodeReaderOnly,
            Mode::SingleNodeReaderOnly,
            false,
            true,
        ),
        (
            "multi-writer mode",
            Mode::SingleNodeMultiWriter,
            Mode::SingleNodeMultiWriter,
            false,
            false,
        ),
    ];
    for (name, stage_mode, publish_mode, readonly, want_ro) in cases {
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        let target = node.target("p1");
        node.stage(VOL, &staging, mount_cap("ext4", stage_mode, &[]))
            .await
            .unwrap();
        node.publish(
            VOL,
            &staging,
            &target,
            mount_cap("ext4", publish_mode, &[]),
            readonly,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let bound = node.mount_at(&target).expect(name);
        assert_eq!(bound.source, path_str(&device), "{name}");
        assert_eq!(
            bound.options.first().map(String::as_str),
            Some(if want_ro { "ro" } else { "rw" }),
            "{name}: {bound:?}"
        );
        assert!(target.is_dir(), "{name}");
    }
}

#[tokio::test]
async fn repeat_publish_is_a_no_op() {
    for readonly in [false, true] {
        let node = Fixture::new();
        node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        let target = node.target("p1");
        node.stage(VOL, &staging, writer("ext4")).await.unwrap();
        for _ in 0..3 {
            node.publish(VOL, &staging, &target, writer("ext4"), readonly)
                .await
                .unwrap();
        }
        assert_eq!(node.fake.calls(FakeOp::Bind), 1, "readonly={readonly}");
        assert_eq!(node.fake.calls(FakeOp::Unmount), 0, "readonly={readonly}");
        assert_eq!(node.mounts_at(&target), 1, "readonly={readonly}");
    }
}

#[tokio::test]
async fn publish_redoes_a_bind_with_the_wrong_access() {
    // A crash between the bind and its read-only remount leaves a writable bind; the reverse
    // mismatch is redone too.
    for (left_read_only, want_read_only) in [(false, true), (true, false)] {
        let name = format!("left ro={left_read_only}, asked ro={want_read_only}");
        let node = Fixture::new();
        node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        let target = node.target("p1");
        node.stage(VOL, &staging, writer("ext4")).await.unwrap();
        fs::create_dir_all(&target).unwrap();
        node.fake
            .bind(&staging, &target, left_read_only, &[])
            .unwrap();

        node.publish(VOL, &staging, &target, writer("ext4"), want_read_only)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(node.mounts_at(&target), 1, "{name}: the old bind is gone");
        assert_eq!(
            node.mount_at(&target).unwrap().is_read_only(),
            want_read_only,
            "{name}"
        );
    }
}

#[tokio::test]
async fn publish_rebinds_a_broken_target_mount() {
    let node = Fixture::new();
    let (device, staging, target) = node.staged_and_published().await;
    assert!(node.fake.break_mount(&target));

    node.publish(VOL, &staging, &target, writer("ext4"), false)
        .await
        .unwrap();
    assert_eq!(node.mounts_at(&target), 1);
    assert_eq!(node.mount_at(&target).unwrap().source, path_str(&device));
    assert!(node.fake.stats(&target).is_ok(), "the new bind answers");
    assert_eq!(node.fake.calls(FakeOp::Bind), 2);
}

/// A target that holds another volume's filesystem is not this volume published: reporting success
/// would hand the pod the wrong data.
#[tokio::test]
async fn publish_never_reports_success_over_another_volumes_mount() {
    let node = Fixture::new();
    let ours = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let theirs = node.attach(
        "vdc",
        OTHER_VOL,
        GIB,
        DeviceContent::Filesystem("ext4".into()),
    );
    let staging = node.staging(VOL);
    let target = node.target("p1");
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    fs::create_dir_all(&target).unwrap();
    node.fake.mount(&theirs, &target, "ext4", &[]).unwrap();

    let result = node
        .publish(VOL, &staging, &target, writer("ext4"), false)
        .await;
    if result.is_ok() {
        assert_eq!(
            node.mount_at(&target).unwrap().source,
            path_str(&ours),
            "publish said OK while {} holds {}",
            target.display(),
            theirs.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// NodeUnpublishVolume / NodeUnstageVolume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unpublish_and_unstage_reject_malformed_requests() {
    let node = Fixture::new();
    let abs = node.target("p1");
    let cases: [(&str, &str, &str); 3] = [
        ("missing volume_id", "", "/x"),
        ("missing path", VOL, ""),
        ("relative path", VOL, "pods/p1/mount"),
    ];
    for (name, volume_id, path) in cases {
        let err = node
            .service
            .node_unpublish_volume(Request::new(pb::NodeUnpublishVolumeRequest {
                volume_id: volume_id.into(),
                target_path: path.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "unpublish {name}: {err:?}"
        );
        let err = node
            .service
            .node_unstage_volume(Request::new(pb::NodeUnstageVolumeRequest {
                volume_id: volume_id.into(),
                staging_target_path: path.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "unstage {name}: {err:?}");
    }
    assert_eq!(node.total_calls(), 0);
    assert!(!abs.exists());
}

#[tokio::test]
async fn unpublish_is_idempotent() {
    let node = Fixture::new();
    let (_, staging, target) = node.staged_and_published().await;
    node.unpublish(VOL, &target).await.unwrap();
    assert!(node.mount_at(&target).is_none());
    assert!(!target.exists(), "the empty target directory is removed");
    node.unpublish(VOL, &target).await.unwrap();
    // A path that never existed.
    node.unpublish(VOL, &node.target("never")).await.unwrap();
    assert!(node.mount_at(&staging).is_some(), "staging is untouched");
}

#[tokio::test]
async fn unpublish_removes_every_stacked_mount() {
    let node = Fixture::new();
    let (_, staging, target) = node.staged_and_published().await;
    node.fake.bind(&staging, &target, false, &[]).unwrap();
    node.fake.bind(&staging, &target, true, &[]).unwrap();
    assert_eq!(node.mounts_at(&target), 3);

    node.unpublish(VOL, &target).await.unwrap();
    assert_eq!(node.mounts_at(&target), 0);
    assert!(!target.exists());
}

#[tokio::test]
async fn unpublish_removes_only_an_empty_target_directory() {
    // (name, arrange the target, Ok, target remains)
    type Arrange = fn(&Path);
    let cases: [(&str, Arrange, bool, bool); 4] = [
        ("missing", |_| {}, true, false),
        (
            "empty directory",
            |t| fs::create_dir_all(t).unwrap(),
            true,
            false,
        ),
        (
            "a file (block target)",
            |t| {
                fs::create_dir_all(t.parent().unwrap()).unwrap();
                fs::write(t, "").unwrap();
            },
            true,
            false,
        ),
        (
            "a directory with data",
            |t| {
                fs::create_dir_all(t.join("sub")).unwrap();
                fs::write(t.join("sub/precious"), "data").unwrap();
            },
            false,
            true,
        ),
    ];
    for (name, arrange, ok, remains) in cases {
        let node = Fixture::new();
        let target = node.target("p1");
        arrange(&target);
        let result = node.unpublish(VOL, &target).await;
        assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
        assert_eq!(target.exists(), remains, "{name}");
        if remains {
            assert!(
                target.join("sub/precious").exists(),
                "{name}: never removed recursively"
            );
            let err = result.unwrap_err();
            assert_eq!(err.code(), Code::Internal, "{name}: {err:?}");
            assert!(err.message().contains(&path_str(&target)), "{err:?}");
        }
    }
}

#[tokio::test]
async fn unstage_is_idempotent() {
    let node = Fixture::new();
    let (device, staging, target) = node.staged_and_published().await;
    node.unpublish(VOL, &target).await.unwrap();
    node.unstage(VOL, &staging).await.unwrap();
    assert!(node.mount_at(&staging).is_none());
    node.unstage(VOL, &staging).await.unwrap();
    node.unstage(VOL, &node.staging("never-staged"))
        .await
        .unwrap();
    assert_eq!(
        node.fake.device(&device).unwrap().content,
        DeviceContent::Filesystem("ext4".into()),
        "the data stays"
    );
}

#[tokio::test]
async fn unstage_removes_every_stacked_mount() {
    let node = Fixture::new();
    let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    node.fake.mount(&device, &staging, "ext4", &[]).unwrap();
    node.fake.mount(&device, &staging, "ext4", &[]).unwrap();
    assert_eq!(node.mounts_at(&staging), 3);

    node.unstage(VOL, &staging).await.unwrap();
    assert_eq!(node.mounts_at(&staging), 0);
}

#[tokio::test]
async fn unstage_unmounts_a_broken_staging_mount() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert!(node.fake.break_mount(&staging));
    node.unstage(VOL, &staging).await.unwrap();
    assert_eq!(node.mounts_at(&staging), 0);
}

// ---------------------------------------------------------------------------------------------
// NodeExpandVolume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expand_grows_a_mounted_filesystem_to_its_device() {
    for fs_type in ["ext4", "xfs"] {
        let node = Fixture::new();
        let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        let staging = node.staging(VOL);
        let target = node.target("p1");
        node.stage(VOL, &staging, writer(fs_type)).await.unwrap();
        node.publish(VOL, &staging, &target, writer(fs_type), false)
            .await
            .unwrap();
        assert!(node.fake.set_device_size(&device, 3 * GIB));

        let capacity = node
            .expand(VOL, &target, Some(writer(fs_type)))
            .await
            .unwrap_or_else(|e| panic!("{fs_type}: {e:?}"));
        assert_eq!(capacity, (3 * GIB) as i64, "{fs_type}");
        assert_eq!(node.fake.calls(FakeOp::Grow), 1, "{fs_type}");
        assert_eq!(
            node.fake.device(&device).unwrap().fs_size,
            Some(3 * GIB),
            "{fs_type}"
        );
        assert_eq!(
            node.fake.stats(&target).unwrap().total_bytes,
            3 * GIB,
            "{fs_type}"
        );
    }
}

#[tokio::test]
async fn expand_of_ext4_without_online_growth_is_unavailable_and_says_when_it_grows() {
    let node = Fixture::new();
    let (device, staging, target) = node.staged_and_published().await;
    assert!(node.fake.set_device_size(&device, 2 * GIB));
    node.fake.deny_online_ext_grow(true);

    let err = node
        .expand(VOL, &target, Some(writer("ext4")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("CAP_SYS_RESOURCE"),
        "{:?}",
        err.message()
    );
    assert!(err.message().contains("next staged"), "{:?}", err.message());
    assert_eq!(node.fake.device(&device).unwrap().fs_size, Some(GIB));

    // The advice works: once unstaged, the next stage grows it offline.
    node.unpublish(VOL, &target).await.unwrap();
    node.unstage(VOL, &staging).await.unwrap();
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
    assert_eq!(node.fake.device(&device).unwrap().fs_size, Some(2 * GIB));
}

#[tokio::test]
async fn expand_of_an_unmounted_path_is_not_found() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Filesystem("ext4".into()));
    let target = node.target("p1");
    fs::create_dir_all(&target).unwrap();
    let err = node
        .expand(VOL, &target, Some(writer("ext4")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(node.fake.calls(FakeOp::Grow), 0);
}

#[tokio::test]
async fn expand_of_a_detached_volume_is_not_found() {
    let node = Fixture::new();
    let target = node.target("p1");
    fs::create_dir_all(&target).unwrap();
    let err = node
        .expand(VOL, &target, Some(writer("ext4")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains(VOL), "{:?}", err.message());
}

#[tokio::test]
async fn expand_refuses_a_path_mounting_another_device() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Filesystem("ext4".into()));
    let theirs = node.attach(
        "vdc",
        OTHER_VOL,
        GIB,
        DeviceContent::Filesystem("ext4".into()),
    );
    let target = node.target("p1");
    fs::create_dir_all(&target).unwrap();
    node.fake.mount(&theirs, &target, "ext4", &[]).unwrap();
    let err = node
        .expand(VOL, &target, Some(writer("ext4")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(node.fake.calls(FakeOp::Grow), 0);
}

#[tokio::test]
async fn expand_of_a_block_volume_reports_capacity_without_growing() {
    let node = Fixture::new();
    let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    let target = node.block_target("p1");
    let cap = block_cap(Mode::SingleNodeWriter);
    node.stage(VOL, &staging, cap.clone()).await.unwrap();
    node.publish(VOL, &staging, &target, cap.clone(), false)
        .await
        .unwrap();
    assert!(node.fake.set_device_size(&device, 4 * GIB));

    let capacity = node.expand(VOL, &target, Some(cap)).await.unwrap();
    assert_eq!(capacity, (4 * GIB) as i64);
    assert_eq!(node.fake.calls(FakeOp::Grow), 0);
    assert_eq!(node.fake.calls(FakeOp::Format), 0);
}

#[tokio::test]
async fn expand_rejects_malformed_requests() {
    let node = Fixture::new();
    for (name, volume_id, path) in [("missing volume_id", "", "/x"), ("missing path", VOL, "")] {
        let err = node
            .expand(volume_id, Path::new(path), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
    }
    // No volume is ever mounted at a relative path: NOT_FOUND, as csi-sanity expects.
    for volume_id in [VOL, "some-volume-id"] {
        let err = node
            .expand(volume_id, Path::new("some/path"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{volume_id}: {err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// NodeGetVolumeStats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stats_of_a_missing_path_is_not_found() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let err = node.stats(VOL, &node.target("never")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    for (name, volume_id, path) in [("missing volume_id", "", "/x"), ("missing path", VOL, "")] {
        let err = node.stats(volume_id, Path::new(path)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
    }
    // A relative path holds no volume, known or not: NOT_FOUND, never resolved.
    for volume_id in [VOL, "some-volume-id"] {
        let err = node
            .stats(volume_id, Path::new("some/path"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{volume_id}: {err:?}");
    }
}

#[tokio::test]
async fn stats_of_a_healthy_volume_reports_bytes_and_inodes() {
    let node = Fixture::new();
    let (device, staging, target) = node.staged_and_published().await;
    assert!(node.fake.set_usage(&device, 100 * MIB, 1000));
    let total_inodes = (GIB / (16 << 10)) as i64;

    for path in [&target, &staging] {
        let stats = node.stats(VOL, path).await.unwrap();
        let condition = stats.volume_condition.clone().unwrap();
        assert!(!condition.abnormal, "{}: {condition:?}", path.display());
        let bytes = stats
            .usage
            .iter()
            .find(|u| u.unit == pb::volume_usage::Unit::Bytes as i32)
            .expect("byte usage");
        assert_eq!(
            (bytes.total, bytes.used, bytes.available),
            (GIB as i64, (100 * MIB) as i64, (GIB - 100 * MIB) as i64)
        );
        let inodes = stats
            .usage
            .iter()
            .find(|u| u.unit == pb::volume_usage::Unit::Inodes as i32)
            .expect("inode usage");
        assert_eq!(
            (inodes.total, inodes.used, inodes.available),
            (total_inodes, 1000, total_inodes - 1000)
        );
    }
}

#[tokio::test]
async fn stats_reports_the_volume_condition() {
    type Arrange = fn(&Fixture, &Path, &Path, &Path) -> PathBuf;
    // (name, arrange from (device, staging, target) -> path to ask about, abnormal, message part)
    let cases: [(&str, Arrange, bool, &str); 9] = [
        ("healthy", |_, _, _, t| t.to_owned(), false, ""),
        (
            "broken mount",
            |n, _, _, t| {
                assert!(n.fake.break_mount(t));
                t.to_owned()
            },
            true,
            "broken",
        ),
        (
            "serial gone from sysfs",
            |n, _, _, t| {
                fs::remove_file(n.roots.sysfs_root.join("block/vdb/serial")).unwrap();
                t.to_owned()
            },
            true,
            "gone",
        ),
        (
            "device detached under the mount",
            |n, d, _, t| {
                assert!(n.fake.remove_device(d));
                t.to_owned()
            },
            true,
            "",
        ),
        (
            "serial now on another device",
            |n, _, _, t| {
                fs::write(n.roots.sysfs_root.join("block/vdb/serial"), "disk-other\n").unwrap();
                n.attach("vdc", VOL, GIB, DeviceContent::Blank);
                t.to_owned()
            },
            true,
            "gone",
        ),
        (
            "not mounted",
            |n, _, _, _| {
                let p = n.target("p2");
                fs::create_dir_all(&p).unwrap();
                p
            },
            true,
            "not mounted",
        ),
        (
            // The kernel remounted the filesystem read-only after errors: the superblock says ro
            // while the mount was made rw. The fake shows that as a rw bind of a ro mount.
            "filesystem read-only under a rw mount",
            |n, d, _, _| {
                let ro_staging = n.root.join("ro-staging");
                let p = n.target("p2");
                fs::create_dir_all(&ro_staging).unwrap();
                fs::create_dir_all(&p).unwrap();
                n.fake
                    .mount(d, &ro_staging, "ext4", &["ro".into()])
                    .unwrap();
                n.fake.bind(&ro_staging, &p, false, &[]).unwrap();
                let info = n.mount_at(&p).unwrap();
                assert!(has(&info.options, "rw") && has(&info.super_options, "ro"));
                p
            },
            true,
            "read-only",
        ),
        (
            "published read-only on purpose",
            |n, _, s, _| {
                let p = n.target("p2");
                fs::create_dir_all(&p).unwrap();
                n.fake.bind(s, &p, true, &[]).unwrap();
                p
            },
            false,
            "",
        ),
        (
            "staged read-only on purpose",
            |n, d, _, _| {
                let p = n.root.join("ro-staging");
                fs::create_dir_all(&p).unwrap();
                n.fake.mount(d, &p, "ext4", &["ro".into()]).unwrap();
                p
            },
            false,
            "",
        ),
    ];
    for (name, arrange, abnormal, message) in cases {
        let node = Fixture::new();
        let (device, staging, target) = node.staged_and_published().await;
        let path = arrange(&node, &device, &staging, &target);
        let stats = node
            .stats(VOL, &path)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let condition = stats.volume_condition.expect(name);
        assert_eq!(condition.abnormal, abnormal, "{name}: {condition:?}");
        assert!(
            condition.message.contains(message),
            "{name}: {:?} should mention {message:?}",
            condition.message
        );
    }
}

#[tokio::test]
async fn stats_of_a_block_volume_whose_device_is_gone_is_abnormal() {
    let node = Fixture::new();
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    let target = node.block_target("p1");
    let cap = block_cap(Mode::SingleNodeWriter);
    node.stage(VOL, &staging, cap.clone()).await.unwrap();
    node.publish(VOL, &staging, &target, cap, false)
        .await
        .unwrap();
    fs::remove_file(node.roots.sysfs_root.join("block/vdb/serial")).unwrap();

    let stats = node.stats(VOL, &target).await.unwrap();
    let condition = stats.volume_condition.unwrap();
    assert!(condition.abnormal, "{condition:?}");
}

// ---------------------------------------------------------------------------------------------
// NodeGetInfo / NodeGetCapabilities
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn node_info_reports_id_limit_and_zone() {
    for (zone, want_topology) in [("ap-guangzhou-3", true), ("", false)] {
        let node = Fixture::with(Duration::from_millis(100), zone);
        let info = node
            .service
            .node_get_info(Request::new(pb::NodeGetInfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.node_id, "ins-node1");
        assert_eq!(info.max_volumes_per_node, 19);
        match info.accessible_topology {
            Some(topology) => {
                assert!(want_topology, "zone {zone:?}: {topology:?}");
                assert_eq!(topology.segments.len(), 1);
                assert_eq!(
                    topology.segments.get(TOPOLOGY_KEY).map(String::as_str),
                    Some(zone)
                );
            }
            None => assert!(!want_topology, "zone {zone:?} has no topology"),
        }
    }
}

#[tokio::test]
async fn node_capabilities_are_the_ones_implemented() {
    use pb::node_service_capability::rpc::Type;
    let node = Fixture::new();
    let caps = node
        .service
        .node_get_capabilities(Request::new(pb::NodeGetCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let mut got: Vec<i32> = caps
        .iter()
        .map(|c| match &c.r#type {
            Some(pb::node_service_capability::Type::Rpc(rpc)) => rpc.r#type,
            other => panic!("not an RPC capability: {other:?}"),
        })
        .collect();
    got.sort_unstable();
    let mut want = vec![
        Type::StageUnstageVolume as i32,
        Type::ExpandVolume as i32,
        Type::GetVolumeStats as i32,
        Type::VolumeCondition as i32,
        Type::SingleNodeMultiWriter as i32,
    ];
    want.sort_unstable();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// In-flight guard
// ---------------------------------------------------------------------------------------------

/// NodeStage holds the volume's guard while it waits for the device, so every other call on the
/// volume meanwhile is ABORTED; another volume is not; the guard is released after.
#[tokio::test]
async fn a_concurrent_call_on_the_same_volume_is_aborted() {
    let node = Fixture::with(Duration::from_secs(10), "");
    let staging = node.staging(VOL);
    let target = node.target("p1");
    let cap = writer("ext4");

    let first = node.stage(VOL, &staging, cap.clone());
    let others = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let results = vec![
            ("stage", node.stage(VOL, &staging, cap.clone()).await),
            ("unstage", node.unstage(VOL, &staging).await),
            (
                "publish",
                node.publish(VOL, &staging, &target, cap.clone(), false)
                    .await,
            ),
            ("unpublish", node.unpublish(VOL, &target).await),
            (
                "expand",
                node.expand(VOL, &target, Some(cap.clone())).await.map(drop),
            ),
        ];
        let other_volume = node.unpublish(OTHER_VOL, &node.target("p2")).await;
        node.attach("vdb", VOL, GIB, DeviceContent::Blank);
        (results, other_volume)
    };
    let (first, (results, other_volume)) = tokio::join!(first, others);

    first.unwrap();
    for (name, result) in results {
        let err = result.expect_err(name);
        assert_eq!(err.code(), Code::Aborted, "{name}: {err:?}");
        assert!(err.message().contains(VOL), "{name}: {err:?}");
    }
    other_volume.unwrap();
    assert_eq!(
        node.fake.calls(FakeOp::Mount),
        1,
        "only the first call mounted"
    );

    // Released: the next call goes through.
    node.publish(VOL, &staging, &target, cap, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_call_releases_the_guard() {
    let node = Fixture::with(Duration::ZERO, "");
    let staging = node.staging(VOL);
    let err = node.stage(VOL, &staging, writer("ext4")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    node.stage(VOL, &staging, writer("ext4")).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The in-flight guard outlives a dropped handler
// ---------------------------------------------------------------------------------------------

const HELD: Duration = Duration::from_secs(10);

/// Drops `call` as tonic does when the caller's deadline passes, once `gate`'s held call has
/// arrived: the blocking work it started keeps running.
async fn drop_when_held<F: std::future::Future>(call: F, gate: &FakeGate) {
    let outcome = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(outcome.is_err(), "the call ended before its deadline");
    assert!(
        gate.wait_arrived(HELD),
        "the held operation was never called"
    );
}

/// Retries `call` while it answers ABORTED (the work it races is still ending).
async fn until_not_aborted<F, Fut, T>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let give_up = tokio::time::Instant::now() + HELD;
    loop {
        match call().await {
            Err(e) if e.code() == Code::Aborted && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_stage_dropped_mid_format_keeps_the_volume_busy_until_the_format_ends() {
    let node = Fixture::new();
    let device = node.attach("vdb", VOL, GIB, DeviceContent::Blank);
    let staging = node.staging(VOL);
    let gate = node.fake.block_next(FakeOp::Format);
    drop_when_held(node.stage(VOL, &staging, writer("ext4")), &gate).await;

    let err = node.stage(VOL, &staging, writer("ext4")).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Aborted,
        "a retry raced the running format: {err:?}"
    );
    let err = node.unstage(VOL, &staging).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Aborted,
        "unstage raced the running format: {err:?}"
    );

    gate.release();
    until_not_aborted(|| node.stage(VOL, &staging, writer("ext4")))
        .await
        .unwrap();
    assert_eq!(node.fake.calls(FakeOp::Format), 1, "formatted twice");
    assert_eq!(
        node.mount_at(&staging).unwrap().source,
        path_str(&device),
        "not staged"
    );
}

/// The reported bug: Unstage succeeded while the dropped Stage's growth still ran, and the disk
/// was mounted after it.
#[tokio::test]
async fn unstage_waits_for_the_growth_of_a_dropped_stage() {
    let node = Fixture::new();
    let device = node.attach("vdb", VOL, GIB, DeviceContent::Filesystem("ext4".into()));
    assert!(node.fake.set_device_size(&device, 2 * GIB));
    let staging = node.staging(VOL);
    let gate = node.fake.block_next(FakeOp::Grow);
    drop_when_held(node.stage(VOL, &staging, writer("ext4")), &gate).await;

    let err = node.unstage(VOL, &staging).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Aborted,
        "unstage raced the running growth: {err:?}"
    );

    gate.release();
    until_not_aborted(|| node.unstage(VOL, &staging))
        .await
        .unwrap();
    assert!(
        node.mount_at(&staging).is_none(),
        "the disk is mounted after Unstage succeeded"
    );
    assert_eq!(node.fake.device(&device).unwrap().fs_size, Some(2 * GIB));
}

#[tokio::test]
async fn an_expand_dropped_mid_growth_keeps_the_volume_busy_until_the_growth_ends() {
    let node = Fixture::new();
    let (device, staging, target) = node.staged_and_published().await;
    assert!(node.fake.set_device_size(&device, 2 * GIB));
    let gate = node.fake.block_next(FakeOp::Grow);
    drop_when_held(node.expand(VOL, &target, None), &gate).await;

    let err = node.expand(VOL, &target, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "a second growth ran: {err:?}");
    gate.release();
    let capacity = until_not_aborted(|| node.expand(VOL, &target, None))
        .await
        .unwrap();
    assert_eq!(capacity, (2 * GIB) as i64);
    assert_eq!(node.fake.calls(FakeOp::Grow), 2);
    assert!(node.mount_at(&staging).is_some());
}

/// resize2fs past its timeout is not killed: the caller hears DEADLINE_EXCEEDED at once, and the
/// volume stays busy (a retry is ABORTED, not a second resize2fs) until the tool exits.
#[tokio::test]
async fn a_growth_tool_left_running_keeps_the_volume_busy_until_it_exits() {
    let node = Fixture::new();
    let (device, staging, target) = node.staged_and_published().await;
    assert!(node.fake.set_device_size(&device, 2 * GIB));
    let tool = node.fake.leave_running_next(FakeOp::Grow);

    let err = node.expand(VOL, &target, None).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("still running"), "{err:?}");

    let err = node.expand(VOL, &target, None).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Aborted,
        "a second growth ran beside the first: {err:?}"
    );
    let err = node.unstage(VOL, &staging).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Aborted,
        "unstage ran beside the growth: {err:?}"
    );
    assert_eq!(node.fake.calls(FakeOp::Grow), 1);

    tool.exited();
    let capacity = node.expand(VOL, &target, None).await.unwrap();
    assert_eq!(capacity, (2 * GIB) as i64);
}
