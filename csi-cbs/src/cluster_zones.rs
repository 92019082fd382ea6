//! The zones the cluster's Nodes are in, for a volume whose request names no zone and has no
//! topology: the docs say a zone among the cluster's nodes (`002:35543`), not the controller's
//! own. Read through the Kubernetes API (`cluster`), cached for a minute; when the API cannot
//! tell, the controller falls back to its own zone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::topology::ZONE_KEYS;

/// How long a listing of the Nodes' zones is used before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(60);
/// How long a failure to read them stands (each volume would otherwise wait for the API).
const FAILED_FOR: Duration = Duration::from_secs(10);

/// Where the zones of the cluster's Nodes come from (the API, or a test's list).
pub trait NodeZones: Send + Sync + std::fmt::Debug {
    /// The zones (names or numeric IDs) the cluster's Nodes are labelled with.
    fn zones(&self) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>>;
}

impl NodeZones for cluster::Cluster {
    fn zones(&self) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>> {
        Box::pin(async move { self.node_zones(&ZONE_KEYS).await.map_err(|e| e.to_string()) })
    }
}

/// [`NodeZones`] with a short memory.
#[derive(Debug)]
pub struct ClusterZones {
    source: Arc<dyn NodeZones>,
    /// The last answer: until when it stands, and the zones (none after a failure).
    cache: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
}

impl ClusterZones {
    pub fn new(source: Arc<dyn NodeZones>) -> Self {
        ClusterZones {
            source,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The Nodes' zones, at most a minute old; empty when the API cannot tell (logged).
    pub async fn current(&self) -> Vec<String> {
        let mut cache = self.cache.lock().await;
        if let Some((until, zones)) = cache.as_ref()
            && Instant::now() < *until
        {
            return zones.clone();
        }
        let (stands, zones) = match self.source.zones().await {
            Ok(zones) => (FRESH_FOR, zones),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Nodes' zones; a volume with no zone goes to the controller's own");
                (FAILED_FOR, Vec::new())
            }
        };
        *cache = Some((Instant::now() + stands, zones.clone()));
        zones
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Counted(AtomicUsize);

    impl NodeZones for Counted {
        fn zones(&self) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    Err("the API is down".into())
                } else {
                    Ok(vec!["ap-guangzhou-3".into()])
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_empty_for_a_while_and_a_good_one_is_kept_a_minute() {
        let source = Arc::new(Counted::default());
        let zones = ClusterZones::new(Arc::clone(&source) as Arc<dyn NodeZones>);
        assert!(zones.current().await.is_empty(), "the API is down");
        assert!(zones.current().await.is_empty(), "not asked again at once");
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
        tokio::time::advance(FAILED_FOR).await;
        assert_eq!(zones.current().await, ["ap-guangzhou-3"]);
        assert_eq!(zones.current().await, ["ap-guangzhou-3"]);
        assert_eq!(
            source.0.load(Ordering::SeqCst),
            2,
            "the second read is kept"
        );
    }
}
