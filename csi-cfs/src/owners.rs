//! Owner records of shared-instance subdirectories: which volume a directory belongs to, the size
//! it was asked with, and whether its volume was deleted with its data retained.
//!
//! Records live beside the volumes, in `<instance root>/.csi-volumes/<subdir>.json`, not inside
//! the directories: a pod sees only its own directory and cannot forge or remove its record. A
//! directory whose record names another live volume is never handed out again, a repeated create
//! with another size is ALREADY_EXISTS, and ListVolumes lists exactly the live records (and
//! directories older than records, which have none). Records are written whole (a temporary file
//! renamed over the old one), so a crash leaves the old record or the new one.
//!
//! Everything here is blocking file I/O on an NFS mount: callers run it off the async runtime.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};

/// The directory of records inside the instance root; never a volume's own directory.
pub const RECORDS_DIR: &str = ".csi-volumes";

/// What a record says of one subdirectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The CSI name of the volume (the PV name).
    pub volume: String,
    /// The size the volume was asked with (its required bytes, else its limit).
    pub capacity_bytes: u64,
    /// Its volume was deleted with `on-delete: retain`: the data stays, and a later volume of the
    /// same subdirectory (a claim of the same name recreated) may take it.
    #[serde(default)]
    pub released: bool,
}

/// The records of one mounted instance.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(root: &Path) -> Records {
        Records {
            dir: root.join(RECORDS_DIR),
        }
    }

    fn path(&self, subdir: &str) -> PathBuf {
        self.dir.join(format!("{subdir}.json"))
    }

    /// The record of `subdir`, or `None` when it has none. A record that cannot be read is an
    /// error naming the file: it is never taken for "nobody's".
    pub fn read(&self, subdir: &str) -> Result<Option<Owner>> {
        let path = self.path(subdir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "cannot read the owner record")(e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Internal(format!(
                "the owner record {} is damaged ({e}); fix or remove it",
                path.display()
            ))
        })
    }

    /// Writes the record of `subdir` whole.
    pub fn write(&self, subdir: &str, owner: &Owner) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io(&self.dir, "cannot create the owner records' directory"))?;
        let path = self.path(subdir);
        let temp = self.dir.join(format!(".{subdir}.json.tmp"));
        let body = serde_json::to_vec(owner)
            .map_err(|e| Error::Internal(format!("cannot encode an owner record: {e}")))?;
        let mut file =
            std::fs::File::create(&temp).map_err(io(&temp, "cannot write the owner record"))?;
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(io(&temp, "cannot write the owner record"))?;
        std::fs::rename(&temp, &path).map_err(io(&path, "cannot replace the owner record"))
    }

    /// Removes the record of `subdir`; a missing one is fine.
    pub fn remove(&self, subdir: &str) -> Result<()> {
        let path = self.path(subdir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, "cannot remove the owner record")(e)),
        }
    }

    /// Every subdirectory with a record, and its record, in name order.
    pub fn all(&self) -> Result<Vec<(String, Owner)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, "cannot list the owner records")(e)),
        };
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(subdir) = name
                .to_str()
                .filter(|n| !n.starts_with('.'))
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if let Some(owner) = self.read(subdir)? {
                all.push((subdir.to_owned(), owner));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }
}

/// Whether volume `name` asking for `capacity_bytes` may have `subdir`, given its record.
pub fn claim(subdir: &str, record: Option<&Owner>, name: &str, capacity_bytes: u64) -> Result<()> {
    match record {
        Some(owner) if !owner.released && owner.volume != name => {
            Err(Error::AlreadyExists(format!(
                "subdirectory {subdir} belongs to volume {}; choose a subdir-pattern that gives each claim its own directory",
                owner.volume
            )))
        }
        Some(owner) if !owner.released && owner.capacity_bytes != capacity_bytes => {
            Err(Error::AlreadyExists(format!(
                "volume {name} exists with {} bytes, not {capacity_bytes}",
                owner.capacity_bytes
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn owner(volume: &str, capacity_bytes: u64, released: bool) -> Owner {
        Owner {
            volume: volume.into(),
            capacity_bytes,
            released,
        }
    }

    #[test]
    fn records_round_trip_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        assert_eq!(records.read("b").unwrap(), None);
        assert!(records.all().unwrap().is_empty());
        records.write("b", &owner("pv-b", 5, false)).unwrap();
        records.write("a", &owner("pv-a", 1, false)).unwrap();
        records.write("a", &owner("pv-a", 1, true)).unwrap();
        let all = records.all().unwrap();
        assert_eq!(
            all,
            vec![
                ("a".to_owned(), owner("pv-a", 1, true)),
                ("b".to_owned(), owner("pv-b", 5, false))
            ]
        );
        records.remove("a").unwrap();
        records.remove("a").unwrap();
        assert_eq!(records.read("a").unwrap(), None);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_nobodys() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        std::fs::create_dir_all(dir.path().join(RECORDS_DIR)).unwrap();
        std::fs::write(dir.path().join(RECORDS_DIR).join("x.json"), b"{").unwrap();
        let err = records.read("x").unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
    }

    #[test]
    fn claims() {
        let live = owner("pv-a", 10, false);
        claim("d", None, "pv-a", 10).unwrap();
        claim("d", Some(&live), "pv-a", 10).unwrap();
        let taken = claim("d", Some(&live), "pv-b", 10).unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists);
        assert!(taken.to_string().contains("pv-a"), "{taken}");
        let resized = claim("d", Some(&live), "pv-a", 20).unwrap_err();
        assert_eq!(resized.code(), Code::AlreadyExists);
        claim("d", Some(&owner("pv-a", 10, true)), "pv-b", 20).unwrap();
    }
}
