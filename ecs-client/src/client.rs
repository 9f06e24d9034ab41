//! The typed ECS calls the controller makes, with the rate limiter, in-client retries and the
//! `DescribeInstances` and `TagResources` batchers around the transport.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use crate::batch::{self, Batcher};
use crate::credentials::Credentials;
use crate::error::{EcsError, ErrorClass, ErrorKind};
use crate::model::{
    DeleteInstance, DescribeInstancesResponse, Instance, Params, RequestId, StopInstance,
    TagInstance, UntagInstance, parse_request_id,
};
use crate::ratelimit::{QuotaScope, RateLimitConfig, RateLimiter};
use crate::retry::{Idempotency, RetryConfig};
use crate::sanitize::clean_text;
use crate::signing::SigningMethod;
use crate::transport::{Answer, Transport, TransportConfig};

/// `DescribeInstances` accepts at most 100 IDs per call and 100 results per page.
pub const MAX_IDS_PER_DESCRIBE: usize = 100;

/// `TagResources` sets one tag set on at most 50 resources per call.
pub const MAX_IDS_PER_TAG: usize = 50;

/// A tag asked for within this long of the previous one is handed a claim shared with others
/// ([`EcsClient::tag_claim`]): tag calls are coming faster than one by one.
const CLAIM_WHEN_WITHIN: Duration = Duration::from_secs(1);

/// How long a batch of tag requests stays open to more (and longer while the rate limiter makes
/// its call wait): long enough that calls carry tens of instances at a hundred adoptions a
/// second, short enough not to slow them (each pass waits it out holding its turn). Measured at
/// 10,000 adoptions: 20 ms gave 637 calls in 86.8 s, 500 ms 352 calls in 129.7 s.
const TAG_BATCH_WINDOW: Duration = Duration::from_millis(100);

/// The prefix of a claim value (a UID never starts so).
pub const CLAIM_PREFIX: &str = "claim-";

/// A retry is only worth starting with at least this much of the call's deadline left.
const MIN_RETRY_TIME: Duration = Duration::from_millis(100);

/// How long after it was asked for a `TagResources` or `UntagResources` attempt may still
/// start. Tags are last-writer-wins (and an untag removes a key whatever its value) and such a
/// call is decided on an observation: one that waited long for its turn could replace or remove
/// a tag that landed since. With the attempt deadline this bounds how long after its
/// observation a tag call can land, which an owner's release waits out (`ownership_settle` in
/// the controller, 60 s, longer than this plus the attempt deadline).
pub const TAG_SEND_WITHIN: Duration = Duration::from_secs(20);

/// The bound on when an attempt of `action` may start, counted from the call's start.
fn send_within(action: &str) -> Option<Duration> {
    matches!(action, "TagResources" | "UntagResources").then_some(TAG_SEND_WITHIN)
}

/// A call's turn under the rate limit, taken ahead of the call ([`EcsClient::take_turn`]): the
/// call then goes at once. A caller that must put something on record just before a call (the
/// controller's release intent) takes the turn first, so the record is not left waiting for it.
#[derive(Debug)]
pub struct Turn {
    scope: QuotaScope,
    action: &'static str,
}

/// Hook for metrics: called once per HTTP attempt.
pub trait RequestObserver: Send + Sync {
    /// `outcome_code` is `None` on success, else the API code or a failure label
    /// (`Timeout`, `ConnectionFailed`, `TransportError`, `InvalidResponse`, `InvalidRequest`).
    fn on_request(&self, action: &str, outcome_code: Option<&str>, latency: Duration);
    /// The API answered `Throttling*`.
    fn on_throttled(&self, action: &str);
}

#[derive(Clone)]
pub struct ClientConfig {
    /// Replaces `https://ecs.<region>.aliyuncs.com` for every region (the simulator). Plain
    /// HTTP only on loopback, unless `allow_plain_http`.
    pub endpoint_override: Option<String>,
    /// Plain HTTP to a non-loopback `endpoint_override`: an explicit opt-in for test setups
    /// (the simulator behind a cluster Service). Signed requests and answers then cross the
    /// network in clear text. Default off.
    pub allow_plain_http: bool,
    pub signing: SigningMethod,
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer; default 10 s.
    pub read_timeout: Duration,
    /// Longest time one call may take, from sending its request to the last byte of the answer,
    /// however the bytes trickle in; default 30 s. In-client retries stay within it too: no
    /// retry is started once it has passed since the call's first attempt, and a retry gets only
    /// what is left. So a slow server fails the call (and every batched lookup waiting on it)
    /// at this deadline.
    pub attempt_deadline: Duration,
    /// Largest success body read, streamed (never buffered beyond this); a larger answer fails
    /// the call with an error naming the limit. Default 4 MiB.
    pub max_body_bytes: usize,
    /// How much of an error body is read (enough for any API error); the rest is never read and
    /// the connection is dropped. Default 64 KiB.
    pub max_error_body_bytes: usize,
    pub rate_limit: RateLimitConfig,
    pub retry: RetryConfig,
    /// How long the batcher collects lookups before it calls `DescribeInstances`; default 20 ms.
    pub batch_window: Duration,
    /// A batch that is not full goes no sooner than this after the previous `DescribeInstances`
    /// of its scope, so lookups arriving one by one share calls; default zero (the controller
    /// sets half its transition poll, at most 1.5 s).
    pub batch_spacing: Duration,
    /// Most IDs one batched `DescribeInstances` carries (1 ..= 100; 1 turns batching off);
    /// default 100.
    pub batch_max_ids: usize,
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint_override: None,
            allow_plain_http: false,
            signing: SigningMethod::default(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            attempt_deadline: Duration::from_secs(30),
            max_body_bytes: 4 << 20,
            max_error_body_bytes: 64 << 10,
            rate_limit: RateLimitConfig::default(),
            retry: RetryConfig::default(),
            batch_window: Duration::from_millis(20),
            batch_spacing: Duration::ZERO,
            batch_max_ids: MAX_IDS_PER_DESCRIBE,
            observer: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint_override", &self.endpoint_override)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("signing", &self.signing)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("attempt_deadline", &self.attempt_deadline)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_error_body_bytes", &self.max_error_body_bytes)
            .field("rate_limit", &self.rate_limit)
            .field("retry", &self.retry)
            .field("batch_window", &self.batch_window)
            .field("batch_spacing", &self.batch_spacing)
            .field("batch_max_ids", &self.batch_max_ids)
            .field("observer", &self.observer.as_ref().map(|_| "<observer>"))
            .finish()
    }
}

/// One per process: every reconciler shares its limiter and batcher. Cheap to clone.
#[derive(Clone)]
pub struct EcsClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsClient").finish_non_exhaustive()
    }
}

struct Inner {
    transport: Transport,
    limiter: RateLimiter,
    retry: RetryConfig,
    attempt_deadline: Duration,
    describes: Batcher<BatchKey, Vec<Instance>>,
    tags: Batcher<TagBatchKey, RequestId>,
    claims: Mutex<Claims>,
    observer: Option<Arc<dyn RequestObserver>>,
}

/// Tag requests share a `TagResources` call when they set the very same tags through the same
/// endpoint, region and credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TagBatchKey {
    target: BatchKey,
    tags: BTreeMap<String, String>,
}

/// The claims [`EcsClient::tag_claim`] hands out.
#[derive(Default)]
struct Claims {
    /// When the last tag was asked for.
    last_asked: Option<Instant>,
    /// The claim being handed out, and the instances it was handed out for.
    current: Option<(String, HashSet<String>)>,
}

/// Lookups share a `DescribeInstances` call only with the same endpoint, region and the very
/// same credentials. Keying on the whole credentials rather than the access key ID alone means
/// a Secret with a wrong secret never rides along on another namespace's valid one.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BatchKey {
    endpoint: String,
    region: String,
    creds: Credentials,
}

impl EcsClient {
    pub fn new(config: ClientConfig) -> Result<Self, EcsError> {
        let invalid = |m: String| EcsError::new("configure", ErrorKind::InvalidRequest, m);
        config.rate_limit.validate().map_err(invalid)?;
        config.retry.validate().map_err(invalid)?;
        if config.attempt_deadline.is_zero() {
            return Err(invalid("attempt_deadline must be positive".to_owned()));
        }
        if config.max_body_bytes < 1024 || config.max_error_body_bytes < 1024 {
            return Err(invalid(
                "max_body_bytes and max_error_body_bytes must be at least 1 KiB".to_owned(),
            ));
        }
        if !(1..=MAX_IDS_PER_DESCRIBE).contains(&config.batch_max_ids) {
            return Err(invalid(format!(
                "batch_max_ids must be between 1 and {MAX_IDS_PER_DESCRIBE}"
            )));
        }
        let transport = Transport::new(TransportConfig {
            endpoint_override: config.endpoint_override.as_deref(),
            allow_plain_http: config.allow_plain_http,
            signing: config.signing,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            max_body_bytes: config.max_body_bytes,
            max_error_body_bytes: config.max_error_body_bytes,
        })
        .map_err(invalid)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                limiter: RateLimiter::new(config.rate_limit),
                retry: config.retry,
                attempt_deadline: config.attempt_deadline,
                describes: Batcher::new(
                    "DescribeInstances",
                    config.batch_window,
                    config.batch_spacing,
                    config.batch_max_ids,
                ),
                tags: Batcher::new(
                    "TagResources",
                    TAG_BATCH_WINDOW,
                    Duration::ZERO,
                    MAX_IDS_PER_TAG,
                ),
                claims: Mutex::default(),
                observer: config.observer,
            }),
        })
    }

    /// The instances among `ids` that exist (absent ones are simply missing; order as the API
    /// returns them). Duplicates are asked once; calls of up to 100 IDs, every page read. An
    /// answer that does not have the shape of a `DescribeInstances` answer is an error, never an
    /// absence. So is an answer that lists any instance ID the call did not ask for, compared
    /// byte for byte (`I-ABC` or `i-abc ` for `i-abc`): such an answer is not about the IDs
    /// asked, and reading it as "not listed" would report an instance absent. An instance
    /// listed twice counts once (its first listing).
    pub async fn describe_instances(
        &self,
        region: &str,
        creds: &Credentials,
        ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        const ACTION: &str = "DescribeInstances";
        let mut seen = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| seen.insert(*id)).collect();
        let mut found = Vec::new();
        let mut answered: HashSet<String> = HashSet::new();
        for chunk in unique.chunks(MAX_IDS_PER_DESCRIBE) {
            let asked: HashSet<&str> = chunk.iter().map(|id| id.as_str()).collect();
            let ids_json = serde_json::to_string(chunk).expect("strings serialize");
            // Instances the answers listed (asked for or not): what paging goes by.
            let mut listed = 0usize;
            for page in 1u32.. {
                let params = Params::from([
                    ("RegionId".to_owned(), region.to_owned()),
                    ("InstanceIds".to_owned(), ids_json.clone()),
                    ("PageSize".to_owned(), MAX_IDS_PER_DESCRIBE.to_string()),
                    ("PageNumber".to_owned(), page.to_string()),
                ]);
                let answer = self
                    .call(
                        region,
                        creds,
                        ACTION,
                        &params,
                        Idempotency::ReadOnly,
                        Instant::now(),
                        None,
                    )
                    .await?;
                let response = DescribeInstancesResponse::parse(&answer.body).map_err(|what| {
                    EcsError::invalid_body_because(
                        ACTION,
                        answer.status,
                        &answer.body,
                        what,
                        &|t| creds.redact(t),
                    )
                })?;
                let on_page = response.instances.instance.len();
                listed += on_page;
                let page = response.instances.instance.into_iter().map(Instance::from);
                take_page(&asked, page, &mut answered, &mut found)
                    .map_err(|stranger| not_asked_for(answer.status, &creds.redact(&stranger)))?;
                // Stop on a short or empty page, at TotalCount, or once every ID was answered
                // (a server can never return more instances than the IDs asked for).
                let done = on_page < MAX_IDS_PER_DESCRIBE
                    || response.total_count.is_none_or(|t| listed as u64 >= t)
                    || listed >= chunk.len();
                if done {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// One instance through the batcher: concurrent lookups for the same region and credentials
    /// within the batch window share `DescribeInstances` calls. `None` = absent.
    pub async fn lookup_instance(
        &self,
        region: &str,
        creds: &Credentials,
        id: &str,
    ) -> Result<Option<Instance>, EcsError> {
        let (key, ready) = self.batch_target("DescribeInstances", region, creds)?;
        let (client, region, creds) = (self.clone(), region.to_owned(), creds.clone());
        let fetch = Box::new(move |ids: Vec<String>| {
            async move { client.describe_instances(&region, &creds, &ids).await }.boxed()
        });
        self.inner.describes.join(key, id, fetch, ready).await
    }

    /// What a batch of `action` is keyed on (requests through the same endpoint, region and
    /// credentials), and when its call would be admitted at once by the rate limiter.
    fn batch_target(
        &self,
        action: &'static str,
        region: &str,
        creds: &Credentials,
    ) -> Result<(BatchKey, batch::Ready), EcsError> {
        let endpoint = self.inner.transport.endpoint(action, region)?;
        let scope = quota_scope(&endpoint.base, region, creds);
        let key = BatchKey {
            endpoint: endpoint.base,
            region: region.to_owned(),
            creds: creds.clone(),
        };
        let limited = self.clone();
        let ready = async move { limited.inner.limiter.wait_for_turn(&scope, action).await };
        Ok((key, ready.boxed()))
    }

    pub async fn stop_instance(
        &self,
        region: &str,
        creds: &Credentials,
        req: &StopInstance,
    ) -> Result<RequestId, EcsError> {
        self.mutate(
            region,
            creds,
            "StopInstance",
            req.params(),
            req.dry_run,
            (Instant::now(), None),
        )
        .await
    }

    pub async fn start_instance(
        &self,
        region: &str,
        creds: &Credentials,
        instance_id: &str,
    ) -> Result<RequestId, EcsError> {
        let params = Params::from([("InstanceId".to_owned(), instance_id.to_owned())]);
        self.mutate(
            region,
            creds,
            "StartInstance",
            params,
            false,
            (Instant::now(), None),
        )
        .await
    }

    pub async fn delete_instance(
        &self,
        region: &str,
        creds: &Credentials,
        req: &DeleteInstance,
    ) -> Result<RequestId, EcsError> {
        self.delete_instance_in(region, creds, req, None).await
    }

    /// `DeleteInstance` in a turn taken before ([`EcsClient::take_turn`]), if any.
    pub async fn delete_instance_in(
        &self,
        region: &str,
        creds: &Credentials,
        req: &DeleteInstance,
        turn: Option<Turn>,
    ) -> Result<RequestId, EcsError> {
        self.mutate(
            region,
            creds,
            "DeleteInstance",
            req.params(),
            req.dry_run,
            (Instant::now(), turn),
        )
        .await
    }

    /// Waits for the turn of a call of `action` under the rate limit and takes it.
    pub async fn take_turn(
        &self,
        region: &str,
        creds: &Credentials,
        action: &'static str,
    ) -> Result<Turn, EcsError> {
        let endpoint = self.inner.transport.endpoint(action, region)?;
        let scope = quota_scope(&endpoint.base, region, creds);
        self.inner.limiter.acquire(&scope, action).await;
        Ok(Turn { scope, action })
    }

    /// `TagResources` on one instance (an existing key is overwritten), through the batcher:
    /// concurrent requests that set the same tags with the same credentials share calls of up
    /// to 50 instances. The bound on when a call may still be sent ([`TAG_SEND_WITHIN`]) counts
    /// from when its batch was opened, by its first request.
    pub async fn tag_instance(
        &self,
        creds: &Credentials,
        req: &TagInstance,
    ) -> Result<RequestId, EcsError> {
        let (target, ready) = self.batch_target("TagResources", &req.region_id, creds)?;
        let key = TagBatchKey {
            target,
            tags: req.tags.clone(),
        };
        let asked = Instant::now();
        let (client, creds, req_for_batch) = (self.clone(), creds.clone(), req.clone());
        let fetch = Box::new(move |ids: Vec<String>| {
            async move {
                let params = req_for_batch.params_for(&ids);
                client
                    .mutate(
                        &req_for_batch.region_id,
                        &creds,
                        "TagResources",
                        params,
                        false,
                        (asked, None),
                    )
                    .await
            }
            .boxed()
        });
        self.inner
            .tags
            .join(key, &req.instance_id, fetch, ready)
            .await
    }

    /// A claim for tagging `instance_id`, when tag calls come faster than one by one: a value
    /// shared by the tags of other instances, so their calls can be batched (one tag set per
    /// `TagResources` call), `None` when this tag may as well go alone. A claim is handed out for
    /// at most 50 instances and never twice for one instance; once the next claim is started, it
    /// is never handed out again. So no two requests for one instance ever share a claim, in
    /// this process; claims are random, so neither across processes.
    pub fn tag_claim(&self, instance_id: &str) -> Option<String> {
        let mut claims = self.inner.claims.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let busy = claims
            .last_asked
            .is_some_and(|at| now.duration_since(at) < CLAIM_WHEN_WITHIN);
        claims.last_asked = Some(now);
        if !busy {
            return None;
        }
        match &mut claims.current {
            Some((claim, ids)) if ids.len() < MAX_IDS_PER_TAG && !ids.contains(instance_id) => {
                ids.insert(instance_id.to_owned());
                Some(claim.clone())
            }
            current => {
                let claim = format!("{CLAIM_PREFIX}{:016x}", rand::random::<u64>());
                *current = Some((claim.clone(), HashSet::from([instance_id.to_owned()])));
                Some(claim)
            }
        }
    }

    /// `UntagResources` on one instance.
    pub async fn untag_instance(
        &self,
        creds: &Credentials,
        req: &UntagInstance,
    ) -> Result<RequestId, EcsError> {
        self.mutate(
            &req.region_id,
            creds,
            "UntagResources",
            req.params(),
            false,
            (Instant::now(), None),
        )
        .await
    }

    /// A call that changes the instance. A dry run that passes comes back from the API as the
    /// error `DryRunOperation`; since passing is what the caller asked about, it is `Ok`.
    async fn mutate(
        &self,
        region: &str,
        creds: &Credentials,
        action: &str,
        params: Params,
        dry_run: bool,
        (asked, turn): (Instant, Option<Turn>),
    ) -> Result<RequestId, EcsError> {
        match self
            .call(
                region,
                creds,
                action,
                &params,
                Idempotency::Mutating,
                asked,
                turn,
            )
            .await
        {
            Ok(answer) => parse_request_id(&answer.body).map_err(|what| {
                EcsError::invalid_body_because(action, answer.status, &answer.body, what, &|t| {
                    creds.redact(t)
                })
            }),
            Err(err) if dry_run && err.code() == Some("DryRunOperation") => {
                Ok(RequestId(err.request_id().unwrap_or_default().to_owned()))
            }
            Err(err) => Err(err),
        }
    }

    /// Rate limit, send, report, and retry what `idempotency` allows. `asked`: when the call
    /// was asked for (the bound of [`TAG_SEND_WITHIN`] counts from then); `turn`: the first
    /// attempt's turn under the rate limit, if taken before.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        region: &str,
        creds: &Credentials,
        action: &str,
        params: &Params,
        idempotency: Idempotency,
        asked: Instant,
        mut turn: Option<Turn>,
    ) -> Result<Answer, EcsError> {
        let inner = &self.inner;
        let endpoint = inner.transport.endpoint(action, region)?;
        // Every attempt, retries included, waits for its turn in this scope's bucket, and a
        // throttled answer slows every caller of the scope at once (see `ratelimit`).
        let scope = quota_scope(&endpoint.base, region, creds);
        let mut failed = 0;
        // The call's budget: one attempt deadline from its first attempt, retries included.
        let mut budget_end: Option<Instant> = None;
        loop {
            match turn.take() {
                Some(taken) if taken.scope == scope && taken.action == action => {}
                _ => {
                    inner.limiter.acquire(&scope, action).await;
                }
            }
            let started = Instant::now();
            if let Some(limit) = send_within(action)
                && started.duration_since(asked) > limit
            {
                return Err(EcsError::new(
                    action,
                    ErrorKind::NotSentInTime,
                    format!(
                        "not sent: its turn under the rate limit came more than {}s after it was asked for",
                        limit.as_secs()
                    ),
                ));
            }
            let end = *budget_end.get_or_insert(started + inner.attempt_deadline);
            let deadline = end.saturating_duration_since(started);
            let result = inner
                .transport
                .send(&endpoint, action, params, creds, deadline)
                .await;
            let latency = started.elapsed();
            let err = match result {
                Ok(answer) => {
                    inner.limiter.on_success(&scope, action);
                    if let Some(o) = &inner.observer {
                        o.on_request(action, None, latency);
                    }
                    return Ok(answer);
                }
                Err(err) => err,
            };
            if let Some(o) = &inner.observer {
                o.on_request(action, Some(err.outcome_label()), latency);
            }
            if err.class() == ErrorClass::Throttled {
                inner.limiter.on_throttled(&scope, action);
                if let Some(o) = &inner.observer {
                    o.on_throttled(action);
                }
            } else if err.kind() == ErrorKind::Api {
                // The API answered without throttling: the quota is fine.
                inner.limiter.on_success(&scope, action);
            }
            failed += 1;
            if failed >= inner.retry.max_attempts || !idempotency.may_retry(&err) {
                return Err(err);
            }
            let delay = inner.retry.backoff(failed, err.class());
            // Never start an attempt that would have (almost) nothing of the budget left.
            if Instant::now() + delay + MIN_RETRY_TIME >= end {
                tracing::debug!(action, attempt = failed, error = %err,
                    "not retrying ECS call: the attempt deadline has passed");
                return Err(err);
            }
            tracing::debug!(action, attempt = failed, ?delay, error = %err, "retrying ECS call");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Adds one page of a `DescribeInstances` answer to `found`, each asked ID once (its first
/// listing counts). `Err` carries the first listed ID that is not in `asked`, byte for byte.
fn take_page(
    asked: &HashSet<&str>,
    page: impl IntoIterator<Item = Instance>,
    answered: &mut HashSet<String>,
    found: &mut Vec<Instance>,
) -> Result<(), String> {
    for instance in page {
        if !asked.contains(instance.instance_id.as_str()) {
            return Err(instance.instance_id);
        }
        if answered.insert(instance.instance_id.clone()) {
            found.push(instance);
        }
    }
    Ok(())
}

/// Longest part of an unexpected instance ID quoted in an error (characters).
const MAX_QUOTED_ID_CHARS: usize = 64;

/// The error for a `DescribeInstances` answer that listed `id` without being asked for it. The
/// ID is quoted (`{:?}`) so that a trailing space or a changed letter case shows, then cleaned.
fn not_asked_for(status: u16, id: &str) -> EcsError {
    let mut quoted: String = id.chars().take(MAX_QUOTED_ID_CHARS).collect();
    if quoted.len() < id.len() {
        quoted.push('…');
    }
    EcsError::with_status(
        "DescribeInstances",
        ErrorKind::InvalidBody,
        status,
        format!(
            "DescribeInstances listed instance {} that was not asked for",
            clean_text(&format!("{quoted:?}"), 2 * MAX_QUOTED_ID_CHARS)
        ),
    )
}

/// The quota a call counts against: ECS throttles per account, region and API (the action is
/// the limiter's second key).
fn quota_scope(endpoint: &str, region: &str, creds: &Credentials) -> QuotaScope {
    QuotaScope {
        endpoint: endpoint.to_owned(),
        region: region.to_owned(),
        access_key_id: creds.access_key_id().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = ClientConfig::default();
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.attempt_deadline, Duration::from_secs(30));
        assert_eq!(c.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(c.max_error_body_bytes, 64 * 1024);
        assert_eq!(c.signing, SigningMethod::Acs3HmacSha256);
        assert_eq!(c.batch_window, Duration::from_millis(20));
        assert_eq!(c.rate_limit.qps, 10.0);
        assert_eq!(c.rate_limit.burst, 20);
        assert_eq!(c.retry.max_attempts, 3);
        assert!(!c.allow_plain_http);
        assert!(EcsClient::new(c).is_ok());
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let cases = [
            ClientConfig {
                endpoint_override: Some("http://192.0.2.1:80".into()),
                ..Default::default()
            },
            ClientConfig {
                rate_limit: RateLimitConfig {
                    qps: 0.0,
                    ..Default::default()
                },
                ..Default::default()
            },
            ClientConfig {
                retry: RetryConfig {
                    max_attempts: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
            ClientConfig {
                attempt_deadline: Duration::ZERO,
                ..Default::default()
            },
            ClientConfig {
                max_body_bytes: 10,
                ..Default::default()
            },
            ClientConfig {
                max_error_body_bytes: 0,
                ..Default::default()
            },
        ];
        for config in cases {
            let err = EcsClient::new(config).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidRequest);
            assert_eq!(err.class(), ErrorClass::Terminal);
        }
    }

    #[test]
    fn plain_http_to_a_non_loopback_endpoint_is_an_explicit_opt_in() {
        let endpoint = Some("http://192.0.2.1:9100".to_owned());
        let refused = EcsClient::new(ClientConfig {
            endpoint_override: endpoint.clone(),
            ..Default::default()
        })
        .expect_err("refused by default");
        assert_eq!(refused.kind(), ErrorKind::InvalidRequest);
        assert!(refused.to_string().contains("plain HTTP"), "{refused}");
        EcsClient::new(ClientConfig {
            endpoint_override: endpoint,
            allow_plain_http: true,
            ..Default::default()
        })
        .expect("accepted with the opt-in");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tag_whose_turn_comes_too_late_is_not_sent() {
        // One call per 25 s: the second call's turn comes after TAG_SEND_WITHIN.
        let client = EcsClient::new(ClientConfig {
            endpoint_override: Some("http://127.0.0.1:9".into()),
            rate_limit: RateLimitConfig {
                qps: 0.04,
                burst: 1,
                min_qps: 0.04,
                start_share: 0.5,
                quota_file: None,
            },
            retry: RetryConfig {
                max_attempts: 1,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let creds = Credentials::new("id", "secret", None);
        let tag = TagInstance {
            region_id: "cn-hangzhou".into(),
            instance_id: "i-abc12345".into(),
            tags: [("k".to_owned(), "v".to_owned())].into(),
        };
        let first = client.tag_instance(&creds, &tag).await.unwrap_err();
        assert_eq!(first.kind(), ErrorKind::Connect, "sent at once: {first}");
        let late = client.tag_instance(&creds, &tag).await.unwrap_err();
        assert_eq!(late.kind(), ErrorKind::NotSentInTime, "{late}");
        assert!(!late.outcome_unknown());
        assert_eq!(late.class(), ErrorClass::Transient);
    }

    #[tokio::test]
    async fn invalid_regions_fail_before_any_request() {
        let client = EcsClient::new(ClientConfig::default()).unwrap();
        let creds = Credentials::new("id", "secret", None);
        let err = client
            .lookup_instance("cn-hangzhou.evil", &creds, "i-abc12345")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("not a valid region ID"), "{err}");
    }

    #[tokio::test]
    async fn describing_nothing_makes_no_call() {
        // The endpoint is unreachable: any call would fail.
        let client = EcsClient::new(ClientConfig {
            endpoint_override: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        })
        .unwrap();
        let creds = Credentials::new("id", "secret", None);
        assert_eq!(
            client.describe_instances("cn-hangzhou", &creds, &[]).await,
            Ok(vec![])
        );
    }

    fn instance(id: &str) -> Instance {
        Instance {
            instance_id: id.to_owned(),
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-g".into(),
            status: crate::model::InstanceStatus::Running,
            charge_type: "PostPaid".into(),
            deletion_protection: false,
            lock_reasons: vec![],
            expired_time: None,
            tags: Default::default(),
        }
    }

    /// `take_page` over one page listing `listed`, for the asked `i-abc12345` and `i-def67890`.
    fn take(listed: &[&str]) -> Result<Vec<String>, String> {
        let asked: HashSet<&str> = ["i-abc12345", "i-def67890"].into();
        let (mut answered, mut found) = (HashSet::new(), Vec::new());
        take_page(
            &asked,
            listed.iter().map(|id| instance(id)),
            &mut answered,
            &mut found,
        )?;
        Ok(found.into_iter().map(|i| i.instance_id).collect())
    }

    #[test]
    fn a_page_of_asked_instances_is_taken_once_each() {
        assert_eq!(
            take(&["i-def67890", "i-abc12345", "i-def67890"]),
            Ok(vec!["i-def67890".to_owned(), "i-abc12345".to_owned()])
        );
        assert_eq!(take(&[]), Ok(vec![]));
    }

    #[test]
    fn an_instance_that_was_not_asked_for_fails_the_page() {
        assert_eq!(
            take(&["i-abc12345", "i-other0001"]),
            Err("i-other0001".to_owned())
        );
    }

    #[test]
    fn a_re_cased_id_is_not_the_id_asked() {
        assert_eq!(take(&["I-ABC12345"]), Err("I-ABC12345".to_owned()));
        assert_eq!(
            take(&["i-def67890", "i-ABC12345"]),
            Err("i-ABC12345".to_owned())
        );
    }

    #[test]
    fn an_id_with_a_trailing_space_is_not_the_id_asked() {
        assert_eq!(take(&["i-abc12345 "]), Err("i-abc12345 ".to_owned()));
        assert_eq!(take(&[" i-abc12345"]), Err(" i-abc12345".to_owned()));
    }

    #[test]
    fn the_not_asked_for_error_quotes_the_id_visibly_and_bounded() {
        let err = not_asked_for(200, "i-abc12345 ");
        assert_eq!(err.kind(), ErrorKind::InvalidBody);
        assert_eq!(err.class(), ErrorClass::Unknown);
        assert_eq!(err.http_status(), Some(200));
        assert_eq!(
            err.message(),
            "DescribeInstances listed instance \"i-abc12345 \" that was not asked for"
        );
        assert_eq!(
            not_asked_for(200, "I-ABC12345").message(),
            "DescribeInstances listed instance \"I-ABC12345\" that was not asked for"
        );
        // A hostile ID: long, with line breaks, escapes and bidi controls.
        let hostile = format!("i-\r\nINFO forged\u{1b}[2J\u{202e}{}", "x".repeat(100_000));
        let err = not_asked_for(200, &hostile);
        let shown = err.to_string();
        assert!(shown.len() < 300, "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(!shown.contains('\u{202e}'), "{shown:?}");
        assert!(shown.contains("that was not asked for"), "{shown}");
    }
}
