//! The leak audit at the end of a soak, once every lifecycle has been torn down: what the cloud
//! still holds (disks, snapshots, file systems, from the simulator's state file), what the node
//! still holds (mounts and loop devices under the work directory, processes that name it), and the
//! multipart uploads still open in every bucket, listed through the simulator's COS endpoint by an
//! independent S3 client (boto3) when one is installed, else read from its state directory.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::rig::{Rig, pid_alive};
use crate::cleanup::{loops_under, mounts_under};
use crate::env::REGION;

/// What is left, by kind; every list should be empty.
#[derive(Debug, Clone, Default)]
pub struct Leaks {
    pub disks: Vec<String>,
    pub snapshots: Vec<String>,
    pub file_systems: Vec<String>,
    pub mounts: Vec<String>,
    pub loops: Vec<String>,
    pub processes: Vec<String>,
    pub uploads: Vec<String>,
    /// How the uploads were listed.
    pub uploads_checked_by: String,
}

impl Leaks {
    pub fn total(&self) -> usize {
        self.disks.len()
            + self.snapshots.len()
            + self.file_systems.len()
            + self.mounts.len()
            + self.loops.len()
            + self.processes.len()
            + self.uploads.len()
    }

    /// `(kind, what)` for every non-empty kind.
    pub fn by_kind(&self) -> Vec<(&'static str, &Vec<String>)> {
        [
            ("disks", &self.disks),
            ("snapshots", &self.snapshots),
            ("CFS file systems", &self.file_systems),
            ("mounts", &self.mounts),
            ("loop devices", &self.loops),
            ("processes", &self.processes),
            ("multipart uploads", &self.uploads),
        ]
        .into_iter()
        .collect()
    }
}

/// Audits, again and again for up to `settle` while something is left (a daemon exiting after
/// its unmount, a detach completing), and returns the last look.
pub async fn audit(rig: &Rig, settle: Duration) -> anyhow::Result<Leaks> {
    let end = tokio::time::Instant::now() + settle;
    loop {
        let leaks = look(rig).await?;
        if leaks.total() == 0 || tokio::time::Instant::now() >= end {
            return Ok(leaks);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn look(rig: &Rig) -> anyhow::Result<Leaks> {
    let state_file = rig.state_dir.join("state.json");
    let state: serde_json::Value = match std::fs::read(&state_file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", state_file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", state_file.display())),
    };
    let ids = |list: &serde_json::Value, field: &str| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let id = item[field].as_str().unwrap_or("?");
                let status = ["disk_state", "snapshot_state", "life_cycle_state"]
                    .iter()
                    .find_map(|key| item[*key].as_str());
                match status {
                    Some(status) => format!("{id} ({status})"),
                    None => id.to_owned(),
                }
            })
            .collect()
    };
    let (uploads, uploads_checked_by) = open_uploads(rig).await?;
    Ok(Leaks {
        disks: ids(&state["cbs"]["disks"], "disk_id"),
        snapshots: ids(&state["cbs"]["snapshots"], "snapshot_id"),
        file_systems: ids(&state["cfs"]["file_systems"], "file_system_id"),
        mounts: mounts_under(&rig.workdir),
        loops: loops_under(&rig.workdir),
        processes: stray_processes(rig),
        uploads,
        uploads_checked_by,
    })
}

/// Live processes whose command line names the work directory, other than the rig's own
/// (the simulator, the drivers, the FUSE hosts): FUSE daemons of deleted volumes, stuck helpers.
fn stray_processes(rig: &Rig) -> Vec<String> {
    let own = rig.own_pids();
    let me = std::process::id();
    let root = rig.workdir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && !own.contains(pid) && pid_alive(*pid))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&root)
                .then(|| format!("{pid}: {}", cmdline.trim()))
        })
        .collect();
    // Daemons the hosts recorded, even if their command line does not name the directory.
    for pid in rig.live_daemons() {
        if !found.iter().any(|f| f.starts_with(&format!("{pid}:"))) {
            found.push(format!("{pid}: a FUSE daemon still recorded by its host"));
        }
    }
    found
}

const LIST_UPLOADS: &str = r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name=sys.argv[2], config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}))
for bucket in s3.list_buckets()["Buckets"]:
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket["Name"])
    print("bucket", bucket["Name"])
    for page in pages:
        for upload in page.get("Uploads", []):
            print("upload", bucket["Name"], upload["Key"], upload["UploadId"])
"#;

/// Open multipart uploads in every bucket, and how they were listed.
async fn open_uploads(rig: &Rig) -> anyhow::Result<(Vec<String>, String)> {
    // The keys go through the environment, never the command line.
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(LIST_UPLOADS)
        .arg(&rig.cos_url)
        .arg(REGION)
        .env("AWS_ACCESS_KEY_ID", &rig.secret_id)
        .env("AWS_SECRET_ACCESS_KEY", &rig.secret_key)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(60), output).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let buckets = text.lines().filter(|l| l.starts_with("bucket ")).count();
            let uploads = text
                .lines()
                .filter_map(|l| l.strip_prefix("upload "))
                .map(str::to_owned)
                .collect();
            Ok((
                uploads,
                format!("ListMultipartUploads (boto3) on {buckets} bucket(s)"),
            ))
        }
        other => {
            let why = match other {
                Ok(Ok(out)) => String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
                    .to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            let uploads = uploads_in_state(&rig.state_dir.join("cos"))?;
            Ok((
                uploads,
                format!("the simulator's state directory (boto3 unavailable: {why})"),
            ))
        }
    }
}

/// `cos/<bucket>/uploads/<uploadId>/` directories: the simulator's open uploads.
fn uploads_in_state(cos: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let Ok(buckets) = std::fs::read_dir(cos) else {
        return Ok(found);
    };
    for bucket in buckets.flatten() {
        let Ok(uploads) = std::fs::read_dir(bucket.path().join("uploads")) else {
            continue;
        };
        for upload in uploads.flatten() {
            found.push(format!(
                "{} {}",
                bucket.file_name().to_string_lossy(),
                upload.file_name().to_string_lossy()
            ));
        }
    }
    Ok(found)
}
