//! The CFS controller: a whole file system per volume, or a subdirectory per volume on a shared
//! file system found again through its tag (no ConfigMap, no local state).
//!
//! Shared-instance subdirectories are managed by mounting the instance through the same NFS layer
//! as the node; the instance stays mounted under the work directory until the plugin stops.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_common::csi::reply::{answer_by, controller_caps, validation};
use csi_common::csi::request::{self, Capacity, Page, Supported};
use csi_common::csi::{InFlight, pb};
use csi_common::mount::Mounter;
use csi_common::mount::ops::healthy_mount;
use tcloud::cfs::{
    CfsApi, CreateFileSystemRequest, DescribeFileSystemsRequest, FileSystem, MountTarget,
    ResourceTag, life_cycle,
};
use tcloud::{ErrorKind, client_token, short_name};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result, io, required};
use crate::nfs::{NfsMounter, NfsSource};
use crate::owners::{self, Owner, RECORDS_DIR, Records};
use crate::params::{CfsParams, OnDelete, VolumeId, expand_pattern, owner_digest};

/// Tag keys: Tencent reserves keys starting with `tencent`, `qcloud` and `project`.
pub const TAG_DRIVER: &str = "k8s-csi/driver";
pub const TAG_SHARED: &str = "k8s-csi/shared-instance";
pub const TAG_ON_DELETE: &str = "k8s-csi/on-delete";
/// Archived subdirectories start with this; they are not volumes any more.
pub const ARCHIVE_PREFIX: &str = "archived-";
/// The whole CSI name of a file system whose FsName had to be shortened.
pub const TAG_VOLUME_NAME: &str = "k8s-csi/volume-name";
/// The size a whole file system was asked with, so a repeated create can be compared.
pub const TAG_CAPACITY: &str = "k8s-csi/capacity-bytes";
/// CFS file system names hold at most this many bytes.
pub const MAX_FS_NAME: usize = 64;
const GIB: u64 = 1 << 30;
const PAGE: u64 = 100;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub driver_name: String,
    /// Where shared instances are mounted to manage their subdirectories.
    pub work_dir: PathBuf,
    pub nfs: NfsMounter,
    /// The zone of a new file system whose StorageClass names none: this controller's own.
    pub default_zone: Option<String>,
    /// The VPC and subnet of a new file system whose StorageClass names none.
    pub defaults: crate::params::Defaults,
}

#[derive(Debug)]
pub struct ControllerService<C, M> {
    cfs: Arc<C>,
    mounter: Arc<M>,
    config: ControllerConfig,
    inflight: InFlight,
    mounting: tokio::sync::Mutex<()>,
    metrics: Arc<csi_common::metrics::Metrics>,
}

/// NFS serves file access only: every access mode, any file system type asked, never block.
pub const SUPPORTED: Supported = Supported {
    storage: "a CFS file system",
    block: false,
    multi_node: true,
    fs_types: &[],
};

/// Every capability must be one a CFS file system supports.
pub fn check_capabilities(capabilities: &[pb::VolumeCapability]) -> Result<()> {
    request::check_capabilities(capabilities, &SUPPORTED)
}

/// The group that owns a shared-instance volume's files, for its CFS group quota.
pub fn quota_gid(volume_id: &str) -> u32 {
    let hash = volume_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    60_000 + (hash % 900_000) as u32
}

fn volume_context(target: &MountTarget, vers: u8, path: &str) -> HashMap<String, String> {
    let mut context: HashMap<String, String> = [
        ("host", target.ip_address.clone()),
        ("path", path.to_owned()),
        ("vers", vers.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if !target.fsid.is_empty() {
        context.insert("fsid".into(), target.fsid.clone());
    }
    context
}

/// A CreateCfsFileSystem request for a StorageClass's parameters.
fn create_request(
    params: &CfsParams,
    zone: String,
    fs_name: String,
    resource_tags: Vec<ResourceTag>,
    client_token: String,
) -> CreateFileSystemRequest {
    CreateFileSystemRequest {
        zone,
        net_interface: "VPC".into(),
        p_group_id: params.pgroup_id.clone(),
        protocol: "NFS".into(),
        storage_type: params.storage_type.clone(),
        vpc_id: params.vpc_id.clone(),
        subnet_id: params.subnet_id.clone(),
        fs_name: Some(fs_name),
        resource_tags,
        client_token: Some(client_token),
    }
}

impl<C: CfsApi, M: Mounter + 'static> ControllerService<C, M> {
    pub fn new(cfs: Arc<C>, mounter: Arc<M>, config: ControllerConfig) -> Self {
        ControllerService {
            cfs,
            mounter,
            config,
            inflight: InFlight::new(),
            mounting: tokio::sync::Mutex::new(()),
            metrics: csi_common::metrics::Metrics::new(),
        }
    }

    /// Records the time spent waiting on file-system states in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<csi_common::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn into_server(self) -> pb::controller_server::ControllerServer<Self> {
        pb::controller_server::ControllerServer::new(self)
    }

    async fn file_system(&self, fs_id: &str, deadline: Instant) -> Result<Option<FileSystem>> {
        let request = DescribeFileSystemsRequest {
            file_system_id: Some(fs_id.to_owned()),
            ..Default::default()
        };
        match self
            .cfs
            .describe_file_systems(&request, Some(deadline))
            .await
        {
            Ok(response) => Ok(response
                .file_systems
                .into_iter()
                .find(|f| f.file_system_id == fs_id)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every file system of the account, page by page.
    async fn all_file_systems(&self, deadline: Instant) -> Result<Vec<FileSystem>> {
        let mut all = Vec::new();
        loop {
            let request = DescribeFileSystemsRequest {
                offset: Some(all.len() as u64),
                limit: Some(PAGE),
                ..Default::default()
            };
            let page = self
                .cfs
                .describe_file_systems(&request, Some(deadline))
                .await?;
            let got = page.file_systems.len();
            all.extend(page.file_systems);
            if got == 0 || all.len() as u64 >= page.total_count {
                return Ok(all);
            }
        }
    }

    /// Waits (within the deadline; the retry resumes) until the file system is `available`;
    /// the time is recorded as `cloud_wait_duration_seconds{resource="file_system"}`.
    async fn wait_available(&self, fs_id: &str, deadline: Instant) -> Result<FileSystem> {
        let started = std::time::Instant::now();
        let result = self.poll_available(fs_id, deadline).await;
        let outcome = match &result {
            Ok(_) => "reached",
            Err(Error::DeadlineExceeded(_)) => "deadline",
            Err(_) => "error",
        };
        self.metrics.observe_cloud_wait(
            "file_system",
            "available",
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn poll_available(&self, fs_id: &str, deadline: Instant) -> Result<FileSystem> {
        let mut interval = Duration::from_millis(100);
        loop {
            let fs = self
                .file_system(fs_id, deadline)
                .await?
                .ok_or_else(|| Error::NotFound(format!("file system {fs_id} does not exist")))?;
            match fs.life_cycle_state.as_str() {
                life_cycle::AVAILABLE => return Ok(fs),
                life_cycle::CREATE_FAILED => {
                    return Err(Error::Internal(format!(
                        "CFS failed to create file system {fs_id}; delete it and retry"
                    )));
                }
                _ => {}
            }
            if Instant::now() + interval >= deadline {
                return Err(Error::DeadlineExceeded(format!(
                    "file system {fs_id} is still {}; the next call resumes the wait",
                    fs.life_cycle_state
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(Duration::from_secs(2));
        }
    }

    async fn mount_target(&self, fs_id: &str, deadline: Instant) -> Result<MountTarget> {
        self.cfs
            .describe_mount_targets(fs_id, Some(deadline))
            .await?
            .into_iter()
            .find(|t| !t.ip_address.is_empty())
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "file system {fs_id} has no mount target yet; retry"
                ))
            })
    }

    fn zone(&self, params: &CfsParams) -> Result<String> {
        params
            .zone
            .clone()
            .or_else(|| self.config.default_zone.clone())
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "parameter zone is required (this controller's zone is unknown)".into(),
                )
            })
    }

    /// The shared instance of a StorageClass: found by its tag, created on first use. The tag and
    /// the ClientToken derive from everything that defines the instance, so concurrent first
    /// creates and a restarted controller all land on the same one.
    async fn shared_instance(&self, params: &CfsParams, deadline: Instant) -> Result<FileSystem> {
        let zone = self.zone(params)?;
        let mut identity: Vec<String> = vec![
            self.config.driver_name.clone(),
            zone.clone(),
            params.vpc_id.clone(),
            params.subnet_id.clone(),
            params.pgroup_id.clone(),
            params.storage_type.clone(),
            params.on_delete.as_str().to_owned(),
        ];
        identity.extend(
            params
                .tags
                .iter()
                .map(|t| format!("{}={}", t.tag_key, t.tag_value)),
        );
        let parts: Vec<&str> = identity.iter().map(String::as_str).collect();
        let key = client_token(&parts);
        let existing = self
            .all_file_systems(deadline)
            .await?
            .into_iter()
            .find(|f| f.tag(TAG_SHARED) == Some(key.as_str()));
        let fs_id = match existing {
            Some(fs) => fs.file_system_id,
            None => {
                let mut tags = params.tags.clone();
                tags.extend([
                    ResourceTag {
                        tag_key: TAG_DRIVER.into(),
                        tag_value: self.config.driver_name.clone(),
                    },
                    ResourceTag {
                        tag_key: TAG_SHARED.into(),
                        tag_value: key.clone(),
                    },
                    ResourceTag {
                        tag_key: TAG_ON_DELETE.into(),
                        tag_value: params.on_delete.as_str().into(),
                    },
                ]);
                let request = create_request(
                    params,
                    zone,
                    format!("csi-shared-{}", &key[..12]),
                    tags,
                    key.clone(),
                );
                tracing::info!(key = %&key[..12], "creating the shared CFS instance of this StorageClass");
                self.cfs
                    .create_file_system(&request, Some(deadline))
                    .await?
            }
        };
        self.wait_available(&fs_id, deadline).await
    }

    /// The instance's root, mounted under the work directory over NFS v4 (enough to manage
    /// directories whatever version volumes use); kept mounted, reused while healthy.
    async fn instance_root(&self, fs_id: &str, target: &MountTarget) -> Result<PathBuf> {
        let _one_at_a_time = self.mounting.lock().await;
        let root = self.config.work_dir.join(fs_id);
        let context = volume_context(
            &MountTarget {
                fsid: String::new(),
                ..target.clone()
            },
            4,
            "/",
        );
        let source = NfsSource::from_context(&context).map_err(Error::Internal)?;
        let (mounter, nfs, path) = (
            Arc::clone(&self.mounter),
            self.config.nfs.clone(),
            root.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            std::fs::create_dir_all(&path)
                .map_err(io(&path, "cannot create the controller's mount point"))?;
            if healthy_mount(mounter.as_ref(), &path)?.is_none() {
                nfs.mount(&source, &path, &[], false)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("mount task failed: {e}")))??;
        Ok(root)
    }

    /// A whole file system per volume: found again by its name (and, for a shortened name, the
    /// whole name in its tag), compared with the request, else created with a ClientToken.
    async fn create_whole(
        &self,
        name: &str,
        params: &CfsParams,
        capacity: u64,
        deadline: Instant,
    ) -> Result<pb::Volume> {
        let fs_name = short_name(name, MAX_FS_NAME).into_owned();
        let shortened = fs_name != name;
        let existing = self
            .all_file_systems(deadline)
            .await?
            .into_iter()
            .find(|f| {
                f.fs_name == fs_name
                    && f.tag(TAG_DRIVER) == Some(self.config.driver_name.as_str())
                    && f.tag(TAG_SHARED).is_none()
                    && (!shortened || f.tag(TAG_VOLUME_NAME) == Some(name))
            });
        let fs_id = match existing {
            Some(fs) => {
                let asked = fs.tag(TAG_CAPACITY).and_then(|c| c.parse::<u64>().ok());
                if let Some(asked) = asked.filter(|asked| *asked != capacity) {
                    return Err(Error::AlreadyExists(format!(
                        "volume {name} exists as file system {} of {asked} bytes, not {capacity}",
                        fs.file_system_id
                    )));
                }
                fs.file_system_id
            }
            None => {
                let mut tags = params.tags.clone();
                tags.push(ResourceTag {
                    tag_key: TAG_DRIVER.into(),
                    tag_value: self.config.driver_name.clone(),
                });
                tags.push(ResourceTag {
                    tag_key: TAG_CAPACITY.into(),
                    tag_value: capacity.to_string(),
                });
                if shortened {
                    tags.push(ResourceTag {
                        tag_key: TAG_VOLUME_NAME.into(),
                        tag_value: name.to_owned(),
                    });
                }
                let request = create_request(
                    params,
                    self.zone(params)?,
                    fs_name,
                    tags,
                    client_token(&[&self.config.driver_name, name]),
                );
                self.cfs
                    .create_file_system(&request, Some(deadline))
                    .await?
            }
        };
        self.wait_available(&fs_id, deadline).await?;
        let target = self.mount_target(&fs_id, deadline).await?;
        Ok(pb::Volume {
            capacity_bytes: capacity as i64,
            volume_id: VolumeId::FileSystem(fs_id).to_string(),
            volume_context: volume_context(&target, params.vers, "/"),
            content_source: None,
            accessible_topology: Vec::new(),
        })
    }

    async fn create_subdir(
        &self,
        name: &str,
        params: &CfsParams,
        capacity: u64,
        deadline: Instant,
    ) -> Result<pb::Volume> {
        let pv_name = params.pv_name.as_deref().unwrap_or(name);
        let subdir = expand_pattern(
            &params.pattern,
            pv_name,
            params.pvc_name.as_deref(),
            params.pvc_namespace.as_deref(),
        )
        .map_err(|reason| {
            Error::InvalidArgument(format!("subdir-pattern {:?}: {reason}", params.pattern))
        })?;
        if subdir == RECORDS_DIR {
            return Err(Error::InvalidArgument(format!(
                "subdir-pattern {:?} gives {subdir}, which holds the owner records",
                params.pattern
            )));
        }
        let fs = self.shared_instance(params, deadline).await?;
        let target = self.mount_target(&fs.file_system_id, deadline).await?;
        let volume_id = VolumeId::Subdir {
            fs_id: fs.file_system_id.clone(),
            on_delete: params.on_delete,
            subdir: subdir.clone(),
            owner: Some(owner_digest(name)),
        };
        let gid = quota_gid(&volume_id.to_string());
        // Two claims whose patterns give one directory are decided one at a time.
        let _subdir_guard = self
            .inflight
            .acquire(&format!("{}/{subdir}", fs.file_system_id))?;
        let root = self.instance_root(&fs.file_system_id, &target).await?;
        let dir = root.join(&subdir);
        let (leaf, owner) = (
            subdir.clone(),
            Owner {
                volume: name.to_owned(),
                capacity_bytes: capacity,
                released: false,
            },
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            let records = Records::new(&root);
            owners::claim(
                &leaf,
                records.read(&leaf)?.as_ref(),
                &owner.volume,
                capacity,
            )?;
            match std::fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::AlreadyExists(format!(
                        "{} exists and is not a directory",
                        dir.display()
                    )));
                }
                Err(_) => std::fs::create_dir(&dir)
                    .map_err(io(&dir, "cannot create the volume's subdirectory"))?,
            }
            // Files created inside keep the volume's group (setgid), which the group quota counts.
            nix::unistd::chown(&dir, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
                io(&dir, "cannot set the subdirectory's group")(std::io::Error::from(e))
            })?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2777))
                .map_err(io(&dir, "cannot set the subdirectory's mode"))?;
            records.write(&leaf, &owner)
        })
        .await
        .map_err(|e| Error::Internal(format!("subdirectory task failed: {e}")))??;
        self.apply_quota(&fs.file_system_id, gid, capacity, deadline)
            .await;
        Ok(pb::Volume {
            capacity_bytes: capacity as i64,
            volume_id: volume_id.to_string(),
            volume_context: volume_context(&target, params.vers, &format!("/{subdir}")),
            content_source: None,
            accessible_topology: Vec::new(),
        })
    }

    /// A CFS group quota for the volume's group; best effort (not every CFS type has quotas).
    async fn apply_quota(&self, fs_id: &str, gid: u32, capacity: u64, deadline: Instant) {
        if capacity == 0 {
            return;
        }
        let gib = capacity.div_ceil(GIB);
        if let Err(e) = self
            .cfs
            .set_group_quota(fs_id, gid, gib, Some(deadline))
            .await
        {
            tracing::warn!(fs_id, gid, gib, error = %e, "cannot set the group quota; the size is not enforced");
        }
    }

    async fn delete_subdir(
        &self,
        fs_id: &str,
        on_delete: OnDelete,
        subdir: &str,
        owner: Option<&str>,
        deadline: Instant,
    ) -> Result<()> {
        if self.file_system(fs_id, deadline).await?.is_none() {
            return Ok(());
        }
        let target = self.mount_target(fs_id, deadline).await?;
        let root = self.instance_root(fs_id, &target).await?;
        let dir = root.join(subdir);
        let archived = root.join(format!(
            "{ARCHIVE_PREFIX}{subdir}-{}",
            tcloud::time::unix_now()
        ));
        let (leaf, owner) = (subdir.to_owned(), owner.map(str::to_owned));
        tokio::task::spawn_blocking(move || -> Result<()> {
            let records = Records::new(&root);
            // The directory went to another volume after this one was deleted (a late retry of
            // this delete): this volume is gone already, and the other's data is not ours.
            if let (Some(owner), Some(record)) = (&owner, records.read(&leaf)?)
                && owner_digest(&record.volume) != *owner
            {
                tracing::info!(subdir = %leaf, holder = %record.volume, "the directory belongs to another volume now: nothing to delete");
                return Ok(());
            }
            // The data first, the record after: a retry after a crash finds the record and
            // finishes the job.
            match std::fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return records.remove(&leaf);
                }
                Err(e) => return Err(io(&dir, "cannot inspect the subdirectory")(e)),
                Ok(meta) if !meta.is_dir() => {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is not a directory; refusing to touch it",
                        dir.display()
                    )));
                }
                Ok(_) => {}
            }
            match on_delete {
                OnDelete::Archive => {
                    std::fs::rename(&dir, &archived)
                        .map_err(io(&dir, "cannot archive the subdirectory"))?;
                    records.remove(&leaf)
                }
                // Exactly this leaf; remove_dir_all never follows symlinks out of it.
                OnDelete::Delete => {
                    std::fs::remove_dir_all(&dir)
                        .map_err(io(&dir, "cannot delete the subdirectory"))?;
                    records.remove(&leaf)
                }
                // The data stays; the record says no volume holds it any more.
                OnDelete::Retain => match records.read(&leaf)? {
                    Some(owner) if !owner.released => records.write(
                        &leaf,
                        &Owner {
                            released: true,
                            ..owner
                        },
                    ),
                    _ => Ok(()),
                },
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("subdirectory task failed: {e}")))?
    }

    /// Every volume this driver made: its whole file systems and the subdirectories of its shared
    /// instances (archived ones excluded), in a stable order.
    async fn all_volumes(&self, deadline: Instant) -> Result<Vec<pb::Volume>> {
        let mut volumes = Vec::new();
        for fs in self.all_file_systems(deadline).await? {
            if fs.tag(TAG_DRIVER) != Some(self.config.driver_name.as_str())
                || fs.life_cycle_state != life_cycle::AVAILABLE
            {
                continue;
            }
            let target = self.mount_target(&fs.file_system_id, deadline).await?;
            if fs.tag(TAG_SHARED).is_none() {
                volumes.push(pb::Volume {
                    volume_id: fs.file_system_id.clone(),
                    volume_context: volume_context(&target, 4, "/"),
                    ..Default::default()
                });
                continue;
            }
            let on_delete = fs
                .tag(TAG_ON_DELETE)
                .and_then(OnDelete::parse)
                .unwrap_or(OnDelete::Retain);
            let root = self.instance_root(&fs.file_system_id, &target).await?;
            // An NFS directory read can block on a sick server: off the async runtime.
            let names =
                tokio::task::spawn_blocking(move || -> Result<Vec<(String, Option<String>)>> {
                    let records: std::collections::BTreeMap<String, Owner> =
                        Records::new(&root).all()?.into_iter().collect();
                    // Directories older than owner records have none and are listed as before;
                    // released ones (deleted, data retained) are not volumes any more.
                    let mut names: Vec<(String, Option<String>)> = std::fs::read_dir(&root)
                        .map_err(io(&root, "cannot list the shared instance"))?
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                        .filter(|n| !n.starts_with(ARCHIVE_PREFIX) && n != RECORDS_DIR)
                        .filter_map(|n| match records.get(&n) {
                            Some(owner) if owner.released => None,
                            Some(owner) => Some((n, Some(owner_digest(&owner.volume)))),
                            None => Some((n, None)),
                        })
                        .collect();
                    names.sort();
                    Ok(names)
                })
                .await
                .map_err(|e| Error::Internal(format!("listing task failed: {e}")))??;
            for (subdir, owner) in names {
                let id = VolumeId::Subdir {
                    fs_id: fs.file_system_id.clone(),
                    on_delete,
                    subdir: subdir.clone(),
                    owner,
                };
                volumes.push(pb::Volume {
                    volume_id: id.to_string(),
                    volume_context: volume_context(&target, 4, &format!("/{subdir}")),
                    ..Default::default()
                });
            }
        }
        Ok(volumes)
    }
}

fn controller_capabilities() -> Vec<pb::ControllerServiceCapability> {
    use pb::controller_service_capability::rpc::Type;
    controller_caps(&[
        Type::CreateDeleteVolume,
        Type::ListVolumes,
        Type::ExpandVolume,
    ])
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl<C: CfsApi, M: Mounter + 'static> pb::controller_server::Controller
    for ControllerService<C, M>
{
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> RpcResult<pb::CreateVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        request::require(&req.name, "name")?;
        check_capabilities(&req.volume_capabilities)?;
        if req.volume_content_source.is_some() {
            return Err(Error::InvalidArgument(
                "CFS volumes cannot be created from a snapshot or another volume".into(),
            )
            .into());
        }
        let params =
            CfsParams::parse_with(&req.parameters, &self.config.defaults).map_err(Error::from)?;
        let capacity = Capacity::parse(req.capacity_range.as_ref())?.nominal();
        let _guard = self.inflight.acquire(&req.name)?;
        let volume = if params.shared {
            self.create_subdir(&req.name, &params, capacity, deadline)
                .await?
        } else {
            self.create_whole(&req.name, &params, capacity, deadline)
                .await?
        };
        Ok(Response::new(pb::CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> RpcResult<pb::DeleteVolumeResponse> {
        let deadline = answer_by(&request);
        let volume_id = request.into_inner().volume_id;
        if volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        // Not an ID this driver makes (a static PV, or garbage): nothing of ours to delete.
        let Some(id) = VolumeId::parse(&volume_id) else {
            return Ok(Response::new(pb::DeleteVolumeResponse {}));
        };
        let _guard = self.inflight.acquire(&volume_id)?;
        match id {
            VolumeId::FileSystem(fs_id) => {
                match self.cfs.delete_file_system(&fs_id, Some(deadline)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::from(e).into()),
                }
            }
            VolumeId::Subdir {
                fs_id,
                on_delete,
                subdir,
                owner,
            } => {
                self.delete_subdir(&fs_id, on_delete, &subdir, owner.as_deref(), deadline)
                    .await?
            }
        }
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerPublishVolumeResponse> {
        Err(Status::unimplemented("CFS volumes need no attach"))
    }

    async fn controller_unpublish_volume(
        &self,
        _request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerUnpublishVolumeResponse> {
        Err(Status::unimplemented("CFS volumes need no attach"))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> RpcResult<pb::ValidateVolumeCapabilitiesResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        if req.volume_capabilities.is_empty() {
            return Err(required("volume_capabilities").into());
        }
        let id = VolumeId::parse(&req.volume_id)
            .ok_or_else(|| Error::NotFound(format!("volume {} does not exist", req.volume_id)))?;
        if self.file_system(id.fs_id(), deadline).await?.is_none() {
            return Err(Error::NotFound(format!("volume {} does not exist", req.volume_id)).into());
        }
        let outcome = check_capabilities(&req.volume_capabilities).map_err(|e| e.to_string());
        let response = validation(req, outcome);
        Ok(Response::new(response))
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        let page = Page::parse(&req.starting_token, req.max_entries, u64::MAX)?;
        let volumes = self.all_volumes(deadline).await?;
        let (volumes, next_token) = page.of(&volumes, "volumes")?;
        let entries = volumes
            .iter()
            .map(|v| pb::list_volumes_response::Entry {
                volume: Some(v.clone()),
                status: None,
            })
            .collect();
        Ok(Response::new(pb::ListVolumesResponse {
            entries,
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        _request: Request<pb::GetCapacityRequest>,
    ) -> RpcResult<pb::GetCapacityResponse> {
        Err(Status::unimplemented("CFS capacity is elastic"))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> RpcResult<pb::ControllerGetCapabilitiesResponse> {
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse {
            capabilities: controller_capabilities(),
        }))
    }

    async fn create_snapshot(
        &self,
        _request: Request<pb::CreateSnapshotRequest>,
    ) -> RpcResult<pb::CreateSnapshotResponse> {
        Err(Status::unimplemented(
            "snapshots are not offered by this driver",
        ))
    }

    async fn delete_snapshot(
        &self,
        _request: Request<pb::DeleteSnapshotRequest>,
    ) -> RpcResult<pb::DeleteSnapshotResponse> {
        Err(Status::unimplemented(
            "snapshots are not offered by this driver",
        ))
    }

    async fn list_snapshots(
        &self,
        _request: Request<pb::ListSnapshotsRequest>,
    ) -> RpcResult<pb::ListSnapshotsResponse> {
        Err(Status::unimplemented(
            "snapshots are not offered by this driver",
        ))
    }

    /// A whole file system is elastic: its size is whatever it holds, so expansion only records
    /// the number. A shared-instance volume's size is its CFS group quota, which is raised.
    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let range = req
            .capacity_range
            .ok_or_else(|| required("capacity_range"))?;
        let capacity = Capacity::parse(Some(&range))?.nominal();
        let id = VolumeId::parse(&req.volume_id)
            .ok_or_else(|| Error::NotFound(format!("volume {} does not exist", req.volume_id)))?;
        let _guard = self.inflight.acquire(&req.volume_id)?;
        if self.file_system(id.fs_id(), deadline).await?.is_none() {
            return Err(Error::NotFound(format!("volume {} does not exist", req.volume_id)).into());
        }
        if let VolumeId::Subdir { fs_id, .. } = &id {
            self.apply_quota(fs_id, quota_gid(&req.volume_id), capacity, deadline)
                .await;
        }
        Ok(Response::new(pb::ControllerExpandVolumeResponse {
            capacity_bytes: capacity as i64,
            node_expansion_required: false,
        }))
    }

    async fn controller_get_volume(
        &self,
        _request: Request<pb::ControllerGetVolumeRequest>,
    ) -> RpcResult<pb::ControllerGetVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerGetVolume is not offered by this driver",
        ))
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> RpcResult<pb::ControllerModifyVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerModifyVolume is not offered by this driver",
        ))
    }
}

/// Unmounts the controller's instance mounts (at shutdown).
pub fn unmount_work_dir<M: Mounter>(mounter: &M, nfs: &NfsMounter, work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(e) = nfs.unmount_all(mounter, &path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot unmount a controller mount");
        }
        let _ = std::fs::remove_dir(&path);
    }
}
