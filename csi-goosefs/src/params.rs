//! What a GooseFS volume is. Two modes, told apart by the attributes:
//!
//! - **cache** (ours, the default): a COS source (`url`, `bucket`, `path`, as for csi-cos) served by
//!   `cos-fuse` through the node's shared block cache, read-only unless `readOnly: "false"`, with
//!   `preload` (comma-separated prefixes under the volume's root) warmed in the background;
//! - **cluster** (TKE's GooseFS driver): `goosefsPath` in a GooseFS namespace and `javaOptions`
//!   with the master addresses, served by the GooseFS FUSE client the FUSE host was configured
//!   with (`--allow-program goosefs-fuse=PATH`), run as
//!   `PROGRAM --goosefs-path P [--java-option OPT]... [-o FLAGS] TARGET`.

use std::collections::HashMap;

use csi_cos::params::{CosSource, ParamError, clean_prefix};

fn bad(message: impl Into<String>) -> ParamError {
    ParamError(message.into())
}

fn get<'a>(map: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    map.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// StorageClass parameters (prefix-per-PV) handed to the node as attributes.
pub const NODE_PARAMETERS: &[&str] = &[
    "additional_args",
    "mounter",
    "dbglevel",
    "preload",
    "readOnly",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dataset {
    Cache {
        source: CosSource,
        /// Prefixes, relative to the volume's root, to warm after mounting.
        preload: Vec<String>,
        read_only: bool,
    },
    Cluster {
        goosefs_path: String,
        java_options: Vec<String>,
    },
}

/// One JVM option of `javaOptions`: `-Dkey=value` or `-X...`; nothing a shell would interpret
/// matters, since it is passed as one argument, but anything else is refused by name.
fn check_java_option(option: &str) -> Result<(), ParamError> {
    let property = option.strip_prefix("-D").is_some_and(|rest| {
        let key = rest.split('=').next().unwrap_or("");
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    });
    let jvm = option.starts_with("-X") && option.len() > 2;
    if property || jvm {
        Ok(())
    } else {
        Err(bad(format!(
            "javaOptions: {option:?} is not a -Dkey=value property or an -X option"
        )))
    }
}

impl Dataset {
    pub fn from_context(context: &HashMap<String, String>) -> Result<Self, ParamError> {
        if let Some(path) = get(context, "goosefsPath") {
            if !path.starts_with('/') || path.split('/').any(|s| s == "..") {
                return Err(bad(format!(
                    "goosefsPath {path:?} must be an absolute path without `..`"
                )));
            }
            let java_options: Vec<String> = get(context, "javaOptions")
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            java_options.iter().try_for_each(|o| check_java_option(o))?;
            return Ok(Dataset::Cluster {
                goosefs_path: path.to_owned(),
                java_options,
            });
        }
        let source = CosSource::from_context(context)?;
        let preload = get(context, "preload")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| clean_prefix(p, "preload"))
            .collect::<Result<Vec<_>, _>>()?;
        let read_only = match get(context, "readOnly").unwrap_or("true") {
            "true" => true,
            "false" => false,
            other => {
                return Err(bad(format!("readOnly {other:?} must be true or false")));
            }
        };
        Ok(Dataset::Cache {
            source,
            preload,
            read_only,
        })
    }
}

/// A size such as `20GiB`, `500MiB`, `1T` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 20GiB"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (KiB, MiB, GiB, TiB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is zero or too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tke_goosefs_pvs_are_cluster_mode() {
        let dataset = Dataset::from_context(&context(&[
            ("goosefsPath", "/borgerli-1251707795"),
            (
                "javaOptions",
                "-Dgoosefs.master.embedded.journal.addresses=172.21.112.141:9202,172.21.112.133:9202 -Xms4g -Xmx8g -XX:MaxDirectMemorySize=8g -XX:+UseG1GC -Dgoosefs.fuse.web.enabled=true -Dgoosefs.fuse.web.port=9213",
            ),
        ]))
        .unwrap();
        let Dataset::Cluster { java_options, .. } = dataset else {
            panic!("not cluster mode")
        };
        assert_eq!(java_options.len(), 7);
        for bad_options in ["-Dx=1 ; rm -rf /", "-Dx=1 $(id)", "--add-opens=x", "-D=1"] {
            let err = Dataset::from_context(&context(&[
                ("goosefsPath", "/x"),
                ("javaOptions", bad_options),
            ]))
            .unwrap_err();
            assert!(err.0.contains("javaOptions"), "{bad_options}: {err}");
        }
        assert!(Dataset::from_context(&context(&[("goosefsPath", "x/../y")])).is_err());
    }

    #[test]
    fn cos_datasets_are_read_only_by_default_and_preload_prefixes_are_clean() {
        let base = [
            ("url", "http://cos.ap-guangzhou.myqcloud.com"),
            ("bucket", "data-1250000000"),
            ("preload", "train/, val ,"),
        ];
        let Dataset::Cache {
            preload, read_only, ..
        } = Dataset::from_context(&context(&base)).unwrap()
        else {
            panic!("not cache mode")
        };
        assert_eq!(preload, ["train", "val"]);
        assert!(read_only);
        let mut rw = context(&base);
        rw.insert("readOnly".into(), "false".into());
        assert!(matches!(
            Dataset::from_context(&rw).unwrap(),
            Dataset::Cache {
                read_only: false,
                ..
            }
        ));
        let mut escaping = context(&base);
        escaping.insert("preload".into(), "../secrets".into());
        assert!(Dataset::from_context(&escaping).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "GiB", "0", "12PB", "-1G", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
