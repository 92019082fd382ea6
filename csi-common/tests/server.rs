//! The server bootstrap over a real unix socket: the socket's lifecycle, unix and tcp.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_common::csi::{Endpoint, IdentityService, PluginCaps, ServeError, pb, serve};
use tokio::sync::oneshot;
use tonic::service::Routes;
use tonic::transport::Channel;

async fn channel(socket: &Path) -> Channel {
    csi_common::csi::connect_unix(socket).await.unwrap()
}

fn routes() -> Routes {
    Routes::new(IdentityService::new("test.csi", "1.0", PluginCaps::default()).into_server())
}

/// Starts `serve` on `socket` and waits until it answers. Returns the shutdown trigger and task.
async fn start(
    socket: &Path,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let endpoint = Endpoint::Unix(socket.to_owned());
    let task = tokio::spawn(async move {
        serve(
            &endpoint,
            routes(),
            async {
                let _ = rx.await;
            },
            csi_common::metrics::Metrics::new(),
        )
        .await
    });
    for _ in 0..100 {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return (tx, task);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not come up on {}", socket.display());
}

#[tokio::test]
async fn socket_lifecycle_stale_replaced_live_refused_removed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directory does not exist yet: serve creates it.
    let socket: PathBuf = dir.path().join("plugins/x/csi.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A stale socket left by a crashed process: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );

    let (stop, task) = start(&socket).await;
    let mut client = pb::identity_client::IdentityClient::new(channel(&socket).await);
    let info = client
        .get_plugin_info(pb::GetPluginInfoRequest {})
        .await
        .unwrap();
    assert_eq!(info.get_ref().name, "test.csi");
    let probe = client.probe(pb::ProbeRequest {}).await.unwrap();
    assert_eq!(probe.get_ref().ready, Some(true));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);

    // A second server on the same live socket must refuse, not steal it.
    let err = serve(
        &Endpoint::Unix(socket.clone()),
        routes(),
        async {},
        csi_common::metrics::Metrics::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServeError::SocketInUse { .. }), "{err}");
    assert!(
        socket.exists(),
        "the live socket must survive the refused start"
    );

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!socket.exists(), "socket must be removed on shutdown");
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = serve(
        &Endpoint::Unix(path.clone()),
        routes(),
        async {},
        csi_common::metrics::Metrics::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServeError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn tcp_endpoint_serves() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (tx, rx) = oneshot::channel::<()>();
    let endpoint = Endpoint::Tcp(addr.to_string());
    let task = tokio::spawn(async move {
        serve(
            &endpoint,
            routes(),
            async {
                let _ = rx.await;
            },
            csi_common::metrics::Metrics::new(),
        )
        .await
    });
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = pb::identity_client::IdentityClient::connect(format!("http://{addr}")).await
        {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = client.expect("tcp server up");
    assert_eq!(
        client
            .probe(pb::ProbeRequest {})
            .await
            .unwrap()
            .get_ref()
            .ready,
        Some(true)
    );
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
