//! `csi-cos`: the CSI driver for Tencent Cloud COS buckets mounted over FUSE.
//!
//! The crate owns what is particular to this driver: PV attributes and `additional_args`
//! ([`params`]) and the node service ([`node`]), which asks the FUSE host (`cos-fuse host`, see
//! `fuse_host`) to run one `cos-fuse` daemon per volume per node, outside this process.

pub mod controller;
pub mod error;
pub mod node;
pub mod params;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use csi_common::cli::{CommonArgs, Mode, StartupError};
use csi_common::csi::{IdentityService, PluginCaps, serve, shutdown_signal};
use csi_common::mount::{LinuxMounter, MeteredMounter};
use fuse_host::HostClient;
use tonic::service::Routes;

use controller::{ControllerConfig, ControllerService};
use node::{CosPlanner, NodeConfig, NodeService};

/// The name Tencent's driver registers, so existing StorageClasses and PVs keep working.
pub const DRIVER_NAME: &str = "com.tencent.cloud.csi.cosfs";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The node flags every FUSE driver shares.
#[derive(Debug, Clone, clap::Args)]
pub struct FuseNodeArgs {
    /// The FUSE host's socket (`cos-fuse host --socket`): FUSE daemons run there, not in this
    /// process, so restarting this plugin never breaks a mount.
    #[arg(long, default_value = "/run/csi-fuse/host.sock")]
    pub fuse_host_socket: PathBuf,

    /// Where each volume is mounted once per node (the FUSE host must see the same path);
    /// default `/var/lib/kubelet/plugins/<driver name>/mounts`.
    #[arg(long)]
    pub mounts_dir: Option<PathBuf>,

    /// Whether a PV that names no nodePublishSecretRef is mounted with the node's own
    /// credentials (`allow`: the keys of `--credentials-dir` or the environment, else the CVM
    /// role, whose keys its FUSE daemon fetches and refreshes itself) or refused
    /// (`deny`, as Tencent's driver refused it). A PV that names a Secret never falls back to the
    /// node's credentials: an empty Secret is an error naming it (the node reads the PV through
    /// the Kubernetes API: `get persistentvolumes`).
    #[arg(long, value_enum, default_value_t = node::keys::NodeCredentials::Deny)]
    pub node_credentials: node::keys::NodeCredentials,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "csi-cos",
    version,
    about = "the CSI driver for Tencent Cloud COS buckets mounted over FUSE."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub fuse: FuseDriverArgs,
}

/// What this process serves: buckets have no topology and no attach; the controller provisions
/// prefix-per-PV volumes.
pub fn plugin_caps(mode: Mode) -> PluginCaps {
    PluginCaps {
        controller_service: mode.controller(),
        ..PluginCaps::default()
    }
}

/// What the FUSE drivers' processes share: the node's FUSE host and mounts directory, and the
/// controller's defaults. Flattened into csi-cos's and csi-goosefs's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FuseDriverArgs {
    #[command(flatten)]
    pub node: FuseNodeArgs,

    /// The endpoint of StorageClasses that name no `url` (e.g. https://cos.ap-guangzhou.myqcloud.com).
    #[arg(long, env = "COS_DEFAULT_URL")]
    pub default_url: Option<String>,

    /// The bucket of StorageClasses that name no `bucket`.
    #[arg(long, env = "COS_DEFAULT_BUCKET")]
    pub default_bucket: Option<String>,
}

/// One FUSE driver: its default name, its StorageClass parameters for the node, its planner.
#[derive(Debug)]
pub struct FuseDriver<P> {
    pub default_name: &'static str,
    pub node_parameters: &'static [&'static str],
    pub planner: P,
}

/// Runs a FUSE driver (csi-cos, csi-goosefs) until SIGTERM: identity, the prefix-per-PV
/// controller and the node service, as `--mode` says. The controller's requests without a secret
/// use the process's own credentials chain; the node's, the node's CAM role where
/// `--node-credentials=allow`.
pub async fn run_fuse_driver<P: node::Planner>(
    common: &CommonArgs,
    args: &FuseDriverArgs,
    driver: FuseDriver<P>,
) -> Result<(), StartupError> {
    common.validate()?;
    let metrics = common.start_metrics().await?;
    let shutdown = shutdown_signal();
    let driver_name = common.driver_name_or(driver.default_name);
    let own_keys = Arc::new(common.credential_source(&[])?);
    let identity = IdentityService::new(driver_name, VERSION, plugin_caps(common.mode));
    let mut routes = Routes::new(identity.into_server());
    if common.mode.controller() {
        let controller = ControllerService::new(ControllerConfig {
            region: common.region.clone().unwrap_or_default(),
            node_parameters: driver.node_parameters,
            default_url: args.default_url.clone(),
            default_bucket: args.default_bucket.clone(),
            fallback_keys: Some(Arc::clone(&own_keys)),
            unknown_parameters: common.unknown_parameters,
        });
        routes = routes.add_service(controller.into_server());
    }
    if common.mode.node() {
        let mounts_dir = args.node.mounts_dir.clone().unwrap_or_else(|| {
            PathBuf::from("/var/lib/kubelet/plugins")
                .join(driver_name)
                .join("mounts")
        });
        let publish_secrets: Option<Arc<dyn node::keys::PublishSecrets>> =
            match cluster::Cluster::connect(common.kubeconfig.as_deref()).await {
                Ok(cluster) => Some(Arc::new(cluster)),
                Err(e) => {
                    tracing::warn!(error = %e, "no Kubernetes API client: a volume published without keys cannot be told apart from one whose Secret is empty, and is refused unless --node-credentials=allow");
                    None
                }
            };
        let metadata_endpoint = Some(common.metadata_endpoint.clone())
            .filter(|e| e != tcloud::metadata::DEFAULT_METADATA_ENDPOINT);
        let node = NodeService::new(
            Arc::new(MeteredMounter::new(
                LinuxMounter::default(),
                Arc::clone(&metrics),
            )),
            driver.planner,
            NodeConfig {
                node_id: common.node_id.clone().unwrap_or_default(),
                mounts_dir,
                host: HostClient::new(&args.node.fuse_host_socket),
                node_credentials: args.node.node_credentials,
                node_keys: Some(own_keys),
                publish_secrets,
                metadata_endpoint,
                kubelet_dir: common.kubelet_dir.clone(),
            },
        );
        routes = routes.add_service(node.into_server());
    }
    serve(&common.endpoint, routes, shutdown, metrics).await?;
    Ok(())
}

pub async fn run(config: Config) -> Result<(), StartupError> {
    run_fuse_driver(
        &config.common,
        &config.fuse,
        FuseDriver {
            default_name: DRIVER_NAME,
            node_parameters: controller::COS_NODE_PARAMETERS,
            planner: CosPlanner,
        },
    )
    .await
}
