//! What every CSI driver of the bundle shares, and nothing more. It knows no particular driver,
//! and no storage protocol: the cloud API client is `tcloud`, the object client `cos-client`,
//! the FUSE host `fuse-host`.
//!
//! - [`csi`]: the gRPC server bootstrap, RPC logging, in-flight guards, the identity service, the
//!   one error type and its code map, the request rules.
//! - [`mount`]: the Mounter seam, its Linux implementation and its fake.
//! - [`cli`]: the flags every driver binary accepts, and logging setup.
//! - [`legacy_flags`]: the flags of Tencent's Go drivers, read as ours.
//! - [`metrics`]: the Prometheus endpoint.

pub mod cli;
pub mod csi;
pub mod legacy_flags;
pub mod metrics;
pub mod mount;
