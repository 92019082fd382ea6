//! The error of a file-system operation, [`FsError`]: the errno the kernel gets, kept together
//! with what an operator needs to see why: the operation, the inode and object key it concerned,
//! what was being done, and the cause chain (a store error, which for COS carries the HTTP
//! status, the S3 code, the server's message and the request ID; a local I/O error). Built where
//! the failure happens and carried up unchanged; this module must not log (the FUSE adapter logs
//! each failed request once).
//!
//! [`FsError::is_expected`] tells failures that are part of normal file-system use (a lookup of a
//! missing name, an existing name, a directory not empty, a refused change) from those an
//! operator should see: every failure with a cause, and every errno not on that list.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use super::types::Ino;
use crate::errno::Errno;
use crate::store::StoreError;

/// A cause, shared: read-ahead hands one block's result to every read waiting for it.
type Cause = Arc<dyn StdError + Send + Sync + 'static>;

/// Why a file-system operation failed. Compares equal to an [`Errno`] when it carries it.
#[derive(Debug, Clone)]
pub struct FsError {
    errno: Errno,
    /// The file-system operation (`"read"`, `"lookup"`...), set by [`Fs`](super::Fs).
    op: Option<&'static str>,
    /// The inode the operation was asked about (for lookups, create, mkdir...: the parent).
    ino: Option<Ino>,
    /// Boxed, so a plain refusal (the common case) stays small and allocates nothing.
    detail: Option<Box<Detail>>,
}

#[derive(Debug, Clone, Default)]
struct Detail {
    /// The object key (with the mount prefix) the failure concerned.
    key: Option<String>,
    /// What was being done, in words ("GET bytes 0..4096", "upload").
    message: Option<Cow<'static, str>>,
    source: Option<Cause>,
}

/// The errnos of refusals that are part of normal use, when nothing else went wrong.
const EXPECTED: [Errno; 11] = [
    Errno::ENOENT,
    Errno::EEXIST,
    Errno::ENOTEMPTY,
    Errno::ENOTDIR,
    Errno::EISDIR,
    Errno::EPERM,
    Errno::EROFS,
    Errno::EINVAL,
    Errno::ENAMETOOLONG,
    Errno::EBADF,
    Errno::ENOTSUP,
];

impl FsError {
    /// A failure described by `message`.
    pub(crate) fn new(errno: Errno, message: impl Into<Cow<'static, str>>) -> Self {
        FsError::from(errno).context(message)
    }

    /// A failed store request on `key`, with the errno its kind maps to.
    pub(crate) fn store(key: &str, e: StoreError) -> Self {
        FsError::from(Errno::from(&e)).with_key(key).caused_by(e)
    }

    /// A failed local I/O (a staging file), keeping its errno.
    pub(crate) fn io(message: impl Into<Cow<'static, str>>, e: std::io::Error) -> Self {
        FsError::new(Errno::from(&e), message).caused_by(e)
    }

    pub fn errno(&self) -> Errno {
        self.errno
    }

    pub fn op(&self) -> Option<&'static str> {
        self.op
    }

    pub fn ino(&self) -> Option<Ino> {
        self.ino
    }

    pub fn key(&self) -> Option<&str> {
        self.detail.as_ref()?.key.as_deref()
    }

    /// Whether the failure is part of normal file-system use (ENOENT of a lookup, EEXIST,
    /// ENOTEMPTY, EPERM of a refused change...) rather than something an operator should see:
    /// no cause, and an errno of that list.
    pub fn is_expected(&self) -> bool {
        self.source().is_none() && EXPECTED.contains(&self.errno)
    }

    /// The same failure answered with `errno` (an upload's failure is EIO whatever its cause).
    pub(crate) fn with_errno(mut self, errno: Errno) -> Self {
        self.errno = errno;
        self
    }

    /// Records the key, unless one is known already.
    pub(crate) fn with_key(mut self, key: &str) -> Self {
        let d = self.detail.get_or_insert_with(Box::default);
        if d.key.is_none() {
            d.key = Some(key.to_string());
        }
        self
    }

    /// Says what was being done: `what`, before what the error said so far.
    pub(crate) fn context(mut self, what: impl Into<Cow<'static, str>>) -> Self {
        let d = self.detail.get_or_insert_with(Box::default);
        let what = what.into();
        d.message = Some(match d.message.take() {
            Some(inner) => Cow::Owned(format!("{what}: {inner}")),
            None => what,
        });
        self
    }

    pub(crate) fn caused_by(mut self, cause: impl StdError + Send + Sync + 'static) -> Self {
        self.detail.get_or_insert_with(Box::default).source = Some(Arc::new(cause));
        self
    }

    /// Records the operation and the inode it was asked about, unless known already.
    pub(crate) fn during(mut self, op: &'static str, ino: Ino) -> Self {
        self.op = self.op.or(Some(op));
        self.ino = self.ino.or(Some(ino));
        self
    }

    /// Records the operation, unless known already.
    pub(crate) fn in_op(mut self, op: &'static str) -> Self {
        self.op = self.op.or(Some(op));
        self
    }
}

impl From<Errno> for FsError {
    /// A plain refusal: nothing but the errno.
    fn from(errno: Errno) -> Self {
        FsError {
            errno,
            op: None,
            ino: None,
            detail: None,
        }
    }
}

impl From<FsError> for Errno {
    fn from(e: FsError) -> Self {
        e.errno
    }
}

impl PartialEq<Errno> for FsError {
    fn eq(&self, other: &Errno) -> bool {
        self.errno == *other
    }
}

/// What was being done (or the errno when nothing was said); `{:#}` adds the cause chain,
/// each cause after a `: `.
impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail.as_ref().and_then(|d| d.message.as_deref()) {
            Some(m) => f.write_str(m)?,
            None => write!(f, "{}", self.errno)?,
        }
        if f.alternate() {
            let mut cause = self.source();
            while let Some(c) = cause {
                write!(f, ": {c}")?;
                cause = c.source();
            }
        }
        Ok(())
    }
}

impl StdError for FsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let cause = self.detail.as_ref()?.source.as_ref()?;
        Some(cause.as_ref())
    }
}

/// Turns a store call's error into an [`FsError`] on the key it concerned.
pub(crate) trait ForKey<T> {
    fn for_key(self, key: &str) -> Result<T, FsError>;
}

impl<T> ForKey<T> for Result<T, StoreError> {
    fn for_key(self, key: &str) -> Result<T, FsError> {
        self.map_err(|e| FsError::store(key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_keeps_its_errno_key_and_cause() {
        let e = FsError::store(
            "pv/f",
            StoreError::Forbidden("GetObject b/pv/f: HTTP 403 AccessDenied".into()),
        )
        .context("GET bytes 0..4")
        .during("read", 7);
        assert_eq!(e, Errno::EACCES);
        assert_eq!(
            (e.op(), e.ino(), e.key()),
            (Some("read"), Some(7), Some("pv/f"))
        );
        assert_eq!(e.to_string(), "GET bytes 0..4");
        assert_eq!(
            format!("{e:#}"),
            "GET bytes 0..4: access denied: GetObject b/pv/f: HTTP 403 AccessDenied"
        );
        assert!(!e.is_expected());
        // The first operation and key recorded stay.
        let e = e.during("flush", 8).with_key("other");
        assert_eq!(
            (e.op(), e.ino(), e.key()),
            (Some("read"), Some(7), Some("pv/f"))
        );
    }

    #[test]
    fn plain_refusals_are_expected_and_failures_are_not() {
        assert!(FsError::from(Errno::ENOENT).is_expected());
        assert!(FsError::from(Errno::EEXIST).is_expected());
        assert!(FsError::new(Errno::ENOTEMPTY, "rmdir").is_expected());
        assert!(!FsError::from(Errno::EIO).is_expected());
        assert!(!FsError::from(Errno::ESTALE).is_expected());
        assert!(!FsError::from(Errno::ENOSPC).is_expected());
        // A missing object in the middle of an operation is not a plain "no such file".
        let vanished = FsError::store("k", StoreError::NotFound("k".into()));
        assert_eq!(vanished, Errno::ENOENT);
        assert!(!vanished.is_expected());
        assert_eq!(format!("{:#}", FsError::from(Errno::EIO)), "EIO(5)");
        let io = FsError::io(
            "staging file",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(io, Errno::ENOSPC);
        assert!(format!("{io:#}").starts_with("staging file: "), "{io:#}");
    }
}
