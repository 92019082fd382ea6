//! `mount -o` style options, split the way mount(8) splits them: generic options become mount(2)
//! flags, options only mount(8) and fstab understand are dropped, the rest is the filesystem's data
//! string. Pure functions; shared by the Linux mounter and the fake.

use nix::mount::MsFlags;

/// `mount -o` options split into what mount(2) takes as flags and what it passes to the
/// filesystem as its data string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOptions {
    pub flags: MsFlags,
    /// Filesystem-specific options, comma-separated (`nouuid`, `discard`, `errors=remount-ro`).
    pub data: String,
}

/// Splits `mount -o` style options (each entry may itself hold commas) the way mount(8) does:
/// generic options become [`MsFlags`], later ones overriding earlier ones (`ro` then `rw` is
/// `rw`); options only mount(8) and fstab understand (`defaults`, `nofail`, `_netdev`, `x-*`, ...)
/// are dropped; the rest is the filesystem's data string, in order.
pub fn split_options(options: &[String]) -> SplitOptions {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for option in options.iter().flat_map(|o| o.split(',')) {
        let option = option.trim();
        let (set, clear) = match option {
            "" | "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "owner"
            | "group" | "nofail" | "_netdev" | "loop" => continue,
            _ if option.starts_with("x-") || option.starts_with("comment=") => continue,
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "iversion" => (MsFlags::MS_I_VERSION, MsFlags::empty()),
            "noiversion" => (MsFlags::empty(), MsFlags::MS_I_VERSION),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            // The three atime modes exclude each other.
            "noatime" => (
                MsFlags::MS_NOATIME,
                MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME,
            ),
            "relatime" => (
                MsFlags::MS_RELATIME,
                MsFlags::MS_NOATIME | MsFlags::MS_STRICTATIME,
            ),
            "strictatime" => (
                MsFlags::MS_STRICTATIME,
                MsFlags::MS_NOATIME | MsFlags::MS_RELATIME,
            ),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            _ => {
                data.push(option);
                continue;
            }
        };
        flags.remove(clear);
        flags.insert(set);
    }
    SplitOptions {
        flags,
        data: data.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn splits_options_into_flags_and_data() {
        let cases: &[(&str, &[&str], MsFlags, &str)] = &[
            ("nothing", &[], MsFlags::empty(), ""),
            ("read-only", &["ro"], MsFlags::MS_RDONLY, ""),
            ("later rw wins", &["ro", "rw"], MsFlags::empty(), ""),
            ("later ro wins", &["rw,ro"], MsFlags::MS_RDONLY, ""),
            (
                "comma-joined entries split",
                &["ro,nosuid,nodev", "noexec"],
                MsFlags::MS_RDONLY
                    .union(MsFlags::MS_NOSUID)
                    .union(MsFlags::MS_NODEV)
                    .union(MsFlags::MS_NOEXEC),
                "",
            ),
            (
                "xfs data options kept in order",
                &["noatime", "nouuid", "discard"],
                MsFlags::MS_NOATIME,
                "nouuid,discard",
            ),
            (
                "ext4 data with values",
                &["errors=remount-ro,data=ordered", "sync"],
                MsFlags::MS_SYNCHRONOUS,
                "errors=remount-ro,data=ordered",
            ),
            (
                "atime modes exclude each other",
                &["noatime", "relatime"],
                MsFlags::MS_RELATIME,
                "",
            ),
            (
                "nodiratime and dirsync",
                &["nodiratime", "dirsync"],
                MsFlags::MS_NODIRATIME.union(MsFlags::MS_DIRSYNC),
                "",
            ),
            ("bind", &["bind"], MsFlags::MS_BIND, ""),
            (
                "rbind is recursive",
                &["rbind"],
                MsFlags::MS_BIND.union(MsFlags::MS_REC),
                "",
            ),
            (
                "remount",
                &["remount", "ro", "bind"],
                MsFlags::MS_REMOUNT
                    .union(MsFlags::MS_RDONLY)
                    .union(MsFlags::MS_BIND),
                "",
            ),
            (
                "negations clear",
                &["nosuid", "suid", "nodev", "dev", "noexec", "exec"],
                MsFlags::empty(),
                "",
            ),
            (
                "fstab-only options dropped",
                &[
                    "defaults",
                    "nofail",
                    "_netdev",
                    "x-systemd.automount",
                    "comment=x",
                    "auto",
                    "noauto",
                ],
                MsFlags::empty(),
                "",
            ),
            (
                "blanks ignored",
                &["", " ro ", ",,"],
                MsFlags::MS_RDONLY,
                "",
            ),
            ("lazytime", &["lazytime"], MsFlags::MS_LAZYTIME, ""),
        ];
        for (name, input, flags, data) in cases {
            let split = split_options(&opts(input));
            assert_eq!(split.flags, *flags, "{name}");
            assert_eq!(split.data, *data, "{name}");
        }
    }
}
