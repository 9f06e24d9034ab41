//! Client-side rate limit per quota scope (endpoint, region, AccessKeyId) and action: a token
//! bucket whose rate starts slow, climbs additively while calls go through, and is cut in half
//! for every caller of the scope at once when the API answers `Throttling*` (AIMD, as TCP does
//! with its congestion window).
//!
//! # Why slow start rather than remembering the learned rate
//!
//! ECS throttles per account, region and API, and that budget is shared with everything else the
//! customer runs (console, Terraform, other controllers). A process that starts at full burst
//! against a quota an earlier process had already learned throttles everybody on the account for
//! a moment, and a controller that is restarted (a crash loop, a rollout, a node drain) does that
//! at every start. Two ways out:
//!
//! * carry the learned rate across restarts (on the leader Lease or in a ConfigMap): that needs
//!   Kubernetes writes on the hot path, RBAC for them, a key per (account, region, action), and
//!   the saved value is stale by the time it is read (other tools' load changes, and the quota
//!   is raised or lowered in Quota Center); a wrong saved value is as bad as none;
//! * start every bucket slow, as Alibaba Cloud advises after a `Throttling` answer (probe at
//!   1 call/s), and climb while answers come back unthrottled. This costs about a second of ramp
//!   after a start (from half the quota to all of it; a process that is not saturating its
//!   quota never notices) and needs no state anywhere.
//!
//! We do the second, and keep one thing across restarts when asked to
//! ([`RateLimitConfig::quota_file`], see `quota_memory`): where a quota was found at a throttling
//! answer within the last hour. It is only ever a reason to start *lower* and probe slowly, so a
//! stale value costs a little speed, never a throttled call. The rules, per bucket:
//!
//! * **Slow start**: a new bucket runs at half the configured quota (`qps / 2`, at least 1/s,
//!   within `[min_qps, qps]`) with room for one call, not at `qps` with `burst` saved. Until the
//!   scope's first throttling answer the rate doubles every second of saturated traffic (as
//!   TCP's slow start does): the full `qps` after about a second, never above it. Half the
//!   quota is what `--ecs-qps` lets an operator promise; a crash loop never exceeds it.
//! * **Additive increase** once throttled: every call the API answers without throttling (errors
//!   such as a 5xx included: the quota let it through) adds `ramp / rate` to the rate, i.e. `ramp` calls/s per
//!   second — but only while the bucket is the bottleneck (a call had to wait for its turn in
//!   the last second), so an idle or lightly used bucket does not climb to a rate it never
//!   tried. A `DescribeInstances` batch waiting for its turn does not count: it grows instead,
//!   and only a full batch that still has to wait asks for a faster rate. Callers already in line are served at the new rate (they re-read it every 100 ms
//!   while it can still climb). `ramp` is `max(1, qps / 10)` calls/s per second up to 90 % of
//!   the quota's last known level, and a fiftieth of that above it: the quota is probed
//!   carefully where it was last found (with a fixed-window quota of q calls/s, any rate above
//!   about q puts q + 1 calls in some window, so every probe past it costs a throttled call; at
//!   1/50 the probe gets back there only after tens of seconds). The quota's level is what the
//!   API let through in the second before the throttling answer, not the rate reached then,
//!   which overshoots by however far the ramp climbed before the answer came back; it is
//!   forgotten once the rate has climbed 25 % above it without a throttle. The saved burst
//!   grows with the rate (one second of calls, at most `burst`) until the scope is first
//!   throttled, and stays at one call after that (a burst into a known-tight fixed-window quota
//!   is exactly what gets throttled).
//! * **Multiplicative decrease, shared**: a `Throttling*` answer halves the rate (never below
//!   `min_qps`) for every caller of the scope at once: the saved tokens are dropped and every
//!   caller already waiting for a turn computed at the old rate queues again at the new one
//!   (an epoch counter tells them), so nobody sends sooner than the new rate allows. A burst of
//!   throttled answers from one quota window counts once (1 s debounce).
//! * **Never more than `qps` in a second**: a turn that has come still waits until fewer than
//!   `qps` calls went out in the last second, so saved tokens plus the refill never put more
//!   than a fixed-window quota of `qps` into one window (they could put twice that).
//! * **Retries wait their turn**: every attempt, the first and every retry (in-client retries of
//!   reads, and the reconciler's later retry of a throttled Stop/Delete, which is a new call),
//!   goes through [`RateLimiter::acquire`], so a throttled mutating call is never repeated sooner
//!   than the limiter allows.
//!
//! The scope is the AccessKeyId rather than the account (RAM users of one account share its
//! quota, and the account is not known from the key): the best available approximation, and
//! per-key buckets never let one tenant's throttling slow another's calls.
//!
//! Written by hand because the adaptive part is the point; the token bucket itself is a dozen
//! lines. Waiting callers reserve a token (the balance may go negative) and sleep until it is
//! theirs, so they are served in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::quota_memory::{QuotaMemory, scope_key};

/// Per quota scope and action limits. The account quota is shared with everything the customer
/// runs, so the defaults stay well below ECS's published per-API quotas.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Highest rate in calls per second (default 10). A new bucket starts at
    /// `start_share` of it (slow start) and climbs to this while calls go through.
    pub qps: f64,
    /// Calls allowed at once after a quiet period, once the rate has climbed (default 20); the
    /// saved burst is one second of calls at the current rate, at most this, and one call
    /// after the scope was throttled.
    pub burst: u32,
    /// The rate never drops below this however often the API throttles (default 0.5).
    pub min_qps: f64,
    /// The share of `qps` a new bucket starts at (default 0.5; at least 1 call/s).
    pub start_share: f64,
    /// Where the quota levels found at throttling answers are kept across restarts (default
    /// none): a new bucket starts below a level found there within the last hour.
    pub quota_file: Option<std::path::PathBuf>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            qps: 10.0,
            burst: 20,
            min_qps: 0.5,
            start_share: 0.5,
            quota_file: None,
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
        if !(0.0..=1.0).contains(&self.start_share) {
            return Err(format!(
                "rate limit start_share must be in [0, 1], got {}",
                self.start_share
            ));
        }
        Ok(())
    }

    /// The rate of a new bucket: half the configured quota (at least 1 call/s, Alibaba Cloud's
    /// advice for probing a quota), within `[min_qps, qps]`.
    fn start_qps(&self) -> f64 {
        (self.qps * self.start_share)
            .max(START_QPS)
            .max(self.min_qps)
            .min(self.qps)
    }

    /// Additive increase in calls/s per second of saturated traffic below the probing zone.
    fn ramp(&self) -> f64 {
        (self.qps / 10.0).max(1.0)
    }
}

/// The slowest start, before the `min_qps`/`qps` bounds.
const START_QPS: f64 = 1.0;
/// Up to this share of the quota's last known level, the rate climbs at full `ramp`...
const PROBE_FROM: f64 = 0.9;
/// ...and above it at this share of `ramp`.
const PROBE_SLOWDOWN: f64 = 0.02;
/// Once the rate has climbed this far above the quota's last known level without a new
/// throttle, the quota was raised (or the throttling came from someone else): forget it.
const FORGET_ABOVE: f64 = 1.25;
/// Multiplicative decrease on `Throttling*`.
const DECREASE: f64 = 0.5;
/// The rate climbs only while some caller had to wait for a turn within this long.
const SATURATED_FOR: Duration = Duration::from_secs(1);
/// Token arithmetic is in floating point: a turn this close counts as come.
const EPSILON: f64 = 1e-9;
/// While the rate may still climb, a waiter re-reads it at least this often.
const RECHECK: Duration = Duration::from_millis(100);
/// ECS quotas count calls per window of this length.
const QUOTA_WINDOW: Duration = Duration::from_secs(1);
/// The window the cap counts calls in: a little longer than the quota's, since calls do not
/// reach ECS in exactly the order and spacing they left (one late call in the next window,
/// one throttling answer, and the rate halves).
const CAP_WINDOW: Duration = Duration::from_millis(1020);
/// A burst of throttled answers from one quota window counts as one signal.
const THROTTLE_DEBOUNCE: Duration = Duration::from_secs(1);

/// Which quota a call counts against: ECS throttles per account, region and API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct QuotaScope {
    /// `scheme://host[:port]` (one per region with the public endpoints; the same for every
    /// region with an override, hence the region too).
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
}

pub(crate) struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<(QuotaScope, String), Bucket>>,
    memory: Option<QuotaMemory>,
}

fn memory_key(scope: &QuotaScope, action: &str) -> String {
    scope_key(&scope.endpoint, &scope.region, &scope.access_key_id, action)
}

struct Bucket {
    tokens: f64,
    rate: f64,
    refilled: Instant,
    /// Where the quota was found at the last throttling answer: what it let through in the
    /// second before (`None`: never throttled, or since climbed well past it).
    ceiling: Option<f64>,
    throttled: Option<Instant>,
    /// Counts throttling signals; a turn taken in an older epoch is void.
    epoch: u64,
    /// Turns ever taken. `tokens + taken` is the credit the bucket has handed out so far: turn
    /// `n` may go once it reaches `n` (so a faster rate serves the waiting turns sooner).
    taken: u64,
    /// Last time a caller had to wait for a turn: the bucket, not the demand, sets the pace.
    limited: Option<Instant>,
    /// When the calls the API answered without throttling within the last quota window were
    /// answered (at most about `qps` entries).
    answered: VecDeque<Instant>,
    /// When the calls of the last quota window were let through (at most `qps` entries).
    sent: VecDeque<Instant>,
}

/// Drops the times at the front of `times` (oldest first) that are `window` or more before `now`.
fn drop_older(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= window)
    {
        times.pop_front();
    }
}

impl Bucket {
    /// How long until one more call fits in the quota window: never more than `qps` calls in
    /// any second, so saved tokens (a burst after a quiet moment) and the refill together
    /// cannot exceed a fixed-window quota of `qps` (they could put twice that in one window).
    fn window_wait(&mut self, now: Instant, qps: f64) -> Duration {
        drop_older(&mut self.sent, now, CAP_WINDOW);
        if (self.sent.len() as f64) < qps.floor().max(1.0) {
            return Duration::ZERO;
        }
        let oldest = *self.sent.front().expect("a full window holds calls");
        (oldest + CAP_WINDOW).saturating_duration_since(now)
    }

    /// Room for saved calls: a second's worth at the current rate (at most `burst`) until the
    /// scope is throttled, then a single call.
    fn capacity(&self, burst: f64) -> f64 {
        if self.ceiling.is_some() {
            1.0
        } else {
            self.rate.clamp(1.0, burst.max(1.0))
        }
    }

    fn forget_old_answers(&mut self, now: Instant) {
        drop_older(&mut self.answered, now, QUOTA_WINDOW);
    }

    fn refill(&mut self, now: Instant, burst: f64) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity(burst));
        self.refilled = now;
    }
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        Self {
            memory: config.quota_file.clone().map(QuotaMemory::open),
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(
        &self,
        scope: &QuotaScope,
        action: &str,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> T {
        let now = Instant::now();
        let burst = f64::from(self.config.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (scope.clone(), action.to_owned());
        let bucket = buckets.entry(key).or_insert_with(|| {
            // A level a previous process found: start below it, and probe past it slowly.
            let level = self
                .memory
                .as_ref()
                .and_then(|m| m.level(&memory_key(scope, action)));
            let start = self.config.start_qps();
            Bucket {
                tokens: 1.0,
                rate: level.map_or(start, |level| {
                    start
                        .min(level * PROBE_FROM)
                        .max(self.config.min_qps)
                        .min(self.config.qps)
                }),
                refilled: now,
                ceiling: level,
                throttled: None,
                epoch: 0,
                taken: 0,
                limited: None,
                answered: VecDeque::new(),
                sent: VecDeque::new(),
            }
        });
        bucket.refill(now, burst);
        f(bucket)
    }

    /// Waits for this call's turn; returns how long it waited. Turns are served in the order
    /// they were taken, at the bucket's current rate: a waiter re-reads the rate at least every
    /// [`RECHECK`] while the rate can still climb, so a ramp-up speeds up callers already in
    /// line, and a caller whose turn was taken before a throttling answer cut the rate takes a
    /// new one at the new rate.
    pub(crate) async fn acquire(&self, scope: &QuotaScope, action: &str) -> Duration {
        let started = Instant::now();
        loop {
            // Our turn comes once the bucket's credit (tokens + turns ever taken) reaches it.
            let (turn, epoch) = self.with_bucket(scope, action, |b| {
                b.tokens -= 1.0;
                b.taken += 1;
                (b.taken, b.epoch)
            });
            let served = loop {
                let max = self.config.qps;
                let wait = self.with_bucket(scope, action, |b| {
                    if b.epoch != epoch {
                        return None;
                    }
                    let missing = turn as f64 - (b.tokens + b.taken as f64);
                    if missing <= EPSILON {
                        return Some(Duration::ZERO);
                    }
                    let wait = Duration::from_secs_f64(missing / b.rate);
                    // Held back until its turn: the bucket sets the pace at least until then.
                    b.limited = Some(b.refilled + wait);
                    Some(if b.rate < max {
                        wait.min(RECHECK)
                    } else {
                        wait
                    })
                });
                match wait {
                    None => break false,
                    Some(wait) if wait.is_zero() => break true,
                    Some(wait) => tokio::time::sleep(wait).await,
                }
            };
            // The turn has come; it goes once the quota window has room, unless a throttling
            // answer voided it meanwhile.
            if !served {
                continue;
            }
            loop {
                let wait = self.with_bucket(scope, action, |b| {
                    if b.epoch != epoch {
                        return None;
                    }
                    let now = b.refilled;
                    let wait = b.window_wait(now, self.config.qps);
                    if wait.is_zero() {
                        b.sent.push_back(now);
                    }
                    Some(wait)
                });
                match wait {
                    None => break,
                    Some(wait) if wait.is_zero() => return started.elapsed(),
                    Some(wait) => tokio::time::sleep(wait).await,
                }
            }
        }
    }

    /// Waits until a call would be admitted at once (all earlier reservations served), without
    /// reserving anything. The batcher keeps a batch open to new lookups until then, so under
    /// limiter pressure batches grow instead of queueing one ID at a time.
    ///
    /// Waiting here does not make the rate climb: a batch that is not full yet is served by
    /// growing, not by more calls. A full batch goes straight to [`RateLimiter::acquire`], and
    /// waiting there does.
    pub(crate) async fn wait_for_turn(&self, scope: &QuotaScope, action: &str) {
        let max = self.config.qps;
        loop {
            let wait = self.with_bucket(scope, action, |b| {
                if b.tokens >= 1.0 - EPSILON {
                    let now = b.refilled;
                    return b.window_wait(now, self.config.qps);
                }
                let wait = Duration::from_secs_f64((1.0 - b.tokens) / b.rate);
                if b.rate < max {
                    wait.min(RECHECK)
                } else {
                    wait
                }
            });
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The API said `Throttling*`: halve the rate (not below `min_qps`) for every caller of the
    /// scope, drop the saved tokens and void the turns already handed out.
    pub(crate) fn on_throttled(&self, scope: &QuotaScope, action: &str) {
        let min = self.config.min_qps;
        let level = self.with_bucket(scope, action, |b| {
            let now = b.refilled;
            if b.throttled
                .is_some_and(|at| now.duration_since(at) < THROTTLE_DEBOUNCE)
            {
                return None;
            }
            // Where the quota is: what it let through over the last second (a quota window),
            // when the bucket sent that much; not the rate reached, which overshoots by
            // however much the ramp climbed before the first throttled answer came back.
            b.forget_old_answers(now);
            let let_through = b.answered.len() as f64;
            b.ceiling = Some(if let_through >= 1.0 {
                b.rate.min(let_through)
            } else {
                b.rate
            });
            b.rate = (b.rate * DECREASE).max(min);
            b.tokens = 0.0;
            b.throttled = Some(now);
            b.epoch += 1;
            b.ceiling
        });
        if let (Some(memory), Some(level)) = (&self.memory, level) {
            memory.set(memory_key(scope, action), Some(level));
        }
    }

    /// The API answered without throttling: while the bucket is the bottleneck, climb by
    /// `ramp` calls/s per second of such answers (a fiftieth of that near the last throttle).
    pub(crate) fn on_success(&self, scope: &QuotaScope, action: &str) {
        let (max, ramp) = (self.config.qps, self.config.ramp());
        let forgotten = self.with_bucket(scope, action, |b| {
            let now = b.refilled;
            b.forget_old_answers(now);
            b.answered.push_back(now);
            let saturated = b
                .limited
                .is_some_and(|at| b.refilled.saturating_duration_since(at) < SATURATED_FOR);
            if b.rate >= max || !saturated {
                return false;
            }
            b.rate = match b.ceiling {
                // Never throttled: double every second of saturated traffic.
                None if b.throttled.is_none() => b.rate + std::f64::consts::LN_2,
                Some(ceiling) if b.rate >= ceiling * PROBE_FROM => {
                    b.rate + ramp * PROBE_SLOWDOWN / b.rate
                }
                _ => b.rate + ramp / b.rate,
            }
            .min(max);
            let forget = b.ceiling.is_some_and(|c| b.rate >= c * FORGET_ABOVE);
            if forget {
                b.ceiling = None;
            }
            forget
        });
        if let (Some(memory), true) = (&self.memory, forgotten) {
            memory.set(memory_key(scope, action), None);
        }
    }

    #[cfg(test)]
    fn current_qps(&self, scope: &QuotaScope, action: &str) -> f64 {
        self.with_bucket(scope, action, |b| b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limiter(qps: f64, burst: u32) -> RateLimiter {
        // Starting at 1 call/s, so the ramp's mechanics show from the bottom.
        RateLimiter::new(RateLimitConfig {
            qps,
            burst,
            min_qps: 0.5,
            start_share: 0.0,
            quota_file: None,
        })
    }

    fn scope(key: &str) -> QuotaScope {
        QuotaScope {
            endpoint: "http://127.0.0.1:1".to_owned(),
            region: "cn-hangzhou".to_owned(),
            access_key_id: key.to_owned(),
        }
    }

    /// Calls as fast as the limiter lets them, every one answered without throttling, for
    /// `for_` of (paused) time; returns how many went out.
    async fn saturate(l: &RateLimiter, s: &QuotaScope, action: &str, for_: Duration) -> usize {
        let end = Instant::now() + for_;
        let mut calls = 0;
        while Instant::now() < end {
            l.acquire(s, action).await;
            l.on_success(s, action);
            calls += 1;
        }
        calls
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_bucket_starts_at_one_call_per_second_without_burst() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        let start = Instant::now();
        assert_eq!(l.acquire(&s, "A").await, Duration::ZERO);
        // Not 20 saved calls: the next one waits a whole second.
        assert_eq!(l.acquire(&s, "A").await, Duration::from_secs(1));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(l.current_qps(&s, "A"), 1.0);
        // Never above the configured rate, never below min_qps.
        let slow = RateLimiter::new(RateLimitConfig {
            qps: 0.25,
            burst: 1,
            min_qps: 0.1,
            start_share: 0.0,
            quota_file: None,
        });
        assert_eq!(slow.current_qps(&s, "A"), 0.25);
        let floor = RateLimiter::new(RateLimitConfig {
            qps: 10.0,
            burst: 1,
            min_qps: 2.0,
            start_share: 0.0,
            quota_file: None,
        });
        assert_eq!(floor.current_qps(&s, "A"), 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn saturated_success_doubles_the_rate_up_to_qps() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        // Never throttled: the rate doubles every second, 2^t after t seconds.
        let calls = saturate(&l, &s, "A", Duration::from_secs(3)).await;
        let rate = l.current_qps(&s, "A");
        assert!((5.0..=9.0).contains(&rate), "{rate}");
        // About ∫2^t dt over 3 s = 10 calls, not 30 (10/s) plus a 20-call burst.
        assert!((6..=12).contains(&calls), "{calls}");
        saturate(&l, &s, "A", Duration::from_secs(10)).await;
        assert_eq!(l.current_qps(&s, "A"), 10.0);
        // Having climbed, the bucket saves up to a second of calls (at most `burst`).
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..10 {
            assert_eq!(l.acquire(&s, "A").await, Duration::ZERO);
        }
        // ...but never more than `qps` in a second (counted over 1.02 s): the eleventh waits.
        assert_eq!(l.acquire(&s, "A").await, Duration::from_millis(1020));
    }

    #[test]
    fn by_default_a_new_bucket_starts_at_half_the_quota() {
        let s = scope("k");
        let at = |qps: f64| {
            RateLimiter::new(RateLimitConfig {
                qps,
                ..Default::default()
            })
        };
        assert_eq!(at(10.0).current_qps(&s, "A"), 5.0);
        assert_eq!(at(50.0).current_qps(&s, "A"), 25.0);
        assert_eq!(
            at(1.5).current_qps(&s, "A"),
            1.0,
            "at least one call a second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_limiter_starts_below_the_level_found_before() {
        let path =
            std::env::temp_dir().join(format!("ratelimit-quota-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let config = RateLimitConfig {
            qps: 10.0,
            quota_file: Some(path.clone()),
            ..Default::default()
        };
        let s = scope("k");
        let first = RateLimiter::new(config.clone());
        saturate(&first, &s, "A", Duration::from_secs(3)).await;
        first.on_throttled(&s, "A");
        let level = first.with_bucket(&s, "A", |b| b.ceiling).expect("a level");
        // The next process: below the level at once, and no doubling past it.
        let restarted = RateLimiter::new(config);
        assert!((restarted.current_qps(&s, "A") - (5.0f64).min(level * 0.9)).abs() < 1e-9);
        saturate(&restarted, &s, "A", Duration::from_secs(5)).await;
        assert!(
            restarted.current_qps(&s, "A") < level,
            "probing slowly near {level}"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_ever_holds_more_than_qps_calls() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        saturate(&l, &s, "A", Duration::from_secs(10)).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        let start = Instant::now();
        let mut sent = Vec::new();
        while start.elapsed() < Duration::from_secs(5) {
            l.acquire(&s, "A").await;
            l.on_success(&s, "A");
            sent.push(start.elapsed());
        }
        for (i, at) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|later| **later < *at + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 10,
                "{in_window} calls in the second from {at:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_ramp_speeds_up_callers_already_waiting() {
        let (l, s) = (Arc::new(limiter(10.0, 20)), scope("k"));
        let start = Instant::now();
        // Thirty callers at once (a restarted controller with a backlog), each answered OK.
        let callers: Vec<_> = (0..30)
            .map(|_| {
                let (l, s) = (l.clone(), s.clone());
                tokio::spawn(async move {
                    l.acquire(&s, "A").await;
                    l.on_success(&s, "A");
                    start.elapsed()
                })
            })
            .collect();
        let mut last = Duration::ZERO;
        for c in callers {
            last = last.max(c.await.unwrap());
        }
        // At a fixed 1/s the last one would go at 29 s; doubling every second up to 10/s (13
        // calls in the 3.3 s that takes), the turns already handed out are served faster too:
        // the last at about 5 s.
        assert!(
            last >= Duration::from_millis(4500) && last <= Duration::from_secs(6),
            "{last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waiting_for_its_turn_does_not_make_the_rate_climb() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        for _ in 0..20 {
            // The batcher: wait for the turn (the batch grows meanwhile), then one call.
            l.wait_for_turn(&s, "DescribeInstances").await;
            assert_eq!(l.acquire(&s, "DescribeInstances").await, Duration::ZERO);
            l.on_success(&s, "DescribeInstances");
        }
        assert_eq!(l.current_qps(&s, "DescribeInstances"), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_that_is_not_the_bottleneck_does_not_climb() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        for _ in 0..30 {
            assert_eq!(l.acquire(&s, "A").await, Duration::ZERO);
            l.on_success(&s, "A");
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert_eq!(l.current_qps(&s, "A"), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_for_every_caller_at_once() {
        let (l, s) = (Arc::new(limiter(10.0, 20)), scope("k"));
        saturate(&l, &s, "A", Duration::from_secs(20)).await;
        assert_eq!(l.current_qps(&s, "A"), 10.0);
        // Ten callers queue at 10/s: turns at 0.1 s, 0.2 s, ... 1.0 s.
        let start = Instant::now();
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let (l, s) = (l.clone(), s.clone());
                tokio::spawn(async move {
                    l.acquire(&s, "A").await;
                    start.elapsed()
                })
            })
            .collect();
        tokio::task::yield_now().await;
        // One of them is answered Throttling at once: every turn handed out is void, and the
        // whole queue goes again at 5/s with no saved tokens.
        l.on_throttled(&s, "A");
        assert_eq!(l.current_qps(&s, "A"), 5.0);
        // A second throttled answer from the same quota window does not count again.
        l.on_throttled(&s, "A");
        assert_eq!(l.current_qps(&s, "A"), 5.0);
        let mut done = Vec::new();
        for w in waiters {
            done.push(w.await.unwrap());
        }
        done.sort();
        for (i, at) in done.iter().enumerate() {
            // Nobody earlier than (i + 1) turns at the new rate.
            let earliest = Duration::from_millis(200 * (i as u64 + 1));
            assert!(*at >= earliest, "caller {i} went at {at:?}: {done:?}");
        }
        // One a second later does, down to the floor.
        for expected in [2.5, 1.25, 0.625, 0.5, 0.5] {
            tokio::time::advance(Duration::from_secs(1)).await;
            l.on_throttled(&s, "A");
            assert_eq!(l.current_qps(&s, "A"), expected);
        }
        // Other actions and other keys are other quotas.
        assert_eq!(l.current_qps(&s, "B"), 1.0);
        assert_eq!(l.current_qps(&scope("other"), "A"), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_retried_only_when_the_limiter_allows() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        saturate(&l, &s, "DeleteInstance", Duration::from_secs(20)).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        // Ten saved calls; the first is answered Throttling.
        assert_eq!(l.acquire(&s, "DeleteInstance").await, Duration::ZERO);
        l.on_throttled(&s, "DeleteInstance");
        // Its retry (any retry is a new call through acquire) does not use the nine saved
        // calls: it waits one turn at the halved rate, and so does the next one.
        assert_eq!(
            l.acquire(&s, "DeleteInstance").await,
            Duration::from_millis(200)
        );
        assert_eq!(
            l.acquire(&s, "DeleteInstance").await,
            Duration::from_millis(200)
        );
        // After a throttle the bucket saves one call at most, however long it idles.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(l.acquire(&s, "DeleteInstance").await, Duration::ZERO);
        assert!(l.acquire(&s, "DeleteInstance").await > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_throttle_the_rate_climbs_back_fast_then_probes_slowly() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        saturate(&l, &s, "A", Duration::from_secs(2)).await;
        let at = l.current_qps(&s, "A");
        l.on_throttled(&s, "A");
        assert!((l.current_qps(&s, "A") - at / 2.0).abs() < 1e-9);
        // Back near where it was throttled within a few seconds (90 % of what went through in
        // the last second, which is a little less than the rate reached)...
        saturate(&l, &s, "A", Duration::from_secs(3)).await;
        let recovered = l.current_qps(&s, "A");
        assert!(recovered >= at * 0.7, "{recovered} < 0.7 × {at}");
        // ...then +0.02/s: ten seconds later still below where it was throttled.
        saturate(&l, &s, "A", Duration::from_secs(10)).await;
        let probed = l.current_qps(&s, "A");
        assert!(probed > recovered && probed < at, "{probed} vs {at}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_turn_reserves_nothing() {
        let (l, s) = (limiter(2.0, 1), scope("k"));
        l.acquire(&s, "A").await;
        let start = Instant::now();
        l.wait_for_turn(&s, "A").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(
            l.acquire(&s, "A").await,
            Duration::ZERO,
            "the turn is still there"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_scope_and_action() {
        let l = limiter(1.0, 1);
        let (e, f) = (scope("k"), scope("other"));
        let mut g = scope("k");
        g.region = "cn-beijing".to_owned();
        assert_eq!(l.acquire(&e, "A").await, Duration::ZERO);
        assert_eq!(l.acquire(&e, "B").await, Duration::ZERO);
        assert_eq!(l.acquire(&f, "A").await, Duration::ZERO);
        assert_eq!(l.acquire(&g, "A").await, Duration::ZERO);
        // One call a second, counted over a little more than a second.
        assert_eq!(l.acquire(&e, "A").await, Duration::from_millis(1020));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_are_spread_out() {
        let (l, s) = (Arc::new(limiter(10.0, 1)), scope("k"));
        let start = Instant::now();
        let tasks: Vec<_> = (0..11)
            .map(|_| {
                let (l, s) = (l.clone(), s.clone());
                tokio::spawn(async move {
                    l.acquire(&s, "A").await;
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
        // At the starting rate of 1/s.
        assert!(done[10] >= Duration::from_secs(10), "{done:?}");
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

    /// Against a fixed-window quota of 5 calls a second (as ECS and the simulator count), from a
    /// cold start: the limiter finds the quota with a couple of throttled calls and then stays
    /// just under it.
    #[tokio::test(start_paused = true)]
    async fn a_fixed_window_quota_is_learned_with_few_throttled_calls() {
        let (l, s) = (limiter(10.0, 20), scope("k"));
        let start = Instant::now();
        let (mut window, mut in_window, mut throttled) = (0u64, 0u32, 0);
        for _ in 0..200 {
            l.acquire(&s, "A").await;
            tokio::time::advance(Duration::from_millis(3)).await;
            let w = start.elapsed().as_secs();
            if w != window {
                (window, in_window) = (w, 0);
            }
            if in_window >= 5 {
                throttled += 1;
                l.on_throttled(&s, "A");
            } else {
                in_window += 1;
                l.on_success(&s, "A");
            }
        }
        let rate = l.current_qps(&s, "A");
        // The doubling overshoots the first window by a call or two more than a linear climb.
        assert!(throttled <= 4, "{throttled} of 200 calls throttled");
        assert!((4.0..=5.5).contains(&rate), "{rate}");
        // 200 calls at 5/s take 40 s; slow start and the probing cost a few more.
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(50), "{elapsed:?}");
    }
}
