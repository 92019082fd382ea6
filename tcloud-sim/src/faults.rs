//! Fault injection: per-action error rates, rate limits (throttling), delays and stuck transitions, set by
//! `--fault` at start or replaced at run time through `PUT /_sim/faults`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// One rule. `action` is an action name or `*` for every action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub action: String,
    /// Probability in [0, 1] that a call fails with `error_code`.
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_error_code")]
    pub error_code: String,
    /// Calls per second allowed (per action, like the real API); excess calls get
    /// `RequestLimitExceeded`.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// The call succeeds but the transition it starts (ATTACHING, DETACHING, EXPANDING, a CREATING
    /// snapshot, a `creating` CFS file system) does not complete while this rule is in force: the
    /// "stuck attaching" incident.
    #[serde(default)]
    pub stuck: bool,
    /// Milliseconds the answer is held back (slow API, or a timeout when longer than the client's).
    #[serde(default)]
    pub delay_ms: u64,
}

fn default_error_code() -> String {
    "InternalError".to_owned()
}

impl std::str::FromStr for FaultRule {
    type Err = String;

    /// `ACTION:key=value,...` with keys `error_rate`, `error_code`, `rate_limit`, `stuck`, `delay_ms`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let (action, options) = spec.split_once(':').unwrap_or((spec, ""));
        if action.is_empty() {
            return Err(format!(
                "fault {spec:?}: missing ACTION (an action name or *)"
            ));
        }
        let mut rule = FaultRule {
            action: action.to_owned(),
            error_rate: 0.0,
            error_code: default_error_code(),
            rate_limit: None,
            stuck: false,
            delay_ms: 0,
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("fault {spec:?}: {option:?} is not key=value"))?;
            let number = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("fault {spec:?}: {key} must be a number"))
            };
            match key {
                "error_rate" => rule.error_rate = number()?,
                "error_code" => rule.error_code = value.to_owned(),
                "rate_limit" => rule.rate_limit = Some(number()?),
                "delay_ms" => {
                    rule.delay_ms = value.parse::<u64>().map_err(|_| {
                        format!("fault {spec:?}: delay_ms must be a whole number of milliseconds")
                    })?
                }
                "stuck" => {
                    rule.stuck = value
                        .parse::<bool>()
                        .map_err(|_| format!("fault {spec:?}: stuck must be true or false"))?
                }
                _ => {
                    return Err(format!(
                        "fault {spec:?}: unknown key {key:?} (error_rate, error_code, rate_limit, stuck, delay_ms)"
                    ));
                }
            }
        }
        rule.validate()
            .map_err(|e| format!("fault {spec:?}: {e}"))?;
        Ok(rule)
    }
}

impl FaultRule {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("error_rate must be within [0, 1]".into());
        }
        if self.rate_limit.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err("rate_limit must be positive".into());
        }
        Ok(())
    }

    fn applies_to(&self, action: &str) -> bool {
        self.action == "*" || self.action == action
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Faults {
    pub fn new(rules: Vec<FaultRule>) -> Self {
        Faults {
            rules: Mutex::new(rules),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, rules: Vec<FaultRule>) {
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = rules;
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether a rule in force holds the transitions started by `action` (`stuck=true`).
    pub fn stuck(&self, action: &str) -> bool {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|r| r.stuck && r.applies_to(action))
    }

    /// How long the rules in force hold back an answer to `action` (the longest applies).
    pub fn delay(&self, action: &str) -> std::time::Duration {
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let ms = rules
            .iter()
            .filter(|r| r.applies_to(action))
            .map(|r| r.delay_ms)
            .max()
            .unwrap_or(0);
        std::time::Duration::from_millis(ms)
    }

    /// Fails the call when a rule says so. Rate limits are token buckets of one second's worth.
    pub fn check(&self, action: &str) -> Result<(), ApiError> {
        let rules = self.rules();
        for rule in rules.iter().filter(|r| r.applies_to(action)) {
            if let Some(rate) = rule.rate_limit {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let bucket = buckets
                    .entry(format!("{}/{action}", rule.action))
                    .or_insert(Bucket {
                        tokens: rate,
                        last: now,
                    });
                bucket.tokens = (bucket.tokens
                    + now.duration_since(bucket.last).as_secs_f64() * rate)
                    .min(rate);
                bucket.last = now;
                if bucket.tokens < 1.0 {
                    return Err(ApiError::new(
                        "RequestLimitExceeded",
                        format!(
                            "Your current request frequency of {action} exceeds {rate} per second."
                        ),
                    ));
                }
                bucket.tokens -= 1.0;
            }
            if rule.error_rate > 0.0 && fastrand::f64() < rule.error_rate {
                return Err(ApiError::new(
                    &rule.error_code,
                    format!("injected fault for {action}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_specs() {
        let rule: FaultRule = "DescribeDisks:error_rate=0.1,rate_limit=20"
            .parse()
            .unwrap();
        assert_eq!(rule.action, "DescribeDisks");
        assert_eq!(rule.rate_limit, Some(20.0));
        assert_eq!(rule.error_code, "InternalError");
        for bad in [
            ":x=1",
            "A:error_rate=2",
            "A:rate_limit=0",
            "A:bogus=1",
            "A:error_rate",
            "A:stuck=maybe",
            "A:delay_ms=-5",
        ] {
            assert!(bad.parse::<FaultRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stuck_rules_hold_transitions_without_failing_calls() {
        let rule: FaultRule = "AttachDisks:stuck=true".parse().unwrap();
        assert!(rule.stuck);
        assert_eq!(rule.error_rate, 0.0);
        let faults = Faults::new(vec![rule]);
        assert!(
            faults.check("AttachDisks").is_ok(),
            "the call itself succeeds"
        );
        assert!(faults.stuck("AttachDisks"));
        assert!(!faults.stuck("DetachDisks"));
        faults.replace(vec![]);
        assert!(
            !faults.stuck("AttachDisks"),
            "clearing the rule releases the transition"
        );
        let parsed: Vec<FaultRule> =
            serde_json::from_str(r#"[{"action": "*", "stuck": true}]"#).unwrap();
        assert!(Faults::new(parsed).stuck("ResizeDisk"));
    }

    #[test]
    fn always_failing_and_rate_limited_rules() {
        let faults = Faults::new(vec![
            "X:error_rate=1,error_code=ResourceBusy".parse().unwrap(),
        ]);
        assert_eq!(faults.check("X").unwrap_err().code, "ResourceBusy");
        assert!(faults.check("Y").is_ok());
        faults.replace(vec!["*:rate_limit=5".parse().unwrap()]);
        let passed = (0..20).filter(|_| faults.check("Z").is_ok()).count();
        assert_eq!(passed, 5, "a burst gets one second's worth of calls");
        assert_eq!(faults.check("Z").unwrap_err().code, "RequestLimitExceeded");
        assert!(faults.check("W").is_ok(), "limits are per action");
        faults.replace(vec![
            "*:delay_ms=50".parse().unwrap(),
            "V:delay_ms=300".parse().unwrap(),
        ]);
        assert_eq!(
            faults.delay("V").as_millis(),
            300,
            "the longest delay applies"
        );
        assert_eq!(faults.delay("U").as_millis(), 50);
        assert!(
            faults.check("V").is_ok(),
            "a delay alone does not fail the call"
        );
    }
}
