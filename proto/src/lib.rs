//! The CSI protocol, package `csi.v1`, generated from `csi.proto` in this crate.
//!
//! This crate owns nothing but the generated types; behaviour lives in `csi-common` and the drivers.

#![allow(missing_debug_implementations, clippy::all)]

pub mod v1 {
    tonic::include_proto!("csi.v1");
}
