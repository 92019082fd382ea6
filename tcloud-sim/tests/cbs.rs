//! CBS against the real `tcloud-sim` binary: TC3-signed calls over HTTP, real sparse files, real
//! loop devices (needs root), restarts with the same state directory.
//!
//! Every test works in its own temporary directory; a guard stops the simulator and releases the
//! loop devices backed by files under that directory, also when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CBS, Sim, authorization, http};
use serde_json::{Value, json};

const INSTANCE: &str = "ins-cbstest1";
const OTHER_INSTANCE: &str = "ins-cbstest2";
const ZONE: &str = "ap-guangzhou-3";
const GIB: u64 = 1 << 30;

#[test]
fn the_test_signer_matches_the_official_sdk_vector() {
    let body = br#"{"Limit": 1, "Filters": [{"Values": ["unnamed"], "Name": "instance-name"}]}"#;
    let auth = authorization(
        "AKIDEXAMPLE",
        "ExampleSecretKey",
        "cvm",
        "cvm.tencentcloudapi.com",
        1_551_113_065,
        body,
    );
    assert!(
        auth.ends_with(
            "Signature=8b70f18578af95aeb213618e940824663822ba1e8a8207ff4315747162cc1d59"
        ),
        "{auth}"
    );
}

// ---- the test's directory and the simulator process ----

/// A temporary directory whose loop devices are released when it goes away.
struct Workdir {
    base: common::Workdir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir {
            base: common::Workdir::new("sim-cbs-test-"),
        }
    }

    fn path(&self) -> PathBuf {
        self.base.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.base.state_dir()
    }

    fn image(&self, disk: &str) -> PathBuf {
        self.state_dir()
            .join("cbs/disks")
            .join(format!("{disk}.img"))
    }

    fn link(&self, instance: &str, disk: &str) -> PathBuf {
        self.state_dir()
            .join("instances")
            .join(instance)
            .join("dev/disk/by-id")
            .join(format!("virtio-{disk}"))
    }

    fn serial(&self, instance: &str, device: &str) -> PathBuf {
        self.state_dir()
            .join("instances")
            .join(instance)
            .join("sys/block")
            .join(device.trim_start_matches("/dev/"))
            .join("serial")
    }

    /// Loop devices backed by files under this directory.
    fn loops(&self) -> Vec<String> {
        let root = format!("{}/", self.path().display());
        std::fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
                (name.starts_with("loop") && backing.trim().starts_with(&root))
                    .then(|| format!("/dev/{name}"))
            })
            .collect()
    }

    fn start(&self, extra: &[&str]) -> Sim {
        let mut args: Vec<String> = [
            "--instance",
            &format!("{INSTANCE}:{ZONE}"),
            "--instance",
            &format!("{OTHER_INSTANCE}:ap-guangzhou-4"),
            "--cbs-attach-ms",
            "300",
            "--cbs-detach-ms",
            "300",
            "--cbs-resize-ms",
            "300",
            "--cbs-snapshot-ms",
            "600",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        self.base.start(CBS, &args)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        for device in self.loops() {
            let _ = Command::new("losetup").args(["-d", &device]).status();
        }
    }
}

/// CBS calls the tests repeat.
trait CbsSim {
    fn create(&self, size: u64) -> String;
    fn disk(&self, id: &str) -> Value;
    fn wait_state(&self, id: &str, state: &str) -> Value;
    fn attach(&self, id: &str) -> Value;
}

impl CbsSim for Sim {
    fn create(&self, size: u64) -> String {
        let v = self.ok(
            "CreateDisks",
            json!({
                "Placement": { "Zone": ZONE },
                "DiskChargeType": "POSTPAID_BY_HOUR",
                "DiskType": "CLOUD_PREMIUM",
                "DiskSize": size,
            }),
        );
        v["DiskIdSet"][0].as_str().unwrap().to_owned()
    }

    fn disk(&self, id: &str) -> Value {
        let v = self.ok("DescribeDisks", json!({ "DiskIds": [id] }));
        assert_eq!(v["TotalCount"], 1, "{v}");
        v["DiskSet"][0].clone()
    }

    fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let disk = self.disk(id);
            if disk["DiskState"] == state {
                return disk;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {state}: {disk}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn attach(&self, id: &str) -> Value {
        self.ok(
            "AttachDisks",
            json!({ "DiskIds": [id], "InstanceId": INSTANCE }),
        );
        self.wait_state(id, "ATTACHED")
    }
}

fn backing_file(device: &str) -> Option<PathBuf> {
    let name = device.trim_start_matches("/dev/");
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
}

fn device_bytes(device: &str) -> u64 {
    let name = device.trim_start_matches("/dev/");
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sectors * 512
}

/// The device the instance's by-id link of `disk` points at, checked against the serial.
fn attached_device(work: &Workdir, disk: &str) -> String {
    let device = std::fs::read_link(work.link(INSTANCE, disk))
        .unwrap()
        .display()
        .to_string();
    assert!(device.starts_with("/dev/loop"), "{device}");
    assert_eq!(
        std::fs::read_to_string(work.serial(INSTANCE, &device))
            .unwrap()
            .trim(),
        disk
    );
    assert_eq!(
        backing_file(&device).as_deref(),
        Some(work.image(disk).as_path())
    );
    device
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf).unwrap();
    buf
}

// ---- the tests ----

#[test]
fn create_describe_paginate_filter_and_reject() {
    let work = Workdir::new();
    let sim = work.start(&["--cbs-quota", "ap-guangzhou-4=1"]);
    let ids: Vec<String> = (0..3).map(|_| sim.create(10)).collect();
    let first = sim.ok("DescribeDisks", json!({ "Limit": 2 }));
    let rest = sim.ok("DescribeDisks", json!({ "Offset": 2, "Limit": 2 }));
    assert_eq!(first["TotalCount"], 3);
    let listed: Vec<&str> = first["DiskSet"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["DiskSet"].as_array().unwrap())
        .map(|d| d["DiskId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let image = std::fs::metadata(work.image(&ids[0])).unwrap();
    assert_eq!(image.len(), 10 * GIB);
    let filtered = sim.ok(
        "DescribeDisks",
        json!({ "Filters": [{ "Name": "disk-id", "Values": [ids[1]] }, { "Name": "disk-state", "Values": ["UNATTACHED"] }] }),
    );
    assert_eq!(filtered["TotalCount"], 1);
    assert_eq!(filtered["DiskSet"][0]["DiskId"], ids[1]);

    let far = sim.ok(
        "CreateDisks",
        json!({ "Placement": { "Zone": "ap-guangzhou-4" }, "DiskChargeType": "POSTPAID_BY_HOUR", "DiskType": "CLOUD_SSD", "DiskSize": 20 }),
    )["DiskIdSet"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            "CreateDisks",
            json!({ "Placement": { "Zone": "ap-guangzhou-4" }, "DiskChargeType": "POSTPAID_BY_HOUR", "DiskType": "CLOUD_SSD", "DiskSize": 20 }),
            "ResourceInsufficient.OverQuota",
        ),
        (
            "CreateDisks",
            json!({ "Placement": { "Zone": ZONE }, "DiskChargeType": "POSTPAID_BY_HOUR", "DiskType": "CLOUD_SSD", "DiskSize": 10 }),
            "InvalidParameterValue",
        ),
        (
            "CreateDisks",
            json!({ "Placement": { "Zone": ZONE }, "DiskChargeType": "POSTPAID_BY_HOUR", "DiskSize": 10 }),
            "MissingParameter",
        ),
        (
            "CreateDisks",
            json!({ "Placement": { "Zone": ZONE }, "DiskChargeType": "POSTPAID_BY_HOUR", "DiskType": "CLOUD_SSD", "DiskSize": 20, "Size": 1 }),
            "UnknownParameter",
        ),
        (
            "DescribeDisks",
            json!({ "DiskIds": ["d-1"] }),
            "InvalidDiskId.Malformed",
        ),
        (
            "DescribeDisks",
            json!({ "Limit": 101 }),
            "InvalidParameterValue",
        ),
        (
            "AttachDisks",
            json!({ "DiskIds": [far], "InstanceId": INSTANCE }),
            "ResourceUnavailable.ZoneNotMatch",
        ),
        (
            "AttachDisks",
            json!({ "DiskIds": [ids[0]], "InstanceId": "ins-nothere" }),
            "InvalidInstanceId.NotFound",
        ),
        (
            "DetachDisks",
            json!({ "DiskIds": [ids[0]] }),
            "InvalidDisk.NotSupported",
        ),
        (
            "ResizeDisk",
            json!({ "DiskId": ids[0], "DiskSize": 10 }),
            "InvalidParameterValue",
        ),
        (
            "TerminateDisks",
            json!({ "DiskIds": ["disk-00000000"] }),
            "InvalidDiskId.NotFound",
        ),
        (
            "DeleteSnapshots",
            json!({ "SnapshotIds": ["snap-00000000"] }),
            "InvalidSnapshotId.NotFound",
        ),
        (
            "BindAutoSnapshotPolicy",
            json!({ "AutoSnapshotPolicyId": "asp-00000000", "DiskIds": [ids[0]] }),
            "InvalidAutoSnapshotPolicyId.NotFound",
        ),
        ("NoSuchAction", json!({}), "InvalidAction"),
    ];
    for (action, params, code) in cases {
        assert_eq!(sim.code(action, params.clone()), code, "{action} {params}");
    }
    let (status, _) = http(&sim.addr, "GET", "/_sim/stats", &[], b"");
    assert_eq!(status, 200);
    sim.ok("TerminateDisks", json!({ "DiskIds": ids }));
    assert!(!work.image(&ids[0]).exists());
    sim.stop();
}

#[test]
fn client_token_survives_a_restart() {
    let work = Workdir::new();
    let request = json!({
        "Placement": { "Zone": ZONE },
        "DiskChargeType": "POSTPAID_BY_HOUR",
        "DiskType": "CLOUD_PREMIUM",
        "DiskSize": 10,
        "ClientToken": "pvc-1234-create",
    });
    let sim = work.start(&[]);
    let first = sim.ok("CreateDisks", request.clone());
    sim.stop();
    let sim = work.start(&[]);
    let again = sim.ok("CreateDisks", request);
    assert_eq!(first["DiskIdSet"], again["DiskIdSet"]);
    assert_eq!(sim.ok("DescribeDisks", json!({}))["TotalCount"], 1);
    sim.stop();
}

#[test]
fn attach_shows_a_real_loop_device_and_detach_takes_it_away() {
    let work = Workdir::new();
    let sim = work.start(&[]);
    let id = sim.create(10);
    sim.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": INSTANCE }),
    );
    let attaching = sim.disk(&id);
    assert_eq!(attaching["DiskState"], "ATTACHING", "{attaching}");
    assert_eq!(
        sim.code("TerminateDisks", json!({ "DiskIds": [id] })),
        "InvalidDisk.Busy"
    );
    let disk = sim.wait_state(&id, "ATTACHED");
    assert_eq!(disk["InstanceId"], INSTANCE);
    assert_eq!(disk["Attached"], true);
    let device = attached_device(&work, &id);
    assert_eq!(device_bytes(&device), 10 * GIB);
    // The device is the disk: what is written through it lands in the image.
    write_at(Path::new(&device), 7 * GIB, b"through-the-device");
    assert_eq!(
        read_at(&work.image(&id), 7 * GIB, 18),
        b"through-the-device"
    );
    assert!(
        !work
            .state_dir()
            .join("instances")
            .join(OTHER_INSTANCE)
            .join("dev/disk/by-id")
            .join(format!("virtio-{id}"))
            .exists(),
        "visible on its instance only"
    );

    sim.ok("DetachDisks", json!({ "DiskIds": [id] }));
    assert_eq!(sim.disk(&id)["DiskState"], "DETACHING");
    let disk = sim.wait_state(&id, "UNATTACHED");
    assert_eq!(disk["InstanceId"], "");
    assert!(std::fs::symlink_metadata(work.link(INSTANCE, &id)).is_err());
    assert!(!work.serial(INSTANCE, &device).exists());
    assert_ne!(
        backing_file(&device).as_deref(),
        Some(work.image(&id).as_path())
    );
    assert!(work.loops().is_empty());
    sim.stop();
}

#[test]
fn resize_grows_the_image_and_the_attached_loop_device() {
    let work = Workdir::new();
    let sim = work.start(&[]);
    let id = sim.create(10);
    sim.attach(&id);
    let device = attached_device(&work, &id);
    sim.ok("ResizeDisk", json!({ "DiskId": id, "DiskSize": 30 }));
    assert_eq!(sim.disk(&id)["DiskState"], "EXPANDING");
    let disk = sim.wait_state(&id, "ATTACHED");
    assert_eq!(disk["DiskSize"], 30);
    assert_eq!(std::fs::metadata(work.image(&id)).unwrap().len(), 30 * GIB);
    assert_eq!(device_bytes(&device), 30 * GIB);
    assert_eq!(attached_device(&work, &id), device, "same device, bigger");
    sim.ok("DetachDisks", json!({ "DiskIds": [id] }));
    sim.wait_state(&id, "UNATTACHED");
    sim.stop();
}

#[test]
fn snapshot_then_restore_into_a_bigger_disk() {
    let work = Workdir::new();
    let sim = work.start(&[]);
    let id = sim.create(10);
    write_at(&work.image(&id), 3 * GIB + 17, b"snapshot-marker");
    let snap = sim.ok(
        "CreateSnapshot",
        json!({ "DiskId": id, "SnapshotName": "s" }),
    )["SnapshotId"]
        .as_str()
        .unwrap()
        .to_owned();
    write_at(&work.image(&id), 3 * GIB + 17, b"later-overwrite");
    let mut percents = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = sim.ok("DescribeSnapshots", json!({ "SnapshotIds": [snap] }));
        let s = &v["SnapshotSet"][0];
        percents.push(s["Percent"].as_u64().unwrap());
        if s["SnapshotState"] == "NORMAL" {
            assert_eq!(s["Percent"], 100);
            break;
        }
        assert_eq!(s["SnapshotState"], "CREATING");
        assert!(Instant::now() < deadline, "never NORMAL: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(percents.len() > 1, "CREATING was visible: {percents:?}");
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(percents[..percents.len() - 1].iter().all(|p| *p < 100));

    let restored = sim.ok(
        "CreateDisks",
        json!({
            "Placement": { "Zone": ZONE },
            "DiskChargeType": "POSTPAID_BY_HOUR",
            "DiskType": "CLOUD_PREMIUM",
            "DiskSize": 20,
            "SnapshotId": snap,
        }),
    )["DiskIdSet"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sim.disk(&restored)["DiskSize"], 20);
    let image = work.image(&restored);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 20 * GIB);
    assert_eq!(read_at(&image, 3 * GIB + 17, 15), b"snapshot-marker");
    {
        use std::os::unix::fs::MetadataExt;
        assert!(
            std::fs::metadata(&image).unwrap().blocks() * 512 < 64 << 20,
            "the restored image is sparse"
        );
    }
    sim.ok("DeleteSnapshots", json!({ "SnapshotIds": [snap] }));
    sim.stop();
}

#[test]
fn a_stuck_attach_stays_attaching_until_the_fault_is_cleared() {
    let work = Workdir::new();
    let sim = work.start(&["--fault", "AttachDisks:stuck=true"]);
    let id = sim.create(10);
    sim.ok(
        "AttachDisks",
        json!({ "DiskIds": [id], "InstanceId": INSTANCE }),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sim.disk(&id)["DiskState"], "ATTACHING");
    assert!(work.loops().is_empty(), "no device while stuck");
    sim.stop();
    // Still stuck after a restart with the same fault.
    let sim = work.start(&["--fault", "AttachDisks:stuck=true"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(sim.disk(&id)["DiskState"], "ATTACHING");
    sim.put_faults(json!([]));
    sim.wait_state(&id, "ATTACHED");
    attached_device(&work, &id);
    sim.ok("DetachDisks", json!({ "DiskIds": [id] }));
    sim.wait_state(&id, "UNATTACHED");
    sim.stop();
}

#[test]
fn a_restart_keeps_attached_disks_attached_even_after_their_device_went_away() {
    let work = Workdir::new();
    let sim = work.start(&[]);
    let id = sim.create(10);
    sim.attach(&id);
    let device = attached_device(&work, &id);
    sim.stop();
    assert_eq!(
        backing_file(&device).as_deref(),
        Some(work.image(&id).as_path()),
        "stopping the simulator leaves the disk attached"
    );

    let sim = work.start(&[]);
    assert_eq!(sim.disk(&id)["DiskState"], "ATTACHED");
    assert_eq!(attached_device(&work, &id), device, "the same device");
    sim.stop();

    // As after a reboot: the loop device is gone, the state still says attached.
    let status = Command::new("losetup")
        .args(["-d", &device])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(work.link(INSTANCE, &id)).unwrap();
    let sim = work.start(&[]);
    let disk = sim.disk(&id);
    assert_eq!(disk["DiskState"], "ATTACHED");
    assert_eq!(disk["InstanceId"], INSTANCE);
    let again = attached_device(&work, &id);
    assert_eq!(work.loops(), vec![again.clone()]);

    // A stale link, as udev sometimes leaves: the serial still tells the truth.
    let body = serde_json::to_vec(
        &json!({ "DiskId": id, "InstanceId": INSTANCE, "Target": "/dev/loop99998" }),
    )
    .unwrap();
    let (status, text) = http(
        &sim.addr,
        "POST",
        "/_sim/cbs/stale-link",
        &[("Content-Type", "application/json".to_owned())],
        &body,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        std::fs::read_link(work.link(INSTANCE, &id)).unwrap(),
        Path::new("/dev/loop99998")
    );
    assert_eq!(
        std::fs::read_to_string(work.serial(INSTANCE, &again)).unwrap(),
        id
    );
    sim.stop();
    // A restart repairs the link.
    let sim = work.start(&[]);
    assert_eq!(attached_device(&work, &id), again);
    sim.stop();
}

#[test]
fn detach_on_exit_releases_devices_and_the_next_start_attaches_them_again() {
    let work = Workdir::new();
    let sim = work.start(&["--cbs-detach-on-exit"]);
    let id = sim.create(10);
    sim.attach(&id);
    attached_device(&work, &id);
    sim.stop();
    assert!(work.loops().is_empty(), "{:?}", work.loops());
    assert!(std::fs::symlink_metadata(work.link(INSTANCE, &id)).is_err());
    let sim = work.start(&[]);
    assert_eq!(sim.disk(&id)["DiskState"], "ATTACHED");
    attached_device(&work, &id);
    sim.stop();
}
