//! The running simulator ([`Sim`]), shared by every request handler: built once from the command
//! line, it owns the configuration, the keys, the persistent state, the fault rules, the API
//! counters and the services. It serves nothing itself: the listeners and their routes are
//! `run`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::args::Args;
use crate::config::SimConfig;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::keys::Keys;
use crate::service::Services;
use crate::state::Store;
use crate::stats::Stats;
use crate::{cbs, cfs, cos, cvm};

/// The running simulator, shared by every request handler.
#[derive(Debug)]
pub struct Sim {
    pub config: SimConfig,
    pub keys: Arc<Keys>,
    pub store: Arc<Store>,
    pub services: Services,
    pub faults: Arc<Faults>,
    pub stats: Stats,
    pub cbs: Arc<cbs::Cbs>,
    pub cfs: Arc<cfs::Cfs>,
    pub cos: Arc<cos::Cos>,
}

impl Sim {
    pub fn new(args: &Args) -> anyhow::Result<Arc<Sim>> {
        for instance in &args.instances {
            anyhow::ensure!(
                args.zones.iter().any(|z| z.name == instance.zone),
                "instance {} is in zone {}, which is not among the --zone values",
                instance.id,
                instance.zone
            );
        }
        let config = SimConfig {
            region: args.region.clone(),
            zones: args.zones.clone(),
            instances: args.instances.clone(),
            cam_role: args.cam_role.clone(),
            role_key_ttl_secs: args.role_key_ttl_secs,
            max_clock_skew_secs: args.max_clock_skew_secs,
            latency: Duration::from_millis(args.latency_ms),
        };
        let mut quotas = BTreeMap::new();
        for quota in &args.cbs_quotas {
            anyhow::ensure!(
                args.zones.iter().any(|z| z.name == quota.zone),
                "--cbs-quota names zone {}, which is not among the --zone values",
                quota.zone
            );
            quotas.insert(quota.zone.clone(), quota.max);
        }
        let cbs_config = cbs::CbsConfig {
            quotas,
            max_attach: args.cbs_max_attach,
            attach_latency: Duration::from_millis(args.cbs_attach_ms),
            detach_latency: Duration::from_millis(args.cbs_detach_ms),
            resize_latency: Duration::from_millis(args.cbs_resize_ms),
            snapshot_latency: Duration::from_millis(args.cbs_snapshot_ms),
            auto_snapshot_policies: args.cbs_auto_snapshot_policies.clone(),
        };
        let store = Arc::new(Store::open(&args.state_dir)?);
        let keys = Arc::new(Keys::read_file(&args.keys_file, Arc::clone(&store))?);
        let faults = Arc::new(Faults::new(args.faults.clone()));
        let layout = cbs::Layout::new(&args.state_dir).with_context(|| {
            format!(
                "cannot create the CBS directories in {}",
                args.state_dir.display()
            )
        })?;
        let cbs = Arc::new(cbs::Cbs::new(
            config.clone(),
            cbs_config,
            Arc::clone(&store),
            Arc::clone(&faults),
            Arc::new(cbs::LoopDevices),
            layout,
        ));
        let cfs_layout = cfs::Layout::new(&args.state_dir).with_context(|| {
            format!(
                "cannot create the CFS directories in {}",
                args.state_dir.display()
            )
        })?;
        let cfs_config = cfs::CfsConfig {
            pgroups: args.cfs_pgroups.clone(),
            create_latency: Duration::from_millis(args.cfs_create_ms),
            max_file_systems: args.cfs_max_file_systems,
            describe_not_found_error: args.cfs_describe_not_found_error,
            app_id: cfs::SIM_APP_ID,
        };
        let cfs = Arc::new(cfs::Cfs::new(
            config.clone(),
            cfs_config,
            Arc::clone(&store),
            Arc::clone(&faults),
            cfs_layout,
        ));
        let cos_config = cos::CosConfig {
            root: args.state_dir.join("cos"),
            buckets: args.cos_buckets.clone(),
            region: args.region.clone(),
            owner_id: cfs::SIM_APP_ID.to_string(),
            profile: cos::NetworkProfile {
                latency_ms: args.cos_latency_ms,
                bandwidth_mbps: args.cos_bandwidth_mbps,
            },
        };
        let cos = Arc::new(
            cos::Cos::open(cos_config, Arc::clone(&keys), Arc::clone(&faults))
                .context("cannot open the COS buckets")?,
        );
        let mut services = Services::default();
        services.add(Arc::new(cvm::Cvm::new(config.clone())));
        services.add(cbs.clone());
        services.add(cfs.clone());
        Ok(Arc::new(Sim {
            keys,
            store,
            services,
            faults,
            stats: Stats::default(),
            config,
            cbs,
            cfs,
            cos,
        }))
    }

    /// The secret key for `secret_id`: a configured key, or a role's temporary key with its token.
    pub fn secret_key_for(&self, secret_id: &str, token: Option<&str>) -> Result<String, ApiError> {
        self.keys
            .secret_key_for(secret_id, token)
            .map_err(|refusal| refusal.to_api_error())
    }
}
