//! What a block is: its identity (bucket, object key, ETag, block size, index), the file name that
//! identity hashes to, and the on-disk format of a block file with its header and checksum.
//! Pure functions only; reading and writing files is `disk`'s business.
//!
//! A block file is, little-endian:
//!
//! ```text
//!  0..8    magic "COSCBLK1"
//!  8..12   key length K (u32)
//! 12..16   zero
//! 16..24   size of the whole object (u64)
//! 24..32   data length N (u64)
//! 32..36   CRC-32C of bytes 0..32, the key and the data
//! 36..40   zero
//! 40..40+K the block key (see `BlockId::new`)
//! ..+N     the data
//! ```
//!
//! A file is accepted only if its length is exactly 40 + K + N, its key is the one looked up (a
//! hash collision or a misplaced file is refused), its lengths agree with the block's place in
//! the object, and its checksum matches.

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::crc32c::Crc32c;

const MAGIC: [u8; 8] = *b"COSCBLK1";
pub(crate) const FIXED: usize = 40;
/// Longest block key accepted when decoding (S3 keys are at most 1 KiB).
const MAX_KEY: usize = 64 * 1024;
/// Files are charged against the capacity in units of a common filesystem block.
pub(crate) const CHARGE_UNIT: u64 = 4096;

/// The SHA-256 of a block key: the block's file name.
pub(crate) type BlockHash = [u8; 32];

/// The bytes a file of `len` bytes is charged against the capacity.
pub(crate) fn charge(len: u64) -> u64 {
    len.div_ceil(CHARGE_UNIT).saturating_mul(CHARGE_UNIT)
}

/// One block of one version of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockId {
    /// The unambiguous key written into the header.
    pub key: String,
    pub hash: BlockHash,
    pub index: u64,
    pub block_size: u64,
}

impl BlockId {
    /// Every part is length-prefixed, so no two tuples share a key whatever bytes keys contain.
    pub(crate) fn new(identity: &str, key: &str, etag: &str, block_size: u64, index: u64) -> Self {
        let key = format!(
            "v1 {block_size} {index} {}:{identity}{}:{key}{}:{etag}",
            identity.len(),
            key.len(),
            etag.len()
        );
        let hash: BlockHash = Sha256::digest(key.as_bytes()).into();
        BlockId {
            key,
            hash,
            index,
            block_size,
        }
    }

    pub(crate) fn hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// The bytes of the object this block holds, for an object of `object_size` bytes; `None`
    /// when the object has no such block.
    pub(crate) fn span(&self, object_size: u64) -> Option<Range<u64>> {
        let start = self.index.checked_mul(self.block_size)?;
        if start >= object_size {
            return None;
        }
        Some(start..start.saturating_add(self.block_size).min(object_size))
    }
}

/// The header of a block file, to be followed by `data` itself.
pub(crate) fn encode_header(id: &BlockId, object_size: u64, data: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED + id.key.len());
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(
        &u32::try_from(id.key.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&object_size.to_le_bytes());
    h.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut crc = Crc32c::new();
    crc.update(&h);
    crc.update(id.key.as_bytes());
    crc.update(data);
    h.extend_from_slice(&crc.finish().to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(id.key.as_bytes());
    h
}

/// Whether a block of `id` can be written so that `decode` accepts it.
pub(crate) fn cacheable(id: &BlockId) -> bool {
    id.key.len() <= MAX_KEY
}

/// The longest file a block of `id` can be.
pub(crate) fn max_file_len(id: &BlockId) -> u64 {
    (FIXED + id.key.len()) as u64 + id.block_size
}

/// Why a block file was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corrupt {
    Short,
    Magic,
    Length,
    Key,
    Place,
    Checksum,
}

/// A verified block file: the object's size and where the data sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub object_size: u64,
    pub data: Range<usize>,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Verifies a whole block file read from disk as the block `id`.
pub(crate) fn decode(file: &[u8], id: &BlockId) -> Result<Decoded, Corrupt> {
    let fixed = file.get(..FIXED).ok_or(Corrupt::Short)?;
    if fixed[..8] != MAGIC || fixed[12..16] != [0; 4] || fixed[36..40] != [0; 4] {
        return Err(Corrupt::Magic);
    }
    let key_len = le_u32(fixed, 8).ok_or(Corrupt::Short)? as usize;
    let object_size = le_u64(fixed, 16).ok_or(Corrupt::Short)?;
    let data_len = le_u64(fixed, 24).ok_or(Corrupt::Short)?;
    let stored_crc = le_u32(fixed, 32).ok_or(Corrupt::Short)?;
    if key_len > MAX_KEY {
        return Err(Corrupt::Length);
    }
    let data_start = FIXED + key_len;
    let data_len = usize::try_from(data_len).map_err(|_| Corrupt::Length)?;
    if data_start.checked_add(data_len) != Some(file.len()) {
        return Err(Corrupt::Length);
    }
    if file.get(FIXED..data_start) != Some(id.key.as_bytes()) {
        return Err(Corrupt::Key);
    }
    let span = id.span(object_size).ok_or(Corrupt::Place)?;
    if span.end - span.start != data_len as u64 {
        return Err(Corrupt::Place);
    }
    let mut crc = Crc32c::new();
    crc.update(&fixed[..32]);
    crc.update(&file[FIXED..]);
    if crc.finish() != stored_crc {
        return Err(Corrupt::Checksum);
    }
    Ok(Decoded {
        object_size,
        data: data_start..file.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(id: &BlockId, object_size: u64, data: &[u8]) -> Vec<u8> {
        let mut f = encode_header(id, object_size, data);
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn keys_are_unambiguous_and_name_every_part() {
        let a = BlockId::new("b", "k1", "e", 4096, 0);
        let variants = [
            BlockId::new("b", "k1", "e", 4096, 1),
            BlockId::new("b", "k1", "f", 4096, 0),
            BlockId::new("b", "k2", "e", 4096, 0),
            BlockId::new("c", "k1", "e", 4096, 0),
            BlockId::new("b", "k1", "e", 8192, 0),
            // Moving bytes between parts changes the key.
            BlockId::new("b1:k", "1", "e", 4096, 0),
        ];
        for v in &variants {
            assert_ne!(a.key, v.key);
            assert_ne!(a.hash, v.hash);
        }
        assert_eq!(a, BlockId::new("b", "k1", "e", 4096, 0));
        assert_eq!(a.hex().len(), 64);
    }

    #[test]
    fn spans_of_blocks() {
        let id = |i| BlockId::new("b", "k", "e", 10, i);
        assert_eq!(id(0).span(25), Some(0..10));
        assert_eq!(id(2).span(25), Some(20..25));
        assert_eq!(id(3).span(25), None);
        assert_eq!(id(0).span(0), None);
        assert_eq!(
            BlockId::new("b", "k", "e", 10, u64::MAX).span(u64::MAX),
            None
        );
    }

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let id = BlockId::new("bucket", "dir/obj", "etag", 16, 1);
        let data = b"0123456789abcdef";
        let good = file(&id, 40, data);
        let d = decode(&good, &id).unwrap();
        assert_eq!(d.object_size, 40);
        assert_eq!(&good[d.data.clone()], data);
        // Truncated anywhere, or extended.
        for cut in [0, 10, FIXED, good.len() - 1] {
            assert!(decode(&good[..cut], &id).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long, &id), Err(Corrupt::Length));
        // Any single flipped byte is caught.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad, &id).is_err(), "flip at {i}");
        }
        // Another block's file, or a wrong place in the object.
        let other = BlockId::new("bucket", "dir/obj", "etag", 16, 0);
        assert_eq!(decode(&good, &other), Err(Corrupt::Key));
        let wrong_size = file(&id, 20, data);
        assert_eq!(decode(&wrong_size, &id), Err(Corrupt::Place));
        assert!(max_file_len(&id) >= good.len() as u64);
    }

    #[test]
    fn charges_round_up_to_the_unit() {
        assert_eq!(charge(0), 0);
        assert_eq!(charge(1), 4096);
        assert_eq!(charge(4096), 4096);
        assert_eq!(charge(4097), 8192);
        assert_eq!(charge(u64::MAX), u64::MAX);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let id = BlockId::new("b", "k", "e", 64, 0);
            let _ = decode(&bytes, &id);
        }
    }
}
