//! A directory inside a mount, opened so that what is later mounted is exactly what was checked
//! (the class of CVE-2021-25741). Checking a path by name and then mounting it by name again
//! leaves a window in which a user of the file system can swap a component for a symbolic link
//! to anywhere on the node. [`open_beneath`] walks the path one component at a time from the
//! mount's root without following any link, and the caller bind-mounts the opened descriptor
//! ([`CheckedDir::source`], `/proc/self/fd/N`), so no name is looked up twice.
//!
//! The walk is portable (`openat` with `O_NOFOLLOW`), so it also works on kernels older than
//! `openat2`'s 5.6. Its lookups reach the file system's server, so callers bound it with
//! [`super::bounded::call`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;

use super::MountError;

/// An opened directory; mount it through [`CheckedDir::source`] while this value lives.
#[derive(Debug)]
pub struct CheckedDir {
    fd: OwnedFd,
}

impl CheckedDir {
    /// The path that names this very directory to mount(2): the descriptor's magic link.
    pub fn source(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

fn refused(path: String, what: &'static str, errno: Errno) -> MountError {
    MountError::Io {
        path,
        what,
        source: std::io::Error::from(errno),
    }
}

/// Opens `relative` (a `/`-separated path, `/` or empty for `base` itself) beneath `base` without
/// following symbolic links. A `.` or `..` component, a symbolic link anywhere on the way, or
/// anything that is not a directory is refused.
pub fn open_beneath(base: &Path, relative: &str) -> Result<CheckedDir, MountError> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = open(base, flags, Mode::empty())
        .map_err(|e| refused(base.display().to_string(), "opening the mount's root", e))?;
    let mut walked = base.to_path_buf();
    for component in relative.split('/').filter(|c| !c.is_empty()) {
        walked.push(component);
        if component == "." || component == ".." {
            return Err(refused(
                walked.display().to_string(),
                "a path inside a volume may not hold . or ..",
                Errno::EINVAL,
            ));
        }
        // With O_NOFOLLOW a symbolic link is opened as itself, which O_DIRECTORY refuses
        // (ENOTDIR); ELOOP on kernels that refuse it earlier.
        fd = openat(&fd, component, flags, Mode::empty()).map_err(|e| {
            let what = match e {
                Errno::ENOTDIR | Errno::ELOOP => {
                    "not a directory (a symbolic link is never followed)"
                }
                _ => "opening a directory inside the volume",
            };
            refused(walked.display().to_string(), what, e)
        })?;
    }
    Ok(CheckedDir { fd })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/file"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a/b"), dir.path().join("a/inside")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("a/outside")).unwrap();
        dir
    }

    fn errno_of(err: &MountError) -> Option<i32> {
        match err {
            MountError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    #[test]
    fn a_plain_directory_opens_and_its_source_names_it() {
        let dir = tree();
        let checked = open_beneath(dir.path(), "/a/b").unwrap();
        assert_eq!(
            std::fs::canonicalize(checked.source()).unwrap(),
            std::fs::canonicalize(dir.path().join("a/b")).unwrap()
        );
        let root = open_beneath(dir.path(), "/").unwrap();
        assert_eq!(
            std::fs::canonicalize(root.source()).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
    }

    #[test]
    fn a_symbolic_link_is_refused_even_one_that_stays_inside() {
        let dir = tree();
        for path in ["/a/inside", "/a/outside", "/a/inside/", "/a/outside/ssl"] {
            let err = open_beneath(dir.path(), path).unwrap_err();
            assert!(
                matches!(errno_of(&err), Some(nix::libc::ENOTDIR | nix::libc::ELOOP)),
                "{path}: {err:?}"
            );
        }
    }

    #[test]
    fn dot_dot_files_and_missing_directories_are_refused() {
        let dir = tree();
        let err = open_beneath(dir.path(), "/a/../..").unwrap_err();
        assert_eq!(errno_of(&err), Some(nix::libc::EINVAL));
        let err = open_beneath(dir.path(), "/a/file").unwrap_err();
        assert_eq!(errno_of(&err), Some(nix::libc::ENOTDIR));
        let err = open_beneath(dir.path(), "/a/missing").unwrap_err();
        assert_eq!(errno_of(&err), Some(nix::libc::ENOENT));
    }

    #[test]
    fn a_swap_after_the_open_does_not_change_what_the_descriptor_names() {
        let dir = tree();
        let checked = open_beneath(dir.path(), "/a/b").unwrap();
        // The race of CVE-2021-25741: the checked name becomes a link to the host's /etc.
        std::fs::rename(dir.path().join("a/b"), dir.path().join("a/moved")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("a/b")).unwrap();
        assert_eq!(
            std::fs::canonicalize(checked.source()).unwrap(),
            std::fs::canonicalize(dir.path().join("a/moved")).unwrap()
        );
    }
}
