//! Our object client driving the bench's bucket directly, with no file system in between: the
//! multipart uploads, ranged reads, listings and bulk puts that set up each benchmark's data and
//! measure the raw ceiling. Only the object API; it must not touch a mount.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;

use crate::bench::bucket::Bench;
use crate::bench::{MIB, for_each_index};

/// The raw client's part and range size, and how many it keeps in flight (setting up data).
pub(super) const RAW_PART: u64 = 8 * MIB;
pub(super) const RAW_IN_FLIGHT: usize = 16;

/// A part or range size, and how many the raw client keeps in flight.
pub(super) type Shape = (u64, usize);
/// Concurrent PutObject calls that fill the listed directory.
const PUT_WORKERS: usize = 64;

impl Bench {
    /// `count` empty objects `<dir>obj-NNNNN`, `PUT_WORKERS` at a time.
    pub(super) async fn put_many(&self, dir: &str, count: usize) -> anyhow::Result<()> {
        let (client, dir) = (self.client.clone(), dir.to_owned());
        for_each_index(count as u64, PUT_WORKERS, move |i| {
            let (client, key) = (client.clone(), format!("{dir}obj-{i:05}"));
            async move {
                client.put_object(&key, Bytes::new()).await?;
                anyhow::Ok(())
            }
        })
        .await
        .map(drop)
    }

    /// A multipart upload of `size` bytes in `RAW_PART` parts, `RAW_IN_FLIGHT` at a time.
    pub(super) async fn raw_write(&self, key: &str, size: u64) -> anyhow::Result<Duration> {
        self.raw_write_shaped(key, size, (RAW_PART, RAW_IN_FLIGHT))
            .await
    }

    /// A multipart upload of `size` bytes in parts of `part_size` bytes, `in_flight` at a time.
    pub(super) async fn raw_write_shaped(
        &self,
        key: &str,
        size: u64,
        (part_size, in_flight): Shape,
    ) -> anyhow::Result<Duration> {
        let part = Bytes::from(vec![0x5a_u8; part_size as usize]);
        let start = Instant::now();
        let upload_id = self.client.create_multipart_upload(key).await?;
        let (client, owned_key, id) = (self.client.clone(), key.to_owned(), upload_id.clone());
        let uploaded = for_each_index(size.div_ceil(part_size), in_flight, move |i| {
            let (client, key, id) = (client.clone(), owned_key.clone(), id.clone());
            let len = (size - i * part_size).min(part_size) as usize;
            let body = part.slice(..len);
            async move {
                let number = u32::try_from(i + 1)?;
                let etag = client.upload_part(&key, &id, number, body).await?;
                anyhow::Ok((number, etag))
            }
        })
        .await;
        let mut parts = match uploaded {
            Ok(parts) => parts,
            Err(e) => {
                let _ = self.client.abort_multipart_upload(key, &upload_id).await;
                return Err(e);
            }
        };
        parts.sort();
        self.client
            .complete_multipart_upload(key, &upload_id, &parts)
            .await?;
        Ok(start.elapsed())
    }

    /// Ranged GETs of `RAW_PART` bytes over the whole object, `RAW_IN_FLIGHT` at a time.
    pub(super) async fn raw_read(&self, key: &str, size: u64) -> anyhow::Result<Duration> {
        self.raw_read_shaped(key, size, (RAW_PART, RAW_IN_FLIGHT))
            .await
    }

    /// Ranged GETs of `part` bytes over the whole object, `in_flight` at a time.
    pub(super) async fn raw_read_shaped(
        &self,
        key: &str,
        size: u64,
        (part, in_flight): Shape,
    ) -> anyhow::Result<Duration> {
        let (client, owned_key) = (self.client.clone(), key.to_owned());
        let start = Instant::now();
        let lengths = for_each_index(size.div_ceil(part), in_flight, move |i| {
            let (client, key) = (client.clone(), owned_key.clone());
            let range = i * part..((i + 1) * part).min(size);
            async move { anyhow::Ok(client.get_object_range(&key, range, None).await?.len()) }
        })
        .await?;
        let elapsed = start.elapsed();
        let got: u64 = lengths.iter().map(|&n| n as u64).sum();
        if got != size {
            bail!("ranged GETs of {key} returned {got} bytes, not {size}");
        }
        Ok(elapsed)
    }

    /// Every ListObjectsV2 page of `dir` (delimiter `/`, 1000 keys a page), one after another,
    /// as a directory listing needs them; returns the time and the entries seen (the marker
    /// `dir` itself not counted).
    pub(super) async fn raw_list(&self, dir: &str) -> anyhow::Result<(Duration, usize)> {
        let start = Instant::now();
        let (mut token, mut seen) = (None::<String>, 0);
        loop {
            let page = self
                .client
                .list_objects_v2(dir, Some("/"), token.as_deref(), Some(1000))
                .await?;
            // The directory's own marker (`mkdir` makes one) is not an entry.
            seen += page.objects.iter().filter(|o| o.key != dir).count();
            seen += page.common_prefixes.len();
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok((start.elapsed(), seen)),
            }
        }
    }
}
