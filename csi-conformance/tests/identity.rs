//! Identity over the real socket, for every driver started through `e2e serve`: the names
//! Tencent's drivers register, honest capabilities, Probe, and a clean stop that leaves nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use csi_conformance::{Driver, Served};
use csi_proto::v1 as pb;

#[tokio::test]
async fn every_driver_answers_identity_and_stops_clean() {
    for driver in Driver::EVERY {
        let served = Served::start(driver, &[]).await.unwrap();
        let mut client = served.client().await.unwrap();

        let info = client
            .identity
            .get_plugin_info(pb::GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, driver.csi_name(), "{driver:?}");
        assert!(!info.vendor_version.is_empty(), "{driver:?}");

        let caps = client
            .identity
            .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        // Honest capabilities: CONTROLLER_SERVICE is claimed exactly when the service answers.
        let claims_controller = caps.capabilities.iter().any(|c| {
            matches!(
                &c.r#type,
                Some(pb::plugin_capability::Type::Service(s))
                    if s.r#type == pb::plugin_capability::service::Type::ControllerService as i32
            )
        });
        let serves_controller = match client
            .controller
            .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
            .await
        {
            Ok(_) => true,
            Err(status) if status.code() == tonic::Code::Unimplemented => false,
            Err(status) => panic!("{driver:?}: ControllerGetCapabilities failed: {status}"),
        };
        assert_eq!(
            claims_controller, serves_controller,
            "{driver:?}: claims a controller: {claims_controller}, serves one: {serves_controller}"
        );
        assert!(
            serves_controller,
            "{driver:?}: every driver has a controller (CBS and CFS volumes, COS and GooseFS prefixes)"
        );

        let probe = client
            .identity
            .probe(pb::ProbeRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(probe.ready, Some(true), "{driver:?}");

        let socket = served.socket().to_owned();
        let workdir = served.workdir.clone();
        drop(client);
        served.stop().await.unwrap();
        assert!(!socket.exists(), "{driver:?}: socket left behind");
        assert!(!workdir.exists(), "{driver:?}: work directory left behind");
    }
}

/// CFS Turbo (`csi-cfs --flavor turbo`): exactly the capabilities it serves, and the Turbo file
/// system `e2e serve` printed is one CreateVolume can use.
#[tokio::test]
async fn cfs_turbo_claims_exactly_what_it_serves() {
    use pb::controller_service_capability::rpc::Type as ControllerCap;
    use pb::node_service_capability::rpc::Type as NodeCap;
    let served = Served::start(Driver::CfsTurbo, &[]).await.unwrap();
    let turbo = served
        .turbo
        .clone()
        .expect("e2e serve printed the Turbo file system");
    let mut client = served.client().await.unwrap();
    let mut controller: Vec<i32> = client
        .controller
        .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|c| {
            c.r#type
                .map(|pb::controller_service_capability::Type::Rpc(rpc)| rpc.r#type)
        })
        .collect();
    controller.sort();
    let mut expected = vec![
        ControllerCap::CreateDeleteVolume as i32,
        ControllerCap::ExpandVolume as i32,
    ];
    expected.sort();
    assert_eq!(controller, expected);
    let mut node: Vec<i32> = client
        .node
        .node_get_capabilities(pb::NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|c| {
            c.r#type
                .map(|pb::node_service_capability::Type::Rpc(rpc)| rpc.r#type)
        })
        .collect();
    node.sort();
    let mut expected = vec![
        NodeCap::StageUnstageVolume as i32,
        NodeCap::GetVolumeStats as i32,
        NodeCap::VolumeCondition as i32,
    ];
    expected.sort();
    assert_eq!(node, expected);
    // No attach: ControllerPublishVolume is not offered.
    let err = client
        .controller
        .controller_publish_volume(pb::ControllerPublishVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    let mount = pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: pb::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    };
    let volume = client
        .controller
        .create_volume(pb::CreateVolumeRequest {
            name: "pvc-conformance".into(),
            volume_capabilities: vec![mount],
            parameters: turbo.parameters(&[("on-delete", "delete")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(
        volume
            .volume_id
            .starts_with(&format!("cfsturbo/{}/{}/", turbo.host, turbo.fsid)),
        "{}",
        volume.volume_id
    );
    client
        .controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: volume.volume_id,
            ..Default::default()
        })
        .await
        .unwrap();
    drop(client);
    served.stop().await.unwrap();
}

#[tokio::test]
async fn driver_name_is_configurable_for_shared_cfs_provisioners() {
    let name = "com.tencent.cloud.csi.tcfs.shared-sc";
    let served = Served::start(Driver::Cfs, &["--driver-name", name])
        .await
        .unwrap();
    let mut client = served.client().await.unwrap();
    let info = client
        .identity
        .get_plugin_info(pb::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, name);
    served.stop().await.unwrap();
}

#[tokio::test]
async fn the_driver_log_at_debug_names_calls_but_never_secret_values() {
    let served = Served::start(Driver::Cos, &["-v"]).await.unwrap();
    let mut client = served.client().await.unwrap();
    let secret = "cos-secret-key-that-must-not-leak";
    let _ = client
        .node
        .node_publish_volume(pb::NodePublishVolumeRequest {
            volume_id: "cos-vol-1".into(),
            target_path: "/tmp/never-used".into(),
            secrets: [("SecretKey".to_string(), secret.to_string())].into(),
            ..Default::default()
        })
        .await;
    let log = served.driver_log(Driver::Cos).unwrap();
    served.stop().await.unwrap();
    assert!(
        log.contains("NodePublishVolume") && log.contains("cos-vol-1"),
        "{log}"
    );
    assert!(!log.contains(secret), "secret leaked:\n{log}");
}
