//! The node service of the FUSE drivers (csi-cos, and csi-goosefs through its own [`Planner`]).
//!
//! Each volume is mounted once per node and set of options (a pod's fsGroup among them), by a
//! FUSE daemon that the FUSE host runs outside this process, at a path of [`global`]; every pod
//! gets a bind of that mount (read-only when asked). Old PVs carry their credentials in
//! `nodePublishSecretRef`, so this happens at NodePublish, not NodeStage; where the keys come from
//! is [`keys`]. The reference count of a node-wide mount is read from the mount table, never
//! stored: when NodeUnpublish leaves no bind of it, the host unmounts it and stops its daemon. A
//! bind whose daemon died is unmounted and made again by the next publish, and the host restarts
//! the daemon; NodeGetVolumeStats reports a dead daemon, or a bucket refusing the daemon's keys,
//! as an abnormal volume.
//!
//! kubelet calls NodePublishVolume again for a published target (the CSIDriver's
//! `requiresRepublish`) with the Secret as it is now: the request goes to the node-wide mount the
//! target shows, the host answers that it reuses it and hands the daemon the new keys.

pub mod global;
pub mod keys;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_common::csi::reply::{abnormal, answer_by, filesystem_stats, node_caps};
use csi_common::csi::request::{NodePaths, Supported, check_capability, read_only, volume_path};
use csi_common::csi::{InFlight, InFlightGuard, pb};
use csi_common::mount::Mounter;
use csi_common::mount::ops::{prepare_mount_point, remove_target, unmount_all};
use fuse_host::ErrorCode;
use fuse_host::{HostClient, HostError, MountRequest};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result, required};
use crate::params::{CosSource, fingerprint};
use global::NodeMount;
use keys::{KeySource, NodeCredentials, PublishKeys, PublishSecrets};

/// What the FUSE host is asked to run for a volume.
#[derive(Clone, PartialEq, Eq)]
pub struct FusePlan {
    pub kind: String,
    pub args: Vec<String>,
    /// Handed to the daemon on its standard input.
    pub secret: Option<String>,
    pub fingerprint: String,
}

impl std::fmt::Debug for FusePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusePlan")
            .field("kind", &self.kind)
            .field("args", &self.args)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Turns a publish request's attributes and secrets into a [`FusePlan`].
pub trait Planner: Send + Sync + std::fmt::Debug + 'static {
    /// `capability` carries the mount flags and the pod's fsGroup (VOLUME_MOUNT_GROUP); `keys`
    /// says where the daemon's keys come from.
    fn plan(
        &self,
        context: &HashMap<String, String>,
        keys: &PublishKeys<'_>,
        capability: &pb::VolumeCapability,
    ) -> Result<FusePlan>;

    /// Whether the volume's daemon needs keys (else an empty publish secret is no question).
    fn needs_keys(&self, _context: &HashMap<String, String>) -> bool {
        true
    }

    /// What the attributes hold that the plan drops (no equivalent in the daemon), each as
    /// `attribute: key`, for one warning when the volume is mounted. Nothing by default.
    fn ignored(&self, _context: &HashMap<String, String>) -> Vec<String> {
        Vec::new()
    }
}

/// csi-cos: `cos-fuse` with the PV's attributes and the publish secret's keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct CosPlanner;

impl Planner for CosPlanner {
    fn plan(
        &self,
        context: &HashMap<String, String>,
        keys: &PublishKeys<'_>,
        capability: &pb::VolumeCapability,
    ) -> Result<FusePlan> {
        let mut source = CosSource::from_context(context)?;
        if let Some(group) = mount_group(capability) {
            source.options.grant_group(group)?;
        }
        let mut args = source.fuse_args();
        let secret = keys.hand_over(&mut args)?;
        Ok(FusePlan {
            kind: "cos-fuse".to_owned(),
            // With a secret, the same as before keys could come from the role: a republish after
            // an upgrade finds its mount.
            fingerprint: fingerprint(&args),
            args,
            secret,
        })
    }

    fn ignored(&self, context: &HashMap<String, String>) -> Vec<String> {
        CosSource::from_context(context)
            .map(|source| source.ignored)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    /// Where each volume is mounted once for the whole node; the FUSE host must see the same
    /// paths (both containers mount the kubelet directory with bidirectional propagation).
    pub mounts_dir: PathBuf,
    pub host: HostClient,
    /// Whether a PV without nodePublishSecretRef mounts with the node's own credentials.
    pub node_credentials: NodeCredentials,
    /// The node plugin's own credentials chain: fixed keys (`--credentials-dir`, environment)
    /// are handed to the daemon (again at every republish, so a rotated directory reaches it);
    /// the CVM role (or none) makes the daemon fetch and refresh the role's keys itself.
    pub node_keys: Option<Arc<tcloud::CredentialSource>>,
    /// Reads which Secret a PV names, to tell an empty Secret from none; `None` without an API
    /// client (then an empty secret fails unless `node_credentials` allows the role).
    pub publish_secrets: Option<Arc<dyn PublishSecrets>>,
    /// The instance metadata service daemons fetch the role's keys from, when not the default.
    pub metadata_endpoint: Option<String>,
    /// Target paths must lie under the kubelet's directory.
    pub kubelet_dir: PathBuf,
}

#[derive(Debug)]
pub struct NodeService<M, P> {
    mounter: Arc<M>,
    planner: P,
    config: NodeConfig,
    paths: NodePaths,
    inflight: InFlight,
}

/// How long a status question to the host may take in NodeGetVolumeStats.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod's fsGroup, when kubelet passes it (VOLUME_MOUNT_GROUP).
pub fn mount_group(capability: &pb::VolumeCapability) -> Option<&str> {
    match &capability.access_type {
        Some(pb::volume_capability::AccessType::Mount(m)) if !m.volume_mount_group.is_empty() => {
            Some(m.volume_mount_group.as_str())
        }
        _ => None,
    }
}

/// FUSE volumes are file systems in every access mode; never raw blocks.
pub const SUPPORTED: Supported = Supported {
    storage: "a bucket",
    block: false,
    multi_node: true,
    fs_types: &[],
};

impl<M: Mounter + 'static, P: Planner> NodeService<M, P> {
    pub fn new(mounter: Arc<M>, planner: P, config: NodeConfig) -> Self {
        NodeService {
            mounter,
            planner,
            paths: NodePaths::new([config.kubelet_dir.clone()]),
            config,
            inflight: InFlight::new(),
        }
    }

    pub fn into_server(self) -> pb::node_server::NodeServer<Self> {
        pb::node_server::NodeServer::new(self)
    }

    /// The node-wide mount point of a volume made before mounts were keyed by fingerprint.
    pub fn global_path(&self, volume_id: &str) -> PathBuf {
        global::legacy_path(&self.config.mounts_dir, volume_id)
    }

    /// The node-wide mount point of a volume with the plan `fingerprint`.
    pub fn shared_path(&self, volume_id: &str, fingerprint: &str) -> PathBuf {
        global::shared_path(&self.config.mounts_dir, volume_id, fingerprint)
    }

    /// The node-wide mounts of a volume in `table`.
    fn node_mounts(
        &self,
        table: &[csi_common::mount::MountInfo],
        volume_id: &str,
    ) -> Vec<NodeMount> {
        global::mounted(table, &self.config.mounts_dir, volume_id)
    }

    /// Where a new publish of `volume_id` with `fingerprint` mounts: a mount made before the
    /// upgrade at the volume's old path when it runs with the same options, else the path of the
    /// fingerprint.
    async fn mount_point_for(
        &self,
        volume_id: &str,
        fingerprint: &str,
        mounts: &[NodeMount],
    ) -> PathBuf {
        let legacy = self.global_path(volume_id);
        if mounts.iter().any(|m| m.path == legacy)
            && let Ok(Some(status)) = self.config.host.status(&legacy, STATUS_TIMEOUT).await
            && status.fingerprint == fingerprint
        {
            return legacy;
        }
        self.shared_path(volume_id, fingerprint)
    }

    /// The publish request's keys, or the node's role where that is allowed (see [`keys`]).
    async fn publish_keys<'a>(
        &'a self,
        secrets: &'a HashMap<String, String>,
        target: &Path,
        volume_id: &str,
    ) -> Result<PublishKeys<'a>> {
        let source = keys::key_source(
            secrets,
            target,
            volume_id,
            self.config.node_credentials,
            self.config.publish_secrets.as_deref(),
        )
        .await?;
        match (source, self.config.node_keys.as_deref()) {
            (KeySource::Secret, _) => Ok(PublishKeys::Secret(secrets)),
            (KeySource::NodeRole, Some(own))
                if !matches!(own, tcloud::CredentialSource::Role(_)) =>
            {
                let keys = own.get().await.map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "volume {volume_id} has no publish secret and the node's own credentials are unusable: {}",
                        csi_common::csi::error_chain(&e)
                    ))
                })?;
                Ok(PublishKeys::NodeKeys(crate::params::Keys {
                    secret_id: keys.secret_id,
                    secret_key: keys.secret_key,
                    token: keys.token,
                }))
            }
            (KeySource::NodeRole, _) => Ok(PublishKeys::NodeRole {
                metadata_endpoint: self.config.metadata_endpoint.as_deref(),
            }),
        }
    }

    /// Runs `f` on the blocking pool. The volume's in-flight `guard` stays held until `f` ends,
    /// even when the handler is dropped first (its caller's deadline passed), so a retry
    /// meanwhile is ABORTED instead of racing it.
    async fn blocking<T: Send + 'static>(
        &self,
        guard: &InFlightGuard,
        f: impl FnOnce(&M) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mounter = Arc::clone(&self.mounter);
        guard.run_blocking(move || f(&mounter)).await
    }
}

/// Binds the node-wide mount at `target`, or confirms the bind that is there.
fn bind_target<M: Mounter>(
    mounter: &M,
    global: &Path,
    target: &Path,
    read_only: bool,
    volume_id: &str,
) -> Result<()> {
    let base = mounter.mount_at(global)?.ok_or_else(|| {
        Error::Internal(format!(
            "volume {volume_id}: {} is not mounted after the FUSE host mounted it",
            global.display()
        ))
    })?;
    if let Some(existing) = prepare_mount_point(mounter, target)? {
        if existing.major_minor != base.major_minor {
            return Err(Error::FailedPrecondition(format!(
                "{} already has {} mounted, not volume {volume_id}; refusing to touch it",
                target.display(),
                existing.source
            )));
        }
        if existing.is_read_only() == read_only {
            return Ok(());
        }
        unmount_all(mounter, target)?;
    }
    mounter.bind(global, target, read_only, &[])?;
    Ok(())
}

/// Unmounts `target`; returns the mount table after.
fn unbind_target<M: Mounter>(
    mounter: &M,
    target: &Path,
) -> Result<Vec<csi_common::mount::MountInfo>> {
    unmount_all(mounter, target)?;
    remove_target(target)?;
    Ok(mounter.mounts()?)
}

/// The authentication failure the daemon reports while its most recent request was one.
fn current_auth_failure(status: &fuse_host::MountStatus) -> Option<&fuse_host::AuthFailureStatus> {
    status
        .details
        .as_ref()
        .and_then(|d| d.auth_failure.as_ref())
        .filter(|f| f.current)
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

fn remaining(deadline: tokio::time::Instant) -> Duration {
    deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_secs(1))
}

#[tonic::async_trait]
impl<M: Mounter + 'static, P: Planner> pb::node_server::Node for NodeService<M, P> {
    async fn node_stage_volume(
        &self,
        _request: Request<pb::NodeStageVolumeRequest>,
    ) -> RpcResult<pb::NodeStageVolumeResponse> {
        Err(Status::unimplemented(
            "this driver mounts at NodePublishVolume (STAGE_UNSTAGE_VOLUME is not advertised)",
        ))
    }

    async fn node_unstage_volume(
        &self,
        _request: Request<pb::NodeUnstageVolumeRequest>,
    ) -> RpcResult<pb::NodeUnstageVolumeResponse> {
        Err(Status::unimplemented(
            "this driver mounts at NodePublishVolume (STAGE_UNSTAGE_VOLUME is not advertised)",
        ))
    }

    async fn node_publish_volume(
        &self,
        request: Request<pb::NodePublishVolumeRequest>,
    ) -> RpcResult<pb::NodePublishVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let target = self.paths.target(&req.target_path, "target_path")?;
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capability(&capability, &SUPPORTED)?;
        let read_only = read_only(req.readonly, &capability);
        let keys = if self.planner.needs_keys(&req.volume_context) {
            self.publish_keys(&req.secrets, &target, &req.volume_id)
                .await?
        } else {
            PublishKeys::Secret(&req.secrets)
        };
        let plan = self.planner.plan(&req.volume_context, &keys, &capability)?;
        let volume_id = req.volume_id.clone();
        let guard = self.inflight.acquire(&req.volume_id)?;
        let table = self.mounter.mounts().map_err(Error::from)?;
        let mounts = self.node_mounts(&table, &volume_id);
        // A republish (kubelet's periodic call, with the Secret as it is now) goes to the mount
        // the target shows; a new publish to the mount of its options.
        let republish = global::bound_to(&table, &target, &mounts).map(|m| m.path.clone());
        let global = match &republish {
            Some(path) => path.clone(),
            None => {
                self.mount_point_for(&volume_id, &plan.fingerprint, &mounts)
                    .await
            }
        };
        let mounted = self
            .config
            .host
            .mount(
                MountRequest {
                    target: global.clone(),
                    kind: plan.kind,
                    args: plan.args,
                    secret: plan.secret,
                    fingerprint: plan.fingerprint,
                },
                remaining(deadline),
            )
            .await;
        let status = match mounted {
            Ok(status) => Some(status),
            // The target shows a mount made with other options (an older driver's): it stays
            // published as it is; new keys reach it when the pod is restarted.
            Err(HostError::Refused {
                code: ErrorCode::Conflict,
                ..
            }) if republish.is_some() => {
                tracing::warn!(
                    volume_id,
                    "republish: the node-wide mount runs with other options than this driver's; keeping it"
                );
                None
            }
            Err(e) => return Err(Error::from(e).into()),
        };
        if let Some(status) = &status {
            if status.reused {
                tracing::debug!(volume_id, pid = status.pid, "node-wide FUSE mount reused");
            } else {
                tracing::info!(volume_id, pid = status.pid, "node-wide FUSE mount ready");
            }
        }
        let ignored = self.planner.ignored(&req.volume_context);
        if status.is_some_and(|s| !s.reused) && !ignored.is_empty() {
            tracing::warn!(
                volume_id,
                ignored = ignored.join(", "),
                "volume attributes with no cos-fuse equivalent are ignored"
            );
        }
        self.blocking(&guard, move |m| {
            bind_target(m, &global, &target, read_only, &volume_id)
        })
        .await?;
        Ok(Response::new(pb::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> RpcResult<pb::NodeUnpublishVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let target = self.paths.target(&req.target_path, "target_path")?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        let table = self
            .blocking(&guard, move |m| unbind_target(m, &target))
            .await?;
        // Every node-wide mount of the volume no pod shows any more is released: the one the
        // target showed, and any an earlier failed unpublish left (the in-flight guard keeps
        // publishes of the volume out meanwhile).
        let mounts = self.node_mounts(&table, &req.volume_id);
        let mut unused: Vec<(PathBuf, bool)> = mounts
            .iter()
            .filter(|m| !global::in_use(&table, m))
            .map(|m| (m.path.clone(), true))
            .collect();
        for dir in global::directories(&self.config.mounts_dir, &req.volume_id) {
            if !mounts.iter().any(|m| m.path == dir) {
                unused.push((dir, false));
            }
        }
        for (global, mounted) in unused {
            match self.config.host.unmount(&global, remaining(deadline)).await {
                Ok(()) => {}
                // Nothing is mounted: there is nothing for an absent host to do.
                Err(HostError::Unreachable { .. }) if !mounted => {}
                Err(e) => return Err(Error::from(e).into()),
            }
            let _ = std::fs::remove_dir(&global);
        }
        Ok(Response::new(pb::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> RpcResult<pb::NodeGetVolumeStatsResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let path = volume_path(&req.volume_path, "volume_path")?;
        let table = self.mounter.mounts().map_err(Error::from)?;
        let mounts = self.node_mounts(&table, &req.volume_id);
        let global = global::bound_to(&table, &path, &mounts)
            .map(|m| m.path.clone())
            .unwrap_or_else(|| self.global_path(&req.volume_id));
        // The host knows whether the daemon lives; a dead one is the usual FUSE failure.
        match self.config.host.status(&global, STATUS_TIMEOUT).await {
            Ok(Some(status)) if !status.alive => {
                return Ok(Response::new(abnormal(format!(
                    "the FUSE daemon of volume {} (pid {}) is not running; the next publish restarts it",
                    req.volume_id, status.pid
                ))));
            }
            Ok(Some(status)) if !status.healthy => {
                return Ok(Response::new(abnormal(format!(
                    "the FUSE mount of volume {} does not answer",
                    req.volume_id
                ))));
            }
            Ok(Some(status)) => {
                if let Some(failure) = current_auth_failure(&status) {
                    return Ok(Response::new(abnormal(format!(
                        "volume {}: the bucket refused the FUSE daemon's credentials ({} on {}): the \
                         keys of the publish Secret, or the node's CAM role, are wrong, expired or \
                         lack permission; the next request that succeeds clears this",
                        req.volume_id, failure.code, failure.op
                    ))));
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Ok(Response::new(abnormal(format!(
                    "cannot ask the FUSE host about volume {}: {e}",
                    req.volume_id
                ))));
            }
        }
        let mounter = Arc::clone(&self.mounter);
        let response = tokio::task::spawn_blocking(move || {
            filesystem_stats(
                mounter.as_ref(),
                &path,
                "mounted, and its FUSE daemon is running",
            )?
            .ok_or_else(|| {
                Error::NotFound(format!("volume path {} does not exist", path.display()))
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("stats task failed: {e}")))??;
        Ok(Response::new(response))
    }

    async fn node_expand_volume(
        &self,
        _request: Request<pb::NodeExpandVolumeRequest>,
    ) -> RpcResult<pb::NodeExpandVolumeResponse> {
        Err(Status::unimplemented("a bucket has no size to expand"))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> RpcResult<pb::NodeGetCapabilitiesResponse> {
        use pb::node_service_capability::rpc::Type;
        Ok(Response::new(pb::NodeGetCapabilitiesResponse {
            capabilities: node_caps(&[
                Type::GetVolumeStats,
                Type::VolumeCondition,
                Type::VolumeMountGroup,
            ]),
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<pb::NodeGetInfoRequest>,
    ) -> RpcResult<pb::NodeGetInfoResponse> {
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}
