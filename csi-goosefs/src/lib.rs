//! `csi-goosefs`: the CSI driver for cache-accelerated dataset mounts.
//!
//! It shares csi-cos's services: the node service runs one FUSE daemon per dataset per node
//! through the FUSE host, and the controller provisions a prefix per PV. What is particular to
//! GooseFS is which daemon runs and how ([`params`], [`node`]): `cos-fuse` over the node's
//! persistent block cache (cache mode), or the GooseFS FUSE client (cluster mode).

pub mod node;
pub mod params;

use std::path::PathBuf;

use clap::Parser;
use csi_common::cli::{CommonArgs, StartupError};
use csi_cos::{FuseDriver, FuseDriverArgs, run_fuse_driver};

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
    pub fuse: FuseDriverArgs,

    /// The node's block cache, shared by every dataset mounted here; it survives restarts.
    #[arg(long, default_value = "/var/cache/csi-goosefs")]
    pub cache_dir: PathBuf,

    /// The most the cache holds on disk (20GiB, 500MiB, or bytes).
    #[arg(long, default_value = "20GiB", value_parser = params::parse_size)]
    pub cache_capacity: u64,
}

pub async fn run(config: Config) -> Result<(), StartupError> {
    run_fuse_driver(
        &config.common,
        &config.fuse,
        FuseDriver {
            default_name: DRIVER_NAME,
            node_parameters: params::NODE_PARAMETERS,
            planner: GooseFsPlanner {
                cache_dir: config.cache_dir.clone(),
                cache_capacity: config.cache_capacity,
            },
        },
    )
    .await
}
