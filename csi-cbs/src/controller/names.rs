//! The name a CSI name gets in the cloud, for disks and snapshots alike.
//!
//! A CSI name is an idempotency key of up to 128 bytes; CBS names hold 60. A name that fits is the
//! resource's name unchanged (every disk made before this rule is still found), a longer one is
//! shortened deterministically and the whole name rides along in a tag that lookups compare.
//!
//! Pure functions of the name: no cloud call and no service state here, so every part of the
//! controller may use them.

use tcloud::cbs::Tag;
use tcloud::short_name;

/// CBS disk and snapshot names hold at most this many bytes.
pub const MAX_NAME: usize = 60;
/// The tag holding a volume's whole CSI name when its disk name is shortened.
pub const TAG_VOLUME_NAME: &str = "k8s-csi/volume-name";
/// The tag holding a snapshot's whole CSI name when its snapshot name is shortened.
pub const TAG_SNAPSHOT_NAME: &str = "k8s-csi/snapshot-name";

/// The cloud name for a CSI name, and the tag that keeps the whole name when it was shortened.
pub fn cloud_name(name: &str, tag_key: &str) -> (String, Option<Tag>) {
    let short = short_name(name, MAX_NAME);
    let tag = (short != name).then(|| Tag {
        key: tag_key.to_owned(),
        value: name.to_owned(),
    });
    (short.into_owned(), tag)
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
}
