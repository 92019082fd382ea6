//! Tencent's drivers' DaemonSets and Deployments start ours unchanged: the exact argument lists
//! of the driver containers in their manifests (`deploy/*/kubernetes/*.yaml` of
//! TencentCloud/kubernetes-csi-tencentcloud), with kubelet's `$(VAR)` substitutions as those
//! manifests' `env` sets them, parse into our flags and mean what they meant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use csi_common::cli::{CommonArgs, Mode};
use csi_common::csi::Endpoint;
use csi_common::legacy_flags::translate;

/// `$(ADDRESS)` in the CBS and CFS Turbo controllers.
const ADDRESS: &str = "unix:///csi/csi.sock";
/// `$(CSI_ENDPOINT)` in the CFS and CFS Turbo node plugins.
const CFS_ENDPOINT: &str = "unix://plugin/csi.sock";
/// `$(CSI_ENDPOINT)` in the COS node plugin.
const COS_ENDPOINT: &str = "unix://var/lib/kubelet/plugins/com.tencent.cloud.csi.cosfs/csi.sock";
/// `$(NODE_ID)`: `spec.nodeName` or the instance, as the manifest's env says.
const NODE: &str = "ins-xxx";

fn argv(args: &[String]) -> Vec<OsString> {
    std::iter::once("driver".to_owned())
        .chain(args.iter().cloned())
        .map(OsString::from)
        .collect()
}

/// Parses `args` as `C` after translating the old spellings; returns the common flags and notes.
fn parse<C: Parser>(
    args: &[String],
    common: impl Fn(&C) -> &CommonArgs,
) -> (CommonArgs, Vec<String>) {
    let translated = translate(argv(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let config = C::try_parse_from(&translated.args)
        .unwrap_or_else(|e| panic!("{args:?} (as {:?}): {e}", translated.args));
    (common(&config).clone(), translated.notes)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("$(ADDRESS)", ADDRESS).replace("$(NODE_ID)", NODE))
        .collect()
}

#[test]
fn cbs_controller_and_node_manifests() {
    let cases: &[(&str, &[&str], Mode)] = &[
        (
            "cbs/kubernetes/csi-controller-new.yaml",
            &[
                "--v=5",
                "--logtostderr=true",
                "--endpoint=$(ADDRESS)",
                "--component_type=controller",
            ],
            Mode::Controller,
        ),
        (
            "cbs/kubernetes/csi-controller-eks-down-18.yaml",
            &[
                "--v=5",
                "--logtostderr=true",
                "--endpoint=$(ADDRESS)",
                "--component_type=controller",
                "--region=xxx",
            ],
            Mode::Controller,
        ),
        (
            "cbs/kubernetes/csi-controller-tce.yaml",
            &[
                "--v=5",
                "--logtostderr=true",
                "--endpoint=$(ADDRESS)",
                "--component_type=controller",
                "--cbs_url=xxx",
                "--cvm_url=xxx",
                "--tag_url=xxx",
                "--metadata_endpoint=xxx",
                "--region=xxx",
                "--zone=xxx",
            ],
            Mode::Controller,
        ),
        (
            "cbs/kubernetes/csi-node-new.yaml",
            &[
                "--v=5",
                "--logtostderr=true",
                "--endpoint=unix:///csi/csi.sock",
                "--component_type=node",
            ],
            Mode::Node,
        ),
        (
            "cbs/kubernetes/csi-node-tce.yaml",
            &[
                "--v=5",
                "--logtostderr=true",
                "--endpoint=unix:///csi/csi.sock",
                "--component_type=node",
                "--cbs_url=xxx",
                "--cvm_url=xxx",
                "--tag_url=xxx",
                "--metadata_endpoint=xxx",
                "--region=xxx",
                "--zone=xxx",
                "--nodeID=ins-xxx",
            ],
            Mode::Node,
        ),
    ];
    for (source, args, mode) in cases {
        let (common, notes) = parse::<csi_cbs::Config>(&strings(args), |c| &c.common);
        assert_eq!(common.mode, *mode, "{source}");
        assert_eq!(common.verbose, 1, "{source}: --v=5 is debug");
        assert_eq!(
            common.endpoint,
            Endpoint::Unix(PathBuf::from("/csi/csi.sock")),
            "{source}"
        );
        assert!(
            notes.iter().any(|n| n.contains("--logtostderr")),
            "{source}: {notes:?}"
        );
        if args.contains(&"--region=xxx") {
            assert_eq!(common.region.as_deref(), Some("xxx"), "{source}");
        }
        if args.contains(&"--metadata_endpoint=xxx") {
            assert_eq!(common.metadata_endpoint, "xxx", "{source}");
            assert_eq!(
                notes.len(),
                4,
                "{source}: logtostderr and three API URLs: {notes:?}"
            );
        }
        if args.contains(&"--nodeID=ins-xxx") {
            assert_eq!(common.node_id.as_deref(), Some("ins-xxx"), "{source}");
        }
    }
    // The old zone flag is our node zone.
    let translated = translate(argv(&strings(&["--zone=ap-guangzhou-3"]))).unwrap();
    let config = csi_cbs::Config::try_parse_from(&translated.args).unwrap();
    assert_eq!(config.node_zone.as_deref(), Some("ap-guangzhou-3"));
}

#[test]
fn cfs_and_cfsturbo_manifests() {
    let cases: &[(&str, &[&str], Mode)] = &[
        (
            "cfs/kubernetes/csi-nodeplugin-cfsplugin-old.yaml",
            &["--nodeID=$(NODE_ID)", "--endpoint=$(CSI_ENDPOINT)", "--v=3"],
            Mode::All,
        ),
        (
            "cfs/kubernetes/csi-nodeplugin-cfsplugin-new.yaml",
            &[
                "--nodeID=$(NODE_ID)",
                "--endpoint=$(CSI_ENDPOINT)",
                "--component_type=node",
                "--v=5",
            ],
            Mode::Node,
        ),
        (
            "cfs/kubernetes/csi-provisioner-cfsplugin-mid.yaml",
            &[
                "--nodeID=$(NODE_ID)",
                "--endpoint=$(CSI_ENDPOINT)",
                "--component_type=controller",
            ],
            Mode::Controller,
        ),
        (
            "cfsturbo/kubernetes/csi-node.yaml",
            &[
                "--nodeID=$(NODE_ID)",
                "--endpoint=$(CSI_ENDPOINT)",
                "--component_type=node",
            ],
            Mode::Node,
        ),
    ];
    for (source, args, mode) in cases {
        let args: Vec<String> = strings(args)
            .into_iter()
            .map(|a| a.replace("$(CSI_ENDPOINT)", CFS_ENDPOINT))
            .collect();
        let (common, _) = parse::<csi_cfs::Config>(&args, |c| &c.common);
        assert_eq!(common.mode, *mode, "{source}");
        assert_eq!(common.node_id.as_deref(), Some(NODE), "{source}");
        assert_eq!(
            common.endpoint,
            Endpoint::Unix(PathBuf::from("/plugin/csi.sock")),
            "{source}"
        );
        common.validate().unwrap();
    }
    // The Turbo controller's endpoint is $(ADDRESS).
    let args = strings(&["--nodeID=$(NODE_ID)", "--endpoint=$(ADDRESS)"]);
    let (common, _) = parse::<csi_cfs::Config>(&args, |c| &c.common);
    assert_eq!(
        common.endpoint,
        Endpoint::Unix(PathBuf::from("/csi/csi.sock"))
    );
}

#[test]
fn cos_manifests() {
    for (source, args) in [
        (
            "cosfs/kubernetes/csi-node-new.yaml",
            &[
                "--v=5",
                "--logtostderr=true",
                "--nodeid=$(NODE_ID)",
                "--endpoint=$(CSI_ENDPOINT)",
            ][..],
        ),
        (
            "cosfs/examples/cosfs.yaml",
            &["--nodeid=$(NODE_ID)", "--endpoint=$(CSI_ENDPOINT)"][..],
        ),
    ] {
        let args: Vec<String> = strings(args)
            .into_iter()
            .map(|a| a.replace("$(CSI_ENDPOINT)", COS_ENDPOINT))
            .collect();
        let (common, _) = parse::<csi_cos::Config>(&args, |c| &c.common);
        assert_eq!(common.node_id.as_deref(), Some(NODE), "{source}");
        assert_eq!(
            common.endpoint,
            Endpoint::Unix(PathBuf::from(
                "/var/lib/kubelet/plugins/com.tencent.cloud.csi.cosfs/csi.sock"
            )),
            "{source}"
        );
        common.validate().unwrap();
    }
    // `--drivername` of the old COS binary.
    let args = strings(&[
        "--drivername=com.tencent.cloud.csi.cosfs",
        "--nodeid=$(NODE_ID)",
    ]);
    let (common, _) = parse::<csi_cos::Config>(&args, |c| &c.common);
    assert_eq!(
        common.driver_name.as_deref(),
        Some("com.tencent.cloud.csi.cosfs")
    );
}

/// The old CBS binary's own flags (`cmd/cbs/main.go`), each in Go's spellings.
#[test]
fn every_old_cbs_flag_is_read() {
    let args = strings(&[
        "-endpoint",
        ADDRESS,
        "-region=ap-guangzhou",
        "--zone",
        "ap-guangzhou-3",
        "-nodeID",
        "ins-1",
        "--cbs_url=cbs.internal",
        "--volume_attach_limit=18",
        "--master=https://k8s",
        "--kubeconfig=/root/.kube/config",
        "--enable_metrics_server=true",
        "--metric_port=9099",
        "--time-interval=60",
        "--component_type=node",
        "--environment_type=tke",
        "-v",
        "6",
        "-logtostderr",
    ]);
    let translated = translate(argv(&args)).unwrap();
    let config = csi_cbs::Config::try_parse_from(&translated.args)
        .unwrap_or_else(|e| panic!("{:?}: {e}", translated.args));
    assert_eq!(config.common.node_id.as_deref(), Some("ins-1"));
    assert_eq!(config.common.region.as_deref(), Some("ap-guangzhou"));
    assert_eq!(config.node_zone.as_deref(), Some("ap-guangzhou-3"));
    assert_eq!(config.max_volumes_per_node, Some(18));
    assert_eq!(
        config.common.metrics_address.as_deref(),
        Some("0.0.0.0:9099")
    );
    assert_eq!(config.common.verbose, 2, "-v 6 is trace");
    assert_eq!(config.common.mode, Mode::Node);
    assert_eq!(
        config.common.kubeconfig,
        Some(PathBuf::from("/root/.kube/config"))
    );
    for dropped in [
        "--cbs_url",
        "--master",
        "--time-interval",
        "--environment_type",
        "-logtostderr",
    ] {
        let name = dropped.trim_start_matches('-');
        assert!(
            translated.notes.iter().any(|n| n.contains(name)),
            "{dropped} not noted: {:?}",
            translated.notes
        );
    }
}

/// The real binary, started with the old CFS node plugin's arguments (Go's `unix://dir/file`
/// endpoint, `--v=5`), serves its socket and logs at debug level.
#[tokio::test]
async fn csi_cfs_starts_with_the_old_node_plugins_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let go_endpoint = format!("unix:/{}", socket.display());
    let log = dir.path().join("csi-cfs.log");
    let args: Vec<String> = [
        format!("--nodeID={NODE}"),
        format!("--endpoint={go_endpoint}"),
        "--component_type=node".into(),
        "--v=5".into(),
        // Isolation from the machine, not part of the old arguments.
        format!("--mounts-dir={}", dir.path().join("mounts").display()),
        format!("--kubelet-dir={}", dir.path().display()),
    ]
    .into();
    assert!(
        !go_endpoint.starts_with("unix:///"),
        "the Go form, as in the old manifests: {go_endpoint}"
    );
    let program = e2e::bin_path("csi-cfs").unwrap();
    let mut proc = e2e::process::Proc::spawn("csi-cfs", &program, &args, &log).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            proc.try_status().is_none(),
            "csi-cfs exited: {}",
            proc.log_tail()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no socket: {}",
            proc.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut client = e2e::client::CsiClient::connect(&socket).await.unwrap();
    let info = client
        .identity
        .get_plugin_info(csi_proto::v1::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "com.tencent.cloud.csi.cfs");
    // Requests are logged at debug level, which --v=5 turns on.
    let mut text = String::new();
    while !text.contains("DEBUG") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = std::fs::read_to_string(&log).unwrap();
    }
    assert!(text.contains("DEBUG"), "--v=5 is debug level:\n{text}");
    proc.stop(std::time::Duration::from_secs(10)).await.unwrap();
}

/// Starts `program args...`; waits for `socket`, or returns the log if it exits first.
async fn start(
    program: &str,
    args: &[String],
    socket: &std::path::Path,
    log: &std::path::Path,
) -> Result<e2e::process::Proc, String> {
    let path = e2e::bin_path(program).unwrap();
    let mut proc = e2e::process::Proc::spawn(program, &path, args, log).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !socket.exists() {
        if proc.try_status().is_some() {
            return Err(std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no socket: {}",
            proc.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(proc)
}

/// The old CBS DaemonSet sets NODE_ID to the Kubernetes node name: csi-cbs reads the instance
/// from the Node's providerID (here a stand-in for the Nodes API), and names the Node when it
/// cannot.
#[tokio::test]
async fn csi_cbs_with_a_node_name_finds_its_instance_through_the_node() {
    use cluster::fixture::{Routes, kubeconfig, node, serve, status};
    let routes: Routes = [
        (
            "/api/v1/nodes/10.0.0.12".to_owned(),
            (
                200,
                node("10.0.0.12", Some("qcloud:///100003/ins-k8snode1")),
            ),
        ),
        (
            "/api/v1/nodes/10.0.0.13".to_owned(),
            (200, node("10.0.0.13", Some("qcloud:///100003/"))),
        ),
        (
            "/api/v1/nodes/10.0.0.99".to_owned(),
            (
                404,
                status(404, "NotFound", "nodes \"10.0.0.99\" not found"),
            ),
        ),
    ]
    .into_iter()
    .collect();
    let (server, _) = serve(routes).await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &server);
    let args = |node: &str, socket: &std::path::Path| -> Vec<String> {
        vec![
            "--v=5".into(),
            "--logtostderr=true".into(),
            format!("--endpoint=unix://{}", socket.display()),
            "--component_type=node".into(),
            format!("--nodeID={node}"),
            format!("--kubeconfig={}", config.display()),
            // Isolation from the machine, not part of the old arguments.
            "--node-zone=ap-guangzhou-3".into(),
            format!("--kubelet-dir={}", dir.path().display()),
        ]
    };

    let socket = dir.path().join("cbs.sock");
    let log = dir.path().join("cbs.log");
    let mut proc = start("csi-cbs", &args("10.0.0.12", &socket), &socket, &log)
        .await
        .unwrap_or_else(|log| panic!("csi-cbs did not start:\n{log}"));
    let mut client = e2e::client::CsiClient::connect(&socket).await.unwrap();
    let info = client
        .node
        .node_get_info(csi_proto::v1::NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "ins-k8snode1");
    proc.stop(std::time::Duration::from_secs(10)).await.unwrap();

    for (node, says) in [
        ("10.0.0.99", "Node \"10.0.0.99\" does not exist"),
        ("10.0.0.13", "names no CVM instance"),
    ] {
        let socket = dir.path().join(format!("{node}.sock"));
        let log = dir.path().join(format!("{node}.log"));
        let Err(text) = start("csi-cbs", &args(node, &socket), &socket, &log).await else {
            panic!("csi-cbs started with the Node {node} unreadable");
        };
        assert!(
            text.contains(&format!("--node-id \"{node}\" is a Kubernetes node name"))
                && text.contains(says),
            "{node}: {text}"
        );
    }
}
