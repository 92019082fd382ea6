//! `cos-fuse`: a FUSE file system over a COS (S3-compatible) bucket.
//!
//! The core ([`store`], and the file system built on it) knows nothing of fuser: it is tested
//! against an in-memory object store, and a thin adapter serves it through the kernel.

pub mod store;
