//! A CSI client over a unix socket, with every service's stub.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use csi_proto::v1 as pb;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct CsiClient {
    pub identity: pb::identity_client::IdentityClient<Channel>,
    pub controller: pb::controller_client::ControllerClient<Channel>,
    pub node: pb::node_client::NodeClient<Channel>,
}

impl CsiClient {
    /// Connects to `socket` (a path). Fails fast if nothing listens there.
    pub async fn connect(socket: &Path) -> anyhow::Result<CsiClient> {
        let channel = csi_common::csi::connect_unix(socket)
            .await
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        Ok(CsiClient {
            identity: pb::identity_client::IdentityClient::new(channel.clone()),
            controller: pb::controller_client::ControllerClient::new(channel.clone()),
            node: pb::node_client::NodeClient::new(channel),
        })
    }

    /// Connects and waits until `Probe` says ready, for at most `timeout`.
    pub async fn wait_ready(socket: &Path, timeout: Duration) -> anyhow::Result<CsiClient> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = anyhow::anyhow!("not tried");
        while tokio::time::Instant::now() < deadline {
            match Self::connect(socket).await {
                Ok(mut client) => match client.identity.probe(pb::ProbeRequest {}).await {
                    Ok(response) if response.get_ref().ready != Some(false) => return Ok(client),
                    Ok(_) => last = anyhow::anyhow!("Probe answered not ready"),
                    Err(status) => last = anyhow::anyhow!("Probe failed: {status}"),
                },
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last.context(format!("{} not ready within {timeout:?}", socket.display())))
    }
}
