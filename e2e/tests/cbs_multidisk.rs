//! Multi-disk CBS volumes (`devicemapper` classes, volume IDs of disk IDs joined by commas) end to
//! end on the controller side: the real `csi-cbs` binary against `tcloud-sim`. A volume made by a
//! `devicemapper: LVM` class, and an old-style ID of two disks made one by one, are each attached
//! whole, expanded, detached and deleted with no disk, mount or loop device left.
//!
//! Assembling the disks on the node (LVM, md) needs device-mapper and md in the kernel, which the
//! test machines lack: the node side is covered by `csi-cbs/tests/multidisk.rs` against fakes.
//!
//! Needs root and `losetup` (the simulator attaches disks as loop devices), and the workspace
//! binaries (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use csi_proto::v1 as pb;
use e2e::cleanup::{loops_under, mounts_under};
use e2e::env::NODE_ID;
use e2e::kubelet::{GIB, mount_capability};
use e2e::{Driver, Env, EnvOptions};
use tonic::Code;

async fn start() -> Env {
    Env::start(Driver::Cbs, EnvOptions::default())
        .await
        .expect("start tcloud-sim and csi-cbs")
}

async fn create(env: &Env, name: &str, gib: i64, parameters: &[(&str, &str)]) -> pb::Volume {
    let mut client = env.client().await.unwrap();
    client
        .controller
        .create_volume(pb::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: gib * GIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_capability("ext4")],
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreateVolume {name}: {e}"))
        .into_inner()
        .volume
        .unwrap()
}

/// The disk's size in GiB, or `None` when it does not exist.
async fn disk_gib(env: &Env, disk_id: &str) -> Option<i64> {
    let mut client = env.client().await.unwrap();
    match client
        .controller
        .controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: disk_id.into(),
        })
        .await
    {
        Ok(answer) => Some(answer.into_inner().volume.unwrap().capacity_bytes / GIB),
        Err(e) if e.code() == Code::NotFound => None,
        Err(e) => panic!("ControllerGetVolume {disk_id}: {e}"),
    }
}

/// Attaches, expands to `grow_to` GiB, detaches and deletes the volume, each call twice.
async fn lifecycle(env: &Env, volume_id: &str, grow_to: i64) {
    let disks: Vec<&str> = volume_id.split(',').collect();
    let mut client = env.client().await.unwrap();
    for _ in 0..2 {
        client
            .controller
            .controller_publish_volume(pb::ControllerPublishVolumeRequest {
                volume_id: volume_id.into(),
                node_id: NODE_ID.into(),
                volume_capability: Some(mount_capability("ext4")),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("ControllerPublishVolume {volume_id}: {e}"));
    }
    for disk in &disks {
        let status = client
            .controller
            .controller_get_volume(pb::ControllerGetVolumeRequest {
                volume_id: (*disk).into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.published_node_ids, [NODE_ID], "{disk}");
    }
    // An attached volume is not deleted.
    let err = client
        .controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: volume_id.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    for _ in 0..2 {
        let grown = client
            .controller
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: volume_id.into(),
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: grow_to * GIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(mount_capability("ext4")),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("ControllerExpandVolume {volume_id}: {e}"))
            .into_inner();
        assert!(grown.node_expansion_required);
        assert_eq!(grown.capacity_bytes, grow_to * GIB);
    }
    let share = grow_to / disks.len() as i64;
    for disk in &disks {
        assert_eq!(disk_gib(env, disk).await, Some(share), "{disk}");
    }

    for _ in 0..2 {
        client
            .controller
            .controller_unpublish_volume(pb::ControllerUnpublishVolumeRequest {
                volume_id: volume_id.into(),
                node_id: NODE_ID.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("ControllerUnpublishVolume {volume_id}: {e}"));
    }
    for _ in 0..2 {
        client
            .controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: volume_id.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("DeleteVolume {volume_id}: {e}"));
    }
    for disk in &disks {
        assert_eq!(disk_gib(env, disk).await, None, "{disk} was left behind");
    }
}

#[tokio::test]
async fn a_devicemapper_volume_is_attached_grown_detached_and_deleted_whole() {
    let mut env = start().await;
    let volume = create(
        &env,
        "pvc-e2e-lvm",
        20,
        &[("devicemapper", "LVM"), ("devices", "2")],
    )
    .await;
    let disks: Vec<&str> = volume.volume_id.split(',').collect();
    assert_eq!(disks.len(), 2, "{}", volume.volume_id);
    assert_eq!(volume.volume_context["devicemapper"], "LVM");
    assert_eq!(volume.volume_context["devices"], "2");
    // CreateVolume again answers the same disks.
    let again = create(
        &env,
        "pvc-e2e-lvm",
        20,
        &[("devicemapper", "LVM"), ("devices", "2")],
    )
    .await;
    assert_eq!(again.volume_id, volume.volume_id);
    lifecycle(&env, &volume.volume_id, 40).await;

    // An old-style ID: two disks made one by one, joined by a comma.
    let a = create(&env, "pvc-e2e-old-a", 10, &[]).await;
    let b = create(&env, "pvc-e2e-old-b", 10, &[]).await;
    lifecycle(&env, &format!("{},{}", a.volume_id, b.volume_id), 40).await;

    assert!(mounts_under(&env.workdir).is_empty());
    let loops = loops_under(&env.workdir);
    assert!(loops.is_empty(), "loop devices left behind: {loops:?}");
    env.stop().await.expect("stop the driver and the simulator");
}
