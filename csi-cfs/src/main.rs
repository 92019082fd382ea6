//! The `csi-cfs` binary: flags in, `run` out. All logic lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let config = csi_cfs::Config::parse();
    let common = config.common.clone();
    csi_common::cli::run_main("csi-cfs", &common, || csi_cfs::run(config))
}
