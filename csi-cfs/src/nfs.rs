//! NFS sources, their mount options, and how they are mounted.
//!
//! A real node runs `mount -t nfs -o <options> <source> <target>` as a supervised child process
//! with a timeout, killed when hung. This machine's kernel has no NFS client, so the one explicit
//! seam is [`NfsMounter::SimExports`]: it resolves a simulator-owned source through the
//! simulator's export table (`<exports>/<ip>` links to the file system's directory, `<ip>.fsid`
//! holds its FSID) and bind-mounts the directory, through the same supervised `mount` program.
//! Everything above this module runs as on a real node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_common::mount::{CommandError, MountError, Mounter, run_command};

/// How a file system is served to the node: the kernel's NFS client, or CFS Turbo's private
/// Lustre-based client (`mount -t lustre`, which needs its kernel module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Nfs,
    Lustre,
}

/// Where a volume lives: the PV attributes `host`, `path`, `vers`, `fsid`, `options` (and, for
/// CFS Turbo, `proto` and `rootdir`: see [`crate::turbo`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NfsSource {
    pub host: String,
    /// Absolute path inside the exported directory, `/` for its root.
    pub path: String,
    pub vers: u8,
    /// Needed for NFSv3 and Lustre, whose export is `/<fsid>`.
    pub fsid: Option<String>,
    /// Extra mount options from the `options` attribute.
    pub options: Vec<String>,
    /// The directory the server exports under: `/` for CFS, the Turbo root directory (`/cfs` by
    /// default) for CFS Turbo, which exports nothing above it.
    pub root_dir: String,
    pub transport: Transport,
}

/// Our defaults, each overridable: hard mounts with a long timeout, as CFS recommends.
const DEFAULT_OPTIONS: [&str; 3] = ["hard", "timeo=600", "retrans=2"];

fn option_key(option: &str) -> &str {
    let key = option.split('=').next().unwrap_or(option);
    // hard/soft and the like are one setting with two spellings.
    match key {
        "soft" | "hard" => "hard|soft",
        "ro" | "rw" => "ro|rw",
        other => other,
    }
}

impl NfsSource {
    /// Reads the volume context (static PVs and our own volumes alike), its keys lower-case.
    pub fn from_context(context: &HashMap<String, String>) -> Result<NfsSource, String> {
        let host = context
            .get("host")
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .ok_or("volume attribute host is required")?;
        if host.contains(['/', ' ', ',']) {
            return Err(format!(
                "volume attribute host {host:?} is not a host name or address"
            ));
        }
        let path = context
            .get("path")
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        if !path.starts_with('/')
            || path.split('/').any(|segment| segment == "..")
            || path.contains(',')
        {
            return Err(format!(
                "volume attribute path {path:?} must be absolute and must not contain .."
            ));
        }
        let fsid = context
            .get("fsid")
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty());
        // Without `vers`, an `fsid` means NFSv3, as Tencent's node read it: the PVs its
        // controller made carry `fsid` and no `vers`.
        let vers = match context.get("vers").map(|v| v.trim()) {
            None | Some("") if fsid.is_some() => 3,
            None | Some("") | Some("4") | Some("4.0") => 4,
            Some("3") => 3,
            Some(other) => return Err(format!("volume attribute vers {other:?} must be 3 or 4")),
        };
        if let Some(fsid) = &fsid
            && !fsid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(format!(
                "volume attribute fsid {fsid:?} must be alphanumeric"
            ));
        }
        if vers == 3 && fsid.is_none() {
            return Err(
                "volume attribute fsid is required for NFS v3 (the export is /<fsid>)".into(),
            );
        }
        let options = context
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
            host: host.to_owned(),
            path: path.trim_end_matches('/').to_owned(),
            vers,
            fsid,
            options,
            root_dir: "/".into(),
            transport: Transport::Nfs,
        }
        .normalized())
    }

    pub(crate) fn normalized(mut self) -> Self {
        if self.path.is_empty() {
            self.path = "/".into();
        }
        self
    }

    /// The same file system's root.
    pub fn root(&self) -> NfsSource {
        NfsSource {
            path: "/".into(),
            ..self.clone()
        }
    }

    /// The mount source: `<host>:<path>` for v4, `<host>:/<fsid><path>` for v3, and
    /// `<host>@tcp0:/<fsid><path>` for Lustre, each path under the root directory.
    pub fn device(&self) -> String {
        let under = |p: &str| {
            if p == "/" {
                String::new()
            } else {
                p.to_owned()
            }
        };
        let path = format!("{}{}", under(&self.root_dir), under(&self.path));
        match (self.transport, self.vers, &self.fsid) {
            (Transport::Lustre, _, Some(fsid)) => format!("{}@tcp0:/{fsid}{path}", self.host),
            (Transport::Nfs, 3, Some(fsid)) => format!("{}:/{fsid}{path}", self.host),
            _ => format!(
                "{}:{}",
                self.host,
                if path.is_empty() { "/" } else { &path }
            ),
        }
    }

    /// The file system type `mount -t` is given.
    pub fn fs_type(&self) -> &'static str {
        match self.transport {
            Transport::Nfs => "nfs",
            Transport::Lustre => "lustre",
        }
    }

    /// Mount options: the old driver's (`vers`, `noresvport` with an fsid, `nolock,proto=tcp` for
    /// v3), our defaults (`hard,timeo=600,retrans=2`), then the `options` attribute, then the
    /// capability's mount flags; a later option replaces an earlier one with the same key.
    /// Lustre takes only the `options` attribute and the flags.
    pub fn mount_options(&self, flags: &[String], read_only: bool) -> Vec<String> {
        let mut options: Vec<String> = Vec::new();
        if self.transport == Transport::Nfs {
            options.push(format!("vers={}", self.vers));
            if self.fsid.is_some() {
                options.push("noresvport".into());
            }
            if self.vers == 3 {
                options.extend(["nolock".to_owned(), "proto=tcp".to_owned()]);
            }
            options.extend(DEFAULT_OPTIONS.iter().map(|o| o.to_string()));
        }
        for option in self.options.iter().chain(flags) {
            options.retain(|o| option_key(o) != option_key(option));
            options.push(option.clone());
        }
        if read_only {
            options.retain(|o| option_key(o) != "ro|rw");
            options.push("ro".into());
        }
        options
    }

    /// A short stable name for this file system and option set (one node-wide mount each).
    pub fn mount_key(&self, flags: &[String]) -> String {
        let root = self.root();
        let options = root.mount_options(flags, false).join(",");
        let host: String = self
            .host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!(
            "{host}-{}",
            &tcloud::client_token(&[&root.device(), &options])[..12]
        )
    }
}

/// The programs that mount and unmount, and how long they may take before they are killed.
#[derive(Debug, Clone)]
pub struct Programs {
    pub mount: String,
    pub umount: String,
    pub timeout: Duration,
}

/// How NFS sources get mounted on this node.
#[derive(Debug, Clone)]
pub enum NfsMounter {
    /// The kernel's NFS client, through `mount -t nfs`.
    Kernel { programs: Programs },
    /// The simulator's export table (the documented seam on machines without an NFS client).
    SimExports {
        exports: PathBuf,
        programs: Programs,
    },
}

impl NfsMounter {
    /// The exact argument vector of `mount` for a real NFS mount.
    pub fn kernel_args(
        source: &NfsSource,
        target: &Path,
        flags: &[String],
        read_only: bool,
    ) -> Vec<String> {
        let options = source.mount_options(flags, read_only);
        let mut args = vec!["-t".into(), source.fs_type().into()];
        if !options.is_empty() {
            args.extend(["-o".into(), options.join(",")]);
        }
        args.extend([source.device(), target.display().to_string()]);
        args
    }

    /// Why `source` cannot be mounted on this node: the Turbo client missing for a Lustre source
    /// (read from `/proc/modules`; the simulator's seam needs none). `None` when it can.
    pub fn client_missing(&self, source: &NfsSource) -> Option<String> {
        match (self, source.transport) {
            (NfsMounter::Kernel { .. }, Transport::Lustre) => {
                let modules = std::fs::read_to_string(MODULES_FILE).unwrap_or_default();
                missing_client(&modules)
            }
            _ => None,
        }
    }

    fn programs(&self) -> &Programs {
        match self {
            NfsMounter::Kernel { programs } | NfsMounter::SimExports { programs, .. } => programs,
        }
    }

    /// Mounts `source` on `target` (an existing directory).
    pub fn mount(
        &self,
        source: &NfsSource,
        target: &Path,
        flags: &[String],
        read_only: bool,
    ) -> Result<(), MountError> {
        let Programs { mount, timeout, .. } = self.programs();
        match self {
            NfsMounter::Kernel { .. } => {
                run_command(
                    mount,
                    &Self::kernel_args(source, target, flags, read_only),
                    *timeout,
                )?;
            }
            NfsMounter::SimExports { exports, .. } => {
                let dir = resolve_export(exports, source)?;
                let (dir, target) = (dir.display().to_string(), target.display().to_string());
                run_command(mount, &["--bind", dir.as_str(), target.as_str()], *timeout)?;
                if read_only {
                    run_command(mount, &["-o", "remount,bind,ro", target.as_str()], *timeout)?;
                }
            }
        }
        Ok(())
    }

    /// Unmounts the topmost mount at `path` through the `umount` program, killed at the timeout:
    /// an unmount of an NFS mount whose server is gone can hang forever in the kernel. A hung one
    /// is detached lazily (`umount -l`), which returns at once.
    pub fn unmount(&self, path: &Path) -> Result<(), MountError> {
        let Programs {
            umount, timeout, ..
        } = self.programs();
        let path = path.display().to_string();
        match run_command(umount, &[path.as_str()], *timeout) {
            Ok(_) => Ok(()),
            Err(CommandError::TimedOut { .. }) => {
                tracing::warn!(path, "umount hung: detaching lazily");
                run_command(umount, &["-l", path.as_str()], *timeout)?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Unmounts every mount stacked at `path` (nothing mounted is fine).
    pub fn unmount_all<M: Mounter + ?Sized>(
        &self,
        mounter: &M,
        path: &Path,
    ) -> Result<(), MountError> {
        for _ in 0..16 {
            if mounter.mount_at(path)?.is_none() {
                return Ok(());
            }
            self.unmount(path)?;
        }
        Err(MountError::TooManyMounts {
            path: path.display().to_string(),
        })
    }
}

/// Where the kernel lists its loaded modules.
pub const MODULES_FILE: &str = "/proc/modules";

/// Why `mount -t lustre` cannot work on a node whose loaded modules are `modules` (the text of
/// `/proc/modules`), or `None` when the Turbo client is there. Nothing is ever installed.
pub fn missing_client(modules: &str) -> Option<String> {
    let loaded = modules
        .lines()
        .any(|line| matches!(line.split_whitespace().next(), Some("lustre" | "ptlrpc")));
    (!loaded).then(|| {
        "the CFS Turbo client is not on this node (no lustre or ptlrpc kernel module in /proc/modules): install it as https://cloud.tencent.com/document/product/582/54765 says, or use proto: nfs; the driver never installs anything".to_owned()
    })
}

/// The simulator directory behind `source`, checked to stay inside the file system's root.
pub fn resolve_export(exports: &Path, source: &NfsSource) -> Result<PathBuf, MountError> {
    let io = |path: &Path, what: &'static str, source: std::io::Error| MountError::Io {
        path: path.display().to_string(),
        what,
        source,
    };
    let link = exports.join(&source.host);
    let root = std::fs::canonicalize(&link).map_err(|e| {
        io(
            &link,
            "no such NFS server in the simulator's export table",
            e,
        )
    })?;
    if source.vers == 3 || source.transport == Transport::Lustre {
        let fsid_file = exports.join(format!("{}.fsid", source.host));
        let fsid = std::fs::read_to_string(&fsid_file)
            .map_err(|e| io(&fsid_file, "cannot read the export's FSID", e))?;
        if source.fsid.as_deref() != Some(fsid.trim()) {
            return Err(io(
                &link,
                "the v3 export /<fsid> does not exist on this server",
                std::io::Error::from_raw_os_error(2),
            ));
        }
    }
    let wanted = root
        .join(source.root_dir.trim_start_matches('/'))
        .join(source.path.trim_start_matches('/'));
    let dir = std::fs::canonicalize(&wanted)
        .map_err(|e| io(&wanted, "the path does not exist on the file system", e))?;
    if !dir.starts_with(&root) {
        return Err(io(
            &wanted,
            "the path leaves the file system",
            std::io::Error::from_raw_os_error(13),
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kernel_argument_vectors_v4_and_v3() {
        let v4 =
            NfsSource::from_context(&context(&[("host", "10.0.0.5"), ("path", "/pvc-1")])).unwrap();
        assert_eq!(
            NfsMounter::kernel_args(&v4, Path::new("/mnt/x"), &[], false),
            [
                "-t",
                "nfs",
                "-o",
                "vers=4,hard,timeo=600,retrans=2",
                "10.0.0.5:/pvc-1",
                "/mnt/x"
            ]
        );
        let v3 = NfsSource::from_context(&context(&[
            ("host", "10.0.0.5"),
            ("vers", "3"),
            ("fsid", "ab12cd34"),
            ("path", "/data/"),
        ]))
        .unwrap();
        assert_eq!(
            NfsMounter::kernel_args(
                &v3,
                Path::new("/mnt/y"),
                &["soft".into(), "timeo=30".into()],
                true
            ),
            [
                "-t",
                "nfs",
                "-o",
                "vers=3,noresvport,nolock,proto=tcp,retrans=2,soft,timeo=30,ro",
                "10.0.0.5:/ab12cd34/data",
                "/mnt/y"
            ]
        );
        let root =
            NfsSource::from_context(&context(&[("host", "h"), ("vers", "3"), ("fsid", "f1")]))
                .unwrap();
        assert_eq!(root.device(), "h:/f1");
        let with_options = NfsSource::from_context(&context(&[
            ("host", "h"),
            ("options", "rsize=1048576, nosuid"),
        ]))
        .unwrap();
        assert_eq!(
            with_options.mount_options(&["rsize=65536".into()], false),
            [
                "vers=4",
                "hard",
                "timeo=600",
                "retrans=2",
                "nosuid",
                "rsize=65536"
            ]
        );
    }

    #[test]
    fn bad_contexts_are_named() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (&[], "host is required"),
            (&[("host", "a/b")], "not a host name"),
            (&[("host", "h"), ("path", "relative")], "must be absolute"),
            (
                &[("host", "h"), ("path", "/a/../../etc")],
                "must not contain ..",
            ),
            (&[("host", "h"), ("vers", "2")], "must be 3 or 4"),
            (
                &[("host", "h"), ("vers", "3")],
                "fsid is required for NFS v3",
            ),
            (&[("host", "h"), ("fsid", "a/b")], "must be alphanumeric"),
        ];
        for (pairs, expected) in table {
            let err = NfsSource::from_context(&context(pairs)).unwrap_err();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn sim_exports_resolve_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("fs");
        std::fs::create_dir_all(fs.join("sub")).unwrap();
        let exports = dir.path().join("exports");
        std::fs::create_dir_all(&exports).unwrap();
        std::os::unix::fs::symlink(&fs, exports.join("10.9.0.1")).unwrap();
        std::fs::write(exports.join("10.9.0.1.fsid"), "fsid0001").unwrap();
        std::os::unix::fs::symlink("/etc", fs.join("escape")).unwrap();
        let source = |path: &str, vers: u8, fsid: Option<&str>| NfsSource {
            host: "10.9.0.1".into(),
            path: path.into(),
            vers,
            fsid: fsid.map(str::to_owned),
            options: vec![],
            root_dir: "/".into(),
            transport: Transport::Nfs,
        };
        assert_eq!(
            resolve_export(&exports, &source("/sub", 4, None)).unwrap(),
            fs.canonicalize().unwrap().join("sub")
        );
        assert_eq!(
            resolve_export(&exports, &source("/", 3, Some("fsid0001"))).unwrap(),
            fs.canonicalize().unwrap()
        );
        assert!(resolve_export(&exports, &source("/", 3, Some("other"))).is_err());
        assert!(
            resolve_export(&exports, &source("/escape", 4, None)).is_err(),
            "a symlink out of the root"
        );
        assert!(resolve_export(&exports, &source("/missing", 4, None)).is_err());
        let unknown = NfsSource {
            host: "10.9.9.9".into(),
            ..source("/", 4, None)
        };
        assert!(resolve_export(&exports, &unknown).is_err());
    }
}
