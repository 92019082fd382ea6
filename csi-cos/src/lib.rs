//! `csi-cos`: the CSI driver for Tencent Cloud COS buckets mounted over FUSE.
//!
//! The crate owns what is particular to this driver (its parameters, its services); the gRPC
//! transport, the cloud protocol and the mount layer live in `csi-common`.

use clap::Parser;
use csi_common::cli::{CommonArgs, Mode, StartupError};
use csi_common::csi::{IdentityService, PluginCaps, serve, shutdown_signal};
use tonic::service::Routes;

/// The name Tencent's driver registers, so existing StorageClasses and PVs keep working.
pub const DRIVER_NAME: &str = "com.tencent.cloud.csi.cosfs";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "csi-cos",
    version,
    about = "the CSI driver for Tencent Cloud COS buckets mounted over FUSE."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// What this process really serves. Only the identity service exists so far: the controller and
/// node services arrive with this driver's own issue, and the capabilities grow with them.
pub fn plugin_caps(_mode: Mode) -> PluginCaps {
    PluginCaps::default()
}

pub async fn run(config: Config) -> Result<(), StartupError> {
    let common = &config.common;
    common.validate()?;
    let metrics = common.start_metrics().await?;
    let identity = IdentityService::new(
        common.driver_name_or(DRIVER_NAME),
        VERSION,
        plugin_caps(common.mode),
    );
    serve(
        &common.endpoint,
        Routes::new(identity.into_server()),
        shutdown_signal(),
        metrics,
    )
    .await?;
    Ok(())
}
