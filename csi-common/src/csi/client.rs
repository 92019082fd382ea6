//! Connecting a gRPC client to a CSI endpoint on a unix socket, for the harness, the tests and any
//! tool of ours that talks to a driver.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel to the server listening on the unix socket `path`.
pub async fn connect_unix(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_owned();
    // tonic wants a URI, which the connector ignores: it dials the socket.
    Endpoint::from_static("http://[::1]:1")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}
