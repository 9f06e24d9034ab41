//! Credentials that renew themselves: one [`CredentialsProvider`] shared by every caller.
//!
//! - [`CredentialsProvider::credentials`] returns a snapshot (the [`Credentials`] every request
//!   is signed with, so a renewal never happens in the middle of a request).
//! - Temporary credentials are renewed before they expire: once fewer than the larger of
//!   3 minutes and 20 % of their remaining lifetime (plus up to a quarter more, at random, so
//!   that many processes do not renew together) remain. The caller that notices it starts the
//!   renewal in the background and goes on with the current snapshot; only a caller without a
//!   valid snapshot waits.
//! - One renewal at a time (single flight): however many callers wait, one STS or metadata
//!   call is made.
//! - A failed renewal keeps the current snapshot in service until it really expires, and is
//!   retried with jittered exponential backoff (0.5–1 s doubling up to 60 s), never on every
//!   call; once the snapshot has expired, callers get the last renewal's error, which names
//!   the source and what failed.
//! - [`CredentialsProvider::renew`] is for a request that ECS refused with
//!   `InvalidSecurityToken.Expired`: it renews only if the rejected credentials are still the
//!   current ones, so many callers holding the same rejected snapshot cause one renewal.
//!
//! [`default_chain`] picks the source as the official credentials libraries do
//! (`docs/credentials-chain.md`); [`assume_role`] assumes a role with another provider's
//! credentials.

mod answer;
mod chain;
mod error;
mod http;
mod metadata;
mod profile;
mod source;
mod sts;
mod uri;

#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rand::Rng;
use tokio::time::Instant;

use crate::credentials::Credentials;

pub use chain::{
    ChainOptions, ENV_CREDENTIALS_FILE, ENV_CREDENTIALS_URI, ENV_ECS_METADATA,
    ENV_ECS_METADATA_DISABLED, ENV_IMDSV1_DISABLED, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE,
    ENV_PROFILE, ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME, ENV_STS_ENDPOINT, ENV_STS_REGION,
    ENV_VPC_ENDPOINT_ENABLED, assume_role, default_chain, default_chain_from,
};
pub use error::{ProviderError, ProviderErrorKind};
pub use source::{ConfiguredBy, ProviderSource, SourceKind};

use answer::Session;
use error::Failure;

/// Renewal starts once fewer than the larger of this and a fifth (`MARGIN_DIVISOR`) of the
/// credentials' remaining lifetime remain (plus a random quarter of that).
pub const MIN_RENEWAL_MARGIN: Duration = Duration::from_secs(180);
/// The fraction (1/5 = 20 %) of the lifetime kept as a margin.
const MARGIN_DIVISOR: u32 = 5;
/// Renewals are never closer together than this (a server that answers credentials close to
/// their expiry, such as a metadata server that has not rotated them yet, is not polled in a
/// loop).
const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(30);
/// Backoff after a failed renewal: from this, doubling, at most [`MAX_RETRY_DELAY`]; "equal
/// jitter" (half fixed, half random).
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// A role to assume with [`assume_role`]: for cross-account use per resource.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AssumeRoleSpec {
    /// `acs:ram::<account>:role/<name>`.
    pub role_arn: String,
    /// What the role's trust policy may require (2 to 1224 of `[A-Za-z0-9=,.@:/_-]`).
    pub external_id: Option<String>,
    /// `RoleSessionName` (2 to 64 of `[A-Za-z0-9.@_-]`); default
    /// [`ChainOptions::role_session_name`], else `ecs-client-<unix seconds>`.
    pub session_name: Option<String>,
    /// 900 to 43200 (the role's maximum session duration, set in RAM, is checked by STS);
    /// default 3600.
    pub duration_seconds: Option<u32>,
    /// A policy (JSON) that narrows the role's permissions for the session.
    pub policy: Option<String>,
}

impl fmt::Debug for AssumeRoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRoleSpec")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("session_name", &self.session_name)
            .field("duration_seconds", &self.duration_seconds)
            .field("policy", &self.policy.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Credentials from one source, shared by every caller: cheap to clone (an `Arc`), renewed in
/// place. `Debug` shows the source only, never a secret.
#[derive(Clone)]
pub struct CredentialsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    source: ProviderSource,
    how: How,
}

enum How {
    Fixed(Credentials),
    Renewing(Arc<Renewer>),
}

impl fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsProvider")
            .field("source", &self.inner.source.to_string())
            .field("renews", &matches!(self.inner.how, How::Renewing(_)))
            .finish()
    }
}

impl CredentialsProvider {
    /// Credentials that never change (a key from a Secret, from the environment, from a test).
    pub fn fixed(creds: Credentials) -> Self {
        let mut source = ProviderSource::new(SourceKind::Static, ConfiguredBy::Caller);
        source.access_key_id = Some(creds.access_key_id().to_owned());
        Self::fixed_with_source(creds, source)
    }

    pub(crate) fn fixed_with_source(creds: Credentials, source: ProviderSource) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                how: How::Fixed(creds),
            }),
        }
    }

    pub(crate) fn renewing(source: ProviderSource, fetcher: Fetcher) -> Self {
        let origin = source.to_string();
        Self {
            inner: Arc::new(Inner {
                source,
                how: How::Renewing(Arc::new(Renewer {
                    origin,
                    fetcher,
                    state: Mutex::new(State::default()),
                })),
            }),
        }
    }

    /// The current credentials: a snapshot to sign one request with. Obtains them on the first
    /// call, renews them before they expire (see the module documentation).
    pub async fn credentials(&self) -> Result<Credentials, ProviderError> {
        match &self.inner.how {
            How::Fixed(creds) => Ok(creds.clone()),
            How::Renewing(renewer) => renewer.credentials().await,
        }
    }

    /// Called once after ECS answered `InvalidSecurityToken.Expired`
    /// ([`EcsError::is_expired_security_token`](crate::EcsError::is_expired_security_token))
    /// to a request signed with `rejected`. Renews only if `rejected` is still the current
    /// snapshot and no renewal was forced for it yet; otherwise returns the current snapshot
    /// (waiting for a renewal in flight), or the error of the renewal forced for it. A source
    /// that cannot renew (fixed keys) returns its credentials unchanged: retry a request only
    /// when the answer differs from `rejected`.
    pub async fn renew(&self, rejected: &Credentials) -> Result<Credentials, ProviderError> {
        match &self.inner.how {
            How::Fixed(creds) => Ok(creds.clone()),
            How::Renewing(renewer) => renewer.renew(rejected).await,
        }
    }

    /// Which source, with its non-secret details.
    pub fn source(&self) -> &ProviderSource {
        &self.inner.source
    }

    /// The role the credentials are for (`ram_role_arn`, `oidc_role_arn`).
    pub fn role_arn(&self) -> Option<&str> {
        self.inner.source.role_arn.as_deref()
    }

    /// Whether the credentials are temporary and renewed by this provider.
    pub fn renews(&self) -> bool {
        matches!(self.inner.how, How::Renewing(_))
    }

    /// When the current snapshot expires (`None` for fixed keys or before the first one).
    pub fn expires_at(&self) -> Option<jiff::Timestamp> {
        match &self.inner.how {
            How::Fixed(_) => None,
            How::Renewing(renewer) => renewer.lock().current.as_ref().map(|s| s.expires_at),
        }
    }
}

/// What renews: one per kind of source.
pub(crate) enum Fetcher {
    Oidc(sts::OidcFetcher),
    RamRole(sts::RamRoleFetcher),
    Metadata(metadata::MetadataFetcher),
    Uri(uri::UriFetcher),
}

impl Fetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Session, Failure>> {
        match self {
            Fetcher::Oidc(f) => f.fetch(),
            Fetcher::RamRole(f) => f.fetch(),
            Fetcher::Metadata(f) => f.fetch(),
            Fetcher::Uri(f) => f.fetch(),
        }
    }
}

/// The renewal in flight, awaited by whoever needs its outcome.
type Pending = Shared<BoxFuture<'static, Result<Snapshot, ProviderError>>>;

struct Renewer {
    /// The source's description, the origin of every error.
    origin: String,
    fetcher: Fetcher,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Snapshot>,
    /// Counts changes of the current credentials (a renewal that answers the same credentials
    /// does not count).
    generation: u64,
    in_flight: Option<Pending>,
    failures: u32,
    /// No renewal starts before this (after a failure).
    retry_at: Option<Instant>,
    last_error: Option<ProviderError>,
    /// The generation a renewal was last forced for by [`Renewer::renew`]: at most one each.
    forced_for: Option<u64>,
}

#[derive(Clone)]
struct Snapshot {
    creds: Credentials,
    expires_at: jiff::Timestamp,
    /// `expires_at` on the tokio clock (so tests can move time).
    expires: Instant,
    renew_at: Instant,
}

impl Renewer {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn credentials(self: &Arc<Self>) -> Result<Credentials, ProviderError> {
        let pending = {
            let mut st = self.lock();
            let now = Instant::now();
            if let Some(snap) = st.current.as_ref().filter(|s| now < s.expires) {
                let creds = snap.creds.clone();
                if now >= snap.renew_at && self.may_start(&st, now) {
                    // In the background: this caller goes on with the valid snapshot.
                    drop(self.start(&mut st));
                }
                return Ok(creds);
            }
            self.pending_or_start(&mut st, now)?
        };
        pending.await.map(|s| s.creds)
    }

    async fn renew(self: &Arc<Self>, rejected: &Credentials) -> Result<Credentials, ProviderError> {
        let pending = {
            let mut st = self.lock();
            let now = Instant::now();
            let generation = st.generation;
            let rejected_is_current = match &st.current {
                Some(snap) if snap.creds == *rejected => true,
                Some(snap) if now < snap.expires => return Ok(snap.creds.clone()),
                _ => false,
            };
            if let Some(pending) = &st.in_flight {
                pending.clone()
            } else if rejected_is_current && st.forced_for != Some(generation) {
                st.forced_for = Some(generation);
                if let Some(snap) = st.current.as_mut() {
                    snap.renew_at = now;
                }
                self.start(&mut st)
            } else if rejected_is_current {
                // Already forced for this snapshot: its outcome stands until the backoff ends.
                return match &st.last_error {
                    Some(err) => Err(err.clone()),
                    None => Ok(rejected.clone()),
                };
            } else {
                self.pending_or_start(&mut st, now)?
            }
        };
        pending.await.map(|s| s.creds)
    }

    fn may_start(&self, st: &State, now: Instant) -> bool {
        st.in_flight.is_none() && st.retry_at.is_none_or(|t| now >= t)
    }

    /// The renewal in flight, a new one, or the last error while the backoff lasts.
    fn pending_or_start(
        self: &Arc<Self>,
        st: &mut State,
        now: Instant,
    ) -> Result<Pending, ProviderError> {
        if let Some(pending) = &st.in_flight {
            return Ok(pending.clone());
        }
        if let (Some(retry_at), Some(err)) = (st.retry_at, &st.last_error)
            && now < retry_at
        {
            return Err(err.clone());
        }
        Ok(self.start(st))
    }

    /// Starts a renewal as a task of its own, so that it completes (and is recorded) even when
    /// every caller waiting for it goes away. Called with the state locked; the task records
    /// its outcome under the same lock, so it cannot finish before `in_flight` is set.
    fn start(self: &Arc<Self>, st: &mut State) -> Pending {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let result = AssertUnwindSafe(this.fetcher.fetch())
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::new(
                        ProviderErrorKind::InvalidAnswer,
                        "the renewal panicked",
                    ))
                });
            this.finish(result)
        });
        let origin = self.origin.clone();
        let pending = async move {
            task.await.unwrap_or_else(|e| {
                Err(ProviderError::new(
                    &origin,
                    ProviderErrorKind::Unavailable,
                    format!("the renewal did not complete: {e}"),
                ))
            })
        }
        .boxed()
        .shared();
        st.in_flight = Some(pending.clone());
        pending
    }

    fn finish(&self, result: Result<Session, Failure>) -> Result<Snapshot, ProviderError> {
        let mut st = self.lock();
        st.in_flight = None;
        let now = Instant::now();
        match result.and_then(|session| snapshot(session, now)) {
            Ok(snap) => {
                if st.current.as_ref().is_none_or(|c| c.creds != snap.creds) {
                    st.generation += 1;
                }
                st.current = Some(snap.clone());
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                tracing::info!(source = %self.origin, access_key_id = snap.creds.access_key_id(),
                    expires_at = %snap.expires_at, "credentials renewed");
                Ok(snap)
            }
            Err(failure) => {
                st.failures = st.failures.saturating_add(1);
                let delay = retry_delay(st.failures);
                st.retry_at = Some(now + delay);
                let err = failure.into_error(&self.origin);
                let valid_until = st
                    .current
                    .as_ref()
                    .filter(|s| now < s.expires)
                    .map(|s| s.expires_at.to_string());
                tracing::warn!(error = %err, retry_in = ?delay,
                    current_valid_until = valid_until.as_deref().unwrap_or("(none)"),
                    "credentials renewal failed");
                st.last_error = Some(err.clone());
                Err(err)
            }
        }
    }
}

/// The snapshot of a fresh session: its expiry on the tokio clock and when to renew it.
fn snapshot(session: Session, now: Instant) -> Result<Snapshot, Failure> {
    let wall_now = jiff::Timestamp::now();
    let remaining = session.expires_at.duration_since(wall_now);
    let remaining = Duration::try_from(remaining)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Failure::invalid(format!(
                "the answer's credentials expired at {} (the local clock says {}; check it)",
                session.expires_at,
                wall_now.round(jiff::Unit::Second).unwrap_or(wall_now)
            ))
        })?;
    Ok(Snapshot {
        expires_at: session.expires_at,
        expires: now + remaining,
        renew_at: now + renew_after(remaining, rand::rng().random_range(0.0..=1.0)),
        creds: session.creds,
    })
}

/// How long after obtaining credentials valid for `remaining` to renew them; `jitter` in
/// `0..=1` adds up to a quarter of the margin.
fn renew_after(remaining: Duration, jitter: f64) -> Duration {
    let margin = MIN_RENEWAL_MARGIN.max(remaining / MARGIN_DIVISOR);
    let margin = margin + margin.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
    remaining
        .saturating_sub(margin)
        .max(MIN_RENEWAL_INTERVAL)
        .min(remaining)
}

/// The wait after `failures` consecutive failed renewals: equal jitter over
/// `FIRST_RETRY_DELAY * 2^(failures-1)`, capped at `MAX_RETRY_DELAY`.
fn retry_delay(failures: u32) -> Duration {
    let exp = FIRST_RETRY_DELAY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_RETRY_DELAY);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}
