//! The CFS section of the persistent state: file systems, their mount targets, user quotas, the
//! pending `creating` transitions and the create tokens, plus the rules of the enumerated request
//! values (storage types, protocols, network types). Pure data: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// How long a `ClientToken` keeps a create idempotent, as the API documents it (2 hours).
pub const CLIENT_TOKEN_TTL_SECS: i64 = 2 * 3600;

/// Everything CFS keeps across a restart. File systems are kept in creation order, the order
/// `DescribeCfsFileSystems` lists them in, so `Offset` pagination is stable.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CfsState {
    #[serde(default)]
    pub file_systems: Vec<FileSystem>,
    /// `ClientToken` of a CreateCfsFileSystem call → the file system it created.
    #[serde(default)]
    pub client_tokens: BTreeMap<String, TokenEntry>,
}

impl CfsState {
    pub fn file_system(&self, id: &str) -> Option<&FileSystem> {
        self.file_systems.iter().find(|f| f.file_system_id == id)
    }

    pub fn file_system_mut(&mut self, id: &str) -> Option<&mut FileSystem> {
        self.file_systems
            .iter_mut()
            .find(|f| f.file_system_id == id)
    }

    /// Whether a mount target (of any file system, in any state) has the address `ip`.
    pub fn ip_in_use(&self, ip: &str) -> bool {
        self.file_systems
            .iter()
            .any(|f| f.mount_target.as_ref().is_some_and(|m| m.ip_address == ip))
    }

    pub fn fsid_in_use(&self, fsid: &str) -> bool {
        self.file_systems
            .iter()
            .any(|f| f.mount_target.as_ref().is_some_and(|m| m.fsid == fsid))
    }

    /// The file system a live (unexpired) token created, if it still exists.
    pub fn token_target(&self, token: &str, now: i64) -> Option<&FileSystem> {
        let entry = self.client_tokens.get(token)?;
        if now - entry.created_at >= CLIENT_TOKEN_TTL_SECS {
            return None;
        }
        self.file_system(&entry.file_system_id)
    }

    /// Forgets tokens older than [`CLIENT_TOKEN_TTL_SECS`] and tokens of deleted file systems.
    pub fn prune_tokens(&mut self, now: i64) {
        let live: Vec<String> = self
            .file_systems
            .iter()
            .map(|f| f.file_system_id.clone())
            .collect();
        self.client_tokens.retain(|_, entry| {
            now - entry.created_at < CLIENT_TOKEN_TTL_SECS && live.contains(&entry.file_system_id)
        });
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub file_system_id: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// `LifeCycleState` as the API spells it. The simulator's file systems are `creating` for the
/// configured time, then `available`; deletion is immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifeCycleState {
    Creating,
    Available,
}

impl LifeCycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            LifeCycleState::Creating => "creating",
            LifeCycleState::Available => "available",
        }
    }
}

/// `StorageType`: SD (standard), HP (high performance), TB / TP (Turbo standard / performance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageType {
    #[serde(rename = "SD")]
    Sd,
    #[serde(rename = "HP")]
    Hp,
    #[serde(rename = "TB")]
    Tb,
    #[serde(rename = "TP")]
    Tp,
}

impl StorageType {
    pub const ALL: [StorageType; 4] = [
        StorageType::Sd,
        StorageType::Hp,
        StorageType::Tb,
        StorageType::Tp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StorageType::Sd => "SD",
            StorageType::Hp => "HP",
            StorageType::Tb => "TB",
            StorageType::Tp => "TP",
        }
    }

    pub fn parse(name: &str) -> Option<StorageType> {
        StorageType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn is_turbo(self) -> bool {
        matches!(self, StorageType::Tb | StorageType::Tp)
    }

    /// Smallest Turbo `Capacity` and its step, GiB: TB from 40 TiB in steps of 20 TiB, TP from
    /// 20 TiB in steps of 10 TiB, as the TKE docs state it (seeds `002:34918`-`34920`: "Turbo
    /// 标准型的初始最小集群为40TiB，扩容步长为20TiB。Turbo 性能型的初始最小集群为20TiB，扩容步长为
    /// 10TiB"). Some SDK releases document lower figures (TB 20 TiB / 10 TiB, TP 10 TiB); every
    /// size accepted here is valid under those too, so tests written against the simulator hold
    /// on either.
    pub fn turbo_capacity_rule(self) -> Option<(u64, u64)> {
        match self {
            StorageType::Tb => Some((40_960, 20_480)),
            StorageType::Tp => Some((20_480, 10_240)),
            StorageType::Sd | StorageType::Hp => None,
        }
    }

    /// `SizeLimit` reported for a general-purpose file system, GiB (chosen: 160 TiB for SD,
    /// 32 TiB for HP, the product's published maxima).
    pub fn default_size_limit(self) -> u64 {
        match self {
            StorageType::Sd => 163_840,
            StorageType::Hp => 32_768,
            StorageType::Tb | StorageType::Tp => 0,
        }
    }

    /// `BandwidthLimit` reported, MiB/s (chosen, fixed: the simulator has no throughput model).
    pub fn bandwidth_limit(self) -> f64 {
        match self {
            StorageType::Sd => 100.0,
            StorageType::Hp => 200.0,
            StorageType::Tb => 1_000.0,
            StorageType::Tp => 2_000.0,
        }
    }
}

/// `Protocol`: NFS (default), CIFS, or TURBO (the Turbo series' own client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Nfs,
    Cifs,
    Turbo,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Nfs => "NFS",
            Protocol::Cifs => "CIFS",
            Protocol::Turbo => "TURBO",
        }
    }

    pub fn parse(name: &str) -> Option<Protocol> {
        [Protocol::Nfs, Protocol::Cifs, Protocol::Turbo]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

/// `NetInterface`: VPC, BASIC (the classic network, being retired) or CCN (Turbo only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NetInterface {
    Vpc,
    Basic,
    Ccn,
}

impl NetInterface {
    pub fn as_str(self) -> &'static str {
        match self {
            NetInterface::Vpc => "VPC",
            NetInterface::Basic => "BASIC",
            NetInterface::Ccn => "CCN",
        }
    }

    /// Case-insensitive: Tencent's own CSI driver sends `vpc`.
    pub fn parse(name: &str) -> Option<NetInterface> {
        [NetInterface::Vpc, NetInterface::Basic, NetInterface::Ccn]
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(name))
    }
}

/// Where the file system's mount target lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub net_interface: NetInterface,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub ccn_id: Option<String>,
    #[serde(default)]
    pub cidr_block: Option<String>,
}

/// The one mount target a file system gets when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTarget {
    pub mount_target_id: String,
    /// Unique among the simulator's file systems, in a private range; only a name (no traffic).
    pub ip_address: String,
    /// 8 lowercase alphanumerics: the NFSv3 export name (`<ip>:/<fsid>/...`).
    pub fsid: String,
}

/// `UserType` of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaUserType {
    Uid,
    Gid,
}

impl QuotaUserType {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaUserType::Uid => "Uid",
            QuotaUserType::Gid => "Gid",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaUserType> {
        match name {
            "Uid" => Some(QuotaUserType::Uid),
            "Gid" => Some(QuotaUserType::Gid),
            _ => None,
        }
    }
}

/// A UID or GID quota. Stored and reported; not enforced on writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserQuota {
    pub user_type: QuotaUserType,
    /// The numeric UID/GID, as the decimal string the API carries.
    pub user_id: String,
    /// GiB.
    #[serde(default)]
    pub capacity_hard_limit: Option<u64>,
    /// Number of files.
    #[serde(default)]
    pub file_hard_limit: Option<u64>,
}

/// The `creating` → `available` transition: due at `due_at_unix_ms`, unless it was started while
/// a `stuck` fault rule for `action` was in force and that rule still is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// `CreateCfsFileSystem`: the key of the stuck fault.
    pub action: String,
    pub started_at_unix_ms: i64,
    pub due_at_unix_ms: i64,
    #[serde(default)]
    pub stuck: bool,
}

/// A tag, in requests, responses and the state file alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSystem {
    pub file_system_id: String,
    pub fs_name: String,
    pub zone: String,
    pub zone_id: u64,
    pub protocol: Protocol,
    pub storage_type: StorageType,
    pub pgroup_id: String,
    pub network: Network,
    /// GiB: the Turbo capacity asked for.
    #[serde(default)]
    pub capacity: Option<u64>,
    #[serde(default)]
    pub cfs_version: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Unix seconds.
    pub created_at: i64,
    pub state: LifeCycleState,
    #[serde(default)]
    pub pending: Option<Pending>,
    /// `None` once DeleteMountTarget removed it.
    #[serde(default)]
    pub mount_target: Option<MountTarget>,
    #[serde(default)]
    pub quotas: Vec<UserQuota>,
}

impl FileSystem {
    /// `SizeLimit`, GiB.
    pub fn size_limit(&self) -> u64 {
        self.capacity
            .unwrap_or_else(|| self.storage_type.default_size_limit())
    }
}

/// Checks a `prefix-xxxx` ID: the prefix, then one or more lowercase letters and digits.
pub fn well_formed_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Parses a dotted IPv4 address in a private range (10/8, 172.16/12, 192.168/16) that can name a
/// host (last octet 1-254).
pub fn private_host_ip(text: &str) -> Option<std::net::Ipv4Addr> {
    let ip: std::net::Ipv4Addr = text.parse().ok()?;
    if ip.to_string() != text || !ip.is_private() {
        return None;
    }
    let last = ip.octets()[3];
    (last != 0 && last != 255).then_some(ip)
}

/// Shortest and longest `CidrBlock` mask: "掩码范围需在16-24位之间" (seeds `002:34925`-`34927`,
/// the Turbo 网段 field).
pub const CIDR_MASK_BITS: std::ops::RangeInclusive<u8> = 16..=24;

/// Checks a CIDR block `a.b.c.d/n` with `n` in [`CIDR_MASK_BITS`]; the error names the field.
pub fn check_cidr(text: &str) -> Result<(), ApiError> {
    let ok = text.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::Ipv4Addr>().is_ok()
            && bits
                .parse::<u8>()
                .is_ok_and(|b| CIDR_MASK_BITS.contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_value(format!(
            "CidrBlock {text:?} is not an IPv4 CIDR block with a /16 to /24 mask, like 10.0.0.0/24."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerations_round_trip_through_serde_and_parse() {
        for ty in StorageType::ALL {
            let json = serde_json::to_string(&ty).unwrap();
            assert_eq!(json, format!("\"{}\"", ty.as_str()));
            assert_eq!(StorageType::parse(ty.as_str()), Some(ty));
        }
        assert_eq!(
            StorageType::parse("sd"),
            None,
            "storage types are upper case"
        );
        assert_eq!(
            serde_json::to_string(&LifeCycleState::Creating).unwrap(),
            "\"creating\""
        );
        assert_eq!(
            serde_json::to_string(&Protocol::Turbo).unwrap(),
            "\"TURBO\""
        );
        assert_eq!(NetInterface::parse("vpc"), Some(NetInterface::Vpc));
        assert_eq!(NetInterface::parse("Ccn"), Some(NetInterface::Ccn));
        assert_eq!(NetInterface::parse("LAN"), None);
        assert_eq!(QuotaUserType::parse("uid"), None);
        assert!(StorageType::Tp.is_turbo() && !StorageType::Hp.is_turbo());
    }

    #[test]
    fn ids_addresses_and_blocks() {
        assert!(well_formed_id("cfs-ab12cd34", "cfs-"));
        assert!(!well_formed_id("cfs-", "cfs-"));
        assert!(!well_formed_id("cfs-AB12", "cfs-"));
        assert!(!well_formed_id("vpc-ab12", "cfs-"));
        for good in ["10.0.0.1", "172.16.3.4", "192.168.1.254"] {
            assert!(private_host_ip(good).is_some(), "{good}");
        }
        for bad in [
            "8.8.8.8",
            "10.0.0.0",
            "10.0.0.255",
            "10.0.0",
            "010.0.0.1",
            "10.0.0.1 ",
            "::1",
        ] {
            assert!(private_host_ip(bad).is_none(), "{bad}");
        }
        assert!(check_cidr("10.0.0.0/24").is_ok());
        assert!(check_cidr("172.16.0.0/16").is_ok());
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "x/8",
            "10.0.0.0/8",
            "10.0.0.0/25",
        ] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_expire_and_follow_their_file_system() {
        let mut state = CfsState::default();
        state.client_tokens.insert(
            "t".into(),
            TokenEntry {
                file_system_id: "cfs-1".into(),
                created_at: 1_000,
            },
        );
        assert!(
            state.token_target("t", 1_001).is_none(),
            "no such file system"
        );
        state.file_systems.push(FileSystem {
            file_system_id: "cfs-1".into(),
            fs_name: "a".into(),
            zone: "z".into(),
            zone_id: 1,
            protocol: Protocol::Nfs,
            storage_type: StorageType::Sd,
            pgroup_id: "pgroupbasic".into(),
            network: Network {
                net_interface: NetInterface::Vpc,
                vpc_id: Some("vpc-1".into()),
                subnet_id: Some("subnet-1".into()),
                ccn_id: None,
                cidr_block: None,
            },
            capacity: None,
            cfs_version: None,
            tags: vec![],
            created_at: 1_000,
            state: LifeCycleState::Available,
            pending: None,
            mount_target: None,
            quotas: vec![],
        });
        assert!(state.token_target("t", 1_001).is_some());
        assert!(
            state
                .token_target("t", 1_000 + CLIENT_TOKEN_TTL_SECS)
                .is_none(),
            "expired after two hours"
        );
        state.prune_tokens(1_001);
        assert_eq!(state.client_tokens.len(), 1);
        state.prune_tokens(1_000 + CLIENT_TOKEN_TTL_SECS);
        assert!(state.client_tokens.is_empty());
    }
}
