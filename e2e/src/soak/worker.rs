//! One soak worker: whole volume lifecycles of one driver, one after another, until told to stop.
//! Each RPC is retried the way the external-provisioner, the attacher and kubelet retry (the same
//! idempotent request, any error, backoff, until the lifecycle's deadline). Data written and
//! fsynced through the mount is read back after a pause in which the chaos task may kill
//! anything, re-staging and re-publishing until it reads, and must be byte for byte what was
//! written. A lifecycle that fails is torn down with the same retries, as the sidecars would.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use csi_proto::v1 as pb;
use pb::volume_capability::access_mode::Mode;

use super::io;
use super::tracker::{Plane, Tracker};
use crate::client::CsiClient;
use crate::env::Driver;
use crate::kubelet::{Kubelet, Volume, mount_capability};

/// The longest one attempt of an RPC may take before it is abandoned and retried.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one read or write through a mount may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);
const MIB: usize = 1 << 20;

/// What one worker drives.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub driver: Driver,
    pub index: usize,
    /// The driver's directory (kubelet's paths go under it) and socket.
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Whether the driver stages (STAGE_UNSTAGE_VOLUME) and attaches (CBS).
    pub stage: bool,
    pub attach: bool,
    pub lifecycle_timeout: Duration,
    pub seed: u64,
}

/// Runs lifecycles until `stop` is set; the one in flight then finishes (or is torn down).
pub async fn run_worker(config: WorkerConfig, tracker: Arc<Tracker>, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let name = format!(
            "soak-{}-{}-{n}",
            config.driver.binary().trim_start_matches("csi-"),
            config.index
        );
        let mut lifecycle = Lifecycle::new(&config, &tracker, name, rng.u64(..));
        let deadline = Instant::now() + config.lifecycle_timeout;
        let forward = lifecycle.forward(deadline).await;
        // Teardown gets its own deadline, as the sidecars keep retrying a deletion.
        let down = lifecycle
            .teardown(Instant::now() + config.lifecycle_timeout)
            .await;
        match (forward, down) {
            (Ok(()), Ok(())) => tracker.completed(config.driver),
            (forward, down) => {
                let mut why = Vec::new();
                if let Err(e) = forward {
                    why.push(format!("{e:#}"));
                }
                if let Err(e) = down {
                    why.push(format!("teardown: {e:#}"));
                }
                let why = format!("{}: {}", lifecycle.name, why.join("; "));
                eprintln!("soak: lifecycle failed: {why}");
                tracker.failed(config.driver, why);
            }
        }
    }
}

/// A file written through the mount and fsynced: its content is regenerated from `seed`.
#[derive(Debug, Clone)]
struct DataFile {
    path: PathBuf,
    seed: u64,
    len: usize,
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

/// The gRPC code of an RPC's error, or what went wrong before an answer.
fn error_code(error: &anyhow::Error) -> String {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => format!("{:?}", status.code()),
        None if format!("{error:#}").contains("no answer within") => "Timeout".to_owned(),
        None => "Connect".to_owned(),
    }
}

fn rwx() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    }
}

struct Lifecycle<'a> {
    config: &'a WorkerConfig,
    tracker: &'a Tracker,
    name: String,
    rng: fastrand::Rng,
    client: Option<CsiClient>,
    capability: pb::VolumeCapability,
    gib: i64,
    parameters: HashMap<String, String>,
    /// Set once CreateVolume was sent: from then on the volume may exist in the cloud.
    create_sent: bool,
    volume: Option<Volume>,
    attach_sent: bool,
    mount_sent: bool,
    /// The snapshot's name once CreateSnapshot was sent, and its ID once known.
    snapshot_name: Option<String>,
    snapshot_id: Option<String>,
    files: Vec<DataFile>,
}

impl<'a> Lifecycle<'a> {
    fn new(config: &'a WorkerConfig, tracker: &'a Tracker, name: String, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (capability, gib, parameters) = match config.driver {
            Driver::Cbs => {
                let fs = if rng.bool() { "ext4" } else { "xfs" };
                (mount_capability(fs), 10, HashMap::new())
            }
            // CFS Turbo is not among the soak's drivers (`Driver::ALL`).
            Driver::Cfs | Driver::CfsTurbo => (rwx(), 10, HashMap::new()),
            Driver::Cos => (rwx(), 1, HashMap::new()),
            Driver::Goosefs => (
                rwx(),
                1,
                HashMap::from([("readOnly".to_owned(), "false".to_owned())]),
            ),
        };
        Lifecycle {
            config,
            tracker,
            name,
            rng,
            client: None,
            capability,
            gib,
            parameters,
            create_sent: false,
            volume: None,
            attach_sent: false,
            mount_sent: false,
            snapshot_name: None,
            snapshot_id: None,
            files: Vec::new(),
        }
    }

    async fn kubelet(&mut self) -> anyhow::Result<Kubelet> {
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = CsiClient::connect(&self.config.socket).await?;
                self.client = Some(client.clone());
                client
            }
        };
        let mut k = Kubelet::new(client, &self.config.dir);
        k.parameters = self.parameters.clone();
        Ok(k)
    }

    /// Sends `call` until it succeeds or `deadline` passes, with backoff.
    async fn rpc<T, F, Fut>(
        &mut self,
        op: &'static str,
        plane: Plane,
        deadline: Instant,
        mut call: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut(Kubelet) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut pause = FIRST_PAUSE;
        loop {
            let started = Instant::now();
            let budget = deadline
                .saturating_duration_since(started)
                .clamp(Duration::from_secs(1), RPC_TIMEOUT);
            let result = match self.kubelet().await {
                Ok(k) => match tokio::time::timeout(budget, call(k)).await {
                    Ok(result) => result,
                    Err(_) => Err(anyhow!("no answer within {budget:?}")),
                },
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(value) => {
                    self.tracker.rpc_ok(self.config.driver, plane, started);
                    return Ok(value);
                }
                Err(e) => e,
            };
            let code = error_code(&error);
            self.tracker.rpc_error(op, &code);
            if matches!(
                code.as_str(),
                "Unavailable" | "Unknown" | "Cancelled" | "Timeout" | "Connect"
            ) {
                self.client = None;
            }
            if Instant::now() + pause >= deadline {
                return Err(error.context(format!("{op} still failing at the deadline")));
            }
            let jitter = Duration::from_millis(self.rng.u64(0..=pause.as_millis() as u64 / 2));
            tokio::time::sleep(pause + jitter).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    fn volume(&self) -> anyhow::Result<Volume> {
        self.volume.clone().context("no volume yet")
    }

    async fn create(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.create_sent = true;
        let (name, gib, capability) = (self.name.clone(), self.gib, self.capability.clone());
        let volume = self
            .rpc("CreateVolume", Plane::Controller, deadline, |mut k| {
                let (name, capability) = (name.clone(), capability.clone());
                async move { k.create(&name, gib, capability, None).await }
            })
            .await?;
        self.volume = Some(volume);
        Ok(())
    }

    async fn attach(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.attach_sent = true;
        let volume = self.volume()?;
        let context = self
            .rpc(
                "ControllerPublishVolume",
                Plane::Controller,
                deadline,
                |mut k| {
                    let mut volume = volume.clone();
                    async move { k.attach(&mut volume).await.map(|()| volume.publish_context) }
                },
            )
            .await?;
        if let Some(volume) = &mut self.volume {
            volume.publish_context = context;
        }
        Ok(())
    }

    /// NodeStage (when the driver stages) and NodePublish: the first mount, and the repair of a
    /// broken one (both are idempotent and repair what they find broken).
    async fn mount(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.mount_sent = true;
        let volume = self.volume()?;
        if self.config.stage {
            self.rpc("NodeStageVolume", Plane::Node, deadline, |mut k| {
                let volume = volume.clone();
                async move { k.stage(&volume).await }
            })
            .await?;
        }
        self.rpc("NodePublishVolume", Plane::Node, deadline, |mut k| {
            let volume = volume.clone();
            async move { k.publish(&volume, false).await }
        })
        .await
    }

    async fn forward(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.create(deadline).await?;
        if self.config.attach {
            self.attach(deadline).await?;
        }
        self.mount(deadline).await?;
        let count = self.rng.usize(1..=3);
        for i in 0..count {
            let len = if self.rng.u8(..10) == 0 {
                // Past cos-fuse's part size: a multipart upload.
                self.rng.usize(9 * MIB..13 * MIB)
            } else {
                self.rng.usize(1..MIB)
            };
            let file = DataFile {
                path: self.volume()?.target.join(format!("data-{i}.bin")),
                seed: self.rng.u64(..),
                len,
            };
            self.write(&file, deadline).await?;
            self.files.push(file);
        }
        // The pod runs; the chaos task may kill anything meanwhile.
        tokio::time::sleep(Duration::from_millis(self.rng.u64(500..4000))).await;
        self.verify(deadline).await?;
        if self.config.driver == Driver::Cbs && self.rng.u8(..3) == 0 {
            self.snapshot(deadline).await?;
            self.delete_snapshot(deadline).await?;
        }
        Ok(())
    }

    /// Writes and fsyncs `file`, repairing the mount until it works. Only data whose fsync
    /// succeeded is remembered.
    async fn write(&mut self, file: &DataFile, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let bytes = content(file.seed, file.len);
            let result = io::write_synced(&file.path, &bytes, IO_TIMEOUT).await;
            let Err(error) = result else {
                return Ok(());
            };
            self.tracker.rpc_error("write+fsync", "io");
            if Instant::now() >= deadline {
                return Err(error.context(format!("writing {}", file.path.display())));
            }
            tokio::time::sleep(FIRST_PAUSE).await;
            self.mount(deadline).await?;
        }
    }

    /// Reads back every file written so far; it must come back identical. An unreadable mount is
    /// repaired (stage + publish) and read again until the deadline.
    async fn verify(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let files = self.files.clone();
        for file in files {
            loop {
                let last = match io::read(&file.path, IO_TIMEOUT).await {
                    Ok(bytes) => {
                        let expected = content(file.seed, file.len);
                        if bytes == expected {
                            self.tracker.verified(file.len as u64);
                            break;
                        }
                        let first = bytes
                            .iter()
                            .zip(&expected)
                            .position(|(a, b)| a != b)
                            .unwrap_or(bytes.len().min(expected.len()));
                        let last = format!(
                            "read {} bytes, expected {}, first difference at byte {first}",
                            bytes.len(),
                            expected.len()
                        );
                        eprintln!(
                            "soak: {}: {} differs: {last}",
                            self.name,
                            file.path.display()
                        );
                        last
                    }
                    Err(e) => format!("{e:#}"),
                };
                if Instant::now() >= deadline {
                    let what = format!(
                        "{}: {} ({} bytes fsynced) not read back: {last}",
                        self.name,
                        file.path.display(),
                        file.len
                    );
                    self.tracker.lost(what.clone());
                    bail!(what);
                }
                self.tracker.rpc_error("read", "io");
                tokio::time::sleep(FIRST_PAUSE).await;
                self.mount(deadline).await?;
            }
        }
        Ok(())
    }

    async fn snapshot(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let name = format!("{}-snap", self.name);
        self.snapshot_name = Some(name.clone());
        let volume = self.volume()?;
        let id = self
            .rpc("CreateSnapshot", Plane::Controller, deadline, |mut k| {
                let (volume, name) = (volume.clone(), name.clone());
                async move { k.snapshot(&volume, &name, RPC_TIMEOUT).await }
            })
            .await?;
        self.snapshot_id = Some(id);
        Ok(())
    }

    async fn delete_snapshot(&mut self, deadline: Instant) -> anyhow::Result<()> {
        if self.snapshot_id.is_none() && self.snapshot_name.is_some() {
            // Like the snapshotter: the same CreateSnapshot again learns the ID.
            self.snapshot(deadline).await?;
        }
        let Some(id) = self.snapshot_id.clone() else {
            return Ok(());
        };
        self.rpc("DeleteSnapshot", Plane::Controller, deadline, |mut k| {
            let id = id.clone();
            async move { k.delete_snapshot(&id).await }
        })
        .await?;
        self.snapshot_id = None;
        self.snapshot_name = None;
        Ok(())
    }

    /// Everything in reverse, each step retried, whatever state the forward path reached.
    async fn teardown(&mut self, deadline: Instant) -> anyhow::Result<()> {
        if !self.create_sent {
            return Ok(());
        }
        if self.volume.is_none() {
            // Like the provisioner: the same CreateVolume again learns the ID, to delete it.
            self.create(deadline).await?;
        }
        self.delete_snapshot(deadline).await?;
        let volume = self.volume()?;
        if self.mount_sent {
            self.rpc("NodeUnpublishVolume", Plane::Node, deadline, |mut k| {
                let volume = volume.clone();
                async move { k.unpublish(&volume).await }
            })
            .await?;
            if self.config.stage {
                self.rpc("NodeUnstageVolume", Plane::Node, deadline, |mut k| {
                    let volume = volume.clone();
                    async move { k.unstage(&volume).await }
                })
                .await?;
            }
        }
        if self.attach_sent {
            self.rpc(
                "ControllerUnpublishVolume",
                Plane::Controller,
                deadline,
                |mut k| {
                    let volume = volume.clone();
                    async move { k.detach(&volume).await }
                },
            )
            .await?;
        }
        self.rpc("DeleteVolume", Plane::Controller, deadline, |mut k| {
            let volume = volume.clone();
            async move { k.delete(&volume).await }
        })
        .await
    }
}
