//! `tencentcloud_csi_build_info{binary, version, commit} 1`: which program, of which release, built
//! from which commit. One series per process, so its labels are bounded by construction. The
//! commit comes from the build script; this module only names and renders it.

use std::fmt::Write;

/// The bundle's version (the workspace's `version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short git commit this build comes from, or `unknown` (see `build.rs`).
pub const COMMIT: &str = env!("METRICS_REGISTRY_COMMIT");
/// `--version` of the bundle's binaries: `0.1.0 (commit abc1234)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("METRICS_REGISTRY_COMMIT"),
    ")"
);

/// The program's name as it was started (`csi-cbs`, `cos-fuse`, ...): the file name of `argv[0]`,
/// cut to 64 characters of `[A-Za-z0-9._-]`; `unknown` when there is none.
pub fn binary_name() -> String {
    let name = std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    sanitize(&name)
}

fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

/// Appends the family to `out` in the text format.
pub(crate) fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP tencentcloud_csi_build_info The program, its version and the commit it was built from; always 1.\n\
         # TYPE tencentcloud_csi_build_info gauge\n\
         tencentcloud_csi_build_info{{binary=\"{}\",version=\"{}\",commit=\"{}\"}} 1",
        crate::text::escape(&binary_name()),
        crate::text::escape(VERSION),
        crate::text::escape(COMMIT),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_clean() {
        assert_eq!(sanitize("csi-cbs"), "csi-cbs");
        assert_eq!(sanitize("a\"b\nc{}"), "abc");
        assert_eq!(sanitize(""), "unknown");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 64);
        assert!(COMMIT == "unknown" || COMMIT.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains(&format!("version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1")),
            "{out}"
        );
    }
}
