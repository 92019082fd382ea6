//! Parsing `/proc/<pid>/mountinfo` (proc(5)). Pure text in, records out: this module reads no file
//! and never panics on odd input; a line it cannot read is skipped.
//!
//! A line looks like
//! `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
//! mount ID, parent ID, major:minor, root, mount point, per-mount options, zero or more optional
//! fields, a `-` separator, filesystem type, source, superblock options. The kernel writes space,
//! tab, newline and backslash in paths as octal escapes (`\040`, `\011`, `\012`, `\134`).

/// One mount, as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    pub major_minor: String,
    /// The directory of the filesystem that is mounted here (`/` unless a bind mount of a subtree).
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, ...).
    pub options: Vec<String>,
    pub fs_type: String,
    /// The device or other source (`/dev/vdb`, `server:/export`, `tmpfs`).
    pub source: String,
    /// Superblock options (`rw`, `discard`, `errors=remount-ro`, ...).
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// True when the mount or its whole filesystem is read-only.
    pub fn is_read_only(&self) -> bool {
        self.options
            .iter()
            .chain(&self.super_options)
            .any(|o| o == "ro")
    }
}

/// Parses the whole text of a mountinfo file, in order. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// Parses one line; `None` when it is not a well-formed mountinfo line.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    // Split on single spaces, not runs of whitespace: an empty source shows up as an empty field.
    let fields: Vec<&str> = line.trim_end_matches(['\n', '\r']).split(' ').collect();
    let separator = fields.iter().position(|f| *f == "-")?;
    let (head, tail) = fields.split_at(separator);
    let tail = tail.get(1..)?;
    // Six fixed fields, then optional fields (`shared:1`, `master:2`, ...) which we don't keep.
    let [
        mount_id,
        parent_id,
        major_minor,
        root,
        mount_point,
        options,
        ..,
    ] = head
    else {
        return None;
    };
    // Exactly three after the separator; more would mean a format we don't understand.
    let [fs_type, source, super_options] = tail else {
        return None;
    };
    if !major_minor.contains(':') || root.is_empty() || mount_point.is_empty() || fs_type.is_empty()
    {
        return None;
    }
    Some(MountInfo {
        mount_id: mount_id.parse().ok()?,
        parent_id: parent_id.parse().ok()?,
        major_minor: (*major_minor).to_owned(),
        root: unescape(root),
        mount_point: unescape(mount_point),
        options: split_options(options),
        fs_type: unescape(fs_type),
        source: unescape(source),
        super_options: split_options(super_options),
    })
}

fn split_options(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|o| !o.is_empty())
        .map(unescape)
        .collect()
}

/// Decodes the kernel's `\ooo` octal escapes; anything else is kept as written.
pub fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && let Some(value) = bytes.get(i + 1..i + 4).and_then(octal_byte)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Three octal digits that make one byte (`\400` and up are not escapes).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    let mut value: u32 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value * 8 + u32::from(d - b'0');
    }
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// What the kernel does to a path before writing it (fs/proc_namespace.c, `mangle`).
    fn escape(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
                _ => out.push(c),
            }
        }
        out
    }

    #[test]
    fn parses_real_lines() {
        struct Case {
            name: &'static str,
            line: &'static str,
            mount_point: &'static str,
            root: &'static str,
            fs_type: &'static str,
            source: &'static str,
            options: &'static [&'static str],
            super_options: &'static [&'static str],
            read_only: bool,
        }
        let cases = [
            Case {
                name: "root filesystem with a shared peer group",
                line: "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard,errors=remount-ro",
                mount_point: "/",
                root: "/",
                fs_type: "ext4",
                source: "/dev/vda",
                options: &["rw", "relatime"],
                super_options: &["rw", "discard", "errors=remount-ro"],
                read_only: false,
            },
            Case {
                name: "staged CBS disk on a loop device, two optional fields",
                line: "312 27 7:0 / /var/lib/kubelet/plugins/kubernetes.io/csi/com.tencent.cloud.csi.cbs/abc/globalmount rw,relatime shared:180 master:3 - ext4 /dev/loop0 rw",
                mount_point: "/var/lib/kubelet/plugins/kubernetes.io/csi/com.tencent.cloud.csi.cbs/abc/globalmount",
                root: "/",
                fs_type: "ext4",
                source: "/dev/loop0",
                options: &["rw", "relatime"],
                super_options: &["rw"],
                read_only: false,
            },
            Case {
                name: "read-only bind mount of the staged volume into a pod",
                line: "340 29 7:0 / /var/lib/kubelet/pods/0b5e/volumes/kubernetes.io~csi/pvc-1/mount ro,relatime shared:180 - ext4 /dev/loop0 rw",
                mount_point: "/var/lib/kubelet/pods/0b5e/volumes/kubernetes.io~csi/pvc-1/mount",
                root: "/",
                fs_type: "ext4",
                source: "/dev/loop0",
                options: &["ro", "relatime"],
                super_options: &["rw"],
                read_only: true,
            },
            Case {
                name: "bind mount of a subdirectory: root is the subdirectory",
                line: "42 27 254:0 /tmp/bt/a /tmp/bt/b ro,relatime - ext4 /dev/vda rw,discard,resv_strict",
                mount_point: "/tmp/bt/b",
                root: "/tmp/bt/a",
                fs_type: "ext4",
                source: "/dev/vda",
                options: &["ro", "relatime"],
                super_options: &["rw", "discard", "resv_strict"],
                read_only: true,
            },
            Case {
                name: "block volume: a device node bind-mounted on a file",
                line: "351 29 0:6 /loop3 /var/lib/kubelet/pods/9f/volumeDevices/kubernetes.io~csi/pvc-2 rw,relatime - devtmpfs udev rw,size=12334460k,nr_inodes=3083615,mode=755",
                mount_point: "/var/lib/kubelet/pods/9f/volumeDevices/kubernetes.io~csi/pvc-2",
                root: "/loop3",
                fs_type: "devtmpfs",
                source: "udev",
                options: &["rw", "relatime"],
                super_options: &["rw", "size=12334460k", "nr_inodes=3083615", "mode=755"],
                read_only: false,
            },
            Case {
                name: "fuse mount of a COS bucket",
                line: "400 27 0:52 / /mnt/cos rw,nosuid,nodev,relatime shared:200 - fuse.cos-fuse cos-bucket-1250000000 rw,user_id=0,group_id=0,allow_other",
                mount_point: "/mnt/cos",
                root: "/",
                fs_type: "fuse.cos-fuse",
                source: "cos-bucket-1250000000",
                options: &["rw", "nosuid", "nodev", "relatime"],
                super_options: &["rw", "user_id=0", "group_id=0", "allow_other"],
                read_only: false,
            },
            Case {
                name: "NFS mount of a CFS file system",
                line: "410 27 0:60 / /mnt/cfs rw,relatime shared:210 - nfs4 10.0.0.8:/ rw,vers=4.0,rsize=1048576,wsize=1048576,hard,proto=tcp,addr=10.0.0.8",
                mount_point: "/mnt/cfs",
                root: "/",
                fs_type: "nfs4",
                source: "10.0.0.8:/",
                options: &["rw", "relatime"],
                super_options: &[
                    "rw",
                    "vers=4.0",
                    "rsize=1048576",
                    "wsize=1048576",
                    "hard",
                    "proto=tcp",
                    "addr=10.0.0.8",
                ],
                read_only: false,
            },
            Case {
                name: "mount point with a space, a tab, a newline and a backslash",
                line: r"77 27 7:1 / /mnt/my\040disk\011tab\012nl\134bs rw - xfs /dev/loop1 ro,attr2,inode64",
                mount_point: "/mnt/my disk\ttab\nnl\\bs",
                root: "/",
                fs_type: "xfs",
                source: "/dev/loop1",
                options: &["rw"],
                super_options: &["ro", "attr2", "inode64"],
                read_only: true,
            },
            Case {
                name: "source with an escaped space",
                line: r"78 27 0:70 / /mnt/x rw - fuse.sshfs user@host:/my\040dir rw",
                mount_point: "/mnt/x",
                root: "/",
                fs_type: "fuse.sshfs",
                source: "user@host:/my dir",
                options: &["rw"],
                super_options: &["rw"],
                read_only: false,
            },
            Case {
                name: "empty source field",
                line: "79 27 0:71 / /mnt/e rw - tmpfs  rw,size=1024k",
                mount_point: "/mnt/e",
                root: "/",
                fs_type: "tmpfs",
                source: "",
                options: &["rw"],
                super_options: &["rw", "size=1024k"],
                read_only: false,
            },
            Case {
                name: "a backslash that is not an escape stays",
                line: r"80 27 0:72 / /mnt/a\x\400 rw - tmpfs tmpfs rw",
                mount_point: r"/mnt/a\x\400",
                root: "/",
                fs_type: "tmpfs",
                source: "tmpfs",
                options: &["rw"],
                super_options: &["rw"],
                read_only: false,
            },
        ];
        for case in cases {
            let parsed = parse_mountinfo(case.line);
            assert_eq!(parsed.len(), 1, "{}: {parsed:?}", case.name);
            let m = &parsed[0];
            assert_eq!(m.mount_point, case.mount_point, "{}", case.name);
            assert_eq!(m.root, case.root, "{}", case.name);
            assert_eq!(m.fs_type, case.fs_type, "{}", case.name);
            assert_eq!(m.source, case.source, "{}", case.name);
            assert_eq!(m.options, strings(case.options), "{}", case.name);
            assert_eq!(
                m.super_options,
                strings(case.super_options),
                "{}",
                case.name
            );
            assert_eq!(m.is_read_only(), case.read_only, "{}", case.name);
        }
    }

    #[test]
    fn parses_ids_and_device_numbers() {
        let m = parse_line("312 27 7:0 / /mnt rw shared:1 - ext4 /dev/loop0 rw").unwrap();
        assert_eq!(m.mount_id, 312);
        assert_eq!(m.parent_id, 27);
        assert_eq!(m.major_minor, "7:0");
    }

    #[test]
    fn skips_malformed_lines_and_keeps_the_rest() {
        let text = [
            "22 27 0:21 / /proc rw,relatime - proc proc rw",
            "",
            "garbage",
            "23 27 0:22 / /sys rw,relatime sysfs sysfs rw", // no separator
            "x 27 0:22 / /sys rw,relatime - sysfs sysfs rw", // mount ID not a number
            "23 -1 0:22 / /sys rw,relatime - sysfs sysfs rw", // negative parent
            "23 27 0:22 / /sys - sysfs sysfs rw",           // options missing
            "23 27 0:22 / /sys rw - sysfs sysfs",           // super options missing
            "23 27 0:22 / /sys rw - sysfs sysfs rw extra",  // a field too many
            "23 27 022 / /sys rw - sysfs sysfs rw",         // no major:minor
            "23 27 0:22 / /sys rw -",                       // nothing after the separator
            "99999999999 27 0:22 / /sys rw - sysfs sysfs rw", // ID overflows u32
            "- - - - - - - - -",
            "24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755",
        ]
        .join("\n");
        let parsed = parse_mountinfo(&text);
        let points: Vec<&str> = parsed.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/proc", "/dev"]);
    }

    #[test]
    fn tolerates_crlf_line_endings() {
        let parsed = parse_mountinfo("22 27 0:21 / /proc rw - proc proc rw\r\n");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].super_options, ["rw"]);
    }

    #[test]
    fn unescape_decodes_octal_and_keeps_the_rest() {
        assert_eq!(unescape(r"a\040b"), "a b");
        assert_eq!(unescape(r"\134\134"), r"\\");
        assert_eq!(unescape(r"\04"), r"\04");
        assert_eq!(unescape(r"trailing\"), r"trailing\");
        assert_eq!(unescape(r"\777"), r"\777");
        // Escaped bytes that are not UTF-8 decode lossily instead of failing.
        assert_eq!(unescape(r"\377"), "\u{fffd}");
        // Multi-byte characters are written raw by the kernel and pass through.
        assert_eq!(unescape(r"/mnt/日本\040語"), "/mnt/日本 語");
    }

    #[test]
    fn reads_this_machines_mount_table() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let parsed = parse_mountinfo(&text);
        assert_eq!(
            parsed.len(),
            text.lines().count(),
            "every line of the real table parses"
        );
        assert!(parsed.iter().any(|m| m.mount_point == "/"));
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        "/[a-z \\t\\n\\\\é-]{0,20}"
    }

    fn option_strategy() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9=_]{1,10}", 0..5)
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse_mountinfo(&text);
        }

        #[test]
        fn never_panics_on_almost_valid_lines(
            fields in proptest::collection::vec("[0-9:/ a-z\\\\-]{0,6}", 0..14),
        ) {
            let _ = parse_mountinfo(&fields.join(" "));
        }

        /// Whatever the kernel writes for a mount, we read back the same mount.
        #[test]
        fn round_trips_what_the_kernel_writes(
            mount_id: u32,
            parent_id: u32,
            major in 0u32..4096,
            minor in 0u32..1_000_000,
            root in path_strategy(),
            mount_point in path_strategy(),
            options in option_strategy(),
            optional in proptest::collection::vec("(shared|master|propagate_from):[0-9]{1,4}", 0..3),
            fs_type in "[a-z0-9.]{1,12}",
            source in "[a-z0-9/: -]{0,16}",
            super_options in option_strategy(),
        ) {
            let expected = MountInfo {
                mount_id,
                parent_id,
                major_minor: format!("{major}:{minor}"),
                root: root.clone(),
                mount_point: mount_point.clone(),
                options: options.clone(),
                fs_type: fs_type.clone(),
                source: source.clone(),
                super_options: super_options.clone(),
            };
            let mut head = vec![
                mount_id.to_string(),
                parent_id.to_string(),
                expected.major_minor.clone(),
                escape(&root),
                escape(&mount_point),
                options.join(","),
            ];
            head.extend(optional);
            let line = format!(
                "{} - {} {} {}",
                head.join(" "),
                escape(&fs_type),
                escape(&source),
                super_options.join(","),
            );
            prop_assert_eq!(parse_mountinfo(&line), vec![expected]);
        }
    }
}
