//! The flags of Tencent's Go drivers, read as ours, so their DaemonSet and Deployment specs start
//! our binaries unchanged. Go's `flag` package (and klog's flags on it) takes `-name` and
//! `--name`, `=value` or the value as the next argument, and booleans bare or as `=true|false`.
//!
//! Every spelling their manifests and `main.go` files use is translated before clap sees the
//! arguments: renamed to our flag, folded into one (`--v=5` is `-v`, `--metric_port` is
//! `--metrics-address`), or dropped with a note the binary logs once logging is up (a flag whose
//! job we do differently, or not at all). Anything else is left for clap, which refuses an unknown
//! flag with its name. Ours keep working: a translation never applies to a flag of ours.

use std::ffi::OsString;

/// One old flag and what it becomes.
#[derive(Debug, Clone, Copy)]
enum Old {
    /// Renamed: its value (or its bare form) goes to this flag of ours.
    Rename(&'static str),
    /// klog's verbosity: `--v=N` becomes `-v` (debug) from 4, `-vv` (trace) from 6.
    Verbosity,
    /// A Go boolean we have no use for (its value, if any, is attached with `=`).
    DropBool(&'static str),
    /// A flag with a value we have no use for: dropped with its value, and the note says why.
    DropValue(&'static str),
    /// `--component_type=controller|node`: our `--mode`.
    ComponentType,
    /// `--enable_metrics_server[=bool]`: metrics on the old default port unless `false`.
    MetricsEnabled,
    /// `--metric_port=N`: our `--metrics-address=0.0.0.0:N`.
    MetricsPort,
}

/// The old flags, by the name Go's flag package knew them under (case matters, as it did there).
const OLD_FLAGS: &[(&str, Old)] = &[
    ("v", Old::Verbosity),
    (
        "logtostderr",
        Old::DropBool("our logs always go to standard error"),
    ),
    (
        "alsologtostderr",
        Old::DropBool("our logs always go to standard error"),
    ),
    ("nodeID", Old::Rename("--node-id")),
    ("nodeid", Old::Rename("--node-id")),
    ("drivername", Old::Rename("--driver-name")),
    ("zone", Old::Rename("--node-zone")),
    ("metadata_endpoint", Old::Rename("--metadata-endpoint")),
    ("volume_attach_limit", Old::Rename("--max-volumes-per-node")),
    ("component_type", Old::ComponentType),
    ("enable_metrics_server", Old::MetricsEnabled),
    ("metric_port", Old::MetricsPort),
    (
        "cbs_url",
        Old::DropValue("set --cloud-endpoint (a template with {service}) for private clouds"),
    ),
    (
        "cfs_url",
        Old::DropValue("set --cloud-endpoint (a template with {service}) for private clouds"),
    ),
    (
        "cvm_url",
        Old::DropValue("set --cloud-endpoint (a template with {service}) for private clouds"),
    ),
    (
        "tag_url",
        Old::DropValue("set --cloud-endpoint (a template with {service}) for private clouds"),
    ),
    (
        "master",
        Old::DropValue("the API server's address comes from --kubeconfig or the service account"),
    ),
    (
        "time-interval",
        Old::DropValue("disk tags are not synchronised with the cluster's"),
    ),
    (
        "environment_type",
        Old::DropValue("the same binary serves every environment"),
    ),
];

/// The old metrics server's port when `--enable_metrics_server` was on and no port given.
const OLD_METRICS_PORT: &str = "9099";

/// The arguments as our parser reads them, and what to log about the old ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translated {
    pub args: Vec<OsString>,
    /// One line per old flag dropped, naming it and why.
    pub notes: Vec<String>,
}

/// A bad old flag: its value cannot be read the way the old binary read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct LegacyFlagError {
    pub flag: String,
    pub reason: String,
}

/// Translates `args` (the program name first) from the old drivers' spellings to ours.
pub fn translate(args: impl IntoIterator<Item = OsString>) -> Result<Translated, LegacyFlagError> {
    let mut args = args.into_iter().peekable();
    let mut out = Translated::default();
    out.args.extend(args.next());
    let mut metrics: Option<bool> = None;
    let mut metrics_port: Option<String> = None;
    while let Some(arg) = args.next() {
        let Some((old, name, value)) = arg.to_str().and_then(old_flag) else {
            out.args.push(go_single_dash(arg));
            continue;
        };
        // A bare `-v` is ours (a count) unless a number follows, as in Go's `-v 5`.
        let number_follows = args
            .peek()
            .and_then(|next| next.to_str())
            .is_some_and(|next| next.parse::<u8>().is_ok());
        if matches!(old, Old::Verbosity) && value.is_none() && !number_follows {
            out.args.push(arg);
            continue;
        }
        // A flag that takes a value takes the next argument when none is attached.
        let mut value_of = |value: Option<String>| -> Result<String, LegacyFlagError> {
            match value {
                Some(value) => Ok(value),
                None => args
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or_else(|| LegacyFlagError {
                        flag: format!("--{name}"),
                        reason: "needs a value".into(),
                    }),
            }
        };
        match old {
            Old::Rename(ours) => {
                let value = value_of(value)?;
                out.args.push(format!("{ours}={value}").into());
            }
            Old::Verbosity => {
                let value = value_of(value)?;
                let level: u8 = value.parse().map_err(|_| LegacyFlagError {
                    flag: "--v".into(),
                    reason: format!("{value:?} is not a level (a number, as in --v=5)"),
                })?;
                match level {
                    0..=3 => {}
                    4 | 5 => out.args.push("-v".into()),
                    _ => out.args.push("-vv".into()),
                }
            }
            Old::DropBool(why) => {
                go_bool(name, value.as_deref())?;
                out.notes
                    .push(format!("--{name} is accepted and ignored: {why}"));
            }
            Old::DropValue(why) => {
                let value = value_of(value)?;
                out.notes
                    .push(format!("--{name}={value} is accepted and ignored: {why}"));
            }
            Old::ComponentType => {
                let value = value_of(value)?;
                let mode = match value.as_str() {
                    "controller" => "controller",
                    "node" => "node",
                    "" => "all",
                    other => {
                        return Err(LegacyFlagError {
                            flag: "--component_type".into(),
                            reason: format!("{other:?} is neither controller nor node"),
                        });
                    }
                };
                out.args.push(format!("--mode={mode}").into());
            }
            Old::MetricsEnabled => metrics = Some(go_bool(name, value.as_deref())?),
            Old::MetricsPort => {
                let value = value_of(value)?;
                value.parse::<u16>().map_err(|_| LegacyFlagError {
                    flag: "--metric_port".into(),
                    reason: format!("{value:?} is not a port"),
                })?;
                metrics_port = Some(value);
            }
        }
    }
    match (metrics, metrics_port) {
        (Some(false), port) => out.notes.push(format!(
            "--enable_metrics_server=false{}: metrics stay off",
            port.map(|p| format!(" (and --metric_port={p})"))
                .unwrap_or_default()
        )),
        (Some(true), port) | (None, port @ Some(_)) => {
            let port = port.as_deref().unwrap_or(OLD_METRICS_PORT);
            out.args
                .push(format!("--metrics-address=0.0.0.0:{port}").into());
        }
        (None, None) => {}
    }
    Ok(out)
}

/// The old flag `arg` names, with its name and attached value; `None` for anything else
/// (ours, a value, a positional).
fn old_flag(arg: &str) -> Option<(Old, &'static str, Option<String>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let (name, value) = match body.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (body, None),
    };
    OLD_FLAGS
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(old, kind)| (*kind, *old, value))
}

/// Go's `-name[=value]` for a flag whose name we share (`-endpoint`, `-region`) is our
/// `--name[=value]`; short flags of ours (`-v`, `-vv`) and negative numbers stay as they are.
fn go_single_dash(arg: OsString) -> OsString {
    let Some(text) = arg.to_str() else {
        return arg;
    };
    let Some(body) = text.strip_prefix('-').filter(|b| !b.starts_with('-')) else {
        return arg;
    };
    let name = body.split_once('=').map_or(body, |(name, _)| name);
    let long = name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.chars().all(|c| c == 'v');
    if long { format!("-{text}").into() } else { arg }
}

/// A Go boolean flag's value: bare is true.
fn go_bool(name: &str, value: Option<&str>) -> Result<bool, LegacyFlagError> {
    match value {
        None => Ok(true),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(LegacyFlagError {
            flag: format!("--{name}"),
            reason: format!("{other:?} is not a boolean"),
        }),
    }
}

/// The process's arguments, translated, then parsed by `C`; exits with clap's message (or the
/// old flag's) on bad input, as `C::parse()` would.
pub fn parse<C: clap::Parser>() -> (C, Vec<String>) {
    match translate(std::env::args_os()) {
        Ok(translated) => (C::parse_from(translated.args), translated.notes),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Vec<String>, Vec<String>), LegacyFlagError> {
        let argv = std::iter::once("driver")
            .chain(args.iter().copied())
            .map(OsString::from);
        translate(argv).map(|t| {
            (
                t.args[1..]
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                t.notes,
            )
        })
    }

    #[test]
    fn go_spellings_become_ours() {
        let (args, notes) = run(&[
            "-v=5",
            "--logtostderr=true",
            "--endpoint=unix:///csi/csi.sock",
            "--component_type",
            "node",
            "-nodeID=ins-1",
            "--zone",
            "ap-guangzhou-3",
            "--volume_attach_limit=10",
            "--metadata_endpoint=http://m",
            "--cbs_url=cbs.tce",
        ])
        .unwrap();
        assert_eq!(
            args,
            [
                "-v",
                "--endpoint=unix:///csi/csi.sock",
                "--mode=node",
                "--node-id=ins-1",
                "--node-zone=ap-guangzhou-3",
                "--max-volumes-per-node=10",
                "--metadata-endpoint=http://m",
            ]
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("--logtostderr is accepted and ignored"));
        assert!(notes[1].contains("--cbs_url=cbs.tce") && notes[1].contains("--cloud-endpoint"));
    }

    #[test]
    fn verbosity_levels_map_to_ours() {
        for (v, ours) in [
            ("0", None),
            ("3", None),
            ("4", Some("-v")),
            ("5", Some("-v")),
            ("6", Some("-vv")),
            ("10", Some("-vv")),
        ] {
            let (args, _) = run(&[&format!("--v={v}")]).unwrap();
            assert_eq!(args.first().map(String::as_str), ours, "--v={v}");
        }
        assert!(
            run(&["--v=high"])
                .unwrap_err()
                .reason
                .contains("not a level")
        );
        let (args, _) = run(&["-endpoint", "unix:///x", "-region=r"]).unwrap();
        assert_eq!(
            args,
            ["--endpoint", "unix:///x", "--region=r"],
            "Go's single dash"
        );
        let (args, _) = run(&["-v", "5"]).unwrap();
        assert_eq!(args, ["-v"], "Go's -v 5");
        let (args, _) = run(&["-v", "--mode", "node"]).unwrap();
        assert_eq!(args, ["-v", "--mode", "node"], "our -v");
    }

    #[test]
    fn the_old_metrics_server_flags_become_one_address() {
        let (args, _) = run(&["--enable_metrics_server"]).unwrap();
        assert_eq!(args, ["--metrics-address=0.0.0.0:9099"]);
        let (args, _) = run(&["--metric_port=9100"]).unwrap();
        assert_eq!(args, ["--metrics-address=0.0.0.0:9100"]);
        let (args, notes) =
            run(&["--enable_metrics_server=false", "--metric_port", "9100"]).unwrap();
        assert!(args.is_empty());
        assert!(notes[0].contains("metrics stay off"), "{notes:?}");
        assert!(run(&["--metric_port=http"]).is_err());
        assert!(
            run(&["--logtostderr=maybe"])
                .unwrap_err()
                .reason
                .contains("boolean")
        );
    }

    #[test]
    fn our_own_flags_and_values_are_left_alone() {
        let ours = [
            "--node-id=ins-1",
            "-vv",
            "--mode",
            "node",
            "--metrics-address=:9090",
            "--verbose",
            "value-with--v=5-inside",
            "-1",
            "-vvv",
        ];
        let (args, notes) = run(&ours).unwrap();
        assert_eq!(args, ours);
        assert!(notes.is_empty());
        assert!(
            run(&["--component_type=both"])
                .unwrap_err()
                .reason
                .contains("neither"),
            "a value the old binary would not know"
        );
    }
}
