//! The `csi-cos` binary: flags in, `run` out. All logic lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let config = csi_cos::Config::parse();
    let common = config.common.clone();
    csi_common::cli::run_main("csi-cos", &common, || csi_cos::run(config))
}
