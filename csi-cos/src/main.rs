//! The `csi-cos` binary: flags in, `run` out. All logic lives in the library.

fn main() -> std::process::ExitCode {
    // Tencent's manifests' flags (`--nodeID`, `--v=5`, ...) are read as ours.
    let (config, notes) = csi_common::legacy_flags::parse::<csi_cos::Config>();
    let common = config.common.clone();
    csi_common::cli::run_main("csi-cos", &common, &notes, || csi_cos::run(config))
}
