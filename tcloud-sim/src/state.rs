//! The simulator's persistent state: one JSON document in the state directory, rewritten
//! atomically (temporary file, fsync, rename) after every change, so a restart finds exactly what
//! the last answered call left.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Temporary keys handed out as CVM role credentials; they stay valid across restarts, as the real
/// cloud's do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TempKey {
    pub secret_id: String,
    pub secret_key: String,
    pub token: String,
    pub expires_at: i64,
    pub instance_id: String,
}

/// Everything that survives a restart. Each service adds its own section; `#[serde(default)]` on
/// every field keeps older state files loadable.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SimState {
    #[serde(default)]
    pub temp_keys: Vec<TempKey>,
    /// CBS disks, snapshots, attachments, pending transitions and create tokens.
    #[serde(default)]
    pub cbs: crate::cbs::model::CbsState,
    /// CFS file systems, mount targets, quotas, pending creations and create tokens.
    #[serde(default)]
    pub cfs: crate::cfs::model::CfsState,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    state: Mutex<SimState>,
}

impl Store {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("state file {} is corrupt", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SimState::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Store {
            path,
            state: Mutex::new(state),
        })
    }

    pub fn read<R>(&self, f: impl FnOnce(&SimState) -> R) -> R {
        f(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `f` and persists the result; if persisting fails the change is rolled back.
    pub fn update<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> Result<R, ApiError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        let result = f(&mut next);
        self.persist(&next)
            .map_err(|e| ApiError::internal(format!("simulator cannot save its state: {e}")))?;
        *guard = next;
        Ok(result)
    }

    /// Like [`Store::update`], but only a successful `f` is kept and persisted: an `Err` leaves the
    /// state (and the file) untouched. `f` should check everything before it changes anything.
    pub fn try_update<R>(
        &self,
        f: impl FnOnce(&mut SimState) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        let result = f(&mut next)?;
        self.persist(&next)
            .map_err(|e| ApiError::internal(format!("simulator cannot save its state: {e}")))?;
        *guard = next;
        Ok(result)
    }

    /// Writes the state to a private (0600) temporary file, fsyncs it, renames it over
    /// `state.json` and fsyncs the directory, so the rename itself survives a crash.
    fn persist(&self, state: &SimState) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` applies only when the file is created: a temporary file left by a crash of an
        // older version keeps its bits unless set here.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: the clock of pending transitions.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` in Beijing time (UTC+8), as the API prints times.
pub fn format_time(unix_secs: i64) -> String {
    let t = unix_secs + 8 * 3600;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `prefix` + `len` random lowercase alphanumerics, like `disk-8kq2m1xz`.
pub fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    for _ in 0..len {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}

/// Runs blocking data-plane work (copies, `losetup`, directory walks) off the async threads.
pub async fn run_blocking<R: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<R> + Send + 'static,
) -> std::io::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("data-plane task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .update(|s| {
                s.temp_keys.push(TempKey {
                    secret_id: "a".into(),
                    secret_key: "b".into(),
                    token: "c".into(),
                    expires_at: 1,
                    instance_id: "ins-1".into(),
                })
            })
            .unwrap();
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.read(|s| s.temp_keys.len()), 1);
    }

    #[test]
    fn a_failed_try_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .try_update(|s| {
                s.temp_keys.clear();
                Err::<(), _>(ApiError::invalid_value("no"))
            })
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
        assert!(
            !dir.path().join("state.json").exists(),
            "nothing was persisted"
        );
        store.try_update(|_| Ok(())).unwrap();
        assert!(dir.path().join("state.json").exists());
    }

    #[test]
    fn the_state_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.update(|_| ()).unwrap();
        let mode = std::fs::metadata(dir.path().join("state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "state.json mode is {:o}", mode & 0o777);
        assert!(
            !dir.path().join("state.json.tmp").exists(),
            "the temporary file was renamed away"
        );
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), "{not json").unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("state.json is corrupt"),
            "{err:#}"
        );
    }
}
