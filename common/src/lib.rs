//! Everything the four Tencent Cloud CSI drivers share. It knows nothing of a particular driver.
//!
//! - [`csi`]: the gRPC server bootstrap, RPC logging, in-flight guards, the identity service.
//! - [`cloud`]: the TencentCloud API v3 client (signing, retries, credentials, instance metadata).
//! - [`cli`]: the flags every driver binary accepts, and logging setup.
//! - [`object`]: the COS object client over the S3-compatible API (SigV4, XML, retries).

pub mod cli;
pub mod cloud;
pub mod csi;
pub mod fusehost;
pub mod metrics;
pub mod mount;
pub mod object;
pub mod time;
