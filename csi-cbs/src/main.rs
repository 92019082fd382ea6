//! The `csi-cbs` binary: flags in, `run` out. All logic lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let config = csi_cbs::Config::parse();
    let common = config.common.clone();
    csi_common::cli::run_main("csi-cbs", &common, || csi_cbs::run(config))
}
