//! Alibaba Cloud ECS OpenAPI client: the controller's only way to the cloud.
//!
//! - [`signing`]: ACS3-HMAC-SHA256 (default) and HMAC-SHA1 RPC signatures, pure functions.
//! - [`credentials`]: access keys from a Secret or the environment; secrets never printed.
//! - `encoding`: RFC 3986 percent-encoding (re-exported as [`signing::percent_encode`]), shared
//!   by `signing` and `credentials` so that neither depends on the other for it.
//! - [`error`]: one error type for every failure, and its classification
//!   (docs/ecs-reference.md §9).
//! - [`sanitize`]: [`clean_text`], the one function that makes cloud text (codes, messages,
//!   RequestIds) bounded and printable before it reaches a status, an event or a log line.
//! - [`provider`]: [`CredentialsProvider`], credentials shared by every caller and renewed
//!   before they expire, from the default chain (environment, OIDC/RRSA, the credentials file,
//!   the ECS metadata server, a credentials URI) or by assuming a role (`docs/credentials-chain.md`).
//! - [`EcsClient`]: typed calls with a per-(endpoint, action) adaptive rate limiter, retries
//!   for what is safe to retry, and a `DescribeInstances` batcher.
//!
//! See `README.md` for the policies and their defaults.

mod batch;
mod client;
pub mod credentials;
mod encoding;
pub mod error;
mod model;
pub mod provider;
mod quota_memory;
mod ratelimit;
mod retry;
pub mod sanitize;
pub mod signing;
mod transport;

pub use client::{
    CLAIM_PREFIX, ClientConfig, EcsClient, MAX_IDS_PER_DESCRIBE, MAX_IDS_PER_TAG, RequestObserver,
    TAG_SEND_WITHIN, Turn,
};
pub use credentials::{Credentials, CredentialsError};
pub use error::{EcsError, ErrorClass, ErrorKind};
pub use model::{
    DeleteInstance, Instance, InstanceStatus, RequestId, StopInstance, StoppedMode, TagInstance,
    UntagInstance,
};
pub use provider::{
    AssumeRoleSpec, ChainOptions, CredentialsProvider, ProviderError, ProviderErrorKind,
    ProviderSource, SourceKind, assume_role, default_chain,
};
pub use ratelimit::RateLimitConfig;
pub use retry::RetryConfig;
pub use sanitize::{clean_code, clean_text};
pub use signing::SigningMethod;
