//! The `csi-goosefs` binary: flags in, `run` out. All logic lives in the library.

fn main() -> std::process::ExitCode {
    // Tencent's manifests' flags (`--nodeID`, `--v=5`, ...) are read as ours.
    let (config, notes) = csi_common::legacy_flags::parse::<csi_goosefs::Config>();
    let common = config.common.clone();
    csi_common::cli::run_main("csi-goosefs", &common, &notes, || csi_goosefs::run(config))
}
