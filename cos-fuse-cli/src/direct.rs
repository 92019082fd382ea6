//! `cos-fuse BUCKET[:/prefix] MOUNTPOINT [-o OPTIONS]`, the form users already mount object
//! storage with (cosfs, s3fs) and the one mount.fuse3 runs for an /etc/fstab entry
//! (`bucket:/prefix /mnt fuse.cos-fuse _netdev,allow_other 0 0`, or `cos-fuse#bucket /mnt fuse
//! …`: mount.fuse3 strips `cos-fuse#` and execs `cos-fuse SOURCE MOUNTPOINT -o OPTIONS`).
//!
//! This module only parses: the source, and the endpoint from `-o url=` or `COS_ENDPOINT`.
//! Mounting, going to the background and the keys are the program's.

use std::path::PathBuf;

use clap::Parser;
use cos_fuse::options;
use csi_common::cli::LogFormat;

/// The environment variable naming the endpoint when `-o url=` does not.
pub const ENDPOINT_ENV: &str = "COS_ENDPOINT";

#[derive(Debug, Parser)]
#[command(
    name = "cos-fuse",
    version = crate::VERSION,
    about = "Mount a COS bucket (or a prefix of it): cos-fuse BUCKET[:/PREFIX] MOUNTPOINT -o url=ENDPOINT. \
             Also `cos-fuse mount --help` and `cos-fuse host --help`."
)]
pub struct DirectArgs {
    /// `bucket-appid`, or `bucket-appid:/prefix` to mount only that prefix.
    pub source: String,

    /// Where to mount.
    pub mountpoint: PathBuf,

    /// Mount options, cosfs style (repeatable, or comma-separated): `url=ENDPOINT` and the
    /// options `cos-fuse mount --help` lists; /etc/fstab's (`_netdev`, `nofail`, …) are taken.
    #[arg(short = 'o', value_delimiter = ',')]
    pub options: Vec<String>,

    /// Stay in the foreground (default: go to the background once the mount answers).
    #[arg(short = 'f', long)]
    pub foreground: bool,

    /// The SigV4 region when the endpoint does not name one.
    #[arg(long, default_value = "")]
    pub region: String,

    /// error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, default_value = "info", value_parser = crate::logging::parse_log_level)]
    pub log_level: String,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// In the background, append the log here (default: discarded).
    #[arg(long)]
    pub log_file: Option<PathBuf>,

    /// The instance metadata service, for the CVM role's keys.
    #[arg(long, default_value = tcloud::metadata::DEFAULT_METADATA_ENDPOINT, hide = true)]
    pub metadata_endpoint: String,
}

/// A mount asked for in the direct form, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMount {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: String,
}

/// `bucket`, `bucket:/a/b` or `bucket:a/b` (a `program#` before it, as fstab's `fuse` type
/// writes it, is dropped): the bucket and the prefix (`""` for the whole bucket).
pub fn parse_source(source: &str) -> Result<(String, String), String> {
    let source = source.rsplit_once('#').map_or(source, |(_, s)| s);
    let (bucket, prefix) = source.split_once(':').unwrap_or((source, ""));
    if bucket.is_empty() || bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
        return Err(format!(
            "{source:?} is not BUCKET or BUCKET:/PREFIX (e.g. data-1250000000:/logs)"
        ));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

impl DirectArgs {
    /// The bucket, prefix and endpoint (`-o url=`, else `env(COS_ENDPOINT)`).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<DirectMount, String> {
        let (bucket, prefix) = parse_source(&self.source)?;
        let settings =
            options::parse(self.options.iter().map(String::as_str)).map_err(|e| e.to_string())?;
        let endpoint = settings
            .endpoint
            .or_else(|| env(ENDPOINT_ENV))
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "no endpoint: give -o url=https://cos.REGION.myqcloud.com or set {ENDPOINT_ENV}"
                )
            })?;
        Ok(DirectMount {
            bucket,
            prefix,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_a_bucket_and_maybe_a_prefix() {
        let ok = |s: &str| parse_source(s).unwrap();
        assert_eq!(ok("data-125"), ("data-125".into(), "".into()));
        assert_eq!(
            ok("data-125:/logs/a"),
            ("data-125".into(), "/logs/a".into())
        );
        assert_eq!(ok("data-125:logs"), ("data-125".into(), "logs".into()));
        assert_eq!(ok("data-125:/"), ("data-125".into(), "/".into()));
        assert_eq!(ok("cos-fuse#data-125:/p"), ("data-125".into(), "/p".into()));
        for bad in ["", ":/p", "a/b", "a b", "cos-fuse#"] {
            assert!(parse_source(bad).is_err(), "{bad:?}");
        }
    }

    fn args(argv: &[&str]) -> Result<DirectArgs, clap::Error> {
        DirectArgs::try_parse_from(std::iter::once("cos-fuse").chain(argv.iter().copied()))
    }

    #[test]
    fn the_mount_helper_calling_convention_parses() {
        // What mount.fuse3 runs for an fstab entry.
        let a = args(&[
            "b-1:/p",
            "/mnt",
            "-o",
            "rw,allow_other,uid=1000,url=http://127.0.0.1:9,dev,suid",
        ])
        .unwrap();
        assert!(!a.foreground);
        let m = a.resolve(|_| None).unwrap();
        assert_eq!(
            m,
            DirectMount {
                bucket: "b-1".into(),
                prefix: "/p".into(),
                endpoint: "http://127.0.0.1:9".into()
            }
        );
        let a = args(&["-f", "b-1", "/mnt", "-o", "allow_other", "-o", "ro"]).unwrap();
        assert!(a.foreground);
        assert_eq!(a.options, ["allow_other", "ro"]);
        let env = |name: &str| (name == ENDPOINT_ENV).then(|| "http://env:1".to_owned());
        assert_eq!(a.resolve(env).unwrap().endpoint, "http://env:1");
        let err = a.resolve(|_| None).unwrap_err();
        assert!(err.contains("url=") && err.contains(ENDPOINT_ENV), "{err}");
        let bad = args(&["b-1", "/mnt", "-o", "nosuchoption"]).unwrap();
        assert!(bad.resolve(env).unwrap_err().contains("nosuchoption"));
        assert!(args(&["b-1", "/mnt", "--log-level", "loud"]).is_err());
        assert!(args(&["b-1"]).is_err());
    }
}
