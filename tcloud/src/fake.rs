//! In-memory, stateful fakes of the cloud API seams for tests (feature `fake`, or this crate's
//! tests): [`FakeCbs`] implements [`CbsApi`](super::cbs::CbsApi) (with CVM `DescribeZones`) and
//! [`FakeCfs`] implements [`CfsApi`](super::cfs::CfsApi).
//!
//! They mirror the project's simulator (`sim/`): the same request checks, states, transitions and
//! error codes, returned as [`CloudError::Api`] values built the way the real client builds them
//! (so `kind()` and `code()` answer as for the real cloud). Transitions (ATTACHING, a CREATING
//! snapshot, a `creating` file system) complete after a configurable time measured with
//! `tokio::time::Instant`, so tests can pause time. Tests count calls per operation and make the
//! Nth call of an operation fail with an API error code of their choosing.
//!
//! The fakes never touch the network or the filesystem, and do not model the real client's
//! retries, pacing or deadlines: an injected `RequestLimitExceeded` reaches the caller as is.

pub mod cbs;
pub mod cfs;

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

pub use cbs::{CbsOp, FakeCbs, FakeDisk, FakeSnapshot};
pub use cfs::{CfsOp, FakeCfs, FakeFileSystem};

use super::error::{CloudError, ErrorKind};

/// The zones both fakes know by default: the simulator's default `--zone` values.
const DEFAULT_ZONES: [(&str, &str); 2] =
    [("ap-guangzhou-3", "100003"), ("ap-guangzhou-4", "100004")];

/// A zone the fake serves: its name and numeric ID.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    name: String,
    id: String,
}

fn zones_from(specs: &[(&str, &str)]) -> Vec<Zone> {
    specs
        .iter()
        .map(|(name, id)| Zone {
            name: (*name).to_owned(),
            id: (*id).to_owned(),
        })
        .collect()
}

fn zone_names(zones: &[Zone]) -> String {
    let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
    names.join(", ")
}

/// An API error as the fake's services raise it, before it becomes a [`CloudError`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError {
    code: String,
    message: String,
}

impl ApiError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn invalid_value(message: impl Into<String>) -> Self {
        ApiError::new("InvalidParameterValue", message)
    }

    /// The error the real client returns for this API answer.
    fn into_cloud(self, action: &str, request_id: String) -> CloudError {
        CloudError::Api {
            action: action.to_owned(),
            kind: ErrorKind::from_code(&self.code),
            code: self.code,
            message: self.message,
            request_id,
        }
    }
}

/// A failure armed for the Nth call of an operation.
#[derive(Debug)]
struct Armed<Op> {
    op: Op,
    /// Calls of `op` left before the one that fails (0: the next one fails).
    skip: u64,
    code: String,
    /// The call takes effect and only its answer is lost.
    after_effect: bool,
}

/// An armed failure that is due on this call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fired {
    code: String,
    after_effect: bool,
}

impl Fired {
    fn error(&self, action: &str, call: u64) -> ApiError {
        let what = if self.after_effect {
            "the call took effect but its answer was lost"
        } else {
            "the call was refused"
        };
        ApiError::new(
            &self.code,
            format!("injected failure of {action} call {call}: {what}."),
        )
    }
}

/// Call counters, armed failures and held ("stuck") transitions of one fake, by operation.
#[derive(Debug)]
struct Injector<Op> {
    calls: HashMap<Op, u64>,
    armed: Vec<Armed<Op>>,
    stuck: HashSet<Op>,
    requests: u64,
}

impl<Op: Copy + Eq + Hash> Injector<Op> {
    fn new() -> Self {
        Injector {
            calls: HashMap::new(),
            armed: Vec::new(),
            stuck: HashSet::new(),
            requests: 0,
        }
    }

    /// Arms a failure of the `n`th call of `op`, 1-based and counted from now (0 acts as 1).
    fn arm(&mut self, op: Op, n: u64, code: &str, after_effect: bool) {
        self.armed.push(Armed {
            op,
            skip: n.saturating_sub(1),
            code: code.to_owned(),
            after_effect,
        });
    }

    /// Counts a call of `op`; returns its number and the failure due on it, if any. Several
    /// failures armed for the same call: the first fires, the others are spent too.
    fn begin(&mut self, op: Op) -> (u64, Option<Fired>) {
        self.requests += 1;
        let count = self.calls.entry(op).or_insert(0);
        *count += 1;
        let call = *count;
        let mut due = None;
        self.armed.retain_mut(|armed| {
            if armed.op != op {
                return true;
            }
            if armed.skip == 0 {
                due = due.take().or_else(|| {
                    Some(Fired {
                        code: armed.code.clone(),
                        after_effect: armed.after_effect,
                    })
                });
                return false;
            }
            armed.skip -= 1;
            true
        });
        (call, due)
    }

    fn calls(&self, op: Op) -> u64 {
        self.calls.get(&op).copied().unwrap_or(0)
    }

    /// A request ID like the cloud's, unique within this fake.
    fn request_id(&self) -> String {
        format!("fake-{:08}", self.requests)
    }

    fn set_stuck(&mut self, op: Op, stuck: bool) {
        if stuck {
            self.stuck.insert(op);
        } else {
            self.stuck.remove(&op);
        }
    }

    fn is_stuck(&self, op: Op) -> bool {
        self.stuck.contains(&op)
    }
}

/// The state of one fake, as [`run_call`] needs it: its call counters and armed failures, and
/// the completion of transitions that are due.
trait FakeState {
    type Op: Copy + Eq + Hash;
    fn injector(&mut self) -> &mut Injector<Self::Op>;
    fn settle(&mut self, now: tokio::time::Instant);
}

/// Runs one API call of a fake: counts it, completes due transitions, and applies a failure
/// armed for it, before the call (refused) or after it (its answer lost).
fn run_call<S: FakeState, R>(
    state: &mut S,
    op: S::Op,
    action: &str,
    f: impl FnOnce(&mut S, tokio::time::Instant) -> Result<R, ApiError>,
) -> Result<R, CloudError> {
    let now = tokio::time::Instant::now();
    let (call, fired) = state.injector().begin(op);
    let request_id = state.injector().request_id();
    state.settle(now);
    let fail = |fired: &Fired| {
        fired
            .error(action, call)
            .into_cloud(action, request_id.clone())
    };
    if let Some(fired) = fired.as_ref().filter(|f| !f.after_effect) {
        return Err(fail(fired));
    }
    let result = f(state, now);
    if let Some(fired) = &fired {
        return Err(fail(fired));
    }
    result.map_err(|e| e.into_cloud(action, request_id.clone()))
}

/// `prefix` + `len` random lowercase alphanumerics, like `disk-8kq2m1xz`.
fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    for _ in 0..len {
        id.push(char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]));
    }
    id
}

/// `prefix` followed by one or more lowercase letters and digits, like `disk-8kq2m1xz`.
fn well_formed_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// `YYYY-MM-DD HH:MM:SS` in Beijing time (UTC+8), as the API prints times.
fn format_time(unix_secs: i64) -> String {
    let t = unix_secs + 8 * 3600;
    let secs = t.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        crate::time::utc_date(t),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Op {
        A,
        B,
    }

    #[test]
    fn armed_failure_fires_on_exactly_the_nth_call_of_its_operation() {
        let mut injector = Injector::new();
        injector.arm(Op::A, 2, "InternalError", false);
        assert_eq!(injector.begin(Op::B), (1, None));
        assert_eq!(injector.begin(Op::A), (1, None));
        let (call, fired) = injector.begin(Op::A);
        assert_eq!(call, 2);
        assert_eq!(fired.map(|f| f.code), Some("InternalError".to_owned()));
        assert_eq!(injector.begin(Op::A), (3, None));
        assert_eq!((injector.calls(Op::A), injector.calls(Op::B)), (3, 1));
    }

    #[test]
    fn times_print_in_beijing_time() {
        assert_eq!(format_time(0), "1970-01-01 08:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-15 06:13:20");
        assert!(well_formed_id("disk-ab12", "disk-"));
        assert!(!well_formed_id("disk-", "disk-") && !well_formed_id("disk-AB", "disk-"));
        assert!(well_formed_id(&random_id("snap-", 8), "snap-"));
    }
}
