//! The node plugin's side of the host's socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::protocol::{ErrorCode, MAX_REQUEST_BYTES, MountRequest, MountStatus, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "cannot reach the FUSE host at {socket}: {source} (is the FUSE host DaemonSet running on this node?)"
    )]
    Unreachable {
        socket: String,
        source: std::io::Error,
    },
    #[error("the FUSE host at {socket} did not answer within {timeout:?}")]
    Timeout { socket: String, timeout: Duration },
    #[error("the FUSE host sent an answer that cannot be read: {0}")]
    BadAnswer(String),
    #[error("the FUSE host refused: {message}")]
    Refused { code: ErrorCode, message: String },
}

/// Talks to a FUSE host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HostClient {
    socket: PathBuf,
}

impl HostClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        HostClient {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and waits up to `timeout` for the answer.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, HostError> {
        let socket = self.socket.display().to_string();
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket).await.map_err(|source| {
                HostError::Unreachable {
                    socket: socket.clone(),
                    source,
                }
            })?;
            let body =
                serde_json::to_vec(request).map_err(|e| HostError::BadAnswer(e.to_string()))?;
            let io = |source| HostError::Unreachable {
                socket: socket.clone(),
                source,
            };
            stream.write_all(&body).await.map_err(io)?;
            stream.shutdown().await.map_err(io)?;
            let mut answer = Vec::new();
            (&mut stream)
                .take(MAX_REQUEST_BYTES)
                .read_to_end(&mut answer)
                .await
                .map_err(io)?;
            serde_json::from_slice::<Response>(&answer)
                .map_err(|e| HostError::BadAnswer(e.to_string()))
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HostError::Timeout {
                socket: socket.clone(),
                timeout,
            })??;
        match response.error {
            Some((code, message)) => Err(HostError::Refused { code, message }),
            None => Ok(response),
        }
    }

    /// Mounts (or confirms, or repairs) and returns the mount's status.
    pub async fn mount(
        &self,
        request: MountRequest,
        timeout: Duration,
    ) -> Result<MountStatus, HostError> {
        let target = request.target.clone();
        let response = self.call(&Request::Mount(request), timeout).await?;
        single(response, &target)
    }

    pub async fn unmount(&self, target: &Path, timeout: Duration) -> Result<(), HostError> {
        self.call(
            &Request::Unmount {
                target: target.to_owned(),
            },
            timeout,
        )
        .await
        .map(|_| ())
    }

    /// The recorded mount at `target`, if any.
    pub async fn status(
        &self,
        target: &Path,
        timeout: Duration,
    ) -> Result<Option<MountStatus>, HostError> {
        let response = self
            .call(
                &Request::Status {
                    target: target.to_owned(),
                },
                timeout,
            )
            .await?;
        Ok(response.mounts.into_iter().next())
    }

    pub async fn list(&self, timeout: Duration) -> Result<Vec<MountStatus>, HostError> {
        Ok(self.call(&Request::List, timeout).await?.mounts)
    }
}

fn single(response: Response, target: &Path) -> Result<MountStatus, HostError> {
    response.mounts.into_iter().next().ok_or_else(|| {
        HostError::BadAnswer(format!(
            "no status for {} in the answer to a mount",
            target.display()
        ))
    })
}
