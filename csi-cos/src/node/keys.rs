//! Which keys a volume's FUSE daemon mounts with: the publish Secret's (kubelet hands them to
//! NodePublishVolume from the PV's `nodePublishSecretRef`), or, only for a PV that names no
//! Secret and only where the operator allows it (`--node-credentials=allow`), the node's CAM role,
//! which the daemon itself fetches and refreshes (`cos-fuse mount --credentials-role`).
//!
//! An empty `secrets` map is told apart by reading the PV (its name is in kubelet's target path)
//! through the Kubernetes API, behind [`PublishSecrets`]: a PV that names a Secret kubelet found
//! empty is an error naming that Secret, never a silent fall back to the node's keys. Nothing here
//! logs or formats a key.

use std::collections::HashMap;
use std::path::{Component, Path};

use crate::error::{Error, Result};
use crate::params::Keys;

/// The cos-fuse arguments that say where the daemon's keys come from.
const KEYS_STDIN_FLAG: &str = "--credentials-stdin";
const KEYS_ROLE_FLAG: &str = "--credentials-role";

/// Whether a volume whose PV names no publish Secret may be mounted with the node's own
/// credentials (its CVM role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NodeCredentials {
    /// A PV without `nodePublishSecretRef` mounts with the node's CAM role.
    Allow,
    /// Every PV must name a publish Secret (Tencent's COS driver required one too).
    #[default]
    Deny,
}

/// The Secret a PersistentVolume names for NodePublishVolume, `namespace/name`.
#[tonic::async_trait]
pub trait PublishSecrets: Send + Sync + std::fmt::Debug + 'static {
    /// `Ok(None)` when the PV `pv` names no `nodePublishSecretRef`; an error (its text) when the
    /// PV cannot be read.
    async fn publish_secret(&self, pv: &str) -> std::result::Result<Option<String>, String>;
}

#[tonic::async_trait]
impl PublishSecrets for cluster::Cluster {
    async fn publish_secret(&self, pv: &str) -> std::result::Result<Option<String>, String> {
        self.pv_publish_secret(pv)
            .await
            .map(|r| r.map(|r| r.to_string()))
            .map_err(|e| e.to_string())
    }
}

/// Where the daemon's keys come from, as the planner hands them over.
#[derive(Debug, Clone)]
pub enum PublishKeys<'a> {
    /// The publish request's `secrets`.
    Secret(&'a HashMap<String, String>),
    /// The node plugin's own fixed keys (its `--credentials-dir` or environment), for a PV
    /// without a Secret where the node lends its credentials.
    NodeKeys(Keys),
    /// The node's CAM role, fetched and refreshed by the daemon from instance metadata (at
    /// `metadata_endpoint` when it is not the default one).
    NodeRole { metadata_endpoint: Option<&'a str> },
}

impl PublishKeys<'_> {
    /// Says in `args` (which take the keys on standard input, as `CosSource::fuse_args` makes
    /// them) where the daemon finds its keys; returns what goes on its standard input.
    pub fn hand_over(&self, args: &mut Vec<String>) -> Result<Option<String>> {
        match self {
            PublishKeys::Secret(secrets) => {
                let keys = Keys::from_secrets(secrets, "node publish (nodePublishSecretRef)")?;
                Ok(Some(keys.to_stdin()))
            }
            PublishKeys::NodeKeys(keys) => Ok(Some(keys.to_stdin())),
            PublishKeys::NodeRole { metadata_endpoint } => {
                for arg in args.iter_mut().filter(|a| *a == KEYS_STDIN_FLAG) {
                    *arg = KEYS_ROLE_FLAG.to_owned();
                }
                if let Some(endpoint) = metadata_endpoint {
                    args.extend(["--metadata-endpoint".to_owned(), (*endpoint).to_owned()]);
                }
                Ok(None)
            }
        }
    }
}

/// The PersistentVolume of a kubelet target path,
/// `<kubelet>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount`.
pub fn pv_of_target(target: &Path) -> Option<String> {
    let parts: Vec<&str> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect();
    let at = parts.iter().position(|p| *p == "kubernetes.io~csi")?;
    match (parts.get(at + 1), parts.get(at + 2)) {
        (Some(pv), Some(&"mount")) if !pv.is_empty() => Some((*pv).to_owned()),
        _ => None,
    }
}

/// Whether the daemon uses the publish Secret or the node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Secret,
    NodeRole,
}

/// Decides where the keys of the volume published at `target` come from. `secrets` non-empty:
/// the Secret. Empty: the node's role only when `policy` allows it and the PV names no Secret;
/// a PV whose Secret is empty is an error naming it. When the PV cannot be read (no API client,
/// API unreachable), fails closed unless `policy` allows the role.
pub async fn key_source(
    secrets: &HashMap<String, String>,
    target: &Path,
    volume_id: &str,
    policy: NodeCredentials,
    lookup: Option<&dyn PublishSecrets>,
) -> Result<KeySource> {
    if !secrets.is_empty() {
        return Ok(KeySource::Secret);
    }
    let pv = pv_of_target(target);
    let named = match (lookup, &pv) {
        (Some(lookup), Some(pv)) => lookup.publish_secret(pv).await,
        (None, _) => Err("the node plugin has no Kubernetes API client".to_owned()),
        (_, None) => Err(format!(
            "the target path {} names no PersistentVolume",
            target.display()
        )),
    };
    let pv = pv.unwrap_or_else(|| volume_id.to_owned());
    match (named, policy) {
        (Ok(Some(secret)), _) => Err(Error::FailedPrecondition(format!(
            "the publish Secret {secret} of PV {pv} is empty (kubelet handed over no keys): put \
             SecretId and SecretKey (and Token for temporary keys) in it; the node's own \
             credentials are never used for a PV that names a Secret"
        ))),
        (Ok(None), NodeCredentials::Allow) => Ok(KeySource::NodeRole),
        (Ok(None), NodeCredentials::Deny) => Err(Error::FailedPrecondition(format!(
            "PV {pv} (volume {volume_id}) names no nodePublishSecretRef, and this node does not \
             lend its own credentials (--node-credentials=deny): give the PV a Secret with \
             SecretId and SecretKey, or start the node plugin with --node-credentials=allow to \
             mount it with the node's CAM role"
        ))),
        (Err(e), NodeCredentials::Allow) => {
            tracing::warn!(volume_id, pv, error = %e, "the volume came with no publish secret and its PV cannot be read: mounting with the node's CAM role (--node-credentials=allow)");
            Ok(KeySource::NodeRole)
        }
        (Err(e), NodeCredentials::Deny) => Err(Error::FailedPrecondition(format!(
            "volume {volume_id} came with no publish secret, and whether PV {pv} names one \
             cannot be told ({e}); the node's own credentials are not used \
             (--node-credentials=deny)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pv_is_read_from_kubelets_target_path() {
        assert_eq!(
            pv_of_target(Path::new(
                "/var/lib/kubelet/pods/0f1e/volumes/kubernetes.io~csi/pv-cos-1/mount"
            ))
            .as_deref(),
            Some("pv-cos-1")
        );
        for other in [
            "/var/lib/kubelet/pods/0f1e/volumes/kubernetes.io~csi/pv-cos-1",
            "/var/lib/kubelet/plugins/x/mounts/abc",
            "/mnt/t",
        ] {
            assert_eq!(pv_of_target(Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn the_role_replaces_standard_input_and_the_secret_goes_there() {
        let mut args = vec![
            "--bucket".to_owned(),
            "b".to_owned(),
            KEYS_STDIN_FLAG.to_owned(),
        ];
        let role = PublishKeys::NodeRole {
            metadata_endpoint: Some("http://127.0.0.1:9"),
        };
        assert_eq!(role.hand_over(&mut args).unwrap(), None);
        assert_eq!(
            args,
            [
                "--bucket",
                "b",
                KEYS_ROLE_FLAG,
                "--metadata-endpoint",
                "http://127.0.0.1:9"
            ]
        );
        let secrets = HashMap::from([
            ("SecretId".to_owned(), "AKID".to_owned()),
            ("SecretKey".to_owned(), "s3cr3t".to_owned()),
        ]);
        let mut args = vec![KEYS_STDIN_FLAG.to_owned()];
        let stdin = PublishKeys::Secret(&secrets)
            .hand_over(&mut args)
            .unwrap()
            .unwrap();
        assert!(stdin.contains("s3cr3t"));
        assert_eq!(args, [KEYS_STDIN_FLAG], "no key in the arguments");
    }
}
