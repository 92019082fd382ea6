//! The CBS node service: find the attached disk by its serial, format it only when blank, mount it
//! at the staging path, bind it into pods, grow filesystems, and report health.
//!
//! Every RPC reads the mount table first, so a repeat of the same call is a no-op and a call after
//! a crash at any point finishes the job; a broken mount (ENOTCONN, EIO, ESTALE) is unmounted and
//! made again instead of failing forever. Mount calls block, so they run on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_common::csi::inflight::run_blocking;
use csi_common::csi::reply::{VolumePath, check_volume_path, filesystem_usage, node_caps};
use csi_common::csi::request::{NodePaths, read_only, volume_path};
use csi_common::csi::{InFlight, InFlightGuard, io, pb};
use csi_common::mount::ops::{healthy_mount, prepare_mount_point, remove_target, unmount_all};
use csi_common::mount::{DeviceContent, FormatParams, Mounter};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::controller::check_capabilities;
use crate::device::{DeviceRoots, device_for_serial, device_has_serial};
use crate::error::{Error, Result, required};
use crate::multidisk::assemble::{Assembler, Plan, assemble, disassemble, grow};
use crate::multidisk::tools::Tools;
use crate::multidisk::{layout_from, volume_name};
use crate::topology::TOPOLOGY_KEY;
use crate::volume_id::{EXPECTED, VolumeId, is_volume_id, multi_disk_ids};

pub const DEFAULT_FS: &str = "ext4";
/// A filesystem this much smaller than its device is grown (slack for metadata rounding).
const GROW_SLACK_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    /// The node's zone, for `accessible_topology`; empty when unknown.
    pub zone: String,
    pub max_volumes_per_node: i64,
    pub devices: DeviceRoots,
    /// How long NodeStage waits for the attached disk's device to appear.
    pub device_wait: Duration,
    /// Staging and target paths must lie under the kubelet's directory.
    pub kubelet_dir: PathBuf,
}

/// The node service over a mounter and, for multi-disk volumes, the LVM and mdadm tools.
#[derive(Debug)]
pub struct NodeService<M, A = Tools> {
    mounter: Arc<M>,
    assembler: Arc<A>,
    config: NodeConfig,
    paths: NodePaths,
    inflight: InFlight,
}

/// A request's volume ID names a file in the staging directory: one that is not a CBS volume ID
/// (`disk-xxxxxxxx`, or disk IDs joined by commas) is NOT_FOUND, checked after the request's
/// required fields, never a path.
fn disk_id(value: &str) -> Result<()> {
    if is_volume_id(value) {
        return Ok(());
    }
    Err(Error::NotFound(format!(
        "no CBS volume has the volume ID {value:?}: {EXPECTED}"
    )))
}

/// The devices of a multi-disk volume's disks found on this node, in volume ID order.
fn devices_present(roots: &DeviceRoots, disks: &[&str]) -> Vec<PathBuf> {
    disks
        .iter()
        .filter_map(|d| device_for_serial(roots, d))
        .map(|found| found.device)
        .collect()
}

/// Runs a blocking mount-layer call on the blocking pool. The volume's in-flight `guard` stays held
/// until the call ends, even when the handler is dropped first (its caller's deadline passed),
/// and past that while a tool it left running (`resize2fs` past its timeout) still runs.
async fn blocking<M, T>(
    mounter: &Arc<M>,
    guard: Option<&InFlightGuard>,
    f: impl FnOnce(&M) -> Result<T> + Send + 'static,
) -> Result<T>
where
    M: Mounter + 'static,
    T: Send + 'static,
{
    let mounter = Arc::clone(mounter);
    run_blocking(guard, move || f(&mounter)).await
}

/// The staged device file of a block volume, inside the staging directory.
fn block_staging_file(staging: &Path, volume_id: &str) -> PathBuf {
    staging.join(volume_id)
}

fn is_block(capability: &pb::VolumeCapability) -> bool {
    matches!(
        capability.access_type,
        Some(pb::volume_capability::AccessType::Block(_))
    )
}

fn mount_volume(capability: &pb::VolumeCapability) -> Option<&pb::volume_capability::MountVolume> {
    match &capability.access_type {
        Some(pb::volume_capability::AccessType::Mount(m)) => Some(m),
        _ => None,
    }
}

/// The file system a blank device gets: the capability's, else the volume context's `fstype`
/// (the StorageClass's unprefixed `fstype`, as Tencent's driver kept it), else [`DEFAULT_FS`].
fn requested_fs<'a>(
    capability: &'a pb::VolumeCapability,
    context: &'a std::collections::HashMap<String, String>,
) -> Result<&'a str> {
    if let Some(fs) = mount_volume(capability)
        .map(|m| m.fs_type.as_str())
        .filter(|f| !f.is_empty())
    {
        return Ok(fs);
    }
    match context.get("fstype").map(String::as_str) {
        None | Some("") => Ok(DEFAULT_FS),
        Some(fs @ ("ext4" | "ext3" | "xfs")) => Ok(fs),
        Some(other) => Err(Error::InvalidArgument(format!(
            "volume_context fstype {other:?} is not ext4, ext3 or xfs"
        ))),
    }
}

/// Stages a filesystem volume: format only a blank device, mount, grow when the device is larger.
fn stage_mount<M: Mounter>(
    mounter: &M,
    device: &Path,
    staging: &Path,
    capability: &pb::VolumeCapability,
    requested: &str,
) -> Result<()> {
    if let Some(existing) = prepare_mount_point(mounter, staging)? {
        if Path::new(&existing.source) == device {
            // Already staged: a repeat must succeed. Growth is a bonus here; NodeExpandVolume is
            // where a failed online growth is reported.
            if let Err(e) = grow_if_smaller(mounter, device, staging, &existing.fs_type) {
                tracing::warn!(device = %device.display(), error = %e, "cannot grow the staged filesystem now");
            }
            return Ok(());
        }
        return Err(Error::FailedPrecondition(format!(
            "{} already has {} mounted, not {}",
            staging.display(),
            existing.source,
            device.display()
        )));
    }
    let fs_type = match mounter.probe(device)? {
        DeviceContent::Blank => {
            mounter.format(&FormatParams {
                device: device.to_owned(),
                fs_type: requested.to_owned(),
                extra_options: Vec::new(),
            })?;
            requested.to_owned()
        }
        DeviceContent::Filesystem(found) => {
            if found != requested {
                tracing::warn!(device = %device.display(), found = %found, requested, "keeping the existing filesystem; it is never reformatted");
            }
            found
        }
        DeviceContent::PartitionTable(kind) | DeviceContent::Other(kind) => {
            return Err(Error::FailedPrecondition(format!(
                "{} holds {kind}, not a filesystem this driver made; refusing to format or mount it",
                device.display()
            )));
        }
    };
    // ext* grows unmounted (no CAP_SYS_RESOURCE needed); xfs only grows mounted.
    if fs_type != "xfs" {
        grow_if_smaller(mounter, device, staging, &fs_type)?;
    }
    let mut options: Vec<String> = mount_volume(capability)
        .map(|m| m.mount_flags.clone())
        .unwrap_or_default();
    if fs_type == "xfs" && !options.iter().any(|o| o == "nouuid") {
        // A restored snapshot has the same UUID as its source, which may be mounted here too.
        options.push("nouuid".into());
    }
    if read_only(false, capability) && !options.iter().any(|o| o == "ro") {
        options.push("ro".into());
    }
    mounter.mount(device, staging, &fs_type, &options)?;
    if fs_type == "xfs" {
        grow_if_smaller(mounter, device, staging, &fs_type)?;
    }
    Ok(())
}

fn grow_if_smaller<M: Mounter>(
    mounter: &M,
    device: &Path,
    mount_path: &Path,
    fs_type: &str,
) -> Result<()> {
    let device_bytes = mounter.device_size(device)?;
    match mounter.fs_size(device, fs_type)? {
        Some(fs_bytes) if fs_bytes + GROW_SLACK_BYTES < device_bytes => {
            tracing::info!(device = %device.display(), fs_bytes, device_bytes, "growing the filesystem to its device");
            mounter.grow(device, mount_path, fs_type)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Binds the device onto a file: the staged form of a block volume.
fn bind_device<M: Mounter>(mounter: &M, device: &Path, file: &Path, read_only: bool) -> Result<()> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent, "cannot create the directory"))?;
    }
    if !file.exists() {
        std::fs::File::create(file).map_err(io(file, "cannot create the device file"))?;
    }
    if let Some(existing) = mounter.mount_at(file)? {
        let name = device
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if existing.root.ends_with(&format!("/{name}")) {
            return Ok(());
        }
        unmount_all(mounter, file)?;
    }
    mounter.bind(device, file, read_only, &[])?;
    Ok(())
}

impl<M: Mounter + 'static> NodeService<M> {
    pub fn new(mounter: Arc<M>, config: NodeConfig) -> Self {
        NodeService {
            mounter,
            assembler: Arc::new(Tools::new(config.devices.clone())),
            paths: NodePaths::new([config.kubelet_dir.clone()]),
            config,
            inflight: InFlight::new(),
        }
    }
}

impl<M: Mounter + 'static, A: Assembler + 'static> NodeService<M, A> {
    /// The same service assembling multi-disk volumes with `assembler`.
    pub fn with_assembler<B: Assembler + 'static>(self, assembler: B) -> NodeService<M, B> {
        NodeService {
            mounter: self.mounter,
            assembler: Arc::new(assembler),
            config: self.config,
            paths: self.paths,
            inflight: self.inflight,
        }
    }

    pub fn into_server(self) -> pb::node_server::NodeServer<Self> {
        pb::node_server::NodeServer::new(self)
    }

    /// The device to stage: the disk's, or the assembled device of a multi-disk volume's disks.
    async fn stage_device(
        &self,
        volume_id: &str,
        context: &std::collections::HashMap<String, String>,
        staging: &Path,
        guard: &InFlightGuard,
        deadline: Option<Instant>,
    ) -> Result<PathBuf> {
        let Some(disks) = multi_disk_ids(volume_id) else {
            return self.wait_for_device(volume_id, deadline).await;
        };
        let layout = layout_from(context, disks.len())?;
        let name = volume_name(context, staging);
        let mut devices = Vec::with_capacity(disks.len());
        for disk in &disks {
            devices.push(self.wait_for_device(disk, deadline).await?);
        }
        let assembler = Arc::clone(&self.assembler);
        let dev_root = self.config.devices.dev_root.clone();
        run_blocking(Some(guard), move || {
            let plan = Plan {
                devices: &devices,
                layout,
                name: name.as_deref(),
                dev_root: &dev_root,
            };
            assemble(assembler.as_ref(), &plan)
        })
        .await
    }

    /// Waits (bounded) for the disk's block device to appear on this node.
    async fn wait_for_device(&self, volume_id: &str, deadline: Option<Instant>) -> Result<PathBuf> {
        let until = deadline
            .unwrap_or_else(|| Instant::now() + self.config.device_wait)
            .min(Instant::now() + self.config.device_wait);
        let mut interval = Duration::from_millis(50);
        loop {
            if let Some(found) = device_for_serial(&self.config.devices, volume_id) {
                if found.stale_link {
                    tracing::warn!(volume_id, device = %found.device.display(), "the by-id link of this disk points at another device; used the serial instead");
                }
                return Ok(found.device);
            }
            if Instant::now() + interval >= until {
                return Err(Error::NotFound(format!(
                    "volume {volume_id} is not attached to this node: no block device has serial {volume_id}"
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_millis(500));
        }
    }
}

fn node_capabilities() -> Vec<pb::NodeServiceCapability> {
    use pb::node_service_capability::rpc::Type;
    node_caps(&[
        Type::StageUnstageVolume,
        Type::ExpandVolume,
        Type::GetVolumeStats,
        Type::VolumeCondition,
        Type::SingleNodeMultiWriter,
    ])
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl<M: Mounter + 'static, A: Assembler + 'static> pb::node_server::Node for NodeService<M, A> {
    async fn node_stage_volume(
        &self,
        request: Request<pb::NodeStageVolumeRequest>,
    ) -> RpcResult<pb::NodeStageVolumeResponse> {
        let deadline = csi_common::csi::deadline(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let staging = self
            .paths
            .target(&req.staging_target_path, "staging_target_path")?;
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capabilities(std::slice::from_ref(&capability))?;
        disk_id(&req.volume_id)?;
        let fs_type = requested_fs(&capability, &req.volume_context)?.to_owned();
        let guard = self.inflight.acquire(&req.volume_id)?;
        let device = self
            .stage_device(
                &req.volume_id,
                &req.volume_context,
                &staging,
                &guard,
                deadline,
            )
            .await?;
        let volume_id = req.volume_id.clone();
        blocking(&self.mounter, Some(&guard), move |m| {
            if is_block(&capability) {
                std::fs::create_dir_all(&staging)
                    .map_err(io(&staging, "cannot create the staging directory"))?;
                bind_device(m, &device, &block_staging_file(&staging, &volume_id), false)
            } else {
                stage_mount(m, &device, &staging, &capability, &fs_type)
            }
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
        let staging = self
            .paths
            .target(&req.staging_target_path, "staging_target_path")?;
        disk_id(&req.volume_id)?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        let volume_id = req.volume_id;
        // A multi-disk volume is taken apart once unmounted: its disks are still attached.
        let members =
            multi_disk_ids(&volume_id).map(|disks| devices_present(&self.config.devices, &disks));
        let assembler = Arc::clone(&self.assembler);
        blocking(&self.mounter, Some(&guard), move |m| {
            let block_file = block_staging_file(&staging, &volume_id);
            if block_file.exists() {
                unmount_all(m, &block_file)?;
                remove_target(&block_file)?;
            }
            unmount_all(m, &staging)?;
            match members {
                Some(devices) => disassemble(assembler.as_ref(), &devices),
                None => Ok(()),
            }
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
        let staging = self
            .paths
            .target(&req.staging_target_path, "staging_target_path")?;
        let target = self.paths.target(&req.target_path, "target_path")?;
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capabilities(std::slice::from_ref(&capability))?;
        let read_only = read_only(req.readonly, &capability);
        disk_id(&req.volume_id)?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        let volume_id = req.volume_id;
        blocking(&self.mounter, Some(&guard), move |m| {
            if is_block(&capability) {
                let source = block_staging_file(&staging, &volume_id);
                if m.mount_at(&source)?.is_none() {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {volume_id} is not staged at {}",
                        staging.display()
                    )));
                }
                if m.mount_at(&target)?.is_some() {
                    return Ok(());
                }
                return bind_device(m, &source, &target, read_only);
            }
            let Some(staged) = healthy_mount(m, &staging)? else {
                return Err(Error::FailedPrecondition(format!(
                    "volume {volume_id} is not staged at {}",
                    staging.display()
                )));
            };
            if let Some(existing) = prepare_mount_point(m, &target)? {
                if existing.source != staged.source || existing.root != staged.root {
                    return Err(Error::FailedPrecondition(format!(
                        "{} already has {} mounted, not volume {volume_id}; refusing to touch it",
                        target.display(),
                        existing.source
                    )));
                }
                // A crash between the bind and its read-only remount leaves a writable bind: redo it.
                if existing.is_read_only() == read_only {
                    return Ok(());
                }
                unmount_all(m, &target)?;
            }
            let flags = mount_volume(&capability)
                .map(|v| v.mount_flags.clone())
                .unwrap_or_default();
            m.bind(&staging, &target, read_only, &flags)?;
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
        let target = self.paths.target(&req.target_path, "target_path")?;
        disk_id(&req.volume_id)?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        blocking(&self.mounter, Some(&guard), move |m| {
            unmount_all(m, &target)?;
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
        disk_id(&req.volume_id)?;
        let devices = self.config.devices.clone();
        let volume_id = req.volume_id;
        let response = blocking(&self.mounter, None, move |m| {
            let (info, is_dir) = match check_volume_path(m, &path)? {
                VolumePath::Missing => {
                    return Err(Error::NotFound(format!(
                        "volume path {} does not exist",
                        path.display()
                    )));
                }
                VolumePath::Unhealthy(answer) => return Ok(answer),
                VolumePath::Mounted { info, is_dir } => (info, is_dir),
            };
            let disks = VolumeId::parse(&volume_id).map_or_else(Vec::new, |v| v.disks());
            let multi = disks.len() > 1;
            let present = devices_present(&devices, &disks);
            let found = device_for_serial(&devices, &volume_id);
            let device_gone = if multi {
                present.len() != disks.len()
            } else {
                found.is_none()
            };
            if !is_dir {
                // A published block volume: its size is all there is to report.
                let total = match &found {
                    Some(found) => m.device_size(&found.device)?,
                    // A multi-disk volume: its disks' sizes, near enough to the assembly's.
                    None if multi => present
                        .iter()
                        .map(|d| m.device_size(d))
                        .sum::<std::result::Result<u64, _>>()?,
                    None => 0,
                };
                let usage = vec![pb::VolumeUsage {
                    total: total as i64,
                    unit: pb::volume_usage::Unit::Bytes as i32,
                    ..Default::default()
                }];
                let condition = if device_gone {
                    pb::VolumeCondition {
                        abnormal: true,
                        message: format!("the device of {volume_id} is gone from this node"),
                    }
                } else {
                    pb::VolumeCondition {
                        abnormal: false,
                        message: "block device present".into(),
                    }
                };
                return Ok(pb::NodeGetVolumeStatsResponse {
                    usage,
                    volume_condition: Some(condition),
                });
            }
            let usage = match filesystem_usage(m, &path)? {
                Ok(usage) => usage,
                Err(answer) => return Ok(answer),
            };
            let mount_rw = !info.options.iter().any(|o| o == "ro");
            let super_ro = info.super_options.iter().any(|o| o == "ro");
            let condition = if device_gone
                || (!multi && !device_has_serial(&devices, Path::new(&info.source), &volume_id))
            {
                pb::VolumeCondition {
                    abnormal: true,
                    message: format!(
                        "the device of {volume_id} ({}) is gone from this node",
                        info.source
                    ),
                }
            } else if mount_rw && super_ro {
                pb::VolumeCondition {
                    abnormal: true,
                    message: "the filesystem was remounted read-only, usually after I/O errors"
                        .into(),
                }
            } else {
                pb::VolumeCondition {
                    abnormal: false,
                    message: "mounted and answering".into(),
                }
            };
            Ok(pb::NodeGetVolumeStatsResponse {
                usage,
                volume_condition: Some(condition),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn node_expand_volume(
        &self,
        request: Request<pb::NodeExpandVolumeRequest>,
    ) -> RpcResult<pb::NodeExpandVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let path = volume_path(&req.volume_path, "volume_path")?;
        // The capability is optional here; a published block volume is a file, not a directory.
        let block = match req.volume_capability.as_ref() {
            Some(capability) => is_block(capability),
            None => std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()),
        };
        disk_id(&req.volume_id)?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        let device = match multi_disk_ids(&req.volume_id) {
            None => {
                device_for_serial(&self.config.devices, &req.volume_id)
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "volume {} is not attached to this node",
                            req.volume_id
                        ))
                    })?
                    .device
            }
            Some(disks) => {
                let devices = devices_present(&self.config.devices, &disks);
                if devices.len() != disks.len() {
                    return Err(Error::NotFound(format!(
                        "not every disk of volume {} is attached to this node",
                        req.volume_id
                    ))
                    .into());
                }
                let assembler = Arc::clone(&self.assembler);
                let dev_root = self.config.devices.dev_root.clone();
                run_blocking(Some(&guard), move || {
                    let plan = Plan {
                        devices: &devices,
                        layout: crate::multidisk::Layout::Lvm,
                        name: None,
                        dev_root: &dev_root,
                    };
                    grow(assembler.as_ref(), &plan)
                })
                .await?
            }
        };
        let multi = multi_disk_ids(&req.volume_id).is_some();
        let capacity = blocking(&self.mounter, Some(&guard), move |m| {
            if !block {
                let info = m.mount_at(&path)?.ok_or_else(|| {
                    Error::NotFound(format!("volume path {} is not mounted", path.display()))
                })?;
                if !multi && Path::new(&info.source) != device {
                    return Err(Error::FailedPrecondition(format!(
                        "{} mounts {}, not {}",
                        path.display(),
                        info.source,
                        device.display()
                    )));
                }
                m.grow(&device, &path, &info.fs_type)?;
            }
            Ok(m.device_size(&device)?)
        })
        .await?;
        Ok(Response::new(pb::NodeExpandVolumeResponse {
            capacity_bytes: capacity as i64,
        }))
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
        let accessible_topology = (!self.config.zone.is_empty()).then(|| pb::Topology {
            segments: [(TOPOLOGY_KEY.to_owned(), self.config.zone.clone())].into(),
        });
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: self.config.max_volumes_per_node,
            accessible_topology,
        }))
    }
}
