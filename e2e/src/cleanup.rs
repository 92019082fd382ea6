//! Removes what a run left under its work directory: mounts (deepest first, lazily) and loop
//! devices whose backing file lives there. Safe to run any number of times.

use std::path::Path;
use std::time::Duration;

/// Mount points under `root`, deepest first, from `/proc/self/mountinfo`.
pub fn mounts_under(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = root.to_string_lossy();
    let mut found: Vec<String> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|point| point == root.as_ref() || point.starts_with(&format!("{root}/")))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.len()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Loop devices (`/dev/loopN`) whose backing file is under `root`.
pub fn loops_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                return None;
            }
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim();
            (backing.starts_with(&format!("{root}/"))).then(|| format!("/dev/{name}"))
        })
        .collect()
}

/// Unmounts every mount and detaches every loop device under `root`. Returns what it removed.
pub fn clean(root: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for point in mounts_under(root) {
        if nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH).is_ok() {
            removed.push(format!("umount {point}"));
        }
    }
    for device in loops_under(root) {
        let status = run_with_timeout("losetup", &["-d", &device], Duration::from_secs(10));
        if status {
            removed.push(format!("losetup -d {device}"));
        }
    }
    removed
}

fn run_with_timeout(program: &str, args: &[&str], timeout: Duration) -> bool {
    let Ok(mut child) = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
