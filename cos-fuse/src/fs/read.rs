//! Reading an object version for one open handle, with adaptive sequential read-ahead. Owns the
//! handle's prefetched blocks and their memory reservations; it must not decide which version a
//! handle reads (the caller passes it).
//!
//! A read that continues where the previous one ended (or falls in the prefetched range) is
//! sequential: the blocks it needs are fetched if missing, and the window ahead of it is kept
//! full of ranged GETs running in parallel (a new one starts each time the scan moves a block's
//! length on). The window grows [`GROWTH`]-fold on every block the scan passes (from
//! `read_ahead_initial`, or `GROWTH` times the read's length if more, to `read_ahead_max`) and is
//! cut into up to [`PARALLEL`] blocks: against a store that caps each connection's bandwidth,
//! the number of requests in flight sets the speed, so the blocks are small enough that a modest
//! window keeps many running. Blocks end on multiples of their length. Prefetch only takes
//! memory the budget can spare; a read that jumps elsewhere drops the prefetched blocks, resets
//! the window and fetches exactly the bytes asked for. A store with a read unit (a block cache)
//! gets blocks of whole, aligned units, as large as it would get without one.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::context::Context;
use super::error::FsError;
use crate::budget::Reservation;
use crate::errno::Errno;
use crate::store::{ObjectStore, StoreError, concat};

/// Largest single ranged GET of a prefetch.
const MAX_BLOCK: u64 = 2 * 1024 * 1024;
/// A full window is split into this many ranged GETs (of at most [`MAX_BLOCK`]), so a scan
/// keeps that many requests in flight: per-connection bandwidth, not the window, is the limit.
/// Each GET costs its first-byte latency on top of its bytes, so the more and smaller they
/// are, the more of the window is arriving at once: at 20 ms and 400 Mbit/s per connection, a
/// 64 MiB window read 840-890 MiB/s as 32 GETs of 2 MiB and 1040-1110 MiB/s as 64 of 1 MiB.
pub const PARALLEL: u64 = 64;
/// Smallest ranged GET of a prefetch: below it, a request's latency costs more than its bytes.
const MIN_BLOCK: u64 = 512 * 1024;
/// How much the window grows for each block a scan passes. Until the window is full, a scan
/// reads at the pace of the few GETs it has in flight; 4x (from 1 MiB: 4, 16, 64) gets there in
/// three blocks.
const GROWTH: u64 = 4;
/// How far from where a sequential scan got to a read still belongs to it, at least; and how
/// far behind the scan consumed blocks stay for its stragglers.
const NEAR: u64 = 1024 * 1024;

/// The first multiple of `n` (> 0) after `at`.
fn next_multiple(at: u64, n: u64) -> u64 {
    (at / n).saturating_add(1).saturating_mul(n)
}

/// The kernel has several reads of a scan in flight, up to its read-ahead (and the reader's own
/// read) apart, and they reach us in any order: reads this near where the scan got to are part
/// of it, and blocks stay this long behind it. (With a 1 MiB kernel read-ahead, 1 MiB of slack
/// sent the scan's stragglers to the store, one GET each.)
fn slack(kernel_read_ahead: u64) -> u64 {
    kernel_read_ahead.saturating_mul(4).max(NEAR)
}

/// The object version a handle reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) key: String,
    pub(crate) etag: String,
    pub(crate) size: u64,
}

/// A prefetched block's bytes, in the pieces the store answered with (see
/// `ObjectStore::get_range_pieces`); shared, so each read of the block clones a pointer.
type BlockResult = Option<Result<Arc<[Bytes]>, FsError>>;

#[derive(Debug)]
struct Block {
    start: u64,
    end: u64,
    rx: watch::Receiver<BlockResult>,
    task: AbortHandle,
    /// The block's memory, released when the block is dropped.
    _res: Reservation,
}

impl Drop for Block {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
pub(crate) struct ReadAhead {
    version: Option<Version>,
    blocks: VecDeque<Block>,
    window: u64,
    /// The end of the last block whose passing grew the window.
    grown_to: u64,
    /// Where the last read ended.
    next: Option<u64>,
}

/// The error of a ranged GET of `version`: the cause, and what the reader gets.
fn read_error(version: &Version, range: Range<u64>, e: StoreError) -> FsError {
    // The version this handle opened is gone or was replaced.
    let stale = matches!(e, StoreError::NotFound(_));
    let error = FsError::store(&version.key, e).context(format!(
        "GET bytes {}..{} of ETag {}",
        range.start, range.end, version.etag
    ));
    if stale {
        error.with_errno(Errno::ESTALE)
    } else {
        error
    }
}

impl ReadAhead {
    pub(crate) fn new(initial_window: u64) -> Self {
        ReadAhead {
            version: None,
            blocks: VecDeque::new(),
            window: initial_window,
            grown_to: 0,
            next: None,
        }
    }

    fn reset(&mut self, initial_window: u64) {
        self.blocks.clear();
        self.window = initial_window;
        self.grown_to = 0;
    }

    pub(crate) async fn read<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
        version: &Version,
        off: u64,
        len: u64,
    ) -> Result<Bytes, FsError> {
        let initial = ctx.cfg.read_ahead_initial;
        let slack = slack(ctx.cfg.kernel_read_ahead);
        if self.version.as_ref() != Some(version) {
            self.reset(initial);
            self.next = None;
            self.version = Some(version.clone());
        }
        let end = off.saturating_add(len).min(version.size);
        if off >= end {
            return Ok(Bytes::new());
        }
        let in_blocks = match (self.blocks.front(), self.blocks.back()) {
            (Some(f), Some(b)) => f.start <= off && off < b.end,
            _ => false,
        };
        // The kernel has several reads of a sequential scan in flight, which may arrive in any
        // order: a read near where the reads got to counts as sequential.
        let near = match self.next {
            Some(next) => off.saturating_add(slack) >= next && off <= next.saturating_add(slack),
            None => off < slack,
        };
        let sequential = in_blocks || near;
        // A scan got as far as its furthest read; a random read may start a new one.
        self.next = match self.next {
            Some(n) if sequential => Some(n.max(end)),
            _ => Some(end),
        };
        let behind = self.blocks.front().is_some_and(|b| off < b.start);
        if !sequential || behind {
            // Random, or a straggler of the scan just behind the prefetched blocks: exactly the
            // bytes asked for, and the blocks stay for the scan (unless random).
            if !sequential {
                self.reset(initial);
            }
            let _res = ctx.budget.acquire(end - off).await;
            return ctx
                .store
                .get_range(&version.key, off..end, Some(&version.etag))
                .await
                .map_err(|e| read_error(version, off..end, e));
        }
        self.advance(off, slack, ctx.cfg.read_ahead_max);
        // A reader that asks for `len` at a time is read `GROWTH` times that far ahead from its
        // first read on: a scan's first 1 MiB read starts 4 MiB of GETs, not one block's.
        self.window = self
            .window
            .max(len.saturating_mul(GROWTH))
            .min(ctx.cfg.read_ahead_max);
        // The bytes this read needs and no block covers yet: fetched now, waiting for memory.
        // With a read unit, up to the end of the unit holding `end`, so the blocks after it are
        // aligned to units. When the object goes on past them, in GETs of at most one unit (else
        // `MIN_BLOCK`) that run in parallel, so a scan's first read waits for a small GET rather
        // than one of all its bytes; the rest of an object (a small file read whole) is one GET.
        let unit = ctx.store.read_unit().filter(|&u| u > 0);
        let mut covered = self.blocks.back().map_or(off, |b| b.end);
        if covered < end {
            let to = unit
                .map_or(end, |u| end.div_ceil(u).saturating_mul(u))
                .min(version.size);
            let piece = if to < version.size {
                unit.unwrap_or(MIN_BLOCK)
            } else {
                u64::MAX
            };
            let mut res = ctx.budget.acquire(to - covered).await;
            while covered < to {
                let stop = next_multiple(covered, piece).min(to);
                let part = res.split(stop - covered);
                self.spawn(ctx, version, covered, stop, part);
                covered = stop;
            }
        }
        // Keep the window ahead of the read full, as far as the budget spares: a GET starts as
        // soon as the scan moves a block's length past the last one.
        let target = end.saturating_add(self.window).min(version.size);
        let block = (self.window / PARALLEL).clamp(MIN_BLOCK, MAX_BLOCK);
        // With a read unit, whole units: as many as fit in the block a store without one would
        // get (at least one), so a cached store fetches in requests as large and as many as the
        // origin would see without the cache.
        let block = match unit {
            Some(u) => (block / u).max(1).saturating_mul(u),
            None => block,
        };
        while covered < target {
            // Blocks end on multiples of their length, so an aligned read of the kernel's finds
            // its bytes in one block, with no stitching (a remainder under half a block joins
            // the next one). Whole blocks only (the object's last one may be short): a partial
            // one waits until the scan has moved on far enough.
            let mut stop = next_multiple(covered, block);
            if stop - covered < block / 2 {
                stop = stop.saturating_add(block);
            }
            let n = (stop - covered).min(version.size - covered);
            if target - covered < n {
                break;
            }
            let Some(res) = ctx.budget.try_acquire_optional(n) else {
                break;
            };
            self.spawn(ctx, version, covered, covered + n, res);
            covered += n;
        }
        // Assemble the answer.
        let mut parts = Vec::new();
        for b in self.blocks.iter() {
            if b.end <= off || b.start >= end {
                continue;
            }
            let mut rx = b.rx.clone();
            let lost = || FsError::new(Errno::EIO, "a read-ahead GET ended without an answer");
            let data = match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or_else(|| Err(lost())),
                Err(_) => Err(lost()),
            };
            let pieces = match data {
                Ok(d) => d,
                Err(e) => {
                    self.reset(initial);
                    return Err(e);
                }
            };
            let (from, to) = (off.max(b.start), end.min(b.end));
            if b.start + pieces.iter().map(|p| p.len() as u64).sum::<u64>() < to {
                // The object is shorter than the version said: it changed.
                self.reset(initial);
                return Err(FsError::new(
                    Errno::ESTALE,
                    format!("the object is shorter than its {} bytes", version.size),
                )
                .with_key(&version.key));
            }
            // The pieces' parts within the read: one piece, when the read lies in it, is
            // answered as a slice of it, not a copy.
            let mut at = b.start;
            for piece in pieces.iter() {
                let (p_start, p_end) = (at, at + piece.len() as u64);
                at = p_end;
                if p_end <= from || p_start >= to {
                    continue;
                }
                let slice = |x: u64| usize::try_from(x - p_start).map_err(|_| Errno::EIO);
                parts.push(piece.slice(slice(from.max(p_start))?..slice(to.min(p_end))?));
            }
        }
        // Now, not at the next read.
        self.advance(end, slack, ctx.cfg.read_ahead_max);
        Ok(concat(parts))
    }

    /// The scan has read up to `to`: each block it has passed grows the window (once, as soon
    /// as it is passed: the window grows while the data arrives), and blocks `slack` behind it
    /// are released (those nearer stay for the scan's stragglers).
    fn advance(&mut self, to: u64, slack: u64, max_window: u64) {
        for b in self.blocks.iter().take_while(|b| b.end <= to) {
            if b.end > self.grown_to {
                self.grown_to = b.end;
                self.window = self.window.saturating_mul(GROWTH).min(max_window);
            }
        }
        while self
            .blocks
            .front()
            .is_some_and(|b| b.end.saturating_add(slack) <= to)
        {
            self.blocks.pop_front();
        }
    }

    fn spawn<S: ObjectStore>(
        &mut self,
        ctx: &Arc<Context<S>>,
        version: &Version,
        start: u64,
        end: u64,
        res: Reservation,
    ) {
        let (tx, rx) = watch::channel(None);
        let ctx = Arc::clone(ctx);
        let version = version.clone();
        let task = tokio::spawn(async move {
            let r = ctx
                .store
                .get_range_pieces(&version.key, start..end, Some(&version.etag))
                .await
                .map(Arc::from)
                .map_err(|e| read_error(&version, start..end, e));
            let _ = tx.send(Some(r));
        });
        self.blocks.push_back(Block {
            start,
            end,
            rx,
            task: task.abort_handle(),
            _res: res,
        });
    }
}
