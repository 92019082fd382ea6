//! CBS volume IDs in both forms Tencent's driver made: one disk (`disk-xxxxxxxx`) or a multi-disk
//! volume, its disk IDs joined by commas (`disk-a,disk-b`, from a `devicemapper` class).
//!
//! Pure parsing, shared by the controller and the node; no cloud call and no file access here.

/// Fewest and most disks a multi-disk volume ID may name.
pub const MIN_PARTS: usize = 2;
pub const MAX_PARTS: usize = 20;

/// CBS disk IDs look like `disk-xxxxxxxx`; anything else cannot exist, so no cloud call is made.
pub fn is_disk_id(id: &str) -> bool {
    id.strip_prefix("disk-").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// A volume ID read strictly: one disk, or 2 to 20 distinct disks in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeId<'a> {
    Disk(&'a str),
    MultiDisk(Vec<&'a str>),
}

impl<'a> VolumeId<'a> {
    /// `None` when `id` is neither form.
    pub fn parse(id: &'a str) -> Option<VolumeId<'a>> {
        if is_disk_id(id) {
            return Some(VolumeId::Disk(id));
        }
        multi_disk_ids(id).map(VolumeId::MultiDisk)
    }

    /// Every disk of the volume, in order.
    pub fn disks(&self) -> Vec<&'a str> {
        match self {
            VolumeId::Disk(id) => vec![id],
            VolumeId::MultiDisk(ids) => ids.clone(),
        }
    }
}

/// The disks of a multi-disk volume ID: each part a disk ID, 2 to 20 of them, none repeated.
pub fn multi_disk_ids(id: &str) -> Option<Vec<&str>> {
    if !id.contains(',') {
        return None;
    }
    let parts: Vec<&str> = id.split(',').collect();
    if !(MIN_PARTS..=MAX_PARTS).contains(&parts.len()) || !parts.iter().all(|p| is_disk_id(p)) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    parts.iter().all(|p| seen.insert(*p)).then_some(parts)
}

/// True for a volume ID of either form.
pub fn is_volume_id(id: &str) -> bool {
    VolumeId::parse(id).is_some()
}

/// The ID of a multi-disk volume made of `disks`.
pub fn join(disks: &[String]) -> String {
    disks.join(",")
}

/// What a volume ID must look like, for error messages.
pub const EXPECTED: &str = "CBS volume IDs look like disk-xxxxxxxx, or 2 to 20 distinct disk IDs \
     joined by commas for a multi-disk (devicemapper) volume";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn both_forms_and_nothing_else() {
        assert_eq!(
            VolumeId::parse("disk-abc1"),
            Some(VolumeId::Disk("disk-abc1"))
        );
        assert_eq!(
            VolumeId::parse("disk-a,disk-b"),
            Some(VolumeId::MultiDisk(vec!["disk-a", "disk-b"]))
        );
        let twenty: Vec<String> = (0..20).map(|i| format!("disk-x{i}")).collect();
        assert!(is_volume_id(&twenty.join(",")));
        let twenty_one: Vec<String> = (0..21).map(|i| format!("disk-x{i}")).collect();
        for bad in [
            "",
            "disk-",
            "disk-a,",
            ",disk-a",
            "disk-a,disk-a",
            "disk-a,,disk-b",
            "disk-a, disk-b",
            "disk-a,vol-b",
            "disk-a,disk-b/c",
            "lvm,disk-a,disk-b",
            &twenty_one.join(","),
        ] {
            assert_eq!(VolumeId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            VolumeId::parse("disk-b,disk-a").unwrap().disks(),
            ["disk-b", "disk-a"]
        );
        assert_eq!(join(&["disk-a".into(), "disk-b".into()]), "disk-a,disk-b");
    }

    proptest! {
        #[test]
        fn joined_distinct_disks_parse_back(n in 2usize..=20, seed in "[a-z0-9]{1,8}") {
            let disks: Vec<String> = (0..n).map(|i| format!("disk-{seed}{i}")).collect();
            let id = join(&disks);
            prop_assert_eq!(VolumeId::parse(&id).unwrap().disks(), disks.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,80}") {
            let _ = VolumeId::parse(&s);
        }
    }
}
