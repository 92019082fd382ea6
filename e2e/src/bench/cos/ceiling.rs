//! The ceiling of `e2e bench cos`: what the server can do under a profile, driven directly with
//! our object client in the shapes a mount could use, keeping the best. Also how every read is
//! tried (the best of `READ_TRIES`), for the ceiling and each contender alike. It measures only
//! the raw client; it must not mount anything.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;

use super::args::CosBenchArgs;
use super::workloads::SMALL_FILE;
use crate::bench::MIB;
use crate::bench::bucket::{Bench, Profile};
use crate::bench::cpu::{Costed, CpuSpent, run_costed};
use crate::bench::raw::{RAW_IN_FLIGHT, RAW_PART, Shape};

/// The shapes (part or range size, how many in flight) each ceiling tries, keeping the best:
/// the raw client's own, and the most cos-fuse keeps in flight with default options (64 ranged
/// GETs of 1 MiB; 32 parts of 8 MiB), so a mount is never measured against a ceiling with less
/// parallelism than its own.
pub(super) const RAW_READ_SHAPES: [Shape; 2] = [(RAW_PART, RAW_IN_FLIGHT), (MIB, 64)];
pub(super) const RAW_WRITE_SHAPES: [Shape; 2] = [(RAW_PART, RAW_IN_FLIGHT), (RAW_PART, 32)];

/// Tries of each read workload (sequential, parallel readers), for the ceiling and for every
/// contender alike; the fastest counts.
pub(super) const READ_TRIES: usize = 2;

/// Anything with a duration that `best_of` can compare.
pub(super) trait Timed {
    fn took(&self) -> Duration;
}

impl Timed for Duration {
    fn took(&self) -> Duration {
        *self
    }
}

impl Timed for Costed {
    fn took(&self) -> Duration {
        self.took
    }
}

/// The fastest of `tries` runs of `step`.
pub(super) async fn best_of<T, F, Fut>(tries: usize, mut step: F) -> anyhow::Result<T>
where
    T: Timed,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut best: Option<T> = None;
    for _ in 0..tries.max(1) {
        let run = step().await?;
        if best.as_ref().is_none_or(|b| run.took() < b.took()) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no try ran"))
}

/// `16 x 8 MiB or 32 x 2 MiB`.
pub(super) fn shapes(shapes: &[Shape]) -> String {
    shapes
        .iter()
        .map(|(size, n)| format!("{n} x {} MiB", size / MIB))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The raw client's best under one profile.
#[derive(Debug, Clone, Default)]
pub(super) struct Ceilings {
    pub(super) write: Duration,
    pub(super) read: Duration,
    /// What the fastest read cost in CPU.
    pub(super) read_cpu: Option<CpuSpent>,
    pub(super) list: Duration,
    pub(super) creates: Duration,
}

/// The ceilings under `profile` (set on the server already), on data of the sizes in `args`;
/// removes what it wrote.
pub(super) async fn ceilings(
    bench: &Bench,
    args: &CosBenchArgs,
    profile: &Profile,
) -> anyhow::Result<Ceilings> {
    let prefix = format!("{}-raw/", profile.name);
    let blob = format!("{prefix}blob");
    let size = args.size_mib * MIB;
    // The best of every shape, two tries each: the ceiling is what the server can do.
    let mut write = Duration::MAX;
    for shape in RAW_WRITE_SHAPES {
        let took = best_of(2, || bench.raw_write_shaped(&blob, size, shape)).await?;
        write = write.min(took);
    }
    let mut read: Option<Costed> = None;
    for shape in RAW_READ_SHAPES {
        let run = best_of(READ_TRIES, || {
            run_costed(None, bench.raw_read_shaped(&blob, size, shape))
        })
        .await?;
        if read.is_none_or(|r| run.took < r.took) {
            read = Some(run);
        }
    }
    let read = read.ok_or_else(|| anyhow::anyhow!("no read shape"))?;
    let many = format!("{prefix}many/");
    bench.put_many(&many, args.objects).await?;
    let mut list = Duration::MAX;
    for _ in 0..2 {
        let (took, seen) = bench.raw_list(&many).await?;
        if seen != args.objects {
            bail!("listing {many} found {seen} entries, not {}", args.objects);
        }
        list = list.min(took);
    }
    // One PutObject per file, one after another, as the mounts create them.
    let small = Bytes::from(vec![0x5a_u8; SMALL_FILE]);
    let start = Instant::now();
    for i in 0..args.files {
        bench
            .client
            .put_object(&format!("{prefix}small/f-{i:05}"), small.clone())
            .await?;
    }
    let creates = start.elapsed();
    bench.client.delete_prefix(&prefix).await?;
    Ok(Ceilings {
        write,
        read: read.took,
        read_cpu: read.cpu,
        list,
        creates,
    })
}
