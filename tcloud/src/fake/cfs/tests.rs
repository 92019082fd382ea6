//! Tests of [`FakeCfs`] through its [`CfsApi`]: request checks and error codes, the `creating` →
//! `available` life cycle on a paused clock, ClientToken lifetimes, paging, injected failures and
//! held transitions.

use std::collections::BTreeMap;

use super::*;
use crate::cfs::{ResourceTag, life_cycle};
use crate::error::ErrorKind;

fn create_request(name: &str) -> CreateFileSystemRequest {
    CreateFileSystemRequest {
        zone: "ap-guangzhou-3".into(),
        net_interface: "VPC".into(),
        p_group_id: DEFAULT_PGROUP.into(),
        protocol: "NFS".into(),
        storage_type: "SD".into(),
        vpc_id: "vpc-abc123".into(),
        subnet_id: "subnet-abc123".into(),
        fs_name: Some(name.into()),
        resource_tags: vec![ResourceTag {
            tag_key: "csi-volume".into(),
            tag_value: name.into(),
        }],
        client_token: None,
    }
}

fn by_id(id: &str) -> DescribeFileSystemsRequest {
    DescribeFileSystemsRequest {
        file_system_id: Some(id.into()),
        ..Default::default()
    }
}

/// A change to a valid request that makes it invalid.
type Mutation = fn(&mut CreateFileSystemRequest);

fn code(error: &CloudError) -> &str {
    error.code().unwrap_or("<no code>")
}

#[tokio::test(start_paused = true)]
async fn a_file_system_is_creating_then_available_after_the_transition_time() {
    let step = Duration::from_secs(30);
    let cfs = FakeCfs::new().with_transition_time(step);
    let id = cfs
        .create_file_system(&create_request("pvc-1"), None)
        .await
        .unwrap();
    let seen = cfs.describe_file_systems(&by_id(&id), None).await.unwrap();
    assert_eq!(seen.total_count, 1);
    let fs = &seen.file_systems[0];
    assert_eq!(fs.life_cycle_state, life_cycle::CREATING);
    assert_eq!(
        (
            fs.fs_name.as_str(),
            fs.zone.as_str(),
            fs.storage_type.as_str()
        ),
        ("pvc-1", "ap-guangzhou-3", "SD")
    );
    assert_eq!(fs.tag("csi-volume"), Some("pvc-1"));
    let e = cfs.delete_file_system(&id, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue.InvalidFsStatus");
    assert_eq!(e.kind(), ErrorKind::Busy);
    let e = cfs.set_group_quota(&id, 1000, 10, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue.InvalidFsStatus");

    tokio::time::advance(step - Duration::from_millis(1)).await;
    assert_eq!(
        cfs.file_system(&id).unwrap().life_cycle_state,
        life_cycle::CREATING
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let seen = cfs.describe_file_systems(&by_id(&id), None).await.unwrap();
    assert_eq!(seen.file_systems[0].life_cycle_state, life_cycle::AVAILABLE);

    let targets = cfs.describe_mount_targets(&id, None).await.unwrap();
    assert_eq!(targets.len(), 1);
    let target = &targets[0];
    assert_eq!(target.file_system_id, id);
    assert!(target.ip_address.starts_with("10."), "{target:?}");
    assert_eq!(target.fsid.len(), 8);
    assert_eq!(target.life_cycle_state, life_cycle::AVAILABLE);

    cfs.set_group_quota(&id, 1000, 10, None).await.unwrap();
    cfs.set_group_quota(&id, 1000, 20, None).await.unwrap();
    let e = cfs.set_group_quota(&id, 1001, 0, None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue.QuotaCapLimitError");
    let inspected = cfs.file_system(&id).unwrap();
    assert_eq!(inspected.group_quotas, BTreeMap::from([(1000, 20)]));
    assert_eq!(inspected.ip_address, target.ip_address);

    assert!(cfs.set_used_bytes(&id, 4096));
    let seen = cfs.describe_file_systems(&by_id(&id), None).await.unwrap();
    assert_eq!(seen.file_systems[0].size_byte, 4096);

    cfs.delete_file_system(&id, None).await.unwrap();
    assert!(cfs.file_systems().is_empty());
    let e = cfs.delete_file_system(&id, None).await.unwrap_err();
    assert_eq!(code(&e), "ResourceNotFound.FileSystemNotFound");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = cfs.describe_mount_targets(&id, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn tokens_answer_for_two_hours_and_die_with_their_file_system() {
    let cfs = FakeCfs::new();
    let mut request = create_request("pvc-t");
    request.client_token = Some("token-1".into());
    let first = cfs.create_file_system(&request, None).await.unwrap();
    let again = cfs.create_file_system(&request, None).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(cfs.file_systems().len(), 1);
    assert_eq!(cfs.client_token("token-1"), Some(first.clone()));

    tokio::time::advance(CLIENT_TOKEN_TTL).await;
    assert_eq!(cfs.client_token("token-1"), None, "expired after two hours");
    let after_ttl = cfs.create_file_system(&request, None).await.unwrap();
    assert_ne!(after_ttl, first);
    assert_eq!(cfs.file_systems().len(), 2);

    cfs.delete_file_system(&after_ttl, None).await.unwrap();
    assert_eq!(
        cfs.client_token("token-1"),
        None,
        "pruned with its file system"
    );
    let after_delete = cfs.create_file_system(&request, None).await.unwrap();
    assert_ne!(after_delete, after_ttl);
    assert_eq!(cfs.client_token("token-1"), Some(after_delete));

    for (bad, want) in [
        (
            "t".repeat(65),
            "InvalidParameterValue.ClientTokenLimitExceeded",
        ),
        (String::new(), "InvalidParameterValue.InvalidClientToken"),
        (
            "with space".to_owned(),
            "InvalidParameterValue.InvalidClientToken",
        ),
    ] {
        request.client_token = Some(bad);
        let e = cfs.create_file_system(&request, None).await.unwrap_err();
        assert_eq!(code(&e), want);
    }
}

#[tokio::test]
async fn names_longer_than_64_bytes_are_refused() {
    let cfs = FakeCfs::new();
    let id = cfs
        .create_file_system(&create_request(&"n".repeat(64)), None)
        .await
        .unwrap();
    assert_eq!(cfs.file_system(&id).unwrap().fs_name.len(), 64);
    for long in ["n".repeat(65), "卷".repeat(22)] {
        let e = cfs
            .create_file_system(&create_request(&long), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.FsNameLimitExceeded");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
    let mut unnamed = create_request("unnamed");
    unnamed.fs_name = None;
    let id = cfs.create_file_system(&unnamed, None).await.unwrap();
    assert_eq!(
        cfs.file_system(&id).unwrap().fs_name,
        id,
        "named after its ID"
    );
}

#[tokio::test]
async fn describe_of_an_unknown_id_is_empty_unless_configured_otherwise() {
    let cfs = FakeCfs::new();
    let seen = cfs
        .describe_file_systems(&by_id("cfs-unknown1"), None)
        .await
        .unwrap();
    assert_eq!((seen.total_count, seen.file_systems.len()), (0, 0));
    let e = cfs
        .describe_file_systems(&by_id("nfs-1"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue.InvalidFileSystemId");
    let e = cfs.describe_mount_targets("", None).await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue.MissingFileSystemId");

    let strict = FakeCfs::new().with_describe_not_found_error();
    let e = strict
        .describe_file_systems(&by_id("cfs-unknown1"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFound.FileSystemNotFound");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn describe_pages_with_total_count() {
    let cfs = FakeCfs::new();
    let mut ids = Vec::new();
    for n in 0..23 {
        ids.push(
            cfs.create_file_system(&create_request(&format!("fs-{n}")), None)
                .await
                .unwrap(),
        );
    }
    let page_of = |offset, limit| DescribeFileSystemsRequest {
        offset,
        limit,
        ..Default::default()
    };
    let first = cfs
        .describe_file_systems(&page_of(None, None), None)
        .await
        .unwrap();
    assert_eq!((first.total_count, first.file_systems.len()), (23, 20));
    let rest = cfs
        .describe_file_systems(&page_of(Some(20), Some(100)), None)
        .await
        .unwrap();
    assert_eq!((rest.total_count, rest.file_systems.len()), (23, 3));
    let listed: Vec<String> = first
        .file_systems
        .iter()
        .chain(&rest.file_systems)
        .map(|f| f.file_system_id.clone())
        .collect();
    assert_eq!(listed, ids);
    for limit in [0, 101] {
        let e = cfs
            .describe_file_systems(&page_of(None, Some(limit)), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue", "limit {limit}");
    }
}

#[tokio::test]
async fn an_injected_failure_fires_on_exactly_the_nth_call() {
    let cfs = FakeCfs::new();
    cfs.fail_nth(CfsOp::CreateFileSystem, 2, "RequestLimitExceeded");
    cfs.create_file_system(&create_request("a"), None)
        .await
        .unwrap();
    let e = cfs
        .create_file_system(&create_request("b"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "RequestLimitExceeded");
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert!(e.to_string().starts_with("CreateCfsFileSystem: "), "{e}");
    assert_eq!(cfs.file_systems().len(), 1, "the refused call made nothing");
    cfs.create_file_system(&create_request("c"), None)
        .await
        .unwrap();
    assert_eq!(cfs.calls(CfsOp::CreateFileSystem), 3);
    assert_eq!(cfs.calls(CfsOp::DescribeFileSystems), 0);

    let id = cfs.file_systems()[0].file_system_id.clone();
    cfs.lose_nth_response(CfsOp::DeleteFileSystem, 1, "InternalError");
    let e = cfs.delete_file_system(&id, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(cfs.file_system(&id).is_none(), "the delete took effect");
}

#[tokio::test(start_paused = true)]
async fn a_stuck_create_stays_creating_until_released() {
    let cfs = FakeCfs::new();
    cfs.set_stuck(CfsOp::CreateFileSystem, true);
    let id = cfs
        .create_file_system(&create_request("stuck"), None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        cfs.file_system(&id).unwrap().life_cycle_state,
        life_cycle::CREATING
    );
    let targets = cfs.describe_mount_targets(&id, None).await.unwrap();
    assert_eq!(targets[0].life_cycle_state, life_cycle::CREATING);
    cfs.set_stuck(CfsOp::CreateFileSystem, false);
    assert_eq!(
        cfs.file_system(&id).unwrap().life_cycle_state,
        life_cycle::AVAILABLE
    );
}

#[tokio::test]
async fn create_checks_follow_the_simulator() {
    let cfs = FakeCfs::new()
        .with_pgroup("pgroup-team1")
        .with_max_file_systems(1);
    let mutations: Vec<(Mutation, &str)> = vec![
        (
            |r| r.zone = "ap-mars-1".into(),
            "InvalidParameterValue.InvalidZoneOrZoneId",
        ),
        (
            |r| r.net_interface = "LAN".into(),
            "InvalidParameterValue.InvalidNetInterface",
        ),
        (
            |r| r.protocol = "SMB".into(),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            |r| r.storage_type = "XL".into(),
            "InvalidParameterValue.InvalidStorageType",
        ),
        (
            |r| r.storage_type = "TB".into(),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            |r| r.p_group_id = "group-1".into(),
            "InvalidParameterValue.InvalidPgroupId",
        ),
        (
            |r| r.p_group_id = "pgroup-other1".into(),
            "ResourceNotFound.PgroupNotFound",
        ),
        (
            |r| r.subnet_id = String::new(),
            "InvalidParameterValue.MissingVpcParameter",
        ),
        (
            |r| r.vpc_id = "vpc_1".into(),
            "InvalidParameterValue.InvalidVpcId",
        ),
        (
            |r| r.resource_tags[0].tag_key = "tencent:x".into(),
            "InvalidParameterValue.InvalidTagKey",
        ),
    ];
    for (mutate, want) in mutations {
        let mut request = create_request("x");
        mutate(&mut request);
        let e = cfs.create_file_system(&request, None).await.unwrap_err();
        assert_eq!(code(&e), want, "{request:?}");
    }
    // Empty protocol and storage type mean NFS on SD; `vpc` is accepted in lower case.
    let mut request = create_request("defaults");
    request.protocol = String::new();
    request.storage_type = String::new();
    request.net_interface = "vpc".into();
    request.p_group_id = "pgroup-team1".into();
    let id = cfs.create_file_system(&request, None).await.unwrap();
    let fs = cfs.file_system(&id).unwrap();
    assert_eq!(
        (
            fs.protocol,
            fs.storage_type,
            fs.net_interface,
            fs.zone_id.as_str()
        ),
        ("NFS", "SD", "VPC", "100003")
    );
    let e = cfs
        .create_file_system(&create_request("second"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceInsufficient.FileSystemLimitExceeded");
    assert_eq!(e.kind(), ErrorKind::Quota);
}
