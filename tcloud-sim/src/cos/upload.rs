//! One multipart upload as files: `uploads/<uploadId>/upload.json` (key, start time, the new
//! object's attributes), `part-<n>.json` (a part's size, ETag and data file) and the parts' data
//! files. A part is committed like an object (data first, metadata renamed into place). Loading
//! the uploads of a bucket removes what a crash left. Knows nothing of the bucket's objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::files::{read_dir, read_json, remove_quietly, write_json};
use super::model::{CosError, ObjectAttrs};
use crate::state::{random_id, unix_now};

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    pub number: u32,
    /// The data file in the upload's directory.
    pub data: String,
    pub size: u64,
    /// The MD5 of the part in hex, without quotes.
    pub etag: String,
    /// Unix seconds.
    pub last_modified: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadRecord {
    id: String,
    key: String,
    initiated: i64,
    #[serde(default)]
    attrs: ObjectAttrs,
}

/// A multipart upload in progress.
#[derive(Debug)]
pub struct Upload {
    pub id: String,
    pub key: String,
    /// Unix seconds.
    pub initiated: i64,
    pub attrs: ObjectAttrs,
    /// The upload's directory, `uploads/<uploadId>/`.
    pub(super) dir: PathBuf,
    parts: Mutex<BTreeMap<u32, PartMeta>>,
}

impl Upload {
    /// Starts an upload of `key` in a new directory under `uploads_dir`, its record written
    /// (atomically) before it is returned.
    pub(super) fn create(
        uploads_dir: &Path,
        key: &str,
        attrs: ObjectAttrs,
    ) -> Result<Upload, CosError> {
        let id = random_id("", 32);
        let dir = uploads_dir.join(&id);
        std::fs::create_dir(&dir)
            .map_err(CosError::io(format!("cannot create {}", dir.display())))?;
        let record = UploadRecord {
            id: id.clone(),
            key: key.to_owned(),
            initiated: unix_now(),
            attrs,
        };
        let path = dir.join("upload.json");
        let tmp = dir.join("upload.json.tmp");
        write_json(&tmp, &record)?;
        std::fs::rename(&tmp, &path)
            .map_err(CosError::io(format!("cannot create {}", path.display())))?;
        Ok(Upload {
            id: record.id,
            key: record.key,
            initiated: record.initiated,
            attrs: record.attrs,
            dir,
            parts: Mutex::new(BTreeMap::new()),
        })
    }

    fn parts_mut(&self) -> MutexGuard<'_, BTreeMap<u32, PartMeta>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parts uploaded so far, by part number.
    pub fn parts(&self) -> BTreeMap<u32, PartMeta> {
        self.parts_mut().clone()
    }

    fn part_meta_path(&self, number: u32) -> PathBuf {
        self.dir.join(format!("part-{number}.json"))
    }

    pub(super) fn new_part_data(&self) -> (String, PathBuf) {
        let id = format!("{}.part", random_id("", 24));
        let path = self.dir.join(&id);
        (id, path)
    }

    /// Makes `part` the upload's part of its number, dropping the data it replaced.
    pub(super) fn commit_part(&self, part: PartMeta) -> Result<PartMeta, CosError> {
        let path = self.part_meta_path(part.number);
        let tmp = path.with_extension(format!("{}.tmp", part.data));
        if let Err(e) = write_json(&tmp, &part) {
            if !self.dir.exists() {
                return Err(CosError::NoSuchUpload {
                    upload_id: self.id.clone(),
                    key: self.key.clone(),
                });
            }
            return Err(e);
        }
        let mut parts = self.parts_mut();
        if let Err(e) = std::fs::rename(&tmp, &path) {
            drop(parts);
            remove_quietly(&tmp);
            return Err(CosError::io(format!(
                "cannot rename {} into place",
                tmp.display()
            ))(e));
        }
        let old = parts.insert(part.number, part.clone());
        drop(parts);
        if let Some(old) = old.filter(|old| old.data != part.data) {
            remove_quietly(&self.dir.join(old.data));
        }
        Ok(part)
    }
}

/// Loads `uploads/*/`, removing what a crash left (an upload without `upload.json`, part files
/// no part names).
pub(super) fn load_uploads(dir: &Path) -> Result<BTreeMap<String, Arc<Upload>>, CosError> {
    let mut uploads = BTreeMap::new();
    for entry in read_dir(dir)? {
        let upload_dir = entry.path();
        let Some(record) = read_json::<UploadRecord>(&upload_dir.join("upload.json"))? else {
            if let Err(e) = std::fs::remove_dir_all(&upload_dir) {
                tracing::warn!(path = %upload_dir.display(), error = %e, "cannot remove a half-created COS upload");
            }
            continue;
        };
        let mut parts = BTreeMap::new();
        let entries = read_dir(&upload_dir)?;
        for entry in &entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("part-")
                && name.ends_with(".json")
                && name.matches('.').count() == 1
                && let Some(part) = read_json::<PartMeta>(&entry.path())?
            {
                parts.insert(part.number, part);
            }
        }
        for entry in &entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let named = name == "upload.json"
                || (name.starts_with("part-")
                    && name.ends_with(".json")
                    && name.matches('.').count() == 1)
                || parts.values().any(|p| p.data == name);
            if !named {
                remove_quietly(&entry.path());
            }
        }
        uploads.insert(
            record.id.clone(),
            Arc::new(Upload {
                id: record.id,
                key: record.key,
                initiated: record.initiated,
                attrs: record.attrs,
                dir: upload_dir,
                parts: Mutex::new(parts),
            }),
        );
    }
    Ok(uploads)
}
