//! `cos-fuse`: a FUSE file system over a COS (S3-compatible) bucket.
//!
//! The core ([`store`], [`fs`]) knows nothing of fuser: it is tested against an in-memory object
//! store (`mem::MemStore`, behind the `fake` feature), and a thin adapter ([`fuse`]) serves it
//! through the kernel. A `main` builds an [`FsConfig`] and an [`ObjectStore`], calls
//! [`Fs::new`], then [`fuse::mount`] (or [`fuse::mount_blocking`]).

mod budget;
pub mod config;
pub mod cos;
pub mod errno;
pub mod fs;
pub mod fuse;
#[cfg(feature = "fake")]
pub mod mem;
pub mod options;
pub mod staging_area;
pub mod store;
pub mod upload_journal;

pub use config::{ConfigError, FsConfig, MountConfig};
pub use errno::Errno;
pub use fs::Fs;
pub use store::ObjectStore;
