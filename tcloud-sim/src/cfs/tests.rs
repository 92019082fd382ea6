//! The CFS service driven in-process: request checks, error codes, the `creating` transition,
//! the export table, persistence. The real binary is exercised by `tests/cfs.rs`. `requests`
//! covers creation and description, `lifecycle` deletion, mount targets, quotas, faults and
//! restarts, `turbo` the CFS Turbo file systems.

mod lifecycle;
mod requests;
mod turbo;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::ZoneSpec;
use crate::service::CloudService;

const ZONE: &str = "ap-guangzhou-3";

struct Harness {
    cfs: Arc<Cfs>,
    faults: Arc<Faults>,
    dir: tempfile::TempDir,
}

fn sim_config() -> SimConfig {
    SimConfig {
        region: "ap-guangzhou".into(),
        zones: vec![
            ZoneSpec {
                name: "ap-guangzhou-3".into(),
                id: "100003".into(),
            },
            ZoneSpec {
                name: "ap-guangzhou-4".into(),
                id: "100004".into(),
            },
        ],
        instances: vec![],
        cam_role: None,
        role_key_ttl_secs: 7200,
        max_clock_skew_secs: 300,
        latency: Duration::ZERO,
    }
}

fn instant_config() -> CfsConfig {
    CfsConfig {
        pgroups: vec!["pgroup-abc12345".into()],
        create_latency: Duration::ZERO,
        ..CfsConfig::default()
    }
}

impl Harness {
    fn new(config: CfsConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(config, dir)
    }

    /// A service over `dir` (a restart when `dir` holds an earlier state).
    fn open(config: CfsConfig, dir: tempfile::TempDir) -> Harness {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let faults = Arc::new(Faults::default());
        let cfs = Arc::new(Cfs::new(
            sim_config(),
            config,
            store,
            Arc::clone(&faults),
            Layout::new(dir.path()).unwrap(),
        ));
        Harness { cfs, faults, dir }
    }

    /// The same state directory, opened again.
    fn restart(self, config: CfsConfig) -> Harness {
        let Harness { cfs, dir, .. } = self;
        drop(cfs);
        Harness::open(config, dir)
    }

    async fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
        self.cfs
            .call(action, body)
            .await
            .map_err(|e| e.expect("a known action"))
    }

    async fn ok(&self, action: &str, body: Value) -> Value {
        match self.call(action, body).await {
            Ok(v) => v,
            Err(e) => panic!("{action}: {} {}", e.code, e.message),
        }
    }

    async fn code(&self, action: &str, body: Value) -> String {
        match self.call(action, body).await {
            Ok(v) => panic!("{action} succeeded: {v}"),
            Err(e) => {
                assert!(!e.message.is_empty());
                e.code
            }
        }
    }

    /// Creates a file system from `create_body(extra)`; returns its ID.
    async fn create(&self, extra: Value) -> String {
        let v = self.ok("CreateCfsFileSystem", create_body(extra)).await;
        v["FileSystemId"].as_str().unwrap().to_owned()
    }

    /// Creates a file system and completes its creation.
    async fn create_available(&self, extra: Value) -> String {
        let id = self.create(extra).await;
        assert!(self.cfs.complete_due().await >= 1);
        assert_eq!(self.fs(&id).await["LifeCycleState"], "available");
        id
    }

    async fn fs(&self, id: &str) -> Value {
        let v = self
            .ok("DescribeCfsFileSystems", json!({ "FileSystemId": id }))
            .await;
        assert_eq!(v["TotalCount"], 1, "{v}");
        v["FileSystems"][0].clone()
    }

    async fn mount_target(&self, id: &str) -> Value {
        let v = self
            .ok("DescribeMountTargets", json!({ "FileSystemId": id }))
            .await;
        assert_eq!(v["NumberOfMountTargets"], 1, "{v}");
        v["MountTargets"][0].clone()
    }
}

/// A valid VPC request, with `extra` keys replacing (or, when null, removing) its keys.
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

#[test]
fn ids_pages_and_tags_are_checked() {
    assert!(check_fs_id("cfs-ab12cd34", "X").is_ok());
    assert_eq!(check_fs_id("", "Empty").unwrap_err().code, "Empty");
    assert_eq!(
        check_fs_id("disk-1", "Empty").unwrap_err().code,
        "InvalidParameterValue.InvalidFileSystemId"
    );
    assert_eq!(page(vec![1, 2, 3], Some(1), Some(1)).unwrap(), [2]);
    assert_eq!(
        page(vec![1, 2, 3], Some(9), None).unwrap(),
        Vec::<i32>::new()
    );
    assert!(page(vec![1], None, Some(0)).is_err());
    assert!(page(vec![1], None, Some(101)).is_err());
    let tag = |k: &str, v: &str| model::Tag {
        tag_key: k.into(),
        tag_value: v.into(),
    };
    assert!(check_tags(&[tag("team", "a"), tag("env", "b")]).is_ok());
    let cases = [
        (vec![tag("", "a")], "InvalidParameterValue.InvalidTagKey"),
        (
            vec![tag("qcloud:x", "a")],
            "InvalidParameterValue.InvalidTagKey",
        ),
        (vec![tag("k", "")], "InvalidParameterValue.InvalidTagValue"),
        (
            vec![tag(&"k".repeat(128), "a")],
            "InvalidParameterValue.TagKeyLimitExceeded",
        ),
        (
            vec![tag("k", &"v".repeat(256))],
            "InvalidParameterValue.TagValueLimitExceeded",
        ),
        (
            vec![tag("k", "a"), tag("k", "b")],
            "InvalidParameterValue.DuplicatedTagKey",
        ),
        (
            (0..51).map(|n| tag(&format!("k{n}"), "v")).collect(),
            "ResourceInsufficient.TagLimitExceeded",
        ),
    ];
    for (tags, code) in cases {
        assert_eq!(check_tags(&tags).unwrap_err().code, code, "{tags:?}");
    }
    assert!(parse_pgroup_id("pgroup-7nx89k7l").is_ok());
    assert!(parse_pgroup_id("pgroupbasic").is_err());
    assert!(parse_pgroup_id("pgroup-").is_err());
}
