//! Property test against a reference model: `MemStore` itself. Random reads through two cached
//! stores over one tiny cache (so blocks are evicted all the time), interleaved with writes
//! through the cache and changes behind its back, always return exactly what the origin returns
//! for the same call, and the directory never exceeds the capacity.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ops::Range;

use bytes::Bytes;
use common::{data, dir_size, open, options};
use cos_fuse::ObjectStore;
use cos_fuse::mem::MemStore;
use cos_fuse::store::StoreError;
use proptest::prelude::*;

const BS: u64 = 1024;
const OBJECTS: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    Read {
        second_store: bool,
        object: usize,
        range: Range<u64>,
        with_etag: bool,
    },
    /// A write through the first cached store.
    Put { object: usize, size: u64, seed: u64 },
    /// A change at the origin that the caches are not told of.
    Change { object: usize, size: u64, seed: u64 },
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(BS), Just(3 * BS), 1..7 * BS]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<bool>(), 0..OBJECTS, 0..8 * BS, 0..3 * BS, any::<bool>()).prop_map(
            |(second_store, object, off, len, with_etag)| Step::Read {
                second_store,
                object,
                range: off..off + len,
                with_etag,
            }
        ),
        1 => (0..OBJECTS, size(), any::<u64>())
            .prop_map(|(object, size, seed)| Step::Put { object, size, seed }),
        1 => (0..OBJECTS, size(), any::<u64>())
            .prop_map(|(object, size, seed)| Step::Change { object, size, seed }),
    ]
}

fn same_outcome(a: &Result<Bytes, StoreError>, b: &Result<Bytes, StoreError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => std::mem::discriminant(x) == std::mem::discriminant(y),
        _ => false,
    }
}

fn run(sizes: Vec<(u64, u64)>, steps: Vec<Step>, memory: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mem = MemStore::new();
        for (i, (size, seed)) in sizes.into_iter().enumerate() {
            mem.insert(&format!("obj/{i}"), data(seed, size as usize));
        }
        let mut o = options(dir.path());
        o.block_size = BS;
        o.max_fetch_bytes = 3 * BS;
        // Six charged blocks: less than one object of the larger sizes.
        o.capacity_bytes = 4096 + 6 * 4096;
        o.memory_bytes = if memory { 2 * BS } else { 0 };
        // Every unversioned read checks the version, so changes behind the cache show at once.
        o.metadata_ttl = std::time::Duration::ZERO;
        let capacity = o.capacity_bytes;
        let a = open(&mem, o.clone()).await;
        let b = open(&mem, o).await;
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Step::Read {
                    second_store,
                    object,
                    range,
                    with_etag,
                } => {
                    let key = format!("obj/{object}");
                    let etag = match with_etag {
                        true => mem.head(&key).await.unwrap().map(|m| m.etag),
                        false => None,
                    };
                    let store = if second_store { &b } else { &a };
                    let got = store.get_range(&key, range.clone(), etag.as_deref()).await;
                    let want = mem.get_range(&key, range.clone(), etag.as_deref()).await;
                    prop_assert!(
                        same_outcome(&got, &want),
                        "step {n}: {key} {range:?} etag {etag:?}: {got:?} != {want:?}"
                    );
                }
                Step::Put { object, size, seed } => {
                    let body = Bytes::from(data(seed, size as usize));
                    a.put(&format!("obj/{object}"), body).await.unwrap();
                }
                Step::Change { object, size, seed } => {
                    mem.insert(&format!("obj/{object}"), data(seed, size as usize));
                }
            }
            let used = dir_size(dir.path());
            prop_assert!(used <= capacity, "step {n}: {used} > {capacity}");
        }
        let s = a.stats();
        prop_assert_eq!(s.corrupt_blocks, 0);
        prop_assert!(s.used_bytes <= capacity);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reads_return_exactly_the_origin_bytes(
        sizes in proptest::collection::vec((size(), any::<u64>()), OBJECTS),
        steps in proptest::collection::vec(step(), 1..40),
        memory in any::<bool>(),
    ) {
        run(sizes, steps, memory)?;
    }
}
