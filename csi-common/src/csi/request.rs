//! The request rules every driver applies the same way, so the four cannot drift apart: required
//! fields, capacity ranges, paging tokens, volume capabilities, the read-only mode, and the paths a
//! node RPC is given. Each rule is a pure function from request fields to typed values or a
//! [`CsiError`] with the code the CSI spec asks for; none touches the file system.
//!
//! Order, as csi-sanity and the spec expect: a handler checks required fields first (IDs, then
//! paths, then capabilities), then parameters, and only then looks anything up.

use std::path::{Component, PathBuf};

use super::error::{CsiError, CsiResult, required};
use super::pb;
use pb::volume_capability::access_mode::Mode;

/// `value` must not be empty.
pub fn require(value: &str, field: &str) -> CsiResult<()> {
    if value.is_empty() {
        return Err(required(field));
    }
    Ok(())
}

/// A CreateVolume or ControllerExpandVolume capacity range, in bytes; 0 means "not given".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub required: u64,
    pub limit: u64,
}

impl Capacity {
    /// Parses a range: negative bounds are INVALID_ARGUMENT, a limit below the required size is
    /// OUT_OF_RANGE. No range at all is "any size".
    pub fn parse(range: Option<&pb::CapacityRange>) -> CsiResult<Capacity> {
        let Some(range) = range else {
            return Ok(Capacity::default());
        };
        let (Ok(required), Ok(limit)) = (
            u64::try_from(range.required_bytes),
            u64::try_from(range.limit_bytes),
        ) else {
            return Err(CsiError::InvalidArgument(format!(
                "capacity_range must not be negative (required_bytes {}, limit_bytes {})",
                range.required_bytes, range.limit_bytes
            )));
        };
        if limit > 0 && limit < required {
            return Err(CsiError::OutOfRange(format!(
                "capacity_range limit_bytes {limit} is below required_bytes {required}"
            )));
        }
        Ok(Capacity { required, limit })
    }

    /// The range of a call that must give one (ControllerExpandVolume): its absence is
    /// INVALID_ARGUMENT naming `capacity_range`, then as [`Capacity::parse`].
    pub fn parse_required(range: Option<&pb::CapacityRange>) -> CsiResult<Capacity> {
        match range {
            None => Err(required("capacity_range")),
            Some(range) => Capacity::parse(Some(range)),
        }
    }

    /// Whether a volume of `bytes` satisfies the range.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes >= self.required && (self.limit == 0 || bytes <= self.limit)
    }

    /// The size to report for storage that has none of its own (a prefix, a directory): the
    /// required size, else the limit, else 0.
    pub fn nominal(&self) -> u64 {
        if self.required > 0 {
            self.required
        } else {
            self.limit
        }
    }
}

/// One page of a list RPC: offset tokens, which this plugin issues as decimal offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    /// At most this many entries (`max_entries`, capped at the storage's own page size).
    pub limit: u64,
}

impl Page {
    /// A token this plugin did not issue is ABORTED, a negative `max_entries` INVALID_ARGUMENT;
    /// `max_entries` 0 means as many as `max_page`.
    pub fn parse(starting_token: &str, max_entries: i32, max_page: u64) -> CsiResult<Page> {
        let offset = if starting_token.is_empty() {
            0
        } else {
            starting_token.parse().map_err(|_| {
                CsiError::Aborted(format!(
                    "starting_token {starting_token:?} was not issued by this plugin"
                ))
            })?
        };
        let limit = match u64::try_from(max_entries) {
            Err(_) => {
                return Err(CsiError::InvalidArgument(format!(
                    "max_entries {max_entries} must not be negative"
                )));
            }
            Ok(0) => max_page,
            Ok(n) => n.min(max_page),
        };
        Ok(Page { offset, limit })
    }

    /// The token after a page of `returned` entries out of `total`: empty on the last page.
    /// A token pointing past the end is ABORTED: it was not issued for this list.
    pub fn next_token(&self, returned: usize, total: u64, what: &str) -> CsiResult<String> {
        if self.offset > 0 && self.offset >= total && returned == 0 {
            return Err(CsiError::Aborted(format!(
                "starting_token {} is past the end ({total} {what})",
                self.offset
            )));
        }
        let next = self.offset + returned as u64;
        Ok(if next < total {
            next.to_string()
        } else {
            String::new()
        })
    }

    /// This page of a list the driver holds whole, and the next token.
    pub fn of<'a, T>(&self, all: &'a [T], what: &str) -> CsiResult<(&'a [T], String)> {
        let total = all.len() as u64;
        let start = usize::try_from(self.offset.min(total)).unwrap_or(all.len());
        let end =
            usize::try_from(self.offset.saturating_add(self.limit).min(total)).unwrap_or(all.len());
        let page = &all[start..end];
        let token = self.next_token(page.len(), total, what)?;
        Ok((page, token))
    }
}

/// What a driver's storage supports, for checking volume capabilities.
#[derive(Debug, Clone, Copy)]
pub struct Supported {
    /// What the storage is, for messages ("a CBS disk").
    pub storage: &'static str,
    /// Raw block access.
    pub block: bool,
    /// Access from more than one node at once.
    pub multi_node: bool,
    /// File system types a mount volume may ask for; empty: any (the storage decides).
    pub fs_types: &'static [&'static str],
}

/// One capability: access mode and access type are required; block, multi-node modes and file
/// system types are checked against `supported`.
pub fn check_capability(capability: &pb::VolumeCapability, supported: &Supported) -> CsiResult<()> {
    let mode = capability
        .access_mode
        .as_ref()
        .map(|m| Mode::try_from(m.mode).unwrap_or(Mode::Unknown))
        .unwrap_or(Mode::Unknown);
    match mode {
        Mode::Unknown => return Err(required("volume_capability.access_mode")),
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => {}
        Mode::MultiNodeReaderOnly | Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => {
            if !supported.multi_node {
                return Err(CsiError::InvalidArgument(format!(
                    "access mode {} is not supported: {} attaches to one node at a time",
                    mode.as_str_name(),
                    supported.storage
                )));
            }
        }
    }
    match &capability.access_type {
        Some(pb::volume_capability::AccessType::Mount(mount)) => {
            if !supported.fs_types.is_empty()
                && !mount.fs_type.is_empty()
                && !supported.fs_types.contains(&mount.fs_type.as_str())
            {
                return Err(CsiError::InvalidArgument(format!(
                    "fs_type {:?} is not supported ({})",
                    mount.fs_type,
                    supported.fs_types.join(", ")
                )));
            }
        }
        Some(pb::volume_capability::AccessType::Block(_)) => {
            if !supported.block {
                return Err(CsiError::InvalidArgument(format!(
                    "block access is not supported: {} is a file system",
                    supported.storage
                )));
            }
        }
        None => return Err(required("volume_capability.access_type")),
    }
    Ok(())
}

/// Every capability of a request: at least one, each supported.
pub fn check_capabilities(
    capabilities: &[pb::VolumeCapability],
    supported: &Supported,
) -> CsiResult<()> {
    if capabilities.is_empty() {
        return Err(required("volume_capabilities"));
    }
    capabilities
        .iter()
        .try_for_each(|c| check_capability(c, supported))
}

/// Whether a publish is read-only: the request's flag, or a reader-only access mode.
pub fn read_only(readonly: bool, capability: &pb::VolumeCapability) -> bool {
    readonly
        || capability.access_mode.as_ref().is_some_and(|m| {
            m.mode == Mode::SingleNodeReaderOnly as i32
                || m.mode == Mode::MultiNodeReaderOnly as i32
        })
}

/// Whether a capability asks for a mount (the default) rather than raw block access.
pub fn is_mount(capability: Option<&pb::VolumeCapability>) -> bool {
    !matches!(
        capability.and_then(|c| c.access_type.as_ref()),
        Some(pb::volume_capability::AccessType::Block(_))
    )
}

/// A staging or target path the CO hands us to mount at: required and absolute, else
/// INVALID_ARGUMENT.
pub fn target_path(value: &str, field: &str) -> CsiResult<PathBuf> {
    require(value, field)?;
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(CsiError::InvalidArgument(format!(
            "{field} {value:?} must be an absolute path"
        )));
    }
    Ok(path)
}

/// Where a node plugin mounts and unmounts: the staging and target paths a request names must lie
/// under one of these roots (the kubelet's directory, `--kubelet-dir`, and the plugin's own), so
/// a request cannot make a privileged plugin mount over, or delete, anything else on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    roots: Vec<PathBuf>,
}

impl NodePaths {
    /// Paths under any of `roots` (absolute; `..` in them is refused as in requests).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        NodePaths {
            roots: roots.into_iter().collect(),
        }
    }

    /// A staging or target path from a request: [`target_path`]'s rules, no `..`
    /// component, and under one of the roots; else INVALID_ARGUMENT naming the roots.
    pub fn target(&self, value: &str, field: &str) -> CsiResult<PathBuf> {
        let path = target_path(value, field)?;
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let inside = self
            .roots
            .iter()
            .any(|root| path.starts_with(root) && path != *root);
        if plain && inside {
            return Ok(path);
        }
        let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        Err(CsiError::InvalidArgument(format!(
            "{field} {value:?} must be a plain path under {} (the kubelet directory is set by --kubelet-dir)",
            roots.join(" or ")
        )))
    }
}

/// The path of a volume the CO asks about (NodeGetVolumeStats, NodeExpandVolume): required; a
/// relative path can hold no mount of ours, so the volume is NOT_FOUND there. A relative path is
/// never resolved against the plugin's working directory.
pub fn volume_path(value: &str, field: &str) -> CsiResult<PathBuf> {
    require(value, field)?;
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(CsiError::NotFound(format!(
            "no volume is at {field} {value:?}: volumes are only mounted at absolute paths"
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn cap(mode: Mode, access: Option<pb::volume_capability::AccessType>) -> pb::VolumeCapability {
        pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
            access_type: access,
        }
    }

    fn mount(fs: &str) -> Option<pb::volume_capability::AccessType> {
        Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: fs.into(),
                ..Default::default()
            },
        ))
    }

    fn block() -> Option<pb::volume_capability::AccessType> {
        Some(pb::volume_capability::AccessType::Block(
            pb::volume_capability::BlockVolume {},
        ))
    }

    const DISK: Supported = Supported {
        storage: "a disk",
        block: true,
        multi_node: false,
        fs_types: &["ext4", "xfs"],
    };
    const SHARE: Supported = Supported {
        storage: "a share",
        block: false,
        multi_node: true,
        fs_types: &[],
    };

    #[test]
    fn capabilities_are_checked_against_what_the_storage_supports() {
        let ok = [
            (cap(Mode::SingleNodeWriter, mount("")), DISK),
            (cap(Mode::SingleNodeWriter, mount("xfs")), DISK),
            (cap(Mode::SingleNodeReaderOnly, block()), DISK),
            (cap(Mode::MultiNodeMultiWriter, mount("nfs")), SHARE),
        ];
        for (c, s) in ok {
            check_capability(&c, &s).unwrap();
        }
        let refused = [
            (
                cap(Mode::MultiNodeMultiWriter, mount("")),
                DISK,
                "MULTI_NODE",
            ),
            (cap(Mode::SingleNodeWriter, mount("btrfs")), DISK, "btrfs"),
            (cap(Mode::SingleNodeWriter, block()), SHARE, "block"),
            (cap(Mode::SingleNodeWriter, None), SHARE, "access_type"),
            (cap(Mode::Unknown, mount("")), SHARE, "access_mode"),
        ];
        for (c, s, word) in refused {
            let err = check_capability(&c, &s).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.to_string().contains(word), "{err} lacks {word}");
        }
        assert_eq!(
            check_capabilities(&[], &SHARE).unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn capacity_ranges() {
        assert_eq!(Capacity::parse(None).unwrap(), Capacity::default());
        let missing = Capacity::parse_required(None).unwrap_err();
        assert_eq!(missing.code(), Code::InvalidArgument);
        assert!(missing.to_string().contains("capacity_range"), "{missing}");
        let range = |required_bytes, limit_bytes| pb::CapacityRange {
            required_bytes,
            limit_bytes,
        };
        let c = Capacity::parse(Some(&range(10, 20))).unwrap();
        assert!(c.fits(10) && c.fits(20) && !c.fits(9) && !c.fits(21));
        assert_eq!(c.nominal(), 10);
        assert_eq!(Capacity::parse(Some(&range(0, 7))).unwrap().nominal(), 7);
        assert!(Capacity::parse(Some(&range(5, 0))).unwrap().fits(u64::MAX));
        assert_eq!(
            Capacity::parse(Some(&range(-1, 0))).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Capacity::parse(Some(&range(20, 10))).unwrap_err().code(),
            Code::OutOfRange
        );
    }

    #[test]
    fn paging_tokens() {
        let page = Page::parse("", 0, 100).unwrap();
        assert_eq!(
            page,
            Page {
                offset: 0,
                limit: 100
            }
        );
        assert_eq!(Page::parse("40", 500, 100).unwrap().limit, 100);
        assert_eq!(Page::parse("40", 5, 100).unwrap().offset, 40);
        assert_eq!(
            Page::parse("abc", 0, 100).unwrap_err().code(),
            Code::Aborted
        );
        assert_eq!(
            Page::parse("", -1, 100).unwrap_err().code(),
            Code::InvalidArgument
        );
        let items: Vec<u32> = (0..5).collect();
        let first = Page::parse("", 2, 100).unwrap();
        let (slice, token) = first.of(&items, "volumes").unwrap();
        assert_eq!((slice, token.as_str()), (&[0, 1][..], "2"));
        let last = Page::parse("4", 2, 100).unwrap();
        let (slice, token) = last.of(&items, "volumes").unwrap();
        assert_eq!((slice, token.as_str()), (&[4][..], ""));
        let past = Page::parse("9", 2, 100).unwrap();
        assert_eq!(
            past.of(&items, "volumes").unwrap_err().code(),
            Code::Aborted
        );
    }

    #[test]
    fn node_paths() {
        assert_eq!(
            target_path("", "target_path").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            target_path("rel/dir", "target_path").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            volume_path("", "volume_path").unwrap_err().code(),
            Code::InvalidArgument
        );
        let err = volume_path("some/path", "volume_path").unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.to_string().contains("some/path"), "{err}");
        assert_eq!(
            volume_path("/var/lib/kubelet/x", "volume_path").unwrap(),
            PathBuf::from("/var/lib/kubelet/x")
        );
    }

    #[test]
    fn read_only_mode() {
        assert!(read_only(true, &cap(Mode::SingleNodeWriter, mount(""))));
        assert!(read_only(
            false,
            &cap(Mode::SingleNodeReaderOnly, mount(""))
        ));
        assert!(read_only(false, &cap(Mode::MultiNodeReaderOnly, mount(""))));
        assert!(!read_only(
            false,
            &cap(Mode::MultiNodeMultiWriter, mount(""))
        ));
    }

    #[test]
    fn node_paths_must_lie_under_a_root_and_be_plain() {
        let paths = NodePaths::new([
            PathBuf::from("/var/lib/kubelet"),
            PathBuf::from("/var/lib/csi-own"),
        ]);
        let ok = "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount";
        assert_eq!(paths.target(ok, "target_path").unwrap(), PathBuf::from(ok));
        assert!(paths.target("/var/lib/csi-own/m/1", "target_path").is_ok());
        for bad in [
            "/etc/passwd",
            "/var/lib/kubelet",
            "/var/lib/kubelet/../../etc",
            "/var/lib/kubeletx/pods",
            "relative/path",
        ] {
            let err = paths.target(bad, "target_path").unwrap_err();
            assert_eq!(
                tonic::Status::from(err).code(),
                Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
