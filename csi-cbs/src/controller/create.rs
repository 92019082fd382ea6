//! How a CSI name becomes exactly one disk: the name the disk carries in the cloud, finding it
//! again, and the `ClientToken` of its create.
//!
//! A CSI name is an idempotency key of up to 128 bytes; CBS names hold 60. A name that fits is the
//! disk's name unchanged (every disk made before this rule is still found), a longer one is
//! shortened deterministically and the whole name rides along in a tag that lookups compare.
//!
//! The cloud keeps the answer of a `ClientToken` for a while, even after the disk it made was
//! terminated: a create after a delete of the same name would be handed the dead disk's ID. So the
//! token has generations: the first is the plain token of the name (what earlier versions sent),
//! and a create whose answer names a disk this controller terminated, or a disk that does not
//! exist, moves to the next generation. A retry of a create that succeeded finds its disk by name
//! first, or lands on the same generation and gets the same disk.

use std::collections::HashSet;
use std::time::Duration;

use tcloud::cbs::{CbsApi, CreateDisksRequest, Disk, Tag};
use tcloud::{client_token, short_name};
use tokio::time::Instant;

use super::ControllerService;
use crate::error::{Error, Result};

/// CBS disk and snapshot names hold at most this many bytes.
pub const MAX_NAME: usize = 60;
/// The tag holding a volume's whole CSI name when its disk name is shortened.
pub const TAG_VOLUME_NAME: &str = "k8s-csi/volume-name";
/// The tag holding a snapshot's whole CSI name when its snapshot name is shortened.
pub const TAG_SNAPSHOT_NAME: &str = "k8s-csi/snapshot-name";
/// Token generations tried before giving up: each needs a create whose answer was stale.
const MAX_GENERATIONS: u32 = 8;
/// How long a disk a create just answered may take to show in DescribeDisks before its token is
/// judged stale (only when this controller did not terminate it itself).
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);
/// Terminated disk IDs remembered; past this the set starts again (a stale answer is then found
/// by [`VISIBLE_WITHIN`] instead).
const TERMINATED_KEPT: usize = 4096;

/// The cloud name for a CSI name, and the tag that keeps the whole name when it was shortened.
pub fn cloud_name(name: &str, tag_key: &str) -> (String, Option<Tag>) {
    let short = short_name(name, MAX_NAME);
    let tag = (short != name).then(|| Tag {
        key: tag_key.to_owned(),
        value: name.to_owned(),
    });
    (short.into_owned(), tag)
}

/// IDs of disks this controller terminated, to tell a token's stale answer at once.
#[derive(Debug, Default)]
pub struct Terminated(std::sync::Mutex<HashSet<String>>);

impl Terminated {
    pub fn record(&self, disk_id: &str) {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() >= TERMINATED_KEPT {
            ids.clear();
        }
        ids.insert(disk_id.to_owned());
    }

    fn contains(&self, disk_id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(disk_id)
    }
}

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
            create.client_token = Some(self.token(name, generation));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fit_are_kept_and_long_ones_carry_a_tag() {
        let (name, tag) = cloud_name("pvc-0b4f9c3e-8d5a-4c0e-9b61-2f7d3c1a9e42", TAG_VOLUME_NAME);
        assert_eq!(name, "pvc-0b4f9c3e-8d5a-4c0e-9b61-2f7d3c1a9e42");
        assert_eq!(tag, None);
        let long = "sanity-".repeat(18);
        let (name, tag) = cloud_name(&long, TAG_VOLUME_NAME);
        assert_eq!(name.len(), MAX_NAME);
        assert_eq!(
            tag,
            Some(Tag {
                key: TAG_VOLUME_NAME.into(),
                value: long.clone()
            })
        );
        assert_eq!(cloud_name(&long, TAG_VOLUME_NAME).0, name);
    }

    #[test]
    fn terminated_ids_are_remembered_within_bounds() {
        let terminated = Terminated::default();
        terminated.record("disk-1");
        assert!(terminated.contains("disk-1"));
        assert!(!terminated.contains("disk-2"));
        for i in 0..TERMINATED_KEPT {
            terminated.record(&format!("disk-x{i}"));
        }
        assert!(terminated.0.lock().unwrap().len() <= TERMINATED_KEPT);
    }
}
