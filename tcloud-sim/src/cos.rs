//! COS (object storage) over the S3 protocol, on its own listener: what `s3fs`, boto3 and the
//! project's object client talk to. s3s parses requests, verifies SigV4 signatures and writes
//! responses; this module supplies the keys (the same ones the cloud API accepts), the fault
//! rules, the network profile, the counters and the storage: buckets named by `--cos-bucket`,
//! kept under `<state>/cos/<bucket>/`, so objects survive a restart.
//!
//! Owns the `cos/` directory of the state directory and nothing else of it; holds no CBS or CFS
//! state.

mod auth;
pub mod control;
mod file_body;
mod files;
mod listing;
mod model;
mod multipart;
mod net;
mod s3;
mod stats;
mod store;
mod upload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use s3s::service::S3ServiceBuilder;

use crate::faults::Faults;
use crate::keys::Keys;

pub use model::{CosError, MIN_PART_SIZE};
pub use net::{NetworkProfile, parse_bandwidth};
pub use stats::{CosStats, NO_OPERATION, OpStats};
pub use store::CosStore;

/// The bucket served when no `--cos-bucket` is given.
pub const DEFAULT_BUCKET: &str = "sim-1250000000";

/// Parses a `--cos-bucket` value: an S3-valid bucket name, like COS's `<name>-<appid>`.
pub fn parse_bucket_name(s: &str) -> Result<String, String> {
    if s3s::path::check_bucket_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "bucket {s:?} is not a valid name: 3 to 63 lowercase letters, digits, '-' and '.', \
e.g. sim-1250000000"
        ))
    }
}

/// COS settings from the command line.
#[derive(Debug, Clone)]
pub struct CosConfig {
    /// Where buckets live (`<state>/cos`).
    pub root: PathBuf,
    pub buckets: Vec<String>,
    pub region: String,
    /// The account reported as owner of buckets and objects.
    pub owner_id: String,
    pub profile: NetworkProfile,
}

/// The COS endpoint.
#[derive(Debug)]
pub struct Cos {
    store: Arc<CosStore>,
    profile: Arc<Mutex<NetworkProfile>>,
    stats: Arc<CosStats>,
    edge: Arc<net::Edge>,
}

impl Cos {
    /// Opens the buckets (creating what is missing) and builds the S3 service.
    pub fn open(config: CosConfig, keys: Arc<Keys>, faults: Arc<Faults>) -> Result<Cos, CosError> {
        config
            .profile
            .validate()
            .map_err(CosError::InvalidArgument)?;
        let store = Arc::new(CosStore::open(&config.root, &config.buckets)?);
        let mut builder = S3ServiceBuilder::new(s3::CosS3 {
            store: Arc::clone(&store),
            region: config.region.clone(),
            owner_id: config.owner_id.clone(),
        });
        builder.set_auth(auth::CosAuth {
            keys: Arc::clone(&keys),
        });
        builder.set_access(auth::CosAccess { keys, faults });
        builder.set_host(auth::CosHost {
            buckets: config.buckets.clone(),
        });
        let profile = Arc::new(Mutex::new(config.profile));
        let stats = Arc::new(CosStats::default());
        let edge = Arc::new(net::Edge {
            service: builder.build(),
            profile: Arc::clone(&profile),
            stats: Arc::clone(&stats),
        });
        Ok(Cos {
            store,
            profile,
            stats,
            edge,
        })
    }

    /// The COS listener's routes: every path is an S3 request.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(net::handle)
            .with_state(Arc::clone(&self.edge))
    }

    pub fn store(&self) -> &CosStore {
        &self.store
    }

    pub fn stats(&self) -> &CosStats {
        &self.stats
    }

    pub fn profile(&self) -> NetworkProfile {
        *self.profile.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the network profile; requests already under way keep theirs.
    pub fn set_profile(&self, profile: NetworkProfile) -> Result<(), String> {
        profile.validate()?;
        *self.profile.lock().unwrap_or_else(|p| p.into_inner()) = profile;
        Ok(())
    }
}
