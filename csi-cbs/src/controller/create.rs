//! How a CSI name becomes exactly one disk: finding the disk again by its cloud name (see
//! `names`), and the `ClientToken` of its create.
//!
//! The cloud keeps the answer of a `ClientToken` for a while, even after the disk it made was
//! terminated: a create after a delete of the same name would be handed the dead disk's ID. So the
//! token has generations: the first is the plain token of the name (what earlier versions sent),
//! and a create whose answer names a disk this controller terminated, or a disk that does not
//! exist, moves to the next generation. A retry of a create that succeeded finds its disk by name
//! first, or lands on the same generation and gets the same disk.
//!
//! Telling a stale answer costs a `DescribeDisks` of the disk after the create. It is skipped
//! where no earlier answer can exist: the first use, in this process, of the first generation's
//! token of a name the external-provisioner made (`<prefix>-<PVC UID>`). A PVC's UID is never
//! reused, so no delete of that name can precede its create; a retry within this process is a
//! token's second use and is checked; a retry after a restart finds the disk by name first.

use std::time::Duration;

use tcloud::cbs::{CbsApi, CreateDisksRequest, Disk, disk_state};
use tcloud::client_token;
use tokio::time::Instant;

use super::ControllerService;
use super::names::{TAG_VOLUME_NAME, cloud_name};
use crate::error::{Error, Result};

/// Token generations tried before giving up: each needs a create whose answer was stale.
const MAX_GENERATIONS: u32 = 8;
/// How long a disk a create just answered may take to show in DescribeDisks before its token is
/// judged stale (only when this controller did not terminate it itself).
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);

impl<C: CbsApi> ControllerService<C> {
    /// The token of generation `generation` of a create of `name`.
    fn token(&self, name: &str, generation: u32) -> String {
        if generation == 0 {
            client_token(&[&self.config.driver_name, name])
        } else {
            client_token(&[&self.config.driver_name, name, &generation.to_string()])
        }
    }

    /// The disk made for CSI name `name`, if any. Another volume's disk under the same shortened
    /// name (its tag says so) is ALREADY_EXISTS, never handed out.
    pub(super) async fn disk_by_name(&self, name: &str) -> Result<Option<Disk>> {
        let (cloud, _) = cloud_name(name, TAG_VOLUME_NAME);
        let mut disks = self.watcher.by_name(&cloud).await?;
        if let Some(other) = disks
            .iter()
            .find_map(|d| d.tag(TAG_VOLUME_NAME).filter(|t| *t != name))
        {
            return Err(Error::AlreadyExists(format!(
                "the disk name {cloud} of volume {name} is taken by volume {other}"
            )));
        }
        match disks.len() {
            0 | 1 => Ok(disks.pop()),
            n => Err(Error::Internal(format!(
                "{n} disks are named {cloud}; delete the extra ones so the volume is unambiguous"
            ))),
        }
    }

    /// Creates the disk of `name` (no disk of that name exists) and answers it as described by
    /// the cloud, moving to the next token generation while the cloud answers with a disk that is
    /// gone.
    pub(super) async fn create_disk(
        &self,
        name: &str,
        mut create: CreateDisksRequest,
        deadline: Instant,
    ) -> Result<Disk> {
        for generation in 0..MAX_GENERATIONS {
            let token = self.token(name, generation);
            let first_use = self.tokens_sent.record(&token);
            create.client_token = Some(token);
            let disk_id = self
                .cbs
                .create_disks(&create, Some(deadline))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Internal("CreateDisks returned no disk ID".into()))?;
            if self.terminated.contains(&disk_id) {
                tracing::info!(volume = name, disk = %disk_id, generation, "the ClientToken answered a terminated disk; creating with the next token");
                continue;
            }
            if generation == 0 && first_use && names_a_pvc_uid(name) {
                return Ok(made_by(&create, disk_id));
            }
            if let Some(disk) = self.visible(&disk_id, deadline).await? {
                if create.disk_name.as_deref() == Some(disk.disk_name.as_str()) {
                    return Ok(disk);
                }
                tracing::warn!(volume = name, disk = %disk_id, other = %disk.disk_name, "the ClientToken answered another volume's disk; creating with the next token");
                continue;
            }
            tracing::info!(volume = name, disk = %disk_id, generation, "the ClientToken answered a disk that does not exist; creating with the next token");
        }
        Err(Error::Internal(format!(
            "CreateDisks answered {MAX_GENERATIONS} tokens of volume {name} with disks that are gone; retry later"
        )))
    }

    /// The disk once DescribeDisks shows it, or `None` when it stays absent for
    /// [`VISIBLE_WITHIN`] (bounded by the deadline).
    async fn visible(&self, disk_id: &str, deadline: Instant) -> Result<Option<Disk>> {
        let give_up = (Instant::now() + VISIBLE_WITHIN).min(deadline);
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(disk) = self.watcher.get(disk_id).await? {
                return Ok(Some(disk));
            }
            if Instant::now() + pause >= give_up {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// Whether `name` is one the external-provisioner gives a PVC's volume by default: a prefix, a
/// dash and the PVC's whole UID (`pvc-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01`). A shortened UID
/// (`--volume-name-uuid-length`) does not count: it may repeat.
fn names_a_pvc_uid(name: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    const UID_LEN: usize = 36;
    // Bytes, not characters: a cut inside a multi-byte character must not panic.
    let Some(split) = name.len().checked_sub(UID_LEN + 1) else {
        return false;
    };
    let (prefix, uid) = name.as_bytes().split_at(split);
    let Some(uid) = uid.strip_prefix(b"-") else {
        return false;
    };
    !prefix.is_empty()
        && uid.split(|&b| b == b'-').map(<[u8]>::len).eq(GROUPS)
        && uid
            .iter()
            .all(|&b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The disk `create` just made as `disk_id`, described from the request itself.
fn made_by(create: &CreateDisksRequest, disk_id: String) -> Disk {
    Disk {
        disk_id,
        disk_name: create.disk_name.clone().unwrap_or_default(),
        disk_state: disk_state::UNATTACHED.to_owned(),
        disk_size: create.disk_size,
        disk_type: create.disk_type.clone(),
        placement: create.placement.clone(),
        encrypt: create.encrypt.is_some(),
        tags: create.tags.clone(),
        snapshot_id: create.snapshot_id.clone().unwrap_or_default(),
        throughput_performance: create.throughput_performance.unwrap_or_default(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::names_a_pvc_uid;

    #[test]
    fn only_a_prefix_and_a_whole_pvc_uid_is_a_name_never_reused() {
        for unique in [
            "pvc-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01",
            "cbs-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01",
        ] {
            assert!(names_a_pvc_uid(unique), "{unique}");
        }
        for reusable in [
            "",
            "pvc-again",
            "0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01",
            "-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01",
            "pvc-0b4f9c3e8d5a4c1e9f3a2b6d",
            "pvc-0B4F9C3E-8D5A-4C1E-9F3A-2B6D7E8F9A01",
            "pvc-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a0g",
            "pvc-0b4f9c3e-8d5a4-c1e-9f3a-2b6d7e8f9a01",
            "pvc_0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01",
            "sanity-0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01x",
            "é0b4f9c3e-8d5a-4c1e-9f3a-2b6d7e8f9a01",
            "pvc-ééééééééééééééééééé",
        ] {
            assert!(!names_a_pvc_uid(reusable), "{reusable}");
        }
    }
}
