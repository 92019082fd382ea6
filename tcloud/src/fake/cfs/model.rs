//! What the CFS fake holds: the operations it counts ([`CfsOp`]), the `creating` → `available`
//! life cycle, the file-system records with their API view and the view tests inspect
//! ([`FakeFileSystem`]), and the [`State`] behind the fake's lock: its lookups, the completion of
//! due `creating` file systems, and the ClientToken book (tokens live [`CLIENT_TOKEN_TTL`] and die
//! with their file system).
//!
//! No request checks: the actions live in `filesystems`, their argument rules in `checks`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::cfs::{FileSystem, ResourceTag};
use crate::fake::{DEFAULT_ZONES, FakeState, Injector, Zone, format_time, zones_from};

/// How long a `ClientToken` keeps a create idempotent, as the API documents it.
pub const CLIENT_TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);
/// The permission group every account has.
pub const DEFAULT_PGROUP: &str = "pgroupbasic";

/// The operations of [`CfsApi`](crate::cfs::CfsApi), for counting calls, injecting failures and
/// holding transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CfsOp {
    CreateFileSystem,
    DescribeFileSystems,
    DescribeMountTargets,
    DeleteFileSystem,
    /// `set_group_quota`, the API's `SetUserQuota`.
    SetGroupQuota,
}

impl CfsOp {
    /// The API action, as [`CloudError::Api`](crate::error::CloudError::Api) names it.
    pub fn action(self) -> &'static str {
        match self {
            CfsOp::CreateFileSystem => "CreateCfsFileSystem",
            CfsOp::DescribeFileSystems => "DescribeCfsFileSystems",
            CfsOp::DescribeMountTargets => "DescribeMountTargets",
            CfsOp::DeleteFileSystem => "DeleteCfsFileSystem",
            CfsOp::SetGroupQuota => "SetUserQuota",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LifeCycle {
    Creating,
    Available,
}

impl LifeCycle {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            LifeCycle::Creating => "creating",
            LifeCycle::Available => "available",
        }
    }
}

/// The `creating` → `available` transition.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) due: Instant,
    /// Started while CreateFileSystem was held with `FakeCfs::set_stuck`.
    pub(super) stuck: bool,
}

#[derive(Debug, Clone)]
pub(super) struct FileSystemRecord {
    pub(super) file_system_id: String,
    pub(super) fs_name: String,
    pub(super) zone: String,
    pub(super) zone_id: String,
    pub(super) protocol: &'static str,
    pub(super) storage_type: &'static str,
    pub(super) pgroup_id: String,
    pub(super) net_interface: &'static str,
    pub(super) vpc_id: Option<String>,
    pub(super) subnet_id: Option<String>,
    pub(super) tags: Vec<ResourceTag>,
    pub(super) created_at: i64,
    pub(super) state: LifeCycle,
    pub(super) pending: Option<Pending>,
    pub(super) ip_address: String,
    pub(super) fsid: String,
    /// GID → CapacityHardLimit, GiB.
    pub(super) group_quotas: BTreeMap<u32, u64>,
    pub(super) used_bytes: u64,
}

impl FileSystemRecord {
    pub(super) fn view(&self) -> FileSystem {
        FileSystem {
            file_system_id: self.file_system_id.clone(),
            fs_name: self.fs_name.clone(),
            life_cycle_state: self.state.as_str().to_owned(),
            size_byte: if self.state == LifeCycle::Available {
                self.used_bytes
            } else {
                0
            },
            zone: self.zone.clone(),
            storage_type: self.storage_type.to_owned(),
            creation_time: format_time(self.created_at),
            tags: self.tags.clone(),
        }
    }

    pub(super) fn inspect(&self) -> FakeFileSystem {
        FakeFileSystem {
            file_system_id: self.file_system_id.clone(),
            fs_name: self.fs_name.clone(),
            life_cycle_state: self.state.as_str(),
            zone: self.zone.clone(),
            zone_id: self.zone_id.clone(),
            protocol: self.protocol,
            storage_type: self.storage_type,
            pgroup_id: self.pgroup_id.clone(),
            net_interface: self.net_interface,
            vpc_id: self.vpc_id.clone(),
            subnet_id: self.subnet_id.clone(),
            tags: self.tags.clone(),
            ip_address: self.ip_address.clone(),
            fsid: self.fsid.clone(),
            group_quotas: self.group_quotas.clone(),
            size_byte: self.used_bytes,
        }
    }
}

/// A file system as the fake holds it, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFileSystem {
    pub file_system_id: String,
    pub fs_name: String,
    /// One of [`crate::cfs::life_cycle`].
    pub life_cycle_state: &'static str,
    pub zone: String,
    pub zone_id: String,
    pub protocol: &'static str,
    pub storage_type: &'static str,
    pub pgroup_id: String,
    pub net_interface: &'static str,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub tags: Vec<ResourceTag>,
    /// The mount target's address and NFS export name.
    pub ip_address: String,
    pub fsid: String,
    /// GID → capacity hard limit, GiB.
    pub group_quotas: BTreeMap<u32, u64>,
    /// What `SizeByte` reports once available (`FakeCfs::set_used_bytes`).
    pub size_byte: u64,
}

#[derive(Debug, Clone)]
pub(super) struct TokenEntry {
    pub(super) file_system_id: String,
    pub(super) created: Instant,
}

/// Everything the fake holds, behind its lock.
#[derive(Debug)]
pub(super) struct State {
    pub(super) zones: Vec<Zone>,
    /// Permission groups besides [`DEFAULT_PGROUP`].
    pub(super) pgroups: Vec<String>,
    pub(super) max_file_systems: Option<u64>,
    pub(super) describe_not_found_error: bool,
    pub(super) transition_time: Duration,
    /// Kept in creation order, the order Describe lists them in.
    pub(super) file_systems: Vec<FileSystemRecord>,
    pub(super) client_tokens: BTreeMap<String, TokenEntry>,
    pub(super) injector: Injector<CfsOp>,
}

impl FakeState for State {
    type Op = CfsOp;

    fn injector(&mut self) -> &mut Injector<CfsOp> {
        &mut self.injector
    }

    fn settle(&mut self, now: Instant) {
        // The inherent method: transitions that are due complete.
        State::settle(self, now)
    }
}

impl State {
    /// The simulator's defaults, as `FakeCfs::new` documents them.
    pub(super) fn new() -> Self {
        State {
            zones: zones_from(&DEFAULT_ZONES),
            pgroups: Vec::new(),
            max_file_systems: None,
            describe_not_found_error: false,
            transition_time: Duration::ZERO,
            file_systems: Vec::new(),
            client_tokens: BTreeMap::new(),
            injector: Injector::new(),
        }
    }

    pub(super) fn file_system(&self, id: &str) -> Option<&FileSystemRecord> {
        self.file_systems.iter().find(|f| f.file_system_id == id)
    }

    pub(super) fn file_system_mut(&mut self, id: &str) -> Option<&mut FileSystemRecord> {
        self.file_systems
            .iter_mut()
            .find(|f| f.file_system_id == id)
    }

    /// Makes every due `creating` file system `available`.
    pub(super) fn settle(&mut self, now: Instant) {
        let held = self.injector.is_stuck(CfsOp::CreateFileSystem);
        for fs in &mut self.file_systems {
            let due = fs
                .pending
                .as_ref()
                .is_some_and(|p| p.due <= now && !(p.stuck && held));
            if due {
                fs.pending = None;
                fs.state = LifeCycle::Available;
            }
        }
    }

    /// The file system a live (unexpired) token created, if it still exists.
    pub(super) fn token_target(&self, token: &str, now: Instant) -> Option<&FileSystemRecord> {
        let entry = self.client_tokens.get(token)?;
        if now.saturating_duration_since(entry.created) >= CLIENT_TOKEN_TTL {
            return None;
        }
        self.file_system(&entry.file_system_id)
    }

    /// Forgets expired tokens and tokens of deleted file systems.
    pub(super) fn prune_tokens(&mut self, now: Instant) {
        let live: Vec<String> = self
            .file_systems
            .iter()
            .map(|f| f.file_system_id.clone())
            .collect();
        self.client_tokens.retain(|_, entry| {
            now.saturating_duration_since(entry.created) < CLIENT_TOKEN_TTL
                && live.contains(&entry.file_system_id)
        });
    }
}
