//! `serve`: runs a set of gRPC services on a CSI endpoint until shutdown, owning the socket's whole
//! lifecycle: parent directory created, stale socket replaced, live socket refused, socket removed
//! on exit.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::service::Routes;
use tonic::transport::Server;

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::rpclog::RpcLogLayer;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the socket directory {}", path.display())]
    SocketDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("another server is already listening on {}", path.display())]
    SocketInUse { path: PathBuf },
    #[error("cannot remove the stale socket {}", path.display())]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {endpoint}")]
    Bind {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server on {endpoint} failed")]
    Transport {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Serves `routes` on `endpoint` until `shutdown` completes, then drains in-flight calls.
pub async fn serve(
    endpoint: &Endpoint,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send,
    metrics: Arc<Metrics>,
) -> Result<(), ServeError> {
    let router = Server::builder()
        .layer(RpcLogLayer::new(metrics))
        .add_routes(routes);
    let transport = |source| ServeError::Transport {
        endpoint: endpoint.to_string(),
        source,
    };
    match endpoint {
        Endpoint::Unix(path) => {
            // kubelet and the sidecars run as root; nobody else needs to talk to a CSI driver.
            let listener = bind_unix(path, 0o660)?;
            tracing::info!(%endpoint, "serving CSI");
            let result = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                .await;
            // Remove the socket whatever happened, so the next start finds a clean directory.
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(socket = %path.display(), error = %e, "cannot remove the socket");
            }
            result.map_err(transport)
        }
        Endpoint::Tcp(addr) => {
            let listener =
                TcpListener::bind(addr.as_str())
                    .await
                    .map_err(|source| ServeError::Bind {
                        endpoint: endpoint.to_string(),
                        source,
                    })?;
            let local = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::info!(%endpoint, %local, "serving CSI");
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
                .map_err(transport)
        }
    }
}

/// Prepares `path` and binds it: a leftover socket nobody answers on is removed; a socket that
/// answers belongs to a live server and is left alone; any other file is never deleted. The socket
/// gets `mode`.
pub fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ServeError::SocketDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::SocketInUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!(socket = %path.display(), "removing stale socket");
            std::fs::remove_file(path).map_err(|source| ServeError::RemoveStale {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(_) => {}
    }
    let bind_error = |source| ServeError::Bind {
        endpoint: format!("unix://{}", path.display()),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_error)?;
    Ok(listener)
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives while the server starts is not lost
/// (nor does it kill the process with the default action).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}
