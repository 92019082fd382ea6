//! Multi-disk (`devicemapper`) volumes: the controller against `FakeCbs` (every disk made once,
//! attached in one batched call, grown, detached and deleted together, old-style IDs of disks made
//! elsewhere included), and the node against the `FakeMounter` and `FakeAssembler` (LVM and RAID
//! assembled the old driver's way, reactivated never recreated, deactivated never destroyed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_cbs::controller::{ControllerConfig, ControllerService};
use csi_cbs::device::DeviceRoots;
use csi_cbs::multidisk::LvmNames;
use csi_cbs::multidisk::assemble::Member;
use csi_cbs::multidisk::fake::FakeAssembler;
use csi_cbs::node::{NodeConfig, NodeService};
use csi_common::csi::pb;
use csi_common::csi::pb::controller_server::Controller;
use csi_common::csi::pb::node_server::Node as _;
use csi_common::mount::fake::FakeMounter;
use csi_common::mount::{DeviceContent, Mounter};
use pb::volume_capability::access_mode::Mode;
use tcloud::cbs::disk_state;
use tcloud::fake::{CbsOp, FakeCbs};
use tonic::{Code, Request};

const GIB: i64 = 1 << 30;
const ZONE: &str = "ap-guangzhou-3";
const NODE: &str = "ins-node1";

fn capability() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            },
        )),
    }
}

fn controller(fake: &FakeCbs) -> ControllerService<FakeCbs> {
    ControllerService::new(
        Arc::new(fake.clone()),
        ControllerConfig {
            driver_name: "com.tencent.cloud.csi.cbs".into(),
            attach_timeout: Duration::from_secs(120),
            default_zone: Some(ZONE.into()),
            node_zones: None,
            unknown_parameters: Default::default(),
        },
    )
}

async fn publish(c: &ControllerService<FakeCbs>, volume_id: &str) -> Result<(), tonic::Status> {
    c.controller_publish_volume(Request::new(pb::ControllerPublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: NODE.into(),
        volume_capability: Some(capability()),
        ..Default::default()
    }))
    .await
    .map(drop)
}

async fn unpublish(c: &ControllerService<FakeCbs>, volume_id: &str) {
    c.controller_unpublish_volume(Request::new(pb::ControllerUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: NODE.into(),
        ..Default::default()
    }))
    .await
    .unwrap();
}

async fn delete(c: &ControllerService<FakeCbs>, volume_id: &str) -> Result<(), tonic::Status> {
    c.delete_volume(Request::new(pb::DeleteVolumeRequest {
        volume_id: volume_id.into(),
        ..Default::default()
    }))
    .await
    .map(drop)
}

#[tokio::test(start_paused = true)]
async fn a_multi_disk_volume_lives_and_dies_whole() {
    let fake = FakeCbs::new()
        .with_instance(NODE, ZONE)
        .with_transition_time(Duration::from_secs(2));
    let c = controller(&fake);
    let volume = c
        .create_volume(Request::new(pb::CreateVolumeRequest {
            name: "pvc-multi".into(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 30 * GIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![capability()],
            parameters: [
                ("devicemapper".to_owned(), "LVM".to_owned()),
                ("devices".to_owned(), "3".to_owned()),
            ]
            .into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let ids: Vec<String> = volume.volume_id.split(',').map(str::to_owned).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(volume.capacity_bytes, 30 * GIB);

    // Attached whole, in one AttachDisks call; a repeat sends none.
    publish(&c, &volume.volume_id).await.unwrap();
    assert_eq!(fake.calls(CbsOp::AttachDisks), 1);
    for id in &ids {
        let disk = fake.disk(id).unwrap();
        assert_eq!(
            (disk.disk_state, disk.instance_id.as_deref()),
            (disk_state::ATTACHED, Some(NODE))
        );
    }
    publish(&c, &volume.volume_id).await.unwrap();
    assert_eq!(fake.calls(CbsOp::AttachDisks), 1);

    // Attached volumes are not deleted.
    let err = delete(&c, &volume.volume_id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    // Grown: each disk to its share of 60 GiB; the node grows the assembly.
    let grown = c
        .controller_expand_volume(Request::new(pb::ControllerExpandVolumeRequest {
            volume_id: volume.volume_id.clone(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: 60 * GIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(capability()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, 60 * GIB);
    assert!(grown.node_expansion_required);
    for id in &ids {
        assert_eq!(fake.disk(id).unwrap().disk_size, 20);
    }

    // Detached whole in one call, then deleted with no disk left; repeats succeed.
    unpublish(&c, &volume.volume_id).await;
    assert_eq!(fake.calls(CbsOp::DetachDisks), 1);
    for id in &ids {
        assert_eq!(fake.disk(id).unwrap().disk_state, disk_state::UNATTACHED);
    }
    unpublish(&c, &volume.volume_id).await;
    delete(&c, &volume.volume_id).await.unwrap();
    assert!(fake.disks().is_empty());
    delete(&c, &volume.volume_id).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn old_style_ids_work_and_bad_ones_are_refused() {
    let fake = FakeCbs::new().with_instance(NODE, ZONE);
    let c = controller(&fake);
    // Two disks made the single-disk way stand for the old driver's pair.
    let mut ids = Vec::new();
    for name in ["old-a", "old-b"] {
        let v = c
            .create_volume(Request::new(pb::CreateVolumeRequest {
                name: name.into(),
                volume_capabilities: vec![capability()],
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        ids.push(v.volume_id);
    }
    let volume_id = ids.join(",");
    publish(&c, &volume_id).await.unwrap();
    // One disk gone: publishing names it; deleting the rest still succeeds.
    unpublish(&c, &volume_id).await;
    delete(&c, &ids[0]).await.unwrap();
    let err = publish(&c, &volume_id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&ids[0]), "{err}");
    delete(&c, &volume_id).await.unwrap();
    assert!(fake.disks().is_empty());
    // Not a volume ID: nothing to delete, NOT_FOUND to attach.
    for bad in ["disk-a,disk-a", "disk-a,,disk-b", "disk-a,vol-b"] {
        delete(&c, bad).await.unwrap();
        assert_eq!(
            publish(&c, bad).await.unwrap_err().code(),
            Code::NotFound,
            "{bad}"
        );
    }
    assert_eq!(fake.calls(CbsOp::TerminateDisks), 2);
}

/// A node with a fake mounter and fake LVM/mdadm, and disks attached under a temporary tree.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    roots: DeviceRoots,
    mounter: FakeMounter,
    assembler: FakeAssembler,
    service: NodeService<FakeMounter, FakeAssembler>,
}

impl Node {
    fn new() -> Node {
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
        let mounter = FakeMounter::new();
        let assembler = FakeAssembler::new(mounter.clone(), roots.dev_root.clone());
        let service = NodeService::new(
            Arc::new(mounter.clone()),
            NodeConfig {
                node_id: NODE.into(),
                zone: ZONE.into(),
                max_volumes_per_node: 19,
                devices: roots.clone(),
                device_wait: Duration::from_millis(50),
                kubelet_dir: root.join("kubelet"),
            },
        )
        .with_assembler(assembler.clone());
        Node {
            _dir: dir,
            root,
            roots,
            mounter,
            assembler,
            service,
        }
    }

    fn attach(&self, name: &str, serial: &str) -> PathBuf {
        let sys = self.roots.sysfs_root.join("block").join(name);
        fs::create_dir_all(&sys).unwrap();
        fs::write(sys.join("serial"), format!("{serial}\n")).unwrap();
        let device = self.roots.dev_root.join(name);
        fs::write(&device, "").unwrap();
        self.mounter
            .add_device(&device, 10 * GIB as u64, DeviceContent::Blank);
        device
    }

    /// The old kubelet staging path, whose `pvc-` component named the volume group.
    fn staging(&self, pv: &str) -> PathBuf {
        self.root
            .join("kubelet/plugins/kubernetes.io/csi/pv")
            .join(pv)
            .join("globalmount")
    }

    async fn stage(
        &self,
        volume_id: &str,
        pv: &str,
        context: &[(&str, &str)],
    ) -> Result<(), tonic::Status> {
        self.service
            .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
                volume_id: volume_id.into(),
                staging_target_path: self.staging(pv).to_string_lossy().into(),
                volume_capability: Some(capability()),
                volume_context: context
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            }))
            .await
            .map(drop)
    }

    async fn unstage(&self, volume_id: &str, pv: &str) {
        self.service
            .node_unstage_volume(Request::new(pb::NodeUnstageVolumeRequest {
                volume_id: volume_id.into(),
                staging_target_path: self.staging(pv).to_string_lossy().into(),
            }))
            .await
            .unwrap();
    }

    fn programs(&self) -> Vec<String> {
        self.assembler
            .commands()
            .iter()
            .map(|c| c[0].clone())
            .collect()
    }
}

fn strs(v: &[Vec<String>]) -> Vec<String> {
    v.iter().map(|c| c.join(" ")).collect()
}

#[tokio::test]
async fn lvm_is_created_once_from_blank_disks_then_only_reactivated() {
    let node = Node::new();
    let a = node.attach("vdb", "disk-aaa");
    let b = node.attach("vdc", "disk-bbb");
    let id = "disk-aaa,disk-bbb";
    let pv = "pvc-1234-abcd";
    node.stage(id, pv, &[("devicemapper", "LVM"), ("devices", "2")])
        .await
        .unwrap();
    let names = LvmNames::for_volume(pv);
    assert_eq!(names.vg, "pvc_1234_abcd_vg");
    let lv = names.device(&node.roots.dev_root);
    assert_eq!(
        strs(&node.assembler.commands()),
        [
            format!("pvcreate {} -v", a.display()),
            format!("pvcreate {} -v", b.display()),
            format!(
                "vgcreate pvc_1234_abcd_vg {} {} -v",
                a.display(),
                b.display()
            ),
            "lvcreate -l 100%FREE -n pvc_1234_abcd_lv -i 2 pvc_1234_abcd_vg".to_owned(),
            "vgchange -ay pvc_1234_abcd_vg".to_owned(),
        ]
    );
    // The logical volume was formatted (it was blank) and mounted at the staging path.
    let mounted = node.mounter.mount_at(&node.staging(pv)).unwrap().unwrap();
    assert_eq!(Path::new(&mounted.source), lv);
    assert_eq!(
        node.mounter.device(&lv).unwrap().content,
        DeviceContent::Filesystem("ext4".into())
    );

    // A repeat changes nothing.
    node.assembler.clear_commands();
    node.stage(id, pv, &[("devicemapper", "LVM")])
        .await
        .unwrap();
    assert!(
        !node
            .programs()
            .iter()
            .any(|p| p == "pvcreate" || p == "vgcreate" || p == "lvcreate")
    );

    // Unstage unmounts and deactivates, never removes.
    node.assembler.clear_commands();
    node.unstage(id, pv).await;
    assert!(node.mounter.mount_at(&node.staging(pv)).unwrap().is_none());
    assert_eq!(
        strs(&node.assembler.commands()),
        ["vgchange -an pvc_1234_abcd_vg"]
    );
    assert_eq!(node.assembler.group_active(&names.vg), Some(false));

    // Staged again (another pod, a reboot): reactivated, the file system kept.
    node.assembler.clear_commands();
    node.stage(id, pv, &[]).await.unwrap();
    assert_eq!(
        strs(&node.assembler.commands()),
        [
            "lvs --noheadings -o lv_name pvc_1234_abcd_vg",
            "vgchange -ay pvc_1234_abcd_vg"
        ]
    );
    assert_eq!(
        node.mounter.calls(csi_common::mount::fake::FakeOp::Format),
        1
    );
}

#[tokio::test]
async fn an_old_volume_group_is_found_from_its_disks_without_a_name() {
    let node = Node::new();
    let a = node.attach("vdb", "disk-aaa");
    let b = node.attach("vdc", "disk-bbb");
    let names = LvmNames::for_volume("pvc-old");
    node.assembler.add_group(&names, &[a, b]);
    // A staging path with no pvc- component (newer kubelets hash it) and no name in the context.
    node.service
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: "disk-aaa,disk-bbb".into(),
            staging_target_path: node
                .root
                .join("kubelet/plugins/cbs/0a1b2c/globalmount")
                .to_string_lossy()
                .into(),
            volume_capability: Some(capability()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(node.assembler.group_active(&names.vg), Some(true));
    assert!(
        !node
            .programs()
            .iter()
            .any(|p| p == "vgcreate" || p == "pvcreate")
    );
}

#[tokio::test]
async fn raid_is_created_from_blank_disks_and_stopped_not_wiped() {
    let node = Node::new();
    let a = node.attach("vdb", "disk-aaa");
    let b = node.attach("vdc", "disk-bbb");
    let id = "disk-aaa,disk-bbb";
    let context = [
        ("devicemapper", "RAID"),
        ("devices", "2"),
        ("level", "1"),
        ("volumeName", "pvc-r"),
    ];
    node.stage(id, "pvc-ignored", &context).await.unwrap();
    let md = node.roots.dev_root.join("md/pvc-r");
    assert_eq!(
        strs(&node.assembler.commands()),
        [format!(
            "mdadm --create {} --run --level=1 --raid-devices=2 {} {}",
            md.display(),
            a.display(),
            b.display()
        )]
    );
    node.assembler.clear_commands();
    node.unstage(id, "pvc-ignored").await;
    assert_eq!(
        strs(&node.assembler.commands()),
        [format!("mdadm -S {}", md.display())]
    );
    assert_eq!(node.assembler.array_running(&md), Some(false));
    // Staged again: assembled from its members, never created anew.
    node.assembler.clear_commands();
    node.stage(id, "pvc-ignored", &context).await.unwrap();
    assert_eq!(node.programs(), ["mdadm"]);
    assert_eq!(node.assembler.commands()[0][1], "--assemble");
    assert_eq!(
        node.mounter.calls(csi_common::mount::fake::FakeOp::Format),
        1
    );
}

#[tokio::test]
async fn what_cannot_be_assembled_is_refused_untouched() {
    let node = Node::new();
    let a = node.attach("vdb", "disk-aaa");
    node.attach("vdc", "disk-bbb");
    let id = "disk-aaa,disk-bbb";
    // The node lacks the tools or kernel support.
    node.assembler
        .set_missing(Some("vgchange not found (install lvm2)"));
    let err = node.stage(id, "pvc-1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("vgchange not found"), "{err}");
    node.assembler.set_missing(None);
    // A disk holding a file system is never made a PV.
    node.assembler.set_member(&a, Member::Other("xfs".into()));
    let err = node.stage(id, "pvc-1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("holds xfs"), "{err}");
    node.assembler.set_member(&a, Member::Blank);
    // No name to create a volume group with.
    let err = node
        .service
        .node_stage_volume(Request::new(pb::NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: node
                .root
                .join("kubelet/plugins/cbs/0a1b/globalmount")
                .to_string_lossy()
                .into(),
            volume_capability: Some(capability()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("volumeName"), "{err}");
    // The context contradicts the ID.
    let err = node
        .stage(id, "pvc-1", &[("devices", "3")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A disk not attached here.
    let err = node
        .stage("disk-aaa,disk-ccc", "pvc-1", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        node.assembler.commands().is_empty(),
        "{:?}",
        node.assembler.commands()
    );
}

#[tokio::test]
async fn expansion_resizes_every_pv_then_the_lv_then_the_file_system() {
    let node = Node::new();
    let a = node.attach("vdb", "disk-aaa");
    let b = node.attach("vdc", "disk-bbb");
    let id = "disk-aaa,disk-bbb";
    node.stage(id, "pvc-g", &[]).await.unwrap();
    for d in [&a, &b] {
        node.mounter.set_device_size(d, 20 * GIB as u64);
    }
    node.assembler.clear_commands();
    let answer = node
        .service
        .node_expand_volume(Request::new(pb::NodeExpandVolumeRequest {
            volume_id: id.into(),
            volume_path: node.staging("pvc-g").to_string_lossy().into(),
            volume_capability: Some(capability()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        strs(&node.assembler.commands()),
        [
            format!("pvresize {}", a.display()),
            format!("pvresize {}", b.display()),
            "lvextend -l +100%FREE pvc_g_vg/pvc_g_lv".to_owned(),
        ]
    );
    assert_eq!(answer.capacity_bytes, 40 * GIB);
    let lv = LvmNames::for_volume("pvc-g").device(&node.roots.dev_root);
    assert_eq!(
        node.mounter.device(&lv).unwrap().fs_size,
        Some(40 * GIB as u64)
    );
}

#[tokio::test]
async fn a_staged_multi_disk_volume_is_healthy_until_a_disk_goes() {
    let node = Node::new();
    node.attach("vdb", "disk-aaa");
    node.attach("vdc", "disk-bbb");
    let id = "disk-aaa,disk-bbb";
    node.stage(id, "pvc-s", &[]).await.unwrap();
    let stats = || async {
        node.service
            .node_get_volume_stats(Request::new(pb::NodeGetVolumeStatsRequest {
                volume_id: id.into(),
                volume_path: node.staging("pvc-s").to_string_lossy().into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .volume_condition
            .unwrap()
    };
    let healthy = stats().await;
    assert!(!healthy.abnormal, "{healthy:?}");
    fs::remove_dir_all(node.roots.sysfs_root.join("block/vdc")).unwrap();
    let gone = stats().await;
    assert!(gone.abnormal && gone.message.contains(id), "{gone:?}");
}
