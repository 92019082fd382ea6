//! CFS StorageClass parameters, the subdirectory pattern of shared-instance mode, and the volume ID.
//! Pure functions, tested by tables and properties.
//!
//! Keys are case-insensitive (Tencent's controller lower-cased them). Keys Tencent's drivers knew
//! but that mean nothing for a new volume ([`LEGACY_KEYS`]) are accepted and named in
//! [`CfsParams::ignored`]; a key no driver ever knew is refused, or with `--unknown-parameters
//! warn` named there too. Callers log what is ignored, once per call; nothing here logs.

use std::collections::HashMap;

pub use csi_common::cli::UnknownParameters;

use tcloud::cfs::ResourceTag;

/// What happens to a shared-instance volume's subdirectory when the volume is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// Keep it (the TKE documentation's behaviour for shared instances).
    Retain,
    /// Rename it to a unique archived name in the instance root.
    Archive,
    /// Remove exactly that subdirectory, never a parent.
    Delete,
}

impl OnDelete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Retain => "retain",
            OnDelete::Archive => "archive",
            OnDelete::Delete => "delete",
        }
    }

    pub fn parse(value: &str) -> Option<OnDelete> {
        match value.to_ascii_lowercase().as_str() {
            "retain" => Some(OnDelete::Retain),
            "archive" => Some(OnDelete::Archive),
            "delete" => Some(OnDelete::Delete),
            _ => None,
        }
    }
}

/// Which of Tencent's CFS drivers this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Flavor {
    /// CFS (`com.tencent.cloud.csi.cfs`): NFS file systems made through the CFS API.
    #[default]
    Cfs,
    /// CFS Turbo (`com.tencent.cloud.csi.cfsturbo`): Turbo file systems the StorageClass or PV
    /// names, mounted with the Turbo (Lustre) client or NFSv3; no cloud call, no API keys.
    Turbo,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error(
        "unknown StorageClass parameter {0:?}; accepted: vpcid, subnetid, zone, pgroupid, storagetype, resourcetags, vers, options, subdir-share, subdir-pattern, on-delete (and Tencent's host, fsid, path); --unknown-parameters warn ignores unknown keys"
    )]
    Unknown(String),
    #[error(
        "unknown StorageClass parameter {0:?}; accepted: host, fsid, proto, rootdir, options, subdir-pattern, on-delete (and Tencent's path); --unknown-parameters warn ignores unknown keys"
    )]
    UnknownTurbo(String),
    #[error(
        "StorageClass parameter {0:?} is given twice (keys are case-insensitive) with two values"
    )]
    Twice(String),
    #[error("parameter {key} is required{why}")]
    Missing {
        key: &'static str,
        why: &'static str,
    },
    #[error("parameter {key}={value:?} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// Everything a StorageClass says about a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfsParams {
    pub vpc_id: String,
    pub subnet_id: String,
    pub zone: Option<String>,
    pub pgroup_id: String,
    pub storage_type: String,
    pub tags: Vec<ResourceTag>,
    pub vers: u8,
    /// Shared-instance mode: one file system for the StorageClass, a subdirectory per volume.
    pub shared: bool,
    pub pattern: String,
    pub on_delete: OnDelete,
    /// `csi.storage.k8s.io/...` names the provisioner added, for the pattern.
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
    pub pv_name: Option<String>,
    /// `options`: NFS mount options every volume's `options` attribute carries (Tencent's
    /// controller copied the StorageClass's parameters into each volume's attributes).
    pub options: Option<String>,
    /// Keys accepted and ignored, each with why, for one warning.
    pub ignored: Vec<String>,
}

/// StorageClass keys Tencent's CFS controller passed on to its volumes that mean nothing for a
/// new file system, with why they are ignored.
pub const LEGACY_KEYS: &[(&str, &str)] = &[
    (
        "host",
        "Tencent's controller replaced it with the new file system's mount target",
    ),
    (
        "fsid",
        "Tencent's controller replaced it with the new file system's FSID",
    ),
    (
        "path",
        "a new file system has nothing under its root to mount",
    ),
];

/// What a key no CFS driver knew gets, for [`ParamError::Unknown`] or the warning.
pub(crate) fn unknown_key(
    key: &str,
    policy: UnknownParameters,
    ignored: &mut Vec<String>,
    error: impl FnOnce(String) -> ParamError,
) -> Result<(), ParamError> {
    match policy {
        UnknownParameters::Refuse => Err(error(key.to_owned())),
        UnknownParameters::Warn => {
            ignored.push(format!("{key} (no CFS driver knows it)"));
            Ok(())
        }
    }
}

/// Sorted keys of `params`, so errors and warnings come out the same on every call.
pub(crate) fn sorted_keys(params: &HashMap<String, String>) -> Vec<&String> {
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    keys
}

/// `options` of a StorageClass or PV: comma-separated mount options, none with spaces.
pub(crate) fn check_options(value: &str) -> Result<String, String> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if items
        .iter()
        .any(|o| o.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err("expected comma-separated mount options without spaces".into());
    }
    Ok(items.join(","))
}

pub const DEFAULT_PATTERN: &str = "${pv.metadata.name}";

/// Operator defaults for keys a StorageClass may leave out (the cluster's own VPC and subnet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// What a key no driver ever knew gets (`--unknown-parameters`).
    pub unknown_parameters: UnknownParameters,
}

impl CfsParams {
    pub fn parse(params: &HashMap<String, String>) -> Result<CfsParams, ParamError> {
        Self::parse_with(params, &Defaults::default())
    }

    /// Like [`CfsParams::parse`], with the operator's defaults for `vpcid` and `subnetid`.
    pub fn parse_with(
        params: &HashMap<String, String>,
        defaults: &Defaults,
    ) -> Result<CfsParams, ParamError> {
        let mut lower: HashMap<String, String> = HashMap::new();
        let (mut pvc_name, mut pvc_namespace, mut pv_name) = (None, None, None);
        let mut ignored = Vec::new();
        for key in sorted_keys(params) {
            let value = &params[key];
            match key.as_str() {
                "csi.storage.k8s.io/pvc/name" => pvc_name = Some(value.clone()),
                "csi.storage.k8s.io/pvc/namespace" => pvc_namespace = Some(value.clone()),
                "csi.storage.k8s.io/pv/name" => pv_name = Some(value.clone()),
                k if k.starts_with("csi.storage.k8s.io/") => {}
                k => {
                    let k = k.to_ascii_lowercase();
                    const KNOWN: [&str; 11] = [
                        "vpcid",
                        "subnetid",
                        "zone",
                        "pgroupid",
                        "storagetype",
                        "resourcetags",
                        "vers",
                        "options",
                        "subdir-share",
                        "subdir-pattern",
                        "on-delete",
                    ];
                    if let Some((_, why)) = LEGACY_KEYS.iter().find(|(l, _)| *l == k) {
                        ignored.push(format!("{k} ({why})"));
                        continue;
                    }
                    if !KNOWN.contains(&k.as_str()) {
                        unknown_key(
                            key,
                            defaults.unknown_parameters,
                            &mut ignored,
                            ParamError::Unknown,
                        )?;
                        continue;
                    }
                    let value = value.trim().to_owned();
                    if lower.get(&k).is_some_and(|v| *v != value) {
                        return Err(ParamError::Twice(k));
                    }
                    lower.insert(k, value);
                }
            }
        }
        let get = |k: &str| lower.get(k).filter(|v| !v.is_empty()).cloned();
        let invalid = |key: &'static str, value: &str, reason: &str| ParamError::Invalid {
            key,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let shared = match get("subdir-share").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(invalid("subdir-share", other, "expected true or false")),
        };
        let why = " to create a CFS file system (or start the driver with --default-vpc-id and --default-subnet-id)";
        let vpc_id = get("vpcid")
            .or_else(|| defaults.vpc_id.clone())
            .ok_or(ParamError::Missing { key: "vpcid", why })?;
        if !vpc_id.starts_with("vpc-") {
            return Err(invalid(
                "vpcid",
                &vpc_id,
                "expected a VPC ID like vpc-xxxxxxxx",
            ));
        }
        let subnet_id = get("subnetid")
            .or_else(|| defaults.subnet_id.clone())
            .ok_or(ParamError::Missing {
                key: "subnetid",
                why,
            })?;
        if !subnet_id.starts_with("subnet-") {
            return Err(invalid(
                "subnetid",
                &subnet_id,
                "expected a subnet ID like subnet-xxxxxxxx",
            ));
        }
        let storage_type = get("storagetype")
            .unwrap_or_else(|| "SD".into())
            .to_ascii_uppercase();
        if storage_type != "SD" && storage_type != "HP" {
            return Err(invalid("storagetype", &storage_type, "expected SD or HP"));
        }
        let vers = match get("vers").as_deref() {
            None | Some("4") | Some("4.0") => 4,
            Some("3") => 3,
            Some(other) => return Err(invalid("vers", other, "expected 3 or 4")),
        };
        let tags = match get("resourcetags") {
            None => Vec::new(),
            Some(v) => parse_tags(&v)?,
        };
        let on_delete = match get("on-delete") {
            None => OnDelete::Retain,
            Some(v) => OnDelete::parse(&v)
                .ok_or_else(|| invalid("on-delete", &v, "expected retain, archive or delete"))?,
        };
        if !shared && lower.contains_key("on-delete") {
            return Err(invalid(
                "on-delete",
                on_delete.as_str(),
                "applies only with subdir-share: \"true\" (a whole file system is deleted with its volume)",
            ));
        }
        let pattern = get("subdir-pattern").unwrap_or_else(|| DEFAULT_PATTERN.into());
        // Validate the pattern's variables now, with placeholder values.
        expand_pattern(&pattern, "pv", Some("pvc"), Some("ns"))
            .map_err(|reason| invalid("subdir-pattern", &pattern, &reason))?;
        let options = match get("options") {
            None => None,
            Some(v) => Some(check_options(&v).map_err(|reason| invalid("options", &v, &reason))?)
                .filter(|o| !o.is_empty()),
        };
        Ok(CfsParams {
            vpc_id,
            subnet_id,
            zone: get("zone"),
            pgroup_id: get("pgroupid").unwrap_or_else(|| "pgroupbasic".into()),
            storage_type,
            tags,
            vers,
            shared,
            pattern,
            on_delete,
            pvc_name,
            pvc_namespace,
            pv_name,
            options,
            ignored,
        })
    }
}

fn parse_tags(value: &str) -> Result<Vec<ResourceTag>, ParamError> {
    let mut tags: Vec<ResourceTag> = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let fail = |reason: &str| ParamError::Invalid {
            key: "resourcetags",
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| fail("expected key:value pairs separated by commas"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || tags.iter().any(|t| t.tag_key == k) {
            return Err(fail("a tag key is empty or repeats"));
        }
        tags.push(ResourceTag {
            tag_key: k.to_owned(),
            tag_value: v.to_owned(),
        });
    }
    Ok(tags)
}

/// Expands `${pv.metadata.name}`, `${pvc.metadata.name}`, `${pvc.metadata.namespace}` and makes the
/// result one safe path segment: every character outside `[A-Za-z0-9._-]` becomes `-`, so `/`
/// cannot nest or escape, and an empty, `.` or `..` result is refused.
pub fn expand_pattern(
    pattern: &str,
    pv_name: &str,
    pvc_name: Option<&str>,
    pvc_namespace: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("an unclosed ${")?;
        let value = match &after[..end] {
            "pv.metadata.name" => pv_name,
            "pvc.metadata.name" => pvc_name
                .ok_or("${pvc.metadata.name} needs the provisioner's --extra-create-metadata")?,
            "pvc.metadata.namespace" => pvc_namespace.ok_or(
                "${pvc.metadata.namespace} needs the provisioner's --extra-create-metadata",
            )?,
            other => return Err(format!("unknown variable ${{{other}}}")),
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let safe: String = out
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if safe.is_empty() || safe == "." || safe == ".." {
        return Err(format!(
            "the subdirectory name {out:?} is empty or a relative link"
        ));
    }
    if safe.len() > 200 {
        return Err("the subdirectory name is longer than 200 characters".into());
    }
    Ok(safe)
}

/// The volume ID: a whole file system (`cfs-xxxxxxxx`), or a subdirectory of a shared one with its
/// delete policy and owner (`cfs-xxxxxxxx/<policy>/<subdir>/<owner>`). Everything DeleteVolume
/// needs is in it.
///
/// Two claims whose patterns give one directory (one after the other, when the first was retained)
/// would otherwise share an ID, and a late retry of the first's DeleteVolume would act on the
/// second. The owner, a digest of the volume's CSI name, tells them apart against the directory's
/// owner record. IDs made before owners were recorded have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeId {
    FileSystem(String),
    Subdir {
        fs_id: String,
        on_delete: OnDelete,
        subdir: String,
        owner: Option<String>,
    },
}

/// Hex digits of an owner digest in a volume ID.
const OWNER_HEX: usize = 16;

/// The owner part of a subdirectory volume's ID: a digest of its CSI name.
pub fn owner_digest(volume_name: &str) -> String {
    tcloud::client_token(&[volume_name])[..OWNER_HEX].to_owned()
}

impl VolumeId {
    pub fn parse(id: &str) -> Option<VolumeId> {
        let valid_fs = |fs: &str| {
            fs.strip_prefix("cfs-")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
        };
        let valid_owner = |owner: &str| {
            owner.len() == OWNER_HEX
                && owner
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let mut parts = id.splitn(4, '/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(fs), None, None, None) if valid_fs(fs) => {
                Some(VolumeId::FileSystem(fs.to_owned()))
            }
            (Some(fs), Some(policy), Some(subdir), owner) if valid_fs(fs) => {
                let on_delete = OnDelete::parse(policy)?;
                if owner.is_some_and(|o| !valid_owner(o)) {
                    return None;
                }
                // Only IDs this driver could have made: one safe segment.
                let safe = expand_pattern(subdir, subdir, None, None).ok()?;
                (safe == subdir).then(|| VolumeId::Subdir {
                    fs_id: fs.to_owned(),
                    on_delete,
                    subdir: subdir.to_owned(),
                    owner: owner.map(str::to_owned),
                })
            }
            _ => None,
        }
    }

    pub fn fs_id(&self) -> &str {
        match self {
            VolumeId::FileSystem(fs) | VolumeId::Subdir { fs_id: fs, .. } => fs,
        }
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeId::FileSystem(fs) => f.write_str(fs),
            VolumeId::Subdir {
                fs_id,
                on_delete,
                subdir,
                owner: None,
            } => write!(f, "{fs_id}/{}/{subdir}", on_delete.as_str()),
            VolumeId::Subdir {
                fs_id,
                on_delete,
                subdir,
                owner: Some(owner),
            } => write!(f, "{fs_id}/{}/{subdir}/{owner}", on_delete.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<CfsParams, ParamError> {
        CfsParams::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const NET: [(&str, &str); 2] = [("vpcid", "vpc-1"), ("subnetid", "subnet-1")];

    #[test]
    fn defaults_and_documented_keys() {
        let p = parse(&NET).unwrap();
        assert_eq!(
            (
                p.pgroup_id.as_str(),
                p.storage_type.as_str(),
                p.vers,
                p.shared
            ),
            ("pgroupbasic", "SD", 4, false)
        );
        let mut pairs = NET.to_vec();
        pairs.extend([
            ("zone", "ap-guangzhou-3"),
            ("pgroupid", "pgroup-7"),
            ("StorageType", "hp"),
            ("resourcetags", "team:a, env:prod"),
            ("vers", "3"),
            ("subdir-share", "true"),
            (
                "subdir-pattern",
                "${pvc.metadata.namespace}-${pvc.metadata.name}",
            ),
            ("on-delete", "archive"),
            ("csi.storage.k8s.io/pvc/name", "data"),
        ]);
        let p = parse(&pairs).unwrap();
        assert_eq!(p.storage_type, "HP");
        assert_eq!(p.vers, 3);
        assert!(p.shared);
        assert_eq!(p.on_delete, OnDelete::Archive);
        assert_eq!(p.tags.len(), 2);
        assert_eq!(p.pvc_name.as_deref(), Some("data"));
    }

    #[test]
    fn operator_defaults_fill_in_only_what_is_missing() {
        let defaults = Defaults {
            vpc_id: Some("vpc-default".into()),
            subnet_id: Some("subnet-default".into()),
            ..Defaults::default()
        };
        let p = CfsParams::parse_with(&HashMap::new(), &defaults).unwrap();
        assert_eq!(
            (p.vpc_id.as_str(), p.subnet_id.as_str()),
            ("vpc-default", "subnet-default")
        );
        let given: HashMap<String, String> = [("vpcid".to_string(), "vpc-mine".to_string())].into();
        assert_eq!(
            CfsParams::parse_with(&given, &defaults).unwrap().vpc_id,
            "vpc-mine"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (&[("subnetid", "subnet-1")], "parameter vpcid is required"),
            (&[("vpcid", "vpc-1")], "parameter subnetid is required"),
            (
                &[("vpcid", "vpc-1"), ("subnetid", "subnet-1"), ("size", "1")],
                "unknown StorageClass parameter \"size\"",
            ),
            (
                &[("vpcid", "vpc-1"), ("subnetid", "subnet-1"), ("vers", "5")],
                "vers=\"5\"",
            ),
            (
                &[
                    ("vpcid", "vpc-1"),
                    ("subnetid", "subnet-1"),
                    ("on-delete", "delete"),
                ],
                "applies only with subdir-share",
            ),
            (
                &[
                    ("vpcid", "vpc-1"),
                    ("subnetid", "subnet-1"),
                    ("subdir-share", "true"),
                    ("on-delete", "shred"),
                ],
                "expected retain, archive or delete",
            ),
            (
                &[
                    ("vpcid", "vpc-1"),
                    ("subnetid", "subnet-1"),
                    ("subdir-pattern", "${secret}"),
                ],
                "unknown variable ${secret}",
            ),
            (
                &[("vpcid", "net-1"), ("subnetid", "subnet-1")],
                "expected a VPC ID",
            ),
        ];
        for (pairs, expected) in table {
            let err = parse(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }

    /// Every CFS StorageClass of Tencent's examples and the TKE documentation, and what it becomes.
    #[test]
    fn tencents_storage_classes_parse() {
        // deploy/cfs/examples/dynamic-provison-allinone.yaml
        let p = parse(&[
            ("vpcid", "vpc-xxxxxxxx"),
            ("subnetid", "subnet-xxxxxxxx"),
            ("resourcetags", "a:b,c:d"),
        ])
        .unwrap();
        assert_eq!((p.vers, p.shared, p.tags.len()), (4, false, 2));
        assert!(p.ignored.is_empty() && p.options.is_none());
        // TKE (002:34702): every documented key, an empty resourcetags.
        let tke = [
            ("pgroupid", "pgroup-xxxxxxxx"),
            ("storagetype", "SD"),
            ("vpcid", "vpc-xxxxxxxx"),
            ("subnetid", "subnet-xxxxxxxx"),
            ("vers", "3"),
            ("resourcetags", ""),
            ("zone", "ap-guangzhou-3"),
        ];
        let p = parse(&tke).unwrap();
        assert_eq!(
            (
                p.pgroup_id.as_str(),
                p.vers,
                p.zone.as_deref(),
                p.tags.len()
            ),
            ("pgroup-xxxxxxxx", 3, Some("ap-guangzhou-3"), 0)
        );
        // The shared-instance class of the same page.
        let mut shared = tke.to_vec();
        shared.push(("subdir-share", "true"));
        assert!(parse(&shared).unwrap().shared);
        // Keys in any case; the attributes Tencent's controller passed on to volumes.
        let p = parse(&[
            ("VpcId", "vpc-1"),
            ("SubnetId", "subnet-1"),
            ("StorageType", "HP"),
            ("Options", "rsize=1048576, wsize=1048576"),
            ("host", "10.0.0.1"),
            ("fsid", "abc"),
            ("path", "/"),
        ])
        .unwrap();
        assert_eq!(p.storage_type, "HP");
        assert_eq!(p.options.as_deref(), Some("rsize=1048576,wsize=1048576"));
        assert_eq!(p.ignored.len(), 3);
        for (key, ignored) in ["fsid", "host", "path"].iter().zip(&p.ignored) {
            assert!(ignored.starts_with(&format!("{key} (")), "{ignored}");
        }
    }

    #[test]
    fn unknown_keys_follow_the_policy_and_spellings_must_agree() {
        let pairs: HashMap<String, String> =
            [("vpcid", "vpc-1"), ("subnetid", "subnet-1"), ("size", "1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let warn = Defaults {
            unknown_parameters: UnknownParameters::Warn,
            ..Defaults::default()
        };
        let p = CfsParams::parse_with(&pairs, &warn).unwrap();
        assert_eq!(p.ignored, ["size (no CFS driver knows it)"]);
        let err = CfsParams::parse_with(&pairs, &Defaults::default()).unwrap_err();
        assert_eq!(err, ParamError::Unknown("size".into()));
        let err = parse(&[
            ("vpcid", "vpc-1"),
            ("VPCID", "vpc-2"),
            ("subnetid", "subnet-1"),
        ])
        .unwrap_err();
        assert_eq!(err, ParamError::Twice("vpcid".into()));
        assert!(
            parse(&[
                ("vpcid", "vpc-1"),
                ("subnetid", "subnet-1"),
                ("options", "a b")
            ])
            .unwrap_err()
            .to_string()
            .contains("options")
        );
    }

    #[test]
    fn patterns_cannot_escape() {
        let table = [
            ("${pv.metadata.name}", "pvc-1"),
            ("../../etc", "..-..-etc"),
            ("/absolute/path", "-absolute-path"),
            ("a/b", "a-b"),
            ("${pvc.metadata.namespace}/${pvc.metadata.name}", "ns-data"),
            ("x\\0y", "x-0y"),
        ];
        for (pattern, expected) in table {
            assert_eq!(
                expand_pattern(pattern, "pvc-1", Some("data"), Some("ns")).unwrap(),
                expected,
                "{pattern}"
            );
        }
        for bad in ["", ".", "..", "${pvc.metadata.name"] {
            assert!(
                expand_pattern(bad, "pvc-1", Some("d"), Some("n")).is_err(),
                "{bad:?}"
            );
        }
        assert!(expand_pattern("${pvc.metadata.name}", "pv", None, None).is_err());
    }

    #[test]
    fn volume_ids_round_trip_and_reject_what_we_never_make() {
        for id in [
            "cfs-abc123",
            "cfs-abc123/retain/pvc-1",
            "cfs-abc123/archive/ns-data",
            "cfs-x/delete/a.b_c",
            "cfs-x/delete/a.b_c/0123456789abcdef",
        ] {
            assert_eq!(VolumeId::parse(id).unwrap().to_string(), id);
        }
        for bad in [
            "",
            "cfs-",
            "disk-1",
            "cfs-a/delete/..",
            "cfs-a/delete/a/b",
            "cfs-a/shred/x",
            "cfs-a/delete/",
            "cfs-a/retain",
            "cfs-a/retain/x/0123",
            "cfs-a/retain/x/0123456789ABCDEF",
            "cfs-a/retain/x/0123456789abcdef/y",
        ] {
            assert_eq!(VolumeId::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_pattern_yields_one_safe_segment_or_an_error(pattern in ".{0,40}") {
            if let Ok(name) = expand_pattern(&pattern, "pv-1", Some("c"), Some("n")) {
                prop_assert!(!name.contains('/') && name != "." && name != ".." && !name.is_empty());
                prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            }
        }
    }
}
