//! The workloads of `e2e bench cos`: the file work each contender is timed doing through its
//! mount (writing and reading one large file, in sequence and by parallel readers, listing a
//! directory, creating small files), and the pattern that lets every read check its bytes.
//! Plain blocking file calls on a path; it knows nothing of mounts, the bucket or the figures.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::bench::MIB;

/// Size of each small file created.
pub(super) const SMALL_FILE: usize = 4096;

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    Write,
    Read,
    ParallelRead,
    Readdir,
    ReaddirStat,
    Creates,
}

/// The bytes written: 1 MiB blocks of one random block, each stamped with its index, so a read
/// can check every block cheaply.
#[derive(Debug)]
pub(super) struct Pattern {
    base: Vec<u8>,
}

impl Pattern {
    pub(super) fn new() -> Pattern {
        let mut rng = fastrand::Rng::new();
        Pattern {
            base: std::iter::repeat_with(|| rng.u8(..))
                .take(MIB as usize)
                .collect(),
        }
    }

    fn fill(&self, index: u64, block: &mut [u8]) {
        block.copy_from_slice(&self.base);
        block[..8].copy_from_slice(&index.to_le_bytes());
    }

    fn matches(&self, index: u64, block: &[u8]) -> bool {
        block.len() == self.base.len()
            && block[..8] == index.to_le_bytes()
            && block[8..] == self.base[8..]
    }
}

/// Creates `path` and writes `blocks` MiB in 1 MiB writes; the time includes the close, where
/// both file systems finish the upload (its error is checked).
pub(super) fn write_pattern(
    path: &Path,
    blocks: u64,
    pattern: &Pattern,
) -> anyhow::Result<Duration> {
    let mut block = vec![0; MIB as usize];
    let start = Instant::now();
    let mut file = File::create(path)?;
    for i in 0..blocks {
        pattern.fill(i, &mut block);
        file.write_all(&block)
            .with_context(|| format!("writing block {i}"))?;
    }
    nix::unistd::close(file).context("close (where the upload completes)")?;
    Ok(start.elapsed())
}

/// Reads MiB blocks `range` of `path` in 1 MiB reads, checking each.
pub(super) fn read_pattern(
    path: &Path,
    range: std::ops::Range<u64>,
    pattern: &Pattern,
) -> anyhow::Result<Duration> {
    let mut block = vec![0; MIB as usize];
    let start = Instant::now();
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(range.start * MIB))?;
    for i in range {
        file.read_exact(&mut block)
            .with_context(|| format!("reading block {i}"))?;
        if !pattern.matches(i, &block) {
            bail!("block {i} of {} holds other bytes", path.display());
        }
    }
    Ok(start.elapsed())
}

/// `readers` threads, each with its own handle, read one contiguous share of the file.
pub(super) fn read_in_parallel(
    path: &Path,
    blocks: u64,
    readers: usize,
    pattern: &Pattern,
) -> anyhow::Result<Duration> {
    let readers = (readers.max(1) as u64).min(blocks);
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                let range = blocks * r / readers..blocks * (r + 1) / readers;
                scope.spawn(move || read_pattern(path, range, pattern))
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow!("a reader thread panicked"))??;
        }
        anyhow::Ok(())
    })?;
    Ok(start.elapsed())
}

/// `readdir` of a directory (the names only, as `ls` does), then `lstat` of every entry (as
/// `ls -l` goes on to do); returns both times from the start.
pub(super) fn list_dir(dir: &Path, expected: usize) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let names = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    let readdir = start.elapsed();
    if names.len() != expected {
        bail!(
            "{} lists {} entries, not {expected}",
            dir.display(),
            names.len()
        );
    }
    for name in &names {
        std::fs::symlink_metadata(name).with_context(|| format!("lstat {}", name.display()))?;
    }
    Ok((readdir, start.elapsed()))
}

/// `mkdir dir` (untimed), then `count` files of 4 KiB created, written and closed one after
/// another.
pub(super) fn create_files(dir: &Path, count: usize) -> anyhow::Result<Duration> {
    std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let data = vec![0x5a_u8; SMALL_FILE];
    let start = Instant::now();
    for i in 0..count {
        let path = dir.join(format!("f-{i:05}"));
        let mut file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        file.write_all(&data)?;
        nix::unistd::close(file).with_context(|| format!("close {}", path.display()))?;
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_tells_blocks_apart() {
        let pattern = Pattern::new();
        let mut block = vec![0; MIB as usize];
        pattern.fill(7, &mut block);
        assert!(pattern.matches(7, &block));
        assert!(!pattern.matches(8, &block));
        block[MIB as usize - 1] ^= 1;
        assert!(!pattern.matches(7, &block));
        assert!(!pattern.matches(7, &block[1..]));
    }
}
