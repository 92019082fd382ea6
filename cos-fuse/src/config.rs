//! The mount options the file-system core understands, their defaults and their validation, and
//! [`MountConfig`], everything a mount's `-o` options set. Parsing the options is
//! [`crate::options`]'s business; this module only holds and checks typed values.

use std::path::PathBuf;
use std::time::Duration;

/// Bytes in a MiB, the unit most size options are given in.
pub const MIB: u64 = 1024 * 1024;

/// The largest number of parts of one multipart upload (S3 and COS).
pub const MAX_PARTS: u32 = 10_000;

/// Options of one mount. `Default` gives the documented defaults; [`FsConfig::validate`] checks
/// the values and normalises the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// The bucket sub-path mounted as the root: `""` for the whole bucket, else `a/b/` (a leading
    /// `/` is dropped and a trailing one added by `validate`).
    pub prefix: String,
    /// Owner of every file and directory (the mount is single-owner: objects have no owner).
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of every file (default 0644) and directory (default 0755).
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Bytes of read-ahead and write buffers, all handles together (default 128 MiB: with the
    /// allocator's and the transport's own buffers on top, the daemon stays under 256 MiB).
    pub memory_budget: u64,
    /// How long attributes of a looked-up file or directory are trusted (also the kernel's TTL).
    pub attr_ttl: Duration,
    /// How long "no such file" is trusted.
    pub negative_ttl: Duration,
    /// How long a directory listing is trusted (GooseFS-Lite: 15 s).
    pub list_ttl: Duration,
    /// Entries of all cached listings together (GooseFS-Lite: 100000).
    pub list_cache_max_entries: usize,
    /// First part size of multipart uploads (default 8 MiB). A streamed upload doubles it every
    /// 1000 parts; a staged one picks a size at which the file fits in 10000 parts.
    pub part_size: u64,
    /// Part uploads in flight, all files together (default 32, GooseFS-Lite's thread pool).
    pub upload_concurrency: usize,
    /// Read-ahead window at the start of a sequential read (default 1 MiB), grown 4-fold for every
    /// block the read passes, up to `read_ahead_max` (default 64 MiB).
    pub read_ahead_initial: u64,
    pub read_ahead_max: u64,
    /// How far ahead the kernel reads a file being scanned, as the mount's `read_ahead_kb`
    /// (default 1 MiB; 0 keeps the kernel's 128 KiB). The kernel then asks for up to 1 MiB per
    /// request instead of 128 KiB: a quarter of the round trips through the daemon. A scan's
    /// reads arrive out of order within a few of these, so reads that near where a scan got to
    /// still belong to it.
    pub kernel_read_ahead: u64,
    /// Where files being rewritten, appended or written out of order are staged.
    pub staging_dir: PathBuf,
    /// Bytes of all staging files together; a write past it fails with ENOSPC, and a single file
    /// larger than it with EFBIG.
    pub staging_max_bytes: u64,
    /// A file recording which inode number names which path (default none): what lets a daemon
    /// restarted onto the same FUSE connection ([`Fs::resume`](crate::Fs::resume)) understand
    /// the inode numbers its predecessor gave the kernel. One short unsynced `write(2)` per new,
    /// renamed or removed inode; compacted as it grows. A fresh mount ([`Fs::new`](crate::Fs::new))
    /// replaces what the file held. It must be local and private to the mount.
    pub inode_journal: Option<PathBuf>,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            prefix: String::new(),
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            read_only: false,
            memory_budget: 128 * MIB,
            attr_ttl: Duration::from_secs(15),
            negative_ttl: Duration::from_secs(15),
            list_ttl: Duration::from_secs(15),
            list_cache_max_entries: 100_000,
            part_size: 8 * MIB,
            upload_concurrency: 32,
            read_ahead_initial: MIB,
            read_ahead_max: 64 * MIB,
            kernel_read_ahead: MIB,
            staging_dir: std::env::temp_dir(),
            staging_max_bytes: 16 * 1024 * MIB,
            inode_journal: None,
        }
    }
}

/// Everything a mount's `-o` options set: the file system's [`FsConfig`] and the settings around
/// it that belong to the kernel mount, the object client and the program. `Default` gives the
/// documented defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountConfig {
    pub fs: FsConfig,
    /// Let users other than the mounting one in (the FUSE mount's `allow_other`).
    pub allow_other: bool,
    /// Refuse to execute files of the mount (the kernel mount's `noexec`).
    pub no_exec: bool,
    /// Address the bucket in the path rather than the host name (the object client's).
    pub path_style: bool,
    /// The object client's timeout of one attempt; `None` keeps its default.
    pub request_timeout: Option<Duration>,
    /// Bytes to keep free on the staging disk: the program caps `fs.staging_max_bytes` by the
    /// space available at mount time less this.
    pub ensure_diskfree: Option<u64>,
    /// The endpoint (`url=`), for `cos-fuse BUCKET MOUNTPOINT`; `cos-fuse mount` takes
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// A cosfs passwd file to read the keys from (`passwd_file=`), before the default ones.
    pub passwd_file: Option<PathBuf>,
}

/// Parses a size: a plain number of `unit` bytes (`512`), or a number with a binary unit
/// (`512MiB`, `20GiB`, `4k`, `1T`, `100B`; `K`, `M`, `G`, `T` and their `iB` forms are powers of
/// 1024). `None` when it is not one, or overflows.
pub fn parse_size(text: &str, unit: u64) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier = match suffix.trim().to_ascii_lowercase().as_str() {
        "" => unit,
        "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// A size as people read it: the largest binary unit it is a whole number of (`20GiB`,
/// `512MiB`, `4KiB`, `1000B`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// A size rounded for people to read at a glance (`512B`, `1.5KiB`, `3.0GiB`): logs and status.
pub fn format_size_approx(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match UNITS.get(unit) {
        Some(name) if unit > 0 => format!("{value:.1}{name}"),
        _ => format!("{bytes}B"),
    }
}

/// A mount option with a value the file system cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("prefix {0:?}: empty, `.` or `..` path components are not allowed")]
    Prefix(String),
    #[error("{name} = {value:#o}: only permission bits (at most 0o7777) are allowed")]
    Mode { name: &'static str, value: u16 },
    #[error("memory_budget = {budget}: must be at least twice part_size ({part_size})")]
    MemoryBudget { budget: u64, part_size: u64 },
    #[error("part_size = {0}: must be between 1 byte and 4 GiB")]
    PartSize(u64),
    #[error("upload_concurrency = {0}: must be between 1 and 1024")]
    UploadConcurrency(usize),
    #[error(
        "read_ahead_initial = {initial}, read_ahead_max = {max}: need 1 <= initial <= max <= 1 GiB"
    )]
    ReadAhead { initial: u64, max: u64 },
    #[error("kernel_read_ahead = {0}: must be a whole number of KiB, at most 16 MiB")]
    KernelReadAhead(u64),
}

impl FsConfig {
    /// Checks every value and returns the config with its prefix normalised (`""` or `a/b/`).
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        self.prefix = normalize_prefix(&self.prefix)?;
        for (name, value) in [("file_mode", self.file_mode), ("dir_mode", self.dir_mode)] {
            if value > 0o7777 {
                return Err(ConfigError::Mode { name, value });
            }
        }
        if self.part_size == 0 || self.part_size > 4 * 1024 * MIB {
            return Err(ConfigError::PartSize(self.part_size));
        }
        if self.memory_budget < self.part_size.saturating_mul(2) {
            return Err(ConfigError::MemoryBudget {
                budget: self.memory_budget,
                part_size: self.part_size,
            });
        }
        if self.upload_concurrency == 0 || self.upload_concurrency > 1024 {
            return Err(ConfigError::UploadConcurrency(self.upload_concurrency));
        }
        if self.read_ahead_initial == 0
            || self.read_ahead_initial > self.read_ahead_max
            || self.read_ahead_max > 1024 * MIB
        {
            return Err(ConfigError::ReadAhead {
                initial: self.read_ahead_initial,
                max: self.read_ahead_max,
            });
        }
        if !self.kernel_read_ahead.is_multiple_of(1024) || self.kernel_read_ahead > 16 * MIB {
            return Err(ConfigError::KernelReadAhead(self.kernel_read_ahead));
        }
        Ok(self)
    }
}

fn normalize_prefix(raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(ConfigError::Prefix(raw.to_string()));
    }
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        let cases = [
            ("", Ok("")),
            ("/", Ok("")),
            ("a", Ok("a/")),
            ("/a/b/", Ok("a/b/")),
            ("a//b", Err(())),
            ("a/../b", Err(())),
            ("./a", Err(())),
        ];
        for (raw, want) in cases {
            let got = normalize_prefix(raw).map_err(|_| ());
            assert_eq!(got, want.map(str::to_string), "{raw:?}");
        }
    }

    #[test]
    fn sizes_are_read_and_printed_human_readable() {
        let cases: &[(&str, u64, Option<u64>)] = &[
            ("512", MIB, Some(512 * MIB)),
            ("512MiB", 1, Some(512 * MIB)),
            ("20GiB", 1, Some(20 << 30)),
            ("20g", MIB, Some(20 << 30)),
            ("4k", 1, Some(4096)),
            ("4KiB", MIB, Some(4096)),
            ("1T", 1, Some(1 << 40)),
            ("100B", MIB, Some(100)),
            (" 8 MiB ", 1, Some(8 * MIB)),
            ("0", MIB, Some(0)),
            ("", MIB, None),
            ("MiB", 1, None),
            ("1.5GiB", 1, None),
            ("-1", 1, None),
            ("5MB", 1, None),
            ("20000000TiB", 1, None),
        ];
        for (text, unit, want) in cases {
            assert_eq!(parse_size(text, *unit), *want, "{text:?}");
        }
        for (bytes, text) in [
            (20u64 << 30, "20GiB"),
            (512 * MIB, "512MiB"),
            (1536 * 1024, "1536KiB"),
            (1000, "1000B"),
            (0, "0B"),
            (1 << 40, "1TiB"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text, 1), Some(bytes), "{text} reads back");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let ok = FsConfig::default();
        assert!(ok.clone().validate().is_ok());
        let bad = [
            FsConfig {
                file_mode: 0o10000,
                ..ok.clone()
            },
            FsConfig {
                part_size: 0,
                ..ok.clone()
            },
            FsConfig {
                memory_budget: ok.part_size,
                ..ok.clone()
            },
            FsConfig {
                upload_concurrency: 0,
                ..ok.clone()
            },
            FsConfig {
                read_ahead_initial: 2,
                read_ahead_max: 1,
                ..ok.clone()
            },
            FsConfig {
                kernel_read_ahead: 1000,
                ..ok.clone()
            },
            FsConfig {
                kernel_read_ahead: 32 * MIB,
                ..ok.clone()
            },
        ];
        for cfg in bad {
            assert!(cfg.clone().validate().is_err(), "{cfg:?}");
        }
    }
}
