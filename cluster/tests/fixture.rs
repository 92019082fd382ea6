//! The kube client against a small local HTTP server that answers as the Kubernetes API does
//! for Nodes (no cluster needed): found, super node, missing, forbidden, without or with a
//! malformed providerID, overloaded, and not listening at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster::{Cluster, ClusterError, NodeInstance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `(status, body)` by request path.
type Routes = HashMap<String, (u16, String)>;

fn node(name: &str, provider_id: Option<&str>) -> String {
    let mut spec = serde_json::json!({});
    if let Some(id) = provider_id {
        spec["providerID"] = id.into();
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { "topology.kubernetes.io/zone": "100003" } },
        "spec": spec,
    })
    .to_string()
}

fn status(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

/// Serves `routes` on a local port; counts requests.
async fn serve(routes: Routes) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let routes = Arc::new(routes);
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let routes = Arc::clone(&routes);
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                let path = path.split('?').next().unwrap_or("").to_owned();
                let (code, body) = routes
                    .get(&path)
                    .cloned()
                    .unwrap_or_else(|| (404, status(404, "NotFound", "no such route")));
                let answer = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, count)
}

fn kubeconfig(dir: &tempfile::TempDir, server: &str) -> PathBuf {
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n    token: fixture-token\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n"
        ),
    )
    .unwrap();
    path
}

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
    let cluster = Cluster::connect(Some(&kubeconfig(&dir, &server)))
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
    let cluster = Cluster::connect(Some(&kubeconfig(&dir, &format!("http://127.0.0.1:{port}"))))
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
