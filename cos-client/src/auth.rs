//! What the client last learnt of its keys from the server's answers: the last request refused
//! for its credentials (`AccessDenied`, `InvalidAccessKeyId`, `ExpiredToken`, ...), when, and
//! whether the most recent answer was such a refusal. A daemon reports it (its volume is then
//! abnormal) and re-reads its keys at once when one happens ([`AuthWatch::failed`]).
//!
//! It keeps the error code and the operation only: never a key, a signature or a message.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ObjectError, ObjectErrorKind};

/// One request refused for its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// The S3 error code (`AccessDenied`, `InvalidAccessKeyId`, `ExpiredToken`), or `HTTP 403`.
    pub code: String,
    /// The S3 action refused (`GetObject`, `HeadBucket`).
    pub op: &'static str,
    /// When, in seconds since the Unix epoch.
    pub at_unix_secs: u64,
}

/// The client's view of its keys, shared by its clones.
#[derive(Debug, Default)]
pub struct AuthWatch {
    state: Mutex<State>,
    failed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    last_failure: Option<AuthFailure>,
    /// The most recent answer was an authentication failure.
    failing: bool,
}

impl AuthWatch {
    /// Notes the outcome of one operation `op` (after its retries). An answer other than a
    /// refusal of the credentials proves them good (a 404 too: the server checks keys first);
    /// transport failures say nothing of them.
    pub fn observe<T>(&self, op: &'static str, result: &Result<T, ObjectError>) {
        let failure = match result {
            Ok(_) => None,
            Err(e) => match e.kind() {
                ObjectErrorKind::Forbidden => Some(AuthFailure {
                    code: e
                        .code()
                        .map(str::to_owned)
                        .or_else(|| e.status().map(|s| format!("HTTP {s}")))
                        .unwrap_or_else(|| "Forbidden".to_owned()),
                    op,
                    at_unix_secs: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                }),
                ObjectErrorKind::NotFound => None,
                ObjectErrorKind::Invalid | ObjectErrorKind::Unavailable => return,
            },
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.failing = failure.is_some();
        if let Some(failure) = failure {
            state.last_failure = Some(failure);
            drop(state);
            self.failed.notify_one();
        }
    }

    /// The last authentication failure, however long ago.
    pub fn last_failure(&self) -> Option<AuthFailure> {
        self.lock().last_failure.clone()
    }

    /// The last authentication failure while the most recent answer is one (a success since
    /// clears it).
    pub fn failing(&self) -> Option<AuthFailure> {
        let state = self.lock();
        state.failing.then(|| state.last_failure.clone()).flatten()
    }

    /// Resolves at the next authentication failure (or at once when one happened since the last
    /// call returned).
    pub async fn failed(&self) {
        self.failed.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> Result<(), ObjectError> {
        Err(ObjectError::Service {
            op: "GetObject",
            resource: "b/k".into(),
            status: 403,
            code: code.into(),
            message: "secret-free".into(),
            request_id: String::new(),
        })
    }

    #[tokio::test]
    async fn failures_are_kept_until_a_success_and_wake_the_watcher() {
        let watch = AuthWatch::default();
        assert_eq!(watch.failing(), None);
        watch.observe("GetObject", &refused("ExpiredToken"));
        let failure = watch.failing().unwrap();
        assert_eq!(
            (failure.code.as_str(), failure.op),
            ("ExpiredToken", "GetObject")
        );
        // The permit is stored: a watcher that starts waiting afterwards wakes at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), watch.failed())
            .await
            .unwrap();
        // A transport failure says nothing of the keys.
        watch.observe::<()>(
            "GetObject",
            &Err(ObjectError::Cancelled {
                op: "GetObject",
                resource: "b/k".into(),
            }),
        );
        assert!(watch.failing().is_some());
        watch.observe("HeadObject", &Ok(()));
        assert_eq!(watch.failing(), None);
        assert_eq!(watch.last_failure().unwrap().code, "ExpiredToken");
    }
}
