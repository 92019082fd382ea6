//! What a GooseFS volume is. Two modes, told apart by the attributes:
//!
//! - **cache** (ours, the default): a COS source (`url`, `bucket`, `path`, as for csi-cos) served by
//!   `cos-fuse` through the node's shared block cache, read-only unless `readOnly: "false"`, with
//!   `preload` (comma-separated prefixes under the volume's root) warmed in the background;
//! - **cluster** (TKE's GooseFS driver): `goosefsPath` in a GooseFS namespace and `javaOptions`
//!   with the master addresses, served by the GooseFS FUSE client the FUSE host was configured
//!   with (`--allow-program goosefs-fuse=PATH`), run as
//!   `PROGRAM mount --goosefs-path P [--java-option OPT]... [-o FLAGS] TARGET`.

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

/// `-X` options taking a memory size (`-Xmx8g`): heap and stack bounds.
const SIZE_OPTIONS: &[&str] = &["-Xmx", "-Xms", "-Xss", "-Xmn"];

/// `-XX:NAME=` options taking a memory size: more memory bounds.
const XX_SIZE_OPTIONS: &[&str] = &[
    "MaxDirectMemorySize",
    "MaxMetaspaceSize",
    "MetaspaceSize",
    "ReservedCodeCacheSize",
];

/// `-XX:NAME=` options taking a plain number: GC tuning.
const XX_NUMBER_OPTIONS: &[&str] = &[
    "MaxGCPauseMillis",
    "ParallelGCThreads",
    "ConcGCThreads",
    "InitiatingHeapOccupancyPercent",
    "MaxRAMPercentage",
    "InitialRAMPercentage",
];

/// `-XX:+NAME` / `-XX:-NAME` switches: which collector, and what happens on running out of
/// memory (exit or crash, never a command).
const XX_SWITCHES: &[&str] = &[
    "UseG1GC",
    "UseParallelGC",
    "UseSerialGC",
    "UseConcMarkSweepGC",
    "UseZGC",
    "UseStringDeduplication",
    "UseContainerSupport",
    "ExitOnOutOfMemoryError",
    "CrashOnOutOfMemoryError",
    "AlwaysPreTouch",
];

/// `-XX:` options that run a command through `/bin/sh`: named so the refusal says why.
const XX_COMMANDS: &[&str] = &["OnError", "OnOutOfMemoryError"];

/// `8g`, `512m`, `1M`, `65536`: digits and an optional k/m/g/t unit.
fn is_size(text: &str) -> bool {
    let digits = text
        .strip_suffix(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T'])
        .unwrap_or(text);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

/// One JVM option of `javaOptions`, judged against an allow-list: memory sizes (`-Xmx`, `-Xms`,
/// `-Xss`, `-Xmn`, `-XX:MaxDirectMemorySize=`...), GC choice and tuning, exit-on-OOM switches and
/// `-Dgoosefs.*` properties with plain values. Everything else is refused by name: the JVM has
/// options that run shell commands (`-XX:OnError=`), load code (`-javaagent:`,
/// `-Xbootclasspath`) or write files (`-XX:ErrorFile=`), and other system properties change the
/// JVM's own behaviour (security manager, logging configuration fetched from a URL).
fn check_java_option(option: &str) -> Result<(), ParamError> {
    let refuse = |why: &str| Err(bad(format!("javaOptions: {option:?} {why}")));
    if let Some(property) = option.strip_prefix("-D") {
        let (key, value) = property.split_once('=').unwrap_or((property, ""));
        let plain_key = key
            .strip_prefix("goosefs.")
            .is_some_and(|rest| !rest.is_empty())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain_key {
            return refuse(
                "is refused: only goosefs.* properties (-Dgoosefs.name=value) are accepted",
            );
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ',' | ':' | '_' | '-' | '/'))
        {
            return refuse(
                "is refused: a property needs a plain value (letters, digits, . , : _ - /)",
            );
        }
        return Ok(());
    }
    if let Some(size) = SIZE_OPTIONS.iter().find_map(|p| option.strip_prefix(p)) {
        return if is_size(size) {
            Ok(())
        } else {
            refuse("is refused: its value is not a size like 8g or 512m")
        };
    }
    if let Some(xx) = option.strip_prefix("-XX:") {
        let (name, value) = xx.split_once('=').unwrap_or((xx, ""));
        if XX_COMMANDS.contains(&name) {
            return refuse("is refused: the JVM runs its value as a shell command");
        }
        if XX_SIZE_OPTIONS.contains(&name) {
            return if is_size(value) {
                Ok(())
            } else {
                refuse("is refused: its value is not a size like 8g or 512m")
            };
        }
        if XX_NUMBER_OPTIONS.contains(&name) {
            return if is_number(value) {
                Ok(())
            } else {
                refuse("is refused: its value is not a number")
            };
        }
        if let Some(switch) = xx.strip_prefix(['+', '-'])
            && XX_SWITCHES.contains(&switch)
        {
            return Ok(());
        }
    }
    refuse(
        "is not on the allow-list: memory sizes (-Xmx, -Xms, -Xss, -Xmn, -XX:MaxDirectMemorySize=...), GC choice and tuning, and -Dgoosefs.* properties",
    )
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
    fn java_options_are_an_allow_list() {
        let cluster = |options: &str| {
            Dataset::from_context(&context(&[("goosefsPath", "/x"), ("javaOptions", options)]))
        };
        for good in [
            "-Xmx8g",
            "-Xms512m",
            "-Xss1M",
            "-Xmn2G",
            "-XX:MaxDirectMemorySize=8g",
            "-XX:MaxMetaspaceSize=256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=200",
            "-XX:+ExitOnOutOfMemoryError",
            "-Dgoosefs.user.file.writetype.default=CACHE_THROUGH",
            "-Dgoosefs.master.rpc.addresses=10.0.0.1:9200,10.0.0.2:9200",
        ] {
            assert!(cluster(good).is_ok(), "{good}: {:?}", cluster(good));
        }
        for (bad, why) in [
            ("-XX:OnError=id", "as a shell command"),
            ("-XX:OnOutOfMemoryError=id", "as a shell command"),
            ("-XX:OnOutOfMemoryError=kill_%p", "as a shell command"),
            ("-Xbootclasspath/a:/tmp/evil.jar", "not on the allow-list"),
            ("-XX:+UnlockDiagnosticVMOptions", "not on the allow-list"),
            ("-XX:ErrorFile=/etc/passwd", "not on the allow-list"),
            ("-Xmx8x", "not a size"),
            ("-Xmx", "not a size"),
            ("-XX:MaxDirectMemorySize=", "not a size"),
            ("-Djava.security.manager=allow", "only goosefs.* properties"),
            (
                "-Dlog4j.configuration=http://evil/x",
                "only goosefs.* properties",
            ),
            ("-Dgoosefs.x=$(id)", "plain value"),
            ("-javaagent:/tmp/a.jar", "not on the allow-list"),
        ] {
            let err = cluster(bad).unwrap_err();
            assert!(
                err.0.contains("javaOptions") && err.0.contains(bad) && err.0.contains(why),
                "{bad}: {err}"
            );
        }
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
