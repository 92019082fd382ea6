//! `/metrics` of a real driver after a small lifecycle through `e2e serve`: the series with the
//! expected counts, and no volume, disk or node ID anywhere in the label sets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use csi_conformance::{Driver, Served};
use csi_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(address: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

#[tokio::test]
async fn a_cbs_lifecycle_shows_in_the_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let served = Served::start(Driver::Cbs, &["--metrics-address", &address])
        .await
        .unwrap();
    let mut c = served.client().await.unwrap();
    let capability = pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: pb::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    };
    let volume = c
        .controller
        .create_volume(pb::CreateVolumeRequest {
            name: "pvc-metrics".into(),
            volume_capabilities: vec![capability.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let missing = c
        .controller
        .controller_publish_volume(pb::ControllerPublishVolumeRequest {
            volume_id: "disk-nothere1".into(),
            node_id: "ins-sim00001".into(),
            volume_capability: Some(capability.clone()),
            ..Default::default()
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
    c.controller
        .controller_publish_volume(pb::ControllerPublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            node_id: "ins-sim00001".into(),
            volume_capability: Some(capability.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    c.controller
        .controller_unpublish_volume(pb::ControllerUnpublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            node_id: "ins-sim00001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.controller
        .delete_volume(pb::DeleteVolumeRequest {
            volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let text = scrape(&address).await;
    for expected in [
        "tencentcloud_csi_operation_duration_seconds_count{method=\"CreateVolume\",code=\"Ok\"} 1",
        "tencentcloud_csi_operation_duration_seconds_count{method=\"DeleteVolume\",code=\"Ok\"} 1",
        "tencentcloud_csi_operation_errors_total{method=\"ControllerPublishVolume\",code=\"NotFound\"} 1",
        "tencentcloud_csi_cloud_api_calls_total{service=\"cbs\",action=\"CreateDisks\",outcome=\"ok\"} 1",
        "tencentcloud_csi_cloud_api_calls_total{service=\"cbs\",action=\"TerminateDisks\",outcome=\"ok\"} 1",
        "# TYPE tencentcloud_csi_cloud_api_duration_seconds histogram",
        "tencentcloud_csi_cloud_wait_duration_seconds_count{resource=\"disk\",wait=\"the attach\",outcome=\"reached\"} 1",
        "tencentcloud_csi_cloud_wait_duration_seconds_count{resource=\"disk\",wait=\"the detach\",outcome=\"reached\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let unprefixed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with('#'))
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| !l.starts_with(metrics_registry::PREFIX) && !l.starts_with("process_"))
        .collect();
    assert!(
        unprefixed.is_empty(),
        "series not named tencentcloud_csi_* (or process_*): {unprefixed:?}"
    );
    for forbidden in [
        volume.volume_id.as_str(),
        "disk-nothere1",
        "ins-sim00001",
        "pvc-metrics",
    ] {
        assert!(!text.contains(forbidden), "{forbidden} in a label:\n{text}");
    }
    served.stop().await.unwrap();
}
