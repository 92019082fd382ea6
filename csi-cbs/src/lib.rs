//! `csi-cbs`: the CSI driver for Tencent Cloud CBS block disks.
//!
//! The crate owns what is particular to CBS: its StorageClass parameters ([`params`]), the
//! controller ([`controller`]) and node ([`node`]) services, device lookup by serial ([`device`]),
//! zones ([`topology`]). The gRPC transport and the mount layer live in `csi-common`, the cloud
//! protocol in `tcloud`.

pub mod attach_limit;
pub mod batcher;
pub mod cluster_zones;
pub mod controller;
pub mod device;
pub mod error;
pub mod multidisk;
pub mod node;
pub mod params;
pub mod topology;
pub mod volume_id;
pub mod watcher;

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
use device::DeviceRoots;
use node::{NodeConfig, NodeService};

/// The name Tencent's driver registers, so existing StorageClasses and PVs keep working.
pub const DRIVER_NAME: &str = "com.tencent.cloud.csi.cbs";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// CBS attaches 20 disks to a CVM by default, one of which is the system disk.
pub const DEFAULT_ATTACH_LIMIT: i64 = 20;

/// Where the old driver's manifests put API keys; tried before the common names.
pub const KEY_NAMES: &[KeyNames] = &[KeyNames {
    id: "TENCENTCLOUD_CBS_API_SECRET_ID",
    key: "TENCENTCLOUD_CBS_API_SECRET_KEY",
    token: None,
}];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "csi-cbs",
    version,
    about = "the CSI driver for Tencent Cloud CBS block disks."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Data disks this node can take (reported as max_volumes_per_node). Default: what the
    /// instance may hold (CBS DescribeInstancesDiskNum) less the data disks attached to it that
    /// are no volume; without API access, the CVM limit of 20 disks minus the system disk.
    #[arg(long)]
    pub max_volumes_per_node: Option<i64>,

    /// This node's zone (name or numeric ID); read from instance metadata when not given.
    #[arg(long, env = "NODE_ZONE")]
    pub node_zone: Option<String>,

    /// Where udev's by-id links live (only a hint: the device's serial decides).
    #[arg(long, default_value = "/dev/disk/by-id")]
    pub device_dir: PathBuf,

    /// The sysfs root holding block/<dev>/serial.
    #[arg(long, default_value = "/sys")]
    pub sysfs_root: PathBuf,

    /// Seconds NodeStageVolume waits for an attached disk's device to appear.
    #[arg(long, default_value_t = 30)]
    pub device_wait_secs: u64,

    /// Seconds after which an attach still in ATTACHING is reported as stuck, not waited on.
    #[arg(long, default_value_t = 120)]
    pub attach_timeout_secs: u64,
}

/// What this process serves: the controller claims topology and online expansion.
pub fn plugin_caps(mode: Mode) -> PluginCaps {
    PluginCaps {
        controller_service: mode.controller(),
        volume_accessibility_constraints: mode.controller(),
        online_expansion: mode.controller(),
        ..PluginCaps::default()
    }
}

/// How often the node asks the Kubernetes API for its Node before giving up, and the first wait.
const NODE_LOOKUP_ATTEMPTS: u32 = 6;
const NODE_LOOKUP_FIRST_WAIT: Duration = Duration::from_secs(1);

/// The node's CVM instance ID, which the controller attaches disks to: `--node-id` when it is one;
/// when it is a Kubernetes node name (Tencent's DaemonSet sets NODE_ID to `spec.nodeName`), the
/// instance its Node's providerID names; without it, instance metadata's.
async fn node_instance_id(common: &CommonArgs) -> Result<String, StartupError> {
    match common.node_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) if cluster::is_instance_id(id) => Ok(id.to_owned()),
        Some(node) => {
            let failed = |source: cluster::ClusterError| StartupError::NodeFromCluster {
                node: node.to_owned(),
                source: Box::new(source),
            };
            let api = cluster::Cluster::connect(common.kubeconfig.as_deref())
                .await
                .map_err(failed)?;
            let instance = api
                .node_instance_retried(node, NODE_LOOKUP_ATTEMPTS, NODE_LOOKUP_FIRST_WAIT)
                .await
                .map_err(failed)?;
            tracing::info!(
                node,
                node_id = instance.instance_id,
                "node ID read from the Node's providerID"
            );
            Ok(instance.instance_id)
        }
        None => {
            let id = common
                .metadata_client()?
                .instance_id()
                .await
                .map_err(StartupError::NodeIdFromMetadata)?;
            tracing::info!(node_id = id, "node ID read from instance metadata");
            Ok(id)
        }
    }
}

/// What this node's instance may take, from the cloud; the CVM default when the API cannot tell
/// (no keys on the node, no answer).
async fn instance_attach_limit(common: &CommonArgs) -> i64 {
    let default = DEFAULT_ATTACH_LIMIT - 1;
    let instance = common.node_id.clone().unwrap_or_default();
    let read = async {
        let cloud = common
            .cloud_client(KEY_NAMES)
            .await
            .map_err(|e| csi_common::csi::error_chain(&e))?;
        attach_limit::read_limit(&cloud, &instance)
            .await
            .map_err(|e| csi_common::csi::error_chain(&e))
    };
    match read.await {
        Ok(Some(limit)) => {
            tracing::info!(instance, limit, "attach limit read from the instance");
            limit
        }
        Ok(None) => {
            tracing::warn!(
                instance,
                default,
                "the cloud does not list this instance's disks; using the CVM default attach limit"
            );
            default
        }
        Err(e) => {
            tracing::info!(instance, default, error = %e, "cannot read the instance's attach limit; using the CVM default (pass --max-volumes-per-node to set it)");
            default
        }
    }
}

/// The Nodes' zones through the Kubernetes API, when the controller has access to it (in a
/// cluster, or with --kubeconfig); `None` elsewhere (the simulator, csi-sanity).
async fn cluster_zones(common: &CommonArgs) -> Option<Arc<cluster_zones::ClusterZones>> {
    match cluster::Cluster::connect(common.kubeconfig.as_deref()).await {
        Ok(api) => Some(Arc::new(cluster_zones::ClusterZones::new(Arc::new(api)))),
        Err(e) => {
            tracing::info!(error = %e, "no Kubernetes API: a volume with no zone goes to this controller's zone");
            None
        }
    }
}

pub async fn run(mut config: Config) -> Result<(), StartupError> {
    if config.common.mode.node() {
        config.common.node_id = Some(node_instance_id(&config.common).await?);
    }
    let common = &config.common;
    common.validate()?;
    let metrics = common.start_metrics().await?;
    let driver_name = common.driver_name_or(DRIVER_NAME).to_owned();
    let identity = IdentityService::new(&driver_name, VERSION, plugin_caps(common.mode));
    let mut routes = Routes::new(identity.into_server());
    // This instance's zone: the node's topology, and the controller's default for volumes whose
    // request names no zone (as csi-sanity's do).
    let zone = match &config.node_zone {
        Some(zone) => Some(zone.clone()),
        None => match common.metadata_client()?.zone().await {
            Ok(zone) => Some(zone),
            Err(e) => {
                tracing::warn!(error = %e, "this instance's zone is unknown: pass --node-zone");
                None
            }
        },
    };
    if common.mode.controller() {
        let cloud = common
            .cloud_client(KEY_NAMES)
            .await?
            .with_metrics(std::sync::Arc::clone(&metrics));
        tracing::info!(region = cloud.region(), "cloud client ready");
        let controller = ControllerService::new(
            Arc::new(cloud),
            ControllerConfig {
                driver_name: driver_name.clone(),
                attach_timeout: Duration::from_secs(config.attach_timeout_secs),
                default_zone: zone.clone(),
                node_zones: cluster_zones(common).await,
                unknown_parameters: common.unknown_parameters,
            },
        )
        .with_metrics(Arc::clone(&metrics));
        routes = routes.add_service(controller.into_server());
    }
    if common.mode.node() {
        let node = NodeService::new(
            Arc::new(MeteredMounter::new(
                LinuxMounter::default(),
                Arc::clone(&metrics),
            )),
            NodeConfig {
                node_id: common.node_id.clone().unwrap_or_default(),
                zone: zone.unwrap_or_default(),
                max_volumes_per_node: match config.max_volumes_per_node {
                    Some(limit) => limit,
                    None => instance_attach_limit(common).await,
                },
                devices: DeviceRoots {
                    by_id_dir: config.device_dir.clone(),
                    sysfs_root: config.sysfs_root.clone(),
                    dev_root: PathBuf::from("/dev"),
                },
                device_wait: Duration::from_secs(config.device_wait_secs),
                kubelet_dir: common.kubelet_dir.clone(),
            },
        );
        routes = routes.add_service(node.into_server());
    }
    serve(&common.endpoint, routes, shutdown_signal(), metrics).await?;
    Ok(())
}
