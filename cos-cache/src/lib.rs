//! `cos-cache`: a node-local, persistent block cache for COS objects, shared by the processes of
//! a node, as an [`ObjectStore`](cos_fuse::ObjectStore) decorator ([`CachedStore`]). csi-goosefs
//! puts it between the `cos-fuse` core and the object client: one FUSE daemon per volume, all
//! daemons of a node reading through one cache directory.
//!
//! # Design
//!
//! **Blocks.** Objects are cached in blocks of `block_size` (default 1 MiB): a 1 GiB sequential
//! read is 1024 files, fetched as the fs core asks for them (its read-ahead sends whole blocks,
//! as many at once and in requests as large as it would send the origin without a cache; the
//! blocks of one request are one GET of up to `max_fetch_bytes`), so the block size costs no
//! throughput; a random 4 KiB read fetches at most
//! 1 MiB; an object smaller than a block is one block of its own size. A block's identity is
//! (bucket identity, key, ETag, block size, index): a new version of an object has new blocks,
//! so a changed object is never served from the old one's. Which ETag? The caller's `if_match`
//! if it gave one (its size from the metadata cache, a cached block's header, or a HEAD);
//! otherwise the metadata cache's answer, at most `metadata_ttl` (15 s) old, as GooseFS-Lite.
//! Listings passing through fill the metadata cache too.
//!
//! **Layout** under the cache directory:
//!
//! ```text
//! blocks/<2 hex>/<sha256 of block key>   a block: header (key, object size, length, CRC-32C)
//!                                         then data; verified on every read from disk
//! tmp/<hash>.<pid>.<rand>.<charge>.tmp    a block being written, flock'ed by its writer
//! locks/fetch.lock                        "being fetched": a block's byte (at its hash), locked
//!                                         by the fetching open file description (F_OFD_SETLK)
//! evict.lock                              flock'ed for every usage change; holds the counter
//! ```
//!
//! **Integrity.** A block is written to `tmp/`, then renamed to its name, never replacing one
//! (`renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where that is missing): a reader sees a
//! whole block or none, and a crash leaves at most a temporary file, deleted by the next scan. Nothing is fsync'ed: after a power loss a
//! block may be empty or garbage, and the check on read (exact length, key, place in the object,
//! checksum) deletes it and fetches it again. A damaged block is never served.
//!
//! **Write-behind.** A block fetched for a read is returned at once (and kept in the memory
//! tier); background threads write it to disk. Their queue is bounded (`write_queue_bytes`):
//! when the disk falls behind the origin, a block is left uncached rather than the reader kept
//! waiting. The block's fetch lock stays held until it is written or given up, so the sharing
//! below still fetches each block once. A preload writes its blocks before counting them.
//!
//! **Sharing between processes.** Before fetching a block a reader takes its fetch lock (a
//! non-blocking lock on its byte of `locks/fetch.lock`) and looks on disk once more; a reader that
//! finds the lock taken polls (1 ms doubling to 50 ms) until it is free, then reads the block from
//! disk. So two daemons reading the same object fetch each block once, unless the holder takes
//! longer than `lock_wait` (30 s), when the waiter fetches too (harmless: one copy is kept). These
//! locks die with their process, so a crash never wedges anyone.
//!
//! **Capacity and eviction.** The usage counter in `evict.lock` is charged, under that lock, for
//! every block before its temporary file is created (in 4 KiB units, headers included) and
//! uncharged for every deletion, which also happens only under that lock. So the directory (block
//! files, files being written, and 4 KiB reserved for the cache's own files) never exceeds
//! `capacity_bytes` in apparent size, nor in disk usage on a 4 KiB-block file system, directories
//! aside. To make room, a writer evicts least recently used blocks: each process keeps an index
//! (rebuilt by scanning at start, rescanned every 5 minutes when evicting, and when it runs out of
//! candidates); use stamps block files' mtime (at most every 10 s), so a block another process
//! read lately is passed over. The scan also recomputes the counter (block files plus live
//! writers' charges), healing drift left by crashes. A memory tier (`memory_bytes`, 64 MiB)
//! keeps hot blocks per process.
//!
//! **Access.** Every mount of a node shares the directory, each with its own credentials. The
//! directory is private to the daemons' user (directories 0700, files 0600 whatever the umask;
//! looser modes are tightened at open, and the open fails where they cannot be), and
//! a store returns cached blocks of an object version only once its own origin has let it read
//! that version: by a GET it made, else by a one-byte ranged GET before the first cached return
//! (a refusal such as a 403 fails the read). Once per version per store, so warm reads after the
//! first make no request. A version the origin has since replaced is proved by reading the
//! object's current first byte.
//!
//! **Writes** (`put`, multipart completion, `copy`, `delete`) go to the origin; then the key's
//! metadata is forgotten and, if its old version is known, that version's blocks are deleted
//! (others are unreachable and age out).
//!
//! **Warm-up.** [`CachedStore::preload`] lists prefixes and loads every block, pinning what it
//! loads so that, when the dataset exceeds the capacity, it stops and reports
//! [`PreloadOutcome::CacheFull`] instead of evicting its own blocks.
//!
//! # Guarantees and limits
//!
//! - Data returned is exactly the origin's bytes of one version: blocks are verified and keyed by
//!   ETag. A read without `if_match` may return a version up to `metadata_ttl` old; a read with
//!   `if_match` returns that version if cached, even if the origin has moved on (as the fs core's
//!   own buffers would).
//! - The capacity holds across processes that use the same `capacity_bytes`. The counter may
//!   over-count (never under-count) after a crash, until the next scan.
//! - LRU is approximate across processes (each evicts from its own index, checked against mtime);
//!   a preload's pins protect its blocks from its own process only, though as the newest blocks
//!   they are the last another process would evict.
//! - A process stopped (not killed) while holding `evict.lock` stalls others' cache writes; one
//!   holding a fetch lock makes others wait up to `lock_wait`.

mod access;
mod block;
mod crc32c;
mod disk;
mod index;
mod lock;
mod memory;
mod meta;
mod options;
mod preload;
mod private;
mod read;
mod shared;
mod stats;
mod store;
mod write;

pub use options::{CacheError, CacheOptions, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
pub use preload::{
    PreloadOutcome, PreloadProgress, PreloadReport, WarmupLog, rate_and_eta, summary,
};
pub use stats::{CacheStats, CacheStatsSnapshot};
pub use store::CachedStore;
