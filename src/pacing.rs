//! How long to wait before looking at a resource again: fixed paces for polling and resyncs, and
//! a per-resource exponential backoff with jitter for failures, reset by the first pass that does
//! not need one. kube-runtime has no per-object backoff (kube-rs/kube#1916), hence this module.

use std::time::Duration;

/// How soon to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The instance is changing state: poll fast.
    Transition,
    /// Waiting for someone else to stop a running instance.
    Waiting,
    /// Nothing in flight: slow, jittered resync.
    Steady,
    /// A person must act: recheck from about a minute, backing off to the recheck period (at
    /// once on a spec, Secret or recheck-annotation change).
    Recheck,
    /// Retry with this resource's exponential backoff.
    Backoff(Backoff),
    /// Nothing is due before this long (a release whose outcome is unknown, until its resend
    /// window ends): look then, or after the waiting period if that is sooner, but not sooner
    /// than a transition poll.
    Until(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Transient failures and state conflicts.
    Normal,
    /// The account's API quota is exhausted.
    Throttled,
    /// Unknown errors: retried, but slowly.
    Slow,
}

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
    /// A `DeleteInstance` whose outcome is unknown is sent again only if the instance is still
    /// listed this long after it was sent, so a release that ECS processed can show first.
    pub release_resend: Duration,
    /// With other resources naming the same instance, the owner releases it only once its tag
    /// has held this long (longer than any tag call of theirs can stay in flight).
    pub ownership_settle: Duration,
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
            release_resend: Duration::from_secs(300),
            ownership_settle: Duration::from_secs(60),
            release_timeout: Duration::from_secs(600),
        }
    }
}

/// The wait before the next pass. A backoff or recheck pace counts one more consecutive failure
/// in `failures` (kept per resource by the caller); any other pace resets it. `unit` is a
/// uniform sample of [0, 1) for the jitter, so the simulation can make it deterministic;
/// `since_epoch` is the clock's time, for the transition grid ([`on_transition_grid`]).
pub fn delay(
    timings: &Timings,
    pace: Pace,
    failures: &mut u32,
    unit: f64,
    since_epoch: Duration,
) -> Duration {
    let mut count = || {
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
            return exponential_with_jitter(base, count(), timings.backoff_cap, unit);
        }
        Pace::Recheck => {
            let first = timings.recheck_first.min(timings.recheck);
            let exponent = count().saturating_sub(1).min(30);
            return jittered(
                first.saturating_mul(1u32 << exponent).min(timings.recheck),
                unit,
            );
        }
        Pace::Transition => on_transition_grid(timings.transition, since_epoch),
        Pace::Waiting => timings.waiting,
        Pace::Until(due) => due.min(timings.waiting).max(timings.transition),
        Pace::Steady => jittered(timings.steady, unit),
    };
    *failures = 0;
    base
}

/// A transition poll moved onto a grid shared by every resource: the first multiple of the
/// transition period (counted from the epoch, `since_epoch` now) at least half a period away.
/// Polls of resources released over the same seconds then wake together and their lookups share
/// one `DescribeInstances` batch instead of one each; the wait stays between a half and one and
/// a half periods (a period on average).
pub fn on_transition_grid(period: Duration, since_epoch: Duration) -> Duration {
    let period_ms = period.as_millis().max(1);
    let earliest = since_epoch.as_millis() + period_ms / 2;
    let wake = earliest.div_ceil(period_ms) * period_ms;
    Duration::from_millis((wake - since_epoch.as_millis()) as u64)
}

/// `base · 2^(failures−1)`, capped, then "equal jitter": half fixed, half random, so retries of
/// many resources that failed together spread out instead of arriving in waves.
pub fn exponential_with_jitter(
    base: Duration,
    failures: u32,
    cap: Duration,
    unit: f64,
) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(cap);
    let half = full / 2;
    half + half.mul_f64(unit)
}

/// ±20%, so resyncs of resources created together do not stay in lockstep.
fn jittered(period: Duration, unit: f64) -> Duration {
    period.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn unit() -> f64 {
        rand::rng().random()
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_resets_on_success() {
        let timings = Timings {
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            ..Default::default()
        };
        let mut failures = 0;
        let failing = Pace::Backoff(Backoff::Normal);
        let delays: Vec<Duration> = (0..8)
            .map(|_| delay(&timings, failing, &mut failures, unit(), Duration::ZERO))
            .collect();
        for (n, delay) in delays.iter().enumerate() {
            let full = Duration::from_secs(2 * (1 << n)).min(Duration::from_secs(60));
            assert!(
                *delay >= full / 2 && *delay <= full,
                "failure {}: {delay:?} not in [{:?}, {full:?}]",
                n + 1,
                full / 2
            );
        }
        assert_eq!(
            delay(
                &timings,
                Pace::Transition,
                &mut failures,
                unit(),
                Duration::ZERO
            ),
            timings.transition
        );
        let after_reset = delay(&timings, failing, &mut failures, unit(), Duration::ZERO);
        assert!(
            after_reset <= Duration::from_secs(2),
            "the count was reset: {after_reset:?}"
        );
    }

    #[test]
    fn transition_polls_wake_on_a_shared_grid() {
        let period = Duration::from_secs(3);
        for (now_ms, wait_ms) in [
            (0, 3000),
            (1000, 2000),
            (1499, 1501),
            (1500, 1500),
            (1501, 4499),
            (2999, 3001),
        ] {
            assert_eq!(
                on_transition_grid(period, Duration::from_millis(now_ms)),
                Duration::from_millis(wait_ms),
                "now {now_ms} ms"
            );
        }
        // Resources polled at different moments of one period wake at the same instant.
        let wake = |now: u64| {
            now + on_transition_grid(period, Duration::from_millis(now)).as_millis() as u64
        };
        assert_eq!(wake(10_600), wake(11_900));
    }

    #[test]
    fn stalled_rechecks_start_at_a_minute_and_back_off_to_the_recheck_period() {
        let timings = Timings::default();
        let mut failures = 0;
        let rechecks: Vec<Duration> = (0..5)
            .map(|_| {
                delay(
                    &timings,
                    Pace::Recheck,
                    &mut failures,
                    unit(),
                    Duration::ZERO,
                )
            })
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
        let mut failures = 0;
        let delays: Vec<Duration> = (0..50)
            .map(|_| {
                delay(
                    &timings,
                    Pace::Steady,
                    &mut failures,
                    unit(),
                    Duration::ZERO,
                )
            })
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
