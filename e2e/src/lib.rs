//! The end-to-end harness: starts the simulator and real driver binaries, talks CSI to them over
//! their socket the way kubelet and the sidecars do, and cleans up every process, mount, loop
//! device and file it made, even when a test fails.
//!
//! The benchmarks (`e2e bench`) live in [`bench`] and the soak (`e2e soak`) in [`soak`], built on
//! the harness; nothing in the harness (`env`, `kubelet`, `process`, `client`, `cleanup`, `demo`)
//! may use them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod cleanup;
pub mod client;
pub mod container;
pub mod demo;
pub mod env;
pub mod fuse_host;
pub mod kubelet;
pub mod process;
pub mod soak;

pub use client::CsiClient;
pub use env::{Driver, Env, EnvOptions};
pub use process::bin_path;
