//! What the GooseFS benchmark measures and compares: its arguments, the datasets and mount kinds,
//! and the figures of a run, for the run (`bench/goosefs.rs`) and its report (`report.rs`).

use std::time::Duration;

use clap::Args;

use crate::bench::cpu::CpuSpent;
use crate::bench::{MIB, SharedBenchArgs};

/// The size of each small file.
pub(super) const SMALL_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone, Args)]
pub struct GoosefsBenchArgs {
    /// Size of the large file, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Number of 64 KiB files.
    #[arg(long, default_value_t = 1000)]
    pub files: usize,
    #[command(flatten)]
    pub shared: SharedBenchArgs,
}

/// The two datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dataset {
    Big,
    Small,
}

impl Dataset {
    pub(super) fn label(self, args: &GoosefsBenchArgs) -> String {
        match self {
            Dataset::Big => format!("1 file of {} MiB", args.size_mib),
            Dataset::Small => format!("{} files of 64 KiB", args.files),
        }
    }

    pub(super) fn bytes(self, args: &GoosefsBenchArgs) -> u64 {
        match self {
            Dataset::Big => args.size_mib * MIB,
            Dataset::Small => args.files as u64 * SMALL_SIZE as u64,
        }
    }
}

/// The mounts compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// cos-fuse with `--cache-dir`.
    Cached,
    /// cos-fuse without a cache.
    Plain,
    /// s3fs with `-o use_cache`.
    S3fs,
}

impl Kind {
    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Cached => "cos-fuse + block cache",
            Kind::Plain => "cos-fuse, no cache (csi-cos)",
            Kind::S3fs => "s3fs + use_cache",
        }
    }

    pub(super) fn tag(self) -> &'static str {
        match self {
            Kind::Cached => "cached",
            Kind::Plain => "plain",
            Kind::S3fs => "s3fs",
        }
    }
}

/// Cold and warm times of one mount kind over one dataset.
#[derive(Debug, Clone, Copy)]
pub(super) struct ColdWarm {
    pub(super) cold: Duration,
    /// What the cold read cost in CPU (the daemon's own as the process).
    pub(super) cold_cpu: Option<CpuSpent>,
    /// COS requests the mount made during the cold read.
    pub(super) cold_requests: u64,
    pub(super) warm: Duration,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct DatasetFigures {
    pub(super) cached: ColdWarm,
    pub(super) plain: ColdWarm,
    pub(super) s3fs: ColdWarm,
    pub(super) ceiling: Duration,
    /// Bytes the ceiling read from the cache disk.
    pub(super) ceiling_bytes: u64,
    /// Threads of the ceiling's best read.
    pub(super) ceiling_readers: usize,
}

impl DatasetFigures {
    pub(super) fn of(&self, kind: Kind) -> ColdWarm {
        match kind {
            Kind::Cached => self.cached,
            Kind::Plain => self.plain,
            Kind::S3fs => self.s3fs,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Preload {
    pub(super) took: Duration,
    pub(super) peak_kib: Option<u64>,
    pub(super) cached_bytes: u64,
}

pub(super) fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64().max(1e-9)
}

pub(super) fn show(bytes: u64, took: Duration) -> String {
    format!(
        "{:.1} MiB/s ({:.2} s)",
        rate(bytes, took),
        took.as_secs_f64()
    )
}
