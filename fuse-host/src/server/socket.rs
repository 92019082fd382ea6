//! The host's socket: who may connect (root, or the host's own user), one JSON request per
//! connection read up to [`MAX_REQUEST_BYTES`], one JSON answer, and the time each operation took
//! by outcome. What a request does is the supervisor's business; this part never touches a
//! daemon, a mount or a record.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use csi_common::csi::server::ServeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::supervisor::Supervisor;
use crate::protocol::{ErrorCode, MAX_REQUEST_BYTES, Request, Response};

/// Binds the socket, in a private directory when the host creates it; only root (and our own
/// user) may ask for mounts.
pub(super) fn listen(socket: &Path) -> Result<UnixListener, ServeError> {
    if let Some(parent) = socket.parent() {
        private_dir(parent).map_err(|source| ServeError::SocketDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    csi_common::csi::server::bind_unix(socket, 0o600)
}

/// Serves one connection: reads the request, has the supervisor carry it out, answers.
pub(super) async fn connection(host: Arc<Supervisor>, mut stream: UnixStream) {
    let allowed = stream
        .peer_cred()
        .is_ok_and(|cred| cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw());
    let response = if !allowed {
        Response::error(ErrorCode::Invalid, "only root may use the FUSE host")
    } else {
        let mut body = Vec::new();
        match (&mut stream)
            .take(MAX_REQUEST_BYTES + 1)
            .read_to_end(&mut body)
            .await
        {
            Err(e) => Response::error(ErrorCode::Invalid, format!("cannot read: {e}")),
            Ok(_) if body.len() as u64 > MAX_REQUEST_BYTES => {
                Response::error(ErrorCode::Invalid, "request too large")
            }
            Ok(_) => match serde_json::from_slice::<Request>(&body) {
                Err(e) => Response::error(ErrorCode::Invalid, format!("bad request: {e}")),
                Ok(request) => handle(&host, request).await,
            },
        }
    };
    match serde_json::to_vec(&response) {
        Ok(bytes) => {
            if let Err(e) = stream.write_all(&bytes).await {
                tracing::warn!(error = %e, "cannot answer a FUSE host client");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode an answer"),
    }
}

async fn handle(host: &Arc<Supervisor>, request: Request) -> Response {
    let started = Instant::now();
    let (op, response) = match request {
        Request::Mount(mount) => ("mount", host.mount(mount).await),
        Request::Unmount { target } => ("unmount", host.unmount(&target).await),
        Request::Status { target } => ("status", host.status(&target).await),
        Request::List => ("list", Response::ok(host.list().await)),
    };
    let outcome = match &response.error {
        None => "ok",
        Some((ErrorCode::Invalid, _)) => "invalid",
        Some((ErrorCode::NotConfigured, _)) => "not_configured",
        Some((ErrorCode::Conflict, _)) => "conflict",
        Some((ErrorCode::Failed, _)) => "failed",
        Some((ErrorCode::Timeout, _)) => "timeout",
    };
    host.config().metrics.observe(
        "tencentcloud_csi_fuse_host_operation_duration_seconds",
        "FUSE host operations (mount, unmount, status, list) by outcome.",
        &[("op", op), ("outcome", outcome)],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Makes the socket's directory private (0700) when the host creates it.
fn private_dir(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
