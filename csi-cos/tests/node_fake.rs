//! The FUSE node service in process, against the in-memory `FakeMounter` and a stand-in FUSE
//! host on a local socket (which "mounts" a device of its own for every node-wide mount, as each
//! FUSE daemon is a file system of its own), and a stand-in Kubernetes API for PVs: pods with
//! different fsGroups get a node-wide mount each and unpublishing each releases its own; a
//! republish with a rotated Secret goes to the mount the target shows; an empty publish Secret is
//! an error naming it; a bucket refusing the daemon's keys makes the volume abnormal. No root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use csi_common::csi::pb;
use csi_common::csi::pb::node_server::Node;
use csi_common::mount::fake::FakeMounter;
use csi_common::mount::ops::unmount_all;
use csi_common::mount::{DeviceContent, Mounter};
use csi_cos::node::keys::{NodeCredentials, PublishSecrets};
use csi_cos::node::{CosPlanner, NodeConfig, NodeService};
use fuse_host::{
    AuthFailureStatus, ErrorCode, HostClient, MountDetails, MountRequest, MountStatus, Request,
    Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const FUSE: &str = "fuse.cos-fuse";

/// What the stand-in host holds: each target's request, and the auth failure to report.
#[derive(Debug, Default)]
struct HostState {
    mounts: HashMap<PathBuf, MountRequest>,
    requests: Vec<MountRequest>,
    auth_failure: Option<AuthFailureStatus>,
    devices: u32,
}

/// Answers the FUSE host's protocol on `socket`, mounting with `mounter`.
async fn fake_host(socket: PathBuf, mounter: FakeMounter, state: Arc<Mutex<HostState>>) {
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await.unwrap();
            let request: Request = serde_json::from_slice(&body).unwrap();
            let answer = answer(request, &mounter, &state);
            let _ = stream
                .write_all(&serde_json::to_vec(&answer).unwrap())
                .await;
        }
    });
}

fn status_of(request: &MountRequest, reused: bool, auth: Option<AuthFailureStatus>) -> MountStatus {
    MountStatus {
        target: request.target.clone(),
        kind: request.kind.clone(),
        fingerprint: request.fingerprint.clone(),
        pid: 42,
        alive: true,
        mounted: true,
        healthy: true,
        reused,
        details: Some(MountDetails {
            auth_failure: auth,
            ..MountDetails::default()
        }),
    }
}

fn answer(request: Request, mounter: &FakeMounter, state: &Mutex<HostState>) -> Response {
    let mut state = state.lock().unwrap();
    match request {
        Request::Mount(request) => {
            state.requests.push(request.clone());
            if let Some(existing) = state.mounts.get(&request.target) {
                if existing.fingerprint != request.fingerprint {
                    return Response::error(ErrorCode::Conflict, "mounted with other options");
                }
                state.mounts.insert(request.target.clone(), request.clone());
                return Response::ok(vec![status_of(&request, true, None)]);
            }
            state.devices += 1;
            let device = PathBuf::from(format!("/dev/fuse-{}", state.devices));
            mounter.add_device(&device, 1 << 30, DeviceContent::Filesystem(FUSE.into()));
            std::fs::create_dir_all(&request.target).unwrap();
            mounter.mount(&device, &request.target, FUSE, &[]).unwrap();
            state.mounts.insert(request.target.clone(), request.clone());
            Response::ok(vec![status_of(&request, false, None)])
        }
        Request::Unmount { target } => {
            unmount_all(mounter, &target).unwrap();
            state.mounts.remove(&target);
            Response::ok(Vec::new())
        }
        Request::Status { target } => Response::ok(
            state
                .mounts
                .get(&target)
                .map(|r| status_of(r, false, state.auth_failure.clone()))
                .into_iter()
                .collect(),
        ),
        Request::List => Response::ok(Vec::new()),
    }
}

/// Which Secret each PV names, as the Kubernetes API would answer.
#[derive(Debug)]
struct Pvs(HashMap<String, Option<String>>);

#[tonic::async_trait]
impl PublishSecrets for Pvs {
    async fn publish_secret(&self, pv: &str) -> Result<Option<String>, String> {
        self.0
            .get(pv)
            .cloned()
            .ok_or_else(|| format!("PersistentVolume {pv:?} does not exist"))
    }
}

struct Node_ {
    service: NodeService<FakeMounter, CosPlanner>,
    mounter: FakeMounter,
    host: Arc<Mutex<HostState>>,
    dir: tempfile::TempDir,
}

async fn node(credentials: NodeCredentials, pvs: Option<Pvs>) -> Node_ {
    node_with(credentials, pvs, None).await
}

async fn node_with(
    credentials: NodeCredentials,
    pvs: Option<Pvs>,
    node_keys: Option<tcloud::CredentialSource>,
) -> Node_ {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    let mounts_dir = kubelet.join("plugins/com.tencent.cloud.csi.cosfs/mounts");
    std::fs::create_dir_all(&mounts_dir).unwrap();
    let mounter = FakeMounter::new();
    let host = Arc::new(Mutex::new(HostState::default()));
    let socket = dir.path().join("host.sock");
    fake_host(socket.clone(), mounter.clone(), Arc::clone(&host)).await;
    let service = NodeService::new(
        Arc::new(mounter.clone()),
        CosPlanner,
        NodeConfig {
            node_id: "node-1".into(),
            mounts_dir,
            host: HostClient::new(&socket),
            node_credentials: credentials,
            node_keys: node_keys.map(Arc::new),
            publish_secrets: pvs.map(|p| Arc::new(p) as Arc<dyn PublishSecrets>),
            metadata_endpoint: None,
            kubelet_dir: kubelet,
        },
    );
    Node_ {
        service,
        mounter,
        host,
        dir,
    }
}

impl Node_ {
    fn target(&self, pod: &str, pv: &str) -> PathBuf {
        self.dir.path().join(format!(
            "kubelet/pods/{pod}/volumes/kubernetes.io~csi/{pv}/mount"
        ))
    }

    fn node_mounts(&self) -> Vec<String> {
        let dir = self.dir.path().join("kubelet/plugins");
        self.mounter
            .mounts()
            .unwrap()
            .into_iter()
            .filter(|m| Path::new(&m.mount_point).starts_with(&dir))
            .map(|m| m.mount_point)
            .collect()
    }

    async fn publish(
        &self,
        target: &Path,
        group: &str,
        secrets: HashMap<String, String>,
    ) -> Result<(), tonic::Status> {
        self.service
            .node_publish_volume(tonic::Request::new(pb::NodePublishVolumeRequest {
                volume_id: "vol-1".into(),
                target_path: target.display().to_string(),
                volume_capability: Some(capability(group)),
                volume_context: context(),
                secrets,
                ..Default::default()
            }))
            .await
            .map(|_| ())
    }

    async fn unpublish(&self, target: &Path) {
        self.service
            .node_unpublish_volume(tonic::Request::new(pb::NodeUnpublishVolumeRequest {
                volume_id: "vol-1".into(),
                target_path: target.display().to_string(),
            }))
            .await
            .unwrap();
    }

    async fn condition(&self, target: &Path) -> Option<pb::VolumeCondition> {
        self.service
            .node_get_volume_stats(tonic::Request::new(pb::NodeGetVolumeStatsRequest {
                volume_id: "vol-1".into(),
                volume_path: target.display().to_string(),
                staging_target_path: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .volume_condition
    }
}

fn capability(group: &str) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: pb::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                volume_mount_group: group.into(),
                ..Default::default()
            },
        )),
    }
}

fn context() -> HashMap<String, String> {
    HashMap::from([
        ("url".into(), "http://cos.ap-guangzhou.myqcloud.com".into()),
        ("bucket".into(), "data-1250000000".into()),
    ])
}

fn secrets(id: &str) -> HashMap<String, String> {
    HashMap::from([
        ("SecretId".into(), id.into()),
        ("SecretKey".into(), format!("key-of-{id}")),
    ])
}

#[tokio::test]
async fn pods_with_different_fs_groups_get_a_mount_each_and_release_their_own() {
    let node = node(NodeCredentials::Deny, None).await;
    let (a1, a2, b) = (
        node.target("a1", "pv-1"),
        node.target("a2", "pv-1"),
        node.target("b", "pv-1"),
    );
    node.publish(&a1, "1000", secrets("AKID1")).await.unwrap();
    node.publish(&a2, "1000", secrets("AKID1")).await.unwrap();
    node.publish(&b, "2000", secrets("AKID1")).await.unwrap();
    let mounts = node.node_mounts();
    assert_eq!(
        mounts.len(),
        2,
        "one per fsGroup, shared by its pods: {mounts:?}"
    );
    assert!(
        !node
            .host
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.args.iter().any(|a| a.contains("key-of")))
    );
    // The last pod of fsGroup 1000 releases its mount; fsGroup 2000's stays.
    node.unpublish(&a1).await;
    assert_eq!(
        node.node_mounts().len(),
        2,
        "a2 still shows fsGroup 1000's mount"
    );
    node.unpublish(&a2).await;
    let left = node.node_mounts();
    assert_eq!(left.len(), 1, "{left:?}");
    let b_global = {
        let host = node.host.lock().unwrap();
        host.mounts.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(b_global.len(), 1);
    assert_eq!(left[0], b_global[0].display().to_string());
    assert!(
        node.host.lock().unwrap().mounts[&b_global[0]]
            .args
            .iter()
            .any(|a| a == "gid=2000"),
        "the mount left is fsGroup 2000's"
    );
    node.unpublish(&b).await;
    assert!(node.node_mounts().is_empty());
    assert!(node.host.lock().unwrap().mounts.is_empty());
}

#[tokio::test]
async fn a_republish_with_a_rotated_secret_reaches_the_same_mount() {
    let node = node(NodeCredentials::Deny, None).await;
    let target = node.target("a", "pv-1");
    node.publish(&target, "1000", secrets("AKID1"))
        .await
        .unwrap();
    node.publish(&target, "1000", secrets("AKID2"))
        .await
        .unwrap();
    let host = node.host.lock().unwrap();
    assert_eq!(host.mounts.len(), 1, "no second daemon");
    assert_eq!(host.requests.len(), 2);
    assert_eq!(host.requests[0].target, host.requests[1].target);
    let secret = host.requests[1].secret.as_deref().unwrap();
    assert!(secret.contains("AKID2"), "the new keys go to the host");
    drop(host);
    assert_eq!(node.node_mounts().len(), 1);
}

#[tokio::test]
async fn a_mount_made_before_the_upgrade_is_still_found_and_released() {
    let node = node(NodeCredentials::Deny, None).await;
    let target = node.target("old", "pv-1");
    // An older driver mounted the volume at its volume-only path and bound the pod to it.
    let legacy = node.service.global_path("vol-1");
    let plan = {
        use csi_cos::node::Planner;
        use csi_cos::node::keys::PublishKeys;
        let s = secrets("AKID1");
        CosPlanner
            .plan(&context(), &PublishKeys::Secret(&s), &capability("1000"))
            .unwrap()
    };
    let answer = answer(
        Request::Mount(MountRequest {
            target: legacy.clone(),
            kind: plan.kind,
            args: plan.args,
            secret: plan.secret,
            fingerprint: plan.fingerprint,
        }),
        &node.mounter,
        &node.host,
    );
    assert!(answer.error.is_none());
    std::fs::create_dir_all(&target).unwrap();
    node.mounter.bind(&legacy, &target, false, &[]).unwrap();
    // A new pod with the same options shares it; its stats and a republish find it.
    let new = node.target("new", "pv-1");
    node.publish(&new, "1000", secrets("AKID1")).await.unwrap();
    node.publish(&target, "1000", secrets("AKID2"))
        .await
        .unwrap();
    assert_eq!(node.node_mounts(), [legacy.display().to_string()]);
    assert_eq!(
        node.condition(&target).await.map(|c| c.abnormal),
        Some(false)
    );
    node.unpublish(&target).await;
    node.unpublish(&new).await;
    assert!(node.node_mounts().is_empty());
    assert!(!legacy.exists());
}

#[tokio::test]
async fn an_empty_publish_secret_is_an_error_naming_it() {
    let pvs = || {
        Pvs(HashMap::from([
            ("pv-named".to_owned(), Some("apps/cos-keys".to_owned())),
            ("pv-bare".to_owned(), None),
        ]))
    };
    for policy in [NodeCredentials::Allow, NodeCredentials::Deny] {
        let node = node(policy, Some(pvs())).await;
        let err = node
            .publish(&node.target("p", "pv-named"), "", HashMap::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(
            err.message()
                .contains("the publish Secret apps/cos-keys of PV pv-named is empty"),
            "{policy:?}: {}",
            err.message()
        );
    }
    // A PV that names no Secret: the role only where the node allows it.
    let deny = node(NodeCredentials::Deny, Some(pvs())).await;
    let err = deny
        .publish(&deny.target("p", "pv-bare"), "", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("--node-credentials=deny"),
        "{}",
        err.message()
    );
    let allow = node(NodeCredentials::Allow, Some(pvs())).await;
    allow
        .publish(&allow.target("p", "pv-bare"), "", HashMap::new())
        .await
        .unwrap();
    let request = allow.host.lock().unwrap().requests[0].clone();
    assert!(request.secret.is_none(), "no keys handed over");
    assert!(request.args.iter().any(|a| a == "--credentials-role"));
    assert!(!request.args.iter().any(|a| a == "--credentials-stdin"));
    // A node whose own credentials are fixed keys (--credentials-dir) hands those over instead.
    let keyed = node_with(
        NodeCredentials::Allow,
        Some(pvs()),
        Some(tcloud::CredentialSource::Static(tcloud::Credentials::new(
            "AKIDnode", "node-key",
        ))),
    )
    .await;
    keyed
        .publish(&keyed.target("p", "pv-bare"), "", HashMap::new())
        .await
        .unwrap();
    let request = keyed.host.lock().unwrap().requests[0].clone();
    assert!(request.secret.unwrap().contains("AKIDnode"));
    assert!(request.args.iter().any(|a| a == "--credentials-stdin"));
    // The API cannot be read: closed unless the node allows its role.
    let blind = node(NodeCredentials::Deny, None).await;
    let err = blind
        .publish(&blind.target("p", "pv-bare"), "", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("cannot be told"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_bucket_refusing_the_keys_makes_the_volume_abnormal_until_a_success() {
    let node = node(NodeCredentials::Deny, None).await;
    let target = node.target("a", "pv-1");
    node.publish(&target, "", secrets("AKID1")).await.unwrap();
    assert_eq!(
        node.condition(&target).await.map(|c| c.abnormal),
        Some(false)
    );
    node.host.lock().unwrap().auth_failure = Some(AuthFailureStatus {
        code: "ExpiredToken".into(),
        op: "GetObject".into(),
        at_unix_secs: 1,
        current: true,
    });
    let condition = node.condition(&target).await.unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("vol-1") && condition.message.contains("ExpiredToken"),
        "{}",
        condition.message
    );
    assert!(
        !condition.message.contains("key-of"),
        "no key in {}",
        condition.message
    );
    // A later success clears "current"; the last failure alone is no condition.
    node.host
        .lock()
        .unwrap()
        .auth_failure
        .as_mut()
        .unwrap()
        .current = false;
    assert_eq!(
        node.condition(&target).await.map(|c| c.abnormal),
        Some(false)
    );
}
