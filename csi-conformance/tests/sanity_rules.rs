//! The rules csi-sanity v5.3.1 taught us, kept by our own suite (CI cannot run csi-sanity): each
//! test is a spec that once failed, driven over the real socket of `e2e serve` as csi-sanity
//! drives it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use csi_conformance::{CsiClient, Driver, Served};
use csi_proto::v1 as pb;
use pb::volume_capability::access_mode::Mode;
use tonic::Code;

const GIB: i64 = 1 << 30;

fn mount(mode: Mode) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    }
}

fn create(name: &str, gib: i64, parameters: &[(&str, &str)]) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount(Mode::SingleNodeWriter)],
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

async fn volume_id(c: &mut CsiClient, request: pb::CreateVolumeRequest) -> String {
    c.controller
        .create_volume(request)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

async fn delete(c: &mut CsiClient, volume_id: &str) {
    c.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: volume_id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// StorageClass parameters.
type Parameters = &'static [(&'static str, &'static str)];

/// CFS StorageClass parameters, in each of its two modes.
const CFS_WHOLE: Parameters = &[("vpcid", "vpc-sim00001"), ("subnetid", "subnet-sim00001")];
const CFS_SHARED: Parameters = &[
    ("vpcid", "vpc-sim00001"),
    ("subnetid", "subnet-sim00001"),
    ("subdir-share", "true"),
];

/// "NodeGetVolumeStats should fail when volume is not found / does not exist on the specified
/// path", "NodeExpandVolume should fail when volume is not found": a relative path holds no
/// volume, whatever the volume ID, and is NOT_FOUND; an empty one is INVALID_ARGUMENT.
#[tokio::test]
async fn a_relative_volume_path_is_not_found_on_every_driver() {
    for driver in Driver::EVERY {
        let served = Served::start(driver, &[]).await.unwrap();
        let mut c = served.client().await.unwrap();
        for volume_id in ["some-volume-id", "disk-abc123"] {
            let err = c
                .node
                .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
                    volume_id: volume_id.into(),
                    volume_path: "some/path".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{driver:?}: {}", err.message());
        }
        let err = c
            .node
            .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
                volume_id: "some-volume-id".into(),
                volume_path: String::new(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{driver:?}");
        assert!(err.message().contains("volume_path"), "{}", err.message());
        if driver == Driver::Cbs {
            let err = c
                .node
                .node_expand_volume(pb::NodeExpandVolumeRequest {
                    volume_id: "some-volume-id".into(),
                    volume_path: "some/path".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{}", err.message());
        }
        served.stop().await.unwrap();
    }
}

/// "should fail when requesting to create a volume with already existing name and different
/// capacity": every driver that creates volumes remembers the size each was asked with.
#[tokio::test]
async fn an_existing_name_with_another_size_is_already_exists_on_every_driver() {
    let cases: [(Driver, Parameters, i64); 6] = [
        (Driver::Cbs, &[], 10),
        (Driver::Cfs, CFS_WHOLE, 1),
        (Driver::Cfs, CFS_SHARED, 1),
        // Plus the host and fsid of the Turbo file system `e2e serve` made.
        (Driver::CfsTurbo, &[], 1),
        (Driver::Cos, &[], 1),
        (Driver::Goosefs, &[], 1),
    ];
    for (driver, parameters, gib) in cases {
        let served = Served::start(driver, &[]).await.unwrap();
        let turbo = served.turbo.clone();
        let request = |gib: i64| {
            let mut request = create("pvc-sized", gib, parameters);
            if let Some(turbo) = &turbo {
                request.parameters.extend(turbo.parameters(&[]));
            }
            request
        };
        let mut c = served.client().await.unwrap();
        let id = volume_id(&mut c, request(gib)).await;
        assert_eq!(
            volume_id(&mut c, request(gib)).await,
            id,
            "{driver:?} {parameters:?}: the same request is the same volume"
        );
        let err = c
            .controller
            .create_volume(request(gib * 5))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::AlreadyExists,
            "{driver:?} {parameters:?}: {}",
            err.message()
        );
        delete(&mut c, &id).await;
        served.stop().await.unwrap();
    }
}

/// "should not fail when creating volume with maximum-length name" and "...snapshot with
/// maximum-length name": CSI names are idempotency keys of up to 128 bytes, longer than CBS's and
/// CFS's names.
#[tokio::test]
async fn names_of_128_bytes_make_one_resource_each() {
    let long = |end: &str| format!("{}{end}", "m".repeat(127));
    // CBS volumes and snapshots.
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let a = volume_id(&mut c, create(&long("a"), 10, &[])).await;
    assert_eq!(volume_id(&mut c, create(&long("a"), 10, &[])).await, a);
    let b = volume_id(&mut c, create(&long("b"), 10, &[])).await;
    assert_ne!(a, b, "names differing in the last byte are two volumes");
    let snapshot = |name: String| pb::CreateSnapshotRequest {
        name,
        source_volume_id: a.clone(),
        ..Default::default()
    };
    let s1 = c
        .controller
        .create_snapshot(snapshot(long("s")))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
        .snapshot_id;
    let s2 = c
        .controller
        .create_snapshot(snapshot(long("s")))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
        .snapshot_id;
    assert_eq!(s1, s2);
    c.controller
        .delete_snapshot(pb::DeleteSnapshotRequest {
            snapshot_id: s1,
            ..Default::default()
        })
        .await
        .unwrap();
    delete(&mut c, &a).await;
    delete(&mut c, &b).await;
    served.stop().await.unwrap();
    // A whole CFS file system per volume.
    let served = Served::start(Driver::Cfs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let fs = volume_id(&mut c, create(&long("f"), 1, CFS_WHOLE)).await;
    assert_eq!(
        volume_id(&mut c, create(&long("f"), 1, CFS_WHOLE)).await,
        fs
    );
    delete(&mut c, &fs).await;
    served.stop().await.unwrap();
}

/// "ModifyVolume should modify a volume created with/without a volume attribute class" and
/// "should create volume with a volume attribute class": a create after a delete of the same
/// name makes a new disk (the cloud keeps a ClientToken's answer after the disk is gone), and
/// CreateVolume applies mutable_parameters.
#[tokio::test]
async fn cbs_create_after_delete_is_a_new_disk_and_mutable_parameters_apply() {
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let first = volume_id(&mut c, create("pvc-vac", 20, &[])).await;
    delete(&mut c, &first).await;
    // The StorageClass says CLOUD_BASIC; the VolumeAttributesClass says CLOUD_PREMIUM and wins.
    let mut with_class = create("pvc-vac", 20, &[("diskType", "CLOUD_BASIC")]);
    with_class.mutable_parameters = HashMap::from([("diskType".into(), "CLOUD_PREMIUM".into())]);
    let second = volume_id(&mut c, with_class).await;
    assert_ne!(first, second, "a deleted disk must not come back");
    let volume = c
        .controller
        .controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: second.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(volume.volume_context["diskType"], "CLOUD_PREMIUM");
    c.controller
        .controller_modify_volume(pb::ControllerModifyVolumeRequest {
            volume_id: second.clone(),
            mutable_parameters: HashMap::from([("diskType".into(), "CLOUD_SSD".into())]),
            ..Default::default()
        })
        .await
        .unwrap();
    delete(&mut c, &second).await;
    served.stop().await.unwrap();
}

/// The ListSnapshots and DeleteSnapshot specs' cleanup: a snapshot still CREATING is deleted,
/// not refused, and is gone afterwards.
#[tokio::test]
async fn cbs_a_snapshot_still_being_made_is_deleted() {
    let served = Served::start_with(Driver::Cbs, &["--cbs-snapshot-ms", "1500"], &[])
        .await
        .unwrap();
    let mut c = served.client().await.unwrap();
    let volume = volume_id(&mut c, create("pvc-snapped", 10, &[])).await;
    let snapshot = c
        .controller
        .create_snapshot(pb::CreateSnapshotRequest {
            name: "snap-young".into(),
            source_volume_id: volume.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert!(!snapshot.ready_to_use, "the simulator is still copying");
    c.controller
        .delete_snapshot(pb::DeleteSnapshotRequest {
            snapshot_id: snapshot.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = c
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            snapshot_id: snapshot.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty(), "{listed:?}");
    delete(&mut c, &volume).await;
    served.stop().await.unwrap();
}

/// "ListVolumes: check the presence of new volumes and absence of deleted ones" in CFS's shared
/// mode, where the default policy retains a deleted volume's directory.
#[tokio::test]
async fn cfs_a_deleted_retained_volume_leaves_the_list() {
    let served = Served::start(Driver::Cfs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let listed = |c: &mut CsiClient| {
        let mut c = c.clone();
        async move {
            c.controller
                .list_volumes(pb::ListVolumesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .entries
                .into_iter()
                .map(|e| e.volume.unwrap().volume_id)
                .collect::<Vec<_>>()
        }
    };
    let keep = volume_id(&mut c, create("pvc-keep", 1, CFS_SHARED)).await;
    let gone = volume_id(&mut c, create("pvc-gone", 1, CFS_SHARED)).await;
    let before = listed(&mut c).await;
    assert!(
        before.contains(&keep) && before.contains(&gone),
        "{before:?}"
    );
    delete(&mut c, &gone).await;
    let after = listed(&mut c).await;
    assert!(after.contains(&keep), "{after:?}");
    assert!(!after.contains(&gone), "{after:?}");
    assert_eq!(after.len() + 1, before.len());
    served.stop().await.unwrap();
}
