//! Build script: the commit this build comes from, for the `tencentcloud_csi_build_info` series.
//! `CSI_BUILD_COMMIT` wins (image builds without `.git`); otherwise `git rev-parse --short HEAD`;
//! otherwise `unknown`. It never fails a build: no git, no checkout, a broken repository all give
//! `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CSI_BUILD_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("CSI_BUILD_COMMIT")
        .ok()
        .filter(|c| is_commit(c))
        .or_else(|| git_commit(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=METRICS_REGISTRY_COMMIT={commit}");
}

/// A short or full commit name: 4 to 40 hex digits.
fn is_commit(text: &str) -> bool {
    (4..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// The short commit of HEAD, and `rerun-if-changed` on the files that move when HEAD does.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short", "HEAD"])?
        .trim()
        .to_owned();
    if let Some(dirs) = git(dir, &["rev-parse", "--git-dir", "--git-common-dir"]) {
        let mut lines = dirs.lines().map(|d| dir.join(d.trim()));
        let git_dir = lines.next();
        let common_dir = lines.next().or_else(|| git_dir.clone());
        if let (Some(git_dir), Some(common_dir)) = (git_dir, common_dir) {
            let head = git_dir.join("HEAD");
            let mut watched = vec![head.clone(), common_dir.join("packed-refs")];
            // HEAD names a branch: the branch's file moves on every commit.
            if let Ok(text) = std::fs::read_to_string(&head)
                && let Some(reference) = text.trim().strip_prefix("ref: ")
            {
                watched.push(common_dir.join(reference));
            }
            // A missing file would make cargo run this script on every build.
            for path in watched.iter().filter(|p| p.is_file()) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    is_commit(&commit).then_some(commit)
}
