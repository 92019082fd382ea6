//! The kube client against a small local HTTP server that answers as the Kubernetes API does
//! for Nodes (no cluster needed): found, super node, missing, forbidden, without or with a
//! malformed providerID, overloaded, and not listening at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster::fixture::{Routes, kubeconfig, node, node_list, serve, status};
use cluster::{Cluster, ClusterError, NodeInstance};

#[tokio::test]
async fn nodes_name_their_instances_and_failures_name_what_is_wrong() {
    let routes: Routes = [
        (
            "node-cvm",
            (200, node("node-cvm", Some("qcloud:///100003/ins-abc123xy"))),
        ),
        (
            "node-super",
            (200, node("node-super", Some("tencentcloud://kn-9xk2m4"))),
        ),
        ("node-bare", (200, node("node-bare", None))),
        (
            "node-odd",
            (200, node("node-odd", Some("aws:///us-east-1a/i-0abc"))),
        ),
        (
            "node-gone",
            (
                404,
                status(404, "NotFound", "nodes \"node-gone\" not found"),
            ),
        ),
        (
            "node-secret",
            (
                403,
                status(403, "Forbidden", "nodes \"node-secret\" is forbidden"),
            ),
        ),
        (
            "node-busy",
            (503, status(503, "ServiceUnavailable", "etcd is slow")),
        ),
    ]
    .into_iter()
    .map(|(name, answer)| (format!("/api/v1/nodes/{name}"), answer))
    .collect();
    let (server, requests) = serve(routes).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::connect(Some(&kubeconfig(dir.path(), &server)))
        .await
        .unwrap();

    assert_eq!(
        cluster.node_instance("node-cvm").await.unwrap(),
        NodeInstance {
            instance_id: "ins-abc123xy".into(),
            zone_id: Some("100003".into())
        }
    );
    assert_eq!(
        cluster
            .node_instance("node-super")
            .await
            .unwrap()
            .instance_id,
        "eks-9xk2m4"
    );
    let err = cluster.node_instance("node-bare").await.unwrap_err();
    assert!(
        matches!(err, ClusterError::NoProviderId(ref n) if n == "node-bare"),
        "{err:?}"
    );
    let err = cluster.node_instance("node-odd").await.unwrap_err();
    assert!(matches!(err, ClusterError::BadProviderId { .. }), "{err:?}");
    assert!(
        err.to_string().contains("aws:///us-east-1a/i-0abc"),
        "{err}"
    );
    let err = cluster.node_instance("node-gone").await.unwrap_err();
    assert!(
        matches!(err, ClusterError::NodeNotFound(ref n) if n == "node-gone"),
        "{err:?}"
    );
    let err = cluster.node_instance("node-secret").await.unwrap_err();
    assert!(
        matches!(err, ClusterError::Refused { .. }) && !err.is_transient(),
        "{err:?}"
    );
    assert!(err.to_string().contains("forbidden"), "{err}");

    // Overloaded: transient, asked again, then given up with the reason.
    let before = requests.load(Ordering::SeqCst);
    let err = cluster
        .node_instance_retried("node-busy", 3, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("etcd is slow"),
        "{err}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst) - before,
        3,
        "three attempts"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_transient_and_named() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::connect(Some(&kubeconfig(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
    )))
    .await
    .unwrap();
    let err = cluster
        .node_instance_retried("node-1", 2, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the Kubernetes API did not answer"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_kubeconfig_is_named() {
    let err = Cluster::connect(Some(std::path::Path::new("/nonexistent/kubeconfig")))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
}

#[tokio::test]
async fn the_nodes_zones_come_from_their_labels() {
    const CSI: &str = "topology.com.tencent.cloud.csi.cbs/zone";
    const K8S: &str = "topology.kubernetes.io/zone";
    let routes: Routes = [(
        "/api/v1/nodes".to_owned(),
        (
            200,
            node_list(&[
                ("a", CSI, "ap-guangzhou-3"),
                ("b", K8S, "100004"),
                ("c", K8S, "100004"),
                ("d", "kubernetes.io/hostname", "d"),
            ]),
        ),
    )]
    .into_iter()
    .collect();
    let (server, _) = serve(routes).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::connect(Some(&kubeconfig(dir.path(), &server)))
        .await
        .unwrap();
    assert_eq!(
        cluster.node_zones(&[CSI, K8S]).await.unwrap(),
        ["100004", "ap-guangzhou-3"],
        "each zone once; a Node without a zone label adds none"
    );
}

#[tokio::test]
async fn persistent_volumes_name_their_publish_secret_or_none() {
    use cluster::SecretRef;
    use cluster::fixture::persistent_volume;
    const COS: &str = "com.tencent.cloud.csi.cosfs";
    let routes: Routes = [
        (
            "pv-secret",
            (
                200,
                persistent_volume("pv-secret", COS, Some(("apps", "cos-keys"))),
            ),
        ),
        ("pv-bare", (200, persistent_volume("pv-bare", COS, None))),
        (
            "pv-gone",
            (
                404,
                status(404, "NotFound", "persistentvolumes \"pv-gone\" not found"),
            ),
        ),
        (
            "pv-forbidden",
            (
                403,
                status(403, "Forbidden", "persistentvolumes is forbidden"),
            ),
        ),
    ]
    .into_iter()
    .map(|(name, answer)| (format!("/api/v1/persistentvolumes/{name}"), answer))
    .collect();
    let (server, _) = serve(routes).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::connect(Some(&kubeconfig(dir.path(), &server)))
        .await
        .unwrap();
    let named = cluster
        .pv_publish_secret("pv-secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        named,
        SecretRef {
            namespace: "apps".into(),
            name: "cos-keys".into()
        }
    );
    assert_eq!(named.to_string(), "apps/cos-keys");
    assert_eq!(cluster.pv_publish_secret("pv-bare").await.unwrap(), None);
    assert!(matches!(
        cluster.pv_publish_secret("pv-gone").await.unwrap_err(),
        ClusterError::PvNotFound(pv) if pv == "pv-gone"
    ));
    let err = cluster.pv_publish_secret("pv-forbidden").await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::Refused { what, .. } if what.contains("pv-forbidden")),
        "{err:?}"
    );
}
