//! `cluster`: what the drivers read of the cluster through the Kubernetes API, with `kube`
//! (rustls with ring; in-cluster configuration, or a kubeconfig file). Today one thing: the CVM
//! instance behind a Node, from its `spec.providerID`, for node plugins started (as Tencent's CBS
//! DaemonSet starts them) with the Kubernetes node name as their node ID; and the publish Secret a
//! PersistentVolume names (`spec.csi.nodePublishSecretRef`), for the FUSE drivers' node plugins
//! to tell a PV whose Secret is empty from one that names none.
//!
//! It knows no CSI and no cloud API: the node plugin turns its errors into a start-up failure.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[cfg(feature = "fixture")]
pub mod fixture;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the cluster could not tell.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no Kubernetes API configuration (in-cluster service account or --kubeconfig): {0}")]
    Config(String),
    #[error("the Kubernetes API did not answer: {0}")]
    Unreachable(String),
    #[error("the Kubernetes API refused to read {what}: {message}")]
    Refused { what: String, message: String },
    #[error("Node {0:?} does not exist")]
    NodeNotFound(String),
    #[error("PersistentVolume {0:?} does not exist")]
    PvNotFound(String),
    #[error("Node {0:?} has no spec.providerID (is the cloud controller manager running?)")]
    NoProviderId(String),
    #[error(
        "Node {node:?} has spec.providerID {value:?}, which names no CVM instance \
         (expected qcloud:///<zone-id>/ins-xxxxxxxx or tencentcloud://kn-xxxxxxxx)"
    )]
    BadProviderId { node: String, value: String },
}

impl ClusterError {
    /// Whether asking again later may answer (the API was unreachable or overloaded).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unreachable(_))
    }
}

/// A Secret named by a PersistentVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The instance behind a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInstance {
    /// `ins-…` (a CVM) or `eks-…` (a super node's).
    pub instance_id: String,
    /// The numeric zone ID of `qcloud:///<zone-id>/…`, when the providerID carries one.
    pub zone_id: Option<String>,
}

/// Whether `id` is already an instance ID (`ins-…`, `eks-…`) rather than a node name.
pub fn is_instance_id(id: &str) -> bool {
    ["ins-", "eks-"].iter().any(|prefix| {
        id.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
    })
}

/// The instance a Node's `spec.providerID` names: `qcloud:///<zone-id>/ins-…` (a CVM), or
/// `tencentcloud://kn-…` (a super node, whose instance is `eks-…`).
pub fn parse_provider_id(node: &str, value: &str) -> Result<NodeInstance, ClusterError> {
    let bad = || ClusterError::BadProviderId {
        node: node.to_owned(),
        value: value.to_owned(),
    };
    if let Some(rest) = value.strip_prefix("qcloud:///") {
        let (zone, instance) = rest.split_once('/').ok_or_else(bad)?;
        let zone_ok = !zone.is_empty() && zone.chars().all(|c| c.is_ascii_digit());
        if !zone_ok || !instance.starts_with("ins-") || !is_instance_id(instance) {
            return Err(bad());
        }
        return Ok(NodeInstance {
            instance_id: instance.to_owned(),
            zone_id: Some(zone.to_owned()),
        });
    }
    if let Some(rest) = value.strip_prefix("tencentcloud://kn-") {
        let instance = format!("eks-{rest}");
        if !is_instance_id(&instance) {
            return Err(bad());
        }
        return Ok(NodeInstance {
            instance_id: instance,
            zone_id: None,
        });
    }
    Err(bad())
}

/// A client of the cluster's API.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects with `kubeconfig`, or else the in-cluster service account (then `~/.kube/config`).
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Cluster, ClusterError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| ClusterError::Config(e.to_string()))?,
        };
        // One policy of retries, ours (`node_instance_retried`): kube's own would retry a 503
        // fifteen times, far past a call's bound.
        config.default_retry = false;
        config.connect_timeout = Some(CALL_TIMEOUT);
        config.read_timeout = Some(CALL_TIMEOUT);
        config.write_timeout = Some(CALL_TIMEOUT);
        let client =
            kube::Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Cluster { client })
    }

    /// The instance behind the Node `node`.
    pub async fn node_instance(&self, node: &str) -> Result<NodeInstance, ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let found = answered(&format!("Node {node:?}"), nodes.get_opt(node)).await?;
        let found = found.ok_or_else(|| ClusterError::NodeNotFound(node.to_owned()))?;
        let provider = found
            .spec
            .and_then(|spec| spec.provider_id)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ClusterError::NoProviderId(node.to_owned()))?;
        parse_provider_id(node, &provider)
    }

    /// The Secret the PersistentVolume `pv` names for NodePublishVolume
    /// (`spec.csi.nodePublishSecretRef`); `None` when it names none.
    pub async fn pv_publish_secret(&self, pv: &str) -> Result<Option<SecretRef>, ClusterError> {
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let found = answered(&format!("PersistentVolume {pv:?}"), pvs.get_opt(pv)).await?;
        let found = found.ok_or_else(|| ClusterError::PvNotFound(pv.to_owned()))?;
        Ok(found
            .spec
            .and_then(|spec| spec.csi)
            .and_then(|csi| csi.node_publish_secret_ref)
            .and_then(|r| {
                let name = r.name.filter(|n| !n.is_empty())?;
                Some(SecretRef {
                    namespace: r.namespace.unwrap_or_else(|| "default".to_owned()),
                    name,
                })
            }))
    }

    /// The zones the cluster's Nodes are in, from their zone labels (`label_keys`, the first one
    /// a Node has), each once, sorted. Numeric zone IDs are returned as they are.
    pub async fn node_zones(&self, label_keys: &[&str]) -> Result<Vec<String>, ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let listed = answered("the Nodes", nodes.list(&Default::default())).await?;
        let mut zones: Vec<String> = listed
            .items
            .iter()
            .filter_map(|node| {
                let labels = node.metadata.labels.as_ref()?;
                label_keys.iter().find_map(|k| labels.get(*k)).cloned()
            })
            .filter(|zone| !zone.is_empty())
            .collect();
        zones.sort();
        zones.dedup();
        Ok(zones)
    }

    /// [`Cluster::node_instance`], asked again while the API is unreachable: `attempts` times in
    /// all, waiting `first_wait` and then twice as long each time.
    pub async fn node_instance_retried(
        &self,
        node: &str,
        attempts: u32,
        first_wait: Duration,
    ) -> Result<NodeInstance, ClusterError> {
        let mut wait = first_wait;
        let mut attempt = 1;
        loop {
            match self.node_instance(node).await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::warn!(node, attempt, error = %e, "cannot read the Node yet; asking again");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// The answer of one API call about `what`, bounded by [`CALL_TIMEOUT`]: no answer, overload
/// (429, 5xx) and transport failures are [`ClusterError::Unreachable`]; other refusals are
/// [`ClusterError::Refused`].
async fn answered<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Err(ClusterError::Unreachable(format!(
            "no answer within {CALL_TIMEOUT:?}"
        ))),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(kube::Error::Api(status))) if status.code == 429 || status.code >= 500 => {
            Err(ClusterError::Unreachable(status.to_string()))
        }
        Ok(Err(kube::Error::Api(status))) => Err(ClusterError::Refused {
            what: what.to_owned(),
            message: status.to_string(),
        }),
        Ok(Err(e)) => Err(ClusterError::Unreachable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_name_instances() {
        assert_eq!(
            parse_provider_id("n", "qcloud:///100003/ins-abc123xy").unwrap(),
            NodeInstance {
                instance_id: "ins-abc123xy".into(),
                zone_id: Some("100003".into())
            }
        );
        assert_eq!(
            parse_provider_id("n", "tencentcloud://kn-9xk2m4").unwrap(),
            NodeInstance {
                instance_id: "eks-9xk2m4".into(),
                zone_id: None
            }
        );
        for bad in [
            "",
            "qcloud:///ins-abc",
            "qcloud:///zone/ins-abc",
            "qcloud:///100003/",
            "qcloud:///100003/ins-",
            "qcloud:///100003/ins-a/../b",
            "qcloud:///100003/eks-abc",
            "tencentcloud://kn-",
            "tencentcloud://kn-a/b",
            "aws:///us-east-1a/i-0abc",
        ] {
            let err = parse_provider_id("node-1", bad).unwrap_err();
            assert!(
                matches!(&err, ClusterError::BadProviderId { node, value } if node == "node-1" && value == bad),
                "{bad}: {err:?}"
            );
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn instance_ids_are_told_from_node_names() {
        for id in ["ins-abc123", "eks-k2m4x9"] {
            assert!(is_instance_id(id), "{id}");
        }
        for name in ["10.0.0.12", "node-1", "ins-", "ins-a.b", "my-ins-1", "eks-"] {
            assert!(!is_instance_id(name), "{name}");
        }
    }
}
