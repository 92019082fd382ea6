//! CSI conformance of the FUSE drivers (csi-cos, csi-goosefs) over the real socket, against
//! `e2e serve`: capabilities, required errors, idempotent prefix-per-PV provisioning, and the node
//! calls' idempotency and error codes. Requests carry no secret: the drivers fall back to their
//! own credentials, as for a PV without nodePublishSecretRef.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use csi_conformance::{Driver, Served};
use csi_proto::v1 as pb;
use pb::volume_capability::access_mode::Mode;
use tonic::Code;

fn cap(mode: Mode, block: bool) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(if block {
            pb::volume_capability::AccessType::Block(Default::default())
        } else {
            pb::volume_capability::AccessType::Mount(Default::default())
        }),
    }
}

fn create(name: &str, parameters: &[(&str, &str)]) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(Mode::MultiNodeMultiWriter, false)],
        parameters: parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match result {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

async fn conformance(driver: Driver) {
    let served = Served::start(driver, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();

    let plugin = c
        .identity
        .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(
        plugin.len(),
        1,
        "controller service only, no topology: {plugin:?}"
    );
    let controller = c
        .controller
        .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(
        controller.len(),
        1,
        "CREATE_DELETE_VOLUME only: {controller:?}"
    );
    let node = c
        .node
        .node_get_capabilities(pb::NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(node.len(), 3, "stats, condition, mount group: {node:?}");

    // Required fields and unsupported requests.
    assert_eq!(
        code(c.controller.create_volume(create("", &[])).await).0,
        Code::InvalidArgument
    );
    let mut no_caps = create("pvc-x", &[]);
    no_caps.volume_capabilities.clear();
    assert_eq!(
        code(c.controller.create_volume(no_caps).await).0,
        Code::InvalidArgument
    );
    let mut block = create("pvc-x", &[]);
    block.volume_capabilities = vec![cap(Mode::SingleNodeWriter, true)];
    assert_eq!(
        code(c.controller.create_volume(block).await).0,
        Code::InvalidArgument
    );
    let (unknown, message) = code(
        c.controller
            .create_volume(create("pvc-x", &[("colour", "red")]))
            .await,
    );
    assert_eq!(unknown, Code::InvalidArgument);
    assert!(message.contains("colour"), "{message}");
    assert_eq!(
        code(
            c.controller
                .delete_volume(pb::DeleteVolumeRequest::default())
                .await
        )
        .0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller
                .controller_publish_volume(pb::ControllerPublishVolumeRequest::default())
                .await
        )
        .0,
        Code::Unimplemented
    );

    // Provisioning: idempotent by name, a conflict for other parameters, deletes idempotent.
    let first = c
        .controller
        .create_volume(create("pvc-conf", &[("onDelete", "delete")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let again = c
        .controller
        .create_volume(create("pvc-conf", &[("onDelete", "delete")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(first.volume_id, again.volume_id);
    assert_eq!(first.capacity_bytes, 1 << 30);
    assert_eq!(
        code(
            c.controller
                .create_volume(create("pvc-conf", &[("onDelete", "retain")]))
                .await
        )
        .0,
        Code::AlreadyExists
    );
    let validated = c
        .controller
        .validate_volume_capabilities(pb::ValidateVolumeCapabilitiesRequest {
            volume_id: first.volume_id.clone(),
            volume_capabilities: vec![cap(Mode::MultiNodeMultiWriter, false)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validated.confirmed.is_some(), "{validated:?}");

    // Node: publish twice, unpublish twice, wrong inputs get the spec's codes.
    let target = served.workdir.join("kubelet/pods/p1/mount");
    let publish = pb::NodePublishVolumeRequest {
        volume_id: first.volume_id.clone(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap(Mode::MultiNodeMultiWriter, false)),
        volume_context: first.volume_context.clone(),
        ..Default::default()
    };
    c.node.node_publish_volume(publish.clone()).await.unwrap();
    c.node.node_publish_volume(publish.clone()).await.unwrap();
    let stats = c
        .node
        .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
            volume_id: first.volume_id.clone(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!stats.volume_condition.unwrap().abnormal);
    let mut no_target = publish.clone();
    no_target.target_path.clear();
    assert_eq!(
        code(c.node.node_publish_volume(no_target).await).0,
        Code::InvalidArgument
    );
    let mut no_cap = publish.clone();
    no_cap.volume_capability = None;
    assert_eq!(
        code(c.node.node_publish_volume(no_cap).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.node
                .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
                    volume_id: first.volume_id.clone(),
                    volume_path: served.workdir.join("nowhere").display().to_string(),
                    ..Default::default()
                })
                .await
        )
        .0,
        Code::NotFound
    );
    let unpublish = pb::NodeUnpublishVolumeRequest {
        volume_id: first.volume_id.clone(),
        target_path: target.display().to_string(),
    };
    c.node
        .node_unpublish_volume(unpublish.clone())
        .await
        .unwrap();
    c.node.node_unpublish_volume(unpublish).await.unwrap();
    assert!(!target.exists(), "the target is removed");

    for _ in 0..2 {
        c.controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: first.volume_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    c.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: "not-a-volume-of-ours".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let info = c
        .node
        .node_get_info(pb::NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "ins-sim00001");
    assert!(
        info.accessible_topology.is_none(),
        "buckets have no topology"
    );
    served.stop().await.unwrap();
}

#[tokio::test]
async fn csi_cos_conforms() {
    conformance(Driver::Cos).await;
}

#[tokio::test]
async fn csi_goosefs_conforms() {
    conformance(Driver::Goosefs).await;
}
