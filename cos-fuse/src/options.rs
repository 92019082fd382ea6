//! The cosfs-style `-o` mount options, as one table: a row per option with its name, its value,
//! what it sets in a [`MountConfig`], what csi-cos does with it in a volume's `additional_args`,
//! and its help. `cos-fuse mount` parses its `-o` list with [`parse`] and prints [`help`]; csi-cos
//! asks [`find`] for each option of `additional_args`; the README's options table is
//! [`readme_table`], and a test keeps the two equal. A new option is one row of [`OPTIONS`] (and
//! the README row that test then asks for).
//!
//! This module only turns text into typed values. Whether the values fit together is
//! [`FsConfig::validate`](crate::FsConfig::validate)'s business, and anything with a side effect
//! (looking at the staging disk, mounting) is the program's.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{MIB, MountConfig, parse_size};

mod kind;
mod render;

pub use render::{help, readme_table};

/// Why csi-cos drops cosfs's disk cache options (with a warning naming them).
const NO_DISK_CACHE: &str =
    "cos-fuse keeps no disk cache of cosfs's kind; csi-goosefs serves a node-local cache";

/// Why csi-cos drops cosfs's own retry and connection tuning (with a warning naming them).
const COSFS_REQUESTS: &str =
    "it tunes cosfs's HTTP machinery; cos-fuse times out, retries and backs off on its own";

/// Why csi-cos drops cosfs's upload and copy strategy options (with a warning naming them).
const COSFS_UPLOADS: &str = "it picks cosfs's upload or copy strategy; cos-fuse has its own";

/// Why csi-cos drops libfuse's tuning options (with a warning naming them).
const LIBFUSE_TUNING: &str = "it tunes libfuse's kernel interface; cos-fuse sets its own";

/// Why csi-cos drops cosfs's debugging and logging options (with a warning naming them).
const COSFS_LOGS: &str = "cosfs's debugging output; cos-fuse logs to the FUSE host's log";

/// Why csi-cos drops the options only /etc/fstab and mount(8) use.
const FSTAB_ONLY: &str = "an /etc/fstab option for mount(8); a volume is not in fstab";

/// Why csi-cos refuses the kernel's `suid` and `dev`.
const NO_SUID_DEV: &str = "a FUSE mount must not honour setuid binaries or device files";

/// Every option, in the order `--help`, csi-cos's error messages and the README list them.
pub static OPTIONS: &[MountOption] = &[
    MountOption {
        name: "allow_other",
        aliases: &[],
        sets: Sets::Flag(|c| c.allow_other = true),
        csi: Csi::Acts,
        help: "Let users other than the mounting one (root) into the mount; pods need it.",
    },
    MountOption {
        name: "ro",
        aliases: &[],
        sets: Sets::Flag(|c| c.fs.read_only = true),
        csi: Csi::Acts,
        help: "Mount read-only: every change fails with EROFS.",
    },
    MountOption {
        name: "rw",
        aliases: &[],
        sets: Sets::Flag(|c| c.fs.read_only = false),
        csi: Csi::Acts,
        help: "Mount read-write (the default; mount(8) passes it from /etc/fstab).",
    },
    MountOption {
        name: "uid",
        aliases: &[],
        sets: Sets::Id(|c, id| c.fs.uid = id),
        csi: Csi::Acts,
        help: "Owner of every file and directory (default 0): objects have no owner.",
    },
    MountOption {
        name: "gid",
        aliases: &[],
        sets: Sets::Id(|c, id| c.fs.gid = id),
        csi: Csi::Acts,
        help: "Group of every file and directory (default 0).",
    },
    MountOption {
        name: "umask",
        aliases: &[],
        sets: Sets::Mode(|c, mask| {
            c.fs.file_mode = 0o666 & !mask;
            c.fs.dir_mode = 0o777 & !mask;
        }),
        csi: Csi::Acts,
        help: "Permission bits taken from files (0666) and directories (0777); without it, files \
               are 0644 and directories 0755.",
    },
    MountOption {
        name: "multipart_size",
        aliases: &[],
        sets: Sets::Size(Unit::MiB, |c, bytes| c.fs.part_size = bytes),
        csi: Csi::Acts,
        help: "First part size of multipart uploads (default 8MiB), grown so a file fits in 10000 \
               parts.",
    },
    MountOption {
        name: "parallel_count",
        aliases: &[],
        sets: Sets::Integer(|c, n| {
            c.fs.upload_concurrency = usize::try_from(n).unwrap_or(usize::MAX);
        }),
        csi: Csi::Acts,
        help: "Part uploads in flight, all files together (default 32).",
    },
    MountOption {
        name: "stat_cache_expire",
        aliases: &[],
        sets: Sets::Seconds(|c, ttl| {
            c.fs.attr_ttl = ttl;
            c.fs.negative_ttl = ttl;
            c.fs.list_ttl = ttl;
        }),
        csi: Csi::Acts,
        help: "How long attributes, \"no such file\" and listings are trusted (default 15); with \
               the block cache, its metadata too.",
    },
    MountOption {
        name: "max_stat_cache_size",
        aliases: &[],
        sets: Sets::Integer(|c, n| {
            c.fs.list_cache_max_entries = usize::try_from(n).unwrap_or(usize::MAX);
        }),
        csi: Csi::Acts,
        help: "Entries of all cached listings together (default 100000).",
    },
    MountOption {
        name: "readwrite_timeout",
        aliases: &[],
        sets: Sets::Seconds(|c, t| c.request_timeout = Some(t.max(Duration::from_secs(1)))),
        csi: Csi::Acts,
        help: "Timeout of one attempt of a request to the bucket (default 30, at least 1).",
    },
    MountOption {
        name: "ensure_diskfree",
        aliases: &[],
        sets: Sets::Size(Unit::MiB, |c, bytes| c.ensure_diskfree = Some(bytes)),
        csi: Csi::Acts,
        help: "Space kept free on the staging disk: staging stops short of it.",
    },
    MountOption {
        name: "use_path_request_style",
        aliases: &[],
        sets: Sets::Flag(|c| c.path_style = true),
        csi: Csi::Acts,
        help: "Name the bucket in the path (`endpoint/bucket/key`) rather than the host name, \
               for S3 servers without virtual hosts.",
    },
    MountOption {
        name: "max_memory_mb",
        aliases: &[],
        sets: Sets::Size(Unit::MiB, |c, bytes| c.fs.memory_budget = bytes),
        csi: Csi::Acts,
        help: "Memory of read-ahead and write buffers, all handles together (default 128MiB; at \
               least twice `multipart_size`).",
    },
    MountOption {
        name: "read_ahead_mb",
        aliases: &[],
        sets: Sets::Size(Unit::MiB, |c, bytes| {
            c.fs.read_ahead_max = bytes.max(MIB);
            c.fs.read_ahead_initial = c.fs.read_ahead_initial.min(c.fs.read_ahead_max);
        }),
        csi: Csi::Acts,
        help: "Largest read-ahead window of a sequential read (default 64MiB, at least 1MiB).",
    },
    MountOption {
        name: "kernel_read_ahead_kb",
        aliases: &[],
        sets: Sets::Size(Unit::KiB, |c, bytes| c.fs.kernel_read_ahead = bytes),
        csi: Csi::Acts,
        help: "The kernel's read-ahead on the mount (default 1024; 0 keeps the kernel's 128): \
               the kernel then asks for up to 1 MiB per read request, a quarter of the round \
               trips through the daemon. Set through `/sys/class/bdi`, so it needs root and a \
               writable `/sys`; without them the mount works with the kernel's default and logs \
               it once.",
    },
    MountOption {
        name: "nonempty",
        aliases: &[],
        sets: Sets::Flag(|_| {}),
        csi: Csi::Ignored("cos-fuse mounts over a non-empty directory anyway"),
        help: "Changes nothing: cos-fuse mounts over a non-empty directory anyway.",
    },
    MountOption {
        name: "noxattr",
        aliases: &[],
        sets: Sets::Flag(|_| {}),
        csi: Csi::Ignored("cos-fuse has no extended attributes"),
        help: "Changes nothing: cos-fuse has no extended attributes (EOPNOTSUPP).",
    },
    MountOption {
        name: "dbglevel",
        aliases: &[],
        sets: Sets::NotServed(Kind::Text("LEVEL")),
        csi: Csi::Ignored("the log level comes from the `dbglevel` attribute"),
        help: "cosfs's log level; cos-fuse takes `--log-level`.",
    },
    MountOption {
        name: "staging_dir",
        aliases: &[],
        sets: Sets::Path(|c, path| c.fs.staging_dir = path),
        csi: Csi::Refused(
            "csi-cos does not serve it: a volume must not pick a directory on the node",
        ),
        help: "Where files being rewritten, appended or written out of order are staged \
               (default: the temporary directory).",
    },
    MountOption {
        name: "staging_max_mb",
        aliases: &[],
        sets: Sets::Size(Unit::MiB, |c, bytes| c.fs.staging_max_bytes = bytes),
        csi: Csi::Refused(
            "csi-cos does not serve it: the node's staging space is shared by its volumes",
        ),
        help: "Space of all staging files together (default 16GiB): past it a write fails with \
               ENOSPC, and a larger file with EFBIG.",
    },
    cosfs_only(
        "use_cache",
        Kind::Path,
        NO_DISK_CACHE,
        "cosfs's disk cache directory; cos-fuse's block cache is `--cache-dir`.",
    ),
    cosfs_only(
        "del_cache",
        Kind::Flag,
        NO_DISK_CACHE,
        "cosfs empties its disk cache at start and exit.",
    ),
    cosfs_only(
        "check_cache_dir_exist",
        Kind::Flag,
        NO_DISK_CACHE,
        "cosfs checks at start that its disk cache directory exists.",
    ),
    cosfs_only(
        "enable_noobj_cache",
        Kind::Flag,
        NO_DISK_CACHE,
        "cosfs caches \"no such object\" answers; cos-fuse always does, for `stat_cache_expire`.",
    ),
    cosfs_only(
        "retries",
        Kind::Integer,
        COSFS_REQUESTS,
        "How often cosfs retries a failed request.",
    ),
    cosfs_only(
        "connect_timeout",
        Kind::Seconds,
        COSFS_REQUESTS,
        "cosfs's connection timeout.",
    ),
    cosfs_only(
        "multireq_max",
        Kind::Integer,
        COSFS_REQUESTS,
        "cosfs's parallel requests when it lists a directory.",
    ),
    cosfs_only(
        "nodnscache",
        Kind::Flag,
        COSFS_REQUESTS,
        "cosfs does not cache DNS answers.",
    ),
    cosfs_only(
        "nosscache",
        Kind::Flag,
        COSFS_REQUESTS,
        "cosfs does not share TLS sessions between connections.",
    ),
    cosfs_only(
        "nomultipart",
        Kind::Flag,
        COSFS_UPLOADS,
        "cosfs uploads every file in one request.",
    ),
    cosfs_only(
        "singlepart_copy_limit",
        Kind::Size(Unit::MiB),
        COSFS_UPLOADS,
        "The largest object cosfs copies in one request.",
    ),
    cosfs_only(
        "nocopyapi",
        Kind::Flag,
        COSFS_UPLOADS,
        "cosfs changes attributes by uploading again rather than copying.",
    ),
    cosfs_only(
        "norenameapi",
        Kind::Flag,
        COSFS_UPLOADS,
        "cosfs renames by uploading again rather than copying.",
    ),
    cosfs_only(
        "complement_stat",
        Kind::Flag,
        COSFS_UPLOADS,
        "cosfs makes up modes for objects without them; cos-fuse gives every object the `umask` mode.",
    ),
    cosfs_only(
        "kernel_cache",
        Kind::Flag,
        LIBFUSE_TUNING,
        "libfuse keeps the kernel's page cache across opens.",
    ),
    cosfs_only(
        "auto_cache",
        Kind::Flag,
        LIBFUSE_TUNING,
        "libfuse drops the kernel's page cache when a file's time changes.",
    ),
    cosfs_only(
        "direct_io",
        Kind::Flag,
        LIBFUSE_TUNING,
        "libfuse bypasses the kernel's page cache.",
    ),
    cosfs_only(
        "big_writes",
        Kind::Flag,
        LIBFUSE_TUNING,
        "libfuse 2 writes more than 4KiB at once (always so with cos-fuse).",
    ),
    cosfs_only(
        "max_write",
        Kind::Integer,
        LIBFUSE_TUNING,
        "libfuse's largest write request, in bytes.",
    ),
    cosfs_only(
        "max_read",
        Kind::Integer,
        LIBFUSE_TUNING,
        "libfuse's largest read request, in bytes.",
    ),
    cosfs_only(
        "max_background",
        Kind::Integer,
        LIBFUSE_TUNING,
        "libfuse's background requests in flight.",
    ),
    cosfs_only(
        "congestion_threshold",
        Kind::Integer,
        LIBFUSE_TUNING,
        "libfuse's background requests before the kernel holds back.",
    ),
    cosfs_only(
        "attr_timeout",
        Kind::Seconds,
        LIBFUSE_TUNING,
        "libfuse's attribute timeout; cos-fuse's is `stat_cache_expire`.",
    ),
    cosfs_only(
        "entry_timeout",
        Kind::Seconds,
        LIBFUSE_TUNING,
        "libfuse's name timeout; cos-fuse's is `stat_cache_expire`.",
    ),
    cosfs_only(
        "negative_timeout",
        Kind::Seconds,
        LIBFUSE_TUNING,
        "libfuse's \"no such file\" timeout; cos-fuse's is `stat_cache_expire`.",
    ),
    cosfs_only(
        "curldbg",
        Kind::Flag,
        COSFS_LOGS,
        "cosfs logs its HTTP traffic.",
    ),
    cosfs_only("logfile", Kind::Path, COSFS_LOGS, "The file cosfs logs to."),
    cosfs_only(
        "instance_name",
        Kind::Text("NAME"),
        COSFS_LOGS,
        "The name cosfs logs under.",
    ),
    cosfs_only(
        "tmpdir",
        Kind::Path,
        NO_DISK_CACHE,
        "cosfs's directory of temporary files; cos-fuse's is `staging_dir`.",
    ),
    MountOption {
        name: "use_sse",
        aliases: &[],
        sets: Sets::NotServed(Kind::Text("TYPE")),
        csi: Csi::Refused(
            "cos-fuse does not ask COS for server-side encryption: objects would be stored \
             unencrypted",
        ),
        help: "cosfs asks COS to encrypt what it uploads (SSE-COS, SSE-KMS, SSE-C).",
    },
    MountOption {
        name: "enable_content_md5",
        aliases: &[],
        sets: Sets::NotServed(Kind::Flag),
        csi: Csi::Refused(
            "cos-fuse sends no Content-MD5 with uploads: the integrity check asked for would \
             not happen",
        ),
        help: "cosfs sends each upload's MD5 for COS to check.",
    },
    MountOption {
        name: "passwd_file",
        aliases: &[],
        sets: Sets::Path(|c, path| c.passwd_file = Some(path)),
        csi: Csi::Refused("credentials come from the volume's secret (SecretId, SecretKey)"),
        help: "A cosfs passwd file (`bucket:SecretId:SecretKey` or `SecretId:SecretKey`, mode \
               0600) read before the environment and the default files.",
    },
    MountOption {
        name: "url",
        aliases: &[],
        sets: Sets::Text("URL", |c, url| c.endpoint = Some(url.to_owned())),
        csi: Csi::Refused(URL_REASON),
        help: "The endpoint, e.g. `https://cos.ap-guangzhou.myqcloud.com`, of `cos-fuse BUCKET \
               MOUNTPOINT` (else `COS_ENDPOINT`); `cos-fuse mount` takes `--endpoint`.",
    },
    MountOption {
        name: "endpoint",
        aliases: &[],
        sets: Sets::NotServed(Kind::Text("REGION")),
        csi: Csi::Refused(URL_REASON),
        help: "s3fs's signing region; cos-fuse reads the region from `url`.",
    },
    MountOption {
        name: "bucket",
        aliases: &[],
        sets: Sets::NotServed(Kind::Text("NAME")),
        csi: Csi::Refused("the bucket comes from the `bucket` attribute"),
        help: "cosfs's bucket; cos-fuse takes `--bucket`.",
    },
    fstab_only("defaults", "mount(8)'s default options; changes nothing."),
    fstab_only("auto", "`mount -a` mounts the entry; changes nothing."),
    fstab_only("noauto", "`mount -a` skips the entry; changes nothing."),
    fstab_only(
        "_netdev",
        "The entry needs the network: mounted after it is up; changes nothing.",
    ),
    fstab_only(
        "nofail",
        "A failure to mount the entry does not fail the boot; changes nothing.",
    ),
    fstab_only(
        "user",
        "Any user may mount the entry (mount(8) then adds `noexec,nosuid,nodev`); changes \
         nothing.",
    ),
    fstab_only("nouser", "Only root may mount the entry; changes nothing."),
    MountOption {
        name: "suid",
        aliases: &["dev"],
        sets: Sets::Flag(|_| {}),
        csi: Csi::Refused(NO_SUID_DEV),
        help: "Added by mount.fuse3 when root mounts; changes nothing: cos-fuse shows no \
               set-user-ID bits and no device files.",
    },
    MountOption {
        name: "nosuid",
        aliases: &["nodev"],
        sets: Sets::Flag(|_| {}),
        csi: Csi::Ignored(KERNEL_FLAGS),
        help: "Always in force: cos-fuse mounts with `nosuid,nodev`.",
    },
    MountOption {
        name: "noexec",
        aliases: &[],
        sets: Sets::Flag(|c| c.no_exec = true),
        csi: Csi::Ignored(KERNEL_FLAGS),
        help: "Files of the mount cannot be executed (the kernel mount's `noexec`).",
    },
    MountOption {
        name: "exec",
        aliases: &[],
        sets: Sets::Flag(|c| c.no_exec = false),
        csi: Csi::Ignored(KERNEL_FLAGS),
        help: "Files of the mount may be executed (the default; undoes an earlier `noexec`).",
    },
];

/// Why csi-cos drops the kernel mount's flags from `additional_args`.
const KERNEL_FLAGS: &str = "the node plugin sets the kernel mount's flags";

/// Why csi-cos refuses `url` and `endpoint` in `additional_args`.
const URL_REASON: &str = "the endpoint comes from the `url` attribute";

/// A row for a cosfs option that only tunes cosfs's (or libfuse's) own machinery: `cos-fuse
/// mount` does not take it; csi-cos accepts it with any value, drops it and names it in a warning.
const fn cosfs_only(
    name: &'static str,
    kind: Kind,
    why: &'static str,
    help: &'static str,
) -> MountOption {
    MountOption {
        name,
        aliases: &[],
        sets: Sets::NotServed(kind),
        csi: Csi::Ignored(why),
        help,
    }
}

/// A row for an option only /etc/fstab and mount(8) use: cos-fuse takes it as a flag and does
/// nothing; csi-cos drops it.
const fn fstab_only(name: &'static str, help: &'static str) -> MountOption {
    MountOption {
        name,
        aliases: &[],
        sets: Sets::Flag(|_| {}),
        csi: Csi::Ignored(FSTAB_ONLY),
        help,
    }
}

/// One mount option: a row of [`OPTIONS`].
#[derive(Debug, Clone, Copy)]
pub struct MountOption {
    /// The name, as cosfs spells it.
    pub name: &'static str,
    /// Other names of the same option.
    pub aliases: &'static [&'static str],
    /// What its value is and what that sets.
    pub sets: Sets,
    /// What csi-cos does with it in a volume's `additional_args`.
    pub csi: Csi,
    /// What it does, for `cos-fuse mount --help` and the README (no `|`: it is a table cell).
    pub help: &'static str,
}

/// An option's value and what it sets: the setter receives the value parsed.
#[derive(Debug, Clone, Copy)]
pub enum Sets {
    /// `name`, no value.
    Flag(fn(&mut MountConfig)),
    /// `name=N`, a whole number.
    Integer(fn(&mut MountConfig, u64)),
    /// `name=N`, a user or group ID.
    Id(fn(&mut MountConfig, u32)),
    /// `name=022`, an octal mode up to 777.
    Mode(fn(&mut MountConfig, u16)),
    /// `name=N`, a whole number of the unit; the setter receives bytes (saturated).
    Size(Unit, fn(&mut MountConfig, u64)),
    /// `name=N`, whole seconds.
    Seconds(fn(&mut MountConfig, Duration)),
    /// `name=PATH`, taken as it is.
    Path(fn(&mut MountConfig, PathBuf)),
    /// `name=TEXT`, non-empty, shown with this placeholder.
    Text(&'static str, fn(&mut MountConfig, &str)),
    /// Nothing: a cosfs option `cos-fuse mount` does not take, listed for csi-cos's answer and
    /// the README. The kind says what cosfs expects.
    NotServed(Kind),
}

/// What an option's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flag,
    Integer,
    Id,
    Mode,
    Size(Unit),
    Seconds,
    Path,
    /// Text, shown with this placeholder.
    Text(&'static str),
}

/// The unit a size is given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    KiB,
    MiB,
}

impl Unit {
    fn bytes(self) -> u64 {
        match self {
            Unit::KiB => 1024,
            Unit::MiB => MIB,
        }
    }
}

/// What csi-cos does with an option in a volume's `additional_args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csi {
    /// Accepted and passed on to `cos-fuse mount`.
    Acts,
    /// Accepted with any value, dropped and named in csi-cos's warning: it would change nothing,
    /// for this reason.
    Ignored(&'static str),
    /// Refused, for this reason.
    Refused(&'static str),
}

/// Why csi-cos refuses an option the table does not hold.
pub const UNKNOWN_REASON: &str = "csi-cos does not serve it";

impl Csi {
    /// csi-cos's answer to an option the table does not hold.
    pub const UNKNOWN: Csi = Csi::Refused(UNKNOWN_REASON);
}

/// An option `cos-fuse mount` cannot take, or a value it cannot use. Each names the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown mount option {name:?} (see --help)")]
    Unknown { name: String },
    #[error("option {name:?} takes no value")]
    TakesNoValue { name: String },
    #[error("option {name:?} needs {expected}, as {name}={placeholder}")]
    BadValue {
        name: String,
        expected: &'static str,
        placeholder: &'static str,
    },
}

impl Sets {
    pub fn kind(&self) -> Kind {
        match self {
            Sets::Flag(_) => Kind::Flag,
            Sets::Integer(_) => Kind::Integer,
            Sets::Id(_) => Kind::Id,
            Sets::Mode(_) => Kind::Mode,
            Sets::Size(unit, _) => Kind::Size(*unit),
            Sets::Seconds(_) => Kind::Seconds,
            Sets::Path(_) => Kind::Path,
            Sets::Text(placeholder, _) => Kind::Text(placeholder),
            Sets::NotServed(kind) => *kind,
        }
    }
}

impl MountOption {
    pub fn kind(&self) -> Kind {
        self.sets.kind()
    }

    /// Whether `cos-fuse mount` takes it.
    pub fn served(&self) -> bool {
        !matches!(self.sets, Sets::NotServed(_))
    }

    /// How it is written: `allow_other`, `uid=N`.
    pub fn usage(&self) -> String {
        match self.kind() {
            Kind::Flag => self.name.to_owned(),
            kind => format!("{}={}", self.name, kind.placeholder()),
        }
    }

    /// Parses `value` as this option's and sets it in `config`.
    pub fn apply(&self, value: Option<&str>, config: &mut MountConfig) -> Result<(), OptionError> {
        let bad = || OptionError::BadValue {
            name: self.name.to_owned(),
            expected: self.kind().expected(),
            placeholder: self.kind().placeholder(),
        };
        let number = || value.and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad);
        match self.sets {
            Sets::Flag(set) => match value {
                None => set(config),
                Some(_) => {
                    return Err(OptionError::TakesNoValue {
                        name: self.name.to_owned(),
                    });
                }
            },
            Sets::Integer(set) => set(config, number()?),
            Sets::Id(set) => set(
                config,
                value.and_then(|v| v.parse::<u32>().ok()).ok_or_else(bad)?,
            ),
            Sets::Mode(set) => set(
                config,
                value
                    .and_then(|v| u16::from_str_radix(v, 8).ok())
                    .filter(|mode| *mode <= 0o777)
                    .ok_or_else(bad)?,
            ),
            Sets::Size(unit, set) => set(
                config,
                value
                    .and_then(|v| parse_size(v, unit.bytes()))
                    .ok_or_else(bad)?,
            ),
            Sets::Seconds(set) => set(config, Duration::from_secs(number()?)),
            Sets::Path(set) => set(config, PathBuf::from(value.ok_or_else(bad)?)),
            Sets::Text(_, set) => set(config, value.filter(|v| !v.is_empty()).ok_or_else(bad)?),
            Sets::NotServed(_) => {
                return Err(OptionError::Unknown {
                    name: self.name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether `cos-fuse mount` takes `value` for this option, as [`MountOption::apply`] judges.
    pub fn check(&self, value: Option<&str>) -> Result<(), OptionError> {
        self.apply(value, &mut MountConfig::default())
    }
}

/// The option called `name` (or one of its aliases).
pub fn find(name: &str) -> Option<&'static MountOption> {
    OPTIONS
        .iter()
        .find(|o| o.name == name || o.aliases.contains(&name))
}

/// What csi-cos does with the option called `name`.
pub fn csi_answer(name: &str) -> Csi {
    find(name).map_or(Csi::UNKNOWN, |o| o.csi)
}

/// One `name[=value]` item, trimmed; `None` when it is empty.
pub fn split_item(item: &str) -> Option<(&str, Option<&str>)> {
    let item = item.trim();
    if item.is_empty() {
        return None;
    }
    Some(match item.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (item, None),
    })
}

/// Parses `cos-fuse mount -o` options: each item one or more comma-separated `name[=value]`. A
/// later option wins over an earlier one.
pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<MountConfig, OptionError> {
    let mut config = MountConfig::default();
    for (name, value) in items
        .into_iter()
        .flat_map(|item| item.split(','))
        .filter_map(split_item)
    {
        let option = find(name)
            .filter(|o| o.served())
            .ok_or_else(|| OptionError::Unknown {
                name: name.to_owned(),
            })?;
        option.apply(value, &mut config)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsConfig;

    fn parsed(items: &[&str]) -> Result<MountConfig, OptionError> {
        parse(items.iter().copied())
    }

    #[test]
    fn every_name_is_one_rows_and_every_row_is_consistent() {
        let mut names: Vec<&str> = OPTIONS
            .iter()
            .flat_map(|o| std::iter::once(o.name).chain(o.aliases.iter().copied()))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name or alias is in two rows");
        for option in OPTIONS {
            assert!(
                !option.name.is_empty()
                    && option
                        .name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}: names are lower_case",
                option.name
            );
            // csi-cos passes what it accepts on to cos-fuse: cos-fuse must take it.
            if option.csi == Csi::Acts {
                assert!(
                    option.served(),
                    "{}: csi-cos passes on what cos-fuse lacks",
                    option.name
                );
            }
            let texts = [option.help, render::csi_cell(option.csi).as_str()].concat();
            assert!(
                !texts.contains('|'),
                "{}: `|` would split the README's cell",
                option.name
            );
            assert!(!option.help.is_empty(), "{}: no help", option.name);
        }
    }

    #[test]
    fn each_kind_takes_its_values_and_names_the_option_otherwise() {
        let cases: &[(&str, bool)] = &[
            ("allow_other", true),
            ("allow_other=1", false),
            ("ro=", false),
            ("uid=4294967295", true),
            ("uid=4294967296", false),
            ("uid=x", false),
            ("uid", false),
            ("umask=022", true),
            ("umask=777", true),
            ("umask=1000", false),
            ("umask=999", false),
            ("multipart_size=16", true),
            ("multipart_size=-1", false),
            ("stat_cache_expire=0", true),
            ("stat_cache_expire=1.5", false),
            ("staging_dir=/var/tmp", true),
            ("staging_dir", false),
            ("nonempty", true),
            ("nonempty=1", false),
            ("multipart_size=16MiB", true),
            ("max_memory_mb=1GiB", true),
            ("kernel_read_ahead_kb=1MiB", true),
            ("multipart_size=16MB", false),
            ("url=http://127.0.0.1:9000", true),
            ("url=", false),
            ("url", false),
            ("passwd_file=/root/.passwd-cosfs", true),
            ("endpoint=ap-guangzhou", false),
        ];
        for (item, ok) in cases {
            let got = parsed(&[item]);
            assert_eq!(got.is_ok(), *ok, "{item}: {got:?}");
            if let Err(e) = got {
                let name = item.split('=').next().unwrap_or_default();
                assert!(e.to_string().contains(&format!("{name:?}")), "{item}: {e}");
            }
        }
    }

    #[test]
    fn options_set_what_their_rows_say() {
        let c = parsed(&[
            "allow_other,ro",
            " uid=1000 ",
            "gid=2000,umask=027",
            "multipart_size=16,parallel_count=4",
            "stat_cache_expire=5,max_stat_cache_size=7",
            "readwrite_timeout=0,ensure_diskfree=2",
            "use_path_request_style,max_memory_mb=256,read_ahead_mb=0",
            "kernel_read_ahead_kb=512,staging_dir=/s,staging_max_mb=3",
            "nonempty,noxattr,,",
        ])
        .unwrap();
        let mib = MIB;
        let want = MountConfig {
            fs: FsConfig {
                uid: 1000,
                gid: 2000,
                file_mode: 0o640,
                dir_mode: 0o750,
                read_only: true,
                part_size: 16 * mib,
                upload_concurrency: 4,
                attr_ttl: Duration::from_secs(5),
                negative_ttl: Duration::from_secs(5),
                list_ttl: Duration::from_secs(5),
                list_cache_max_entries: 7,
                memory_budget: 256 * mib,
                read_ahead_max: mib,
                read_ahead_initial: mib,
                kernel_read_ahead: 512 * 1024,
                staging_dir: PathBuf::from("/s"),
                staging_max_bytes: 3 * mib,
                ..FsConfig::default()
            },
            allow_other: true,
            no_exec: false,
            path_style: true,
            request_timeout: Some(Duration::from_secs(1)),
            ensure_diskfree: Some(2 * mib),
            endpoint: None,
            passwd_file: None,
        };
        assert_eq!(c, want);
        assert_eq!(parsed(&[]).unwrap(), MountConfig::default());
        assert!(parsed(&["multipart_size=99999999999999999"]).is_err());
    }

    #[test]
    fn sizes_take_units_and_plain_numbers_keep_their_unit() {
        let c = parsed(&[
            "multipart_size=16",
            "max_memory_mb=1GiB",
            "kernel_read_ahead_kb=2MiB",
        ])
        .unwrap();
        assert_eq!(c.fs.part_size, 16 * MIB);
        assert_eq!(c.fs.memory_budget, 1024 * MIB);
        assert_eq!(c.fs.kernel_read_ahead, 2 * MIB);
        assert_eq!(
            parsed(&["kernel_read_ahead_kb=512"])
                .unwrap()
                .fs
                .kernel_read_ahead,
            512 * 1024
        );
    }

    #[test]
    fn fstab_and_mount_helper_options_are_taken() {
        // What mount(8) and mount.fuse3 hand a helper from /etc/fstab.
        let c = parsed(&[
            "rw,noexec,nosuid,nodev,allow_other,uid=1000,_netdev,nofail,user,dev,suid",
            "defaults,auto,noauto,nouser,exec,url=http://h:1,passwd_file=/p",
        ])
        .unwrap();
        assert!(c.allow_other && !c.fs.read_only);
        assert!(!c.no_exec, "the later `exec` wins");
        assert!(parsed(&["noexec"]).unwrap().no_exec);
        assert_eq!(c.endpoint.as_deref(), Some("http://h:1"));
        assert_eq!(c.passwd_file, Some(PathBuf::from("/p")));
        assert!(parsed(&["ro"]).unwrap().fs.read_only);
        assert!(
            !parsed(&["ro,rw"]).unwrap().fs.read_only,
            "the later one wins"
        );
        for name in ["_netdev", "nofail", "defaults", "noauto", "user"] {
            assert!(matches!(csi_answer(name), Csi::Ignored(_)), "{name}");
        }
        for name in ["suid", "dev"] {
            assert!(matches!(csi_answer(name), Csi::Refused(_)), "{name}");
        }
    }

    #[test]
    fn cosfs_options_cos_fuse_lacks_are_unknown_to_it() {
        for item in [
            "use_cache=/tmp",
            "dbglevel=info",
            "endpoint=http://x",
            "foo",
        ] {
            assert!(
                matches!(parsed(&[item]), Err(OptionError::Unknown { .. })),
                "{item}"
            );
        }
        assert_eq!(csi_answer("endpoint"), csi_answer("url"));
        assert_eq!(csi_answer("no_such_option"), Csi::UNKNOWN);
    }

    #[test]
    fn cosfs_tuning_is_dropped_by_csi_cos_and_security_options_are_refused() {
        for name in [
            "use_cache",
            "del_cache",
            "retries",
            "connect_timeout",
            "multireq_max",
            "nomultipart",
            "kernel_cache",
            "attr_timeout",
            "curldbg",
            "tmpdir",
        ] {
            assert!(matches!(csi_answer(name), Csi::Ignored(_)), "{name}");
            assert!(
                matches!(parsed(&[name]), Err(OptionError::Unknown { .. })),
                "{name}: cos-fuse itself does not take it"
            );
        }
        for name in [
            "use_sse",
            "enable_content_md5",
            "passwd_file",
            "staging_dir",
        ] {
            assert!(matches!(csi_answer(name), Csi::Refused(_)), "{name}");
        }
    }

    #[test]
    fn help_lists_what_cos_fuse_takes() {
        let help = help();
        for option in OPTIONS {
            let usage = option.usage();
            let listed = help
                .lines()
                .any(|l| l.split_whitespace().next() == Some(usage.as_str()));
            assert_eq!(listed, option.served(), "{}", option.name);
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_refusals_name_an_option(item in "[a-z_=0-9,./ -]{0,40}") {
            if let Err(e) = parse([item.as_str()]) {
                let named = match &e {
                    OptionError::Unknown { name }
                    | OptionError::TakesNoValue { name }
                    | OptionError::BadValue { name, .. } => name.clone(),
                };
                proptest::prop_assert!(item.contains(named.as_str()), "{e}");
            }
        }
    }
}
