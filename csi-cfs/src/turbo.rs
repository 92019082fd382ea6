//! CFS Turbo (`com.tencent.cloud.csi.cfsturbo`, `csi-cfs --flavor turbo`): the PV attributes and
//! StorageClass parameters of Tencent's CFSTURBO-CSI add-on, its volume IDs, and the check for the
//! Turbo client. Pure functions, tested by tables.
//!
//! A Turbo file system is handed to the driver by its server address (`host`) and `fsid`; the
//! driver never creates one. It exports only under its root directory (`rootdir`, `/cfs` by
//! default) and is mounted with the private Lustre-based client (`proto: lustre`, the default:
//! `mount -t lustre <host>@tcp0:/<fsid><rootdir>`, which needs the Turbo kernel module) or over
//! NFSv3 (`proto: nfs`: `<host>:/<fsid><rootdir>`). Attribute and parameter keys are
//! case-insensitive, as the old driver lower-cased them.
//!
//! Volume IDs: ours are `cfsturbo/<host>/<fsid>/<proto>/<rootdir>/<on-delete>/<subdir>/<owner>`
//! (the root directory's `/` written `:`), everything DeleteVolume needs. The old driver's
//! `<fsid>-<host>-/<cluster>/<pv>` (a directory under `/cfs`) are still understood.

use std::collections::HashMap;

use crate::nfs::{NfsSource, Transport};
use crate::params::{
    DEFAULT_PATTERN, OnDelete, ParamError, UnknownParameters, expand_pattern, owner_digest,
    sorted_keys, unknown_key,
};

pub const DRIVER_NAME: &str = "com.tencent.cloud.csi.cfsturbo";
pub const DEFAULT_ROOT_DIR: &str = "/cfs";

fn lowered(map: &HashMap<String, String>) -> HashMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The server, file system and protocol of a Turbo file system, as attributes or parameters name
/// them; `what` is "volume attribute" or "parameter" in errors.
fn file_system(
    get: &HashMap<String, String>,
    what: &str,
) -> Result<(String, String, Transport, String), String> {
    let host = get.get("host").ok_or(format!(
        "{what} host (the Turbo server's address) is required"
    ))?;
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-'))
    {
        return Err(format!("{what} host {host:?} is not an address"));
    }
    let fsid = get.get("fsid").ok_or(format!(
        "{what} fsid (the Turbo file system's FSID) is required"
    ))?;
    if !fsid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("{what} fsid {fsid:?} must be alphanumeric"));
    }
    let transport = match get.get("proto").map(|p| p.to_ascii_lowercase()).as_deref() {
        None | Some("lustre") => Transport::Lustre,
        Some("nfs") => Transport::Nfs,
        Some(other) => return Err(format!("{what} proto {other:?} must be lustre or nfs")),
    };
    let root_dir = get
        .get("rootdir")
        .map(String::as_str)
        .unwrap_or(DEFAULT_ROOT_DIR)
        .trim_end_matches('/');
    let segments: Vec<&str> = root_dir.split('/').skip(1).collect();
    if !root_dir.starts_with('/')
        || segments.is_empty()
        || !segments.iter().all(|s| safe_segment(s))
    {
        return Err(format!(
            "{what} rootdir {root_dir:?} must be an absolute directory like /cfs (letters, digits, . _ -)"
        ));
    }
    Ok((host.clone(), fsid.clone(), transport, root_dir.to_owned()))
}

/// A volume's source from its attributes (static PVs and ours alike).
pub fn source_from_context(context: &HashMap<String, String>) -> Result<NfsSource, String> {
    let get = lowered(context);
    let (host, fsid, transport, root_dir) = file_system(&get, "volume attribute")?;
    let path = get.get("path").map(String::as_str).unwrap_or("/");
    if !path.starts_with('/') || path.split('/').any(|s| s == "..") || path.contains(',') {
        return Err(format!(
            "volume attribute path {path:?} must be absolute and must not contain .."
        ));
    }
    let options = get
        .get("options")
        .map(|o| {
            o.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(NfsSource {
        host,
        path: path.trim_end_matches('/').to_owned(),
        vers: 3,
        fsid: Some(fsid),
        options,
        root_dir,
        transport,
    }
    .normalized())
}

/// What a Turbo StorageClass says about a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurboParams {
    pub host: String,
    pub fsid: String,
    pub transport: Transport,
    pub root_dir: String,
    /// The `options` attribute handed to nodes.
    pub options: Option<String>,
    pub pattern: String,
    pub on_delete: OnDelete,
    pub pv_name: Option<String>,
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
    /// Keys accepted and ignored, each with why, for one warning.
    pub ignored: Vec<String>,
}

impl TurboParams {
    /// Refuses keys no driver ever knew.
    pub fn parse(parameters: &HashMap<String, String>) -> Result<TurboParams, ParamError> {
        Self::parse_with(parameters, UnknownParameters::Refuse)
    }

    /// Keys no driver ever knew get `policy`. `path`, which Tencent's controller replaced with
    /// `/<cluster>/<pv>`, is accepted and ignored.
    pub fn parse_with(
        parameters: &HashMap<String, String>,
        policy: UnknownParameters,
    ) -> Result<TurboParams, ParamError> {
        let (mut pv_name, mut pvc_name, mut pvc_namespace) = (None, None, None);
        let mut get = HashMap::new();
        let mut ignored = Vec::new();
        for key in sorted_keys(parameters) {
            let value = &parameters[key];
            match key.as_str() {
                "csi.storage.k8s.io/pv/name" => pv_name = Some(value.clone()),
                "csi.storage.k8s.io/pvc/name" => pvc_name = Some(value.clone()),
                "csi.storage.k8s.io/pvc/namespace" => pvc_namespace = Some(value.clone()),
                k if k.starts_with("csi.storage.k8s.io/") => {}
                k => {
                    let k = k.to_ascii_lowercase();
                    if k == "path" {
                        ignored.push(
                            "path (Tencent's controller replaced it with the volume's subdirectory)"
                                .to_owned(),
                        );
                        continue;
                    }
                    if !matches!(
                        k.as_str(),
                        "host"
                            | "fsid"
                            | "proto"
                            | "rootdir"
                            | "options"
                            | "subdir-pattern"
                            | "on-delete"
                    ) {
                        unknown_key(key, policy, &mut ignored, ParamError::UnknownTurbo)?;
                        continue;
                    }
                    let value = value.trim().to_owned();
                    if get.get(&k).is_some_and(|v| *v != value) {
                        return Err(ParamError::Twice(k));
                    }
                    get.insert(k, value);
                }
            }
        }
        get.retain(|_, v| !v.is_empty());
        let invalid = |key: &'static str, value: &str, reason: String| ParamError::Invalid {
            key,
            value: value.to_owned(),
            reason,
        };
        let (host, fsid, transport, root_dir) =
            file_system(&get, "parameter").map_err(|reason| {
                let key = ["host", "fsid", "proto", "rootdir"]
                    .into_iter()
                    .find(|k| reason.contains(&format!("parameter {k} ")))
                    .unwrap_or("host");
                invalid(key, get.get(key).map(String::as_str).unwrap_or(""), reason)
            })?;
        let on_delete = match get.get("on-delete") {
            None => OnDelete::Retain,
            Some(v) => OnDelete::parse(v).ok_or_else(|| {
                invalid("on-delete", v, "expected retain, archive or delete".into())
            })?,
        };
        let pattern = get
            .get("subdir-pattern")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATTERN.into());
        expand_pattern(&pattern, "pv", Some("pvc"), Some("ns"))
            .map_err(|reason| invalid("subdir-pattern", &pattern, reason))?;
        Ok(TurboParams {
            host,
            fsid,
            transport,
            root_dir,
            options: get.get("options").cloned(),
            pattern,
            on_delete,
            pv_name,
            pvc_name,
            pvc_namespace,
            ignored,
        })
    }
}

/// A Turbo volume's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurboId {
    /// A subdirectory this driver made: `<root_dir>/<subdir>`, with its owner record.
    Subdir {
        host: String,
        fsid: String,
        transport: Transport,
        root_dir: String,
        on_delete: OnDelete,
        subdir: String,
        owner: String,
    },
    /// One Tencent's driver made: `/cfs<path>` (`/<cluster>/<pv>`), removed on delete as it did.
    Old {
        fsid: String,
        host: String,
        path: String,
    },
}

impl TurboId {
    pub fn parse(id: &str) -> Option<TurboId> {
        if let Some(rest) = id.strip_prefix("cfsturbo/") {
            let parts: Vec<&str> = rest.split('/').collect();
            let [host, fsid, proto, root, policy, subdir, owner] = parts.as_slice() else {
                return None;
            };
            let root_dir = format!("/{}", root.replace(':', "/"));
            let context: HashMap<String, String> = [
                ("host", *host),
                ("fsid", *fsid),
                ("proto", *proto),
                ("rootdir", root_dir.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let (host, fsid, transport, root_dir) =
                file_system(&lowered(&context), "volume ID").ok()?;
            let safe = expand_pattern(subdir, subdir, None, None).ok()?;
            let owner_ok = owner.len() == 16
                && owner
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let on_delete = OnDelete::parse(policy)?;
            return (safe == *subdir && owner_ok).then(|| TurboId::Subdir {
                host,
                fsid,
                transport,
                root_dir,
                on_delete,
                subdir: subdir.to_string(),
                owner: owner.to_string(),
            });
        }
        // `<fsid>-<host>-/<cluster>/<pv>`: an FSID has no `-`, an address neither.
        let (fsid, rest) = id.split_once('-')?;
        let (host, path) = rest.split_once('-')?;
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let valid = !fsid.is_empty()
            && fsid.bytes().all(|b| b.is_ascii_alphanumeric())
            && !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
            && path.starts_with('/')
            && segments.len() == 2
            && segments.iter().all(|s| safe_segment(s));
        valid.then(|| TurboId::Old {
            fsid: fsid.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The ID of a new subdirectory volume named `name`.
    pub fn for_volume(params: &TurboParams, subdir: &str, name: &str) -> TurboId {
        TurboId::Subdir {
            host: params.host.clone(),
            fsid: params.fsid.clone(),
            transport: params.transport,
            root_dir: params.root_dir.clone(),
            on_delete: params.on_delete,
            subdir: subdir.to_owned(),
            owner: owner_digest(name),
        }
    }

    /// The root directory the volume's directory lies in, mounted to manage it, and the leaf
    /// under it.
    pub fn root_and_leaf(&self) -> (NfsSource, String) {
        let (host, fsid, transport, root_dir, leaf) = match self {
            TurboId::Subdir {
                host,
                fsid,
                transport,
                root_dir,
                subdir,
                ..
            } => (host, fsid, *transport, root_dir.clone(), subdir.clone()),
            TurboId::Old { fsid, host, path } => {
                let (parent, leaf) = path.rsplit_once('/').unwrap_or(("", path));
                (
                    host,
                    fsid,
                    Transport::Lustre,
                    format!("{DEFAULT_ROOT_DIR}{parent}"),
                    leaf.to_owned(),
                )
            }
        };
        let source = NfsSource {
            host: host.clone(),
            path: "/".into(),
            vers: 3,
            fsid: Some(fsid.clone()),
            options: Vec::new(),
            root_dir,
            transport,
        };
        (source, leaf)
    }
}

fn proto_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Lustre => "lustre",
        Transport::Nfs => "nfs",
    }
}

impl std::fmt::Display for TurboId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurboId::Subdir {
                host,
                fsid,
                transport,
                root_dir,
                on_delete,
                subdir,
                owner,
            } => write!(
                f,
                "cfsturbo/{host}/{fsid}/{}/{}/{}/{subdir}/{owner}",
                proto_name(*transport),
                root_dir.trim_start_matches('/').replace('/', ":"),
                on_delete.as_str()
            ),
            TurboId::Old { fsid, host, path } => write!(f, "{fsid}-{host}-{path}"),
        }
    }
}

/// The volume context of a subdirectory volume: the attributes the old driver's PVs carry.
pub fn volume_context(params: &TurboParams, subdir: &str) -> HashMap<String, String> {
    let mut context: HashMap<String, String> = [
        ("host", params.host.clone()),
        ("fsid", params.fsid.clone()),
        ("proto", proto_name(params.transport).to_owned()),
        ("rootdir", params.root_dir.clone()),
        ("path", format!("/{subdir}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(options) = &params.options {
        context.insert("options".into(), options.clone());
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfs::NfsMounter;
    use std::path::Path;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lustre_and_nfs_argument_vectors_are_exact() {
        let lustre = source_from_context(&map(&[
            ("HOST", "10.0.0.9"),
            ("FsId", "ab12cd34"),
            ("path", "/team/pv-1"),
        ]))
        .unwrap();
        assert_eq!(
            NfsMounter::kernel_args(&lustre.root(), Path::new("/mnt/t"), &[], false),
            ["-t", "lustre", "10.0.0.9@tcp0:/ab12cd34/cfs", "/mnt/t"]
        );
        let nfs = source_from_context(&map(&[
            ("host", "10.0.0.9"),
            ("fsid", "ab12cd34"),
            ("proto", "NFS"),
            ("rootdir", "/cfs/data/"),
            ("options", "rsize=1048576"),
        ]))
        .unwrap();
        assert_eq!(
            NfsMounter::kernel_args(&nfs.root(), Path::new("/mnt/t"), &["ro".into()], false),
            [
                "-t",
                "nfs",
                "-o",
                "vers=3,noresvport,nolock,proto=tcp,hard,timeo=600,retrans=2,rsize=1048576,ro",
                "10.0.0.9:/ab12cd34/cfs/data",
                "/mnt/t"
            ]
        );
        // The node mounts each file system's root directory once; the two differ.
        assert_ne!(lustre.mount_key(&[]), nfs.mount_key(&[]));
    }

    #[test]
    fn bad_attributes_are_named() {
        for (pairs, expected) in [
            (vec![("fsid", "a1")], "host"),
            (vec![("host", "h")], "fsid"),
            (vec![("host", "h"), ("fsid", "a-1")], "fsid"),
            (
                vec![("host", "h"), ("fsid", "a1"), ("proto", "smb")],
                "proto",
            ),
            (
                vec![("host", "h"), ("fsid", "a1"), ("rootdir", "cfs")],
                "rootdir",
            ),
            (
                vec![("host", "h"), ("fsid", "a1"), ("rootdir", "/cfs/../x")],
                "rootdir",
            ),
            (
                vec![("host", "h"), ("fsid", "a1"), ("path", "/a/../b")],
                "path",
            ),
            (vec![("host", "h/x"), ("fsid", "a1")], "host"),
        ] {
            let err = source_from_context(&map(&pairs)).unwrap_err();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn ids_round_trip_and_old_ids_are_understood() {
        let params = TurboParams::parse(&map(&[
            ("host", "10.0.0.9"),
            ("fsid", "ab12cd34"),
            ("rootdir", "/cfs/k8s"),
            ("on-delete", "delete"),
        ]))
        .unwrap();
        let id = TurboId::for_volume(&params, "pvc-1", "pvc-1");
        let text = id.to_string();
        assert!(text.starts_with("cfsturbo/10.0.0.9/ab12cd34/lustre/cfs:k8s/delete/pvc-1/"));
        assert_eq!(TurboId::parse(&text), Some(id.clone()));
        let (root, leaf) = id.root_and_leaf();
        assert_eq!(root.device(), "10.0.0.9@tcp0:/ab12cd34/cfs/k8s");
        assert_eq!(leaf, "pvc-1");

        let old = TurboId::parse("ab12cd34-10.0.0.9-/cls-x1/pvc-2f").unwrap();
        assert_eq!(old.to_string(), "ab12cd34-10.0.0.9-/cls-x1/pvc-2f");
        let (root, leaf) = old.root_and_leaf();
        assert_eq!(root.device(), "10.0.0.9@tcp0:/ab12cd34/cfs/cls-x1");
        assert_eq!(leaf, "pvc-2f");

        for bad in [
            "cfsturbo/10.0.0.9/ab12cd34/lustre/cfs/retain/pvc-1",
            "cfsturbo/10.0.0.9/ab12cd34/lustre/cfs/retain/../0123456789abcdef",
            "cfsturbo/10.0.0.9/ab12cd34/smb/cfs/retain/pvc-1/0123456789abcdef",
            "ab12cd34-10.0.0.9-/../etc",
            "ab12cd34-10.0.0.9-/one",
            "static-pv-name",
            "",
        ] {
            assert_eq!(TurboId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parameters_are_case_insensitive_and_unknown_ones_named() {
        let params = TurboParams::parse(&map(&[
            ("FSID", "ab12cd34"),
            ("Host", "10.0.0.9"),
            ("csi.storage.k8s.io/pv/name", "pv-9"),
        ]))
        .unwrap();
        assert_eq!(params.transport, Transport::Lustre);
        assert_eq!(params.root_dir, "/cfs");
        assert_eq!(params.on_delete, OnDelete::Retain);
        assert_eq!(params.pv_name.as_deref(), Some("pv-9"));
        let err = TurboParams::parse(&map(&[("host", "h"), ("fsid", "a1"), ("vpcid", "vpc-1")]))
            .unwrap_err();
        assert!(err.to_string().contains("vpcid"), "{err}");
        let err = TurboParams::parse(&map(&[("host", "h")])).unwrap_err();
        assert!(err.to_string().contains("fsid"), "{err}");
    }

    /// deploy/cfsturbo/examples/dynamic/sc.yaml, and the keys Tencent's controller passed on.
    #[test]
    fn tencents_storage_classes_and_the_unknown_key_policy() {
        let params =
            TurboParams::parse(&map(&[("fsid", "ab12cd34"), ("host", "10.0.0.9")])).unwrap();
        assert_eq!(
            (
                params.host.as_str(),
                params.fsid.as_str(),
                params.ignored.len()
            ),
            ("10.0.0.9", "ab12cd34", 0)
        );
        let with_path = map(&[("fsid", "ab12cd34"), ("host", "10.0.0.9"), ("path", "/")]);
        let params = TurboParams::parse(&with_path).unwrap();
        assert_eq!(params.ignored.len(), 1);
        assert!(params.ignored[0].starts_with("path ("));
        let unknown = map(&[("fsid", "ab12cd34"), ("host", "10.0.0.9"), ("zone", "z")]);
        assert_eq!(
            TurboParams::parse(&unknown).unwrap_err(),
            ParamError::UnknownTurbo("zone".into())
        );
        let params = TurboParams::parse_with(&unknown, UnknownParameters::Warn).unwrap();
        assert_eq!(params.ignored, ["zone (no CFS driver knows it)"]);
        let twice = map(&[("fsid", "a1"), ("FSID", "b2"), ("host", "10.0.0.9")]);
        assert_eq!(
            TurboParams::parse(&twice).unwrap_err(),
            ParamError::Twice("fsid".into())
        );
    }

    #[test]
    fn the_client_check_reads_the_module_list() {
        let loaded = "ptlrpc 2523136 7 lustre,lmv,mdc, Live 0x0000000000000000 (OE)\nlnet 614400 6 - Live 0x0\n";
        assert_eq!(crate::nfs::missing_client(loaded), None);
        let missing =
            crate::nfs::missing_client("ext4 1 0 - Live 0x0\nnfs 2 0 - Live 0x0\n").unwrap();
        assert!(
            missing.contains("lustre") && missing.contains("never installs"),
            "{missing}"
        );
    }
}
