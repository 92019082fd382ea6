//! The `csi-goosefs` binary: flags in, `run` out. All logic lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let config = csi_goosefs::Config::parse();
    let common = config.common.clone();
    csi_common::cli::run_main("csi-goosefs", &common, || csi_goosefs::run(config))
}
