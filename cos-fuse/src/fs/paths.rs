//! Path arithmetic of the namespace: file names checked, paths joined and split, the paths under
//! a directory, and the made-up inode numbers of entries without an inode. Pure functions; keys
//! (the mount prefix) are the shared state's business.

use super::types::Ino;
use crate::errno::Errno;

const MAX_NAME: usize = 255;
/// S3 and COS keys are at most 1024 bytes.
pub(crate) const MAX_KEY: usize = 1024;

/// Checks a name the kernel passed.
pub(crate) fn check_name(name: &str) -> Result<&str, Errno> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Errno::EINVAL);
    }
    if name.len() > MAX_NAME {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(name)
}

/// Whether a name found in a listing can be shown.
pub(crate) fn listable(name: &str) -> bool {
    check_name(name).is_ok()
}

pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// `(parent, name)` of a non-root path.
pub(crate) fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The paths strictly under directory `dir` (`""` is the root).
/// `from` and every key of `map` below it (`from/…`), in order: what a rename of `from` moves.
pub(crate) fn subtree<V>(map: &std::collections::BTreeMap<String, V>, from: &str) -> Vec<String> {
    let below = under(from);
    let mut found = vec![from.to_string()];
    found.extend(
        map.range::<str, _>((
            std::ops::Bound::Included(below.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(p, _)| p.starts_with(&below))
        .map(|(p, _)| p.clone()),
    );
    found
}

pub(crate) fn under(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

/// A made-up `d_ino` for entries without an inode: the top bit keeps it apart from real ones.
pub(crate) fn synthetic_ino(path: &str) -> Ino {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("a b").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(check_name(&"x".repeat(256)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn paths_split_and_join() {
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("a"), ("", "a"));
        assert_eq!(child("", "a"), "a");
        assert_eq!(child("a/b", "c"), "a/b/c");
        assert_eq!(under(""), "");
        assert_eq!(under("a/b"), "a/b/");
        assert!(synthetic_ino("x") > (1 << 62));
    }
}
