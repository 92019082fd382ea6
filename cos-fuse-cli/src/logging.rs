//! The log levels `--log-level` takes, the same the drivers' `-v` counts through (info, -v
//! debug, -vv trace; error and warn below them), and the mount's log setup. RUST_LOG overrides.

use csi_common::cli::LogFormat;

/// The accepted levels, quietest first.
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A `--log-level` value: one of [`LEVELS`].
pub fn parse_log_level(text: &str) -> Result<String, String> {
    LEVELS
        .iter()
        .find(|l| **l == text)
        .map(|l| (*l).to_owned())
        .ok_or_else(|| {
            format!(
                "unknown log level {text:?}: use one of {} (the drivers' -v is debug, -vv trace)",
                LEVELS.join(", ")
            )
        })
}

/// Logs at `level` (RUST_LOG overrides) on standard error. A line that cannot be written (by
/// hand, standard error a pipe whose reader is gone: EPIPE, SIGPIPE being ignored, as Rust
/// programs do; under the FUSE host it is a file) is dropped: tracing-subscriber would otherwise
/// report it with `eprintln!`, which panics when standard error is broken.
pub fn init(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_the_drivers_and_unknown_ones_name_them() {
        for level in LEVELS {
            assert_eq!(parse_log_level(level).unwrap(), level);
        }
        let err = parse_log_level("loud").unwrap_err();
        assert!(
            err.contains("\"loud\"") && err.contains("error, warn, info, debug, trace"),
            "{err}"
        );
        assert!(parse_log_level("crit").is_err());
    }
}
