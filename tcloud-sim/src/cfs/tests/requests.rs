//! CreateCfsFileSystem and DescribeCfsFileSystems: checks, shapes, the transition to
//! `available` with its export, ClientToken idempotency, filters and pagination.

use super::*;

#[tokio::test]
async fn bad_create_requests_get_the_real_codes() {
    let h = Harness::new(instant_config());
    let taken = h.create(json!({ "MountIP": "10.20.30.40" })).await;
    let cases = [
        (
            json!({ "Zone": "ap-guangzhou-9" }),
            "InvalidParameterValue.InvalidZoneOrZoneId",
        ),
        (json!({ "Zone": null }), "MissingParameter"),
        (json!({ "NetInterface": null }), "MissingParameter"),
        (json!({ "PGroupId": null }), "MissingParameter"),
        (
            json!({ "NetInterface": "LAN" }),
            "InvalidParameterValue.InvalidNetInterface",
        ),
        (
            json!({ "Protocol": "SMB" }),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            json!({ "Protocol": "TURBO" }),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            json!({ "StorageType": "XL" }),
            "InvalidParameterValue.InvalidStorageType",
        ),
        (
            json!({ "PGroupId": "group1" }),
            "InvalidParameterValue.InvalidPgroupId",
        ),
        (
            json!({ "PGroupId": "pgroup-nothere1" }),
            "ResourceNotFound.PgroupNotFound",
        ),
        (
            json!({ "SubnetId": null }),
            "InvalidParameterValue.MissingVpcParameter",
        ),
        (
            json!({ "VpcId": "" }),
            "InvalidParameterValue.MissingVpcParameter",
        ),
        (
            json!({ "VpcId": "123" }),
            "InvalidParameterValue.InvalidVpcId",
        ),
        (
            json!({ "SubnetId": "sn-1" }),
            "InvalidParameterValue.InvalidSubnetId",
        ),
        (
            json!({ "MountIP": "8.8.8.8" }),
            "InvalidParameterValue.InvalidMountTargetIp",
        ),
        (
            json!({ "MountIP": "10.20.30.40" }),
            "InvalidParameterValue.InvalidVip",
        ),
        (
            json!({ "NetInterface": "BASIC", "MountIP": "10.1.1.1" }),
            "InvalidParameterValue.InvalidMountTargetIp",
        ),
        (
            json!({ "NetInterface": "CCN" }),
            "InvalidParameterValue.InvalidNetInterface",
        ),
        (
            json!({ "FsName": "n".repeat(65) }),
            "InvalidParameterValue.FsNameLimitExceeded",
        ),
        (
            json!({ "FsName": "a\nb" }),
            "InvalidParameterValue.InvalidFsName",
        ),
        (
            json!({ "ResourceTags": [{ "TagKey": "", "TagValue": "v" }] }),
            "InvalidParameterValue.InvalidTagKey",
        ),
        (
            json!({ "ResourceTags": [{ "Key": "k", "Value": "v" }] }),
            "UnknownParameter",
        ),
        (
            json!({ "ClientToken": "t".repeat(65) }),
            "InvalidParameterValue.ClientTokenLimitExceeded",
        ),
        (
            json!({ "ClientToken": "" }),
            "InvalidParameterValue.InvalidClientToken",
        ),
        (
            json!({ "SnapshotId": "cfssnap-1" }),
            "ResourceNotFound.SnapshotNotFound",
        ),
        (
            json!({ "AutoSnapshotPolicyId": "asp-1" }),
            "InvalidParameter.AutoPolicyNotFound",
        ),
        (json!({ "CfsVersion": "v2" }), "InvalidParameterValue"),
        (json!({ "MetaType": "basic" }), "InvalidParameterValue"),
        (json!({ "Encrypt": true }), "UnknownParameter"),
        (json!({ "Zone": 3 }), "InvalidParameter"),
        (
            json!({ "Protocol": "TURBO", "StorageType": "TP", "NetInterface": "CCN", "CcnId": "ccn-1", "CidrBlock": "10.0.0.0/24", "Capacity": 100 }),
            "InvalidParameterValue.InvalidTurboCapacity",
        ),
        (
            json!({ "Protocol": "TURBO", "StorageType": "TP", "Capacity": 10240 }),
            "InvalidParameterValue.InvalidNetInterface",
        ),
        (
            json!({ "Protocol": "TURBO", "StorageType": "TB", "NetInterface": "CCN", "Capacity": 20480 }),
            "MissingParameter",
        ),
    ];
    for (extra, code) in cases {
        assert_eq!(
            h.code("CreateCfsFileSystem", create_body(extra.clone()))
                .await,
            code,
            "{extra}"
        );
    }
    let v = h.ok("DescribeCfsFileSystems", json!({})).await;
    assert_eq!(
        v["TotalCount"], 1,
        "no failed request left a file system: {v}"
    );
    assert_eq!(v["FileSystems"][0]["FileSystemId"], taken);
    assert_eq!(
        h.cfs.layout().fs_dirs().unwrap(),
        [taken],
        "nor a directory"
    );
}

#[tokio::test]
async fn a_new_file_system_is_creating_then_available_and_exported() {
    let h = Harness::new(CfsConfig {
        create_latency: Duration::from_secs(3600),
        ..instant_config()
    });
    let created = h
        .ok(
            "CreateCfsFileSystem",
            create_body(json!({
                "FsName": "k8s_pvc-1",
                "NetInterface": "vpc",
                "PGroupId": "pgroup-abc12345",
                "StorageType": "HP",
                "ResourceTags": [{ "TagKey": "team", "TagValue": "storage" }],
            })),
        )
        .await;
    let id = created["FileSystemId"].as_str().unwrap().to_owned();
    assert!(model::well_formed_id(&id, "cfs-") && id.len() == 12, "{id}");
    assert_eq!(created["LifeCycleState"], "creating");
    assert_eq!(created["CreationToken"], "k8s_pvc-1");
    assert_eq!(created["FsName"], "k8s_pvc-1");
    assert_eq!(created["SizeByte"], 0);
    assert_eq!(created["ZoneId"], 100003);
    assert_eq!(created["Encrypted"], false);
    assert_eq!(created["CreationTime"].as_str().unwrap().len(), 19);

    let dir = h.cfs.layout().fs_dir(&id);
    assert!(dir.is_dir(), "the directory exists from the start");
    let target = h.mount_target(&id).await;
    let ip = target["IpAddress"].as_str().unwrap().to_owned();
    assert!(model::private_host_ip(&ip).is_some(), "{ip}");
    let fsid = target["FSID"].as_str().unwrap().to_owned();
    assert!(
        fsid.len() == 8
            && fsid
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{fsid}"
    );
    assert_eq!(target["LifeCycleState"], "creating");
    assert_eq!(target["NetworkInterface"], "VPC");
    assert_eq!(target["VpcId"], "vpc-ah9fbkap");
    assert_eq!(target["SubnetId"], "subnet-9mu2t9iw");
    assert_eq!(target["FileSystemId"], id);
    assert!(
        target["MountTargetId"]
            .as_str()
            .unwrap()
            .starts_with("mount-")
    );
    let link = h.cfs.layout().export_link(&ip);
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "not exported while creating"
    );
    assert_eq!(h.cfs.complete_due().await, 0, "not due yet");
    assert_eq!(
        h.code("DeleteCfsFileSystem", json!({ "FileSystemId": id }))
            .await,
        "InvalidParameterValue.InvalidFsStatus"
    );

    h.cfs
        .store
        .update(|s| {
            let p = s
                .cfs
                .file_system_mut(&id)
                .unwrap()
                .pending
                .as_mut()
                .unwrap();
            p.due_at_unix_ms = 0;
        })
        .unwrap();
    assert_eq!(h.cfs.complete_due().await, 1);
    let fs = h.fs(&id).await;
    assert_eq!(fs["LifeCycleState"], "available");
    assert_eq!(fs["StorageType"], "HP");
    assert_eq!(fs["Protocol"], "NFS");
    assert_eq!(fs["Zone"], ZONE);
    assert_eq!(fs["ZoneId"], 100003);
    assert_eq!(fs["SizeLimit"], 32768);
    assert_eq!(
        fs["PGroup"],
        json!({ "PGroupId": "pgroup-abc12345", "Name": "pgroup-abc12345" })
    );
    assert_eq!(
        fs["Tags"],
        json!([{ "TagKey": "team", "TagValue": "storage" }])
    );
    assert_eq!(fs["AppId"], SIM_APP_ID);
    assert_eq!(fs["Encrypted"], false);
    assert_eq!(fs["SizeByte"], 0);
    assert_eq!(h.mount_target(&id).await["LifeCycleState"], "available");

    assert_eq!(std::fs::read_link(&link).unwrap(), dir);
    assert_eq!(
        std::fs::read_to_string(h.cfs.layout().fsid_file(&ip)).unwrap(),
        fsid
    );
    std::fs::write(link.join("data"), vec![1u8; 100_000]).unwrap();
    let used = h.fs(&id).await["SizeByte"].as_u64().unwrap();
    assert!(used >= 100_000, "SizeByte is the real usage: {used}");
}

#[tokio::test]
async fn client_tokens_make_creation_idempotent_across_restarts_for_two_hours() {
    let h = Harness::new(instant_config());
    let body = create_body(json!({ "ClientToken": "pvc-1234" }));
    let first = h.ok("CreateCfsFileSystem", body.clone()).await;
    let id = first["FileSystemId"].as_str().unwrap().to_owned();
    let again = h.ok("CreateCfsFileSystem", body.clone()).await;
    assert_eq!(again["FileSystemId"], id);
    assert_eq!(again["LifeCycleState"], "creating");
    let h = h.restart(instant_config());
    h.cfs.complete_due().await;
    let after = h.ok("CreateCfsFileSystem", body.clone()).await;
    assert_eq!(after["FileSystemId"], id);
    assert_eq!(after["LifeCycleState"], "available");
    let other = h.create(json!({ "ClientToken": "pvc-5678" })).await;
    assert_ne!(other, id);
    assert_eq!(
        h.ok("DescribeCfsFileSystems", json!({})).await["TotalCount"],
        2
    );

    h.cfs
        .store
        .update(|s| {
            s.cfs.client_tokens.get_mut("pvc-1234").unwrap().created_at -=
                model::CLIENT_TOKEN_TTL_SECS;
        })
        .unwrap();
    let late = h.ok("CreateCfsFileSystem", body).await;
    assert_ne!(late["FileSystemId"], id, "an expired token creates anew");
    assert_eq!(
        h.ok("DescribeCfsFileSystems", json!({})).await["TotalCount"],
        3
    );
}

#[tokio::test]
async fn describe_filters_paginates_and_handles_unknown_ids() {
    let h = Harness::new(instant_config());
    let a = h.create(json!({ "FsName": "a" })).await;
    let b = h
        .create(json!({ "FsName": "b", "VpcId": "vpc-other001", "SubnetId": "subnet-other001" }))
        .await;
    let c = h
        .create(json!({ "FsName": "c", "Zone": "ap-guangzhou-4" }))
        .await;
    let listed = |v: &Value| -> Vec<String> {
        v["FileSystems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["FileSystemId"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = h.ok("DescribeCfsFileSystems", json!({ "Limit": 2 })).await;
    let rest = h
        .ok("DescribeCfsFileSystems", json!({ "Offset": 2, "Limit": 2 }))
        .await;
    assert_eq!(first["TotalCount"], 3);
    assert_eq!(rest["TotalCount"], 3);
    let mut all = listed(&first);
    all.extend(listed(&rest));
    assert_eq!(all, [a.clone(), b.clone(), c.clone()], "creation order");
    let by_vpc = h
        .ok("DescribeCfsFileSystems", json!({ "VpcId": "vpc-ah9fbkap" }))
        .await;
    assert_eq!(listed(&by_vpc), [a.clone(), c.clone()]);
    let by_subnet = h
        .ok(
            "DescribeCfsFileSystems",
            json!({ "SubnetId": "subnet-other001" }),
        )
        .await;
    assert_eq!(listed(&by_subnet), [b.as_str()]);
    let by_name = h
        .ok("DescribeCfsFileSystems", json!({ "CreationToken": "c" }))
        .await;
    assert_eq!(listed(&by_name), [c.as_str()]);
    assert_eq!(h.fs(&c).await["ZoneId"], 100004);

    let unknown = h
        .ok(
            "DescribeCfsFileSystems",
            json!({ "FileSystemId": "cfs-00000000" }),
        )
        .await;
    assert_eq!(unknown["TotalCount"], 0, "an unknown ID lists nothing");
    assert_eq!(unknown["FileSystems"], json!([]));
    for (body, code) in [
        (
            json!({ "FileSystemId": "fs-1" }),
            "InvalidParameterValue.InvalidFileSystemId",
        ),
        (json!({ "Limit": 0 }), "InvalidParameterValue"),
        (json!({ "Limit": 101 }), "InvalidParameterValue"),
        (json!({ "Filters": [] }), "UnknownParameter"),
    ] {
        assert_eq!(
            h.code("DescribeCfsFileSystems", body.clone()).await,
            code,
            "{body}"
        );
    }
    let strict = Harness::new(CfsConfig {
        describe_not_found_error: true,
        ..instant_config()
    });
    assert_eq!(
        strict
            .code(
                "DescribeCfsFileSystems",
                json!({ "FileSystemId": "cfs-00000000" })
            )
            .await,
        "ResourceNotFound.FileSystemNotFound"
    );
}

#[tokio::test]
async fn mount_addresses_and_fsids_are_unique_and_names_can_change() {
    let h = Harness::new(instant_config());
    let mut ips = std::collections::HashSet::new();
    let mut fsids = std::collections::HashSet::new();
    for _ in 0..40 {
        let id = h.create(json!({})).await;
        let target = h.mount_target(&id).await;
        assert!(ips.insert(target["IpAddress"].as_str().unwrap().to_owned()));
        assert!(fsids.insert(target["FSID"].as_str().unwrap().to_owned()));
    }
    let chosen = h.create(json!({ "MountIP": "192.168.7.7" })).await;
    assert_eq!(h.mount_target(&chosen).await["IpAddress"], "192.168.7.7");
    let named = h
        .ok(
            "UpdateCfsFileSystemName",
            json!({ "FileSystemId": chosen, "FsName": "renamed" }),
        )
        .await;
    assert_eq!(named["FsName"], "renamed");
    assert_eq!(h.fs(&chosen).await["FsName"], "renamed");
    assert_eq!(
        h.code(
            "UpdateCfsFileSystemName",
            json!({ "FileSystemId": "cfs-00000000", "FsName": "x" })
        )
        .await,
        "ResourceNotFound.FileSystemNotFound"
    );
    let unnamed = h.create(json!({})).await;
    assert_eq!(
        h.fs(&unnamed).await["FsName"],
        unnamed,
        "the ID names an unnamed one"
    );
}

#[tokio::test]
async fn turbo_and_basic_file_systems() {
    let h = Harness::new(instant_config());
    let turbo = h
        .create(json!({
            "Protocol": "TURBO", "StorageType": "TP", "NetInterface": "CCN",
            "CcnId": "ccn-abc12345", "CidrBlock": "10.8.0.0/24", "Capacity": 20480,
            "VpcId": null, "SubnetId": null, "MetaType": "enhanced", "EnableAutoScaleUp": true,
        }))
        .await;
    let fs = h.fs(&turbo).await;
    assert_eq!(fs["Protocol"], "TURBO");
    assert_eq!(fs["Capacity"], 20480);
    assert_eq!(fs["SizeLimit"], 20480);
    let target = h.mount_target(&turbo).await;
    assert_eq!(target["NetworkInterface"], "CCN");
    assert_eq!(target["CcnID"], "ccn-abc12345");
    assert_eq!(target["CidrBlock"], "10.8.0.0/24");
    assert_eq!(target["VpcId"], "");
    let basic = h
        .create(json!({ "NetInterface": "BASIC", "VpcId": null, "SubnetId": null, "CfsVersion": "v3.1" }))
        .await;
    assert_eq!(h.mount_target(&basic).await["NetworkInterface"], "BASIC");
    let vpc_listed = h
        .ok("DescribeCfsFileSystems", json!({ "VpcId": "vpc-ah9fbkap" }))
        .await;
    assert_eq!(vpc_listed["TotalCount"], 0);
}

#[tokio::test]
async fn the_file_system_limit_is_a_quota_error() {
    let h = Harness::new(CfsConfig {
        max_file_systems: Some(1),
        ..instant_config()
    });
    let id = h.create_available(json!({})).await;
    assert_eq!(
        h.code("CreateCfsFileSystem", create_body(json!({}))).await,
        "ResourceInsufficient.FileSystemLimitExceeded"
    );
    h.ok("DeleteCfsFileSystem", json!({ "FileSystemId": id }))
        .await;
    h.create(json!({})).await;
}
