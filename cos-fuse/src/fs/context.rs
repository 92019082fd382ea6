//! What reading and writing file content draws on: the store, the mount's config, the memory
//! budget, the upload slots and the staging pool. Shared (in an `Arc`) with the tasks that fetch
//! and upload; it holds no namespace state (the inode table and the handles are
//! `fs/state.rs`'s), so the content code never reaches into the namespace.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::staging::StagingPool;
use crate::budget::Budget;
use crate::config::FsConfig;
use crate::store::ObjectStore;

pub(crate) struct Context<S> {
    pub(crate) store: S,
    pub(crate) cfg: FsConfig,
    pub(crate) budget: Arc<Budget>,
    pub(crate) upload_slots: Arc<Semaphore>,
    pub(crate) staging: Arc<StagingPool>,
}

impl<S: ObjectStore> Context<S> {
    /// The context of a mount over `store` with `cfg` (already validated).
    pub(crate) fn new(store: S, cfg: FsConfig) -> Self {
        Context {
            budget: Budget::new(cfg.memory_budget),
            upload_slots: Arc::new(Semaphore::new(cfg.upload_concurrency)),
            staging: StagingPool::new(cfg.staging_dir.clone(), cfg.staging_max_bytes),
            store,
            cfg,
        }
    }
}
