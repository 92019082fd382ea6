//! CFS against the real `tcloud-sim` binary: TC3-signed calls over HTTP, file systems as real
//! directories, the export table a node plugin reads, restarts with the same state directory,
//! faults. Needs no root: directories and symbolic links only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CFS, Sim};
use serde_json::{Value, json};

const ZONE: &str = "ap-guangzhou-3";
const PGROUP: &str = "pgroup-cfstest1";

struct Workdir {
    base: common::Workdir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir {
            base: common::Workdir::new("sim-cfs-test-"),
        }
    }

    fn fs_dir(&self, id: &str) -> PathBuf {
        self.base.state_dir().join("cfs/fs").join(id)
    }

    fn exports(&self) -> PathBuf {
        self.base.state_dir().join("cfs/exports")
    }

    fn export_link(&self, ip: &str) -> PathBuf {
        self.exports().join(ip)
    }

    fn fsid_file(&self, ip: &str) -> PathBuf {
        self.exports().join(format!("{ip}.fsid"))
    }

    /// Names in the export table, sorted.
    fn export_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.exports())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Starts the simulator with a test permission group and `creating` lasting 400 ms, unless
    /// `extra` says otherwise.
    fn start(&self, extra: &[&str]) -> Sim {
        let mut args: Vec<String> = vec!["--cfs-pgroup".into(), PGROUP.into()];
        if !extra.contains(&"--cfs-create-ms") {
            args.extend(["--cfs-create-ms".into(), "400".into()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        self.base.start(CFS, &args)
    }
}

/// A valid VPC CreateCfsFileSystem request, with `extra` keys replacing (or, when null,
/// removing) its keys.
fn create_body(extra: Value) -> Value {
    let mut body = json!({
        "Zone": ZONE,
        "NetInterface": "VPC",
        "PGroupId": "pgroupbasic",
        "Protocol": "NFS",
        "StorageType": "SD",
        "VpcId": "vpc-ah9fbkap",
        "SubnetId": "subnet-9mu2t9iw",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

/// CFS calls the tests repeat.
trait CfsSim {
    fn create(&self, extra: Value) -> String;
    fn fs(&self, id: &str) -> Value;
    fn mount_target(&self, id: &str) -> Value;
    fn wait_available(&self, id: &str) -> Value;
}

impl CfsSim for Sim {
    fn create(&self, extra: Value) -> String {
        let v = self.ok("CreateCfsFileSystem", create_body(extra));
        v["FileSystemId"].as_str().unwrap().to_owned()
    }

    fn fs(&self, id: &str) -> Value {
        let v = self.ok("DescribeCfsFileSystems", json!({ "FileSystemId": id }));
        assert_eq!(v["TotalCount"], 1, "{v}");
        v["FileSystems"][0].clone()
    }

    fn mount_target(&self, id: &str) -> Value {
        let v = self.ok("DescribeMountTargets", json!({ "FileSystemId": id }));
        assert_eq!(v["NumberOfMountTargets"], 1, "{v}");
        v["MountTargets"][0].clone()
    }

    fn wait_available(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let fs = self.fs(id);
            if fs["LifeCycleState"] == "available" {
                return fs;
            }
            assert_eq!(fs["LifeCycleState"], "creating", "{fs}");
            assert!(
                Instant::now() < deadline,
                "{id} never became available: {fs}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn ip_of(target: &Value) -> String {
    target["IpAddress"].as_str().unwrap().to_owned()
}

#[test]
fn a_new_file_system_is_creating_then_available_and_exported() {
    let work = Workdir::new();
    let sim = work.start(&[]);
    let created = sim.ok(
        "CreateCfsFileSystem",
        create_body(json!({
            "FsName": "cluster_pvc-1",
            "PGroupId": PGROUP,
            "ResourceTags": [{ "TagKey": "team", "TagValue": "storage" }],
        })),
    );
    let id = created["FileSystemId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cfs-") && id.len() == 12, "{id}");
    assert_eq!(created["LifeCycleState"], "creating");
    assert_eq!(created["CreationToken"], "cluster_pvc-1");
    assert_eq!(created["ZoneId"], 100003);

    let target = sim.mount_target(&id);
    let ip = ip_of(&target);
    let fsid = target["FSID"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10."), "{ip}");
    assert_eq!(fsid.len(), 8);
    assert_eq!(sim.fs(&id)["LifeCycleState"], "creating");
    assert!(
        std::fs::symlink_metadata(work.export_link(&ip)).is_err(),
        "not exported while creating"
    );
    assert!(work.fs_dir(&id).is_dir());

    let fs = sim.wait_available(&id);
    assert_eq!(fs["PGroup"]["PGroupId"], PGROUP);
    assert_eq!(fs["Tags"][0]["TagKey"], "team");
    assert_eq!(fs["Zone"], ZONE);
    assert_eq!(fs["StorageType"], "SD");
    let time = fs["CreationTime"].as_str().unwrap();
    assert!(
        time.len() == 19 && &time[4..5] == "-" && &time[10..11] == " ",
        "{time}"
    );
    assert_eq!(sim.mount_target(&id)["LifeCycleState"], "available");
    assert_eq!(
        std::fs::read_link(work.export_link(&ip)).unwrap(),
        work.fs_dir(&id)
    );
    assert_eq!(std::fs::read_to_string(work.fsid_file(&ip)).unwrap(), fsid);

    // What a node plugin writes through the export lands in the file system.
    std::fs::create_dir_all(work.export_link(&ip).join("pvc-a")).unwrap();
    std::fs::write(
        work.export_link(&ip).join("pvc-a/data"),
        vec![9u8; 256 * 1024],
    )
    .unwrap();
    assert!(work.fs_dir(&id).join("pvc-a/data").is_file());
    assert!(sim.fs(&id)["SizeByte"].as_u64().unwrap() >= 256 * 1024);
    sim.stop();
}

#[test]
fn client_token_and_exports_survive_a_restart() {
    let work = Workdir::new();
    let request = create_body(json!({ "ClientToken": "pvc-1234-create" }));
    let sim = work.start(&[]);
    let first = sim.ok("CreateCfsFileSystem", request.clone());
    let id = first["FileSystemId"].as_str().unwrap().to_owned();
    sim.wait_available(&id);
    let ip = ip_of(&sim.mount_target(&id));
    std::fs::write(work.fs_dir(&id).join("kept"), b"data").unwrap();
    sim.stop();

    // While it is down: the export link vanishes and a stale entry appears.
    std::fs::remove_file(work.export_link(&ip)).unwrap();
    std::os::unix::fs::symlink("/tmp", work.export_link("10.250.250.250")).unwrap();

    let sim = work.start(&[]);
    let again = sim.ok("CreateCfsFileSystem", request);
    assert_eq!(again["FileSystemId"], id.as_str());
    assert_eq!(again["LifeCycleState"], "available");
    assert_eq!(sim.ok("DescribeCfsFileSystems", json!({}))["TotalCount"], 1);
    assert_eq!(work.export_entries(), [ip.clone(), format!("{ip}.fsid")]);
    assert_eq!(
        std::fs::read(work.export_link(&ip).join("kept")).unwrap(),
        b"data"
    );
    sim.stop();
}

#[test]
fn describe_paginates_filters_and_answers_unknown_ids() {
    let work = Workdir::new();
    let sim = work.start(&["--cfs-create-ms", "0"]);
    let ids: Vec<String> = (0..3)
        .map(|n| {
            sim.create(json!({
                "FsName": format!("fs-{n}"),
                "ResourceTags": [{ "TagKey": "n", "TagValue": n.to_string() }],
                "SubnetId": format!("subnet-sub{n}"),
            }))
        })
        .collect();
    let first = sim.ok("DescribeCfsFileSystems", json!({ "Limit": 2 }));
    let rest = sim.ok("DescribeCfsFileSystems", json!({ "Offset": 2, "Limit": 2 }));
    assert_eq!(first["TotalCount"], 3);
    let listed: Vec<&str> = first["FileSystems"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["FileSystems"].as_array().unwrap())
        .map(|f| f["FileSystemId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let by_subnet = sim.ok(
        "DescribeCfsFileSystems",
        json!({ "VpcId": "vpc-ah9fbkap", "SubnetId": "subnet-sub1" }),
    );
    assert_eq!(by_subnet["TotalCount"], 1);
    assert_eq!(by_subnet["FileSystems"][0]["FileSystemId"], ids[1].as_str());
    assert_eq!(
        by_subnet["FileSystems"][0]["Tags"],
        json!([{ "TagKey": "n", "TagValue": "1" }])
    );
    let mut ips: Vec<String> = ids.iter().map(|id| ip_of(&sim.mount_target(id))).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "every mount target has its own address");
    for id in &ids {
        sim.wait_available(id);
    }
    assert_eq!(work.export_entries().len(), 6);

    let unknown = sim.ok(
        "DescribeCfsFileSystems",
        json!({ "FileSystemId": "cfs-00000000" }),
    );
    assert_eq!(unknown["TotalCount"], 0);
    assert_eq!(unknown["FileSystems"], json!([]));
    sim.stop();
    let sim = work.start(&["--cfs-describe-not-found-error"]);
    assert_eq!(
        sim.code(
            "DescribeCfsFileSystems",
            json!({ "FileSystemId": "cfs-00000000" })
        ),
        "ResourceNotFound.FileSystemNotFound"
    );
    sim.stop();
}

#[test]
fn delete_removes_the_directory_and_the_export() {
    let work = Workdir::new();
    let sim = work.start(&["--cfs-create-ms", "1500"]);
    let id = sim.create(json!({}));
    assert_eq!(
        sim.code("DeleteCfsFileSystem", json!({ "FileSystemId": id })),
        "InvalidParameterValue.InvalidFsStatus",
        "not while creating"
    );
    sim.wait_available(&id);
    let ip = ip_of(&sim.mount_target(&id));
    std::fs::create_dir_all(work.fs_dir(&id).join("a/b")).unwrap();
    std::fs::write(work.fs_dir(&id).join("a/b/c"), b"x").unwrap();
    sim.ok("DeleteCfsFileSystem", json!({ "FileSystemId": id }));
    assert!(!work.fs_dir(&id).exists());
    assert!(std::fs::symlink_metadata(work.export_link(&ip)).is_err());
    assert!(!work.fsid_file(&ip).exists());
    assert_eq!(
        sim.code("DeleteCfsFileSystem", json!({ "FileSystemId": id })),
        "ResourceNotFound.FileSystemNotFound"
    );
    assert_eq!(sim.ok("DescribeCfsFileSystems", json!({}))["TotalCount"], 0);
    sim.stop();
}

#[test]
fn quotas_are_stored_and_reported() {
    let work = Workdir::new();
    let sim = work.start(&["--cfs-create-ms", "0"]);
    let id = sim.create(json!({}));
    sim.wait_available(&id);
    sim.ok(
        "SetUserQuota",
        json!({ "FileSystemId": id, "UserType": "Uid", "UserId": "1000", "CapacityHardLimit": 10, "FileHardLimit": 100000 }),
    );
    sim.ok(
        "SetUserQuota",
        json!({ "FileSystemId": id, "UserType": "Gid", "UserId": "2000", "CapacityHardLimit": 5 }),
    );
    let v = sim.ok("DescribeUserQuota", json!({ "FileSystemId": id }));
    assert_eq!(v["TotalCount"], 2, "{v}");
    let uid = &v["UserQuotaInfo"][0];
    assert_eq!(uid["UserType"], "Uid");
    assert_eq!(uid["UserId"], "1000");
    assert_eq!(uid["CapacityHardLimit"], 10);
    assert_eq!(uid["FileHardLimit"], 100000);
    assert_eq!(uid["FileSystemId"], id.as_str());
    assert_eq!(uid["CapacityUsed"], 0);
    assert_eq!(uid["FileUsed"], 0);
    sim.stop();
    let sim = work.start(&[]);
    sim.ok(
        "DeleteUserQuota",
        json!({ "FileSystemId": id, "UserType": "Gid", "UserId": "2000" }),
    );
    let v = sim.ok(
        "DescribeUserQuota",
        json!({ "FileSystemId": id, "Filters": [{ "Name": "UserType", "Values": ["Gid"] }] }),
    );
    assert_eq!(v["TotalCount"], 0, "{v}");
    assert_eq!(
        sim.code(
            "SetUserQuota",
            json!({ "FileSystemId": id, "UserType": "User", "UserId": "1", "FileHardLimit": 1 })
        ),
        "InvalidParameterValue.QuotaUserTypeError"
    );
    sim.stop();
}

#[test]
fn bad_requests_get_the_real_error_codes() {
    let work = Workdir::new();
    let sim = work.start(&[]);
    let cases = [
        (
            "CreateCfsFileSystem",
            create_body(json!({ "SubnetId": null })),
            "InvalidParameterValue.MissingVpcParameter",
        ),
        (
            "CreateCfsFileSystem",
            create_body(json!({ "Zone": "ap-shanghai-2" })),
            "InvalidParameterValue.InvalidZoneOrZoneId",
        ),
        (
            "CreateCfsFileSystem",
            create_body(json!({ "PGroupId": "pgroup-unknown1" })),
            "ResourceNotFound.PgroupNotFound",
        ),
        (
            "CreateCfsFileSystem",
            create_body(json!({ "VpcId": "ah9fbkap" })),
            "InvalidParameterValue.InvalidVpcId",
        ),
        (
            "CreateCfsFileSystem",
            create_body(json!({ "StorageType": "SSD" })),
            "InvalidParameterValue.InvalidStorageType",
        ),
        (
            "CreateCfsFileSystem",
            create_body(json!({ "Size": 10 })),
            "UnknownParameter",
        ),
        (
            "DescribeMountTargets",
            json!({ "FileSystemId": "cfs-00000000" }),
            "ResourceNotFound.FileSystemNotFound",
        ),
        (
            "DeleteCfsFileSystem",
            json!({ "FileSystemId": "cfs-00000000" }),
            "ResourceNotFound.FileSystemNotFound",
        ),
        (
            "DescribeCfsFileSystems",
            json!({ "FileSystemId": "disk-1" }),
            "InvalidParameterValue.InvalidFileSystemId",
        ),
        (
            "SetUserQuota",
            json!({ "FileSystemId": "cfs-00000000", "UserType": "Uid", "UserId": "1", "FileHardLimit": 1 }),
            "ResourceNotFound.FileSystemNotFound",
        ),
        ("CreateDisks", json!({}), "InvalidAction"),
    ];
    for (action, params, code) in cases {
        assert_eq!(sim.code(action, params.clone()), code, "{action} {params}");
    }
    assert_eq!(
        sim.ok("DescribeCfsFileSystems", json!({}))["TotalCount"],
        0,
        "no bad request created anything"
    );
    sim.put_faults(json!([
        { "action": "DescribeCfsFileSystems", "error_rate": 1.0, "error_code": "InternalError" },
        { "action": "CreateCfsFileSystem", "rate_limit": 1.0 },
    ]));
    assert_eq!(
        sim.code("DescribeCfsFileSystems", json!({})),
        "InternalError"
    );
    sim.create(json!({}));
    assert_eq!(
        sim.code("CreateCfsFileSystem", create_body(json!({}))),
        "RequestLimitExceeded"
    );
    sim.stop();
}

#[test]
fn a_stuck_creation_stays_creating_until_the_fault_is_cleared() {
    let work = Workdir::new();
    let stuck = ["--fault", "CreateCfsFileSystem:stuck=true"];
    let sim = work.start(&stuck);
    let id = sim.create(json!({}));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(sim.fs(&id)["LifeCycleState"], "creating");
    assert!(work.export_entries().is_empty(), "no export while stuck");
    sim.stop();
    let sim = work.start(&stuck);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        sim.fs(&id)["LifeCycleState"],
        "creating",
        "still stuck after a restart"
    );
    sim.put_faults(json!([]));
    sim.wait_available(&id);
    let ip = ip_of(&sim.mount_target(&id));
    assert_eq!(
        std::fs::read_link(work.export_link(&ip)).unwrap(),
        work.fs_dir(&id)
    );
    sim.stop();
}

#[test]
fn help_documents_the_cfs_flags_and_layout() {
    let output = Command::new(env!("CARGO_BIN_EXE_tcloud-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--cfs-pgroup",
        "--cfs-create-ms",
        "--cfs-max-file-systems",
        "--cfs-describe-not-found-error",
        "cfs/fs/<FileSystemId>",
        "cfs/exports/<IpAddress>.fsid",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
