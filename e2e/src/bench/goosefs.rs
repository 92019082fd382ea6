//! `e2e bench goosefs`: what the node's block cache (csi-goosefs) buys, under the simulator's
//! COS network profile. Reads one large file and many small files, cold and then warm, through
//! (a) cos-fuse with the block cache, (b) cos-fuse without a cache (what csi-cos mounts) and
//! (c) s3fs with its local cache (`-o use_cache`), beside (d) the ceiling: the same bytes read
//! straight from the cache disk. Also records the cos-fuse daemon's peak memory while it warms
//! the large file with `--preload`. Prints every figure beside the targets, each marked met or
//! NOT met. Not a test: nothing fails on a number. Everything it starts or mounts is stopped and
//! removed at the end, also on error, panic or Ctrl-C. It shares the simulator bucket, the raw
//! client and the mounts with `e2e bench cos`, but nothing of that benchmark itself.
//!
//! Run it against release binaries:
//! `cargo build --release -p e2e -p cos-fuse-cli -p tcloud-sim && target/release/e2e bench goosefs`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;

use crate::bench::bucket::{BUCKET, Bench, Network, Profile};
use crate::bench::cpu::{Costed, run_costed};
use crate::bench::mount::{Contender, Mount};
use crate::bench::{
    MIB, READY_TIMEOUT, blocking, drop_page_cache, for_each_index, interruptible, is_mount_point,
    load_average, peak_rss_kib,
};
use crate::process::Proc;

mod figures;
mod report;
pub use figures::GoosefsBenchArgs;
use figures::{ColdWarm, Dataset, DatasetFigures, Kind, Preload, SMALL_SIZE};
use report::report;

/// The bucket prefix every dataset lives under (the mounts' root).
const ROOT: &str = "goosefs-bench";
const BIG_DIR: &str = "big";
const BIG_FILE: &str = "big/data.bin";
const SMALL_DIR: &str = "small";
/// Threads reading the small files (each reads whole files, one after another), like a data
/// loader's workers.
const SMALL_READERS: usize = 8;
const FILL: u8 = 0x5a;
/// Rounds of warm reads of each dataset (every contender and the ceiling once a round), the
/// fastest of each counting: the VM's disk is so noisy that one warm read of the same cache
/// varied 2x between runs. (Cold can't be repeated: it needs a fresh mount and cache.)
const WARM_READS: usize = 3;
const PUT_WORKERS: usize = 64;

/// Whether `buf` holds `FILL` only. Compared a page at a time with `==` (memcmp, vectorised): a
/// byte loop with an early exit is not vectorised, and on two cores its CPU would come out of
/// every contender's read rate.
fn all_fill(buf: &[u8]) -> bool {
    const PAGE: [u8; 4096] = [FILL; 4096];
    buf.chunks(PAGE.len())
        .all(|c| PAGE.get(..c.len()) == Some(c))
}

/// Reads the large file in 1 MiB reads and checks every byte.
fn read_big(path: &Path, size: u64) -> anyhow::Result<Duration> {
    let mut block = vec![0; MIB as usize];
    let start = Instant::now();
    let mut file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut total = 0u64;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        if !all_fill(&block[..n]) {
            bail!("{} holds other bytes near offset {total}", path.display());
        }
        total += n as u64;
    }
    let took = start.elapsed();
    if total != size {
        bail!("read {total} bytes of {}, not {size}", path.display());
    }
    Ok(took)
}

/// Reads whole files, `readers` threads each taking every `readers`-th file; returns the time and
/// the bytes read. With `expect` set, every file must be that long and hold `FILL` only.
fn read_files(
    files: &[PathBuf],
    readers: usize,
    expect: Option<usize>,
) -> anyhow::Result<(Duration, u64)> {
    let readers = readers.max(1);
    let start = Instant::now();
    let total = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                scope.spawn(move || {
                    let mut total = 0u64;
                    let mut buf = Vec::new();
                    for path in files.iter().skip(r).step_by(readers) {
                        buf.clear();
                        std::fs::File::open(path)
                            .and_then(|mut f| f.read_to_end(&mut buf))
                            .with_context(|| format!("read {}", path.display()))?;
                        if let Some(len) = expect
                            && (buf.len() != len || !all_fill(&buf))
                        {
                            bail!("{} holds other bytes ({} long)", path.display(), buf.len());
                        }
                        total += buf.len() as u64;
                    }
                    anyhow::Ok(total)
                })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle
                .join()
                .map_err(|_| anyhow!("a reader thread panicked"))??;
        }
        anyhow::Ok(total)
    })?;
    Ok((start.elapsed(), total))
}

/// Every regular file under `dir`, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn small_paths(root: &Path, files: usize) -> Vec<PathBuf> {
    (0..files)
        .map(|i| root.join(SMALL_DIR).join(format!("f-{i:05}")))
        .collect()
}

/// Sum of the sizes of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

struct Run<'a> {
    bench: &'a Bench,
    args: &'a GoosefsBenchArgs,
    timeout: Duration,
    counter: std::cell::Cell<u32>,
}

impl Run<'_> {
    /// Uploads both datasets (untimed).
    async fn upload(&self) -> anyhow::Result<()> {
        self.bench
            .raw_write(&format!("{ROOT}/{BIG_FILE}"), self.args.size_mib * MIB)
            .await?;
        let client = self.bench.client.clone();
        let body = Bytes::from(vec![FILL; SMALL_SIZE]);
        for_each_index(self.args.files as u64, PUT_WORKERS, move |i| {
            let (client, body) = (client.clone(), body.clone());
            async move {
                client
                    .put_object(&format!("{ROOT}/{SMALL_DIR}/f-{i:05}"), body)
                    .await?;
                anyhow::Ok(())
            }
        })
        .await
        .map(drop)
    }

    /// Empties the page cache, then reads the dataset once through S3 (untimed) so the server
    /// has it in memory, as a real COS would.
    async fn prepare(&self, dataset: Dataset) -> anyhow::Result<()> {
        let _ = drop_page_cache();
        match dataset {
            Dataset::Big => self
                .bench
                .raw_read(&format!("{ROOT}/{BIG_FILE}"), self.args.size_mib * MIB)
                .await
                .map(drop),
            Dataset::Small => {
                let client = self.bench.client.clone();
                for_each_index(self.args.files as u64, PUT_WORKERS, move |i| {
                    let client = client.clone();
                    async move {
                        client
                            .get_object_range(
                                &format!("{ROOT}/{SMALL_DIR}/f-{i:05}"),
                                0..SMALL_SIZE as u64,
                                None,
                            )
                            .await?;
                        anyhow::Ok(())
                    }
                })
                .await
                .map(drop)
            }
        }
    }

    /// One timed read of `dataset` through the mount at `point`, with the COS requests the
    /// mount made meanwhile.
    async fn read(
        &self,
        dataset: Dataset,
        point: &Path,
        what: &str,
        pid: Option<u32>,
    ) -> anyhow::Result<(Costed, u64)> {
        self.prepare(dataset).await?;
        let before = self.bench.cos_requests().await?;
        let run = run_costed(pid, self.read_only(dataset, point, what)).await?;
        let requests = self.bench.cos_requests().await?.saturating_sub(before);
        Ok((run, requests))
    }

    async fn read_only(
        &self,
        dataset: Dataset,
        point: &Path,
        what: &str,
    ) -> anyhow::Result<Duration> {
        let (size, files) = (self.args.size_mib * MIB, self.args.files);
        let point = point.to_owned();
        match dataset {
            Dataset::Big => {
                blocking(what, self.timeout, move || {
                    read_big(&point.join(BIG_FILE), size)
                })
                .await
            }
            Dataset::Small => {
                let (took, _) = blocking(what, self.timeout, move || {
                    read_files(&small_paths(&point, files), SMALL_READERS, Some(SMALL_SIZE))
                })
                .await?;
                Ok(took)
            }
        }
    }

    fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let dir = self.bench.workdir.join(format!("{name}-{n}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Mounts `ROOT` with `kind` (and its cache in `cache`), waits for the mount.
    async fn mount(
        &self,
        kind: Kind,
        cache: Option<&Path>,
        preload: Option<&str>,
    ) -> anyhow::Result<Mount> {
        let point = self.fresh_dir(&format!("mnt-{}", kind.tag()))?;
        let bench = self.bench;
        let log = bench.workdir.join(format!(
            "logs/{}.log",
            point
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("mount")
        ));
        let passwd = bench.passwd.display().to_string();
        let (who, program, mut args) = match kind {
            Kind::Cached | Kind::Plain => (
                Contender::CosFuse,
                bench.cos_fuse.clone(),
                vec![
                    "mount".to_owned(),
                    "--endpoint".to_owned(),
                    bench.cos_url.clone(),
                    "--bucket".to_owned(),
                    BUCKET.to_owned(),
                    "--prefix".to_owned(),
                    ROOT.to_owned(),
                    "--credentials-file".to_owned(),
                    passwd,
                    "--log-level".to_owned(),
                    "info".to_owned(),
                ],
            ),
            Kind::S3fs => {
                let tmp = bench.workdir.join("s3fs-tmp");
                std::fs::create_dir_all(&tmp)?;
                let cache = cache.ok_or_else(|| anyhow!("s3fs needs a cache directory"))?;
                (
                    Contender::S3fs,
                    bench.s3fs.clone(),
                    vec![
                        format!("{BUCKET}:/{ROOT}"),
                        "-f".to_owned(),
                        "-o".to_owned(),
                        format!(
                            "url={},use_path_request_style,sigv4,passwd_file={passwd},tmpdir={},use_cache={}",
                            bench.cos_url,
                            tmp.display(),
                            cache.display()
                        ),
                    ],
                )
            }
        };
        if kind == Kind::Cached {
            let cache = cache.ok_or_else(|| anyhow!("the block cache needs a directory"))?;
            // Room for both datasets and then some: nothing is evicted.
            let capacity =
                2 * (self.args.size_mib * MIB + self.args.files as u64 * MIB) + 1024 * MIB;
            args.extend([
                "--cache-dir".to_owned(),
                cache.display().to_string(),
                "--cache-capacity".to_owned(),
                capacity.to_string(),
            ]);
            if let Some(prefix) = preload {
                args.extend(["--preload".to_owned(), prefix.to_owned()]);
            }
        }
        // s3fs takes the mount point second; cos-fuse last. Both accept it last after options.
        match kind {
            Kind::S3fs => args.insert(1, point.display().to_string()),
            Kind::Cached | Kind::Plain => args.push(point.display().to_string()),
        }
        let proc = Proc::spawn(who.name(), &program, &args, &log)?;
        let mut mount = Mount {
            who,
            point: point.clone(),
            proc,
            mounted: true,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !is_mount_point(&point) {
            if let Some(status) = mount.proc.try_status() {
                bail!(
                    "{} exited with {status} before mounting; its log:\n{}",
                    kind.label(),
                    mount.proc.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not mount within {READY_TIMEOUT:?}; its log:\n{}",
                    kind.label(),
                    mount.proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(mount)
    }

    /// Through a fresh mount (with a fresh cache) of each contender in turn, a cold read and a
    /// warm one right after it; then `WARM_READS - 1` more rounds of warm reads taking every
    /// mount in turn. Each round also reads the ceiling. A slow spell of the VM's disk so falls
    /// on every contender alike; the fastest warm read of each counts.
    async fn dataset(&self, dataset: Dataset) -> anyhow::Result<DatasetFigures> {
        const KINDS: [Kind; 3] = [Kind::Cached, Kind::Plain, Kind::S3fs];
        let started = Instant::now();
        let what = |kind: Kind, w: &str| format!("{} ({:?}): {w} read", kind.label(), dataset);
        let mut mounts: Vec<Mount> = Vec::with_capacity(KINDS.len());
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        let mut blocks = Vec::new();
        for kind in KINDS {
            let cache = self.fresh_dir(&format!("cache-{}", kind.tag()))?;
            let mount = self.mount(kind, Some(&cache), None).await?;
            let (point, pid) = (mount.point.clone(), mount.proc.pid());
            mounts.push(mount);
            cold.push(self.read(dataset, &point, &what(kind, "cold"), pid).await?);
            warm.push(
                self.read(dataset, &point, &what(kind, "warm"), None)
                    .await?
                    .0
                    .took,
            );
            if kind == Kind::Cached {
                blocks = files_under(&cache.join("blocks"))?;
            }
        }
        // The ceiling: the block cache's files read straight from disk, by one thread and by
        // `SMALL_READERS` (a mount may read the disk in parallel even for one reader).
        let mut ceiling: Option<(Duration, u64, usize)> = None;
        for round in 0..WARM_READS {
            if round > 0 {
                for ((kind, mount), best) in KINDS.iter().zip(&mounts).zip(warm.iter_mut()) {
                    let took = self
                        .read(dataset, &mount.point, &what(*kind, "warm"), None)
                        .await?
                        .0
                        .took;
                    *best = (*best).min(took);
                }
            }
            for readers in [1, SMALL_READERS] {
                let _ = drop_page_cache();
                let blocks = blocks.clone();
                let (took, bytes) = blocking("reading the cache disk", self.timeout, move || {
                    read_files(&blocks, readers, None)
                })
                .await?;
                if ceiling.is_none_or(|(t, _, _)| took < t) {
                    ceiling = Some((took, bytes, readers));
                }
            }
        }
        for mount in &mut mounts {
            mount.unmount().await?;
        }
        let (ceiling, ceiling_bytes, ceiling_readers) =
            ceiling.ok_or_else(|| anyhow!("no ceiling read"))?;
        eprintln!(
            "e2e bench goosefs: {} measured in {:.0} s",
            dataset.label(self.args),
            started.elapsed().as_secs_f64()
        );
        let figures = |k: usize| ColdWarm {
            cold: cold[k].0.took,
            cold_cpu: cold[k].0.cpu,
            cold_requests: cold[k].1,
            warm: warm[k],
        };
        Ok(DatasetFigures {
            cached: figures(0),
            plain: figures(1),
            s3fs: figures(2),
            ceiling,
            ceiling_bytes,
            ceiling_readers,
        })
    }

    /// Mounts with `--preload big/` into an empty cache and waits for the warm-up to finish;
    /// returns its time and the daemon's VmHWM at the end.
    async fn preload(&self) -> anyhow::Result<Preload> {
        let _ = drop_page_cache();
        let cache = self.fresh_dir("cache-preload")?;
        let size = self.args.size_mib * MIB;
        let start = Instant::now();
        let mut mount = self
            .mount(Kind::Cached, Some(&cache), Some(&format!("{BIG_DIR}/")))
            .await?;
        let pid = mount
            .proc
            .pid()
            .ok_or_else(|| anyhow!("cos-fuse has no pid"))?;
        let mut peak = peak_rss_kib(pid);
        let deadline = Instant::now() + self.timeout;
        let finished = loop {
            peak = peak_rss_kib(pid).or(peak);
            let log = std::fs::read_to_string(&mount.proc.log).unwrap_or_default();
            if log.contains("cache warm-up finished") {
                break true;
            }
            if log.contains("cache warm-up stopped") {
                break false;
            }
            if let Some(status) = mount.proc.try_status() {
                bail!(
                    "cos-fuse exited with {status} while warming; its log:\n{}",
                    mount.proc.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!("the warm-up did not finish within {:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let took = start.elapsed();
        peak = peak_rss_kib(pid).or(peak);
        let cached_bytes = bytes_under(&cache.join("blocks"));
        mount.unmount().await?;
        if !finished {
            bail!(
                "the warm-up stopped early; the log:\n{}",
                mount.proc.log_tail()
            );
        }
        if cached_bytes < size {
            bail!("the warm-up left {cached_bytes} bytes in the cache, not {size}");
        }
        Ok(Preload {
            took,
            peak_kib: peak,
            cached_bytes,
        })
    }
}

async fn measure(bench: &Bench, args: &GoosefsBenchArgs) -> anyhow::Result<()> {
    let profile = Profile {
        name: "cos",
        network: Network::Cos,
        latency_ms: args.shared.latency_ms,
        bandwidth_mbps: args.shared.bandwidth_mbps,
    };
    let run = Run {
        bench,
        args,
        timeout: bench.step_timeout,
        counter: std::cell::Cell::new(0),
    };
    // Upload on loopback, then measure under the COS profile.
    bench
        .set_profile(&Profile {
            name: "loopback",
            network: Network::Loopback,
            latency_ms: 0,
            bandwidth_mbps: 0.0,
        })
        .await?;
    run.upload().await?;
    bench.set_profile(&profile).await?;
    println!("profile {}", profile.describe());
    let mut figures = Vec::new();
    for dataset in [Dataset::Big, Dataset::Small] {
        figures.push((dataset, run.dataset(dataset).await?));
    }
    let preload = run.preload().await?;
    report(args, &figures, &preload);
    println!("load average at the end: {}", load_average());
    Ok(())
}

pub async fn run_goosefs(args: GoosefsBenchArgs) -> anyhow::Result<()> {
    if args.size_mib == 0 || args.files == 0 {
        bail!("--size-mib and --files must be at least 1");
    }
    let mut bench = Bench::start(&args.shared).await?;
    let s3fs_version = bench.s3fs_version().await?;
    println!(
        "e2e bench goosefs: {} MiB file read in 1 MiB reads by 1 thread; {} x 64 KiB files read whole by {SMALL_READERS} threads; cos-fuse {} vs {}; load average {}",
        args.size_mib,
        args.files,
        bench.cos_fuse.display(),
        s3fs_version,
        load_average()
    );
    println!(
        "cold = fresh mount and empty cache; warm = the best of {WARM_READS} reads through the same mount, the first right after cold, the others in rounds taking each contender and the ceiling in turn; {}",
        bench.cache_note
    );
    let result = interruptible(measure(&bench, &args)).await;
    let stopped = bench.stop().await;
    result?;
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_fill_finds_one_other_byte_anywhere() {
        assert!(all_fill(&[]));
        let mut buf = vec![FILL; 3 * 4096 + 17];
        assert!(all_fill(&buf));
        for at in [0, 4095, 4096, buf.len() - 1] {
            buf[at] = !FILL;
            assert!(!all_fill(&buf), "a different byte at {at} went unseen");
            buf[at] = FILL;
        }
    }
}
