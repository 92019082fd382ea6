//! Tests of [`FakeCbs`] through its [`CbsApi`]: request checks and error codes, ClientToken
//! idempotency, transitions on a paused clock, paging and filters, injected failures and held
//! transitions, and the settings actions.

use super::checks::UNNAMED;
use super::*;
use crate::cbs::{Disk, DiskChargePrepaid, Filter, Placement, Tag, disk_state, snapshot_state};
use crate::error::ErrorKind;

const ZONE: &str = "ap-guangzhou-3";
const NODE: &str = "ins-sim00001";

fn create_request(name: &str, size: u64) -> CreateDisksRequest {
    CreateDisksRequest {
        placement: Placement {
            zone: ZONE.to_owned(),
            ..Default::default()
        },
        disk_type: "CLOUD_PREMIUM".to_owned(),
        disk_charge_type: "POSTPAID_BY_HOUR".to_owned(),
        disk_size: size,
        disk_name: Some(name.to_owned()),
        disk_count: 1,
        ..Default::default()
    }
}

async fn create_one(cbs: &FakeCbs, name: &str) -> String {
    let ids = cbs
        .create_disks(&create_request(name, 20), None)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

async fn describe_one(cbs: &FakeCbs, id: &str) -> Option<Disk> {
    let request = DescribeDisksRequest {
        disk_ids: vec![id.to_owned()],
        ..Default::default()
    };
    let response = cbs.describe_disks(&request, None).await.unwrap();
    assert!(response.disk_set.len() <= 1);
    response.disk_set.into_iter().next()
}

/// A change to a valid request that makes it invalid.
type Mutation = fn(&mut CreateDisksRequest);

fn code(error: &CloudError) -> &str {
    error.code().unwrap_or("<no code>")
}

#[tokio::test]
async fn a_client_token_answers_with_its_disks_even_after_they_are_terminated() {
    let cbs = FakeCbs::new();
    let mut request = create_request("pvc-1", 20);
    request.client_token = Some(crate::client_token(&["pvc-1"]));
    let first = cbs.create_disks(&request, None).await.unwrap();
    let again = cbs.create_disks(&request, None).await.unwrap();
    assert_eq!(first, again, "a retry makes no second disk");
    assert_eq!(cbs.disks().len(), 1);

    cbs.terminate_disks(&first, None).await.unwrap();
    assert!(cbs.disks().is_empty());
    let after = cbs.create_disks(&request, None).await.unwrap();
    assert_eq!(
        after, first,
        "the token keeps its answer after the disk is gone"
    );
    assert!(cbs.disks().is_empty(), "and nothing was created");
    assert!(describe_one(&cbs, &first[0]).await.is_none());

    // A token is still checked: empty, too long or not ASCII is refused.
    for bad in [String::new(), "t".repeat(65), "令牌".to_owned()] {
        request.client_token = Some(bad);
        let e = cbs.create_disks(&request, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue");
    }
    request.client_token = Some("t".repeat(64));
    cbs.create_disks(&request, None).await.unwrap();
}

#[tokio::test]
async fn names_longer_than_60_bytes_are_refused() {
    let cbs = FakeCbs::new();
    let sixty = "n".repeat(60);
    let id = create_one(&cbs, &sixty).await;
    assert_eq!(cbs.disk(&id).unwrap().disk_name, sixty);
    // 21 three-byte characters: 63 bytes although 21 characters.
    for long in ["n".repeat(61), "卷".repeat(21)] {
        let e = cbs
            .create_disks(&create_request(&long, 20), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue", "{e}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("DiskName"), "{e}");
        let snapshot = CreateSnapshotRequest {
            disk_id: id.clone(),
            snapshot_name: Some(long.clone()),
            tags: vec![],
        };
        let e = cbs.create_snapshot(&snapshot, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue", "{e}");
        assert!(e.to_string().contains("SnapshotName"), "{e}");
    }
    assert_eq!(cbs.disks().len(), 1);
    assert!(cbs.snapshots().is_empty());
    // No name: the cloud's default.
    let mut unnamed = create_request("", 20);
    unnamed.disk_name = None;
    let ids = cbs.create_disks(&unnamed, None).await.unwrap();
    assert_eq!(cbs.disk(&ids[0]).unwrap().disk_name, UNNAMED);
}

#[tokio::test(start_paused = true)]
async fn a_creating_snapshot_cannot_be_deleted_until_it_is_normal() {
    let cbs = FakeCbs::new().with_transition_time(Duration::from_secs(10));
    let disk = create_one(&cbs, "src").await;
    let request = CreateSnapshotRequest {
        disk_id: disk.clone(),
        snapshot_name: Some("snap-of-src".to_owned()),
        tags: vec![Tag {
            key: "k".into(),
            value: "v".into(),
        }],
    };
    let id = cbs.create_snapshot(&request, None).await.unwrap();
    let ids = std::slice::from_ref(&id);
    let describe = DescribeSnapshotsRequest {
        snapshot_ids: vec![id.clone()],
        ..Default::default()
    };
    let seen = cbs.describe_snapshots(&describe, None).await.unwrap();
    assert_eq!(seen.total_count, 1);
    assert_eq!(
        seen.snapshot_set[0].snapshot_state,
        snapshot_state::CREATING
    );
    assert_eq!(seen.snapshot_set[0].percent, 0);
    assert!(!seen.snapshot_set[0].is_ready());

    let e = cbs.delete_snapshots(ids, None).await.unwrap_err();
    assert_eq!(code(&e), "ResourceUnavailable.SnapshotCreating");
    assert_eq!(e.kind(), ErrorKind::Busy);
    // A disk cannot be restored from it either.
    let mut restore = create_request("restored", 20);
    restore.snapshot_id = Some(id.clone());
    let e = cbs.create_disks(&restore, None).await.unwrap_err();
    assert_eq!(code(&e), "ResourceUnavailable.SnapshotCreating");

    tokio::time::advance(Duration::from_secs(5)).await;
    let half = cbs.snapshot(&id).unwrap();
    assert_eq!(
        (half.snapshot_state, half.percent),
        (snapshot_state::CREATING, 50)
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    let seen = cbs.describe_snapshots(&describe, None).await.unwrap();
    assert!(seen.snapshot_set[0].is_ready(), "{:?}", seen.snapshot_set);
    let snapshot = cbs.snapshot(&id).unwrap();
    assert_eq!(snapshot.tags, request.tags);
    assert_eq!(
        (snapshot.disk_id.as_str(), snapshot.disk_size),
        (disk.as_str(), 20)
    );

    // Restoring: at least the snapshot's size.
    restore.disk_size = 10;
    let e = cbs.create_disks(&restore, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameter.DiskSizeNotMatch");
    restore.disk_size = 30;
    let restored = cbs.create_disks(&restore, None).await.unwrap();
    assert_eq!(
        cbs.disk(&restored[0]).unwrap().snapshot_id,
        Some(id.clone())
    );

    cbs.delete_snapshots(ids, None).await.unwrap();
    assert!(cbs.snapshots().is_empty());
    let gone = cbs.describe_snapshots(&describe, None).await.unwrap();
    assert_eq!(
        gone.total_count, 0,
        "an unknown ID is no error, just absent"
    );
    let e = cbs.delete_snapshots(ids, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidSnapshotId.NotFound");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn describe_pages_with_offset_limit_and_total_count() {
    let cbs = FakeCbs::new();
    let mut request = create_request("many", 20);
    request.disk_count = 25;
    let ids = cbs.create_disks(&request, None).await.unwrap();
    assert_eq!(ids.len(), 25);
    let page_of = |offset, limit| DescribeDisksRequest {
        offset,
        limit,
        ..Default::default()
    };
    let first = cbs
        .describe_disks(&page_of(None, None), None)
        .await
        .unwrap();
    assert_eq!(
        (first.total_count, first.disk_set.len()),
        (25, 20),
        "default limit 20"
    );
    let last = cbs
        .describe_disks(&page_of(Some(20), Some(10)), None)
        .await
        .unwrap();
    assert_eq!((last.total_count, last.disk_set.len()), (25, 5));
    let listed: Vec<String> = first
        .disk_set
        .iter()
        .chain(&last.disk_set)
        .map(|d| d.disk_id.clone())
        .collect();
    assert_eq!(listed, ids, "creation order, stable across pages");
    let beyond = cbs
        .describe_disks(&page_of(Some(100), Some(100)), None)
        .await
        .unwrap();
    assert_eq!((beyond.total_count, beyond.disk_set.len()), (25, 0));
    let e = cbs
        .describe_disks(&page_of(None, Some(101)), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue");
    request.disk_count = 51;
    let e = cbs.create_disks(&request, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue.LimitExceeded");
}

#[tokio::test]
async fn filters_ids_and_their_errors_follow_the_simulator() {
    let cbs = FakeCbs::new();
    let mut tagged = create_request("vol-a", 20);
    tagged.tags = vec![Tag {
        key: "csi-volume".into(),
        value: "pvc-a".into(),
    }];
    let a = cbs.create_disks(&tagged, None).await.unwrap().remove(0);
    let mut elsewhere = create_request("vol-b", 20);
    elsewhere.placement.zone = "ap-guangzhou-4".into();
    let b = cbs.create_disks(&elsewhere, None).await.unwrap().remove(0);
    let filtered = |filters: Vec<Filter>| DescribeDisksRequest {
        filters,
        ..Default::default()
    };
    let cases = [
        (Filter::new("disk-name", "vol-a"), vec![a.clone()]),
        (Filter::new("disk-id", &b), vec![b.clone()]),
        (Filter::new("zone", "ap-guangzhou-4"), vec![b.clone()]),
        (Filter::new("tag-key", "csi-volume"), vec![a.clone()]),
        (Filter::new("tag:csi-volume", "pvc-a"), vec![a.clone()]),
        (Filter::new("tag:csi-volume", "pvc-b"), vec![]),
        (
            Filter::new("disk-state", "UNATTACHED"),
            vec![a.clone(), b.clone()],
        ),
    ];
    for (filter, want) in cases {
        let got = cbs
            .describe_disks(&filtered(vec![filter.clone()]), None)
            .await
            .unwrap();
        let ids: Vec<String> = got.disk_set.into_iter().map(|d| d.disk_id).collect();
        assert_eq!(ids, want, "{filter:?}");
        assert_eq!(got.total_count, want.len() as u64);
    }
    let errors = [
        (
            filtered(vec![Filter::new("colour", "red")]),
            "InvalidFilter",
        ),
        (
            filtered(vec![Filter {
                name: "zone".into(),
                values: vec![],
            }]),
            "InvalidParameterValue",
        ),
        (
            DescribeDisksRequest {
                disk_ids: vec![a.clone()],
                filters: vec![Filter::new("zone", ZONE)],
                ..Default::default()
            },
            "InvalidParameter",
        ),
        (
            DescribeDisksRequest {
                disk_ids: vec!["vol-1".into()],
                ..Default::default()
            },
            "InvalidDiskId.Malformed",
        ),
    ];
    for (request, want) in errors {
        let e = cbs.describe_disks(&request, None).await.unwrap_err();
        assert_eq!(code(&e), want, "{request:?}");
    }
    assert!(describe_one(&cbs, "disk-unknown1").await.is_none());
    let e = cbs
        .terminate_disks(&["disk-unknown1".into()], None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let snapshot = cbs
        .create_snapshot(
            &CreateSnapshotRequest {
                disk_id: a.clone(),
                snapshot_name: Some("snap-name".into()),
                tags: vec![],
            },
            None,
        )
        .await
        .unwrap();
    for filter in [
        Filter::new("snapshot-name", "snap-name"),
        Filter::new("disk-id", &a),
        Filter::new("snapshot-id", &snapshot),
    ] {
        let request = DescribeSnapshotsRequest {
            filters: vec![filter.clone()],
            ..Default::default()
        };
        let got = cbs.describe_snapshots(&request, None).await.unwrap();
        assert_eq!(got.total_count, 1, "{filter:?}");
        assert_eq!(got.snapshot_set[0].snapshot_id, snapshot);
    }
    let request = DescribeSnapshotsRequest {
        filters: vec![Filter::new("tag:k", "v")],
        ..Default::default()
    };
    let e = cbs.describe_snapshots(&request, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidFilter");
}

#[tokio::test]
async fn an_injected_failure_fires_on_exactly_the_nth_call() {
    let cbs = FakeCbs::new();
    let request = DescribeDisksRequest::default();
    cbs.describe_disks(&request, None).await.unwrap();
    cbs.fail_nth(CbsOp::DescribeDisks, 3, "RequestLimitExceeded");
    cbs.describe_zones(None).await.unwrap();
    cbs.describe_disks(&request, None).await.unwrap();
    cbs.describe_disks(&request, None).await.unwrap();
    let e = cbs.describe_disks(&request, None).await.unwrap_err();
    assert_eq!(code(&e), "RequestLimitExceeded");
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert!(e.to_string().starts_with("DescribeDisks: "), "{e}");
    cbs.describe_disks(&request, None).await.unwrap();
    assert_eq!(cbs.calls(CbsOp::DescribeDisks), 5, "failed calls count too");
    assert_eq!(cbs.calls(CbsOp::DescribeZones), 1);
    assert_eq!(cbs.calls(CbsOp::CreateDisks), 0);

    // A refused create makes nothing.
    cbs.fail_nth(CbsOp::CreateDisks, 1, "InternalError");
    let e = cbs
        .create_disks(&create_request("x", 20), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(cbs.disks().is_empty());
}

#[tokio::test]
async fn a_lost_answer_still_creates_and_the_token_finds_it() {
    let cbs = FakeCbs::new();
    let mut request = create_request("pvc-lost", 20);
    request.client_token = Some("token-lost".into());
    cbs.lose_nth_response(CbsOp::CreateDisks, 1, "InternalError");
    let e = cbs.create_disks(&request, None).await.unwrap_err();
    assert_eq!(code(&e), "InternalError");
    let made = cbs.disks();
    assert_eq!(made.len(), 1, "the call took effect");
    let retry = cbs.create_disks(&request, None).await.unwrap();
    assert_eq!(retry, vec![made[0].disk_id.clone()]);
    assert_eq!(cbs.client_token("token-lost"), Some(retry));
}

#[tokio::test(start_paused = true)]
async fn attach_and_detach_pass_through_observable_transitions() {
    let step = Duration::from_secs(3);
    let cbs = FakeCbs::new().with_transition_time(step);
    let id = create_one(&cbs, "vol").await;
    let ids = std::slice::from_ref(&id);
    cbs.attach_disks(ids, NODE, None).await.unwrap();

    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(disk.disk_state, disk_state::ATTACHING);
    assert_eq!(disk.instance(), Some(NODE));
    assert!(!disk.attached);
    let e = cbs.attach_disks(ids, NODE, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.Busy");
    assert_eq!(e.kind(), ErrorKind::Busy);
    let e = cbs.resize_disk(&id, 30, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.Busy");
    let e = cbs.terminate_disks(ids, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.Busy");

    tokio::time::advance(step).await;
    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(disk.disk_state, disk_state::ATTACHED);
    assert!(disk.attached);
    let e = cbs.attach_disks(ids, NODE, None).await.unwrap_err();
    assert_eq!(code(&e), "ResourceUnavailable.Attached");
    let e = cbs.terminate_disks(ids, None).await.unwrap_err();
    assert!(code(&e).ends_with(".Attached"), "{e}");
    let e = cbs
        .detach_disks(ids, Some("ins-unknown"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceId.NotFound");

    // Online resize: EXPANDING, then back to ATTACHED at the new size.
    cbs.resize_disk(&id, 50, None).await.unwrap();
    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(
        (disk.disk_state.as_str(), disk.disk_size),
        (disk_state::EXPANDING, 20)
    );
    tokio::time::advance(step).await;
    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(
        (disk.disk_state.as_str(), disk.disk_size),
        (disk_state::ATTACHED, 50)
    );
    let e = cbs.resize_disk(&id, 50, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue", "disks only grow");

    cbs.detach_disks(ids, Some(NODE), None).await.unwrap();
    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(disk.disk_state, disk_state::DETACHING);
    assert!(disk.attached, "still on the instance while detaching");
    tokio::time::advance(step).await;
    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(disk.disk_state, disk_state::UNATTACHED);
    assert_eq!((disk.instance(), disk.attached), (None, false));
    let e = cbs.detach_disks(ids, None, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.NotSupported");

    cbs.terminate_disks(ids, None).await.unwrap();
    assert!(describe_one(&cbs, &id).await.is_none());
}

#[tokio::test]
async fn with_no_transition_time_the_next_call_sees_the_final_state() {
    let cbs = FakeCbs::new();
    let id = create_one(&cbs, "vol").await;
    cbs.attach_disks(std::slice::from_ref(&id), NODE, None)
        .await
        .unwrap();
    let disk = describe_one(&cbs, &id).await.unwrap();
    assert_eq!(disk.disk_state, disk_state::ATTACHED);
    assert_eq!(cbs.disk(&id).unwrap().pending_state, None);
}

#[tokio::test(start_paused = true)]
async fn a_stuck_operation_holds_its_transitions_until_released() {
    let cbs = FakeCbs::new();
    let id = create_one(&cbs, "vol").await;
    cbs.set_stuck(CbsOp::AttachDisks, true);
    cbs.attach_disks(std::slice::from_ref(&id), NODE, None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(cbs.disk(&id).unwrap().disk_state, disk_state::ATTACHING);
    assert_eq!(
        cbs.disk(&id).unwrap().pending_state,
        Some(disk_state::ATTACHED)
    );
    cbs.set_stuck(CbsOp::AttachDisks, false);
    assert_eq!(cbs.disk(&id).unwrap().disk_state, disk_state::ATTACHED);
}

#[tokio::test]
async fn attach_checks_the_instance_its_zone_and_its_limit() {
    let cbs = FakeCbs::new()
        .with_instance("ins-other", "ap-guangzhou-4")
        .with_max_attach(1);
    let a = create_one(&cbs, "a").await;
    let b = create_one(&cbs, "b").await;
    let e = cbs
        .attach_disks(std::slice::from_ref(&a), "ins-missing", None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceId.NotFound");
    let e = cbs
        .attach_disks(std::slice::from_ref(&a), "ins-other", None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceUnavailable.ZoneNotMatch");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    cbs.attach_disks(std::slice::from_ref(&a), NODE, None)
        .await
        .unwrap();
    let e = cbs
        .attach_disks(std::slice::from_ref(&b), NODE, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "LimitExceeded.InstanceAttachedDisk");
    let e = cbs.attach_disks(&[], NODE, None).await.unwrap_err();
    assert_eq!(code(&e), "MissingParameter");
    let e = cbs
        .attach_disks(&[b.clone(), b.clone()], NODE, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue");
}

#[tokio::test]
async fn create_checks_zone_type_size_charge_tags_and_quota() {
    let cbs = FakeCbs::new().with_zone_quota(ZONE, 1);
    let mutations: Vec<(Mutation, &str)> = vec![
        (
            |r| r.placement.zone = "ap-mars-1".into(),
            "InvalidParameterValue",
        ),
        (
            |r| r.disk_type = "CLOUD_FLOPPY".into(),
            "InvalidParameterValue",
        ),
        (|r| r.disk_size = 15, "InvalidParameterValue"),
        (|r| r.disk_size = 0, "InvalidParameterValue"),
        (|r| r.disk_count = 0, "InvalidParameterValue"),
        (
            |r| r.disk_charge_type = "FREE".into(),
            "InvalidParameterValue",
        ),
        (
            |r| r.disk_charge_type = "PREPAID".into(),
            "MissingParameter",
        ),
        (
            |r| r.throughput_performance = Some(100),
            "InvalidParameterValue",
        ),
        (|r| r.encrypt = Some("YES".into()), "InvalidParameterValue"),
        (
            |r| {
                r.tags = vec![Tag {
                    key: "qcloud:x".into(),
                    value: "v".into(),
                }]
            },
            "InvalidParameter",
        ),
        (
            |r| r.snapshot_id = Some("snap-none".into()),
            "InvalidSnapshotId.NotFound",
        ),
    ];
    for (mutate, want) in mutations {
        let mut request = create_request("x", 20);
        mutate(&mut request);
        let e = cbs.create_disks(&request, None).await.unwrap_err();
        assert_eq!(code(&e), want, "{request:?}");
    }
    create_one(&cbs, "fits").await;
    let e = cbs
        .create_disks(&create_request("over", 20), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceInsufficient.OverQuota");
    assert_eq!(e.kind(), ErrorKind::Quota);
}

#[tokio::test]
async fn a_terminated_prepaid_disk_goes_to_the_recycle_bin() {
    let cbs = FakeCbs::new();
    let mut request = create_request("prepaid", 20);
    request.disk_charge_type = "PREPAID".into();
    request.disk_charge_prepaid = Some(DiskChargePrepaid {
        period: 1,
        renew_flag: None,
    });
    let ids = cbs.create_disks(&request, None).await.unwrap();
    cbs.terminate_disks(&ids, None).await.unwrap();
    assert_eq!(cbs.disk(&ids[0]).unwrap().disk_state, "TORECYCLE");
    let e = cbs.attach_disks(&ids, NODE, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.NotSupported");
    cbs.terminate_disks(&ids, None).await.unwrap();
    assert!(cbs.disks().is_empty());
}

#[tokio::test]
async fn settings_zones_and_policies() {
    let cbs = FakeCbs::new().with_auto_snapshot_policy("asp-daily");
    let zones = cbs.describe_zones(None).await.unwrap();
    let named: Vec<(&str, &str)> = zones
        .iter()
        .map(|z| (z.zone.as_str(), z.zone_id.as_str()))
        .collect();
    assert_eq!(
        named,
        [("ap-guangzhou-3", "100003"), ("ap-guangzhou-4", "100004")]
    );
    let custom = FakeCbs::new().with_zones(&[("ap-shanghai-2", "200002")]);
    assert_eq!(
        custom.describe_zones(None).await.unwrap()[0].zone_id,
        "200002"
    );

    let id = create_one(&cbs, "premium").await;
    let ids = std::slice::from_ref(&id);
    let e = cbs
        .bind_auto_snapshot_policy("asp-none", ids, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAutoSnapshotPolicyId.NotFound");
    cbs.bind_auto_snapshot_policy("asp-daily", ids, None)
        .await
        .unwrap();
    let e = cbs
        .bind_auto_snapshot_policy("asp-daily", ids, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.AlreadyBound");
    assert_eq!(
        cbs.disk(&id).unwrap().auto_snapshot_policy_ids,
        ["asp-daily"]
    );

    let e = cbs
        .modify_disk_extra_performance(&id, 100, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.NotSupported");
    cbs.modify_disk_type(&id, "CLOUD_SSD", None).await.unwrap();
    assert_eq!(cbs.disk(&id).unwrap().disk_type, "CLOUD_SSD");
    let e = cbs
        .modify_disk_type(&id, "CLOUD_PREMIUM", None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidDisk.NotSupported", "types only go up");

    let mut hssd = create_request("fast", 20);
    hssd.disk_type = "CLOUD_HSSD".into();
    let fast = cbs.create_disks(&hssd, None).await.unwrap().remove(0);
    cbs.modify_disk_extra_performance(&fast, 200, None)
        .await
        .unwrap();
    assert_eq!(cbs.disk(&fast).unwrap().throughput_performance, 200);
    let e = cbs
        .modify_disk_extra_performance(&fast, 651, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameter");
}
