//! Reads and writes through the mounts, each in a child process (`dd`, `cat`), never in the soak's
//! own process.
//!
//! Why: every close of a descriptor on a FUSE file sends FLUSH to its daemon, and `execve` closes
//! the close-on-exec descriptors a forked child inherited. Had the soak itself a file open on a
//! COS mount whose daemon the chaos task just killed, every process it then started (a restarted
//! driver, a FUSE host) would block in `execve` until that mount healed, before printing a line:
//! a restarted csi-cos that "never opened its socket", as a CI run once saw. Kubelet never holds
//! files on the mounts it asks for; the rig should not either.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Creates (or truncates) `path` with `bytes` and fsyncs it, through `dd`, within `timeout`.
pub async fn write_synced(path: &Path, bytes: &[u8], timeout: Duration) -> anyhow::Result<()> {
    let mut of = OsString::from("of=");
    of.push(path);
    let mut child = Command::new("dd")
        .arg(of)
        .args(["bs=1M", "conv=fsync", "status=none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start dd")?;
    let mut stdin = child.stdin.take().context("dd has no stdin")?;
    let work = async {
        // A dd that failed early closes its end: its own message says more than EPIPE.
        let fed = stdin.write_all(bytes).await;
        drop(stdin);
        let out = child.wait_with_output().await.context("waiting for dd")?;
        if out.status.success() {
            fed.with_context(|| format!("feeding dd for {}", path.display()))?;
        } else {
            bail!(
                "write+fsync {}: dd {}: {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    // Dropping the child on a timeout kills it.
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("writing {} hung for {timeout:?}", path.display()))?
}

/// The bytes of `path`, through `cat`, within `timeout`.
pub async fn read(path: &Path, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let child = Command::new("cat")
        .arg("--")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start cat")?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("reading {} hung for {timeout:?}", path.display()))?
        .context("waiting for cat")?;
    if !out.status.success() {
        bail!(
            "read {}: cat {}: {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn what_is_written_reads_back_and_a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
        write_synced(&path, &bytes, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(read(&path, Duration::from_secs(30)).await.unwrap(), bytes);
        // Shorter content truncates, as File::create would.
        write_synced(&path, b"ab", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(read(&path, Duration::from_secs(30)).await.unwrap(), b"ab");
        let missing = dir.path().join("missing");
        let e = read(&missing, Duration::from_secs(30)).await.unwrap_err();
        assert!(format!("{e:#}").contains("missing"), "{e:#}");
        let e = write_synced(
            &dir.path().join("no/such/dir"),
            b"x",
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("no/such/dir"), "{e:#}");
    }
}
