//! A stand-in for the Kubernetes API's Nodes and PersistentVolumes, for tests (feature `fixture`):
//! a local HTTP server answering `GET /api/v1/nodes/<name>` (or any other path) from a table, and
//! a kubeconfig that points at it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `(status, body)` by request path.
pub type Routes = HashMap<String, (u16, String)>;

pub fn node(name: &str, provider_id: Option<&str>) -> String {
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

/// A CSI PersistentVolume of `driver`, naming `secret` (`(namespace, name)`) as its
/// nodePublishSecretRef, or none.
pub fn persistent_volume(name: &str, driver: &str, secret: Option<(&str, &str)>) -> String {
    let mut csi = serde_json::json!({ "driver": driver, "volumeHandle": name });
    if let Some((namespace, secret)) = secret {
        csi["nodePublishSecretRef"] = serde_json::json!({ "namespace": namespace, "name": secret });
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name },
        "spec": { "csi": csi, "accessModes": ["ReadWriteMany"], "capacity": { "storage": "1Gi" } },
    })
    .to_string()
}

pub fn status(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

/// Serves `routes` on a local port until the runtime ends; returns its address and a count of
/// the requests.
pub async fn serve(routes: Routes) -> (String, Arc<AtomicUsize>) {
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

pub fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
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

/// A NodeList of Nodes named with a zone label each: `(name, label key, zone)`.
pub fn node_list(nodes: &[(&str, &str, &str)]) -> String {
    let items: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(name, key, zone)| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": name, "labels": { *key: zone } },
                "spec": {},
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items,
    })
    .to_string()
}
