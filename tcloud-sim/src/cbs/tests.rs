//! The CBS service driven in-process with in-memory block devices: request checks, error codes,
//! state machine, persistence. The real loop devices are exercised by `tests/cbs.rs`.
//! `requests` covers the synchronous actions, `transitions` the asynchronous ones and restarts.

mod requests;
mod transitions;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::dataplane::FakeDevices;
use super::*;
use crate::config::{InstanceSpec, ZoneSpec};
use crate::service::CloudService;

struct Harness {
    cbs: Arc<Cbs>,
    devices: Arc<FakeDevices>,
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
        instances: vec![
            InstanceSpec {
                id: "ins-a".into(),
                zone: "ap-guangzhou-3".into(),
            },
            InstanceSpec {
                id: "ins-b".into(),
                zone: "ap-guangzhou-4".into(),
            },
        ],
        cam_role: None,
        role_key_ttl_secs: 7200,
        max_clock_skew_secs: 300,
        latency: Duration::ZERO,
    }
}

fn instant_config() -> CbsConfig {
    CbsConfig {
        attach_latency: Duration::ZERO,
        detach_latency: Duration::ZERO,
        resize_latency: Duration::ZERO,
        snapshot_latency: Duration::ZERO,
        auto_snapshot_policies: vec!["asp-11112222".into()],
        ..CbsConfig::default()
    }
}

impl Harness {
    fn new(config: CbsConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(config, dir, Arc::new(FakeDevices::default()))
    }

    /// A service over `dir` (a restart when `dir` holds an earlier state).
    fn open(config: CbsConfig, dir: tempfile::TempDir, devices: Arc<FakeDevices>) -> Harness {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let faults = Arc::new(Faults::default());
        let cbs = Arc::new(Cbs::new(
            sim_config(),
            config,
            store,
            Arc::clone(&faults),
            devices.clone(),
            Layout::new(dir.path()).unwrap(),
        ));
        Harness {
            cbs,
            devices,
            faults,
            dir,
        }
    }

    async fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
        self.cbs
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

    async fn create(&self, zone: &str, ty: &str, size: u64) -> String {
        let v = self
            .ok(
                "CreateDisks",
                json!({
                    "Placement": { "Zone": zone },
                    "DiskChargeType": "POSTPAID_BY_HOUR",
                    "DiskType": ty,
                    "DiskSize": size,
                }),
            )
            .await;
        v["DiskIdSet"][0].as_str().unwrap().to_owned()
    }

    async fn disk(&self, id: &str) -> Value {
        let v = self.ok("DescribeDisks", json!({ "DiskIds": [id] })).await;
        assert_eq!(v["TotalCount"], 1, "{v}");
        v["DiskSet"][0].clone()
    }
}

fn create_body(extra: Value) -> Value {
    let mut body = json!({
        "Placement": { "Zone": "ap-guangzhou-3" },
        "DiskChargeType": "POSTPAID_BY_HOUR",
        "DiskType": "CLOUD_PREMIUM",
        "DiskSize": 10,
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
fn times_print_in_beijing_time_and_iso_times_parse() {
    assert_eq!(format_time(0), "1970-01-01 08:00:00");
    assert_eq!(format_time(1_551_113_065), "2019-02-26 00:44:25");
    assert_eq!(format_time(951_868_800), "2000-03-01 08:00:00");
    assert_eq!(format_time(951_782_400), "2000-02-29 08:00:00");
    assert_eq!(
        parse_iso8601("2019-02-25T16:44:25+00:00"),
        Some(1_551_113_065)
    );
    assert_eq!(parse_iso8601("2019-02-25T16:44:25Z"), Some(1_551_113_065));
    assert_eq!(
        parse_iso8601("2019-02-26T00:44:25+08:00"),
        Some(1_551_113_065)
    );
    for bad in [
        "2019-02-25",
        "2019-02-25 16:44:25",
        "2019-02-25T16:44Z",
        "2019-02-25T25:00:00Z",
        "2019-02-25T16:44:25+0800",
    ] {
        assert_eq!(parse_iso8601(bad), None, "{bad}");
    }
}

#[test]
fn id_lists_and_filters_are_checked() {
    assert!(well_formed_id("disk-ab12cd34", "disk-"));
    assert!(!well_formed_id("disk-AB12", "disk-"));
    assert!(!well_formed_id("snap-ab12cd34", "disk-"));
    let err = check_id_list(&["a".into(), "a".into()], "DiskIds", 10).unwrap_err();
    assert!(err.message.contains("more than once"));
    let filters = vec![Filter {
        name: "tag:".into(),
        values: vec!["x".into()],
    }];
    assert_eq!(
        check_filters(&filters, &["tag:"]).unwrap_err().code,
        "InvalidFilter",
        "tag: needs a key"
    );
}
