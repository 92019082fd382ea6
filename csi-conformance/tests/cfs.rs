//! CSI conformance of csi-cfs over the real socket, against `e2e serve --driver cfs`, in both
//! modes: capabilities, required errors, idempotency, expansion, and a static PV.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

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

fn create(name: &str, extra: &[(&str, &str)]) -> pb::CreateVolumeRequest {
    let mut parameters: HashMap<String, String> =
        [("vpcid", "vpc-conf0001"), ("subnetid", "subnet-conf0001")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    parameters.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(Mode::MultiNodeMultiWriter, false)],
        parameters,
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match result {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

#[tokio::test]
async fn capabilities_and_required_errors() {
    let served = Served::start(Driver::Cfs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    let plugin = c
        .identity
        .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        plugin.capabilities.len(),
        1,
        "only CONTROLLER_SERVICE: NFS has no topology: {plugin:?}"
    );
    let controller = c
        .controller
        .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(controller.capabilities.len(), 3);
    let node = c
        .node
        .node_get_capabilities(pb::NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.capabilities.len(), 3);

    assert_eq!(
        code(c.controller.create_volume(create("", &[])).await).0,
        Code::InvalidArgument
    );
    let mut no_caps = create("v", &[]);
    no_caps.volume_capabilities.clear();
    assert_eq!(
        code(c.controller.create_volume(no_caps).await).0,
        Code::InvalidArgument
    );
    let mut block = create("v", &[]);
    block.volume_capabilities = vec![cap(Mode::SingleNodeWriter, true)];
    assert_eq!(
        code(c.controller.create_volume(block).await).0,
        Code::InvalidArgument
    );
    // e2e serve gives the driver the simulated cluster's VPC and subnet as defaults (a StorageClass
    // may omit them, as csi-sanity's do); a malformed one is still named.
    let mut defaults_apply = create("v-defaults", &[]);
    defaults_apply.parameters.clear();
    c.controller.create_volume(defaults_apply).await.unwrap();
    let (bad_subnet, message) = code(
        c.controller
            .create_volume(create("v", &[("subnetid", "net-1")]))
            .await,
    );
    assert_eq!(bad_subnet, Code::InvalidArgument);
    assert!(message.contains("subnetid"), "{message}");
    let (unknown, message) = code(
        c.controller
            .create_volume(create("v", &[("diskType", "x")]))
            .await,
    );
    assert_eq!(unknown, Code::InvalidArgument);
    assert!(message.contains("diskType"), "{message}");

    assert_eq!(
        code(
            c.controller
                .delete_volume(pb::DeleteVolumeRequest::default())
                .await
        )
        .0,
        Code::InvalidArgument
    );
    for id in [
        "cfs-nothere1",
        "cfs-nothere1/delete/x",
        "some-static-volume",
    ] {
        c.controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let stage = pb::NodeStageVolumeRequest {
        volume_id: "v".into(),
        staging_target_path: served.workdir.join("kubelet/never").display().to_string(),
        volume_capability: Some(cap(Mode::MultiNodeMultiWriter, false)),
        ..Default::default()
    };
    let (no_host, message) = code(c.node.node_stage_volume(stage).await);
    assert_eq!(no_host, Code::InvalidArgument);
    assert!(message.contains("host"), "{message}");
    served.stop().await.unwrap();
}

#[tokio::test]
async fn both_modes_validate_and_expand_idempotently() {
    let served = Served::start(Driver::Cfs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    for (name, extra) in [
        ("pvc-whole", vec![]),
        ("pvc-shared", vec![("subdir-share", "true")]),
    ] {
        let first = c
            .controller
            .create_volume(create(name, &extra))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let again = c
            .controller
            .create_volume(create(name, &extra))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(first.volume_id, again.volume_id, "{name}");
        let validate = |caps| pb::ValidateVolumeCapabilitiesRequest {
            volume_id: first.volume_id.clone(),
            volume_capabilities: caps,
            ..Default::default()
        };
        let ok = c
            .controller
            .validate_volume_capabilities(validate(vec![cap(Mode::MultiNodeMultiWriter, false)]))
            .await
            .unwrap()
            .into_inner();
        assert!(ok.confirmed.is_some(), "{name}");
        let no = c
            .controller
            .validate_volume_capabilities(validate(vec![cap(Mode::SingleNodeWriter, true)]))
            .await
            .unwrap()
            .into_inner();
        assert!(no.confirmed.is_none() && !no.message.is_empty(), "{name}");
        let expanded = c
            .controller
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: first.volume_id.clone(),
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: 5 << 30,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(expanded.capacity_bytes, 5 << 30);
        assert!(!expanded.node_expansion_required);
    }
    let unknown = pb::ValidateVolumeCapabilitiesRequest {
        volume_id: "cfs-nothere1".into(),
        volume_capabilities: vec![cap(Mode::MultiNodeMultiWriter, false)],
        ..Default::default()
    };
    assert_eq!(
        code(c.controller.validate_volume_capabilities(unknown).await).0,
        Code::NotFound
    );
    served.stop().await.unwrap();
}

#[tokio::test]
async fn a_static_pv_read_only() {
    let served = Served::start(Driver::Cfs, &[]).await.unwrap();
    let mut c = served.client().await.unwrap();
    // A file system made by the driver, then used the way a hand-written static PV would.
    let volume = c
        .controller
        .create_volume(create("pvc-for-static", &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let context: HashMap<String, String> = [
        ("host", volume.volume_context["host"].as_str()),
        ("path", "/"),
        ("vers", "3"),
        ("fsid", volume.volume_context["fsid"].as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let kubelet = served.workdir.join("kubelet");
    let (staging, target) = (
        kubelet.join("staging/static"),
        kubelet.join("pods/static/mount"),
    );
    let capability = cap(Mode::MultiNodeReaderOnly, false);
    c.node
        .node_stage_volume(pb::NodeStageVolumeRequest {
            volume_id: "static-pv-1".into(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(capability.clone()),
            volume_context: context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.node
        .node_publish_volume(pb::NodePublishVolumeRequest {
            volume_id: "static-pv-1".into(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(capability),
            readonly: true,
            volume_context: context,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = std::fs::write(target.join("nope"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
    c.node
        .node_unpublish_volume(pb::NodeUnpublishVolumeRequest {
            volume_id: "static-pv-1".into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap();
    c.node
        .node_unstage_volume(pb::NodeUnstageVolumeRequest {
            volume_id: "static-pv-1".into(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .unwrap();
    served.stop().await.unwrap();
}
