//! Injected faults: per-(account, action) QPS quotas, 5xx error rates, added latency, dropped
//! connections, and answers dropped after the call was processed. Rules apply after
//! authentication, like the real gateway's flow control.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::errors::EcsError;

/// The codes an `errorRate` rule answers with (gateway errors, docs/ecs-reference.md §2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    #[default]
    ServiceUnavailable,
    InternalError,
    /// 403: what a RAM policy that denies the action answers.
    #[serde(rename = "Forbidden.RAM")]
    ForbiddenRam,
    Throttling,
    #[serde(rename = "Throttling.User")]
    ThrottlingUser,
    #[serde(rename = "Throttling.Api")]
    ThrottlingApi,
}

impl ErrorCode {
    pub fn error(self) -> EcsError {
        match self {
            ErrorCode::ServiceUnavailable => EcsError::service_unavailable(),
            ErrorCode::InternalError => EcsError::internal_error(),
            ErrorCode::ForbiddenRam => EcsError::forbidden_ram(),
            ErrorCode::Throttling => EcsError::throttling(),
            ErrorCode::ThrottlingUser => EcsError::throttling_user(),
            ErrorCode::ThrottlingApi => EcsError::throttling_api(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// `None`: every action.
    #[serde(default)]
    pub action: Option<String>,
    /// `None`: every AccessKeyId.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub throttle_qps: Option<f64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub error_code: ErrorCode,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub drop_rate: Option<f64>,
    /// Process the call, then close the connection without its answer: the client cannot tell
    /// whether the call took effect.
    #[serde(default)]
    pub drop_answer_rate: Option<f64>,
}

/// Ten minutes: longer than any client timeout worth simulating.
const MAX_LATENCY_MS: u64 = 600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRules {
    pub rules: Vec<FaultRule>,
}

impl FaultRules {
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            for (name, rate) in [
                ("errorRate", rule.error_rate),
                ("dropRate", rule.drop_rate),
                ("dropAnswerRate", rule.drop_answer_rate),
            ] {
                if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                    return Err(format!("rules[{i}].{name} must be between 0 and 1"));
                }
            }
            if rule
                .throttle_qps
                .is_some_and(|q| !(q.is_finite() && q > 0.0))
            {
                return Err(format!("rules[{i}].throttleQps must be a positive number"));
            }
            if rule.latency_ms.is_some_and(|ms| ms > MAX_LATENCY_MS) {
                return Err(format!(
                    "rules[{i}].latencyMs must be at most {MAX_LATENCY_MS}"
                ));
            }
        }
        Ok(())
    }
}

/// What the fault rules decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// Close the connection without answering, the call not processed.
    Drop,
    /// Process the call, then close the connection without its answer.
    DropAnswer,
    Fail(EcsError),
}

/// A fixed window of a quota: `admitted` requests since `start`.
#[derive(Debug)]
struct Window {
    start: Instant,
    admitted: u32,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    /// Keyed by (rule index, AccessKeyId, action).
    windows: HashMap<(usize, String, String), Window>,
}

impl Faults {
    pub fn replace(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules;
        self.windows.clear();
    }

    pub fn clear(&mut self) {
        self.replace(Vec::new());
    }

    /// Decides the fate of a request. Every matching rule adds its latency; then, rule by
    /// rule, a drop, the quota and the error rate are checked, the first hit winning. A request
    /// none of them stops is processed, and its answer dropped if any matching rule's
    /// `dropAnswerRate` hits.
    pub fn decide(
        &mut self,
        access_key_id: &str,
        action: &str,
        now: Instant,
        rng: &mut impl Rng,
    ) -> (Duration, Verdict) {
        let mut latency = Duration::ZERO;
        let mut verdict = Verdict::Proceed;
        let mut drop_answer = false;
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.action.as_deref().is_some_and(|a| a != action)
                || rule
                    .access_key_id
                    .as_deref()
                    .is_some_and(|k| k != access_key_id)
            {
                continue;
            }
            latency = latency.saturating_add(Duration::from_millis(rule.latency_ms.unwrap_or(0)));
            if verdict != Verdict::Proceed {
                continue;
            }
            if rule.drop_rate.is_some_and(|rate| rng.random_bool(rate)) {
                verdict = Verdict::Drop;
            } else if let Some(qps) = rule.throttle_qps {
                let key = (index, access_key_id.to_owned(), action.to_owned());
                let window = self.windows.entry(key).or_insert(Window {
                    start: now,
                    admitted: 0,
                });
                if !admit(window, qps, now) {
                    verdict = Verdict::Fail(EcsError::throttling_user());
                }
            }
            if verdict == Verdict::Proceed
                && rule.error_rate.is_some_and(|rate| rng.random_bool(rate))
            {
                verdict = Verdict::Fail(rule.error_code.error());
            }
            drop_answer = drop_answer
                || rule
                    .drop_answer_rate
                    .is_some_and(|rate| rng.random_bool(rate));
        }
        if drop_answer && verdict == Verdict::Proceed {
            verdict = Verdict::DropAnswer;
        }
        (latency, verdict)
    }
}

/// A quota of `qps` as fixed windows: `max(1, floor(qps))` requests per window of that many
/// requests' worth of time (1 s for whole numbers, 1/qps s for a fraction below one).
fn admit(window: &mut Window, qps: f64, now: Instant) -> bool {
    let allowed = qps.floor().max(1.0);
    let length = Duration::from_secs_f64(allowed / qps);
    if now.duration_since(window.start) >= length {
        window.start = now;
        window.admitted = 0;
    }
    if f64::from(window.admitted) < allowed {
        window.admitted += 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn faults(rules: serde_json::Value) -> Faults {
        let rules: FaultRules =
            serde_json::from_value(serde_json::json!({ "rules": rules })).unwrap();
        rules.validate().unwrap();
        let mut faults = Faults::default();
        faults.replace(rules.rules);
        faults
    }

    #[test]
    fn quota_per_account_and_action_in_one_second_windows() {
        let mut f = faults(serde_json::json!([{ "throttleQps": 2.0 }]));
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut decide =
            |ak: &str, action: &str, at: Duration| f.decide(ak, action, t0 + at, &mut rng).1;
        assert_eq!(decide("a", "X", Duration::ZERO), Verdict::Proceed);
        assert_eq!(
            decide("a", "X", Duration::from_millis(10)),
            Verdict::Proceed
        );
        assert_eq!(
            decide("a", "X", Duration::from_millis(20)),
            Verdict::Fail(EcsError::throttling_user())
        );
        assert_eq!(
            decide("b", "X", Duration::from_millis(20)),
            Verdict::Proceed
        );
        assert_eq!(
            decide("a", "Y", Duration::from_millis(20)),
            Verdict::Proceed
        );
        assert_eq!(
            decide("a", "X", Duration::from_millis(1000)),
            Verdict::Proceed
        );
    }

    #[test]
    fn rates_of_one_and_zero_and_action_filter() {
        let mut f = faults(serde_json::json!([
            { "action": "DeleteInstance", "errorRate": 1.0, "errorCode": "InternalError", "latencyMs": 5 },
            { "latencyMs": 7, "dropRate": 0.0 }
        ]));
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let (latency, verdict) = f.decide("a", "DeleteInstance", now, &mut rng);
        assert_eq!(latency, Duration::from_millis(12));
        assert_eq!(verdict, Verdict::Fail(EcsError::internal_error()));
        let (latency, verdict) = f.decide("a", "DescribeInstances", now, &mut rng);
        assert_eq!(
            (latency, verdict),
            (Duration::from_millis(7), Verdict::Proceed)
        );
    }

    #[test]
    fn error_codes_and_access_key_filter() {
        let mut f = faults(serde_json::json!([
            { "action": "TagResources", "accessKeyId": "a", "errorRate": 1.0, "errorCode": "Forbidden.RAM" },
            { "action": "ListTagResources", "errorRate": 1.0, "errorCode": "Throttling.Api" }
        ]));
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let forbidden = f.decide("a", "TagResources", now, &mut rng).1;
        assert_eq!(forbidden, Verdict::Fail(EcsError::forbidden_ram()));
        let Verdict::Fail(error) = forbidden else {
            unreachable!()
        };
        assert_eq!((error.status, error.code.as_str()), (403, "Forbidden.RAM"));
        assert_eq!(
            f.decide("b", "TagResources", now, &mut rng).1,
            Verdict::Proceed
        );
        assert_eq!(
            f.decide("b", "ListTagResources", now, &mut rng).1,
            Verdict::Fail(EcsError::throttling_api())
        );
        for (name, code) in [
            ("Throttling", "Throttling"),
            ("Throttling.User", "Throttling.User"),
            ("InternalError", "InternalError"),
        ] {
            let parsed: ErrorCode = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed.error().code, code);
        }
        assert!(serde_json::from_value::<ErrorCode>(serde_json::json!("Bogus")).is_err());
    }

    #[test]
    fn answers_are_dropped_only_of_calls_that_proceed() {
        let mut f = faults(serde_json::json!([
            { "action": "DeleteInstance", "dropAnswerRate": 1.0 },
            { "action": "StopInstance", "accessKeyId": "a", "dropAnswerRate": 1.0 },
            { "action": "StopInstance", "accessKeyId": "b", "dropAnswerRate": 1.0, "errorRate": 1.0 },
            { "action": "StartInstance", "dropAnswerRate": 1.0 },
            { "action": "StartInstance", "dropRate": 1.0 },
            { "action": "DescribeInstances", "dropAnswerRate": 0.0 }
        ]));
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut decide = |ak: &str, action: &str| f.decide(ak, action, now, &mut rng).1;
        assert_eq!(decide("a", "DeleteInstance"), Verdict::DropAnswer);
        assert_eq!(decide("a", "StopInstance"), Verdict::DropAnswer);
        assert_eq!(decide("c", "StopInstance"), Verdict::Proceed);
        // A call a rule refuses or drops is not processed: there is no answer of it to drop.
        assert_eq!(
            decide("b", "StopInstance"),
            Verdict::Fail(EcsError::service_unavailable())
        );
        assert_eq!(decide("a", "StartInstance"), Verdict::Drop);
        assert_eq!(decide("a", "DescribeInstances"), Verdict::Proceed);
    }

    #[test]
    fn validation() {
        for bad in [
            serde_json::json!({"rules": [{"dropAnswerRate": -0.1}]}),
            serde_json::json!({"rules": [{"errorRate": 1.5}]}),
            serde_json::json!({"rules": [{"throttleQps": 0}]}),
            serde_json::json!({"rules": [{"latencyMs": 600_001}]}),
        ] {
            let rules: FaultRules = serde_json::from_value(bad).unwrap();
            assert!(rules.validate().is_err());
        }
        assert!(
            serde_json::from_value::<FaultRules>(serde_json::json!({"rules": [{"bogus": 1}]}))
                .is_err()
        );
    }
}
