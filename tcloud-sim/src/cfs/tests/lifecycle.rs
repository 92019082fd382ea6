//! Deletion, mount targets, quotas, the stuck fault, races with the ticker, and restarts that
//! reconcile the data plane with the state.

use super::*;
use crate::faults::FaultRule;

#[tokio::test]
async fn delete_removes_the_directory_the_export_and_the_token() {
    let h = Harness::new(instant_config());
    let id = h
        .create_available(json!({ "ClientToken": "pvc-del" }))
        .await;
    let ip = h.mount_target(&id).await["IpAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let layout = h.cfs.layout().clone();
    std::fs::create_dir_all(layout.fs_dir(&id).join("sub/dir")).unwrap();
    std::fs::write(layout.fs_dir(&id).join("sub/dir/f"), b"x").unwrap();
    h.ok("DeleteCfsFileSystem", json!({ "FileSystemId": id }))
        .await;
    assert!(!layout.fs_dir(&id).exists());
    assert!(std::fs::symlink_metadata(layout.export_link(&ip)).is_err());
    assert!(!layout.fsid_file(&ip).exists());
    assert_eq!(
        h.ok("DescribeCfsFileSystems", json!({ "FileSystemId": id }))
            .await["TotalCount"],
        0
    );
    for (action, body, code) in [
        (
            "DeleteCfsFileSystem",
            json!({ "FileSystemId": id }),
            "ResourceNotFound.FileSystemNotFound",
        ),
        (
            "DescribeMountTargets",
            json!({ "FileSystemId": id }),
            "ResourceNotFound.FileSystemNotFound",
        ),
        (
            "DeleteCfsFileSystem",
            json!({ "FileSystemId": "" }),
            "InvalidParameterValue.MissingFsParameter",
        ),
        (
            "DeleteCfsFileSystem",
            json!({ "FileSystemId": "x" }),
            "InvalidParameterValue.InvalidFileSystemId",
        ),
        ("DeleteCfsFileSystem", json!({}), "MissingParameter"),
        (
            "DescribeMountTargets",
            json!({ "FileSystemId": "" }),
            "InvalidParameterValue.MissingFileSystemId",
        ),
    ] {
        assert_eq!(h.code(action, body.clone()).await, code, "{action} {body}");
    }
    let again = h
        .ok(
            "CreateCfsFileSystem",
            create_body(json!({ "ClientToken": "pvc-del" })),
        )
        .await;
    assert_ne!(
        again["FileSystemId"], id,
        "the token of a deleted file system is free"
    );
}

#[tokio::test]
async fn deleting_the_mount_target_takes_the_export_away() {
    let h = Harness::new(instant_config());
    let id = h.create_available(json!({})).await;
    let target = h.mount_target(&id).await;
    let ip = target["IpAddress"].as_str().unwrap().to_owned();
    assert_eq!(
        h.code(
            "DeleteMountTarget",
            json!({ "FileSystemId": id, "MountTargetId": "mount-00000000" })
        )
        .await,
        "ResourceNotFound.MountTargetNotFound"
    );
    h.ok(
        "DeleteMountTarget",
        json!({ "FileSystemId": id, "MountTargetId": target["MountTargetId"] }),
    )
    .await;
    let none = h
        .ok("DescribeMountTargets", json!({ "FileSystemId": id }))
        .await;
    assert_eq!(none["NumberOfMountTargets"], 0);
    assert_eq!(none["MountTargets"], json!([]));
    assert!(std::fs::symlink_metadata(h.cfs.layout().export_link(&ip)).is_err());
    assert!(h.cfs.layout().fs_dir(&id).is_dir(), "the data stays");
    let h = h.restart(instant_config());
    h.cfs.reconcile().await;
    assert!(
        std::fs::symlink_metadata(h.cfs.layout().export_link(&ip)).is_err(),
        "and a restart does not bring the export back"
    );
    h.ok("DeleteCfsFileSystem", json!({ "FileSystemId": id }))
        .await;
}

#[tokio::test]
async fn quotas_are_stored_with_real_usage() {
    let h = Harness::new(CfsConfig {
        create_latency: Duration::from_secs(3600),
        ..instant_config()
    });
    let id = h.create(json!({})).await;
    let quota = |extra: Value| {
        let mut body = json!({ "FileSystemId": id, "UserType": "Uid", "UserId": "0", "CapacityHardLimit": 10, "FileHardLimit": 1000 });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    assert_eq!(
        h.code("SetUserQuota", quota(json!({}))).await,
        "InvalidParameterValue.InvalidFsStatus"
    );
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
    h.cfs.complete_due().await;
    for (extra, code) in [
        (
            json!({ "UserType": "User" }),
            "InvalidParameterValue.QuotaUserTypeError",
        ),
        (
            json!({ "UserId": "root" }),
            "InvalidParameterValue.QuotaUserIdError",
        ),
        (
            json!({ "CapacityHardLimit": 0 }),
            "InvalidParameterValue.QuotaCapLimitError",
        ),
        (
            json!({ "FileHardLimit": 0 }),
            "InvalidParameterValue.QuotaFileLimitError",
        ),
        (
            json!({ "FileSystemId": "cfs-00000000" }),
            "ResourceNotFound.FileSystemNotFound",
        ),
    ] {
        assert_eq!(
            h.code("SetUserQuota", quota(extra.clone())).await,
            code,
            "{extra}"
        );
    }
    assert_eq!(
        h.code(
            "SetUserQuota",
            json!({ "FileSystemId": id, "UserType": "Gid", "UserId": "5" })
        )
        .await,
        "MissingParameter"
    );
    h.ok("SetUserQuota", quota(json!({}))).await;
    h.ok("SetUserQuota", quota(json!({ "CapacityHardLimit": 20 })))
        .await;
    h.ok(
        "SetUserQuota",
        json!({ "FileSystemId": id, "UserType": "Gid", "UserId": "1234", "FileHardLimit": 7 }),
    )
    .await;

    let dir = h.cfs.layout().fs_dir(&id);
    std::fs::write(dir.join("owned-by-root"), vec![0u8; 8192]).unwrap();
    let all = h
        .ok("DescribeUserQuota", json!({ "FileSystemId": id }))
        .await;
    assert_eq!(all["TotalCount"], 2, "{all}");
    let uid = &all["UserQuotaInfo"][0];
    let me = current_uid();
    assert_eq!(uid["UserType"], "Uid");
    assert_eq!(uid["UserId"], "0");
    assert_eq!(uid["CapacityHardLimit"], 20, "updated in place");
    assert_eq!(uid["FileHardLimit"], 1000);
    assert_eq!(uid["FileSystemId"], id);
    if me == 0 {
        assert_eq!(uid["FileUsed"], 1);
        assert_eq!(uid["CapacityUsed"], 1, "rounded up to a GiB");
    }
    let gid = &all["UserQuotaInfo"][1];
    assert_eq!(gid["UserType"], "Gid");
    assert_eq!(gid["CapacityHardLimit"], 0);
    assert_eq!(gid["FileHardLimit"], 7);
    assert_eq!(gid["FileUsed"], 0);
    let filtered = h
        .ok(
            "DescribeUserQuota",
            json!({ "FileSystemId": id, "Filters": [{ "Name": "UserType", "Values": ["Gid"] }] }),
        )
        .await;
    assert_eq!(filtered["TotalCount"], 1);
    assert_eq!(filtered["UserQuotaInfo"][0]["UserId"], "1234");
    assert_eq!(
        h.code(
            "DescribeUserQuota",
            json!({ "FileSystemId": id, "Filters": [{ "Name": "Path", "Values": ["/"] }] })
        )
        .await,
        "InvalidParameterValue"
    );

    let h = h.restart(instant_config());
    assert_eq!(
        h.ok("DescribeUserQuota", json!({ "FileSystemId": id }))
            .await["TotalCount"],
        2,
        "quotas survive a restart"
    );
    h.ok(
        "DeleteUserQuota",
        json!({ "FileSystemId": id, "UserType": "Gid", "UserId": "1234" }),
    )
    .await;
    assert_eq!(
        h.code(
            "DeleteUserQuota",
            json!({ "FileSystemId": id, "UserType": "Gid", "UserId": "1234" })
        )
        .await,
        "ResourceNotFound"
    );
    assert_eq!(
        h.ok("DescribeUserQuota", json!({ "FileSystemId": id }))
            .await["TotalCount"],
        1
    );
}

/// The UID the tests run as, read from /proc (no libc call needed).
fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

#[tokio::test]
async fn a_stuck_creation_waits_for_the_fault_to_clear_even_across_restarts() {
    let h = Harness::new(instant_config());
    h.faults.replace(vec![
        "CreateCfsFileSystem:stuck=true"
            .parse::<FaultRule>()
            .unwrap(),
    ]);
    let id = h.create(json!({})).await;
    let free = {
        h.faults.replace(vec![]);
        let free = h.create(json!({})).await;
        h.faults.replace(vec![
            "CreateCfsFileSystem:stuck=true"
                .parse::<FaultRule>()
                .unwrap(),
        ]);
        free
    };
    assert_eq!(h.cfs.complete_due().await, 1, "only the unstuck one");
    assert_eq!(h.fs(&free).await["LifeCycleState"], "available");
    assert_eq!(h.fs(&id).await["LifeCycleState"], "creating");

    let h = h.restart(instant_config());
    h.faults.replace(vec![
        "CreateCfsFileSystem:stuck=true"
            .parse::<FaultRule>()
            .unwrap(),
    ]);
    assert_eq!(h.cfs.complete_due().await, 0);
    assert_eq!(h.fs(&id).await["LifeCycleState"], "creating");
    h.faults.replace(vec![]);
    assert_eq!(h.cfs.complete_due().await, 1);
    assert_eq!(h.fs(&id).await["LifeCycleState"], "available");
}

#[tokio::test]
async fn a_file_system_gone_before_its_creation_completes_is_not_exported() {
    let h = Harness::new(instant_config());
    let id = h.create(json!({})).await;
    let ip = h.mount_target(&id).await["IpAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    h.cfs
        .store
        .update(|s| s.cfs.file_systems.retain(|f| f.file_system_id != id))
        .unwrap();
    assert_eq!(h.cfs.complete_due().await, 0);
    assert!(std::fs::symlink_metadata(h.cfs.layout().export_link(&ip)).is_err());
    assert!(!h.cfs.layout().fsid_file(&ip).exists());
}

#[tokio::test]
async fn a_restart_restores_exports_and_removes_what_the_state_does_not_know() {
    let h = Harness::new(instant_config());
    let id = h.create_available(json!({})).await;
    let creating = {
        h.faults.replace(vec![
            "CreateCfsFileSystem:stuck=true"
                .parse::<FaultRule>()
                .unwrap(),
        ]);
        h.create(json!({})).await
    };
    let target = h.mount_target(&id).await;
    let ip = target["IpAddress"].as_str().unwrap().to_owned();
    let layout = h.cfs.layout().clone();
    std::fs::write(layout.fs_dir(&id).join("kept"), b"data").unwrap();
    std::fs::remove_file(layout.export_link(&ip)).unwrap();
    std::fs::write(layout.fsid_file(&ip), b"wrongfsid").unwrap();
    std::os::unix::fs::symlink("/tmp", layout.export_link("10.99.99.99")).unwrap();
    std::fs::write(layout.fsid_file("10.99.99.99"), b"stale").unwrap();
    std::fs::write(layout.exports_dir().join(".10.1.1.1.link.tmp1"), b"").unwrap();
    std::fs::create_dir_all(layout.fs_dir("cfs-orphan01").join("x")).unwrap();
    std::fs::create_dir_all(layout.fs_root().join("lost+found")).unwrap();
    std::fs::remove_dir_all(layout.fs_dir(&creating)).unwrap();

    let h = h.restart(instant_config());
    h.faults.replace(vec![
        "CreateCfsFileSystem:stuck=true"
            .parse::<FaultRule>()
            .unwrap(),
    ]);
    h.cfs.reconcile().await;
    assert!(layout.is_published(&ip, &id, target["FSID"].as_str().unwrap()));
    assert_eq!(
        std::fs::read(layout.export_link(&ip).join("kept")).unwrap(),
        b"data"
    );
    let mut entries = layout.export_entries().unwrap();
    entries.sort();
    assert_eq!(entries, [ip.clone(), format!("{ip}.fsid")]);
    let mut dirs = layout.fs_dirs().unwrap();
    dirs.sort();
    let mut expected = vec![id.clone(), creating.clone(), "lost+found".to_owned()];
    expected.sort();
    assert_eq!(
        dirs, expected,
        "orphans removed, a creating one's directory restored"
    );
}
