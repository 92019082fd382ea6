//! The CFS node service: each file system is mounted once per node (per option set) under the
//! node's mounts directory at NodeStage, the volume's directory in it is bind-mounted at the
//! staging path, and pods get binds of that (read-only when asked). The node-wide mount's
//! reference count is read from the mount table, never stored: when NodeUnstage leaves no bind of
//! it, it is unmounted. A broken mount (ESTALE after a server blip, ENOTCONN, EIO) is unmounted and
//! made again by the next stage or publish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csi_common::csi::reply::{filesystem_stats, node_caps};
use csi_common::csi::request::{read_only, target_path, volume_path};
use csi_common::csi::{InFlight, InFlightGuard, pb};
use csi_common::mount::ops::{healthy_mount, prepare_mount_point, remove_target};
use csi_common::mount::{MountInfo, Mounter};
use tonic::{Request, Response, Status};

use crate::controller::check_capabilities;
use crate::error::{Error, Result, io, required};
use crate::nfs::{NfsMounter, NfsSource};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    /// Where each file system is mounted once for the whole node.
    pub mounts_dir: PathBuf,
    pub nfs: NfsMounter,
}

#[derive(Debug)]
pub struct NodeService<M> {
    mounter: Arc<M>,
    config: NodeConfig,
    inflight: InFlight,
    /// Node-wide mounts are made and collected one step at a time.
    global: Arc<std::sync::Mutex<()>>,
}

fn mount_flags(capability: &pb::VolumeCapability) -> Vec<String> {
    match &capability.access_type {
        Some(pb::volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    }
}

/// The root a bind of `sub` inside the mount `base` shows in mountinfo.
fn bind_root(base: &MountInfo, sub: &str) -> String {
    let sub = sub.trim_matches('/');
    match (base.root.as_str(), sub) {
        (root, "") => root.to_owned(),
        ("/", sub) => format!("/{sub}"),
        (root, sub) => format!("{root}/{sub}"),
    }
}

/// True when `mount` shows (part of) the filesystem of `base`.
fn within(mount: &MountInfo, base: &MountInfo) -> bool {
    mount.major_minor == base.major_minor
        && (base.root == "/"
            || mount.root == base.root
            || mount.root.starts_with(&format!("{}/", base.root)))
}

/// NodeStage's work: the node-wide mount of the file system, then the bind at the staging path.
fn stage<M: Mounter>(
    mounter: &M,
    config: &NodeConfig,
    source: &NfsSource,
    staging: &Path,
    flags: &[String],
) -> Result<()> {
    let global = config.mounts_dir.join(source.mount_key(flags));
    std::fs::create_dir_all(&global)
        .map_err(io(&global, "cannot create the node-wide mount point"))?;
    let base = match healthy_mount(mounter, &global)? {
        Some(info) => info,
        None => {
            config.nfs.mount(&source.root(), &global, flags, false)?;
            mounter.mount_at(&global)?.ok_or_else(|| {
                Error::Internal(format!(
                    "{} is not mounted after mounting it",
                    global.display()
                ))
            })?
        }
    };
    let sub = global.join(source.path.trim_start_matches('/'));
    let resolved = std::fs::canonicalize(&sub).map_err(|_| {
        Error::NotFound(format!(
            "the volume's directory {} does not exist on {}",
            source.path, source.host
        ))
    })?;
    if !resolved.starts_with(&global) || !resolved.is_dir() {
        return Err(Error::FailedPrecondition(format!(
            "{} is not a directory inside the file system",
            source.path
        )));
    }
    if let Some(existing) = prepare_mount_point(mounter, staging)? {
        if within(&existing, &base) && existing.root == bind_root(&base, &source.path) {
            return Ok(());
        }
        return Err(Error::FailedPrecondition(format!(
            "{} already has {} mounted, not {}",
            staging.display(),
            existing.source,
            source.device()
        )));
    }
    mounter.bind(&resolved, staging, false, &[])?;
    Ok(())
}

/// Unmounts node-wide mounts that no staging or publish bind refers to any more.
fn collect_unused<M: Mounter>(mounter: &M, nfs: &NfsMounter, mounts_dir: &Path) -> Result<()> {
    let table = mounter.mounts()?;
    let prefix = format!("{}/", mounts_dir.display());
    for base in table.iter().filter(|m| m.mount_point.starts_with(&prefix)) {
        let used = table
            .iter()
            .any(|m| !m.mount_point.starts_with(&prefix) && within(m, base));
        if !used {
            let path = PathBuf::from(&base.mount_point);
            tracing::info!(mount = %path.display(), "no volume uses this file system any more: unmounting it");
            nfs.unmount_all(mounter, &path)?;
            let _ = std::fs::remove_dir(&path);
        }
    }
    Ok(())
}

impl<M: Mounter + 'static> NodeService<M> {
    pub fn new(mounter: Arc<M>, config: NodeConfig) -> Self {
        NodeService {
            mounter,
            config,
            inflight: InFlight::new(),
            global: Arc::new(std::sync::Mutex::new(())),
        }
    }

    pub fn into_server(self) -> pb::node_server::NodeServer<Self> {
        pb::node_server::NodeServer::new(self)
    }

    /// Runs `f` on the blocking pool, one at a time node-wide. The volume's in-flight `guard`
    /// stays held until `f` ends, even when the handler is dropped first (its caller's deadline
    /// passed), so a retry meanwhile is ABORTED instead of racing it.
    async fn blocking<T: Send + 'static>(
        &self,
        guard: &InFlightGuard,
        f: impl FnOnce(&M, &NodeConfig) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (mounter, config, global) = (
            Arc::clone(&self.mounter),
            self.config.clone(),
            Arc::clone(&self.global),
        );
        guard
            .run_blocking(move || {
                let _serial = global.lock().unwrap_or_else(|p| p.into_inner());
                f(&mounter, &config)
            })
            .await
    }
}

fn source_of(context: &HashMap<String, String>) -> Result<NfsSource> {
    NfsSource::from_context(context).map_err(Error::InvalidArgument)
}

fn node_capabilities() -> Vec<pb::NodeServiceCapability> {
    use pb::node_service_capability::rpc::Type;
    node_caps(&[
        Type::StageUnstageVolume,
        Type::GetVolumeStats,
        Type::VolumeCondition,
    ])
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl<M: Mounter + 'static> pb::node_server::Node for NodeService<M> {
    async fn node_stage_volume(
        &self,
        request: Request<pb::NodeStageVolumeRequest>,
    ) -> RpcResult<pb::NodeStageVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let staging = target_path(&req.staging_target_path, "staging_target_path")?;
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capabilities(std::slice::from_ref(&capability))?;
        let source = source_of(&req.volume_context)?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        let flags = mount_flags(&capability);
        self.blocking(&guard, move |m, config| {
            stage(m, config, &source, &staging, &flags)
        })
        .await?;
        Ok(Response::new(pb::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<pb::NodeUnstageVolumeRequest>,
    ) -> RpcResult<pb::NodeUnstageVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let staging = target_path(&req.staging_target_path, "staging_target_path")?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        self.blocking(&guard, move |m, config| {
            config.nfs.unmount_all(m, &staging)?;
            collect_unused(m, &config.nfs, &config.mounts_dir)
        })
        .await?;
        Ok(Response::new(pb::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<pb::NodePublishVolumeRequest>,
    ) -> RpcResult<pb::NodePublishVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let staging = target_path(&req.staging_target_path, "staging_target_path")?;
        let target = target_path(&req.target_path, "target_path")?;
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capabilities(std::slice::from_ref(&capability))?;
        let read_only = read_only(req.readonly, &capability);
        let flags = mount_flags(&capability);
        let source = source_of(&req.volume_context)?;
        let volume_id = req.volume_id.clone();
        let guard = self.inflight.acquire(&req.volume_id)?;
        self.blocking(&guard, move |m, config| {
            // A staging mount gone stale (ESTALE) is unmounted by the health check: stage again.
            let staged = match healthy_mount(m, &staging)? {
                Some(info) => info,
                None => {
                    stage(m, config, &source, &staging, &flags)?;
                    m.mount_at(&staging)?.ok_or_else(|| {
                        Error::Internal(format!("volume {volume_id} is not staged"))
                    })?
                }
            };
            if let Some(existing) = prepare_mount_point(m, &target)? {
                if !within(&existing, &staged) || existing.root != staged.root {
                    return Err(Error::FailedPrecondition(format!(
                        "{} already has {} mounted, not volume {volume_id}; refusing to touch it",
                        target.display(),
                        existing.source
                    )));
                }
                if existing.is_read_only() == read_only {
                    return Ok(());
                }
                config.nfs.unmount_all(m, &target)?;
            }
            m.bind(&staging, &target, read_only, &[])?;
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> RpcResult<pb::NodeUnpublishVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let target = target_path(&req.target_path, "target_path")?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        self.blocking(&guard, move |m, config| {
            config.nfs.unmount_all(m, &target)?;
            Ok(remove_target(&target)?)
        })
        .await?;
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
        let mounter = Arc::clone(&self.mounter);
        let response = tokio::task::spawn_blocking(move || {
            filesystem_stats(mounter.as_ref(), &path, "mounted and answering")?.ok_or_else(|| {
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
        Err(Status::unimplemented("CFS needs no node expansion"))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> RpcResult<pb::NodeGetCapabilitiesResponse> {
        Ok(Response::new(pb::NodeGetCapabilitiesResponse {
            capabilities: node_capabilities(),
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
