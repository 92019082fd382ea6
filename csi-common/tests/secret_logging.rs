//! The RPC layer never writes a secret to the log, even at the most verbose level.
//!
//! Its own test binary: it installs the global subscriber, which tracing's callsite cache needs
//! to see every line from every thread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi_common::csi::{Endpoint, IdentityService, PluginCaps, pb, serve};
use tonic::service::Routes;
use tonic::transport::Channel;

async fn channel(socket: &Path) -> Channel {
    csi_common::csi::connect_unix(socket).await.unwrap()
}

/// A `MakeWriter` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_log_even_at_trace() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let endpoint = Endpoint::Unix(socket.clone());
    let routes =
        Routes::new(IdentityService::new("test.csi", "1.0", PluginCaps::default()).into_server());
    let task = tokio::spawn(async move {
        serve(
            &endpoint,
            routes,
            async {
                let _ = rx.await;
            },
            csi_common::metrics::Metrics::new(),
        )
        .await
    });
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let channel = channel(&socket).await;
    let secret_value = "s3cr3t-VALUE-never-logged";
    let secrets: std::collections::HashMap<String, String> = [
        ("SecretKey".to_string(), secret_value.to_string()),
        ("SecretId".to_string(), format!("{secret_value}-id")),
    ]
    .into();
    // The node service is not registered: the call fails UNIMPLEMENTED, but the layer has already
    // decoded and logged the request, which is exactly what must be clean.
    let mut node = pb::node_client::NodeClient::new(channel.clone());
    let status = node
        .node_publish_volume(pb::NodePublishVolumeRequest {
            volume_id: "vol-log-test".into(),
            target_path: "/tmp/target".into(),
            secrets: secrets.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    let mut controller = pb::controller_client::ControllerClient::new(channel);
    let _ = controller
        .create_volume(pb::CreateVolumeRequest {
            name: "pvc-1".into(),
            secrets,
            ..Default::default()
        })
        .await;

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("NodePublishVolume"),
        "the call is logged:\n{log}"
    );
    assert!(log.contains("vol-log-test"), "the volume is named:\n{log}");
    assert!(log.contains("SecretKey"), "key names may appear:\n{log}");
    assert!(
        log.contains("Unimplemented"),
        "the failure code is logged:\n{log}"
    );
    assert!(
        !log.contains(secret_value),
        "a secret value leaked into the log:\n{log}"
    );
}
