//! Which failures the client retries by itself, and how long it waits in between.
//!
//! Only what is safe and cheap: read-only calls on transient or throttled failures, mutating
//! calls only when the request provably never reached the server. Everything else goes back to
//! the reconciler, which owns the slower, per-object retry policy.

use std::time::Duration;

use rand::Rng;

use crate::error::{EcsError, ErrorClass, ErrorKind};

/// In-client retries (each attempt is signed again with a fresh nonce and timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in total, including the first (default 3; 1 disables retries).
    pub max_attempts: u32,
    /// First backoff after a transient failure (default 200 ms), doubled per attempt.
    pub base_delay: Duration,
    /// First backoff after `Throttling*` (default 1 s, the length of a quota window).
    pub throttled_base_delay: Duration,
    /// Upper bound of any single backoff (default 5 s).
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            throttled_base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("retry max_attempts must be at least 1".to_owned());
        }
        Ok(())
    }

    /// "Equal jitter": half the exponential delay fixed, half random, so that callers that failed
    /// together do not come back together. `failed_attempts` counts from 1.
    pub(crate) fn backoff(&self, failed_attempts: u32, class: ErrorClass) -> Duration {
        let base = if class == ErrorClass::Throttled {
            self.throttled_base_delay
        } else {
            self.base_delay
        };
        let exp = base
            .saturating_mul(1u32 << failed_attempts.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Whether a call may be repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// `Describe*`: repeating changes nothing.
    ReadOnly,
    /// Stop/Start/Delete, tags: repeating after the server saw the request could act twice, or
    /// hide an answer the reconciler must see. So only a failure to connect is retried, never
    /// one whose outcome is unknown ([`EcsError::outcome_unknown`]).
    Mutating,
}

impl Idempotency {
    pub(crate) fn may_retry(self, err: &EcsError) -> bool {
        match self {
            Idempotency::ReadOnly => {
                matches!(err.class(), ErrorClass::Transient | ErrorClass::Throttled)
            }
            Idempotency::Mutating => err.kind() == ErrorKind::Connect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let config = RetryConfig::default();
        for _ in 0..200 {
            let first = config.backoff(1, ErrorClass::Transient);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
            let second = config.backoff(2, ErrorClass::Transient);
            assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(400));
            let throttled = config.backoff(1, ErrorClass::Throttled);
            assert!(throttled >= Duration::from_millis(500) && throttled <= Duration::from_secs(1));
            let capped = config.backoff(40, ErrorClass::Transient);
            assert!(capped >= Duration::from_millis(2500) && capped <= Duration::from_secs(5));
        }
        let samples: std::collections::HashSet<_> = (0..20)
            .map(|_| config.backoff(3, ErrorClass::Transient))
            .collect();
        assert!(samples.len() > 1, "no jitter");
    }

    #[test]
    fn only_safe_failures_are_retried() {
        let api = |code: &str, status: u16| {
            EcsError::from_response("A", status, format!(r#"{{"Code":"{code}"}}"#).as_bytes())
        };
        let read = Idempotency::ReadOnly;
        let write = Idempotency::Mutating;
        assert!(read.may_retry(&api("Throttling.User", 400)));
        assert!(read.may_retry(&api("ServiceUnavailable", 503)));
        assert!(read.may_retry(&EcsError::from_response("A", 502, b"<html>")));
        assert!(read.may_retry(&EcsError::new("A", ErrorKind::Timeout, "t")));
        assert!(!read.may_retry(&api("SignatureDoesNotMatch", 400)));
        assert!(!read.may_retry(&api("InvalidParameter", 400)));

        assert!(write.may_retry(&EcsError::new("A", ErrorKind::Connect, "refused")));
        assert!(!write.may_retry(&EcsError::new("A", ErrorKind::Timeout, "t")));
        assert!(!write.may_retry(&EcsError::new("A", ErrorKind::Transport, "reset")));
        assert!(!write.may_retry(&api("InternalError", 500)));
        assert!(!write.may_retry(&api("Throttling", 400)));
        assert!(!write.may_retry(&api("IncorrectInstanceStatus", 403)));

        // A mutation that may have been processed is left to the caller, however transient.
        let unknown = [
            EcsError::new("A", ErrorKind::Timeout, "t"),
            EcsError::new("A", ErrorKind::Transport, "reset"),
            api("InternalError", 500),
            api("ServiceUnavailable", 503),
            EcsError::from_response("A", 502, b"<html>"),
            EcsError::invalid_body("A", 200, b"{}", &|t: &str| t.to_owned()),
        ];
        for err in &unknown {
            assert!(err.outcome_unknown(), "{err}");
            assert!(!write.may_retry(err), "{err}");
        }
    }
}
