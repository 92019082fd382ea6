//! An HTTP body that streams a byte range of an open file: what GetObject answers with.
//!
//! Each chunk is read on the blocking pool straight into a fresh buffer's spare capacity (std's
//! `read_to_end` does not zero it first), so a byte is copied once, from the page cache. Through
//! `tokio::fs::File` it was copied twice more: zeroing our buffer, then out of tokio's own.

use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// Largest chunk read at once.
const CHUNK: u64 = 1024 * 1024;

type Chunk = (File, std::io::Result<Vec<u8>>);

/// `remaining` bytes of `file` from its current position.
#[derive(Debug)]
pub struct FileBody {
    /// `None` while a read holds it.
    file: Option<File>,
    remaining: u64,
    reading: Option<JoinHandle<Chunk>>,
}

impl FileBody {
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file: Some(file),
            remaining: len,
            reading: None,
        }
    }
}

fn read_chunk(mut file: File, want: u64) -> Chunk {
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    let r = (&mut file).take(want).read_to_end(&mut buf).map(|_| buf);
    (file, r)
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let reading = match this.reading.as_mut() {
            Some(r) => r,
            None => {
                let Some(file) = this.file.take() else {
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "the object's file was lost by a failed read",
                    ))));
                };
                let want = this.remaining.min(CHUNK);
                this.reading
                    .insert(tokio::task::spawn_blocking(move || read_chunk(file, want)))
            }
        };
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let (file, read) = joined.map_err(std::io::Error::other)?;
        this.file = Some(file);
        let buf = read?;
        if buf.is_empty() {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the object's file ended {} bytes early", this.remaining),
            ))));
        }
        this.remaining = this.remaining.saturating_sub(buf.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::{Seek, SeekFrom, Write};

    #[tokio::test]
    async fn streams_a_range_and_reports_a_short_file() {
        let mut file = tempfile::tempfile().unwrap();
        // Over one chunk, so it takes several reads.
        let bytes: Vec<u8> = (0..1_700_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&bytes).unwrap();
        file.seek(SeekFrom::Start(1000)).unwrap();
        let body = FileBody::new(file.try_clone().unwrap(), 1_500_000);
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &bytes[1000..1_501_000]);

        file.seek(SeekFrom::Start(1_699_990)).unwrap();
        let body = FileBody::new(file, 20);
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
