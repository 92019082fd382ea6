//! csi-goosefs's part of the FUSE node service (the service itself is csi-cos's): what the FUSE
//! host runs for a dataset.

use std::collections::HashMap;
use std::path::PathBuf;

use csi_common::csi::pb;
use csi_cos::error::{Error, Result};
use csi_cos::node::keys::PublishKeys;
use csi_cos::node::{FusePlan, Planner, mount_group};
use csi_cos::params::fingerprint;

use crate::params::Dataset;

/// The node's cache: one directory and capacity for every dataset mounted here, so two mounts
/// of one dataset share its blocks.
#[derive(Debug, Clone)]
pub struct GooseFsPlanner {
    pub cache_dir: PathBuf,
    pub cache_capacity: u64,
}

/// A mount flag of a cluster-mode PV (`allow_other`, `direct_io`, `max_read=131072`): a word, and
/// an optional plain value; never `suid` or `dev`, which would let whoever writes the dataset
/// plant setuid binaries or device nodes on the node.
fn check_flag(flag: &str) -> Result<()> {
    let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
    if matches!(name, "suid" | "dev") {
        return Err(Error::InvalidArgument(format!(
            "mount option {flag:?} is refused: a FUSE mount must not honour setuid binaries or device files"
        )));
    }
    let plain = |s: &str, extra: &[char]| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
    };
    if !name.is_empty() && plain(name, &[]) && plain(value, &['.', '/', '-', ':']) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "mount option {flag:?} is not a plain `name[=value]` option"
        )))
    }
}

impl Planner for GooseFsPlanner {
    /// Only cache mode runs cos-fuse on a bucket; the GooseFS client of cluster mode takes none.
    fn needs_keys(&self, context: &HashMap<String, String>) -> bool {
        !matches!(Dataset::from_context(context), Ok(Dataset::Cluster { .. }))
    }

    fn plan(
        &self,
        context: &HashMap<String, String>,
        keys: &PublishKeys<'_>,
        capability: &pb::VolumeCapability,
    ) -> Result<FusePlan> {
        match Dataset::from_context(context)? {
            Dataset::Cache {
                mut source,
                preload,
                read_only,
            } => {
                if let Some(group) = mount_group(capability) {
                    source.options.grant_group(group)?;
                }
                if read_only {
                    source.options.0.insert("ro".to_owned(), None);
                }
                let mut args = source.fuse_args();
                let secret = keys.hand_over(&mut args)?;
                args.extend([
                    "--cache-dir".to_owned(),
                    self.cache_dir.display().to_string(),
                    "--cache-capacity".to_owned(),
                    self.cache_capacity.to_string(),
                ]);
                for prefix in preload {
                    args.extend(["--preload".to_owned(), prefix]);
                }
                Ok(FusePlan {
                    kind: "cos-fuse".to_owned(),
                    fingerprint: fingerprint(&args),
                    args,
                    secret,
                })
            }
            Dataset::Cluster {
                goosefs_path,
                java_options,
            } => {
                let flags = match &capability.access_type {
                    Some(pb::volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
                    _ => Vec::new(),
                };
                flags.iter().try_for_each(|f| check_flag(f))?;
                let mut args = vec!["--goosefs-path".to_owned(), goosefs_path];
                for option in java_options {
                    args.extend(["--java-option".to_owned(), option]);
                }
                if !flags.is_empty() {
                    args.extend(["-o".to_owned(), flags.join(",")]);
                }
                Ok(FusePlan {
                    kind: "goosefs-fuse".to_owned(),
                    fingerprint: fingerprint(&args),
                    args,
                    secret: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capability(flags: &[&str]) -> pb::VolumeCapability {
        pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode {
                mode: pb::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
            }),
            access_type: Some(pb::volume_capability::AccessType::Mount(
                pb::volume_capability::MountVolume {
                    mount_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
                    ..Default::default()
                },
            )),
        }
    }

    fn planner() -> GooseFsPlanner {
        GooseFsPlanner {
            cache_dir: "/var/cache/csi-goosefs".into(),
            cache_capacity: 1 << 30,
        }
    }

    #[test]
    fn cache_mode_runs_cos_fuse_over_the_node_cache_read_only() {
        let context = HashMap::from([
            (
                "url".to_owned(),
                "http://cos.ap-guangzhou.myqcloud.com".to_owned(),
            ),
            ("bucket".to_owned(), "data-1250000000".to_owned()),
            ("preload".to_owned(), "train".to_owned()),
        ]);
        let secrets = HashMap::from([
            ("SecretId".to_owned(), "AKID".to_owned()),
            ("SecretKey".to_owned(), "key".to_owned()),
        ]);
        let plan = planner()
            .plan(&context, &PublishKeys::Secret(&secrets), &capability(&[]))
            .unwrap();
        assert_eq!(plan.kind, "cos-fuse");
        let args = plan.args.join(" ");
        for part in [
            "--cache-dir /var/cache/csi-goosefs",
            "--cache-capacity 1073741824",
            "--preload train",
            "-o ro",
        ] {
            assert!(args.contains(part), "{part} missing from {args}");
        }
        assert!(
            !args.contains("key"),
            "no secret on the command line: {args}"
        );
    }

    #[test]
    fn cluster_mode_runs_the_configured_client_with_checked_flags() {
        let context = HashMap::from([
            ("goosefsPath".to_owned(), "/ns-1251707795".to_owned()),
            ("javaOptions".to_owned(), "-Xmx8g".to_owned()),
        ]);
        let plan = planner()
            .plan(
                &context,
                &PublishKeys::Secret(&HashMap::new()),
                &capability(&["allow_other", "direct_io"]),
            )
            .unwrap();
        assert_eq!(plan.kind, "goosefs-fuse");
        assert_eq!(
            plan.args,
            [
                "--goosefs-path",
                "/ns-1251707795",
                "--java-option",
                "-Xmx8g",
                "-o",
                "allow_other,direct_io"
            ]
        );
        assert!(plan.secret.is_none());
        assert!(
            planner()
                .plan(
                    &context,
                    &PublishKeys::Secret(&HashMap::new()),
                    &capability(&["allow_other;reboot"])
                )
                .is_err()
        );
    }

    #[test]
    fn cluster_mode_refuses_suid_and_dev() {
        let context = HashMap::from([("goosefsPath".to_owned(), "/ns".to_owned())]);
        for flag in ["suid", "dev", "suid=1"] {
            let err = planner()
                .plan(
                    &context,
                    &PublishKeys::Secret(&HashMap::new()),
                    &capability(&["allow_other", flag]),
                )
                .unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("{flag:?}")) && message.contains("setuid"),
                "{flag}: {message}"
            );
        }
        for harmless in ["nosuid", "nodev", "ro"] {
            assert!(
                planner()
                    .plan(
                        &context,
                        &PublishKeys::Secret(&HashMap::new()),
                        &capability(&[harmless])
                    )
                    .is_ok(),
                "{harmless}"
            );
        }
    }
}
