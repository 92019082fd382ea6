//! COS buckets as files: the storage behind the S3 endpoint, with no knowledge of HTTP or S3
//! types.
//!
//! Layout under the root (`<state>/cos`), per bucket: `bucket.json` (creation time),
//! `objects/<sha256 of key>.json` (one object's metadata, its key included), `data/<id>` (one
//! object's bytes, never changed once written) and `uploads/<uploadId>/` (multipart uploads, see
//! `multipart`). File names never derive from a key's text, so any key (`dir/`, `a//b`, `..`,
//! unicode, 1024 bytes) is safe. A write streams into a fresh data file, then renames the metadata
//! file into place under the bucket's lock and only then drops the old data file: a reader, who
//! opens the data file under the same lock, sees the old object or the new one, never half of one.
//! Opening a bucket drops what a crash left half-written. Must not touch anything outside its root.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{
    Scratch, blocking, check_body, md5_of_file, read_dir, read_json, remove_quietly, write_body,
    write_json,
};
use super::listing::{ListPage, ListQuery, list};
use super::model::{BoxError, CosError, ObjectAttrs, ObjectMeta, PutParams, WriteCondition};
use super::upload::{Upload, load_uploads};
use crate::state::{random_id, unix_now};

/// Every configured bucket.
#[derive(Debug)]
pub struct CosStore {
    buckets: BTreeMap<String, Arc<Bucket>>,
}

impl CosStore {
    /// Opens (creating what is missing) the buckets `names` under `root`.
    pub fn open(root: &Path, names: &[String]) -> Result<CosStore, CosError> {
        let mut buckets = BTreeMap::new();
        for name in names {
            let bucket = Bucket::open(root, name)?;
            buckets.insert(name.clone(), Arc::new(bucket));
        }
        Ok(CosStore { buckets })
    }

    pub fn bucket(&self, name: &str) -> Result<&Arc<Bucket>, CosError> {
        self.buckets
            .get(name)
            .ok_or_else(|| CosError::NoSuchBucket {
                bucket: name.to_owned(),
            })
    }

    pub fn buckets(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        self.buckets.values()
    }

    pub fn names(&self) -> Vec<String> {
        self.buckets.keys().cloned().collect()
    }
}

/// One bucket: its objects in memory (for listing) and on disk.
#[derive(Debug)]
pub struct Bucket {
    name: String,
    dir: PathBuf,
    created: i64,
    objects: RwLock<BTreeMap<String, Arc<ObjectMeta>>>,
    uploads: Mutex<BTreeMap<String, Arc<Upload>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BucketRecord {
    created: i64,
}

impl Bucket {
    fn open(root: &Path, name: &str) -> Result<Bucket, CosError> {
        let dir = root.join(name);
        for sub in ["objects", "data", "uploads"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(CosError::io(format!("cannot create {}", path.display())))?;
        }
        let record_path = dir.join("bucket.json");
        let created = match read_json::<BucketRecord>(&record_path)? {
            Some(record) => record.created,
            None => {
                let record = BucketRecord {
                    created: unix_now(),
                };
                write_json(&record_path, &record)?;
                record.created
            }
        };
        let objects = load_objects(&dir)?;
        let uploads = load_uploads(&dir.join("uploads"))?;
        Ok(Bucket {
            name: name.to_owned(),
            dir,
            created,
            objects: RwLock::new(objects),
            uploads: Mutex::new(uploads),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unix seconds.
    pub fn created(&self) -> i64 {
        self.created
    }

    fn objects(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<ObjectMeta>>> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn objects_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Arc<ObjectMeta>>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn uploads(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Upload>>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn uploads_dir(&self) -> PathBuf {
        self.dir.join("uploads")
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join("objects").join(format!(
            "{}.json",
            hex::encode(Sha256::digest(key.as_bytes()))
        ))
    }

    fn data_path(&self, data: &str) -> PathBuf {
        self.dir.join("data").join(data)
    }

    /// A name and path for a new data file.
    pub(super) fn new_data(&self) -> (String, PathBuf) {
        let id = random_id("", 24);
        let path = self.data_path(&id);
        (id, path)
    }

    fn no_such_key(&self, key: &str) -> CosError {
        CosError::NoSuchKey {
            bucket: self.name.clone(),
            key: key.to_owned(),
        }
    }

    /// The object's metadata.
    pub fn get(&self, key: &str) -> Result<Arc<ObjectMeta>, CosError> {
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| self.no_such_key(key))
    }

    /// The object's metadata and its data, opened under the lock so that a concurrent write or
    /// delete cannot take the file away.
    pub fn open_object(&self, key: &str) -> Result<(Arc<ObjectMeta>, std::fs::File), CosError> {
        let objects = self.objects();
        let meta = objects
            .get(key)
            .cloned()
            .ok_or_else(|| self.no_such_key(key))?;
        let path = self.data_path(&meta.data);
        let file = std::fs::File::open(&path)
            .map_err(CosError::io(format!("cannot open {}", path.display())))?;
        Ok((meta, file))
    }

    /// One page of a listing.
    pub fn list(&self, query: &ListQuery<'_>) -> ListPage<Arc<ObjectMeta>> {
        list(&self.objects(), query)
    }

    /// Stores `body` under `key`.
    pub async fn put<B>(
        self: &Arc<Self>,
        key: &str,
        body: B,
        params: PutParams,
    ) -> Result<Arc<ObjectMeta>, CosError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (data, path) = self.new_data();
        let scratch = Scratch::new(&path);
        let (size, md5) = write_body(&path, body, key).await?;
        check_body(
            key,
            size,
            &md5,
            params.content_length,
            params.content_md5.as_deref(),
        )?;
        let meta = ObjectMeta {
            key: key.to_owned(),
            data,
            size,
            etag: hex::encode(md5),
            last_modified: unix_now(),
            attrs: params.attrs,
            parts_count: None,
        };
        let bucket = Arc::clone(self);
        // The guard moves into the blocking task, which runs to its end even if this request is
        // dropped meanwhile: the file stays exactly when the commit succeeded.
        blocking(move || {
            let meta = bucket.commit(meta, &params.condition)?;
            scratch.keep();
            Ok(meta)
        })
        .await
    }

    /// Copies `src_key` of `src` to `key` here, with `attrs` or (when `None`) the source's.
    pub async fn copy_from(
        self: &Arc<Self>,
        key: &str,
        src: &Arc<Bucket>,
        src_key: &str,
        attrs: Option<ObjectAttrs>,
    ) -> Result<Arc<ObjectMeta>, CosError> {
        let (dst, src, key, src_key) = (
            Arc::clone(self),
            Arc::clone(src),
            key.to_owned(),
            src_key.to_owned(),
        );
        blocking(move || {
            let (data, path) = dst.new_data();
            let result = (|| {
                let source = src.link_or_copy(&src_key, &path)?;
                // A multipart ETag is not the MD5 of the bytes; a copied object's is.
                let etag = if source.etag.contains('-') {
                    hex::encode(md5_of_file(&path)?)
                } else {
                    source.etag.clone()
                };
                let meta = ObjectMeta {
                    key,
                    data,
                    size: source.size,
                    etag,
                    last_modified: unix_now(),
                    attrs: attrs.unwrap_or_else(|| source.attrs.clone()),
                    parts_count: None,
                };
                dst.commit(meta, &WriteCondition::Always)
            })();
            if result.is_err() {
                remove_quietly(&path);
            }
            result
        })
        .await
    }

    /// Makes `target` hold `key`'s bytes: a hard link (data files never change), or a copy when
    /// linking fails (another file system).
    fn link_or_copy(&self, key: &str, target: &Path) -> Result<Arc<ObjectMeta>, CosError> {
        let (meta, mut file) = {
            let objects = self.objects();
            let meta = objects
                .get(key)
                .cloned()
                .ok_or_else(|| self.no_such_key(key))?;
            let path = self.data_path(&meta.data);
            if std::fs::hard_link(&path, target).is_ok() {
                return Ok(meta);
            }
            let file = std::fs::File::open(&path)
                .map_err(CosError::io(format!("cannot open {}", path.display())))?;
            (meta, file)
        };
        let mut out = std::fs::File::create(target)
            .map_err(CosError::io(format!("cannot create {}", target.display())))?;
        io::copy(&mut file, &mut out).map_err(CosError::io(format!(
            "cannot copy {key:?} to {}",
            target.display()
        )))?;
        Ok(meta)
    }

    /// Makes `meta` the object of its key if `condition` holds, then drops the data it replaced.
    pub(super) fn commit(
        &self,
        meta: ObjectMeta,
        condition: &WriteCondition,
    ) -> Result<Arc<ObjectMeta>, CosError> {
        let path = self.meta_path(&meta.key);
        let tmp = path.with_extension(format!("{}.tmp", meta.data));
        write_json(&tmp, &meta)?;
        let mut objects = self.objects_mut();
        if let Err(e) = condition.check(&meta.key, objects.get(&meta.key)) {
            drop(objects);
            remove_quietly(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            drop(objects);
            remove_quietly(&tmp);
            return Err(CosError::io(format!(
                "cannot rename {} into place",
                tmp.display()
            ))(e));
        }
        let meta = Arc::new(meta);
        let old = objects.insert(meta.key.clone(), Arc::clone(&meta));
        drop(objects);
        if let Some(old) = old.filter(|old| old.data != meta.data) {
            remove_quietly(&self.data_path(&old.data));
        }
        Ok(meta)
    }

    /// Deletes `key`; whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool, CosError> {
        let mut objects = self.objects_mut();
        let Some(old) = objects.get(key).cloned() else {
            return Ok(false);
        };
        let path = self.meta_path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CosError::io(format!("cannot remove {}", path.display()))(e)),
        }
        objects.remove(key);
        drop(objects);
        remove_quietly(&self.data_path(&old.data));
        Ok(true)
    }
}

/// Loads `objects/*.json`, removes what a crash left (temporary files, data no object names).
fn load_objects(dir: &Path) -> Result<BTreeMap<String, Arc<ObjectMeta>>, CosError> {
    let objects_dir = dir.join("objects");
    let mut objects = BTreeMap::new();
    for entry in read_dir(&objects_dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !name.ends_with(".json") || name.matches('.').count() != 1 {
            remove_quietly(&path);
            continue;
        }
        let Some(meta) = read_json::<ObjectMeta>(&path)? else {
            continue;
        };
        objects.insert(meta.key.clone(), Arc::new(meta));
    }
    let data_dir = dir.join("data");
    let referenced: std::collections::HashSet<&str> =
        objects.values().map(|m| m.data.as_str()).collect();
    for entry in read_dir(&data_dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !referenced.contains(name.as_str()) {
            remove_quietly(&entry.path());
        }
    }
    let missing: Vec<String> = objects
        .values()
        .filter(|m| !data_dir.join(&m.data).exists())
        .map(|m| m.key.clone())
        .collect();
    for key in missing {
        tracing::warn!(bucket_dir = %dir.display(), key, "COS object has no data file; dropped");
        objects.remove(&key);
    }
    Ok(objects)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::files::base64;
    use super::*;
    use http_body_util::Full;
    use s3s::crypto::{Checksum, Md5};

    pub(in crate::cos) fn body(bytes: &[u8]) -> Full<Bytes> {
        Full::new(Bytes::copy_from_slice(bytes))
    }

    pub(in crate::cos) fn open(dir: &Path) -> CosStore {
        CosStore::open(dir, &["b-1250000000".to_owned()]).unwrap()
    }

    fn read(bucket: &Bucket, key: &str) -> Vec<u8> {
        use std::io::Read;
        let (_, mut file) = bucket.open_object(key).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[tokio::test]
    async fn odd_keys_are_stored_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [
            "dir/",
            "a//b",
            "..",
            "../escape",
            "dir/ü 你好",
            &"k".repeat(1024),
        ];
        {
            let store = open(dir.path());
            let bucket = store.bucket("b-1250000000").unwrap();
            for key in keys {
                let meta = bucket
                    .put(key, body(key.as_bytes()), PutParams::default())
                    .await
                    .unwrap();
                assert_eq!(meta.etag, hex::encode(Md5::checksum(key.as_bytes())));
            }
        }
        let store = open(dir.path());
        let bucket = store.bucket("b-1250000000").unwrap();
        for key in keys {
            assert_eq!(read(bucket, key), key.as_bytes(), "{key}");
            assert_eq!(bucket.get(key).unwrap().size, key.len() as u64);
        }
        // Nothing was written outside the bucket's directories.
        let mut top: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["b-1250000000"]);
        assert!(matches!(
            store.bucket("nope"),
            Err(CosError::NoSuchBucket { .. })
        ));
    }

    #[tokio::test]
    async fn overwrite_delete_and_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("b-1250000000/data");
        {
            let store = open(dir.path());
            let bucket = store.bucket("b-1250000000").unwrap();
            bucket
                .put("k", body(b"one"), PutParams::default())
                .await
                .unwrap();
            bucket
                .put("k", body(b"two"), PutParams::default())
                .await
                .unwrap();
            assert_eq!(read(bucket, "k"), b"two");
            assert_eq!(
                std::fs::read_dir(&data_dir).unwrap().count(),
                1,
                "old data dropped"
            );
            bucket
                .put("gone", body(b"x"), PutParams::default())
                .await
                .unwrap();
            assert!(bucket.delete("gone").unwrap());
            assert!(!bucket.delete("gone").unwrap(), "deleting twice is fine");
            assert!(matches!(
                bucket.get("gone"),
                Err(CosError::NoSuchKey { .. })
            ));
        }
        // A crash mid-write leaves an unnamed data file and a temporary metadata file.
        std::fs::write(data_dir.join("orphan"), b"half").unwrap();
        std::fs::write(dir.path().join("b-1250000000/objects/x.json.abc.tmp"), b"{").unwrap();
        let store = open(dir.path());
        let bucket = store.bucket("b-1250000000").unwrap();
        assert_eq!(read(bucket, "k"), b"two");
        assert!(!data_dir.join("orphan").exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("b-1250000000/objects"))
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn content_md5_length_and_conditions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let bucket = store.bucket("b-1250000000").unwrap();
        let good = base64(&Md5::checksum(b"data"));
        let put = |md5: &str| PutParams {
            content_md5: Some(md5.to_owned()),
            ..PutParams::default()
        };
        bucket.put("k", body(b"data"), put(&good)).await.unwrap();
        let wrong = base64(&Md5::checksum(b"other"));
        let err = bucket
            .put("k", body(b"data"), put(&wrong))
            .await
            .unwrap_err();
        assert!(matches!(err, CosError::BadDigest { .. }), "{err}");
        let err = bucket
            .put("k", body(b"data"), put("nonsense"))
            .await
            .unwrap_err();
        assert!(matches!(err, CosError::InvalidDigest { .. }), "{err}");
        let short = PutParams {
            content_length: Some(10),
            ..PutParams::default()
        };
        let err = bucket.put("k", body(b"data"), short).await.unwrap_err();
        assert!(matches!(
            err,
            CosError::IncompleteBody {
                expected: 10,
                received: 4,
                ..
            }
        ));
        let if_absent = PutParams {
            condition: WriteCondition::IfAbsent,
            ..PutParams::default()
        };
        let err = bucket
            .put("k", body(b"new"), if_absent.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, CosError::PreconditionFailed { .. }));
        bucket.put("fresh", body(b"new"), if_absent).await.unwrap();
        let etag = bucket.get("k").unwrap().etag.clone();
        let if_match = |etag: &str| PutParams {
            condition: WriteCondition::IfMatch(etag.to_owned()),
            ..PutParams::default()
        };
        assert!(bucket.put("k", body(b"x"), if_match("0000")).await.is_err());
        bucket.put("k", body(b"x"), if_match(&etag)).await.unwrap();
        // Failed writes left no data behind: k, fresh.
        let data = std::fs::read_dir(dir.path().join("b-1250000000/data"))
            .unwrap()
            .count();
        assert_eq!(data, 2);
        assert_eq!(read(bucket, "k"), b"x");
    }

    #[tokio::test]
    async fn copies_keep_or_replace_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let bucket = store.bucket("b-1250000000").unwrap();
        let attrs = ObjectAttrs {
            content_type: Some("text/plain".into()),
            metadata: BTreeMap::from([("mode".to_owned(), "644".to_owned())]),
            ..ObjectAttrs::default()
        };
        let params = PutParams {
            attrs: attrs.clone(),
            ..PutParams::default()
        };
        let src = bucket.put("src", body(b"hello"), params).await.unwrap();
        let copy = bucket.copy_from("dst", bucket, "src", None).await.unwrap();
        assert_eq!((copy.etag.as_str(), copy.size), (src.etag.as_str(), 5));
        assert_eq!(copy.attrs, attrs);
        let replaced = bucket
            .copy_from("src", bucket, "src", Some(ObjectAttrs::default()))
            .await
            .unwrap();
        assert_eq!(replaced.attrs, ObjectAttrs::default());
        assert_eq!(
            read(bucket, "src"),
            b"hello",
            "copy onto itself keeps the bytes"
        );
        assert_eq!(read(bucket, "dst"), b"hello");
        let err = bucket
            .copy_from("x", bucket, "missing", None)
            .await
            .unwrap_err();
        assert!(matches!(err, CosError::NoSuchKey { .. }));
    }
}
