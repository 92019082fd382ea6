//! `promtool check metrics` over a rendered exposition, for the tests of every crate that serves
//! `/metrics`. It runs the real promtool; a missing promtool is an error, never a skipped check.

use std::io::Write;
use std::process::{Command, Stdio};

/// Why an exposition did not pass. (Display by hand: this crate has no dependencies.)
#[derive(Debug)]
pub enum PromtoolError {
    Missing(std::io::Error),
    Run(std::io::Error),
    Complaints {
        status: std::process::ExitStatus,
        output: String,
        text: String,
    },
}

impl std::fmt::Display for PromtoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromtoolError::Missing(e) => write!(
                f,
                "promtool is not on PATH ({e}): install it (Debian: `apt-get install prometheus`) \
                 so the /metrics exposition can be checked"
            ),
            PromtoolError::Run(e) => write!(f, "cannot run promtool: {e}"),
            PromtoolError::Complaints {
                status,
                output,
                text,
            } => write!(
                f,
                "promtool check metrics failed ({status}):\n{output}\n--- the exposition ---\n{text}"
            ),
        }
    }
}

impl std::error::Error for PromtoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PromtoolError::Missing(e) | PromtoolError::Run(e) => Some(e),
            PromtoolError::Complaints { .. } => None,
        }
    }
}

/// Pipes `text` to `promtool check metrics`: `Ok` with promtool's output when it has no complaint
/// (parse errors and lint problems both fail it).
pub fn check_metrics(text: &str) -> Result<String, PromtoolError> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PromtoolError::Missing(e),
            _ => PromtoolError::Run(e),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(PromtoolError::Run)?;
    }
    let done = child.wait_with_output().map_err(PromtoolError::Run)?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    if done.status.success() && output.trim().is_empty() {
        Ok(output)
    } else {
        Err(PromtoolError::Complaints {
            status: done.status,
            output,
            text: text.to_owned(),
        })
    }
}
