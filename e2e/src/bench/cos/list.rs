//! `e2e bench cos --list`: `ls` of one large prefix through cos-fuse. Fills a prefix of the
//! bench's bucket with `--list-objects` empty objects through the S3 API (many concurrent
//! PutObject calls), mounts it with cos-fuse (default options but the memory budget, which it
//! names), walks the mount's root with `read_dir` counting entries, and prints the time, the
//! entries and the daemon's peak resident memory (VmHWM) beside the budget. Prints; never fails
//! on a figure.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::args::CosBenchArgs;
use super::contenders::mount_with_defaults;
use crate::bench::bucket::{Bench, Network, Profile};
use crate::bench::mount::Contender;
use crate::bench::{blocking, interruptible, load_average, peak_rss_kib};

/// The prefix listed.
const PREFIX: &str = "list";

/// Every entry of `dir` (not recursing), as `ls -f` reads them.
fn count_entries(dir: &Path) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        entry?;
        n += 1;
    }
    Ok((start.elapsed(), n))
}

async fn list_run(bench: &Bench, args: &CosBenchArgs) -> anyhow::Result<()> {
    bench
        .set_profile(&Profile {
            name: "loopback",
            network: Network::Loopback,
            latency_ms: 0,
            bandwidth_mbps: 0.0,
        })
        .await?;
    let seeding = Instant::now();
    bench
        .put_many(&format!("{PREFIX}/"), args.list_objects)
        .await?;
    println!(
        "  seeded {} objects under {PREFIX}/ in {:.0} s (PutObject, 64 at a time)",
        args.list_objects,
        seeding.elapsed().as_secs_f64()
    );
    let point = bench.workdir.join("mnt-list");
    std::fs::create_dir_all(&point)?;
    let extra = [
        "-o".to_owned(),
        format!("max_memory_mb={}", args.list_budget_mib),
    ];
    let mut mount = mount_with_defaults(bench, Contender::CosFuse, PREFIX, &point, &extra).await?;
    let pid = mount.proc.pid();
    let rss_before = pid.and_then(peak_rss_kib);
    let dir = point.clone();
    let walked = blocking("ls of the mount", bench.step_timeout, move || {
        count_entries(&dir)
    })
    .await;
    let peak = pid.and_then(peak_rss_kib);
    let unmounted = mount.unmount().await;
    let (took, entries) = walked?;
    unmounted?;
    let mib = |kib: Option<u64>| {
        kib.map_or("unknown".to_owned(), |k| {
            format!("{:.1}", k as f64 / 1024.0)
        })
    };
    println!(
        "  ls: {entries} entries in {:.1} s ({:.0} entries/s); peak RSS {} MiB (after mounting: {} MiB), budget {} MiB",
        took.as_secs_f64(),
        entries as f64 / took.as_secs_f64().max(1e-9),
        mib(peak),
        mib(rss_before),
        args.list_budget_mib
    );
    if entries != args.list_objects {
        bail!("ls counted {entries} entries, not {}", args.list_objects);
    }
    Ok(())
}

pub(super) async fn run_list(args: &CosBenchArgs) -> anyhow::Result<()> {
    if args.list_objects == 0 {
        bail!("--list-objects must be at least 1");
    }
    let mut bench = Bench::start(&args.shared).await?;
    println!(
        "e2e bench cos --list: ls of {} objects through cos-fuse {} (default options, -o max_memory_mb={}), loopback; load average {}",
        args.list_objects,
        bench.cos_fuse.display(),
        args.list_budget_mib,
        load_average()
    );
    let result = interruptible(list_run(&bench, args)).await;
    let stopped = bench.stop().await;
    result?;
    stopped
}
