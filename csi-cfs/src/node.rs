//! The CFS node service: each file system is mounted once per node (per option set) under the
//! node's mounts directory at NodeStage, the volume's directory in it is bind-mounted at the
//! staging path, and pods get binds of that (read-only when asked). The node-wide mount's
//! reference count is read from the mount table, never stored: when NodeUnstage leaves no bind of
//! it under the kubelet directory, it is unmounted (see [`mounts`]). A broken mount (ESTALE after
//! a server blip, ENOTCONN, EIO) is unmounted and made again by the next stage or publish; one
//! whose server does not answer is reported, and holds up only its own file system's volumes.

mod config;
mod mounts;

pub use config::NodeConfig;

use std::collections::HashMap;
use std::sync::Arc;

use csi_common::csi::reply::{filesystem_stats, node_caps};
use csi_common::csi::request::{NodePaths, read_only, volume_path};
use csi_common::csi::{InFlight, InFlightGuard, pb};
use csi_common::mount::Mounter;
use csi_common::mount::ops::{healthy_mount, prepare_mount_point, remove_target};
use tonic::{Request, Response, Status};

use crate::controller::check_capabilities;
use crate::error::{Error, Result, required};
use crate::nfs::NfsSource;
use mounts::{NodeMounts, collect_unused, stage, within};

#[derive(Debug)]
pub struct NodeService<M> {
    mounter: Arc<M>,
    config: NodeConfig,
    paths: NodePaths,
    inflight: InFlight,
    mounts: Arc<NodeMounts>,
}

fn mount_flags(capability: &pb::VolumeCapability) -> Vec<String> {
    match &capability.access_type {
        Some(pb::volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    }
}

impl<M: Mounter + 'static> NodeService<M> {
    pub fn new(mounter: Arc<M>, config: NodeConfig) -> Self {
        NodeService {
            mounter,
            paths: config.paths(),
            config,
            inflight: InFlight::new(),
            mounts: Arc::default(),
        }
    }

    pub fn into_server(self) -> pb::node_server::NodeServer<Self> {
        pb::node_server::NodeServer::new(self)
    }

    /// Runs `f` on the blocking pool. The volume's in-flight `guard` stays held until `f` ends,
    /// even when the handler is dropped first (its caller's deadline passed), so a retry
    /// meanwhile is ABORTED instead of racing it. No node-wide lock: node-wide mounts are
    /// guarded per file system ([`mounts`]).
    async fn blocking<T: Send + 'static>(
        &self,
        guard: &InFlightGuard,
        f: impl FnOnce(&NodeMounts, &M, &NodeConfig) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (mounts, mounter, config) = (
            Arc::clone(&self.mounts),
            Arc::clone(&self.mounter),
            self.config.clone(),
        );
        guard
            .run_blocking(move || f(&mounts, &mounter, &config))
            .await
    }
}

/// The volume context with lower-cased keys: Tencent's nodes lower-cased attribute keys, so a PV
/// may say `Host` or `FSID`. Two spellings of one key with different values are refused (which
/// one the old node used was up to chance).
fn lowered(context: &HashMap<String, String>) -> Result<HashMap<String, String>> {
    let mut out: HashMap<String, String> = HashMap::with_capacity(context.len());
    for (key, value) in context {
        let lower = key.to_ascii_lowercase();
        if let Some(other) = out.get(&lower)
            && other.trim() != value.trim()
        {
            return Err(Error::InvalidArgument(format!(
                "volume attribute {key:?} is given twice (keys are case-insensitive) with two values"
            )));
        }
        out.insert(lower, value.clone());
    }
    Ok(out)
}

fn source_of(
    flavor: crate::params::Flavor,
    context: &HashMap<String, String>,
) -> Result<NfsSource> {
    let context = lowered(context)?;
    match flavor {
        crate::params::Flavor::Cfs => NfsSource::from_context(&context),
        crate::params::Flavor::Turbo => crate::turbo::source_from_context(&context),
    }
    .map_err(Error::InvalidArgument)
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
        let staging = self
            .paths
            .target(&req.staging_target_path, "staging_target_path")?;
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capabilities(std::slice::from_ref(&capability))?;
        let source = source_of(self.config.flavor, &req.volume_context)?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        let flags = mount_flags(&capability);
        self.blocking(&guard, move |mounts, m, config| {
            stage(mounts, m, config, &source, &staging, &flags)
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
        let guard = self.inflight.acquire(&req.volume_id)?;
        self.blocking(&guard, move |mounts, m, config| {
            config.nfs.unmount_all(m, &staging)?;
            collect_unused(mounts, m, config)
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
        let flags = mount_flags(&capability);
        let source = source_of(self.config.flavor, &req.volume_context)?;
        let volume_id = req.volume_id.clone();
        let guard = self.inflight.acquire(&req.volume_id)?;
        self.blocking(&guard, move |mounts, m, config| {
            // A staging mount gone stale (ESTALE) is unmounted by the health check: stage again.
            let staged = match healthy_mount(m, &staging)? {
                Some(info) => info,
                None => {
                    stage(mounts, m, config, &source, &staging, &flags)?;
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
        let target = self.paths.target(&req.target_path, "target_path")?;
        let guard = self.inflight.acquire(&req.volume_id)?;
        self.blocking(&guard, move |_, m, config| {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::nfs::NfsMounter;
    use crate::params::Flavor;

    fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The attributes of every CFS PV in Tencent's examples and the TKE documentation, and the
    /// exact `mount` argument vector each becomes (no mount flags, read-write).
    #[test]
    fn tencents_cfs_pvs_mount_as_the_old_node_mounted_them() {
        /// (what, attributes, `mount` arguments)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let table: &[Case] = &[
            (
                "deploy/cfs/examples/static-allinone.yaml",
                &[("host", "10.0.0.116"), ("path", "/")],
                &[
                    "-t",
                    "nfs",
                    "-o",
                    "vers=4,hard,timeo=600,retrans=2",
                    "10.0.0.116:/",
                    "/t",
                ],
            ),
            (
                // What the old controller returned for deploy/cfs/examples/dynamic-provison-allinone.yaml:
                // the StorageClass's parameters plus host and fsid, and no vers: NFSv3.
                "a PV of the old controller",
                &[
                    ("vpcid", "vpc-xxxxxxxx"),
                    ("subnetid", "subnet-xxxxxxxx"),
                    ("resourcetags", "a:b,c:d"),
                    ("host", "10.0.0.116"),
                    ("fsid", "fsid1234"),
                ],
                &[
                    "-t",
                    "nfs",
                    "-o",
                    "vers=3,noresvport,nolock,proto=tcp,hard,timeo=600,retrans=2",
                    "10.0.0.116:/fsid1234",
                    "/t",
                ],
            ),
            (
                "TKE static PV (002:35115)",
                &[
                    ("fsid", "XXXXXX"),
                    ("host", "192.168.1.2"),
                    ("path", "/"),
                    ("vers", "3"),
                ],
                &[
                    "-t",
                    "nfs",
                    "-o",
                    "vers=3,noresvport,nolock,proto=tcp,hard,timeo=600,retrans=2",
                    "192.168.1.2:/XXXXXX",
                    "/t",
                ],
            ),
            (
                "TKE static PV with vers 4 and an fsid",
                &[
                    ("fsid", "XXXXXX"),
                    ("host", "192.168.1.2"),
                    ("path", "/data"),
                    ("vers", "4"),
                ],
                &[
                    "-t",
                    "nfs",
                    "-o",
                    "vers=4,noresvport,hard,timeo=600,retrans=2",
                    "192.168.1.2:/data",
                    "/t",
                ],
            ),
            (
                "keys in any case, a subdirectory and options",
                &[
                    ("Host", "10.0.0.9"),
                    ("FSID", "ab12"),
                    ("Path", "/sub/"),
                    ("Options", "rsize=1048576,wsize=1048576"),
                ],
                &[
                    "-t",
                    "nfs",
                    "-o",
                    "vers=3,noresvport,nolock,proto=tcp,hard,timeo=600,retrans=2,rsize=1048576,wsize=1048576",
                    "10.0.0.9:/ab12/sub",
                    "/t",
                ],
            ),
        ];
        for (name, attributes, args) in table {
            let source = source_of(Flavor::Cfs, &context(attributes))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                NfsMounter::kernel_args(&source, Path::new("/t"), &[], false),
                *args,
                "{name}"
            );
        }
    }

    #[test]
    fn two_spellings_of_one_attribute_must_agree() {
        let same = context(&[("host", "h"), ("HOST", "h")]);
        assert!(source_of(Flavor::Cfs, &same).is_ok());
        let two = context(&[("host", "h1"), ("Host", "h2")]);
        let err = source_of(Flavor::Cfs, &two).unwrap_err().to_string();
        assert!(err.contains("case-insensitive"), "{err}");
        let turbo = context(&[("HOST", "10.0.0.1"), ("FsId", "f1"), ("Proto", "nfs")]);
        assert_eq!(
            source_of(Flavor::Turbo, &turbo).unwrap().device(),
            "10.0.0.1:/f1/cfs"
        );
    }
}
