//! Client-side rate limit per (endpoint, action): a token bucket whose rate halves when the API
//! answers `Throttling*` and climbs back while calls succeed.
//!
//! Written by hand because the adaptive part (halve on throttling, +10 % per second of success)
//! is the point; the token bucket itself is a dozen lines. Waiting callers reserve a token (the
//! balance may go negative) and sleep until it is theirs, so they are served in arrival order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Per (endpoint, action) limits. The account quota is shared with everything the customer
/// runs, so the defaults stay well below ECS's published per-API quotas.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Steady rate in calls per second (default 10).
    pub qps: f64,
    /// Calls allowed at once after a quiet period (default 20).
    pub burst: u32,
    /// The rate never drops below this however often the API throttles (default 0.5).
    pub min_qps: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            qps: 10.0,
            burst: 20,
            min_qps: 0.5,
        }
    }
}

impl RateLimitConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return Err(format!("rate limit qps must be positive, got {}", self.qps));
        }
        if self.burst == 0 {
            return Err("rate limit burst must be at least 1".to_owned());
        }
        if !(self.min_qps.is_finite() && self.min_qps > 0.0 && self.min_qps <= self.qps) {
            return Err(format!(
                "rate limit min_qps must be in (0, qps], got {}",
                self.min_qps
            ));
        }
        Ok(())
    }
}

/// Recovery: the rate grows by this factor per whole second since the last adjustment.
const RECOVERY_PER_SECOND: f64 = 1.1;
/// A burst of throttled answers from one quota window counts as one signal.
const THROTTLE_DEBOUNCE: Duration = Duration::from_secs(1);

pub(crate) struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

struct Bucket {
    tokens: f64,
    rate: f64,
    refilled: Instant,
    /// Last change of `rate` (recovery counts whole seconds from here).
    adjusted: Instant,
    throttled: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant, burst: f64) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(burst);
        self.refilled = now;
    }
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(&self, endpoint: &str, action: &str, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry((endpoint.to_owned(), action.to_owned()))
            .or_insert_with(|| Bucket {
                tokens: f64::from(self.config.burst),
                rate: self.config.qps,
                refilled: now,
                adjusted: now,
                throttled: None,
            });
        bucket.refill(now, f64::from(self.config.burst));
        f(bucket)
    }

    /// Waits for this call's turn; returns how long it waited.
    pub(crate) async fn acquire(&self, endpoint: &str, action: &str) -> Duration {
        let wait = self.with_bucket(endpoint, action, |b| {
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            }
        });
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Waits until a call would be admitted at once (all earlier reservations served), without
    /// reserving anything. The batcher keeps a batch open to new lookups until then, so under
    /// limiter pressure batches grow instead of queueing one ID at a time.
    pub(crate) async fn wait_for_turn(&self, endpoint: &str, action: &str) {
        loop {
            let wait = self.with_bucket(endpoint, action, |b| {
                if b.tokens >= 1.0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64((1.0 - b.tokens) / b.rate)
                }
            });
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The API said `Throttling*`: halve the rate (not below `min_qps`) and drop the saved burst.
    pub(crate) fn on_throttled(&self, endpoint: &str, action: &str) {
        let min = self.config.min_qps;
        self.with_bucket(endpoint, action, |b| {
            let now = b.refilled;
            if b.throttled
                .is_some_and(|at| now.duration_since(at) < THROTTLE_DEBOUNCE)
            {
                return;
            }
            b.rate = (b.rate / 2.0).max(min);
            b.tokens = b.tokens.min(0.0);
            b.adjusted = now;
            b.throttled = Some(now);
        });
    }

    /// A call went through: recover 10 % per whole second since the last change, up to `qps`.
    pub(crate) fn on_success(&self, endpoint: &str, action: &str) {
        let max = self.config.qps;
        self.with_bucket(endpoint, action, |b| {
            if b.rate >= max {
                return;
            }
            let secs = b.refilled.duration_since(b.adjusted).as_secs();
            if secs >= 1 {
                let factor = RECOVERY_PER_SECOND.powi(i32::try_from(secs).unwrap_or(i32::MAX));
                b.rate = (b.rate * factor).min(max);
                b.adjusted += Duration::from_secs(secs);
            }
        });
    }

    #[cfg(test)]
    fn current_qps(&self, endpoint: &str, action: &str) -> f64 {
        self.with_bucket(endpoint, action, |b| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(qps: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            qps,
            burst,
            min_qps: 0.5,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_turn_reserves_nothing() {
        let l = limiter(2.0, 1);
        l.acquire("e", "A").await;
        let start = Instant::now();
        l.wait_for_turn("e", "A").await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(
            l.acquire("e", "A").await,
            Duration::ZERO,
            "the turn is still there"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let l = limiter(10.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.acquire("e", "A").await, Duration::ZERO);
        }
        // The next 10 calls are spaced at 100 ms.
        for _ in 0..10 {
            l.acquire("e", "A").await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_endpoint_and_action() {
        let l = limiter(1.0, 1);
        assert_eq!(l.acquire("e", "A").await, Duration::ZERO);
        assert_eq!(l.acquire("e", "B").await, Duration::ZERO);
        assert_eq!(l.acquire("f", "A").await, Duration::ZERO);
        assert_eq!(l.acquire("e", "A").await, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_are_spread_out() {
        let l = std::sync::Arc::new(limiter(10.0, 1));
        let start = Instant::now();
        let tasks: Vec<_> = (0..11)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.acquire("e", "A").await;
                    start.elapsed()
                })
            })
            .collect();
        let mut done: Vec<Duration> = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        done.sort();
        assert_eq!(done[0], Duration::ZERO);
        assert!(done[10] >= Duration::from_millis(999), "{done:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_to_the_floor_and_success_recovers() {
        let l = limiter(10.0, 20);
        l.on_throttled("e", "A");
        assert_eq!(l.current_qps("e", "A"), 5.0);
        // A second rejection from the same window does not count again...
        l.on_throttled("e", "A");
        assert_eq!(l.current_qps("e", "A"), 5.0);
        // ...one a second later does.
        for expected in [2.5, 1.25, 0.625, 0.5, 0.5] {
            tokio::time::advance(Duration::from_secs(1)).await;
            l.on_throttled("e", "A");
            assert_eq!(l.current_qps("e", "A"), expected);
        }
        // Saved burst is gone: the next call waits for a token at the reduced rate.
        assert_eq!(l.acquire("e", "A").await, Duration::from_secs(2));

        // Success recovers 10 % per whole second since the last change (2 s ago, the wait).
        l.on_success("e", "A");
        assert!((l.current_qps("e", "A") - 0.5 * 1.1f64.powi(2)).abs() < 1e-9);
        tokio::time::advance(Duration::from_millis(10_500)).await;
        l.on_success("e", "A");
        assert!((l.current_qps("e", "A") - 0.5 * 1.1f64.powi(12)).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(60)).await;
        l.on_success("e", "A");
        assert_eq!(l.current_qps("e", "A"), 10.0);
    }

    #[test]
    fn config_is_validated() {
        assert!(RateLimitConfig::default().validate().is_ok());
        for bad in [
            RateLimitConfig {
                qps: 0.0,
                ..Default::default()
            },
            RateLimitConfig {
                qps: f64::NAN,
                ..Default::default()
            },
            RateLimitConfig {
                burst: 0,
                ..Default::default()
            },
            RateLimitConfig {
                min_qps: 11.0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
