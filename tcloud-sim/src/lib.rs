//! `tcloud-sim`: a Tencent Cloud simulator for running the CSI drivers without a cloud account.
//!
//! It speaks the real wire protocols: TencentCloud API v3 with TC3-HMAC-SHA256 signatures checked
//! against its configured keys, the CVM instance-metadata service for one or more simulated
//! instances, and COS buckets over the S3 protocol (SigV4 with the same keys) on a second
//! listener. Its data plane is real local resources, and its state survives a restart. It shares no
//! code with the drivers, so it is an independent check of their client.

pub mod api;
pub mod args;
pub mod cbs;
pub mod cfs;
pub mod config;
pub mod cos;
pub mod cvm;
pub mod error;
pub mod faults;
pub mod keys;
pub mod metadata;
mod run;
pub mod service;
pub mod signature;
pub mod sim;
pub mod state;
pub mod stats;

pub use args::{Args, ZoneQuota};
pub use config::{InstanceSpec, SimConfig, ZoneSpec};
pub use run::run;
pub use sim::Sim;
