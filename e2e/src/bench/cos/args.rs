//! The flags of `e2e bench cos`: the size of each workload, and the flags it shares with
//! `e2e bench goosefs`. Only the flags; nothing here runs.

use clap::Args;

use crate::bench::SharedBenchArgs;

#[derive(Debug, Clone, Args)]
pub struct CosBenchArgs {
    /// Size of the file written, then read, through each mount, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Objects in the listed directory (created through the S3 API, not the mount).
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// 4 KiB files created one after another through each mount.
    #[arg(long, default_value_t = 1000)]
    pub files: usize,
    /// Parallel readers of the file, each reading its own contiguous share.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Only the listing benchmark: fill one prefix with `--list-objects` objects, mount it with
    /// cos-fuse and time a whole `ls`, with the daemon's peak memory beside its budget.
    #[arg(long)]
    pub list: bool,
    /// Objects in the prefix `--list` lists.
    #[arg(long, default_value_t = 1_000_000)]
    pub list_objects: usize,
    /// cos-fuse's memory budget (`-o max_memory_mb`) in the `--list` run.
    #[arg(long, default_value_t = 128)]
    pub list_budget_mib: u64,
    #[command(flatten)]
    pub shared: SharedBenchArgs,
}
