//! The CBS controller in process, against the in-memory `FakeCbs`: the rules csi-sanity taught
//! us (long names, create after delete, mutable parameters, deleting a snapshot still being made,
//! paging), and what happens when the cloud fails a call or loses its answer. No socket, no
//! simulator: the whole file runs in about a second, with tokio's clock paused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use csi_cbs::controller::{ControllerConfig, ControllerService};
use csi_common::csi::pb;
use csi_common::csi::pb::controller_server::Controller;
use pb::volume_capability::access_mode::Mode;
use tcloud::fake::{CbsOp, FakeCbs};
use tonic::{Code, Request};

const GIB: i64 = 1 << 30;
const ZONE: &str = "ap-guangzhou-3";

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

fn create(name: &str, gib: i64) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
        }],
        ..Default::default()
    }
}

async fn new_volume(c: &ControllerService<FakeCbs>, request: pb::CreateVolumeRequest) -> String {
    created(c, request).await.volume_id
}

async fn created(c: &ControllerService<FakeCbs>, request: pb::CreateVolumeRequest) -> pb::Volume {
    c.create_volume(Request::new(request))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

async fn delete(c: &ControllerService<FakeCbs>, volume_id: &str) {
    c.delete_volume(Request::new(pb::DeleteVolumeRequest {
        volume_id: volume_id.into(),
        ..Default::default()
    }))
    .await
    .unwrap();
}

fn snapshot_request(name: &str, volume_id: &str) -> pb::CreateSnapshotRequest {
    pb::CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: volume_id.into(),
        ..Default::default()
    }
}

/// A request carrying the caller's deadline as gRPC does.
fn with_timeout<T>(message: T, timeout: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("grpc-timeout", timeout.parse().unwrap());
    request
}

#[tokio::test(start_paused = true)]
async fn names_of_up_to_128_bytes_make_one_disk_each_and_stay_idempotent() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let long = "n".repeat(127);
    let (a, b) = (format!("{long}a"), format!("{long}b"));
    let id_a = new_volume(&c, create(&a, 10)).await;
    assert_eq!(new_volume(&c, create(&a, 10)).await, id_a, "a repeat");
    let id_b = new_volume(&c, create(&b, 10)).await;
    assert_ne!(
        id_a, id_b,
        "names that differ only at the end are two volumes"
    );
    let disk = fake.disk(&id_a).unwrap();
    assert_eq!(disk.disk_name.len(), 60, "{}", disk.disk_name);
    assert!(
        disk.tags
            .iter()
            .any(|t| t.key == "k8s-csi/volume-name" && t.value == a),
        "{:?}",
        disk.tags
    );
    assert_eq!(fake.disks().len(), 2);
    // A name that fits is the disk's name as it is, with no tag: old disks are still found.
    let short = new_volume(&c, create("pvc-0b4f9c3e", 10)).await;
    let disk = fake.disk(&short).unwrap();
    assert_eq!(disk.disk_name, "pvc-0b4f9c3e");
    assert!(disk.tags.iter().all(|t| t.key != "k8s-csi/volume-name"));
    // Snapshots too.
    let snap_name = format!("{long}s");
    let snap = c
        .create_snapshot(Request::new(snapshot_request(&snap_name, &id_a)))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
        .snapshot_id;
    let again = c
        .create_snapshot(Request::new(snapshot_request(&snap_name, &id_a)))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
        .snapshot_id;
    assert_eq!(snap, again);
    assert_eq!(fake.snapshots().len(), 1);
    assert_eq!(fake.snapshot(&snap).unwrap().snapshot_name.len(), 60);
}

#[tokio::test(start_paused = true)]
async fn a_create_after_a_delete_of_the_same_name_makes_a_new_disk() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let first = new_volume(&c, create("pvc-again", 20)).await;
    delete(&c, &first).await;
    let second = new_volume(&c, create("pvc-again", 20)).await;
    assert_ne!(first, second, "the token's stale answer was not handed out");
    assert!(fake.disk(&second).is_some(), "the answer is a live disk");
    // The new disk is usable at once.
    c.controller_modify_volume(Request::new(pb::ControllerModifyVolumeRequest {
        volume_id: second.clone(),
        mutable_parameters: HashMap::from([("diskType".into(), "CLOUD_SSD".into())]),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(fake.disk(&second).unwrap().disk_type, "CLOUD_SSD");
    // A controller that restarted (and so never saw the delete) gets there too.
    delete(&c, &second).await;
    let restarted = controller(&fake);
    let third = new_volume(&restarted, create("pvc-again", 20)).await;
    assert!(third != first && third != second);
    assert!(fake.disk(&third).is_some());
    let live: Vec<_> = fake
        .disks()
        .into_iter()
        .filter(|d| d.disk_name == "pvc-again")
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
}

#[tokio::test(start_paused = true)]
async fn a_provisioners_name_is_created_in_two_calls_and_a_reused_token_is_still_checked() {
    use tcloud::cbs::CbsApi;
    const PVC: &str = "pvc-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01";
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let made = created(&c, create(PVC, 20)).await;
    assert_eq!(
        (
            fake.calls(CbsOp::DescribeDisks),
            fake.calls(CbsOp::CreateDisks)
        ),
        (1, 1),
        "a look by name and the create, nothing after: a PVC's UID is never reused"
    );
    // The answer built from the request is the one describing the disk gives.
    let found = created(&c, create(PVC, 20)).await;
    assert_eq!(made, found);
    assert_eq!(fake.calls(CbsOp::CreateDisks), 1);
    // A name that can repeat is looked at after its create too.
    new_volume(&c, create("pvc-again", 20)).await;
    assert_eq!(fake.calls(CbsOp::DescribeDisks), 2 + 2);
    // The token's second use in this process is checked: the disk deleted behind the
    // controller's back is not handed out again; a new one is made.
    fake.terminate_disks(std::slice::from_ref(&made.volume_id), None)
        .await
        .unwrap();
    let again = new_volume(&c, create(PVC, 20)).await;
    assert_ne!(
        again, made.volume_id,
        "the token's stale answer was handed out"
    );
    assert!(fake.disk(&again).is_some());
}

#[tokio::test(start_paused = true)]
async fn create_applies_mutable_parameters_and_refuses_unknown_ones() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let mut request = create("pvc-vac", 20);
    request.mutable_parameters = HashMap::from([("diskType".into(), "CLOUD_SSD".into())]);
    let id = new_volume(&c, request).await;
    assert_eq!(fake.disk(&id).unwrap().disk_type, "CLOUD_SSD");
    let mut request = create("pvc-vac-bad", 20);
    request.mutable_parameters = HashMap::from([("iops".into(), "9000".into())]);
    let err = c.create_volume(Request::new(request)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("\"iops\""), "{}", err.message());
    assert_eq!(fake.disks().len(), 1, "nothing made for a refused request");
}

#[tokio::test(start_paused = true)]
async fn an_existing_name_with_another_size_is_already_exists() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    new_volume(&c, create("pvc-size", 10)).await;
    let err = c
        .create_volume(Request::new(create("pvc-size", 50)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
    assert_eq!(fake.disks().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_still_being_made_is_deleted_once_it_can_be() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let volume = new_volume(&c, create("pvc-snap", 10)).await;
    fake.set_transition_time(Duration::from_secs(5));
    let snap = c
        .create_snapshot(Request::new(snapshot_request("snap-1", &volume)))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert!(!snap.ready_to_use);
    // A deadline shorter than the rest of the copy: DEADLINE_EXCEEDED, nothing lost.
    let err = c
        .delete_snapshot(with_timeout(
            pb::DeleteSnapshotRequest {
                snapshot_id: snap.snapshot_id.clone(),
                ..Default::default()
            },
            "2S",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(fake.snapshot(&snap.snapshot_id).is_some());
    // The retry waits out the copy and deletes it.
    c.delete_snapshot(with_timeout(
        pb::DeleteSnapshotRequest {
            snapshot_id: snap.snapshot_id.clone(),
            ..Default::default()
        },
        "30S",
    ))
    .await
    .unwrap();
    assert!(fake.snapshot(&snap.snapshot_id).is_none());
    assert!(fake.calls(CbsOp::DeleteSnapshots) >= 2);
}

#[tokio::test(start_paused = true)]
async fn list_volumes_pages_with_tokens_it_issued() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(new_volume(&c, create(&format!("pvc-list-{i}"), 10)).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_volumes(Request::new(pb::ListVolumesRequest {
                max_entries: 2,
                starting_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .into_iter()
                .map(|e| e.volume.unwrap().volume_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
    for (token, max_entries, code) in [
        ("not-ours", 0, Code::Aborted),
        ("99", 0, Code::Aborted),
        ("", -1, Code::InvalidArgument),
    ] {
        let err = c
            .list_volumes(Request::new(pb::ListVolumesRequest {
                max_entries,
                starting_token: token.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            code,
            "{token:?} {max_entries}: {}",
            err.message()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_lost_create_is_retried_into_exactly_one_disk() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    // The cloud refuses the call: nothing made, the error reaches the caller, the retry works.
    fake.fail_nth(CbsOp::CreateDisks, 1, "InternalError");
    let err = c
        .create_volume(Request::new(create("pvc-flaky", 10)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(fake.disks().is_empty());
    let id = new_volume(&c, create("pvc-flaky", 10)).await;
    assert_eq!(fake.disks().len(), 1);
    // The cloud makes the disk but the answer is lost: the retry finds that disk.
    fake.lose_nth_response(CbsOp::CreateDisks, 1, "InternalError");
    assert!(
        c.create_volume(Request::new(create("pvc-lost", 10)))
            .await
            .is_err()
    );
    let lost = new_volume(&c, create("pvc-lost", 10)).await;
    assert_ne!(lost, id);
    assert_eq!(fake.disks().len(), 2, "no second disk for the lost answer");
    // A failing describe fails the create cleanly, with nothing made.
    fake.fail_nth(CbsOp::DescribeDisks, 1, "InternalError");
    assert!(
        c.create_volume(Request::new(create("pvc-blind", 10)))
            .await
            .is_err()
    );
    assert_eq!(fake.disks().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_name_the_field_and_touch_nothing() {
    let fake = FakeCbs::new();
    let c = controller(&fake);
    let mut no_name = create("", 10);
    no_name.name.clear();
    let mut no_caps = create("pvc-x", 10);
    no_caps.volume_capabilities.clear();
    let mut negative = create("pvc-x", 10);
    negative.capacity_range = Some(pb::CapacityRange {
        required_bytes: -1,
        limit_bytes: 0,
    });
    let mut inverted = create("pvc-x", 10);
    inverted.capacity_range = Some(pb::CapacityRange {
        required_bytes: 10 * GIB,
        limit_bytes: GIB,
    });
    let mut multi = create("pvc-x", 10);
    multi.volume_capabilities[0].access_mode = Some(pb::volume_capability::AccessMode {
        mode: Mode::MultiNodeMultiWriter as i32,
    });
    for (request, code, word) in [
        (no_name, Code::InvalidArgument, "name"),
        (no_caps, Code::InvalidArgument, "volume_capabilities"),
        (negative, Code::InvalidArgument, "capacity_range"),
        (inverted, Code::OutOfRange, "limit_bytes"),
        (multi, Code::InvalidArgument, "MULTI_NODE_MULTI_WRITER"),
    ] {
        let err = c.create_volume(Request::new(request)).await.unwrap_err();
        assert_eq!(err.code(), code, "{word}: {}", err.message());
        assert!(err.message().contains(word), "{word}: {}", err.message());
    }
    assert_eq!(fake.calls(CbsOp::CreateDisks), 0);
}
