//! How many volumes this node takes (NodeGetInfo's `max_volumes_per_node`), as the instance says:
//! `DescribeInstancesDiskNum`'s `MaxAttachCount` (data disks the instance may hold) less the data
//! disks attached to it that are no volume of a CSI driver (a disk the node was bought with, one
//! an operator attached). Tencent's node took `MaxAttachCount - 2` from the same call. The flag
//! `--max-volumes-per-node` overrides it; without API access the node keeps the CVM default.

use std::time::Duration;

use tcloud::cbs::{CbsApi, DescribeDisksRequest, Disk, Filter};
use tcloud::{CloudClient, CloudError};
use tokio::time::Instant;

use crate::controller::names::TAG_VOLUME_NAME;

/// How long the node waits for the answer at start-up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `disk` is a volume of this driver (tagged with its volume name) or of Tencent's
/// (named `<cluster ID>/<pv name>`).
fn is_volume(disk: &Disk) -> bool {
    disk.tag(TAG_VOLUME_NAME).is_some() || disk.disk_name.contains('/')
}

/// `max_attach` less the data disks in `attached` that are no volume.
pub fn limit(max_attach: u64, attached: &[Disk]) -> i64 {
    let others = attached.iter().filter(|d| !is_volume(d)).count() as u64;
    i64::try_from(max_attach.saturating_sub(others)).unwrap_or(i64::MAX)
}

/// The limit of `instance`, read from the cloud; `None` when the API does not list it.
pub async fn read_limit(cloud: &CloudClient, instance: &str) -> Result<Option<i64>, CloudError> {
    let deadline = Some(Instant::now() + READ_TIMEOUT);
    let Some(num) = cloud.describe_instance_disk_num(instance, deadline).await? else {
        return Ok(None);
    };
    let request = DescribeDisksRequest {
        filters: vec![
            Filter::new("instance-id", instance),
            Filter::new("disk-usage", "DATA_DISK"),
        ],
        limit: Some(100),
        ..Default::default()
    };
    let attached = cloud.describe_disks(&request, deadline).await?.disk_set;
    Ok(Some(limit(num.max_attach_count, &attached)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcloud::cbs::Tag;

    fn disk(name: &str, tagged: bool) -> Disk {
        Disk {
            disk_name: name.into(),
            tags: if tagged {
                vec![Tag {
                    key: TAG_VOLUME_NAME.into(),
                    value: "pvc-1".into(),
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn disks_that_are_no_volume_come_off_the_instances_maximum() {
        assert_eq!(limit(20, &[]), 20);
        let attached = [
            disk("pvc-1", true),
            disk("cls-abc/pvc-2", false),
            disk("data", false),
            disk("", false),
        ];
        assert_eq!(limit(20, &attached), 18, "two disks are no volume");
        assert_eq!(limit(1, &attached), 0, "never below zero");
    }
}
