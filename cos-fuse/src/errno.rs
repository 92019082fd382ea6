//! The POSIX errno a failed operation answers the kernel with. Owns the one mapping from store
//! (and local I/O) errors to errno values; the error that keeps the cause with the errno is
//! `fs::FsError`. It must not log (the FUSE edge does).

use std::fmt;

use crate::store::StoreError;

/// A positive errno value (`libc::E*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENOTSUP: Errno = Errno(libc::ENOTSUP);
    pub const ESTALE: Errno = Errno(libc::ESTALE);

    /// The raw value, for the kernel.
    pub fn code(self) -> i32 {
        self.0
    }

    fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EACCES => "EACCES",
            libc::EEXIST => "EEXIST",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::EROFS => "EROFS",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::ENOTSUP => "ENOTSUP",
            libc::ESTALE => "ESTALE",
            _ => "errno",
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Errno {}

/// How a failed store call reads to the caller of a file-system operation. `NotFound` means the
/// object (or the version the caller knew) is gone: ENOENT in a namespace operation, ESTALE for
/// the data of an open file, which the data path maps itself.
impl From<&StoreError> for Errno {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Errno::ENOENT,
            StoreError::Forbidden(_) => Errno::EACCES,
            StoreError::Invalid(_) => Errno::EIO,
            StoreError::Unavailable(_) => Errno::EIO,
        }
    }
}

impl From<StoreError> for Errno {
    fn from(e: StoreError) -> Self {
        Errno::from(&e)
    }
}

impl From<&std::io::Error> for Errno {
    /// Local (staging file) I/O errors keep their errno; one without an errno is EIO.
    fn from(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) if code > 0 => Errno(code),
            _ => Errno::EIO,
        }
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Errno::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_errno() {
        let cases = [
            (StoreError::NotFound("k".into()), Errno::ENOENT),
            (StoreError::Forbidden("k".into()), Errno::EACCES),
            (StoreError::Invalid("k".into()), Errno::EIO),
            (StoreError::Unavailable("k".into()), Errno::EIO),
        ];
        for (e, want) in cases {
            assert_eq!(Errno::from(&e), want, "{e}");
        }
    }

    #[test]
    fn io_errors_keep_their_code() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Errno::from(e), Errno::ENOSPC);
        assert_eq!(Errno::from(std::io::Error::other("x")), Errno::EIO);
        assert_eq!(format!("{}", Errno::ENOENT), "ENOENT(2)");
    }
}
