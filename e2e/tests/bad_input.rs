//! Bad input to the binaries gets one clear line on stderr and a non-zero exit, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use e2e::bin_path;

/// Runs `binary args...` and returns its stderr, asserting a failed exit without a panic.
fn fails(binary: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(bin_path(binary).unwrap());
    command.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{binary} {args:?} succeeded:\n{stderr}"
    );
    assert_ne!(
        output.status.code(),
        Some(101),
        "{binary} {args:?} panicked:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{binary} {args:?} panicked:\n{stderr}"
    );
    stderr
}

/// The last stderr line, which is where the program states its error.
fn last_line(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

#[test]
fn malformed_endpoint() {
    for binary in ["csi-cbs", "csi-cfs", "csi-cos", "csi-goosefs"] {
        let stderr = fails(
            binary,
            &["--endpoint", "/var/lib/csi.sock", "--node-id", "ins-1"],
            &[],
        );
        assert!(
            stderr.contains("invalid endpoint \"/var/lib/csi.sock\": unknown scheme"),
            "{binary}: {stderr}"
        );
    }
}

#[test]
fn node_mode_without_a_node_id() {
    // csi-cbs asks instance metadata for its instance ID instead; here none answers.
    let stderr = fails(
        "csi-cbs",
        &[
            "--mode",
            "node",
            "--endpoint",
            "unix:///tmp/never.sock",
            "--metadata-endpoint",
            "http://127.0.0.1:9",
        ],
        &[("NODE_ID", "")],
    );
    assert!(
        stderr.contains("--node-id not given and instance metadata could not tell"),
        "{stderr}"
    );
    for binary in ["csi-cfs", "csi-cos", "csi-goosefs"] {
        let stderr = fails(
            binary,
            &["--mode", "node", "--endpoint", "unix:///tmp/never.sock"],
            &[("NODE_ID", "")],
        );
        assert_eq!(
            last_line(&stderr),
            format!(
                "{binary}: --mode Node runs the node service, which needs --node-id (or NODE_ID)"
            ),
        );
    }
}

#[test]
fn unreadable_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/csi.sock", dir.path().display());
    for binary in ["csi-cbs", "csi-cfs"] {
        let stderr = fails(
            binary,
            &[
                "--mode",
                "controller",
                "--endpoint",
                &socket,
                "--region",
                "ap-guangzhou",
                "--credentials-dir",
                "/nonexistent/keys",
            ],
            &[],
        );
        assert_eq!(
            last_line(&stderr),
            format!(
                "{binary}: cloud credentials: cannot read credentials directory /nonexistent/keys: No such file or directory (os error 2)"
            )
        );
        // A half-set pair in the environment names the missing variable.
        let stderr = fails(
            binary,
            &[
                "--mode",
                "controller",
                "--endpoint",
                &socket,
                "--region",
                "ap-guangzhou",
            ],
            &[("TENCENTCLOUD_SECRET_ID", "AKIDx")],
        );
        assert!(
            last_line(&stderr)
                .ends_with("TENCENTCLOUD_SECRET_ID is set but TENCENTCLOUD_SECRET_KEY is not"),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("csi.sock").exists(),
        "no socket is created when start-up fails"
    );
}

#[test]
fn simulator_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    let stderr = fails(
        "tcloud-sim",
        &["--state-dir", &state, "--keys-file", "/nonexistent/keys"],
        &[],
    );
    assert!(
        last_line(&stderr).starts_with("tcloud-sim: cannot read --keys-file /nonexistent/keys"),
        "{stderr}"
    );
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "only-an-id\n").unwrap();
    let keys = keys.display().to_string();
    let stderr = fails(
        "tcloud-sim",
        &["--state-dir", &state, "--keys-file", &keys],
        &[],
    );
    assert!(
        last_line(&stderr).contains("line 1: expected `SecretId SecretKey`"),
        "{stderr}"
    );
    let stderr = fails(
        "tcloud-sim",
        &[
            "--state-dir",
            &state,
            "--keys-file",
            &keys,
            "--zone",
            "nozoneid",
        ],
        &[],
    );
    assert!(
        stderr.contains("zone \"nozoneid\" is not NAME:NUMERIC_ID"),
        "{stderr}"
    );
    let stderr = fails(
        "tcloud-sim",
        &[
            "--state-dir",
            &state,
            "--keys-file",
            &keys,
            "--fault",
            "X:error_rate=7",
        ],
        &[],
    );
    assert!(
        stderr.contains("error_rate must be within [0, 1]"),
        "{stderr}"
    );
}

#[test]
fn e2e_serve_with_an_unknown_driver() {
    let stderr = fails(
        "e2e",
        &["serve", "--driver", "nfs", "--socket", "/tmp/x.sock"],
        &[],
    );
    assert!(stderr.contains("invalid value 'nfs'"), "{stderr}");
}
