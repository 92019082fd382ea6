//! CSI conformance of csi-cbs over the real socket, against `e2e serve --driver cbs`: every
//! controller RPC's required errors, idempotency, pagination, snapshots and expansion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use csi_conformance::{CsiClient, Driver, Served};
use csi_proto::v1 as pb;
use pb::volume_capability::access_mode::Mode;
use tonic::Code;

const GIB: i64 = 1 << 30;
const TOPOLOGY_KEY: &str = "topology.com.tencent.cloud.csi.cbs/zone";
const NODE: &str = "ins-sim00001";

fn mount_cap(mode: Mode) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    }
}

fn block_cap() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Block(Default::default())),
    }
}

fn create(name: &str, gib: i64) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap(Mode::SingleNodeWriter)],
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match result {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

async fn new_volume(client: &mut CsiClient, name: &str, gib: i64) -> pb::Volume {
    client
        .controller
        .create_volume(create(name, gib))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

async fn publish(
    client: &mut CsiClient,
    volume_id: &str,
    node: &str,
) -> Result<tonic::Response<pb::ControllerPublishVolumeResponse>, tonic::Status> {
    client
        .controller
        .controller_publish_volume(pb::ControllerPublishVolumeRequest {
            volume_id: volume_id.into(),
            node_id: node.into(),
            volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
}

async fn unpublish(client: &mut CsiClient, volume_id: &str, node: &str) {
    client
        .controller
        .controller_unpublish_volume(pb::ControllerUnpublishVolumeRequest {
            volume_id: volume_id.into(),
            node_id: node.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn capabilities_are_honest() {
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut client = served.client().await.unwrap();
    let plugin = client
        .identity
        .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plugin.capabilities.len(), 3, "{plugin:?}");
    let controller = client
        .controller
        .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let rpcs: Vec<i32> = controller
        .capabilities
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|pb::controller_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    use pb::controller_service_capability::rpc::Type;
    for wanted in [
        Type::CreateDeleteVolume,
        Type::PublishUnpublishVolume,
        Type::ListVolumes,
        Type::CreateDeleteSnapshot,
        Type::ListSnapshots,
        Type::ExpandVolume,
        Type::GetVolume,
    ] {
        assert!(rpcs.contains(&(wanted as i32)), "missing {wanted:?}");
    }
    assert!(
        !rpcs.contains(&(Type::CloneVolume as i32)),
        "cloning is not offered"
    );
    assert!(
        !rpcs.contains(&(Type::GetCapacity as i32)),
        "GetCapacity is not offered"
    );
    let info = client
        .node
        .node_get_info(pb::NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, NODE);
    // The instance's own limit, from the simulator's DescribeInstancesDiskNum (20 data disks)
    // less the data disks attached to it that are no volume (none).
    assert_eq!(info.max_volumes_per_node, 20);
    assert_eq!(
        info.accessible_topology.unwrap().segments[TOPOLOGY_KEY],
        "ap-guangzhou-3"
    );
    served.stop().await.unwrap();
}

#[tokio::test]
async fn create_and_delete_follow_the_spec() {
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();

    let (code1, _) = code(c.controller.create_volume(create("", 10)).await);
    assert_eq!(code1, Code::InvalidArgument);
    let mut no_caps = create("v-nocaps", 10);
    no_caps.volume_capabilities.clear();
    assert_eq!(
        code(c.controller.create_volume(no_caps).await).0,
        Code::InvalidArgument
    );
    let mut multi = create("v-multi", 10);
    multi.volume_capabilities = vec![mount_cap(Mode::MultiNodeMultiWriter)];
    let (c2, m2) = code(c.controller.create_volume(multi).await);
    assert_eq!(c2, Code::InvalidArgument, "{m2}");
    let mut unknown = create("v-unknown", 10);
    unknown.parameters.insert("diskSizeGB".into(), "10".into());
    let (c3, m3) = code(c.controller.create_volume(unknown).await);
    assert_eq!(c3, Code::InvalidArgument);
    assert!(m3.contains("diskSizeGB"), "{m3}");
    let mut too_small = create("v-limit", 15);
    too_small.capacity_range.as_mut().unwrap().limit_bytes = 15 * GIB;
    assert_eq!(
        code(c.controller.create_volume(too_small).await).0,
        Code::OutOfRange
    );
    assert_eq!(
        code(c.controller.create_volume(create("v-huge", 40_000)).await).0,
        Code::OutOfRange
    );

    // Rounded up, with topology, idempotent, and a conflicting repeat refused.
    let volume = new_volume(&mut c, "pvc-create-1", 15).await;
    assert_eq!(volume.capacity_bytes, 20 * GIB);
    assert!(volume.volume_id.starts_with("disk-"));
    assert_eq!(volume.accessible_topology.len(), 1);
    let again = new_volume(&mut c, "pvc-create-1", 15).await;
    assert_eq!(again.volume_id, volume.volume_id);
    let (c4, m4) = code(c.controller.create_volume(create("pvc-create-1", 50)).await);
    assert_eq!(c4, Code::AlreadyExists, "{m4}");

    // WaitForFirstConsumer: the preferred zone wins, numeric zone IDs are translated.
    let mut wffc = create("pvc-topology", 10);
    wffc.accessibility_requirements = Some(pb::TopologyRequirement {
        requisite: vec![
            pb::Topology {
                segments: [(TOPOLOGY_KEY.to_string(), "ap-guangzhou-3".to_string())].into(),
            },
            pb::Topology {
                segments: [(
                    "topology.kubernetes.io/zone".to_string(),
                    "100004".to_string(),
                )]
                .into(),
            },
        ],
        preferred: vec![pb::Topology {
            segments: [(
                "topology.kubernetes.io/zone".to_string(),
                "100004".to_string(),
            )]
            .into(),
        }],
    });
    let placed = c
        .controller
        .create_volume(wffc)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        placed.accessible_topology[0].segments[TOPOLOGY_KEY],
        "ap-guangzhou-4"
    );
    let mut outside = create("pvc-outside", 10);
    outside
        .parameters
        .insert("diskZone".into(), "ap-guangzhou-4".into());
    outside.accessibility_requirements = Some(pb::TopologyRequirement {
        requisite: vec![pb::Topology {
            segments: [(TOPOLOGY_KEY.to_string(), "ap-guangzhou-3".to_string())].into(),
        }],
        preferred: vec![],
    });
    assert_eq!(
        code(c.controller.create_volume(outside).await).0,
        Code::ResourceExhausted
    );

    assert_eq!(
        code(
            c.controller
                .delete_volume(pb::DeleteVolumeRequest::default())
                .await
        )
        .0,
        Code::InvalidArgument
    );
    for _ in 0..2 {
        c.controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: volume.volume_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    c.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: "disk-nothere1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: "not-a-cbs-id".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = c
        .controller
        .controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: volume.volume_id.clone(),
        })
        .await;
    assert_eq!(code(gone).0, Code::NotFound);
    served.stop().await.unwrap();
}

#[tokio::test]
async fn publish_unpublish_state_machine() {
    let served = Served::start_with(
        Driver::Cbs,
        &[
            "--instance",
            "ins-sim00001:ap-guangzhou-3",
            "--instance",
            "ins-other001:ap-guangzhou-3",
        ],
        &[],
    )
    .await
    .unwrap();
    let mut c = served.client().await.unwrap();
    let volume = new_volume(&mut c, "pvc-publish", 10).await;
    let id = volume.volume_id.clone();

    let mut missing = pb::ControllerPublishVolumeRequest {
        volume_id: id.clone(),
        node_id: NODE.into(),
        ..Default::default()
    };
    assert_eq!(
        code(
            c.controller
                .controller_publish_volume(missing.clone())
                .await
        )
        .0,
        Code::InvalidArgument,
        "no capability"
    );
    missing.volume_capability = Some(mount_cap(Mode::SingleNodeWriter));
    missing.node_id.clear();
    assert_eq!(
        code(c.controller.controller_publish_volume(missing).await).0,
        Code::InvalidArgument,
        "no node"
    );
    assert_eq!(
        code(publish(&mut c, "disk-nothere1", NODE).await).0,
        Code::NotFound
    );
    assert_eq!(
        code(publish(&mut c, &id, "ins-nosuchnode").await).0,
        Code::NotFound
    );

    let first = publish(&mut c, &id, NODE).await.unwrap().into_inner();
    assert_eq!(first.publish_context["diskId"], id);
    let second = publish(&mut c, &id, NODE).await.unwrap().into_inner();
    assert_eq!(first, second, "publishing twice is a no-op");
    let status = c
        .controller
        .controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status.unwrap().published_node_ids, [NODE]);

    let (elsewhere, message) = code(publish(&mut c, &id, "ins-other001").await);
    assert_eq!(elsewhere, Code::FailedPrecondition, "{message}");
    let (in_use, _) = code(
        c.controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(in_use, Code::FailedPrecondition);

    unpublish(&mut c, &id, "ins-other001").await; // not attached there: nothing to do
    unpublish(&mut c, &id, NODE).await;
    unpublish(&mut c, &id, NODE).await;
    unpublish(&mut c, "disk-nothere1", NODE).await;
    publish(&mut c, &id, "ins-other001").await.unwrap();
    unpublish(&mut c, &id, "ins-other001").await;
    c.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: id,
            ..Default::default()
        })
        .await
        .unwrap();
    served.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_on_one_volume_are_aborted() {
    let served = Served::start_with(Driver::Cbs, &["--cbs-attach-ms", "1500"], &[])
        .await
        .unwrap();
    let mut c = served.client().await.unwrap();
    let id = new_volume(&mut c, "pvc-aborted", 10).await.volume_id;
    let mut slow = c.clone();
    let first = {
        let id = id.clone();
        tokio::spawn(async move { publish(&mut slow, &id, NODE).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (aborted, message) = code(publish(&mut c, &id, NODE).await);
    assert_eq!(aborted, Code::Aborted, "{message}");
    assert!(message.contains(&id), "{message}");
    first.await.unwrap().unwrap();
    served.stop().await.unwrap();
}

#[tokio::test]
async fn list_volumes_paginates() {
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            new_volume(&mut c, &format!("pvc-list-{i}"), 10)
                .await
                .volume_id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .controller
            .list_volumes(pb::ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .iter()
                .map(|e| e.volume.as_ref().unwrap().volume_id.clone()),
        );
        pages += 1;
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(pages, 3);
    seen.sort();
    created.sort();
    assert_eq!(seen, created);
    let (bad, _) = code(
        c.controller
            .list_volumes(pb::ListVolumesRequest {
                max_entries: 0,
                starting_token: "not-a-token".into(),
            })
            .await,
    );
    assert_eq!(bad, Code::Aborted);
    served.stop().await.unwrap();
}

#[tokio::test]
async fn snapshots_are_idempotent_listed_and_restorable() {
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let source = new_volume(&mut c, "pvc-snap-src", 10).await.volume_id;
    let other = new_volume(&mut c, "pvc-snap-other", 10).await.volume_id;

    let request = |name: &str, source: &str| pb::CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        ..Default::default()
    };
    assert_eq!(
        code(c.controller.create_snapshot(request("", &source)).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.controller.create_snapshot(request("s", "")).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller
                .create_snapshot(request("snap-missing-src", "disk-nothere1"))
                .await
        )
        .0,
        Code::NotFound
    );
    let snapshot = c
        .controller
        .create_snapshot(request("snapshot-1", &source))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(snapshot.source_volume_id, source);
    assert_eq!(snapshot.size_bytes, 10 * GIB);
    assert!(snapshot.creation_time.is_some());
    let again = c
        .controller
        .create_snapshot(request("snapshot-1", &source))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(
        again.snapshot_id, snapshot.snapshot_id,
        "no duplicate snapshot"
    );
    assert_eq!(
        code(
            c.controller
                .create_snapshot(request("snapshot-1", &other))
                .await
        )
        .0,
        Code::AlreadyExists
    );

    // Ready once the cloud says NORMAL at 100%.
    let mut ready = false;
    for _ in 0..50 {
        let listed = c
            .controller
            .list_snapshots(pb::ListSnapshotsRequest {
                snapshot_id: snapshot.snapshot_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.entries.len(), 1);
        if listed.entries[0].snapshot.as_ref().unwrap().ready_to_use {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "snapshot never became ready");
    c.controller
        .create_snapshot(request("snapshot-2", &source))
        .await
        .unwrap();
    c.controller
        .create_snapshot(request("snapshot-3", &other))
        .await
        .unwrap();
    let by_source = c
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            source_volume_id: source.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_source.entries.len(), 2);
    let first_page = c
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            max_entries: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.entries.len(), 2);
    let rest = c
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            starting_token: first_page.next_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert!(rest.next_token.is_empty());
    let none = c
        .controller
        .list_snapshots(pb::ListSnapshotsRequest {
            snapshot_id: "snap-nothere1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.into_inner().entries.is_empty());

    // Restore: not below the snapshot's size, into a larger disk, from a missing snapshot NOT_FOUND.
    let restore = |name: &str, gib: i64, snap: &str| {
        let mut r = create(name, gib);
        r.volume_content_source = Some(pb::VolumeContentSource {
            r#type: Some(pb::volume_content_source::Type::Snapshot(
                pb::volume_content_source::SnapshotSource {
                    snapshot_id: snap.into(),
                },
            )),
        });
        r
    };
    let restored = c
        .controller
        .create_volume(restore("pvc-restored", 30, &snapshot.snapshot_id))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(restored.capacity_bytes, 30 * GIB);
    assert!(restored.content_source.is_some());
    assert_eq!(
        code(
            c.controller
                .create_volume(restore("pvc-restore-missing", 30, "snap-nothere1"))
                .await
        )
        .0,
        Code::NotFound
    );

    let delete = |id: &str| pb::DeleteSnapshotRequest {
        snapshot_id: id.into(),
        ..Default::default()
    };
    assert_eq!(
        code(c.controller.delete_snapshot(delete("")).await).0,
        Code::InvalidArgument
    );
    c.controller
        .delete_snapshot(delete(&snapshot.snapshot_id))
        .await
        .unwrap();
    c.controller
        .delete_snapshot(delete(&snapshot.snapshot_id))
        .await
        .unwrap();
    served.stop().await.unwrap();
}

#[tokio::test]
async fn expansion_validation_and_modification() {
    let served = Served::start(Driver::Cbs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let id = new_volume(&mut c, "pvc-expand", 10).await.volume_id;
    let expand =
        |gib: i64, capability: Option<pb::VolumeCapability>| pb::ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: gib * GIB,
                limit_bytes: 0,
            }),
            volume_capability: capability,
            ..Default::default()
        };
    let grown = c
        .controller
        .controller_expand_volume(expand(25, Some(mount_cap(Mode::SingleNodeWriter))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, 30 * GIB);
    assert!(grown.node_expansion_required);
    let same = c
        .controller
        .controller_expand_volume(expand(20, Some(block_cap())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        same.capacity_bytes,
        30 * GIB,
        "a smaller request leaves the disk as is"
    );
    assert!(
        !same.node_expansion_required,
        "block volumes need no node expansion"
    );
    let mut missing = expand(40, None);
    missing.volume_id = "disk-nothere1".into();
    assert_eq!(
        code(c.controller.controller_expand_volume(missing).await).0,
        Code::NotFound
    );
    let mut no_range = expand(40, None);
    no_range.capacity_range = None;
    assert_eq!(
        code(c.controller.controller_expand_volume(no_range).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller
                .controller_expand_volume(expand(40_000, None))
                .await
        )
        .0,
        Code::OutOfRange
    );

    let validate =
        |caps: Vec<pb::VolumeCapability>, volume_id: &str| pb::ValidateVolumeCapabilitiesRequest {
            volume_id: volume_id.into(),
            volume_capabilities: caps,
            ..Default::default()
        };
    let ok = c
        .controller
        .validate_volume_capabilities(validate(vec![mount_cap(Mode::SingleNodeWriter)], &id))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some());
    let no = c
        .controller
        .validate_volume_capabilities(validate(vec![mount_cap(Mode::MultiNodeReaderOnly)], &id))
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none() && !no.message.is_empty());
    assert_eq!(
        code(
            c.controller
                .validate_volume_capabilities(validate(vec![], &id))
                .await
        )
        .0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller
                .validate_volume_capabilities(validate(vec![block_cap()], "disk-nothere1"))
                .await
        )
        .0,
        Code::NotFound
    );

    let modify = |params: &[(&str, &str)]| pb::ControllerModifyVolumeRequest {
        volume_id: id.clone(),
        mutable_parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    };
    let (bad, message) = code(
        c.controller
            .controller_modify_volume(modify(&[("color", "blue")]))
            .await,
    );
    assert_eq!(bad, Code::InvalidArgument);
    assert!(message.contains("color"), "{message}");
    c.controller
        .controller_modify_volume(modify(&[("diskType", "CLOUD_SSD")]))
        .await
        .unwrap();
    let volume = c
        .controller
        .controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        volume.volume.unwrap().volume_context["diskType"],
        "CLOUD_SSD"
    );
    served.stop().await.unwrap();
}

#[tokio::test]
async fn a_stuck_attach_is_reported_not_waited_on_forever() {
    let served = Served::start_with(
        Driver::Cbs,
        &["--fault", "AttachDisks:stuck=true"],
        &["--attach-timeout-secs", "1"],
    )
    .await
    .unwrap();
    let mut c = served.client().await.unwrap();
    let id = new_volume(&mut c, "pvc-stuck", 10).await.volume_id;
    // The first call may run out its own deadline while ATTACHING; the watchdog then says why.
    let mut last = (Code::Ok, String::new());
    for _ in 0..5 {
        let mut request = tonic::Request::new(pb::ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: NODE.into(),
            volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        });
        request.set_timeout(Duration::from_millis(1500));
        last = code(c.controller.controller_publish_volume(request).await);
        if last.0 == Code::Internal {
            break;
        }
        assert_eq!(last.0, Code::DeadlineExceeded, "{}", last.1);
    }
    assert_eq!(last.0, Code::Internal, "{}", last.1);
    assert!(
        last.1.contains("ATTACHING") && last.1.contains("attach timeout"),
        "{}",
        last.1
    );
    served.stop().await.unwrap();
}
