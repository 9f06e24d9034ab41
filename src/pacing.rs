//! How long to wait before looking at a resource again: fixed paces for polling and resyncs, and
//! a per-resource exponential backoff with jitter for failures, reset by the first pass that does
//! not need one. kube-runtime has no per-object backoff (kube-rs/kube#1916), hence this module.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use kube::runtime::reflector::ObjectRef;
use rand::Rng;

use crate::{
    decision::{Backoff, Pace},
    resource::EcsInstance,
};

/// The controller's timing knobs. Defaults suit production; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Polling while the instance changes state (stopping, releasing, initializing).
    pub transition: Duration,
    /// Polling a running instance whose stop is up to someone else (`onDelete.stop: Wait`).
    pub waiting: Duration,
    /// Resync of a steady resource (jittered ±20%).
    pub steady: Duration,
    /// The longest recheck of a stalled resource (jittered ±20%; at once on a spec, Secret or
    /// recheck-annotation change).
    pub recheck: Duration,
    /// The first recheck of a stalled resource; doubles per recheck up to `recheck`.
    pub recheck_first: Duration,
    /// First retry after a transient failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// First retry after throttling.
    pub throttled_base: Duration,
    /// First retry after an unknown error.
    pub slow_base: Duration,
    /// No retry waits longer than this.
    pub backoff_cap: Duration,
    /// A `StopInstance` is not repeated within this while (the instance may still show Running).
    pub stop_grace: Duration,
    /// A `DeleteInstance` whose answer a restart lost is sent again only after this while, so a
    /// release that was accepted can show first (a release takes seconds to disappear).
    pub release_resend: Duration,
    /// An accepted release whose instance is still listed after this long is reported Stalled.
    pub release_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            transition: Duration::from_secs(3),
            waiting: Duration::from_secs(20),
            steady: Duration::from_secs(300),
            recheck: Duration::from_secs(300),
            recheck_first: Duration::from_secs(60),
            backoff_base: Duration::from_secs(2),
            throttled_base: Duration::from_secs(5),
            slow_base: Duration::from_secs(30),
            backoff_cap: Duration::from_secs(600),
            stop_grace: Duration::from_secs(60),
            release_resend: Duration::from_secs(15),
            release_timeout: Duration::from_secs(600),
        }
    }
}

/// Consecutive failures per resource, for the exponential backoff.
#[derive(Default)]
pub struct FailureCounts(Mutex<HashMap<ObjectRef<EcsInstance>, u32>>);

impl FailureCounts {
    /// The wait before the next pass. A backoff pace counts one more failure; any other pace
    /// resets the count.
    pub fn delay(
        &self,
        timings: &Timings,
        object: &ObjectRef<EcsInstance>,
        pace: Pace,
    ) -> Duration {
        let mut counts = self.0.lock().expect("failure counts lock");
        let mut count = || {
            let failures = counts.entry(object.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            *failures
        };
        let base = match pace {
            Pace::Backoff(kind) => {
                let base = match kind {
                    Backoff::Normal => timings.backoff_base,
                    Backoff::Throttled => timings.throttled_base,
                    Backoff::Slow => timings.slow_base,
                };
                return exponential_with_jitter(base, count(), timings.backoff_cap);
            }
            Pace::Recheck => {
                let first = timings.recheck_first.min(timings.recheck);
                let exponent = count().saturating_sub(1).min(30);
                return jittered(first.saturating_mul(1u32 << exponent).min(timings.recheck));
            }
            Pace::Transition => timings.transition,
            Pace::Waiting => timings.waiting,
            Pace::Steady => jittered(timings.steady),
        };
        counts.remove(object);
        base
    }

    /// A resource that is gone needs no count.
    pub fn forget(&self, object: &ObjectRef<EcsInstance>) {
        self.0.lock().expect("failure counts lock").remove(object);
    }
}

/// `base · 2^(failures−1)`, capped, then "equal jitter": half fixed, half random, so retries of
/// many resources that failed together spread out instead of arriving in waves.
fn exponential_with_jitter(base: Duration, failures: u32, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(cap);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// ±20%, so resyncs of resources created together do not stay in lockstep.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> ObjectRef<EcsInstance> {
        ObjectRef::new("web-1").within("default")
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_resets_on_success() {
        let timings = Timings {
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            ..Default::default()
        };
        let counts = FailureCounts::default();
        let failing = Pace::Backoff(Backoff::Normal);
        let mut upper_bounds = Vec::new();
        for _ in 0..8 {
            let delay = counts.delay(&timings, &object(), failing);
            upper_bounds.push(delay);
        }
        for (n, delay) in upper_bounds.iter().enumerate() {
            let full = Duration::from_secs(2 * (1 << n)).min(Duration::from_secs(60));
            assert!(
                *delay >= full / 2 && *delay <= full,
                "failure {}: {delay:?} not in [{:?}, {full:?}]",
                n + 1,
                full / 2
            );
        }
        assert_eq!(
            counts.delay(&timings, &object(), Pace::Transition),
            timings.transition
        );
        let after_reset = counts.delay(&timings, &object(), failing);
        assert!(
            after_reset <= Duration::from_secs(2),
            "the count was reset: {after_reset:?}"
        );
    }

    #[test]
    fn stalled_rechecks_start_at_a_minute_and_back_off_to_the_recheck_period() {
        let timings = Timings::default();
        let counts = FailureCounts::default();
        let rechecks: Vec<Duration> = (0..5)
            .map(|_| counts.delay(&timings, &object(), Pace::Recheck))
            .collect();
        let within = |d: Duration, around: u64| {
            d >= Duration::from_secs(around).mul_f64(0.8)
                && d <= Duration::from_secs(around).mul_f64(1.2)
        };
        for (delay, around) in rechecks.iter().zip([60, 120, 240, 300, 300]) {
            assert!(within(*delay, around), "{delay:?} is not about {around}s");
        }
    }

    #[test]
    fn steady_resync_is_jittered_around_the_period() {
        let timings = Timings::default();
        let counts = FailureCounts::default();
        let delays: Vec<Duration> = (0..50)
            .map(|_| counts.delay(&timings, &object(), Pace::Steady))
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(240) && *d <= Duration::from_secs(360))
        );
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "jitter varies the delay"
        );
    }
}
