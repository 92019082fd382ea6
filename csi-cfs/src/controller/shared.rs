//! The shared instance of a StorageClass and the subdirectory volumes on it: finding or creating
//! the instance by its tag, its root mounted under the work directory ([`crate::roots`]), the
//! subdirectories with their owner records ([`crate::subdirs`]), and the group quota that sizes
//! them. Nothing here makes a whole file system per volume.

use std::path::PathBuf;

use csi_common::csi::pb;
use csi_common::mount::Mounter;
use tcloud::cfs::{CfsApi, FileSystem, MountTarget, ResourceTag};
use tcloud::client_token;
use tokio::time::Instant;

use super::{
    ControllerService, GIB, TAG_DRIVER, TAG_ON_DELETE, TAG_SHARED, create_request, quota_gid,
    volume_context,
};
use crate::error::{Error, Result};
use crate::nfs::NfsSource;
use crate::owners::{Owner, RECORDS_DIR};
use crate::params::{CfsParams, OnDelete, VolumeId, expand_pattern, owner_digest};
use crate::subdirs;

impl<C: CfsApi, M: Mounter + 'static> ControllerService<C, M> {
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
    pub(super) async fn instance_root(&self, fs_id: &str, target: &MountTarget) -> Result<PathBuf> {
        let context = volume_context(
            &MountTarget {
                fsid: String::new(),
                ..target.clone()
            },
            4,
            "/",
        );
        let source = NfsSource::from_context(&context).map_err(Error::Internal)?;
        self.roots.mounted(&self.mounter, fs_id, source).await
    }

    pub(super) async fn create_subdir(
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
        let (leaf, owner) = (
            subdir.clone(),
            Owner {
                volume: name.to_owned(),
                capacity_bytes: capacity,
                released: false,
            },
        );
        tokio::task::spawn_blocking(move || subdirs::claim(&root, &leaf, &owner, Some(gid)))
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
    pub(super) async fn apply_quota(
        &self,
        fs_id: &str,
        gid: u32,
        capacity: u64,
        deadline: Instant,
    ) {
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

    pub(super) async fn delete_subdir(
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
        let (leaf, owner, suffix) = (
            subdir.to_owned(),
            owner.map(str::to_owned),
            tcloud::time::unix_now(),
        );
        tokio::task::spawn_blocking(move || {
            subdirs::release(&root, &leaf, owner.as_deref(), on_delete, suffix)
        })
        .await
        .map_err(|e| Error::Internal(format!("subdirectory task failed: {e}")))?
    }
}
