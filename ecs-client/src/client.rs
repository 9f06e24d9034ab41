//! The typed ECS calls the controller makes, with the rate limiter, in-client retries and the
//! `DescribeInstances` batcher around the transport.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::batch::Batcher;
use crate::credentials::Credentials;
use crate::error::{EcsError, ErrorClass, ErrorKind};
use crate::model::{
    DeleteInstance, DescribeInstancesResponse, Instance, Params, RequestId, RequestIdResponse,
    StopInstance,
};
use crate::ratelimit::{RateLimitConfig, RateLimiter};
use crate::retry::{Idempotency, RetryConfig};
use crate::signing::SigningMethod;
use crate::transport::{Answer, Transport, TransportConfig};

/// `DescribeInstances` accepts at most 100 IDs per call and 100 results per page.
pub const MAX_IDS_PER_DESCRIBE: usize = 100;

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
    /// HTTP only on loopback.
    pub endpoint_override: Option<String>,
    pub signing: SigningMethod,
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer; default 10 s.
    pub read_timeout: Duration,
    pub rate_limit: RateLimitConfig,
    pub retry: RetryConfig,
    /// How long the batcher collects lookups before it calls `DescribeInstances`; default 20 ms.
    pub batch_window: Duration,
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint_override: None,
            signing: SigningMethod::default(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            rate_limit: RateLimitConfig::default(),
            retry: RetryConfig::default(),
            batch_window: Duration::from_millis(20),
            observer: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint_override", &self.endpoint_override)
            .field("signing", &self.signing)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("rate_limit", &self.rate_limit)
            .field("retry", &self.retry)
            .field("batch_window", &self.batch_window)
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
    batcher: Batcher<BatchKey>,
    observer: Option<Arc<dyn RequestObserver>>,
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
        let transport = Transport::new(TransportConfig {
            endpoint_override: config.endpoint_override.as_deref(),
            signing: config.signing,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
        })
        .map_err(invalid)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                limiter: RateLimiter::new(config.rate_limit),
                retry: config.retry,
                batcher: Batcher::new(config.batch_window, MAX_IDS_PER_DESCRIBE),
                observer: config.observer,
            }),
        })
    }

    /// The instances among `ids` that exist (absent ones are simply missing; order as the API
    /// returns them). Duplicates are asked once; calls of up to 100 IDs, every page read.
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
        for chunk in unique.chunks(MAX_IDS_PER_DESCRIBE) {
            let ids_json = serde_json::to_string(chunk).expect("strings serialize");
            let mut from_chunk = 0usize;
            for page in 1u32.. {
                let params = Params::from([
                    ("RegionId".to_owned(), region.to_owned()),
                    ("InstanceIds".to_owned(), ids_json.clone()),
                    ("PageSize".to_owned(), MAX_IDS_PER_DESCRIBE.to_string()),
                    ("PageNumber".to_owned(), page.to_string()),
                ]);
                let answer = self
                    .call(region, creds, ACTION, &params, Idempotency::ReadOnly)
                    .await?;
                let response: DescribeInstancesResponse = parse(ACTION, &answer)?;
                let on_page = response.instances.instance.len();
                from_chunk += on_page;
                found.extend(response.instances.instance.into_iter().map(Instance::from));
                // Stop on a short or empty page, at TotalCount, or once every ID was answered
                // (a server can never return more instances than the IDs asked for).
                let done = on_page < MAX_IDS_PER_DESCRIBE
                    || response.total_count.is_none_or(|t| from_chunk as u64 >= t)
                    || from_chunk >= chunk.len();
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
        let endpoint = self.inner.transport.endpoint("DescribeInstances", region)?;
        let key = BatchKey {
            endpoint: endpoint.base,
            region: region.to_owned(),
            creds: creds.clone(),
        };
        let (client, region, creds) = (self.clone(), region.to_owned(), creds.clone());
        let fetch = Box::new(move |ids: Vec<String>| {
            async move { client.describe_instances(&region, &creds, &ids).await }.boxed()
        });
        let (limited, endpoint) = (self.clone(), key.endpoint.clone());
        let ready = async move {
            limited
                .inner
                .limiter
                .wait_for_turn(&endpoint, "DescribeInstances")
                .await
        }
        .boxed();
        self.inner.batcher.lookup(key, id, fetch, ready).await
    }

    pub async fn stop_instance(
        &self,
        region: &str,
        creds: &Credentials,
        req: &StopInstance,
    ) -> Result<RequestId, EcsError> {
        self.mutate(region, creds, "StopInstance", req.params(), req.dry_run)
            .await
    }

    pub async fn start_instance(
        &self,
        region: &str,
        creds: &Credentials,
        instance_id: &str,
    ) -> Result<RequestId, EcsError> {
        let params = Params::from([("InstanceId".to_owned(), instance_id.to_owned())]);
        self.mutate(region, creds, "StartInstance", params, false)
            .await
    }

    pub async fn delete_instance(
        &self,
        region: &str,
        creds: &Credentials,
        req: &DeleteInstance,
    ) -> Result<RequestId, EcsError> {
        self.mutate(region, creds, "DeleteInstance", req.params(), req.dry_run)
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
    ) -> Result<RequestId, EcsError> {
        match self
            .call(region, creds, action, &params, Idempotency::Mutating)
            .await
        {
            Ok(answer) => parse::<RequestIdResponse>(action, &answer).map(|r| r.request_id),
            Err(err) if dry_run && err.code() == Some("DryRunOperation") => {
                Ok(RequestId(err.request_id().unwrap_or_default().to_owned()))
            }
            Err(err) => Err(err),
        }
    }

    /// Rate limit, send, report, and retry what `idempotency` allows.
    async fn call(
        &self,
        region: &str,
        creds: &Credentials,
        action: &str,
        params: &Params,
        idempotency: Idempotency,
    ) -> Result<Answer, EcsError> {
        let inner = &self.inner;
        let endpoint = inner.transport.endpoint(action, region)?;
        let mut failed = 0;
        loop {
            inner.limiter.acquire(&endpoint.base, action).await;
            let started = Instant::now();
            let result = inner.transport.send(&endpoint, action, params, creds).await;
            let latency = started.elapsed();
            let err = match result {
                Ok(answer) => {
                    inner.limiter.on_success(&endpoint.base, action);
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
                inner.limiter.on_throttled(&endpoint.base, action);
                if let Some(o) = &inner.observer {
                    o.on_throttled(action);
                }
            } else if err.kind() == ErrorKind::Api {
                // The API answered without throttling: the quota is fine.
                inner.limiter.on_success(&endpoint.base, action);
            }
            failed += 1;
            if failed >= inner.retry.max_attempts || !idempotency.may_retry(&err) {
                return Err(err);
            }
            let delay = inner.retry.backoff(failed, err.class());
            tracing::debug!(action, attempt = failed, ?delay, error = %err, "retrying ECS call");
            tokio::time::sleep(delay).await;
        }
    }
}

/// A 2xx body we cannot read is reported like any other non-API body.
fn parse<T: DeserializeOwned>(action: &str, answer: &Answer) -> Result<T, EcsError> {
    serde_json::from_slice(&answer.body)
        .map_err(|_| EcsError::invalid_body(action, answer.status, &answer.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = ClientConfig::default();
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.signing, SigningMethod::Acs3HmacSha256);
        assert_eq!(c.batch_window, Duration::from_millis(20));
        assert_eq!(c.rate_limit.qps, 10.0);
        assert_eq!(c.rate_limit.burst, 20);
        assert_eq!(c.retry.max_attempts, 3);
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
        ];
        for config in cases {
            let err = EcsClient::new(config).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidRequest);
            assert_eq!(err.class(), ErrorClass::Terminal);
        }
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
}
