//! Attach, detach, resize, terminate, snapshots, the stuck fault and restarts.

use super::*;

#[tokio::test]
async fn attach_detach_through_the_transitions() {
    let h = Harness::new(instant_config());
    let id = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    h.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": "ins-a" }),
    )
    .await;
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "ATTACHING");
    assert_eq!(disk["Attached"], false);
    assert_eq!(
        h.code("DetachDisks", json!({ "DiskIds": [id] })).await,
        "InvalidDisk.Busy"
    );
    assert_eq!(
        h.code("ResizeDisk", json!({ "DiskId": id, "DiskSize": 20 }))
            .await,
        "InvalidDisk.Busy"
    );

    assert_eq!(h.cbs.complete_due().await, 1);
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "ATTACHED");
    assert_eq!(disk["Attached"], true);
    assert_eq!(disk["InstanceId"], "ins-a");
    let device = h
        .cbs
        .store
        .read(|s| s.cbs.disk(&id).unwrap().loop_device.clone().unwrap());
    let layout = h.cbs.layout();
    assert_eq!(
        std::fs::read_link(layout.link("ins-a", &id)).unwrap(),
        std::path::Path::new(&device)
    );
    let serial = layout
        .sys_dir("ins-a")
        .join("block")
        .join(device.trim_start_matches("/dev/"))
        .join("serial");
    assert_eq!(std::fs::read_to_string(&serial).unwrap(), id);
    assert_eq!(
        h.devices.backing_file(&device),
        Some(layout.disk_image(&id))
    );
    let num = h
        .ok(
            "DescribeInstancesDiskNum",
            json!({ "InstanceIds": ["ins-a"] }),
        )
        .await;
    assert_eq!(num["AttachDetail"][0]["AttachedDiskCount"], 1);
    assert_eq!(num["AttachDetail"][0]["MaxAttachCount"], 20);
    let on_a = h
        .ok(
            "DescribeDisks",
            json!({ "Filters": [{ "Name": "instance-id", "Values": ["ins-a"] }] }),
        )
        .await;
    assert_eq!(on_a["TotalCount"], 1);

    assert_eq!(
        h.code(
            "AttachDisks",
            json!({ "DiskIds": [id], "InstanceId": "ins-a" })
        )
        .await,
        "ResourceUnavailable.Attached"
    );
    assert_eq!(
        h.code("TerminateDisks", json!({ "DiskIds": [id] })).await,
        "ResourceUnavailable.Attached"
    );
    assert_eq!(
        h.code(
            "DetachDisks",
            json!({ "DiskIds": [id], "InstanceId": "ins-b" })
        )
        .await,
        "InvalidParameterValue"
    );

    h.ok(
        "DetachDisks",
        json!({ "DiskIds": [id], "InstanceId": "ins-a" }),
    )
    .await;
    assert_eq!(h.disk(&id).await["DiskState"], "DETACHING");
    assert_eq!(h.disk(&id).await["Attached"], true);
    h.cbs.complete_due().await;
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "UNATTACHED");
    assert_eq!(disk["InstanceId"], "");
    assert!(std::fs::symlink_metadata(layout.link("ins-a", &id)).is_err());
    assert!(!serial.exists());
    assert_eq!(h.devices.backing_file(&device), None);
    assert_eq!(
        h.code("DetachDisks", json!({ "DiskIds": [id] })).await,
        "InvalidDisk.NotSupported"
    );
}

#[tokio::test]
async fn attach_checks_disks_instances_zones_and_limits() {
    let mut config = instant_config();
    config.max_attach = 2;
    let h = Harness::new(config);
    let a = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    let b = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    let c = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    let far = h.create("ap-guangzhou-4", "CLOUD_PREMIUM", 10).await;
    let attach = |ids: Vec<&str>, instance: &str| json!({ "DiskIds": ids, "InstanceId": instance });
    for (body, code) in [
        (
            attach(vec!["disk-00000000"], "ins-a"),
            "InvalidDiskId.NotFound",
        ),
        (attach(vec![&a], "ins-zzz"), "InvalidInstanceId.NotFound"),
        (
            attach(vec![&far], "ins-a"),
            "ResourceUnavailable.ZoneNotMatch",
        ),
        (attach(vec![], "ins-a"), "MissingParameter"),
        (attach(vec![&a, &a], "ins-a"), "InvalidParameterValue"),
        (
            attach(vec![&a, &b, &c], "ins-a"),
            "LimitExceeded.InstanceAttachedDisk",
        ),
        (json!({ "DiskIds": [a] }), "MissingParameter"),
    ] {
        assert_eq!(h.code("AttachDisks", body.clone()).await, code, "{body}");
    }
    let eleven: Vec<String> = (0..11).map(|n| format!("disk-{n:08}")).collect();
    assert_eq!(
        h.code(
            "AttachDisks",
            json!({ "DiskIds": eleven, "InstanceId": "ins-a" })
        )
        .await,
        "InvalidParameterValue.LimitExceeded"
    );
    // A failed batch attaches nothing.
    assert_eq!(h.disk(&a).await["DiskState"], "UNATTACHED");
    h.ok("AttachDisks", attach(vec![&a, &b], "ins-a")).await;
    assert_eq!(
        h.code("AttachDisks", attach(vec![&c], "ins-a")).await,
        "LimitExceeded.InstanceAttachedDisk",
        "ATTACHING disks count against the limit"
    );
    h.ok("AttachDisks", attach(vec![&far], "ins-b")).await;
}

#[tokio::test]
async fn resize_grows_the_image_and_the_attached_device() {
    let h = Harness::new(instant_config());
    let id = h.create("ap-guangzhou-3", "CLOUD_SSD", 20).await;
    for (size, code) in [
        (20, "InvalidParameterValue"),
        (10, "InvalidParameterValue"),
        (25, "InvalidParameterValue"),
        (32_010, "InvalidParameterValue"),
    ] {
        let err = h
            .call("ResizeDisk", json!({ "DiskId": id, "DiskSize": size }))
            .await
            .unwrap_err();
        assert_eq!(err.code, code, "{size}");
        assert!(err.message.contains("DiskSize"), "{}", err.message);
    }
    assert_eq!(
        h.code(
            "ResizeDisk",
            json!({ "DiskId": "disk-00000000", "DiskSize": 30 })
        )
        .await,
        "InvalidDiskId.NotFound"
    );
    h.ok("ResizeDisk", json!({ "DiskId": id, "DiskSize": 30 }))
        .await;
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "EXPANDING");
    assert_eq!(disk["DiskSize"], 20, "the new size shows when done");
    h.cbs.complete_due().await;
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "UNATTACHED");
    assert_eq!(disk["DiskSize"], 30);
    let image = h.cbs.layout().disk_image(&id);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 30 << 30);

    h.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": "ins-a" }),
    )
    .await;
    h.cbs.complete_due().await;
    h.ok("ResizeDisk", json!({ "DiskId": id, "DiskSize": 40 }))
        .await;
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "EXPANDING");
    assert_eq!(disk["Attached"], true);
    h.cbs.complete_due().await;
    let disk = h.disk(&id).await;
    assert_eq!(disk["DiskState"], "ATTACHED", "back to where it was");
    assert_eq!(disk["DiskSize"], 40);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 40 << 30);
    assert_eq!(h.devices.refreshed.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn terminate_removes_postpaid_disks_and_recycles_prepaid_ones() {
    let h = Harness::new(instant_config());
    let postpaid = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    let v = h
        .ok(
            "CreateDisks",
            create_body(json!({
                "DiskChargeType": "PREPAID",
                "DiskChargePrepaid": { "Period": 1, "RenewFlag": "NOTIFY_AND_AUTO_RENEW" },
            })),
        )
        .await;
    let prepaid = v["DiskIdSet"][0].as_str().unwrap().to_owned();
    let disk = h.disk(&prepaid).await;
    assert_eq!(disk["DiskChargeType"], "PREPAID");
    assert_eq!(disk["RenewFlag"], "NOTIFY_AND_AUTO_RENEW");
    assert!(disk["DeadlineTime"].is_string());

    assert_eq!(
        h.code(
            "TerminateDisks",
            json!({ "DiskIds": [postpaid, "disk-00000000"] })
        )
        .await,
        "InvalidDiskId.NotFound"
    );
    assert_eq!(h.ok("DescribeDisks", json!({})).await["TotalCount"], 2);
    h.ok("TerminateDisks", json!({ "DiskIds": [postpaid, prepaid] }))
        .await;
    let left = h.ok("DescribeDisks", json!({})).await;
    assert_eq!(left["TotalCount"], 1);
    assert_eq!(left["DiskSet"][0]["DiskId"], prepaid);
    assert_eq!(left["DiskSet"][0]["DiskState"], "TORECYCLE");
    assert!(!h.cbs.layout().disk_image(&postpaid).exists());
    assert_eq!(
        h.code(
            "AttachDisks",
            json!({ "DiskIds": [prepaid], "InstanceId": "ins-a" })
        )
        .await,
        "InvalidDisk.NotSupported"
    );
    h.ok("TerminateDisks", json!({ "DiskIds": [prepaid] }))
        .await;
    assert_eq!(h.ok("DescribeDisks", json!({})).await["TotalCount"], 0);
    assert!(!h.cbs.layout().disk_image(&prepaid).exists());
}

#[tokio::test]
async fn stuck_fault_holds_the_transition_until_cleared() {
    let h = Harness::new(instant_config());
    let id = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    h.faults
        .replace(vec!["AttachDisks:stuck=true".parse().unwrap()]);
    h.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": "ins-a" }),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(h.cbs.complete_due().await, 0);
    }
    assert_eq!(h.disk(&id).await["DiskState"], "ATTACHING");
    // Other transitions are not held.
    let other = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    h.ok("ResizeDisk", json!({ "DiskId": other, "DiskSize": 20 }))
        .await;
    assert_eq!(h.cbs.complete_due().await, 1);
    h.faults.replace(vec![]);
    assert_eq!(h.cbs.complete_due().await, 1);
    assert_eq!(h.disk(&id).await["DiskState"], "ATTACHED");
}

#[tokio::test]
async fn a_failing_attach_stays_attaching_and_retries() {
    let h = Harness::new(instant_config());
    let id = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    h.devices.fail_attach.store(true, Ordering::SeqCst);
    h.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": "ins-a" }),
    )
    .await;
    assert_eq!(h.cbs.complete_due().await, 0);
    assert_eq!(h.disk(&id).await["DiskState"], "ATTACHING");
    assert_eq!(h.cbs.complete_due().await, 0, "postponed by a second");
    h.devices.fail_attach.store(false, Ordering::SeqCst);
    let pending = h
        .cbs
        .store
        .read(|s| s.cbs.disk(&id).unwrap().pending.clone().unwrap());
    assert!(pending.due_at_unix_ms > crate::state::unix_now_ms());
}

#[tokio::test]
async fn snapshots_copy_the_data_and_restore_into_bigger_disks() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut config = instant_config();
    config.snapshot_latency = Duration::from_secs(3600);
    let h = Harness::new(config);
    let id = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    let image = h.cbs.layout().disk_image(&id);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    file.seek(SeekFrom::Start(3 << 30)).unwrap();
    file.write_all(b"before").unwrap();
    drop(file);

    let v = h
        .ok(
            "CreateSnapshot",
            json!({ "DiskId": id, "SnapshotName": "s1", "Deadline": "2099-01-08T09:47:55+00:00" }),
        )
        .await;
    let snap = v["SnapshotId"].as_str().unwrap().to_owned();
    assert!(well_formed_id(&snap, "snap-"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    file.seek(SeekFrom::Start(3 << 30)).unwrap();
    file.write_all(b"after!").unwrap();
    drop(file);

    let described = h
        .ok("DescribeSnapshots", json!({ "SnapshotIds": [snap] }))
        .await;
    let s = &described["SnapshotSet"][0];
    assert_eq!(s["SnapshotState"], "CREATING");
    assert!(s["Percent"].as_u64().unwrap() < 100);
    assert_eq!(s["DiskId"], id);
    assert_eq!(s["DiskSize"], 10);
    assert_eq!(s["DiskUsage"], "DATA_DISK");
    assert_eq!(s["Placement"]["Zone"], "ap-guangzhou-3");
    assert_eq!(s["IsPermanent"], false);
    assert_eq!(s["DeadlineTime"], "2099-01-08 17:47:55");
    assert_eq!(
        h.code("DeleteSnapshots", json!({ "SnapshotIds": [snap] }))
            .await,
        "ResourceUnavailable.SnapshotCreating"
    );
    assert_eq!(
        h.code(
            "CreateDisks",
            create_body(json!({ "SnapshotId": snap, "DiskSize": null }))
        )
        .await,
        "ResourceUnavailable.SnapshotCreating"
    );

    h.cbs
        .store
        .update(|s| {
            for snap in &mut s.cbs.snapshots {
                if let Some(p) = snap.pending.as_mut() {
                    p.due_at_unix_ms = 0;
                }
            }
        })
        .unwrap();
    assert_eq!(h.cbs.complete_due().await, 1);
    let s = &h
        .ok(
            "DescribeSnapshots",
            json!({ "Filters": [{ "Name": "disk-id", "Values": [id] }] }),
        )
        .await["SnapshotSet"][0];
    assert_eq!(s["SnapshotState"], "NORMAL");
    assert_eq!(s["Percent"], 100);

    assert_eq!(
        h.code(
            "CreateDisks",
            create_body(json!({ "SnapshotId": snap, "DiskSize": 0 }))
        )
        .await,
        "InvalidParameter.DiskSizeNotMatch"
    );
    let v = h
        .ok(
            "CreateDisks",
            create_body(json!({ "SnapshotId": snap, "DiskSize": 20, "Placement": { "Zone": "ap-guangzhou-4" } })),
        )
        .await;
    let restored = v["DiskIdSet"][0].as_str().unwrap().to_owned();
    assert_eq!(h.disk(&restored).await["DiskSize"], 20);
    let image = h.cbs.layout().disk_image(&restored);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 20 << 30);
    let mut file = std::fs::File::open(&image).unwrap();
    file.seek(SeekFrom::Start(3 << 30)).unwrap();
    let mut buf = [0u8; 6];
    file.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"before", "the snapshot is a point-in-time copy");
    let same = h
        .ok(
            "CreateDisks",
            create_body(json!({ "SnapshotId": snap, "DiskSize": null })),
        )
        .await;
    assert_eq!(
        h.disk(same["DiskIdSet"][0].as_str().unwrap()).await["DiskSize"],
        10,
        "without DiskSize the disk has the snapshot's size"
    );

    for (body, code) in [
        (
            json!({ "DiskId": "disk-00000000" }),
            "InvalidDiskId.NotFound",
        ),
        (
            json!({ "DiskId": id, "Deadline": "tomorrow" }),
            "InvalidParameterValue",
        ),
        (
            json!({ "DiskId": id, "Deadline": "2001-01-01T00:00:00Z" }),
            "InvalidParameterValue",
        ),
        (json!({ "DiskId": id, "HideType": 1 }), "UnknownParameter"),
    ] {
        assert_eq!(h.code("CreateSnapshot", body.clone()).await, code, "{body}");
    }
    for (body, code) in [
        (
            json!({ "SnapshotIds": ["snap-00000000"] }),
            "InvalidSnapshotId.NotFound",
        ),
        (json!({ "SnapshotIds": [] }), "MissingParameter"),
    ] {
        assert_eq!(
            h.code("DeleteSnapshots", body.clone()).await,
            code,
            "{body}"
        );
    }
    for (body, code) in [
        (
            json!({ "SnapshotIds": ["disk-1"] }),
            "InvalidSnapshotId.Malformed",
        ),
        (
            json!({ "Filters": [{ "Name": "size", "Values": ["1"] }] }),
            "InvalidFilter",
        ),
        (json!({ "Limit": 500 }), "InvalidParameterValue"),
    ] {
        assert_eq!(
            h.code("DescribeSnapshots", body.clone()).await,
            code,
            "{body}"
        );
    }

    h.ok("DeleteSnapshots", json!({ "SnapshotIds": [snap] }))
        .await;
    assert!(!h.cbs.layout().snapshot_image(&snap).exists());
    assert_eq!(h.ok("DescribeSnapshots", json!({})).await["TotalCount"], 0);
}

#[tokio::test]
async fn a_restart_resumes_state_and_reattaches_lost_devices() {
    let h = Harness::new(instant_config());
    let id = h.create("ap-guangzhou-3", "CLOUD_PREMIUM", 10).await;
    h.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": "ins-a" }),
    )
    .await;
    h.cbs.complete_due().await;
    let before = h
        .cbs
        .store
        .read(|s| s.cbs.disk(&id).unwrap().loop_device.clone().unwrap());
    let Harness { dir, devices, .. } = h;

    // Same devices (the machine kept running): nothing changes.
    let h = Harness::open(instant_config(), dir, devices);
    h.cbs.reconcile().await;
    assert_eq!(h.disk(&id).await["DiskState"], "ATTACHED");
    let same = h
        .cbs
        .store
        .read(|s| s.cbs.disk(&id).unwrap().loop_device.clone().unwrap());
    assert_eq!(same, before);
    assert!(
        h.cbs.layout().by_id_dir("ins-b").is_dir(),
        "every instance's tree exists"
    );
    let Harness { dir, .. } = h;

    // New devices (a reboot): attached again, link and serial rewritten.
    let fresh = Arc::new(FakeDevices::default());
    fresh
        .attach(std::path::Path::new("/elsewhere.img"))
        .unwrap();
    let h = Harness::open(instant_config(), dir, fresh);
    h.cbs.reconcile().await;
    let after = h
        .cbs
        .store
        .read(|s| s.cbs.disk(&id).unwrap().loop_device.clone().unwrap());
    assert_ne!(after, before);
    assert_eq!(
        h.devices.backing_file(&after),
        Some(h.cbs.layout().disk_image(&id))
    );
    assert_eq!(
        std::fs::read_link(h.cbs.layout().link("ins-a", &id)).unwrap(),
        std::path::Path::new(&after)
    );
    let old_serial = h
        .cbs
        .layout()
        .sys_dir("ins-a")
        .join("block")
        .join(before.trim_start_matches("/dev/"));
    assert!(!old_serial.exists(), "the old device's serial is gone");

    h.cbs.detach_all().await;
    assert_eq!(h.devices.backing_file(&after), None);
    assert_eq!(
        h.disk(&id).await["DiskState"],
        "ATTACHED",
        "the state is kept"
    );
}
