//! `csi-cfs`: the CSI driver for Tencent Cloud CFS NFS file systems: a whole file system per
//! volume, or a subdirectory per volume on a shared file system (`subdir-share: "true"`). With
//! `--flavor turbo` it is the CFS Turbo driver (`com.tencent.cloud.csi.cfsturbo`): static PVs and
//! a subdirectory per volume on a Turbo file system the StorageClass names ([`turbo`]).
//!
//! The crate owns what is particular to CFS: parameters and volume IDs ([`params`], [`turbo`]),
//! NFS and Lustre sources and mounting ([`nfs`]), the controllers ([`controller`],
//! [`turbo_controller`]) and the node service ([`node`]) both flavors share, the roots a
//! controller mounts ([`roots`]), and subdirectory volumes with their owner records
//! ([`subdirs`], [`owners`]).

pub mod controller;
pub mod error;
pub mod nfs;
pub mod node;
pub mod owners;
pub mod params;
pub mod roots;
pub mod subdirs;
pub mod turbo;
pub mod turbo_controller;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use csi_common::cli::{CommonArgs, Mode, StartupError};
use csi_common::csi::{IdentityService, PluginCaps, serve, shutdown_signal};
use csi_common::mount::{LinuxMounter, MeteredMounter};
use tcloud::credentials::KeyNames;
use tonic::service::Routes;

use controller::{ControllerConfig, ControllerService};
use nfs::NfsMounter;
use node::{NodeConfig, NodeService};
pub use params::Flavor;

/// The name Tencent's driver registers; TKE's shared-instance StorageClasses each had their own,
/// `com.tencent.cloud.csi.tcfs.<name>`: pass that with --driver-name.
pub const DRIVER_NAME: &str = "com.tencent.cloud.csi.cfs";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the old driver's manifests put API keys; tried before the common names.
pub const KEY_NAMES: &[KeyNames] = &[KeyNames {
    id: "TENCENTCLOUD_CFS_API_SECRET_ID",
    key: "TENCENTCLOUD_CFS_API_SECRET_KEY",
    token: None,
}];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "csi-cfs",
    version,
    about = "the CSI driver for Tencent Cloud CFS NFS file systems."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// CFS, or CFS Turbo (whose driver name is then com.tencent.cloud.csi.cfsturbo).
    #[arg(long, env = "CSI_CFS_FLAVOR", value_enum, default_value_t = Flavor::Cfs)]
    pub flavor: Flavor,

    /// Where the node mounts each file system once, for all its volumes.
    #[arg(long, default_value = "/var/lib/csi-cfs/mounts")]
    pub mounts_dir: PathBuf,

    /// Where the controller mounts shared instances to manage their subdirectories.
    #[arg(long, default_value = "/var/lib/csi-cfs/controller")]
    pub controller_dir: PathBuf,

    /// The program that mounts (run with an argument vector, killed at the timeout).
    #[arg(long, default_value = "mount")]
    pub mount_program: String,

    /// The program that unmounts (killed at the timeout; a hung one is retried lazily, `-l`).
    #[arg(long, default_value = "umount")]
    pub umount_program: String,

    /// Seconds a mount or unmount may take before it is killed and the call fails.
    #[arg(long, default_value_t = 60)]
    pub mount_timeout_secs: u64,

    /// Test seam for machines without an NFS client: resolve NFS sources through a tcloud-sim
    /// export table (<state-dir>/cfs/exports) and bind-mount them instead of `mount -t nfs`.
    #[arg(long)]
    pub sim_nfs_exports: Option<PathBuf>,

    /// The VPC of new file systems whose StorageClass names none (else `vpcid` is required).
    #[arg(long, env = "CFS_DEFAULT_VPC_ID")]
    pub default_vpc_id: Option<String>,

    /// The subnet of new file systems whose StorageClass names none (else `subnetid` is required).
    #[arg(long, env = "CFS_DEFAULT_SUBNET_ID")]
    pub default_subnet_id: Option<String>,

    /// This instance's zone, the default zone of new file systems; else instance metadata.
    #[arg(long, env = "NODE_ZONE")]
    pub node_zone: Option<String>,
}

/// What this process serves. NFS volumes have no topology and no attach.
pub fn plugin_caps(mode: Mode) -> PluginCaps {
    PluginCaps {
        controller_service: mode.controller(),
        ..PluginCaps::default()
    }
}

pub async fn run(config: Config) -> Result<(), StartupError> {
    let common = &config.common;
    common.validate()?;
    let metrics = common.start_metrics().await?;
    let shutdown = shutdown_signal();
    let driver_name = common
        .driver_name_or(match config.flavor {
            Flavor::Cfs => DRIVER_NAME,
            Flavor::Turbo => turbo::DRIVER_NAME,
        })
        .to_owned();
    let identity = IdentityService::new(&driver_name, VERSION, plugin_caps(common.mode));
    let mut routes = Routes::new(identity.into_server());
    let programs = nfs::Programs {
        mount: config.mount_program.clone(),
        umount: config.umount_program.clone(),
        timeout: Duration::from_secs(config.mount_timeout_secs),
    };
    let nfs = match &config.sim_nfs_exports {
        Some(exports) => {
            tracing::warn!(exports = %exports.display(), "NFS sources resolve through the simulator's export table (test seam)");
            NfsMounter::SimExports {
                exports: exports.clone(),
                programs,
            }
        }
        None => NfsMounter::Kernel { programs },
    };
    let mounter = Arc::new(MeteredMounter::new(
        LinuxMounter::default(),
        Arc::clone(&metrics),
    ));
    let nfs_for_shutdown = nfs.clone();
    if common.mode.controller() && config.flavor == Flavor::Turbo {
        let controller = turbo_controller::TurboController::new(
            Arc::clone(&mounter),
            roots::Roots::new(config.controller_dir.clone(), nfs.clone()),
        )
        .with_unknown_parameters(common.unknown_parameters);
        routes = routes.add_service(controller.into_server());
    } else if common.mode.controller() {
        let cloud = common
            .cloud_client(KEY_NAMES)
            .await?
            .with_metrics(std::sync::Arc::clone(&metrics));
        let default_zone = match &config.node_zone {
            Some(zone) => Some(zone.clone()),
            None => common.metadata_client()?.zone().await.ok(),
        };
        tracing::info!(region = cloud.region(), "cloud client ready");
        let controller = ControllerService::new(
            Arc::new(cloud),
            Arc::clone(&mounter),
            ControllerConfig {
                driver_name: driver_name.clone(),
                work_dir: config.controller_dir.clone(),
                nfs: nfs.clone(),
                default_zone,
                defaults: params::Defaults {
                    vpc_id: config.default_vpc_id.clone(),
                    subnet_id: config.default_subnet_id.clone(),
                    unknown_parameters: common.unknown_parameters,
                },
            },
        )
        .with_metrics(Arc::clone(&metrics));
        routes = routes.add_service(controller.into_server());
    }
    if common.mode.node() {
        let node = NodeService::new(
            Arc::clone(&mounter),
            NodeConfig {
                node_id: common.node_id.clone().unwrap_or_default(),
                mounts_dir: config.mounts_dir.clone(),
                nfs,
                kubelet_dir: common.kubelet_dir.clone(),
                flavor: config.flavor,
            },
        );
        routes = routes.add_service(node.into_server());
    }
    let served = serve(&common.endpoint, routes, shutdown, metrics).await;
    if common.mode.controller() {
        controller::unmount_work_dir(mounter.as_ref(), &nfs_for_shutdown, &config.controller_dir);
    }
    served?;
    Ok(())
}
