//! File helpers of the COS store: JSON files, scratch files that vanish unless committed,
//! request bodies streamed to disk with their MD5, `Content-Length`/`Content-MD5` checks, and
//! blocking work moved off the async threads.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use s3s::crypto::{Checksum, Md5};
use serde::Serialize;

use super::model::{BoxError, CosError};

pub(super) fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, CosError> {
    let entries =
        std::fs::read_dir(dir).map_err(CosError::io(format!("cannot read {}", dir.display())))?;
    entries
        .collect::<Result<Vec<_>, _>>()
        .map_err(CosError::io(format!("cannot read {}", dir.display())))
}

/// A JSON file, or `None` if it does not exist.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, CosError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CosError::Io {
                context: format!("{} is corrupt", path.display()),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CosError::io(format!("cannot read {}", path.display()))(e)),
    }
}

/// Writes a JSON file in one go (callers rename it into place when it must appear atomically).
pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CosError> {
    let bytes = serde_json::to_vec(value).map_err(|e| CosError::Io {
        context: format!("cannot encode {}", path.display()),
        source: io::Error::other(e),
    })?;
    std::fs::write(path, bytes).map_err(CosError::io(format!("cannot write {}", path.display())))
}

/// A file being written: removed when dropped (an error, a request dropped mid-body) unless
/// [`Scratch::keep`] was called once it was committed.
#[derive(Debug)]
pub(super) struct Scratch(Option<PathBuf>);

impl Scratch {
    pub(super) fn new(path: &Path) -> Scratch {
        Scratch(Some(path.to_owned()))
    }

    pub(super) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            remove_quietly(&path);
        }
    }
}

/// Removes a file that is no longer needed; a failure only leaves garbage, so it is logged.
pub(super) fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a COS file");
    }
}

/// Runs blocking file work off the async threads.
pub(super) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, CosError> + Send + 'static,
) -> Result<R, CosError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CosError::Io {
            context: "COS file task failed".into(),
            source: io::Error::other(e.to_string()),
        })?
}

/// Bytes gathered before each write to a data file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Streams `body` into a new file at `path`; its size and MD5.
pub(super) async fn write_body<B>(
    path: &Path,
    body: B,
    key: &str,
) -> Result<(u64, [u8; 16]), CosError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let context = || format!("cannot write {}", path.display());
    let file = tokio::fs::File::create(path)
        .await
        .map_err(CosError::io(context()))?;
    // A paced body arrives in small frames; each unbuffered write would be its own trip to the
    // blocking pool.
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut md5 = Md5::new();
    let mut size = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CosError::Body {
            key: key.to_owned(),
            source: e.into(),
        })?;
        if let Ok(data) = frame.into_data() {
            md5.update(&data);
            size += data.len() as u64;
            file.write_all(&data)
                .await
                .map_err(CosError::io(context()))?;
        }
    }
    file.flush().await.map_err(CosError::io(context()))?;
    Ok((size, md5.finalize()))
}

/// Checks a received body against `Content-Length` and `Content-MD5`.
pub(super) fn check_body(
    key: &str,
    size: u64,
    md5: &[u8; 16],
    content_length: Option<u64>,
    content_md5: Option<&str>,
) -> Result<(), CosError> {
    if let Some(expected) = content_length
        && expected != size
    {
        return Err(CosError::IncompleteBody {
            key: key.to_owned(),
            expected,
            received: size,
        });
    }
    if let Some(value) = content_md5 {
        let value = value.trim();
        if value.len() != 24 || !value.ends_with("==") {
            return Err(CosError::InvalidDigest {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        let actual = base64(md5);
        if actual != value {
            return Err(CosError::BadDigest {
                key: key.to_owned(),
                expected: value.to_owned(),
                actual,
            });
        }
    }
    Ok(())
}

/// The MD5 of a file's bytes.
pub(super) fn md5_of_file(path: &Path) -> Result<[u8; 16], CosError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(CosError::io(format!("cannot open {}", path.display())))?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(CosError::io(format!("cannot read {}", path.display())))?;
        if n == 0 {
            return Ok(md5.finalize());
        }
        md5.update(&buf[..n]);
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_answers() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        // MD5 of the empty string, as a Content-MD5 header carries it.
        assert_eq!(base64(&Md5::checksum(b"")), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn scratch_files_vanish_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (dropped, kept) = (dir.path().join("dropped"), dir.path().join("kept"));
        for path in [&dropped, &kept] {
            std::fs::write(path, b"x").unwrap();
        }
        drop(Scratch::new(&dropped));
        Scratch::new(&kept).keep();
        assert!(!dropped.exists());
        assert!(kept.exists());
    }

    #[test]
    fn bodies_are_checked_against_their_headers() {
        let md5 = Md5::checksum(b"data");
        assert!(check_body("k", 4, &md5, Some(4), Some(&base64(&md5))).is_ok());
        assert!(matches!(
            check_body("k", 4, &md5, Some(5), None),
            Err(CosError::IncompleteBody {
                expected: 5,
                received: 4,
                ..
            })
        ));
        assert!(matches!(
            check_body("k", 4, &md5, None, Some("bm90IGFuIG1kNQ==")),
            Err(CosError::InvalidDigest { .. })
        ));
    }
}
