//! The `--small` run of `e2e bench cos`: what small files cost through cos-fuse under the COS
//! profile. Creates `--files` 4 KiB files one after another in a new directory, then, through a
//! fresh mount (empty caches), reads `--read-files` 64 KiB files uploaded through S3 with
//! [`READERS`] threads. Prints for each: files/s, round trips per file (the time each file took
//! a thread, in units of the first-byte latency) and the S3 requests per file by operation (the
//! simulator's counters, reset after each mount was ready), beside the targets. Nothing
//! fails on a figure; it owns its prefix of the bench's bucket and removes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;

use super::args::CosBenchArgs;
use super::contenders::mount_with_defaults;
use super::report::Target;
use super::workloads::{create_in, read_files};
use crate::bench::bucket::{Bench, Network, Profile};
use crate::bench::mount::Contender;
use crate::bench::{blocking, drop_page_cache, for_each_index, interruptible, load_average};

/// The bucket prefix the mounts' roots are.
const PREFIX: &str = "small-bench";
const READ_SIZE: usize = 64 * 1024;
/// Threads reading the 64 KiB files, like a data loader's workers.
const READERS: usize = 8;
const FILL: u8 = 0x5a;
const PUT_WORKERS: usize = 64;
/// Creates per second wanted at 20 ms (one PutObject each allows about 45).
const CREATES_PER_SECOND: f64 = 40.0;
/// Round trips per cold read of a small file wanted (one GetObject each is 1).
const READ_ROUND_TRIPS: f64 = 1.2;

/// One timed workload and the S3 calls it made.
#[derive(Debug)]
struct Measured {
    took: Duration,
    files: usize,
    threads: usize,
    calls: BTreeMap<String, u64>,
}

impl Measured {
    fn files_per_second(&self) -> f64 {
        self.files as f64 / self.took.as_secs_f64().max(1e-9)
    }

    /// How many first-byte latencies each file took its thread.
    fn round_trips(&self, latency_ms: u64) -> Option<f64> {
        (latency_ms > 0).then(|| {
            self.took.as_secs_f64() * self.threads as f64
                / self.files.max(1) as f64
                / (latency_ms as f64 / 1000.0)
        })
    }

    /// Requests per file, in all and by operation.
    fn requests(&self) -> String {
        let per = |n: u64| n as f64 / self.files.max(1) as f64;
        let each: Vec<String> = self
            .calls
            .iter()
            .map(|(op, n)| format!("{op} {:.2}", per(*n)))
            .collect();
        format!(
            "{:.2} ({})",
            per(self.calls.values().sum()),
            each.join(", ")
        )
    }
}

pub(super) async fn run_small(args: &CosBenchArgs) -> anyhow::Result<()> {
    if args.files == 0 || args.read_files == 0 {
        bail!("--files and --read-files must be at least 1");
    }
    let mut bench = Bench::start(&args.shared).await?;
    let result = interruptible(small(&bench, args)).await;
    let stopped = bench.stop().await;
    result?;
    stopped
}

async fn small(bench: &Bench, args: &CosBenchArgs) -> anyhow::Result<()> {
    let profile = Profile {
        name: "cos",
        network: Network::Cos,
        latency_ms: args.shared.latency_ms,
        bandwidth_mbps: args.shared.bandwidth_mbps,
    };
    bench.set_profile(&profile).await?;
    println!(
        "e2e bench cos --small: cos-fuse {} (default options); load average {}",
        bench.cos_fuse.display(),
        load_average()
    );
    let creates = creates(bench, args.files).await?;
    let reads = cold_reads(bench, args.read_files).await?;
    bench.client.delete_prefix(&format!("{PREFIX}/")).await?;

    println!("\n== {} ==", profile.describe());
    let rows = [
        (
            format!("create {} x 4 KiB files, one at a time", args.files),
            &creates,
        ),
        (
            format!(
                "cold read {} x 64 KiB files, {READERS} threads",
                args.read_files
            ),
            &reads,
        ),
    ];
    for (label, m) in rows {
        println!(
            "  {label:<44} {:>8.1} files/s  round trips/file {:>5}  S3 requests/file {}",
            m.files_per_second(),
            m.round_trips(profile.latency_ms)
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            m.requests()
        );
    }
    let read_trips = reads.round_trips(profile.latency_ms).unwrap_or(f64::MAX);
    let targets = [
        Target {
            text: format!(
                "create: at least {CREATES_PER_SECOND} files/s (is {:.1})",
                creates.files_per_second()
            ),
            met: creates.files_per_second() >= CREATES_PER_SECOND,
        },
        Target {
            text: format!(
                "cold read: at most {READ_ROUND_TRIPS} round trips per file (is {read_trips:.2})"
            ),
            met: read_trips <= READ_ROUND_TRIPS,
        },
    ];
    println!("  targets (at 20 ms):");
    for t in &targets {
        println!(
            "    {:<8} {}",
            if t.met { "met" } else { "NOT met" },
            t.text
        );
    }
    Ok(())
}

/// Creates `files` files in a new directory of a new mount; checks they all landed.
async fn creates(bench: &Bench, files: usize) -> anyhow::Result<Measured> {
    let point = bench.workdir.join("mnt-small-create");
    std::fs::create_dir_all(&point)?;
    let mut mount = mount_with_defaults(bench, Contender::CosFuse, PREFIX, &point, &[]).await?;
    let dir = point.join("created");
    std::fs::create_dir(&dir)?;
    bench.reset_sim_stats().await?;
    let took = blocking("small creates", bench.step_timeout, move || {
        create_in(&dir, files)
    })
    .await?;
    let calls = bench.sim_cos_calls().await?;
    mount.unmount().await?;
    let (_, landed) = bench.raw_list(&format!("{PREFIX}/created/")).await?;
    if landed != files {
        bail!("{landed} of {files} created files reached the bucket");
    }
    Ok(Measured {
        took,
        files,
        threads: 1,
        calls,
    })
}

/// Uploads `files` 64 KiB files through S3, then reads them all through a fresh mount.
async fn cold_reads(bench: &Bench, files: usize) -> anyhow::Result<Measured> {
    let client = bench.client.clone();
    let body = Bytes::from(vec![FILL; READ_SIZE]);
    let key = |i: u64| format!("{PREFIX}/read/f-{i:05}");
    for_each_index(files as u64, PUT_WORKERS, move |i| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            client.put_object(&key(i), body).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    // The server reads from memory, as a real COS would; the client's page cache is empty.
    let _ = drop_page_cache();
    let client = bench.client.clone();
    for_each_index(files as u64, PUT_WORKERS, move |i| {
        let client = client.clone();
        async move {
            client
                .get_object_range(&key(i), 0..READ_SIZE as u64, None)
                .await?;
            anyhow::Ok(())
        }
    })
    .await?;
    let point = bench.workdir.join("mnt-small-read");
    std::fs::create_dir_all(&point)?;
    let mut mount = mount_with_defaults(bench, Contender::CosFuse, PREFIX, &point, &[]).await?;
    bench.reset_sim_stats().await?;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| point.join("read").join(format!("f-{i:05}")))
        .collect();
    let took = blocking("cold small reads", bench.step_timeout, move || {
        read_files(&paths, READERS, READ_SIZE, FILL)
    })
    .await?;
    let calls = bench.sim_cos_calls().await?;
    mount.unmount().await?;
    Ok(Measured {
        took,
        files,
        threads: READERS,
        calls,
    })
}
