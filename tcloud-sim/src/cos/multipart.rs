//! Multipart uploads of a bucket: starting one, storing parts (from a request body or a range of
//! another object), completing and aborting; the files of one upload are `upload`'s. The object
//! appears only when CompleteMultipartUpload has checked every part (order, ETag, size) and
//! concatenated them into one data file; a failed, aborted or unfinished upload leaves nothing
//! visible. Must not touch anything outside its bucket's `uploads/` and `data/` directories.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use s3s::crypto::{Checksum, Md5};

use super::files::{Scratch, blocking, check_body, remove_quietly, write_body};
use super::model::{BoxError, CosError, MIN_PART_SIZE, ObjectAttrs, ObjectMeta, WriteCondition};
use super::store::Bucket;
use super::upload::{PartMeta, Upload};
use crate::state::unix_now;

/// Part numbers S3 accepts.
pub const PART_NUMBERS: std::ops::RangeInclusive<i32> = 1..=10_000;

fn part_number(upload_id: &str, number: i32) -> Result<u32, CosError> {
    if !PART_NUMBERS.contains(&number) {
        return Err(CosError::InvalidArgument(format!(
            "upload {upload_id}: part number {number} is not within 1..=10000"
        )));
    }
    u32::try_from(number).map_err(|_| {
        CosError::InvalidArgument(format!(
            "upload {upload_id}: part number {number} is negative"
        ))
    })
}

impl Bucket {
    /// Starts an upload of `key`.
    pub fn create_upload(&self, key: &str, attrs: ObjectAttrs) -> Result<Arc<Upload>, CosError> {
        let upload = Arc::new(Upload::create(&self.uploads_dir(), key, attrs)?);
        self.uploads()
            .insert(upload.id.clone(), Arc::clone(&upload));
        Ok(upload)
    }

    /// The upload `upload_id` of `key`.
    pub fn upload(&self, upload_id: &str, key: &str) -> Result<Arc<Upload>, CosError> {
        self.uploads()
            .get(upload_id)
            .filter(|u| u.key == key)
            .cloned()
            .ok_or_else(|| CosError::NoSuchUpload {
                upload_id: upload_id.to_owned(),
                key: key.to_owned(),
            })
    }

    /// Every upload in progress, by key and then upload ID.
    pub fn list_uploads(&self) -> Vec<Arc<Upload>> {
        let mut uploads: Vec<Arc<Upload>> = self.uploads().values().cloned().collect();
        uploads.sort_by(|a, b| (&a.key, a.initiated, &a.id).cmp(&(&b.key, b.initiated, &b.id)));
        uploads
    }

    /// Stores part `number` of `upload`.
    pub async fn upload_part<B>(
        &self,
        upload: &Arc<Upload>,
        number: i32,
        body: B,
        content_length: Option<u64>,
        content_md5: Option<&str>,
    ) -> Result<PartMeta, CosError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let number = part_number(&upload.id, number)?;
        let (data, path) = upload.new_part_data();
        let scratch = Scratch::new(&path);
        let (size, md5) = write_body(&path, body, &upload.key).await.map_err(|e| {
            if upload.dir.exists() {
                e
            } else {
                CosError::NoSuchUpload {
                    upload_id: upload.id.clone(),
                    key: upload.key.clone(),
                }
            }
        })?;
        check_body(&upload.key, size, &md5, content_length, content_md5)?;
        let part = PartMeta {
            number,
            data,
            size,
            etag: hex::encode(md5),
            last_modified: unix_now(),
        };
        let upload = Arc::clone(upload);
        blocking(move || {
            let part = upload.commit_part(part)?;
            scratch.keep();
            Ok(part)
        })
        .await
    }

    /// Stores part `number` of `upload` as bytes `range` (inclusive) of `src_key` in `src`.
    pub async fn upload_part_copy(
        &self,
        upload: &Arc<Upload>,
        number: i32,
        src: &Arc<Bucket>,
        src_key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<PartMeta, CosError> {
        let number = part_number(&upload.id, number)?;
        let (upload, src, src_key) = (Arc::clone(upload), Arc::clone(src), src_key.to_owned());
        blocking(move || {
            use std::io::{Read, Seek, SeekFrom, Write};
            let (meta, mut file) = src.open_object(&src_key)?;
            let (first, len) = match range {
                None => (0, meta.size),
                Some((first, last)) if first <= last && last < meta.size => {
                    (first, last - first + 1)
                }
                Some((first, last)) => {
                    return Err(CosError::InvalidRange {
                        key: src_key,
                        range: format!("bytes={first}-{last}"),
                        size: meta.size,
                    });
                }
            };
            let (data, path) = upload.new_part_data();
            let result = (|| {
                let context = || format!("cannot copy {src_key:?} into {}", path.display());
                file.seek(SeekFrom::Start(first))
                    .map_err(CosError::io(context()))?;
                let mut out = std::fs::File::create(&path).map_err(CosError::io(context()))?;
                let mut md5 = Md5::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut left = len;
                while left > 0 {
                    let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                    file.read_exact(&mut buf[..want])
                        .map_err(CosError::io(context()))?;
                    md5.update(&buf[..want]);
                    out.write_all(&buf[..want])
                        .map_err(CosError::io(context()))?;
                    left -= want as u64;
                }
                upload.commit_part(PartMeta {
                    number,
                    data,
                    size: len,
                    etag: hex::encode(md5.finalize()),
                    last_modified: unix_now(),
                })
            })();
            if result.is_err() {
                remove_quietly(&path);
            }
            result
        })
        .await
    }

    /// Finishes an upload: the object made of `parts` (number, ETag) appears at once.
    pub async fn complete_upload(
        self: &Arc<Self>,
        upload_id: &str,
        key: &str,
        parts: &[(i32, String)],
    ) -> Result<Arc<ObjectMeta>, CosError> {
        let upload = self.upload(upload_id, key)?;
        let chosen = choose_parts(&upload, parts)?;
        // Claim the upload: a concurrent Complete or Abort now finds it gone.
        if self.uploads().remove(upload_id).is_none() {
            return Err(CosError::NoSuchUpload {
                upload_id: upload_id.to_owned(),
                key: key.to_owned(),
            });
        }
        let bucket = Arc::clone(self);
        let claimed = Arc::clone(&upload);
        let result = blocking(move || {
            let (data, path) = bucket.new_data();
            let result = concatenate(&claimed, &chosen, &path).and_then(|size| {
                let meta = ObjectMeta {
                    key: claimed.key.clone(),
                    data,
                    size,
                    etag: multipart_etag(&chosen)?,
                    last_modified: unix_now(),
                    attrs: claimed.attrs.clone(),
                    parts_count: u32::try_from(chosen.len()).ok(),
                };
                bucket.commit(meta, &WriteCondition::Always)
            });
            if result.is_err() {
                remove_quietly(&path);
            }
            result
        })
        .await;
        match result {
            Ok(meta) => {
                if let Err(e) = std::fs::remove_dir_all(&upload.dir) {
                    tracing::warn!(path = %upload.dir.display(), error = %e, "cannot remove a completed COS upload");
                }
                Ok(meta)
            }
            Err(e) => {
                self.uploads().insert(upload.id.clone(), upload);
                Err(e)
            }
        }
    }

    /// Abandons an upload and its parts.
    pub fn abort_upload(&self, upload_id: &str, key: &str) -> Result<(), CosError> {
        let upload = self.upload(upload_id, key)?;
        self.uploads().remove(upload_id);
        std::fs::remove_dir_all(&upload.dir).map_err(CosError::io(format!(
            "cannot remove {}",
            upload.dir.display()
        )))
    }
}

/// Checks the parts CompleteMultipartUpload names against those uploaded.
fn choose_parts(upload: &Upload, requested: &[(i32, String)]) -> Result<Vec<PartMeta>, CosError> {
    if requested.is_empty() {
        return Err(CosError::NoParts {
            upload_id: upload.id.clone(),
        });
    }
    let stored = upload.parts();
    let mut chosen = Vec::with_capacity(requested.len());
    let mut previous = 0;
    for (number, etag) in requested {
        if *number <= previous {
            return Err(CosError::InvalidPartOrder {
                upload_id: upload.id.clone(),
                previous,
                next: *number,
            });
        }
        previous = *number;
        let invalid = |reason: String| CosError::InvalidPart {
            upload_id: upload.id.clone(),
            part_number: *number,
            reason,
        };
        let part = u32::try_from(*number)
            .ok()
            .and_then(|n| stored.get(&n))
            .ok_or_else(|| invalid("was never uploaded".into()))?;
        let etag = etag.trim().trim_matches('"');
        if etag != part.etag {
            return Err(invalid(format!("has ETag {:?}, not {etag:?}", part.etag)));
        }
        chosen.push(part.clone());
    }
    if let Some((_, all_but_last)) = chosen.split_last()
        && let Some(small) = all_but_last.iter().find(|p| p.size < MIN_PART_SIZE)
    {
        return Err(CosError::EntityTooSmall {
            upload_id: upload.id.clone(),
            part_number: small.number,
            size: small.size,
        });
    }
    Ok(chosen)
}

/// Writes the parts one after the other into `target`; the total size.
fn concatenate(upload: &Upload, parts: &[PartMeta], target: &Path) -> Result<u64, CosError> {
    let mut out = std::fs::File::create(target)
        .map_err(CosError::io(format!("cannot create {}", target.display())))?;
    let mut size = 0;
    for part in parts {
        let path = upload.dir.join(&part.data);
        let mut file = std::fs::File::open(&path)
            .map_err(CosError::io(format!("cannot open {}", path.display())))?;
        size += io::copy(&mut file, &mut out).map_err(CosError::io(format!(
            "cannot copy {} into {}",
            path.display(),
            target.display()
        )))?;
    }
    Ok(size)
}

/// `<MD5 of the parts' binary MD5s>-<number of parts>`, as S3 computes it.
pub fn multipart_etag(parts: &[PartMeta]) -> Result<String, CosError> {
    let mut md5 = Md5::new();
    for part in parts {
        let digest = hex::decode(&part.etag).map_err(|_| {
            CosError::InvalidArgument(format!(
                "part {} has ETag {:?}, not an MD5",
                part.number, part.etag
            ))
        })?;
        md5.update(&digest);
    }
    Ok(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}

#[cfg(test)]
mod tests {
    use super::super::model::PutParams;
    use super::super::store::tests::{body, open};
    use super::*;

    const BUCKET: &str = "b-1250000000";

    #[tokio::test]
    async fn complete_checks_order_etags_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let bucket = store.bucket(BUCKET).unwrap();
        let upload = bucket.create_upload("big", ObjectAttrs::default()).unwrap();
        let big = vec![7u8; MIN_PART_SIZE as usize];
        let p1 = bucket
            .upload_part(&upload, 1, body(&big), None, None)
            .await
            .unwrap();
        let p2 = bucket
            .upload_part(&upload, 2, body(b"small"), Some(5), None)
            .await
            .unwrap();
        let p3 = bucket
            .upload_part(&upload, 3, body(b"tail"), None, None)
            .await
            .unwrap();

        let err = bucket
            .complete_upload(
                &upload.id,
                "big",
                &[(2, p2.etag.clone()), (1, p1.etag.clone())],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CosError::InvalidPartOrder {
                    previous: 2,
                    next: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = bucket
            .complete_upload(&upload.id, "big", &[(1, p2.etag.clone())])
            .await
            .unwrap_err();
        assert!(
            matches!(err, CosError::InvalidPart { part_number: 1, .. }),
            "{err}"
        );
        let err = bucket
            .complete_upload(
                &upload.id,
                "big",
                &[(1, p1.etag.clone()), (4, p3.etag.clone())],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, CosError::InvalidPart { part_number: 4, .. }),
            "{err}"
        );
        let err = bucket
            .complete_upload(
                &upload.id,
                "big",
                &[
                    (1, p1.etag.clone()),
                    (2, p2.etag.clone()),
                    (3, p3.etag.clone()),
                ],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CosError::EntityTooSmall {
                    part_number: 2,
                    size: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            bucket.get("big").is_err(),
            "nothing visible before Complete"
        );

        // Part 2 again, big enough this time; the quoted ETag form is accepted too.
        let p2 = bucket
            .upload_part(&upload, 2, body(&big), None, None)
            .await
            .unwrap();
        let meta = bucket
            .complete_upload(
                &upload.id,
                "big",
                &[
                    (1, format!("\"{}\"", p1.etag)),
                    (2, p2.etag.clone()),
                    (3, p3.etag.clone()),
                ],
            )
            .await
            .unwrap();
        let mut md5s = Vec::new();
        for part in [&big[..], &big[..], b"tail"] {
            md5s.extend_from_slice(&Md5::checksum(part));
        }
        assert_eq!(
            meta.etag,
            format!("{}-3", hex::encode(Md5::checksum(&md5s)))
        );
        assert_eq!(meta.size, 2 * MIN_PART_SIZE + 4);
        assert_eq!(meta.parts_count, Some(3));
        assert!(bucket.list_uploads().is_empty());
        assert!(!upload.dir.exists());
        let err = bucket
            .complete_upload(&upload.id, "big", &[(3, p3.etag.clone())])
            .await
            .unwrap_err();
        assert!(matches!(err, CosError::NoSuchUpload { .. }));
    }

    #[tokio::test]
    async fn aborted_and_unfinished_uploads_leave_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let upload_id;
        {
            let store = open(dir.path());
            let bucket = store.bucket(BUCKET).unwrap();
            let upload = bucket.create_upload("k", ObjectAttrs::default()).unwrap();
            bucket
                .upload_part(&upload, 1, body(b"a"), None, None)
                .await
                .unwrap();
            assert!(
                bucket
                    .upload_part(&upload, 0, body(b"a"), None, None)
                    .await
                    .is_err()
            );
            assert!(
                bucket
                    .upload_part(&upload, 10_001, body(b"a"), None, None)
                    .await
                    .is_err()
            );
            let aborted = bucket.create_upload("k", ObjectAttrs::default()).unwrap();
            bucket.abort_upload(&aborted.id, "k").unwrap();
            assert!(matches!(
                bucket
                    .upload_part(&aborted, 1, body(b"a"), None, None)
                    .await,
                Err(CosError::NoSuchUpload { .. })
            ));
            assert!(matches!(
                bucket.upload(&upload.id, "other-key"),
                Err(CosError::NoSuchUpload { .. })
            ));
            upload_id = upload.id.clone();
        }
        let store = open(dir.path());
        let bucket = store.bucket(BUCKET).unwrap();
        assert!(bucket.get("k").is_err());
        let uploads = bucket.list_uploads();
        assert_eq!(uploads.len(), 1, "the unfinished upload survives a restart");
        assert_eq!(uploads[0].id, upload_id);
        let parts = uploads[0].parts();
        assert_eq!(parts.len(), 1);
        let meta = bucket
            .complete_upload(&upload_id, "k", &[(1, parts[&1].etag.clone())])
            .await
            .unwrap();
        assert_eq!(meta.size, 1);
    }

    #[tokio::test]
    async fn part_copy_takes_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let bucket = store.bucket(BUCKET).unwrap();
        bucket
            .put("src", body(b"0123456789"), PutParams::default())
            .await
            .unwrap();
        let upload = bucket.create_upload("dst", ObjectAttrs::default()).unwrap();
        let part = bucket
            .upload_part_copy(&upload, 1, bucket, "src", Some((2, 5)))
            .await
            .unwrap();
        assert_eq!(part.size, 4);
        assert_eq!(part.etag, hex::encode(Md5::checksum(b"2345")));
        let err = bucket
            .upload_part_copy(&upload, 2, bucket, "src", Some((5, 10)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CosError::InvalidRange { size: 10, .. }),
            "{err}"
        );
        let whole = bucket
            .upload_part_copy(&upload, 2, bucket, "src", None)
            .await
            .unwrap();
        assert_eq!(whole.size, 10);
    }
}
