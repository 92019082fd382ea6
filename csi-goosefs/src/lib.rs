//! `csi-goosefs`: the CSI driver for cache-accelerated dataset mounts.
//!
//! It shares csi-cos's services: the node service runs one FUSE daemon per dataset per node
//! through the FUSE host, and the controller provisions a prefix per PV. What is particular to
//! GooseFS is which daemon runs and how ([`params`], [`node`]): `cos-fuse` over the node's
//! persistent block cache (cache mode), or the GooseFS FUSE client (cluster mode).

pub mod node;
pub mod params;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use csi_common::cli::{CommonArgs, Mode, StartupError};
use csi_common::csi::{IdentityService, PluginCaps, serve, shutdown_signal};
use csi_common::mount::{LinuxMounter, MeteredMounter};
use csi_cos::FuseNodeArgs;
use csi_cos::controller::{ControllerConfig, ControllerService};
use tonic::service::Routes;

use node::GooseFsPlanner;

/// The name Tencent's driver registers, so existing StorageClasses and PVs keep working.
pub const DRIVER_NAME: &str = "com.tencent.cloud.csi.goosefs";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "csi-goosefs",
    version,
    about = "the CSI driver for cache-accelerated dataset mounts."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub fuse: FuseNodeArgs,

    /// The node's block cache, shared by every dataset mounted here; it survives restarts.
    #[arg(long, default_value = "/var/cache/csi-goosefs")]
    pub cache_dir: PathBuf,

    /// The most the cache holds on disk (20GiB, 500MiB, or bytes).
    #[arg(long, default_value = "20GiB", value_parser = params::parse_size)]
    pub cache_capacity: u64,
}

/// What this process serves: datasets have no topology and no attach; the controller provisions
/// prefix-per-PV volumes.
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
    let driver_name = common.driver_name_or(DRIVER_NAME);
    let identity = IdentityService::new(driver_name, VERSION, plugin_caps(common.mode));
    let mut routes = Routes::new(identity.into_server());
    if common.mode.controller() {
        let controller = ControllerService::new(ControllerConfig {
            region: common.region.clone().unwrap_or_default(),
            node_parameters: params::NODE_PARAMETERS,
        });
        routes = routes.add_service(controller.into_server());
    }
    if common.mode.node() {
        let node = csi_cos::node::NodeService::new(
            Arc::new(MeteredMounter::new(
                LinuxMounter::default(),
                Arc::clone(&metrics),
            )),
            GooseFsPlanner {
                cache_dir: config.cache_dir.clone(),
                cache_capacity: config.cache_capacity,
            },
            config.fuse.node_config(common, driver_name),
        );
        routes = routes.add_service(node.into_server());
    }
    serve(&common.endpoint, routes, shutdown, metrics).await?;
    Ok(())
}
