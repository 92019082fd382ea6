//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use cos_cache::{CacheOptions, CachedStore};
use cos_fuse::mem::{MemStore, Op};

pub const BS: u64 = 4096;

/// Options for tests: 4 KiB blocks, GETs of up to 4 blocks, no memory tier (so every hit is
/// a disk hit and verification runs), a roomy capacity.
pub fn options(dir: &Path) -> CacheOptions {
    let mut o = CacheOptions::new(dir, "http://cos.test/bucket-1250000000", 64 << 20);
    o.block_size = BS;
    o.max_fetch_bytes = 4 * BS;
    o.memory_bytes = 0;
    o
}

pub async fn open(mem: &MemStore, o: CacheOptions) -> CachedStore<MemStore> {
    CachedStore::open(mem.clone(), o).await.unwrap()
}

/// Deterministic, distinct bytes.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// The apparent size of every file under `dir`. Blocks are walked before `tmp/`: a block
/// renamed from `tmp/` meanwhile is missed rather than counted twice. Files that vanish during
/// the walk (evicted) count zero.
pub fn dir_size(dir: &Path) -> u64 {
    fn files(d: &Path, total: &mut u64, subdirs: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => subdirs.push(e.path()),
                Ok(m) => *total += m.len(),
                Err(_) => {}
            }
        }
    }
    let mut total = 0;
    let mut shards = Vec::new();
    files(&dir.join("blocks"), &mut total, &mut shards);
    for shard in shards {
        files(&shard, &mut total, &mut Vec::new());
    }
    let mut others = Vec::new();
    for d in ["tmp", "locks"] {
        files(&dir.join(d), &mut total, &mut others);
    }
    files(dir, &mut total, &mut others);
    let mut names: Vec<_> = others
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect();
    names.sort();
    assert!(others.iter().all(|p| p.parent() == Some(dir)), "{others:?}");
    assert_eq!(names, ["blocks", "locks", "tmp"], "unexpected directories");
    total
}

/// The block files under `dir`.
pub fn block_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir.join("blocks")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

pub fn requests(mem: &MemStore) -> u64 {
    mem.stats().requests.values().sum()
}

pub fn gets(mem: &MemStore) -> u64 {
    mem.stats().count(Op::Get)
}

/// Whether any block's fetch lock is held, by any process: a lock over the whole fetch-lock
/// file would conflict with it. No file yet: none ever was.
pub fn fetch_locks_held(dir: &Path) -> bool {
    use nix::libc;
    let Ok(file) = std::fs::File::open(dir.join("locks/fetch.lock")) else {
        return false;
    };
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut probe)).unwrap();
    probe.l_type != libc::F_UNLCK as i16
}
