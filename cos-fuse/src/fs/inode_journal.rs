//! The inode journal: a file that records which inode number names which path, so that a daemon
//! restarted onto the same kernel FUSE connection (the kernel still holds the old numbers)
//! rebuilds the inode table the previous process had (`Fs::resume`).
//!
//! The table (`fs/table.rs`) appends one record per change of the mapping: a number given to a
//! new path ([`Event::Map`]), a path removed ([`Event::Unmap`]), a subtree renamed
//! ([`Event::Rename`]), an inode dropped ([`Event::Drop`]). Each record is one unbuffered
//! `write(2)` and is never synced: a daemon killed by SIGKILL or the OOM killer leaves the page
//! cache to the kernel, and after a node's power loss there is no FUSE connection to resume. A
//! journal starts with a snapshot (a header, then one `Map` per live path), written to a temp file
//! and renamed over the journal; it is compacted the same way when it holds more than
//! [`COMPACT_FACTOR`] records per live path and more than [`COMPACT_BYTES`].
//!
//! A record is framed as `len: u32 LE, sum: u32 LE, payload` (`sum` the FNV-1a hash of the
//! payload), so a record cut short by the death of the daemon, or garbage after it, is seen and
//! the replay stops there. This module only reads and writes the file; it must not know the
//! table (the table knows it).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::paths::subtree;
use super::types::{FileKind, Ino, ROOT_INO};

/// The first bytes of a journal's header record: the format and its version.
const MAGIC: &[u8; 8] = b"cosfino1";
/// The largest payload a record may have: paths are at most 1024 bytes (S3 keys).
const MAX_PAYLOAD: usize = 64 * 1024;
/// A journal is compacted once it is over this size...
pub(crate) const COMPACT_BYTES: u64 = 1 << 20;
/// ...and holds more than this many records per live path.
pub(crate) const COMPACT_FACTOR: u64 = 4;
/// Handle generations are below this (`fs/handles.rs` puts them in an `Fh`'s top bits).
pub(crate) const GENERATIONS: u32 = 1 << 24;

/// A change of the inode mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// `path` is inode `ino` (a new number, or a path that was another inode's).
    Map {
        ino: Ino,
        kind: FileKind,
        path: &'a str,
    },
    /// `path` names nothing any more.
    Unmap { path: &'a str },
    /// `from` and every path under it moved to `to`.
    Rename { from: &'a str, to: &'a str },
    /// Inode `ino` was dropped: `path` no longer names it.
    Drop { ino: Ino, path: &'a str },
}

/// What a journal says: the live paths with their inode and kind, where numbering continues, and
/// the handle generation of the process that wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) generation: u32,
    pub(crate) next_ino: Ino,
    pub(crate) paths: BTreeMap<String, (Ino, FileKind)>,
}

/// What [`load`] read.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) mapping: Mapping,
    /// Bytes after the last whole record (a record cut short, or garbage), skipped.
    pub(crate) skipped: u64,
}

impl Mapping {
    fn apply(&mut self, event: Event<'_>) {
        match event {
            Event::Map { ino, kind, path } => {
                if ino > ROOT_INO && !path.is_empty() {
                    self.paths.insert(path.to_string(), (ino, kind));
                }
                self.next_ino = self.next_ino.max(ino.saturating_add(1));
            }
            Event::Unmap { path } => {
                self.paths.remove(path);
            }
            Event::Rename { from, to } => {
                // As `Table::rename_subtree`.
                for old in subtree(&self.paths, from) {
                    if let Some(v) = self.paths.remove(&old) {
                        self.paths.insert(format!("{to}{}", &old[from.len()..]), v);
                    }
                }
            }
            Event::Drop { ino, path } => {
                if self.paths.get(path).is_some_and(|(i, _)| *i == ino) {
                    self.paths.remove(path);
                }
            }
        }
    }
}

/// The generation after `previous`, never 0 (a fresh mount's).
pub(crate) fn next_generation(previous: u32) -> u32 {
    match previous.saturating_add(1) % GENERATIONS {
        0 => 1,
        g => g,
    }
}

/// A generation for a process that cannot read its predecessor's: from the clock, so it is
/// unlikely to be the one the kernel's handles carry.
pub(crate) fn unknown_generation() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // The modulus fits in u32: the conversion cannot fail.
    next_generation(u32::try_from(nanos % u128::from(GENERATIONS - 1)).unwrap_or(0))
}

/// Reads the journal at `path`: the mapping its whole records give. An error when it cannot be
/// read or does not start with a header.
pub(crate) fn load(path: &Path) -> io::Result<Loaded> {
    let data = std::fs::read(path)?;
    let mut records = Frames {
        data: &data,
        pos: 0,
    };
    let Some(mut mapping) = records.next().and_then(decode_header) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no inode journal header",
        ));
    };
    let mut end = records.pos;
    while let Some(payload) = records.next() {
        let Some(event) = decode_event(payload) else {
            break;
        };
        mapping.apply(event);
        end = records.pos;
    }
    let skipped = (data.len() - end) as u64;
    Ok(Loaded { mapping, skipped })
}

/// The journal a mount appends to.
#[derive(Debug)]
pub(crate) struct InodeJournal {
    path: PathBuf,
    /// `None` once a write failed (the file was removed: a resume starts empty).
    file: Option<File>,
    generation: u32,
    bytes: u64,
    records: u64,
    buf: Vec<u8>,
}

impl InodeJournal {
    /// Replaces whatever is at `path` with a snapshot of `paths` (live path, inode, kind) and
    /// returns the journal appending to it.
    pub(crate) fn create<'a>(
        path: &Path,
        generation: u32,
        next_ino: Ino,
        paths: impl Iterator<Item = (&'a str, Ino, FileKind)>,
    ) -> io::Result<Self> {
        let mut j = InodeJournal {
            path: path.to_path_buf(),
            file: None,
            generation,
            bytes: 0,
            records: 0,
            buf: Vec::new(),
        };
        j.snapshot(next_ino, paths)?;
        Ok(j)
    }

    /// Appends `event`. A failure is logged and ends the journal: its file is removed, so a
    /// resume starts empty rather than from a mapping that misses changes.
    pub(crate) fn append(&mut self, event: Event<'_>) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        self.buf.clear();
        encode_event(&mut self.buf, event);
        match file.write_all(&self.buf) {
            Ok(()) => {
                self.bytes += self.buf.len() as u64;
                self.records += 1;
            }
            Err(e) => {
                tracing::warn!(
                    journal = %self.path.display(),
                    error = %e,
                    "cannot write the inode journal; it is removed and a restarted daemon will \
                     not resume this mount's inode numbers"
                );
                self.file = None;
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    /// Whether the journal is worth compacting, with `live` paths mapped.
    pub(crate) fn wants_compaction(&self, live: usize) -> bool {
        self.file.is_some()
            && self.bytes > COMPACT_BYTES
            && self.records > COMPACT_FACTOR.saturating_mul(live as u64)
    }

    /// Rewrites the journal as a snapshot of `paths`. On failure the journal goes on as it was
    /// (the next attempt comes after as many records again).
    pub(crate) fn compact<'a>(
        &mut self,
        next_ino: Ino,
        paths: impl Iterator<Item = (&'a str, Ino, FileKind)>,
    ) {
        if self.file.is_none() {
            return;
        }
        if let Err(e) = self.snapshot(next_ino, paths) {
            tracing::warn!(journal = %self.path.display(), error = %e, "cannot compact the inode journal");
            self.records = 0;
        }
    }

    /// Writes a snapshot to a temp file, renames it over the journal and appends to it from now.
    fn snapshot<'a>(
        &mut self,
        next_ino: Ino,
        paths: impl Iterator<Item = (&'a str, Ino, FileKind)>,
    ) -> io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut w = BufWriter::new(File::create(&tmp)?);
            let mut buf = Vec::new();
            encode_header(&mut buf, self.generation, next_ino);
            let (mut bytes, mut records) = (buf.len() as u64, 0u64);
            w.write_all(&buf)?;
            for (path, ino, kind) in paths {
                buf.clear();
                encode_event(&mut buf, Event::Map { ino, kind, path });
                w.write_all(&buf)?;
                bytes += buf.len() as u64;
                records += 1;
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            std::fs::rename(&tmp, &self.path)?;
            Ok((file, bytes, records))
        })();
        match result {
            Ok((file, bytes, records)) => {
                self.file = Some(file);
                self.bytes = bytes;
                self.records = records;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// The payloads of a journal's whole, intact records, in order.
struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.data.get(self.pos..)?;
        let len = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
        let sum = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
        if len > MAX_PAYLOAD {
            return None;
        }
        let payload = rest.get(8..8 + len)?;
        if fnv1a(payload) != sum {
            return None;
        }
        self.pos += 8 + len;
        Some(payload)
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Appends the frame of a payload that `fill` writes.
fn frame(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    fill(out);
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let sum = fnv1a(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_header(out: &mut Vec<u8>, generation: u32, next_ino: Ino) {
    frame(out, |p| {
        p.push(b'H');
        p.extend_from_slice(MAGIC);
        p.extend_from_slice(&generation.to_le_bytes());
        p.extend_from_slice(&next_ino.to_le_bytes());
    });
}

fn encode_event(out: &mut Vec<u8>, event: Event<'_>) {
    frame(out, |p| match event {
        Event::Map { ino, kind, path } => {
            p.push(b'M');
            p.extend_from_slice(&ino.to_le_bytes());
            p.push(match kind {
                FileKind::File => 0,
                FileKind::Dir => 1,
            });
            put_str(p, path);
        }
        Event::Unmap { path } => {
            p.push(b'U');
            put_str(p, path);
        }
        Event::Rename { from, to } => {
            p.push(b'R');
            put_str(p, from);
            put_str(p, to);
        }
        Event::Drop { ino, path } => {
            p.push(b'D');
            p.extend_from_slice(&ino.to_le_bytes());
            put_str(p, path);
        }
    });
}

/// Reads a payload's fields in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn decode_header(payload: &[u8]) -> Option<Mapping> {
    let mut f = Fields(payload);
    if f.u8()? != b'H' || f.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let generation = f.u32()?;
    let next_ino = f.u64()?;
    f.end()?;
    Some(Mapping {
        generation,
        next_ino: next_ino.max(ROOT_INO + 1),
        paths: BTreeMap::new(),
    })
}

fn decode_event(payload: &[u8]) -> Option<Event<'_>> {
    let mut f = Fields(payload);
    let event = match f.u8()? {
        b'M' => {
            let ino = f.u64()?;
            let kind = match f.u8()? {
                0 => FileKind::File,
                1 => FileKind::Dir,
                _ => return None,
            };
            Event::Map {
                ino,
                kind,
                path: f.str()?,
            }
        }
        b'U' => Event::Unmap { path: f.str()? },
        b'R' => Event::Rename {
            from: f.str()?,
            to: f.str()?,
        },
        b'D' => Event::Drop {
            ino: f.u64()?,
            path: f.str()?,
        },
        _ => return None,
    };
    f.end()?;
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path) -> (PathBuf, InodeJournal) {
        let path = dir.join("inodes");
        let j = InodeJournal::create(&path, 7, 2, std::iter::empty()).unwrap();
        (path, j)
    }

    #[test]
    fn events_replay_into_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut j) = journal(dir.path());
        j.append(Event::Map {
            ino: 2,
            kind: FileKind::Dir,
            path: "d",
        });
        j.append(Event::Map {
            ino: 3,
            kind: FileKind::File,
            path: "d/f",
        });
        j.append(Event::Map {
            ino: 4,
            kind: FileKind::File,
            path: "g",
        });
        j.append(Event::Rename { from: "d", to: "e" });
        j.append(Event::Unmap { path: "g" });
        j.append(Event::Drop { ino: 9, path: "e" });
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.skipped, 0);
        let m = loaded.mapping;
        assert_eq!(m.generation, 7);
        assert_eq!(m.next_ino, 5);
        let want: BTreeMap<String, (Ino, FileKind)> = [
            ("e".to_string(), (2, FileKind::Dir)),
            ("e/f".to_string(), (3, FileKind::File)),
        ]
        .into();
        assert_eq!(m.paths, want);
    }

    #[test]
    fn a_cut_record_and_garbage_after_it_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut j) = journal(dir.path());
        j.append(Event::Map {
            ino: 2,
            kind: FileKind::File,
            path: "a",
        });
        let whole = std::fs::metadata(&path).unwrap().len();
        j.append(Event::Map {
            ino: 3,
            kind: FileKind::File,
            path: "b",
        });
        for cut in whole..std::fs::metadata(&path).unwrap().len() {
            let data = std::fs::read(&path).unwrap();
            let other = dir.path().join("cut");
            std::fs::write(&other, &data[..cut as usize]).unwrap();
            let loaded = load(&other).unwrap();
            assert_eq!(loaded.mapping.paths.len(), 1, "cut at {cut}");
            assert_eq!(loaded.skipped, cut - whole);
        }
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(load(&path).unwrap().mapping.paths.len(), 1);
        std::fs::write(&path, b"not a journal").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn generations_skip_zero_and_stay_in_range() {
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(5), 6);
        assert_eq!(next_generation(GENERATIONS - 1), 1);
        let g = unknown_generation();
        assert!(g > 0 && g < GENERATIONS);
    }
}
