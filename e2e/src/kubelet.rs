//! A volume's life as kubelet and the sidecars drive it, one CSI call per step, against a
//! running [`Env`]. Shared by `e2e demo`, the e2e tests and `e2e bench cbs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use csi_proto::v1 as pb;
use pb::volume_capability::access_mode::Mode;

use crate::client::CsiClient;
use crate::env::NODE_ID;

pub const GIB: i64 = 1 << 30;

pub fn mount_capability(fs_type: &str) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: fs_type.into(),
                ..Default::default()
            },
        )),
    }
}

/// A file system every pod on every node may write (ReadWriteMany), as a pod with fsGroup
/// `group` (empty: none) asks for it.
pub fn rwx(group: &str) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                volume_mount_group: group.into(),
                ..Default::default()
            },
        )),
    }
}

pub fn block_capability() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Block(Default::default())),
    }
}

/// One volume as kubelet sees it: its ID, capability and the paths kubelet would use.
#[derive(Debug, Clone)]
pub struct Volume {
    pub id: String,
    pub capability: pb::VolumeCapability,
    pub staging: PathBuf,
    pub target: PathBuf,
    pub publish_context: HashMap<String, String>,
    /// What CreateVolume returned as the volume's context (the PV's volumeAttributes).
    pub volume_context: HashMap<String, String>,
}

/// A CSI client plus kubelet's directory under the work directory.
#[derive(Debug, Clone)]
pub struct Kubelet {
    pub client: CsiClient,
    pub root: PathBuf,
    pub node_id: String,
    /// The StorageClass parameters CreateVolume gets.
    pub parameters: HashMap<String, String>,
    /// The secret the sidecars and kubelet pass (provisioner and node-publish secret refs).
    pub secrets: HashMap<String, String>,
}

impl Kubelet {
    pub fn new(client: CsiClient, workdir: &Path) -> Kubelet {
        Kubelet {
            client,
            root: workdir.join("kubelet"),
            node_id: NODE_ID.to_owned(),
            parameters: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// A PV written by hand (no CreateVolume): its ID, attributes and capability, with paths for
    /// the pod `pod`.
    pub fn static_volume(
        &self,
        id: &str,
        pod: &str,
        capability: pb::VolumeCapability,
        volume_context: HashMap<String, String>,
    ) -> Volume {
        Volume {
            id: id.to_owned(),
            capability,
            staging: self
                .root
                .join("plugins/kubernetes.io/csi/staging")
                .join(pod),
            target: self.root.join("pods").join(pod).join("mount"),
            publish_context: HashMap::new(),
            volume_context,
        }
    }

    pub async fn create(
        &mut self,
        name: &str,
        gib: i64,
        capability: pb::VolumeCapability,
        snapshot: Option<&str>,
    ) -> anyhow::Result<Volume> {
        let request = pb::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: gib * GIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![capability.clone()],
            parameters: self.parameters.clone(),
            secrets: self.secrets.clone(),
            volume_content_source: snapshot.map(|id| pb::VolumeContentSource {
                r#type: Some(pb::volume_content_source::Type::Snapshot(
                    pb::volume_content_source::SnapshotSource {
                        snapshot_id: id.into(),
                    },
                )),
            }),
            ..Default::default()
        };
        let volume = self
            .client
            .controller
            .create_volume(request)
            .await?
            .into_inner()
            .volume
            .context("no volume")?;
        let block = matches!(
            capability.access_type,
            Some(pb::volume_capability::AccessType::Block(_))
        );
        let pods = self.root.join("pods").join(name);
        Ok(Volume {
            staging: self
                .root
                .join("plugins/kubernetes.io/csi/staging")
                .join(name),
            target: if block {
                pods.join("dev")
            } else {
                pods.join("mount")
            },
            id: volume.volume_id,
            capability,
            publish_context: HashMap::new(),
            volume_context: volume.volume_context,
        })
    }

    pub async fn attach(&mut self, volume: &mut Volume) -> anyhow::Result<()> {
        let request = pb::ControllerPublishVolumeRequest {
            volume_id: volume.id.clone(),
            node_id: self.node_id.clone(),
            volume_capability: Some(volume.capability.clone()),
            ..Default::default()
        };
        volume.publish_context = self
            .client
            .controller
            .controller_publish_volume(request)
            .await?
            .into_inner()
            .publish_context;
        Ok(())
    }

    pub async fn stage(&mut self, volume: &Volume) -> anyhow::Result<()> {
        let request = pb::NodeStageVolumeRequest {
            volume_id: volume.id.clone(),
            publish_context: volume.publish_context.clone(),
            staging_target_path: volume.staging.display().to_string(),
            volume_capability: Some(volume.capability.clone()),
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        };
        self.client.node.node_stage_volume(request).await?;
        Ok(())
    }

    pub async fn publish(&mut self, volume: &Volume, readonly: bool) -> anyhow::Result<()> {
        let request = pb::NodePublishVolumeRequest {
            volume_id: volume.id.clone(),
            publish_context: volume.publish_context.clone(),
            staging_target_path: volume.staging.display().to_string(),
            target_path: volume.target.display().to_string(),
            volume_capability: Some(volume.capability.clone()),
            readonly,
            volume_context: volume.volume_context.clone(),
            secrets: self.secrets.clone(),
        };
        self.client.node.node_publish_volume(request).await?;
        Ok(())
    }

    pub async fn unpublish(&mut self, volume: &Volume) -> anyhow::Result<()> {
        let request = pb::NodeUnpublishVolumeRequest {
            volume_id: volume.id.clone(),
            target_path: volume.target.display().to_string(),
        };
        self.client.node.node_unpublish_volume(request).await?;
        Ok(())
    }

    pub async fn unstage(&mut self, volume: &Volume) -> anyhow::Result<()> {
        let request = pb::NodeUnstageVolumeRequest {
            volume_id: volume.id.clone(),
            staging_target_path: volume.staging.display().to_string(),
        };
        self.client.node.node_unstage_volume(request).await?;
        Ok(())
    }

    pub async fn detach(&mut self, volume: &Volume) -> anyhow::Result<()> {
        let request = pb::ControllerUnpublishVolumeRequest {
            volume_id: volume.id.clone(),
            node_id: self.node_id.clone(),
            ..Default::default()
        };
        self.client
            .controller
            .controller_unpublish_volume(request)
            .await?;
        Ok(())
    }

    pub async fn delete(&mut self, volume: &Volume) -> anyhow::Result<()> {
        let request = pb::DeleteVolumeRequest {
            volume_id: volume.id.clone(),
            secrets: self.secrets.clone(),
        };
        self.client.controller.delete_volume(request).await?;
        Ok(())
    }

    /// Controller then node expansion, as the resizer and kubelet do. Returns the node's capacity.
    pub async fn expand(&mut self, volume: &Volume, gib: i64) -> anyhow::Result<i64> {
        let request = pb::ControllerExpandVolumeRequest {
            volume_id: volume.id.clone(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: gib * GIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(volume.capability.clone()),
            ..Default::default()
        };
        let response = self
            .client
            .controller
            .controller_expand_volume(request)
            .await?
            .into_inner();
        if !response.node_expansion_required {
            return Ok(response.capacity_bytes);
        }
        let request = pb::NodeExpandVolumeRequest {
            volume_id: volume.id.clone(),
            volume_path: volume.target.display().to_string(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: gib * GIB,
                limit_bytes: 0,
            }),
            staging_target_path: volume.staging.display().to_string(),
            volume_capability: Some(volume.capability.clone()),
            ..Default::default()
        };
        Ok(self
            .client
            .node
            .node_expand_volume(request)
            .await?
            .into_inner()
            .capacity_bytes)
    }

    /// Snapshot, waiting until it is ready to use.
    pub async fn snapshot(
        &mut self,
        volume: &Volume,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let request = pb::CreateSnapshotRequest {
            name: name.into(),
            source_volume_id: volume.id.clone(),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snapshot = self
                .client
                .controller
                .create_snapshot(request.clone())
                .await?
                .into_inner()
                .snapshot
                .context("no snapshot")?;
            if snapshot.ready_to_use {
                return Ok(snapshot.snapshot_id);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "snapshot {} not ready within {timeout:?}",
                    snapshot.snapshot_id
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn delete_snapshot(&mut self, id: &str) -> anyhow::Result<()> {
        self.client
            .controller
            .delete_snapshot(pb::DeleteSnapshotRequest {
                snapshot_id: id.into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    pub async fn stats(
        &mut self,
        volume: &Volume,
    ) -> anyhow::Result<pb::NodeGetVolumeStatsResponse> {
        let request = pb::NodeGetVolumeStatsRequest {
            volume_id: volume.id.clone(),
            volume_path: volume.target.display().to_string(),
            staging_target_path: volume.staging.display().to_string(),
        };
        Ok(self
            .client
            .node
            .node_get_volume_stats(request)
            .await?
            .into_inner())
    }

    /// Everything in reverse: unpublish, unstage, detach, delete.
    pub async fn tear_down(&mut self, volume: &Volume) -> anyhow::Result<()> {
        self.unpublish(volume).await?;
        self.unstage(volume).await?;
        self.detach(volume).await?;
        self.delete(volume).await
    }
}

/// Total bytes of the filesystem at `path`, as `df` reports it.
pub fn df_bytes(path: &Path) -> anyhow::Result<u64> {
    let stat =
        nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(stat.blocks() * stat.fragment_size())
}
