//! A whole CFS file system per volume: found again by its name (and, for a shortened name, the
//! whole name in its tag), compared with the request, else created with a ClientToken.
//!
//! Only the file system itself: DeleteVolume deletes it in the trait impl, and nothing here mounts
//! it or touches the shared instances.

use csi_common::csi::pb;
use csi_common::mount::Mounter;
use tcloud::cfs::{CfsApi, ResourceTag};
use tcloud::{client_token, short_name};
use tokio::time::Instant;

use super::{
    ControllerService, MAX_FS_NAME, TAG_CAPACITY, TAG_DRIVER, TAG_SHARED, TAG_VOLUME_NAME,
    create_request, volume_context,
};
use crate::error::{Error, Result};
use crate::params::{CfsParams, VolumeId};

impl<C: CfsApi, M: Mounter + 'static> ControllerService<C, M> {
    /// A whole file system per volume: found again by its name (and, for a shortened name, the
    /// whole name in its tag), compared with the request, else created with a ClientToken.
    pub(super) async fn create_whole(
        &self,
        name: &str,
        params: &CfsParams,
        capacity: u64,
        deadline: Instant,
    ) -> Result<pb::Volume> {
        let fs_name = short_name(name, MAX_FS_NAME).into_owned();
        let shortened = fs_name != name;
        let existing = self
            .all_file_systems(deadline)
            .await?
            .into_iter()
            .find(|f| {
                f.fs_name == fs_name
                    && f.tag(TAG_DRIVER) == Some(self.config.driver_name.as_str())
                    && f.tag(TAG_SHARED).is_none()
                    && (!shortened || f.tag(TAG_VOLUME_NAME) == Some(name))
            });
        let fs_id = match existing {
            Some(fs) => {
                let asked = fs.tag(TAG_CAPACITY).and_then(|c| c.parse::<u64>().ok());
                if let Some(asked) = asked.filter(|asked| *asked != capacity) {
                    return Err(Error::AlreadyExists(format!(
                        "volume {name} exists as file system {} of {asked} bytes, not {capacity}",
                        fs.file_system_id
                    )));
                }
                fs.file_system_id
            }
            None => {
                let mut tags = params.tags.clone();
                tags.push(ResourceTag {
                    tag_key: TAG_DRIVER.into(),
                    tag_value: self.config.driver_name.clone(),
                });
                tags.push(ResourceTag {
                    tag_key: TAG_CAPACITY.into(),
                    tag_value: capacity.to_string(),
                });
                if shortened {
                    tags.push(ResourceTag {
                        tag_key: TAG_VOLUME_NAME.into(),
                        tag_value: name.to_owned(),
                    });
                }
                let request = create_request(
                    params,
                    self.zone(params)?,
                    fs_name,
                    tags,
                    client_token(&[&self.config.driver_name, name]),
                );
                self.cfs
                    .create_file_system(&request, Some(deadline))
                    .await?
            }
        };
        self.wait_available(&fs_id, deadline).await?;
        let target = self.mount_target(&fs_id, deadline).await?;
        Ok(pb::Volume {
            capacity_bytes: capacity as i64,
            volume_id: VolumeId::FileSystem(fs_id).to_string(),
            volume_context: volume_context(&target, params.vers, "/"),
            content_source: None,
            accessible_topology: Vec::new(),
        })
    }
}
