//! Create, describe, quota, attributes and policies: shapes and error codes.

use super::*;

#[tokio::test]
async fn create_and_describe_in_the_real_shape() {
    let h = Harness::new(instant_config());
    let v = h
        .ok(
            "CreateDisks",
            create_body(json!({
                "DiskName": "pvc-1",
                "DiskType": "CLOUD_HSSD",
                "DiskSize": 50,
                "ThroughputPerformance": 100,
                "Encrypt": "ENCRYPT",
                "Tags": [{ "Key": "cluster", "Value": "c1" }],
                "Placement": { "Zone": "ap-guangzhou-3", "ProjectId": 0 },
            })),
        )
        .await;
    let id = v["DiskIdSet"][0].as_str().unwrap();
    assert!(well_formed_id(id, "disk-") && id.len() == 13, "{id}");
    let disk = h.disk(id).await;
    assert_eq!(disk["DiskName"], "pvc-1");
    assert_eq!(disk["DiskState"], "UNATTACHED");
    assert_eq!(disk["DiskSize"], 50);
    assert_eq!(disk["DiskType"], "CLOUD_HSSD");
    assert_eq!(disk["Placement"]["Zone"], "ap-guangzhou-3");
    assert_eq!(disk["InstanceId"], "");
    assert_eq!(disk["Attached"], false);
    assert_eq!(disk["Encrypt"], true);
    assert_eq!(disk["ThroughputPerformance"], 100);
    assert_eq!(disk["DiskChargeType"], "POSTPAID_BY_HOUR");
    assert_eq!(disk["Tags"], json!([{ "Key": "cluster", "Value": "c1" }]));
    let time = disk["CreateTime"].as_str().unwrap();
    assert_eq!(time.len(), 19, "{time}");
    assert_eq!(&time[4..5], "-");
    assert_eq!(&time[10..11], " ");
    let image = h.cbs.layout().disk_image(id);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 50 << 30);

    let v = h
        .ok("CreateDisks", create_body(json!({ "DiskCount": 3 })))
        .await;
    assert_eq!(v["DiskIdSet"].as_array().unwrap().len(), 3);
    let default_name = h.disk(v["DiskIdSet"][0].as_str().unwrap()).await;
    assert_eq!(default_name["DiskName"], "未命名");
}

#[tokio::test]
async fn create_rejects_bad_requests_with_the_real_codes() {
    let h = Harness::new(instant_config());
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "Placement": { "Zone": "ap-guangzhou-9" } }),
            "InvalidParameterValue",
            "Placement.Zone",
        ),
        (
            json!({ "DiskType": "CLOUD_FLOPPY" }),
            "InvalidParameterValue",
            "DiskType",
        ),
        (
            json!({ "DiskSize": 5 }),
            "InvalidParameterValue",
            "DiskSize",
        ),
        (
            json!({ "DiskSize": 15 }),
            "InvalidParameterValue",
            "DiskSize",
        ),
        (
            json!({ "DiskType": "CLOUD_SSD", "DiskSize": 10 }),
            "InvalidParameterValue",
            "DiskSize",
        ),
        (
            json!({ "DiskSize": 32010 }),
            "InvalidParameterValue",
            "DiskSize",
        ),
        (json!({ "DiskSize": null }), "MissingParameter", "DiskSize"),
        (json!({ "DiskType": null }), "MissingParameter", "DiskType"),
        (json!({ "Bogus": 1 }), "UnknownParameter", "Bogus"),
        (
            json!({ "DiskSize": "ten" }),
            "InvalidParameter",
            "invalid type",
        ),
        (
            json!({ "DiskChargeType": "PREPAID" }),
            "MissingParameter",
            "DiskChargePrepaid",
        ),
        (
            json!({ "DiskChargeType": "PREPAID", "DiskChargePrepaid": { "Period": 13 } }),
            "InvalidParameterValue",
            "Period",
        ),
        (
            json!({ "DiskChargeType": "FREE" }),
            "InvalidParameterValue",
            "DiskChargeType",
        ),
        (
            json!({ "ThroughputPerformance": 100 }),
            "InvalidParameterValue",
            "ThroughputPerformance",
        ),
        (
            json!({ "DiskType": "CLOUD_TSSD", "ThroughputPerformance": 651 }),
            "InvalidParameterValue",
            "650",
        ),
        (
            json!({ "Tags": [{ "Key": "qcloud:x", "Value": "v" }] }),
            "InvalidParameter",
            "reserved",
        ),
        (
            json!({ "Tags": [{ "Key": "k", "Value": "" }] }),
            "InvalidParameter",
            "empty",
        ),
        (
            json!({ "Tags": [{ "Key": "k" }] }),
            "MissingParameter",
            "Value",
        ),
        (
            json!({ "DiskCount": 51 }),
            "InvalidParameterValue.LimitExceeded",
            "DiskCount",
        ),
        (
            json!({ "DiskCount": 0 }),
            "InvalidParameterValue",
            "DiskCount",
        ),
        (
            json!({ "Encrypt": "YES" }),
            "InvalidParameterValue",
            "Encrypt",
        ),
        (
            json!({ "DiskName": "x".repeat(61) }),
            "InvalidParameterValue",
            "DiskName",
        ),
        (
            json!({ "ClientToken": "t".repeat(65) }),
            "InvalidParameterValue",
            "ClientToken",
        ),
        (
            json!({ "SnapshotId": "snap-00000000" }),
            "InvalidSnapshotId.NotFound",
            "snap-00000000",
        ),
        (
            json!({ "AutoMountConfiguration": { "InstanceId": ["ins-a"], "MountPoint": ["/m"], "FileSystemType": "ext4" } }),
            "UnsupportedOperation",
            "AutoMountConfiguration",
        ),
    ];
    for (extra, code, mentions) in cases {
        let err = h
            .call("CreateDisks", create_body(extra.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code, code, "{extra}: {}", err.message);
        assert!(
            err.message.contains(mentions),
            "{extra}: {:?} should mention {mentions}",
            err.message
        );
    }
    let v = h.ok("DescribeDisks", json!({})).await;
    assert_eq!(v["TotalCount"], 0, "no failed create left a disk");
    let images = std::fs::read_dir(h.dir.path().join("cbs/disks")).unwrap();
    assert_eq!(images.count(), 0, "nor an image");
}

#[tokio::test]
async fn client_token_returns_the_same_disks_and_the_quota_holds() {
    let mut config = instant_config();
    config.quotas.insert("ap-guangzhou-3".into(), 3);
    let h = Harness::new(config);
    let body = create_body(json!({ "ClientToken": "tok-1", "DiskCount": 2 }));
    let first = h.ok("CreateDisks", body.clone()).await;
    let again = h.ok("CreateDisks", body).await;
    assert_eq!(first["DiskIdSet"], again["DiskIdSet"]);
    assert_eq!(h.ok("DescribeDisks", json!({})).await["TotalCount"], 2);

    assert_eq!(
        h.code("CreateDisks", create_body(json!({ "DiskCount": 2 })))
            .await,
        "ResourceInsufficient.OverQuota"
    );
    h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    assert_eq!(
        h.code("CreateDisks", create_body(json!({}))).await,
        "ResourceInsufficient.OverQuota"
    );
    h.create("ap-guangzhou-4", "CLOUD_PREMIUM", 10).await;

    let quota = h
        .ok(
            "DescribeDiskConfigQuota",
            json!({ "InquiryType": "INQUIRY_CBS_CONFIG", "DiskTypes": ["CLOUD_SSD"], "DiskChargeType": "POSTPAID_BY_HOUR" }),
        )
        .await;
    let set = quota["DiskConfigSet"].as_array().unwrap();
    assert_eq!(set.len(), 2, "{quota}");
    let zone3 = set.iter().find(|c| c["Zone"] == "ap-guangzhou-3").unwrap();
    assert_eq!(zone3["Available"], false, "zone 3 is full");
    assert_eq!(zone3["MinDiskSize"], 20);
    assert_eq!(zone3["MaxDiskSize"], 32000);
    assert_eq!(zone3["DiskUsage"], "DATA_DISK");
    let zone4 = set.iter().find(|c| c["Zone"] == "ap-guangzhou-4").unwrap();
    assert_eq!(zone4["Available"], true);
    let all = h
        .ok(
            "DescribeDiskConfigQuota",
            json!({ "InquiryType": "INQUIRY_CBS_CONFIG", "Zones": ["ap-guangzhou-4"] }),
        )
        .await;
    assert_eq!(all["DiskConfigSet"].as_array().unwrap().len(), 6 * 2);
    for (body, code) in [
        (json!({}), "MissingParameter"),
        (json!({ "InquiryType": "X" }), "InvalidParameterValue"),
        (
            json!({ "InquiryType": "INQUIRY_CVM_CONFIG" }),
            "UnsupportedOperation",
        ),
        (
            json!({ "InquiryType": "INQUIRY_CBS_CONFIG", "Zones": ["nowhere"] }),
            "InvalidParameterValue",
        ),
        (
            json!({ "InquiryType": "INQUIRY_CBS_CONFIG", "DiskTypes": ["CLOUD_X"] }),
            "InvalidParameterValue",
        ),
    ] {
        assert_eq!(h.code("DescribeDiskConfigQuota", body).await, code);
    }
}

#[tokio::test]
async fn describe_pages_filters_and_checks_its_input() {
    let h = Harness::new(instant_config());
    let mut ids = Vec::new();
    for n in 0..5 {
        let v = h
            .ok(
                "CreateDisks",
                create_body(json!({
                    "DiskName": format!("d{n}"),
                    "Tags": [{ "Key": "team", "Value": if n % 2 == 0 { "even" } else { "odd" } }],
                })),
            )
            .await;
        ids.push(v["DiskIdSet"][0].as_str().unwrap().to_owned());
    }
    let listed = |v: &Value| -> Vec<String> {
        v["DiskSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["DiskId"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = h
        .ok("DescribeDisks", json!({ "Offset": 0, "Limit": 2 }))
        .await;
    let second = h
        .ok("DescribeDisks", json!({ "Offset": 2, "Limit": 2 }))
        .await;
    let third = h
        .ok("DescribeDisks", json!({ "Offset": 4, "Limit": 2 }))
        .await;
    assert_eq!(first["TotalCount"], 5);
    let mut paged = listed(&first);
    paged.extend(listed(&second));
    paged.extend(listed(&third));
    assert_eq!(paged, ids, "creation order, stable across pages");
    let desc = h.ok("DescribeDisks", json!({ "Order": "DESC" })).await;
    assert_eq!(listed(&desc)[0], ids[4]);

    let even = h
        .ok(
            "DescribeDisks",
            json!({ "Filters": [{ "Name": "tag:team", "Values": ["even"] }] }),
        )
        .await;
    assert_eq!(
        listed(&even),
        vec![ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    let both = h
        .ok(
            "DescribeDisks",
            json!({ "Filters": [
                { "Name": "tag-key", "Values": ["team"] },
                { "Name": "disk-name", "Values": ["d1", "d2"] },
                { "Name": "zone", "Values": ["ap-guangzhou-3"] },
                { "Name": "disk-state", "Values": ["UNATTACHED"] },
            ] }),
        )
        .await;
    assert_eq!(listed(&both), vec![ids[1].clone(), ids[2].clone()]);
    let none = h
        .ok(
            "DescribeDisks",
            json!({ "Filters": [{ "Name": "instance-id", "Values": ["ins-a"] }] }),
        )
        .await;
    assert_eq!(none["TotalCount"], 0);

    let unknown = h
        .ok(
            "DescribeDisks",
            json!({ "DiskIds": ["disk-zzzzzzzz", ids[3]] }),
        )
        .await;
    assert_eq!(
        listed(&unknown),
        vec![ids[3].clone()],
        "unknown IDs are absent"
    );

    for (body, code) in [
        (json!({ "DiskIds": ["vol-1"] }), "InvalidDiskId.Malformed"),
        (json!({ "DiskIds": ["disk-"] }), "InvalidDiskId.Malformed"),
        (
            json!({ "DiskIds": [ids[0]], "Filters": [{ "Name": "zone", "Values": ["x"] }] }),
            "InvalidParameter",
        ),
        (json!({ "Limit": 101 }), "InvalidParameterValue"),
        (
            json!({ "Filters": [{ "Name": "color", "Values": ["red"] }] }),
            "InvalidFilter",
        ),
        (
            json!({ "Filters": [{ "Name": "zone", "Values": [] }] }),
            "InvalidParameterValue",
        ),
        (json!({ "Order": "UP" }), "InvalidParameterValue"),
        (json!({ "Offset": -1 }), "InvalidParameter"),
    ] {
        assert_eq!(h.code("DescribeDisks", body.clone()).await, code, "{body}");
    }
}

#[tokio::test]
async fn modify_attributes_performance_and_policies() {
    let h = Harness::new(instant_config());
    let premium = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 20).await;
    let hssd = h.create("ap-guangzhou-3", "CLOUD_HSSD", 20).await;

    h.ok(
        "ModifyDiskAttributes",
        json!({ "DiskIds": [premium, hssd], "DiskName": "renamed", "ProjectId": 7 }),
    )
    .await;
    let disk = h.disk(&premium).await;
    assert_eq!(disk["DiskName"], "renamed");
    assert_eq!(disk["Placement"]["ProjectId"], 7);
    h.ok(
        "ModifyDiskAttributes",
        json!({ "DiskIds": [premium], "DiskType": "CLOUD_SSD" }),
    )
    .await;
    assert_eq!(h.disk(&premium).await["DiskType"], "CLOUD_SSD");
    for (body, code) in [
        (
            json!({ "DiskIds": [premium], "DiskType": "CLOUD_PREMIUM" }),
            "InvalidDisk.NotSupported",
        ),
        (
            json!({ "DiskIds": [premium, hssd], "DiskType": "CLOUD_SSD" }),
            "InvalidParameter",
        ),
        (
            json!({ "DiskIds": [hssd], "DiskType": "CLOUD_SSD", "DiskName": "x" }),
            "InvalidParameter",
        ),
        (json!({ "DiskIds": [premium] }), "MissingParameter"),
        (
            json!({ "DiskIds": ["disk-00000000"], "DiskName": "x" }),
            "InvalidDiskId.NotFound",
        ),
        (
            json!({ "DiskIds": [premium], "Portable": false }),
            "InvalidParameterValue",
        ),
    ] {
        assert_eq!(
            h.code("ModifyDiskAttributes", body.clone()).await,
            code,
            "{body}"
        );
    }

    h.ok(
        "ModifyDiskExtraPerformance",
        json!({ "DiskId": hssd, "ThroughputPerformance": 200 }),
    )
    .await;
    assert_eq!(h.disk(&hssd).await["ThroughputPerformance"], 200);
    assert_eq!(
        h.code(
            "ModifyDiskExtraPerformance",
            json!({ "DiskId": premium, "ThroughputPerformance": 200 })
        )
        .await,
        "InvalidDisk.NotSupported"
    );
    assert_eq!(
        h.code(
            "ModifyDiskExtraPerformance",
            json!({ "DiskId": hssd, "ThroughputPerformance": 700 })
        )
        .await,
        "InvalidParameter"
    );

    h.ok(
        "BindAutoSnapshotPolicy",
        json!({ "AutoSnapshotPolicyId": "asp-11112222", "DiskIds": [hssd] }),
    )
    .await;
    let with = h
        .ok(
            "DescribeDisks",
            json!({ "DiskIds": [hssd], "ReturnBindAutoSnapshotPolicy": true }),
        )
        .await;
    assert_eq!(
        with["DiskSet"][0]["AutoSnapshotPolicyIds"],
        json!(["asp-11112222"])
    );
    assert_eq!(
        h.code(
            "BindAutoSnapshotPolicy",
            json!({ "AutoSnapshotPolicyId": "asp-11112222", "DiskIds": [hssd] })
        )
        .await,
        "InvalidDisk.AlreadyBound"
    );
    assert_eq!(
        h.code(
            "BindAutoSnapshotPolicy",
            json!({ "AutoSnapshotPolicyId": "asp-99999999", "DiskIds": [hssd] })
        )
        .await,
        "InvalidAutoSnapshotPolicyId.NotFound"
    );
    h.ok(
        "UnbindAutoSnapshotPolicy",
        json!({ "AutoSnapshotPolicyId": "asp-11112222", "DiskIds": [hssd] }),
    )
    .await;
    let without = h
        .ok(
            "DescribeDisks",
            json!({ "DiskIds": [hssd], "ReturnBindAutoSnapshotPolicy": true }),
        )
        .await;
    assert_eq!(without["DiskSet"][0]["AutoSnapshotPolicyIds"], json!([]));
    assert!(
        h.cbs
            .call("NoSuchAction", json!({}))
            .await
            .unwrap_err()
            .is_none(),
        "unknown actions are left to the front door"
    );
}
