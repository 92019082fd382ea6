//! A [`Mounter`] that records every state-changing operation in the metrics registry:
//! `tencentcloud_csi_mount_operation_duration_seconds{op, outcome}` (a histogram, so its `_count` is the number of
//! operations) and `tencentcloud_csi_mount_operation_errors_total{op}`. Reads of the mount table and stats are not
//! counted: they are frequent and cheap, and their failures surface as the operations' failures.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{DeviceContent, FormatParams, FsStats, MountError, MountInfo, Mounter};
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct MeteredMounter<M> {
    inner: M,
    metrics: Arc<Metrics>,
}

impl<M: Mounter> MeteredMounter<M> {
    pub fn new(inner: M, metrics: Arc<Metrics>) -> Self {
        MeteredMounter { inner, metrics }
    }

    fn record<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, MountError>,
    ) -> Result<T, MountError> {
        let started = Instant::now();
        let result = f();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_broken_mount() => "broken_mount",
            Err(MountError::Command(_)) => "command_failed",
            Err(_) => "error",
        };
        self.metrics.observe(
            "tencentcloud_csi_mount_operation_duration_seconds",
            "Mount-layer operations (mount, bind, unmount, probe, format, grow) by outcome.",
            &[("op", op), ("outcome", outcome)],
            started.elapsed().as_secs_f64(),
        );
        if result.is_err() {
            self.metrics.inc(
                "tencentcloud_csi_mount_operation_errors_total",
                "Mount-layer operations that failed, by operation.",
                &[("op", op)],
            );
        }
        result
    }
}

impl<M: Mounter> Mounter for MeteredMounter<M> {
    fn mounts(&self) -> Result<Vec<MountInfo>, MountError> {
        self.inner.mounts()
    }

    fn mount_at(&self, path: &Path) -> Result<Option<MountInfo>, MountError> {
        self.inner.mount_at(path)
    }

    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        options: &[String],
    ) -> Result<(), MountError> {
        self.record("mount", || {
            self.inner.mount(source, target, fs_type, options)
        })
    }

    fn bind(
        &self,
        source: &Path,
        target: &Path,
        read_only: bool,
        options: &[String],
    ) -> Result<(), MountError> {
        self.record("bind", || {
            self.inner.bind(source, target, read_only, options)
        })
    }

    fn unmount(&self, target: &Path) -> Result<bool, MountError> {
        self.record("unmount", || self.inner.unmount(target))
    }

    fn probe(&self, device: &Path) -> Result<DeviceContent, MountError> {
        self.record("probe", || self.inner.probe(device))
    }

    fn format(&self, params: &FormatParams) -> Result<(), MountError> {
        self.record("format", || self.inner.format(params))
    }

    fn grow(&self, device: &Path, mount_path: &Path, fs_type: &str) -> Result<(), MountError> {
        self.record("grow", || self.inner.grow(device, mount_path, fs_type))
    }

    fn fs_size(&self, device: &Path, fs_type: &str) -> Result<Option<u64>, MountError> {
        self.inner.fs_size(device, fs_type)
    }

    fn device_size(&self, device: &Path) -> Result<u64, MountError> {
        self.inner.device_size(device)
    }

    fn stats(&self, path: &Path) -> Result<FsStats, MountError> {
        self.inner.stats(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::fake::{FakeMounter, FakeOp, InjectedFailure};

    #[test]
    fn operations_and_failures_are_counted_by_op() {
        let metrics = Metrics::new();
        let fake = FakeMounter::new().without_path_checks();
        fake.add_device(
            "/dev/vdb",
            1 << 30,
            DeviceContent::Filesystem("ext4".into()),
        );
        fake.fail_nth(FakeOp::Bind, 1, InjectedFailure::Errno(1));
        let mounter = MeteredMounter::new(fake, Arc::clone(&metrics));
        mounter
            .mount(Path::new("/dev/vdb"), Path::new("/mnt/a"), "ext4", &[])
            .unwrap();
        assert!(
            mounter
                .bind(Path::new("/mnt/a"), Path::new("/mnt/b"), false, &[])
                .is_err()
        );
        assert!(mounter.unmount(Path::new("/mnt/a")).unwrap());
        let text = metrics.render();
        for series in [
            r#"tencentcloud_csi_mount_operation_duration_seconds_count{op="mount",outcome="ok"} 1"#,
            r#"tencentcloud_csi_mount_operation_duration_seconds_count{op="unmount",outcome="ok"} 1"#,
            r#"tencentcloud_csi_mount_operation_errors_total{op="bind"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        assert_eq!(
            metrics.counter(
                "tencentcloud_csi_mount_operation_errors_total",
                &[("op", "mount")]
            ),
            0
        );
    }
}
