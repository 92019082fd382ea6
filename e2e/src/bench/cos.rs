//! `e2e bench cos`: cos-fuse against s3fs (the program Tencent's cosfs is built from) on one
//! simulator bucket, in the same run, on plain loopback and under a network profile modelling an
//! in-region COS. Prints, per mount: sequential write and read of one large file, parallel readers
//! of it, listing a large directory, creating many small files, and peak resident memory; beside
//! each figure the ceiling (the same server under the same profile driven directly with our
//! object client) and the targets, each marked met or NOT met. Not a test: nothing here
//! fails on a number. It owns its simulator, mounts and work directory and removes them all at
//! the end, also on error, panic or Ctrl-C; it must not touch anything else.
//!
//! Run it against release binaries (it mounts the binaries beside its own executable):
//! `cargo build --release --workspace --bins && target/release/e2e bench cos`.
//!
//! With `--list` it runs only the listing benchmark (`list`): `ls` of one large prefix
//! (1,000,000 objects by default) through cos-fuse, with its time and the daemon's peak memory
//! beside its memory budget.
//!
//! This root only runs the profiles in turn and prints the run's heading and summary; the work
//! is in its modules, none of which uses this root: `args` (the flags), `ceiling` (the raw
//! client's best, and how reads are tried), `contenders` (mounting each file system and timing
//! the workloads through it), `workloads` (the file work itself), `report` (the table and the
//! targets) and `list` (the `--list` run).

mod args;
mod ceiling;
mod contenders;
mod list;
mod report;
mod workloads;

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;

pub use args::CosBenchArgs;

use crate::bench::bucket::{Bench, Network, Profile};
use crate::bench::mount::Contender;
use crate::bench::{interruptible, load_average};
use ceiling::{RAW_READ_SHAPES, RAW_WRITE_SHAPES, READ_TRIES, ceilings, shapes};
use contenders::measure;
use report::{Target, report};
use workloads::Pattern;

async fn run_profiles(bench: &Bench, args: &CosBenchArgs) -> anyhow::Result<()> {
    let profiles = [
        Profile {
            name: "loopback",
            network: Network::Loopback,
            latency_ms: 0,
            bandwidth_mbps: 0.0,
        },
        Profile {
            name: "cos",
            network: Network::Cos,
            latency_ms: args.shared.latency_ms,
            bandwidth_mbps: args.shared.bandwidth_mbps,
        },
    ];
    let pattern = Arc::new(Pattern::new());
    let mut targets = Vec::new();
    for profile in &profiles {
        let started = Instant::now();
        bench.set_profile(profile).await?;
        let ceil = ceilings(bench, args, profile).await?;
        let cos = measure(bench, args, profile, Contender::CosFuse, &pattern).await?;
        let s3fs = measure(bench, args, profile, Contender::S3fs, &pattern).await?;
        targets.extend(report(args, profile, &cos, &s3fs, &ceil));
        println!(
            "  ({} profile took {:.0} s; load average at its end: {})",
            profile.name,
            started.elapsed().as_secs_f64(),
            load_average()
        );
    }
    let missed: Vec<&Target> = targets.iter().filter(|t| !t.met).collect();
    println!(
        "\ntargets met: {} of {}",
        targets.len() - missed.len(),
        targets.len()
    );
    for target in missed {
        println!("  NOT met: {}", target.text);
    }
    Ok(())
}

pub async fn run_cos(args: CosBenchArgs) -> anyhow::Result<()> {
    if args.list {
        return list::run_list(&args).await;
    }
    if args.size_mib == 0 || args.objects == 0 || args.files == 0 || args.readers == 0 {
        bail!("--size-mib, --objects, --files and --readers must be at least 1");
    }
    let mut bench = Bench::start(&args.shared).await?;
    let s3fs_version = bench.s3fs_version().await?;
    println!(
        "e2e bench cos: {} MiB file, {} listed objects, {} small files; cos-fuse {} (default options) vs {}; load average {}",
        args.size_mib,
        args.objects,
        args.files,
        bench.cos_fuse.display(),
        s3fs_version,
        load_average()
    );
    println!(
        "ceilings: our object client on the same server and profile (parts {} in flight, ranged GETs {}, the better shape of each; ListObjectsV2 pages of 1000 in sequence; one PutObject per small file in sequence); reads: the best of {READ_TRIES} tries, for the ceiling and each contender alike; {}",
        shapes(&RAW_WRITE_SHAPES),
        shapes(&RAW_READ_SHAPES),
        bench.cache_note
    );
    let result = interruptible(run_profiles(&bench, &args)).await;
    let stopped = bench.stop().await;
    result?;
    stopped
}
