//! The COS prefix-per-PV controller in process, against the in-memory `FakeBuckets`: the marker
//! CreateVolume writes and compares, what DeleteVolume keeps or removes (and in which order),
//! refused keys, a bucket failing half-way through a delete, and requests refused before any
//! bucket is touched. No socket, no simulator: the file runs in well under a second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use cos_client::ObjectCredentials;
use cos_client::ObjectErrorKind;
use cos_client::fake::{BucketOp, FakeBuckets};
use csi_common::csi::pb;
use csi_common::csi::pb::controller_server::Controller;
use csi_cos::controller::{COS_NODE_PARAMETERS, ControllerConfig, ControllerService};
use pb::volume_capability::access_mode::Mode;
use tonic::{Code, Request};

const URL: &str = "https://cos.ap-guangzhou.myqcloud.com";
const BUCKET: &str = "data-1250000000";
const ID: &str = "AKIDprovisioner";
const KEY: &str = "provisioner-secret";
const GIB: i64 = 1 << 30;

fn fake() -> FakeBuckets {
    FakeBuckets::new().with_bucket(URL, BUCKET, ObjectCredentials::new(ID, KEY, None))
}

fn controller(fake: &FakeBuckets) -> ControllerService<FakeBuckets> {
    ControllerService::with_buckets(
        fake.clone(),
        ControllerConfig {
            region: "ap-guangzhou".into(),
            node_parameters: COS_NODE_PARAMETERS,
            default_url: None,
            default_bucket: None,
            fallback_keys: None,
            unknown_parameters: csi_common::cli::UnknownParameters::Refuse,
        },
    )
}

fn secrets(id: &str, key: &str) -> HashMap<String, String> {
    HashMap::from([
        ("SecretId".to_owned(), id.to_owned()),
        ("SecretKey".to_owned(), key.to_owned()),
    ])
}

fn mount() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    }
}

/// A CreateVolume of `name` (`gib` GiB) under `k8s/` of the bucket, with the right keys.
fn create(name: &str, gib: i64, on_delete: &str) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount()],
        parameters: HashMap::from([
            ("url".to_owned(), URL.to_owned()),
            ("bucket".to_owned(), BUCKET.to_owned()),
            ("path".to_owned(), "k8s".to_owned()),
            ("onDelete".to_owned(), on_delete.to_owned()),
            ("csi.storage.k8s.io/pvc/name".to_owned(), "claim".to_owned()),
        ]),
        secrets: secrets(ID, KEY),
        ..Default::default()
    }
}

fn volume_id(prefix: &str) -> String {
    format!("{URL}/{BUCKET}/{prefix}")
}

async fn new_volume(
    c: &ControllerService<FakeBuckets>,
    request: pb::CreateVolumeRequest,
) -> pb::Volume {
    c.create_volume(Request::new(request))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

/// A DeleteVolume with the right keys. Deletes loop over listings: one that never ends fails
/// the test instead of hanging it.
async fn delete(c: &ControllerService<FakeBuckets>, volume_id: &str) -> Result<(), tonic::Status> {
    let request = Request::new(pb::DeleteVolumeRequest {
        volume_id: volume_id.into(),
        secrets: secrets(ID, KEY),
    });
    tokio::time::timeout(Duration::from_secs(5), c.delete_volume(request))
        .await
        .expect("DeleteVolume never finished")
        .map(drop)
}

fn marker(fake: &FakeBuckets, prefix: &str) -> Option<serde_json::Value> {
    fake.object(URL, BUCKET, &format!("{prefix}/"))
        .map(|body| serde_json::from_slice(&body).unwrap())
}

fn seed(fake: &FakeBuckets, keys: &[&str]) {
    for key in keys {
        fake.put(URL, BUCKET, key, Bytes::from(format!("data of {key}")))
            .unwrap();
    }
}

fn key_list(objects: &BTreeMap<String, Bytes>) -> Vec<&str> {
    objects.keys().map(String::as_str).collect()
}

fn calls(fake: &FakeBuckets) -> Vec<(BucketOp, u64)> {
    BucketOp::ALL
        .iter()
        .map(|op| (*op, fake.calls(*op)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test]
async fn create_writes_the_marker_and_a_repeat_is_the_same_volume() {
    let fake = fake();
    let c = controller(&fake);
    let first = new_volume(&c, create("pvc-1", 3, "delete")).await;
    assert_eq!(first.volume_id, volume_id("k8s/pvc-1"));
    assert_eq!(first.capacity_bytes, 3 * GIB);
    assert_eq!(first.volume_context["path"], "/k8s/pvc-1");
    assert_eq!(first.volume_context["bucket"], BUCKET);
    assert_eq!(
        marker(&fake, "k8s/pvc-1"),
        Some(serde_json::json!({
            "volume": "pvc-1",
            "onDelete": "delete",
            "capacityBytes": 3 * GIB,
        }))
    );
    let again = new_volume(&c, create("pvc-1", 3, "delete")).await;
    assert_eq!(again, first);
    assert_eq!(key_list(&fake.objects(URL, BUCKET)), ["k8s/pvc-1/"]);
    assert_eq!(fake.calls(BucketOp::PutObject), 1, "{:?}", calls(&fake));
}

#[tokio::test]
async fn a_lost_marker_write_is_found_by_the_retry() {
    let fake = fake();
    let c = controller(&fake);
    fake.lose_nth_response(BucketOp::PutObject, 1, ObjectErrorKind::Unavailable);
    let error = c
        .create_volume(Request::new(create("pvc-1", 1, "retain")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(marker(&fake, "k8s/pvc-1").is_some());
    let volume = new_volume(&c, create("pvc-1", 1, "retain")).await;
    assert_eq!(volume.volume_id, volume_id("k8s/pvc-1"));
    assert_eq!(fake.calls(BucketOp::PutObject), 1);
}

#[tokio::test]
async fn the_same_name_with_another_size_or_policy_is_already_exists() {
    let fake = fake();
    let c = controller(&fake);
    new_volume(&c, create("pvc-1", 1, "retain")).await;
    let written = fake.object(URL, BUCKET, "k8s/pvc-1/").unwrap();
    for (gib, on_delete) in [(2, "retain"), (1, "delete")] {
        let error = c
            .create_volume(Request::new(create("pvc-1", gib, on_delete)))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::AlreadyExists, "{error:?}");
        assert!(error.message().contains("\"pvc-1\""), "{}", error.message());
    }
    assert_eq!(fake.object(URL, BUCKET, "k8s/pvc-1/").unwrap(), written);
    assert_eq!(fake.calls(BucketOp::PutObject), 1);
}

#[tokio::test]
async fn a_marker_written_before_sizes_were_recorded_answers_a_repeat() {
    let fake = fake();
    let old = r#"{"volume":"pvc-1","onDelete":"retain"}"#;
    fake.put(URL, BUCKET, "k8s/pvc-1/", old).unwrap();
    let c = controller(&fake);
    for gib in [1, 7] {
        let volume = new_volume(&c, create("pvc-1", gib, "retain")).await;
        assert_eq!(volume.volume_id, volume_id("k8s/pvc-1"));
        assert_eq!(volume.capacity_bytes, gib * GIB);
    }
    // Answered, not rewritten.
    assert_eq!(fake.object(URL, BUCKET, "k8s/pvc-1/").unwrap(), old);
    assert_eq!(fake.calls(BucketOp::PutObject), 0);
    // The policy still has to match.
    let error = c
        .create_volume(Request::new(create("pvc-1", 1, "delete")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists, "{error:?}");
}

#[tokio::test]
async fn another_volumes_or_a_strangers_prefix_is_already_exists() {
    let fake = fake();
    let theirs = r#"{"volume":"pvc-other","onDelete":"delete","capacityBytes":1073741824}"#;
    fake.put(URL, BUCKET, "k8s/pvc-1/", theirs).unwrap();
    // A `dir/` object someone made with a console: not ours at all.
    fake.put(URL, BUCKET, "k8s/pvc-2/", "").unwrap();
    let c = controller(&fake);
    let error = c
        .create_volume(Request::new(create("pvc-1", 1, "delete")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists, "{error:?}");
    assert!(error.message().contains("pvc-other"), "{}", error.message());
    let error = c
        .create_volume(Request::new(create("pvc-2", 1, "retain")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists, "{error:?}");
    assert_eq!(fake.object(URL, BUCKET, "k8s/pvc-1/").unwrap(), theirs);
    assert_eq!(fake.object(URL, BUCKET, "k8s/pvc-2/").unwrap(), "");
    assert_eq!(fake.calls(BucketOp::PutObject), 0);
    // And deleting the stranger's prefix keeps it: its marker says nothing we can trust.
    delete(&c, &volume_id("k8s/pvc-2")).await.unwrap();
    assert!(fake.object(URL, BUCKET, "k8s/pvc-2/").is_some());
}

#[tokio::test]
async fn on_delete_retain_keeps_every_object() {
    let fake = fake();
    let c = controller(&fake);
    let volume = new_volume(&c, create("pvc-1", 1, "retain")).await;
    seed(&fake, &["k8s/pvc-1/a", "k8s/pvc-1/dir/b"]);
    let before = fake.objects(URL, BUCKET);
    delete(&c, &volume.volume_id).await.unwrap();
    delete(&c, &volume.volume_id).await.unwrap();
    assert_eq!(fake.objects(URL, BUCKET), before);
    assert_eq!(key_list(&before).len(), 3);
    for op in [
        BucketOp::ListObjectsV2,
        BucketOp::DeleteObjects,
        BucketOp::DeleteObject,
    ] {
        assert_eq!(fake.calls(op), 0, "{op:?}");
    }
}

#[tokio::test]
async fn on_delete_delete_removes_exactly_the_prefix_and_the_marker_last() {
    let fake = fake();
    let c = controller(&fake);
    let volume = new_volume(&c, create("pvc-1", 1, "delete")).await;
    new_volume(&c, create("pvc-10", 1, "delete")).await;
    // More than a listing page under the prefix, and neighbours sharing its leading string.
    let mine: Vec<String> = (0..1500).map(|i| format!("k8s/pvc-1/f{i:04}")).collect();
    for key in &mine {
        fake.put(URL, BUCKET, key, "x").unwrap();
    }
    let neighbours = [
        "k8s/pvc-1",
        "k8s/pvc-1.bak/a",
        "k8s/pvc-10/a",
        "k8s/pvc-1x",
        "k8s/pvc-0/a",
    ];
    seed(&fake, &neighbours);
    // The marker cannot be deleted: everything else must go first, and the marker must not be
    // among the bulk-deleted keys (that would report it as a failed key).
    fake.refuse_delete(URL, BUCKET, "k8s/pvc-1/", "AccessDenied");
    let error = delete(&c, &volume.volume_id).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    let left = fake.objects(URL, BUCKET);
    assert!(mine.iter().all(|k| !left.contains_key(k)));
    assert!(left.contains_key("k8s/pvc-1/"));
    assert_eq!(fake.calls(BucketOp::DeleteObject), 1);
    // The retry finds the marker and finishes.
    fake.allow_delete(URL, BUCKET, "k8s/pvc-1/");
    delete(&c, &volume.volume_id).await.unwrap();
    let mut expected = neighbours.to_vec();
    expected.push("k8s/pvc-10/");
    expected.sort_unstable();
    assert_eq!(key_list(&fake.objects(URL, BUCKET)), expected);
    // Gone is gone: a third delete is a no-op.
    let before = fake.calls(BucketOp::DeleteObjects);
    delete(&c, &volume.volume_id).await.unwrap();
    assert_eq!(fake.calls(BucketOp::DeleteObjects), before);
}

#[tokio::test]
async fn deleting_an_unknown_or_garbage_id_succeeds_and_touches_nothing() {
    let fake = fake();
    seed(&fake, &["k8s/pvc-1/a"]);
    let before = fake.objects(URL, BUCKET);
    let c = controller(&fake);
    for garbage in [
        "vol-1",
        "https://cos.ap-guangzhou.myqcloud.com/data-1250000000",
        "https://cos.ap-guangzhou.myqcloud.com/data-1250000000/k8s/../..",
        "ftp://host/data-1250000000/p",
    ] {
        delete(&c, garbage).await.unwrap();
    }
    assert_eq!((fake.opens(), fake.total_calls()), (0, 0));
    // Well-formed, but no marker: a prefix we never made, or an unknown bucket.
    delete(&c, &volume_id("k8s/pvc-1")).await.unwrap();
    delete(&c, &format!("{URL}/gone-1250000000/k8s/pvc-1"))
        .await
        .unwrap();
    assert_eq!(calls(&fake), [(BucketOp::HeadObject, 2)]);
    assert_eq!(fake.objects(URL, BUCKET), before);
    let error = delete(&c, "").await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn wrong_provisioner_keys_are_failed_precondition_naming_the_secret() {
    let fake = fake();
    let c = controller(&fake);
    let volume = new_volume(&c, create("pvc-1", 1, "delete")).await;
    seed(&fake, &["k8s/pvc-1/a"]);
    let before = fake.objects(URL, BUCKET);
    for (id, key) in [(ID, "stale-secret"), ("AKIDsomeoneelse", KEY)] {
        let mut request = create("pvc-2", 1, "retain");
        request.secrets = secrets(id, key);
        let error = c.create_volume(Request::new(request)).await.unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
        assert!(
            error.message().contains("provisioner secret"),
            "{}",
            error.message()
        );
        assert!(!error.message().contains(key), "{}", error.message());
        let error = c
            .delete_volume(Request::new(pb::DeleteVolumeRequest {
                volume_id: volume.volume_id.clone(),
                secrets: secrets(id, key),
            }))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
        assert!(
            error.message().contains("provisioner secret"),
            "{}",
            error.message()
        );
    }
    assert_eq!(fake.objects(URL, BUCKET), before);
}

#[tokio::test]
async fn a_list_or_bulk_delete_failing_mid_way_is_finished_by_the_retry() {
    for op in [BucketOp::ListObjectsV2, BucketOp::DeleteObjects] {
        let fake = fake();
        let c = controller(&fake);
        let volume = new_volume(&c, create("pvc-1", 1, "delete")).await;
        for i in 0..2500 {
            fake.put(URL, BUCKET, &format!("k8s/pvc-1/f{i:04}"), "x")
                .unwrap();
        }
        seed(&fake, &["k8s/pvc-10/keep"]);
        // The second request of `op` fails: the first page is gone, the rest is still there.
        fake.fail_nth(op, 2, ObjectErrorKind::Unavailable);
        let error = delete(&c, &volume.volume_id).await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{op:?}: {error:?}");
        let left = fake.objects(URL, BUCKET);
        assert!(
            left.contains_key("k8s/pvc-1/"),
            "{op:?}: the marker went early"
        );
        assert!(
            left.len() > 2 && left.len() < 2502,
            "{op:?}: {} left",
            left.len()
        );
        assert_eq!(fake.calls(BucketOp::DeleteObject), 0, "{op:?}");
        delete(&c, &volume.volume_id).await.unwrap();
        assert_eq!(
            key_list(&fake.objects(URL, BUCKET)),
            ["k8s/pvc-10/keep"],
            "{op:?}"
        );
    }
}

#[tokio::test]
async fn keys_the_bucket_will_not_delete_fail_the_call_and_keep_the_marker() {
    let fake = fake();
    let c = controller(&fake);
    let volume = new_volume(&c, create("pvc-1", 1, "delete")).await;
    seed(&fake, &["k8s/pvc-1/a", "k8s/pvc-1/locked", "k8s/pvc-1/z"]);
    fake.refuse_delete(URL, BUCKET, "k8s/pvc-1/locked", "AccessDenied");
    let error = delete(&c, &volume.volume_id).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(
        error.message().contains("k8s/pvc-1/locked: AccessDenied"),
        "{}",
        error.message()
    );
    assert_eq!(
        key_list(&fake.objects(URL, BUCKET)),
        ["k8s/pvc-1/", "k8s/pvc-1/locked"]
    );
    fake.allow_delete(URL, BUCKET, "k8s/pvc-1/locked");
    delete(&c, &volume.volume_id).await.unwrap();
    assert!(fake.objects(URL, BUCKET).is_empty());
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_naming_the_field_before_any_call() {
    let fake = fake();
    let c = controller(&fake);
    type Edit = fn(&mut pb::CreateVolumeRequest);
    let cases: [(&str, Edit, &str); 9] = [
        ("no name", |r| r.name.clear(), "name is required"),
        (
            "no capability",
            |r| r.volume_capabilities.clear(),
            "volume_capabilities",
        ),
        (
            "block",
            |r| r.volume_capabilities = vec![block_capability()],
            "block",
        ),
        (
            "unknown parameter",
            |r| {
                r.parameters.insert("reclaim".into(), "yes".into());
            },
            "\"reclaim\"",
        ),
        (
            "bad onDelete",
            |r| {
                r.parameters.insert("onDelete".into(), "shred".into());
            },
            "onDelete",
        ),
        (
            "no bucket",
            |r| {
                r.parameters.remove("bucket");
            },
            "bucket",
        ),
        (
            "bad url",
            |r| {
                r.parameters.insert("url".into(), "cos.example.com".into());
            },
            "url",
        ),
        (
            "name with a slash",
            |r| r.name = "a/b".into(),
            "volume name",
        ),
        ("no secret", |r| r.secrets.clear(), "provisioner"),
    ];
    for (what, edit, named) in cases {
        let mut request = create("pvc-1", 1, "delete");
        edit(&mut request);
        let error = c.create_volume(Request::new(request)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{what}: {error:?}");
        assert!(
            error.message().contains(named),
            "{what}: {}",
            error.message()
        );
    }
    assert_eq!((fake.opens(), fake.total_calls()), (0, 0));
    assert!(fake.objects(URL, BUCKET).is_empty());
}

fn block_capability() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Block(Default::default())),
        ..mount()
    }
}

#[tokio::test]
async fn validation_with_a_secret_looks_for_the_marker() {
    let fake = fake();
    let c = controller(&fake);
    let volume = new_volume(&c, create("pvc-1", 1, "retain")).await;
    let validate = |id: String| {
        c.validate_volume_capabilities(Request::new(pb::ValidateVolumeCapabilitiesRequest {
            volume_id: id,
            volume_capabilities: vec![mount()],
            secrets: secrets(ID, KEY),
            ..Default::default()
        }))
    };
    let answer = validate(volume.volume_id.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(answer.confirmed.is_some(), "{answer:?}");
    let error = validate(volume_id("k8s/pvc-2")).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
}
