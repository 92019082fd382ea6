//! The node service of the FUSE drivers (csi-cos, and csi-goosefs through its own [`Planner`]).
//!
//! Each volume is mounted once per node, by a FUSE daemon that the FUSE host runs outside this
//! process, at `<mounts-dir>/<hash of the volume ID>`; every pod gets a bind of that mount
//! (read-only when asked). Old PVs carry their credentials in `nodePublishSecretRef`, so this
//! happens at NodePublish, not NodeStage. The reference count of the node-wide mount is read from
//! the mount table, never stored: when NodeUnpublish leaves no bind of it, the host unmounts it and
//! stops its daemon. A bind whose daemon died is unmounted and made again by the next publish, and
//! the host restarts the daemon; NodeGetVolumeStats reports a dead daemon as an abnormal volume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_common::csi::reply::{abnormal, answer_by, filesystem_stats, node_caps};
use csi_common::csi::request::{NodePaths, Supported, check_capability, read_only, volume_path};
use csi_common::csi::{InFlight, InFlightGuard, pb};
use csi_common::mount::Mounter;
use csi_common::mount::ops::{prepare_mount_point, remove_target, unmount_all};
use fuse_host::{HostClient, HostError, MountRequest};
use sha2::{Digest, Sha256};
use tcloud::CredentialSource;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result, required};
use crate::params::{CosSource, Keys};

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
    /// `capability` carries the mount flags and the pod's fsGroup (VOLUME_MOUNT_GROUP).
    fn plan(
        &self,
        context: &HashMap<String, String>,
        secrets: &HashMap<String, String>,
        capability: &pb::VolumeCapability,
    ) -> Result<FusePlan>;

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
        secrets: &HashMap<String, String>,
        capability: &pb::VolumeCapability,
    ) -> Result<FusePlan> {
        let mut source = CosSource::from_context(context)?;
        if let Some(group) = mount_group(capability) {
            source.options.grant_group(group)?;
        }
        let keys = Keys::from_secrets(secrets, "node publish (nodePublishSecretRef)")?;
        Ok(FusePlan {
            kind: "cos-fuse".to_owned(),
            args: source.fuse_args(),
            secret: Some(keys.to_stdin()),
            fingerprint: source.fingerprint(),
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
    /// Keys for volumes whose publish request carries no secret (a PV without
    /// nodePublishSecretRef): the node plugin's own credentials chain.
    pub fallback_keys: Option<Arc<CredentialSource>>,
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

    /// The node-wide mount point of a volume: a hash, so any volume ID is a safe file name.
    pub fn global_path(&self, volume_id: &str) -> PathBuf {
        let digest = Sha256::digest(volume_id.as_bytes());
        self.config.mounts_dir.join(hex::encode(&digest[..16]))
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

/// Unmounts `target`; returns whether any other mount still shows the node-wide mount.
fn unbind_target<M: Mounter>(mounter: &M, global: &Path, target: &Path) -> Result<bool> {
    unmount_all(mounter, target)?;
    remove_target(target)?;
    let table = mounter.mounts()?;
    let global_str = global.to_string_lossy();
    let Some(base) = table.iter().rev().find(|m| m.mount_point == global_str) else {
        return Ok(false);
    };
    Ok(table
        .iter()
        .any(|m| m.mount_point != global_str && m.major_minor == base.major_minor))
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
        let secrets = match (&self.config.fallback_keys, req.secrets.is_empty()) {
            (Some(source), true) => Keys::secrets_from(&source.get().await.map_err(|e| {
                Error::FailedPrecondition(format!(
                    "the volume has no publish secret and the node's own credentials are unusable: {e}"
                ))
            })?),
            _ => req.secrets.clone(),
        };
        let plan = self
            .planner
            .plan(&req.volume_context, &secrets, &capability)?;
        let volume_id = req.volume_id.clone();
        let guard = self.inflight.acquire(&req.volume_id)?;
        let global = self.global_path(&volume_id);
        let status = self
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
            .await
            .map_err(Error::from)?;
        tracing::info!(
            volume_id,
            pid = status.pid,
            reused = status.reused,
            "node-wide FUSE mount ready"
        );
        let ignored = self.planner.ignored(&req.volume_context);
        if !status.reused && !ignored.is_empty() {
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
        let global = self.global_path(&req.volume_id);
        let global_for_unbind = global.clone();
        let used = self
            .blocking(&guard, move |m| {
                unbind_target(m, &global_for_unbind, &target)
            })
            .await?;
        if !used {
            let global_mounted = self
                .mounter
                .mount_at(&global)
                .map_err(Error::from)?
                .is_some();
            match self.config.host.unmount(&global, remaining(deadline)).await {
                Ok(()) => {}
                // Nothing is mounted: there is nothing for an absent host to do.
                Err(HostError::Unreachable { .. }) if !global_mounted => {}
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
        let global = self.global_path(&req.volume_id);
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
            Ok(_) => {}
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
