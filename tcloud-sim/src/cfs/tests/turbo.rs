//! CFS Turbo file systems (TB, TP): the request checks only they have, their description, their
//! export with the `cfs` root directory, restarts and deletion.

use super::*;

/// A valid Turbo request of `storage_type` with `capacity` GiB, with `extra` keys replacing (or,
/// when null, removing) its keys.
fn turbo_body(storage_type: &str, capacity: u64, extra: Value) -> Value {
    let mut body = create_body(json!({
        "Protocol": "TURBO",
        "StorageType": storage_type,
        "NetInterface": "CCN",
        "CcnId": "ccn-abc12345",
        "CidrBlock": "10.8.0.0/24",
        "Capacity": capacity,
        "VpcId": null,
        "SubnetId": null,
    }));
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

impl Harness {
    async fn create_turbo(&self, storage_type: &str, capacity: u64) -> String {
        let v = self
            .ok(
                "CreateCfsFileSystem",
                turbo_body(storage_type, capacity, json!({})),
            )
            .await;
        v["FileSystemId"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn a_turbo_file_system_is_exported_with_its_cfs_root_once_available() {
    let h = Harness::new(CfsConfig {
        create_latency: Duration::from_secs(3600),
        ..instant_config()
    });
    let id = h.create_turbo("TB", 40_960).await;
    let layout = h.cfs.layout().clone();
    assert!(
        layout.turbo_root(&id).is_dir(),
        "the root directory is made with the file system"
    );
    let target = h.mount_target(&id).await;
    let ip = target["IpAddress"].as_str().unwrap().to_owned();
    let fsid = target["FSID"].as_str().unwrap().to_owned();
    assert!(model::private_host_ip(&ip).is_some(), "{ip}");
    assert_eq!(fsid.len(), 8, "{fsid}");
    assert_eq!(target["NetworkInterface"], "CCN");
    assert_eq!(target["CcnID"], "ccn-abc12345");
    assert_eq!(target["CidrBlock"], "10.8.0.0/24");
    assert_eq!(target["LifeCycleState"], "creating");
    assert!(
        std::fs::symlink_metadata(layout.export_link(&ip)).is_err(),
        "not exported while creating"
    );
    assert_eq!(h.fs(&id).await["LifeCycleState"], "creating");

    h.cfs
        .store
        .update(|s| {
            s.cfs
                .file_system_mut(&id)
                .unwrap()
                .pending
                .as_mut()
                .unwrap()
                .due_at_unix_ms = 0
        })
        .unwrap();
    assert_eq!(h.cfs.complete_due().await, 1);
    let fs = h.fs(&id).await;
    assert_eq!(fs["LifeCycleState"], "available");
    assert_eq!(fs["StorageType"], "TB");
    assert_eq!(fs["Protocol"], "TURBO");
    assert_eq!(fs["Capacity"], 40_960);
    assert_eq!(fs["SizeLimit"], 40_960);
    assert_eq!(h.mount_target(&id).await["LifeCycleState"], "available");
    assert!(layout.is_published(&ip, &id, &fsid));
    assert_eq!(
        std::fs::read_link(layout.export_link(&ip)).unwrap(),
        layout.fs_dir(&id)
    );
    assert_eq!(
        std::fs::read_to_string(layout.fsid_file(&ip)).unwrap(),
        fsid
    );
    let root = layout.export_link(&ip).join("cfs");
    assert!(root.is_dir(), "<host>:/<fsid>/cfs resolves");
    std::fs::write(root.join("data"), b"turbo").unwrap();

    // Persisted like any CFS file system; a restart restores a lost root directory and export.
    std::fs::remove_dir_all(layout.turbo_root(&id)).unwrap();
    layout.unpublish(&ip).unwrap();
    let h = h.restart(instant_config());
    h.cfs.reconcile().await;
    let fs = h.fs(&id).await;
    assert_eq!(
        (&fs["StorageType"], &fs["Protocol"], &fs["Capacity"]),
        (&json!("TB"), &json!("TURBO"), &json!(40_960))
    );
    assert_eq!(h.mount_target(&id).await["FSID"], fsid.as_str());
    assert!(layout.is_published(&ip, &id, &fsid));
    assert!(layout.export_link(&ip).join("cfs").is_dir());
}

#[tokio::test]
async fn turbo_requests_are_checked_against_the_documented_rules() {
    let h = Harness::new(instant_config());
    let cases = [
        // Minimums and steps (seeds 002:34918-34920): TB 40 TiB by 20 TiB, TP 20 TiB by 10 TiB.
        (
            turbo_body("TB", 20_480, json!({})),
            "InvalidParameterValue.InvalidTurboCapacity",
        ),
        (
            turbo_body("TB", 51_200, json!({})),
            "InvalidParameterValue.InvalidTurboCapacity",
        ),
        (
            turbo_body("TP", 10_240, json!({})),
            "InvalidParameterValue.InvalidTurboCapacity",
        ),
        (
            turbo_body("TP", 20_480, json!({ "Capacity": null })),
            "InvalidParameterValue.InvalidTurboCapacity",
        ),
        // The CCN and its CIDR block (seeds 002:34922, 002:34925-34927).
        (
            turbo_body("TB", 40_960, json!({ "CcnId": null })),
            "MissingParameter",
        ),
        (
            turbo_body("TB", 40_960, json!({ "CcnId": "" })),
            "MissingParameter",
        ),
        (
            turbo_body("TP", 20_480, json!({ "CidrBlock": null })),
            "MissingParameter",
        ),
        (
            turbo_body("TP", 20_480, json!({ "CcnId": "vpc-abc12345" })),
            "InvalidParameterValue",
        ),
        (
            turbo_body("TP", 20_480, json!({ "CidrBlock": "10.0.0.0/8" })),
            "InvalidParameterValue",
        ),
        (
            turbo_body("TP", 20_480, json!({ "NetInterface": "VPC" })),
            "InvalidParameterValue.InvalidNetInterface",
        ),
        (
            turbo_body("TP", 20_480, json!({ "MountIP": "10.9.9.9" })),
            "InvalidParameterValue.InvalidMountTargetIp",
        ),
        (
            turbo_body("TP", 20_480, json!({ "CfsVersion": "v3.1" })),
            "InvalidParameterValue",
        ),
        // TURBO goes with TB and TP only, and they with it only.
        (
            turbo_body("SD", 20_480, json!({})),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            turbo_body("HP", 20_480, json!({})),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            turbo_body("TB", 40_960, json!({ "Protocol": "NFS" })),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            turbo_body("TP", 20_480, json!({ "Protocol": null })),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            create_body(json!({ "StorageType": "TB", "Protocol": "CIFS" })),
            "InvalidParameterValue.InvalidProtocol",
        ),
        (
            create_body(json!({ "StorageType": "SD", "Protocol": "TURBO" })),
            "InvalidParameterValue.InvalidProtocol",
        ),
    ];
    for (body, code) in cases {
        assert_eq!(
            h.code("CreateCfsFileSystem", body.clone()).await,
            code,
            "{body}"
        );
    }
    assert_eq!(
        h.ok("DescribeCfsFileSystems", json!({})).await["TotalCount"],
        0,
        "no refused request left a file system"
    );
    assert!(
        h.cfs.layout().fs_dirs().unwrap().is_empty(),
        "nor a directory"
    );

    let tp = h.create_turbo("TP", 30_720).await;
    let tb = h.create_turbo("TB", 61_440).await;
    let nfs = h.create(json!({ "Capacity": 5 })).await;
    h.cfs.complete_due().await;
    let listed = h.ok("DescribeCfsFileSystems", json!({})).await;
    let shown: Vec<(String, String, String, u64)> = listed["FileSystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["FileSystemId"].as_str().unwrap().to_owned(),
                f["StorageType"].as_str().unwrap().to_owned(),
                f["Protocol"].as_str().unwrap().to_owned(),
                f["Capacity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (tp.clone(), "TP".into(), "TURBO".into(), 30_720),
            (tb.clone(), "TB".into(), "TURBO".into(), 61_440),
            (nfs.clone(), "SD".into(), "NFS".into(), 163_840),
        ],
        "a general-purpose type ignores Capacity"
    );
    let layout = h.cfs.layout();
    assert!(layout.turbo_root(&tp).is_dir() && layout.turbo_root(&tb).is_dir());
    assert!(
        !layout.turbo_root(&nfs).exists(),
        "only a Turbo file system has the cfs root directory"
    );
}

#[tokio::test]
async fn deleting_a_turbo_file_system_removes_its_export() {
    let h = Harness::new(instant_config());
    let id = h.create_turbo("TP", 20_480).await;
    h.cfs.complete_due().await;
    let ip = h.mount_target(&id).await["IpAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let layout = h.cfs.layout().clone();
    std::fs::write(layout.turbo_root(&id).join("f"), b"x").unwrap();
    h.ok("DeleteCfsFileSystem", json!({ "FileSystemId": id }))
        .await;
    assert!(std::fs::symlink_metadata(layout.export_link(&ip)).is_err());
    assert!(!layout.fsid_file(&ip).exists());
    assert!(!layout.fs_dir(&id).exists());
    assert_eq!(
        h.ok("DescribeCfsFileSystems", json!({ "FileSystemId": id }))
            .await["TotalCount"],
        0
    );
    assert_eq!(
        h.code("DescribeMountTargets", json!({ "FileSystemId": id }))
            .await,
        "ResourceNotFound.FileSystemNotFound"
    );
    let h = h.restart(instant_config());
    h.cfs.reconcile().await;
    assert!(
        std::fs::symlink_metadata(h.cfs.layout().export_link(&ip)).is_err(),
        "a restart does not bring it back"
    );
}
