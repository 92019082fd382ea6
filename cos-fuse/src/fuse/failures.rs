//! The log of failed requests: each failed FUSE request is logged once, here, with its operation,
//! inode, object key, errno and cause chain. Failures that are part of normal file-system use
//! ([`FsError::is_expected`]: a lookup of a missing name, EEXIST, ENOTEMPTY, a refused link...)
//! go to debug; the others to warn, at most [`WARNINGS_PER_SECOND`] lines a second for each
//! operation, so a failing loop cannot flood the log: the next line logged says how many were
//! left out. This module decides nothing about a request; it only reports.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::counters::OPS;
use crate::fs::FsError;

/// Warnings logged per operation in one window of [`WINDOW`].
pub(super) const WARNINGS_PER_SECOND: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

/// Logs failed requests, rate-limited per operation.
#[derive(Debug)]
pub(super) struct FailureLog {
    limiter: RateLimiter,
}

impl FailureLog {
    pub(super) fn new() -> Self {
        FailureLog {
            limiter: RateLimiter::new(OPS.len(), WARNINGS_PER_SECOND, WINDOW),
        }
    }

    /// Logs the failure `e` of a request of operation `OPS[op]`.
    pub(super) fn report(&self, op: usize, e: &FsError) {
        self.report_at(op, e, Instant::now());
    }

    fn report_at(&self, op: usize, e: &FsError, now: Instant) {
        let name = e.op().or_else(|| OPS.get(op).copied()).unwrap_or("request");
        if e.is_expected() {
            tracing::debug!(
                op = name,
                ino = e.ino(),
                key = e.key(),
                errno = %e.errno(),
                error = %format_args!("{e:#}"),
                "request refused"
            );
            return;
        }
        let Some(suppressed) = self.limiter.admit(op, now) else {
            return;
        };
        tracing::warn!(
            op = name,
            ino = e.ino(),
            key = e.key(),
            errno = %e.errno(),
            error = %format_args!("{e:#}"),
            suppressed = (suppressed > 0).then_some(suppressed),
            "request failed"
        );
    }
}

/// At most `limit` events per `window` for each of a fixed number of keys; counts the others.
#[derive(Debug)]
struct RateLimiter {
    windows: Mutex<Vec<Window>>,
    limit: u32,
    window: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// When the current window started; `None` before the first event.
    start: Option<Instant>,
    admitted: u32,
    /// Events refused since the last one admitted.
    suppressed: u64,
}

impl RateLimiter {
    fn new(keys: usize, limit: u32, window: Duration) -> Self {
        RateLimiter {
            windows: Mutex::new(vec![Window::default(); keys]),
            limit,
            window,
        }
    }

    /// Whether an event of `key` at `now` may be logged: `Some(n)` with the `n` events refused
    /// since the last one admitted (reported once, by this one), `None` when it is refused.
    fn admit(&self, key: usize, now: Instant) -> Option<u64> {
        // Counters only: a poisoned lock holds nothing half-updated that matters.
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.get_mut(key)?;
        let expired = w
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            w.start = Some(now);
            w.admitted = 0;
        }
        if w.admitted >= self.limit {
            w.suppressed += 1;
            return None;
        }
        w.admitted += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::Arc;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::*;
    use crate::errno::Errno;
    use crate::fuse::counters::op;
    use crate::store::StoreError;

    #[test]
    fn floods_are_cut_to_the_limit_and_the_next_line_counts_what_was_left_out() {
        let limiter = RateLimiter::new(2, 3, Duration::from_secs(1));
        let t0 = Instant::now();
        let admitted: Vec<Option<u64>> = (0..100).map(|_| limiter.admit(0, t0)).collect();
        assert_eq!(&admitted[..3], [Some(0); 3]);
        assert!(admitted[3..].iter().all(Option::is_none));
        // Another key has its own budget.
        assert_eq!(limiter.admit(1, t0), Some(0));
        // Still the same window: refused and counted.
        assert_eq!(limiter.admit(0, t0 + Duration::from_millis(999)), None);
        // A new window: the first line reports the 98 left out, once.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limiter.admit(0, t1), Some(98));
        assert_eq!(limiter.admit(0, t1), Some(0));
        assert_eq!(limiter.admit(0, t1), Some(0));
        assert_eq!(limiter.admit(0, t1), None);
        assert_eq!(limiter.admit(0, t1 + Duration::from_secs(5)), Some(1));
        assert_eq!(limiter.admit(7, t1), None, "an unknown key is refused");
    }

    /// One logged event: its level and fields.
    type Line = (Level, BTreeMap<String, String>);

    /// Keeps the events logged while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Line>>>);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0
                .insert(field.name().to_string(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }

        fn record(&self, _: &Id, _: &Record<'_>) {}

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
            lines.push((*event.metadata().level(), fields));
        }

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }

    fn captured(f: impl FnOnce()) -> Vec<Line> {
        let capture = Capture::default();
        tracing::subscriber::with_default(capture.clone(), f);
        let lines = capture.0.lock().unwrap_or_else(|p| p.into_inner());
        lines.clone()
    }

    #[test]
    fn a_failed_get_is_one_warning_with_its_key_and_cause_and_a_miss_is_not() {
        let log = FailureLog::new();
        let t0 = Instant::now();
        let denied = FsError::store(
            "pv/f",
            StoreError::Forbidden(
                "GetObject b-1250000000/pv/f: HTTP 403 AccessDenied: Access Denied. (request id \
                 NjQ1)"
                    .into(),
            ),
        )
        .context("GET bytes 0..4096")
        .during("read", 2);
        let lines = captured(|| {
            log.report_at(op!("read"), &denied, t0);
            log.report_at(
                op!("lookup"),
                &FsError::from(Errno::ENOENT).during("lookup", 1),
                t0,
            );
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (level, fields) = &lines[0];
        assert_eq!(*level, Level::WARN);
        assert_eq!(fields["op"], "read");
        assert_eq!(fields["ino"], "2");
        assert_eq!(fields["key"], "pv/f");
        assert_eq!(fields["errno"], "EACCES(13)");
        assert_eq!(
            fields["error"],
            "GET bytes 0..4096: access denied: GetObject b-1250000000/pv/f: HTTP 403 \
             AccessDenied: Access Denied. (request id NjQ1)"
        );
        assert!(!fields.contains_key("suppressed"));
        // ENOENT of a lookup is normal use: debug, never warn.
        assert_eq!(lines[1].0, Level::DEBUG);
        assert_eq!(lines[1].1["errno"], "ENOENT(2)");
    }

    #[test]
    fn a_failing_loop_logs_the_limit_then_the_count_it_left_out() {
        let log = FailureLog::new();
        let t0 = Instant::now();
        let failed = FsError::store("k", StoreError::Unavailable("HTTP 503 SlowDown".into()));
        let lines = captured(|| {
            for _ in 0..1000 {
                log.report_at(op!("write"), &failed.clone().during("write", 3), t0);
            }
            // Expected refusals are not counted against the warnings.
            log.report_at(op!("write"), &FsError::from(Errno::EBADF), t0);
            log.report_at(op!("read"), &failed.clone().in_op("read"), t0);
            log.report_at(op!("write"), &failed.clone().in_op("write"), t0 + WINDOW);
        });
        let warnings: Vec<&Line> = lines.iter().filter(|(l, _)| *l == Level::WARN).collect();
        let limit = WARNINGS_PER_SECOND as usize;
        assert_eq!(warnings.len(), limit + 2, "{lines:?}");
        assert_eq!(
            warnings[limit].1["op"], "read",
            "another operation's own budget"
        );
        assert_eq!(
            warnings[limit + 1].1["suppressed"],
            (1000 - limit).to_string()
        );
    }
}
