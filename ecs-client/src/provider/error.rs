//! [`ProviderError`]: why a provider has no credentials to give, naming the source and what
//! failed, never a secret.

use crate::encoding::percent_encode;
use crate::sanitize::{MAX_MESSAGE_BYTES, MAX_REQUEST_ID_BYTES, clean_text};

/// Longest source description kept in an error (bytes).
const MAX_ORIGIN_BYTES: usize = 512;

/// Why a [`CredentialsProvider`](super::CredentialsProvider) could not give credentials, or why
/// a chain could not be built. `Display` is `"<source>: <what failed>"`, e.g.
/// `oidc_role_arn acs:ram::123:role/x (environment): STS refused AssumeRoleWithOIDC:
/// AuthenticationFail.OIDCToken.Expired: … (RequestId …, HTTP 400)`.
///
/// Every text in it is bounded and cleaned ([`clean_text`]) and scrubbed of the secrets the
/// request carried (the access key secret, the security token, the OIDC token, the metadata
/// token) before it is cut; it never holds a secret, so `Debug` is derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ProviderError {
    origin: String,
    kind: ProviderErrorKind,
    message: String,
    code: Option<String>,
    request_id: Option<String>,
    http_status: Option<u16>,
}

/// What kind of failure a [`ProviderError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderErrorKind {
    /// The configuration is wrong (an environment variable, a profile key, an option): a person
    /// must fix it.
    Configuration,
    /// The service (STS, the metadata server, the credentials URI) answered with an error: see
    /// [`ProviderError::code`] and [`ProviderError::request_id`].
    Refused,
    /// An answer that is not what the protocol says (a body of the wrong shape, credentials that
    /// already expired, a redirect).
    InvalidAnswer,
    /// No usable answer: the connection failed, broke or timed out, or the service answered
    /// a server error (5xx). Worth retrying.
    Unavailable,
    /// The OIDC token file could not be read (or is empty).
    TokenFile,
    /// A role could not be assumed because the credentials to assume it with are unavailable.
    BaseUnavailable,
}

impl ProviderError {
    pub(crate) fn new(origin: &str, kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            origin: clean_text(origin, MAX_ORIGIN_BYTES),
            kind,
            message: clean_text(&message.into(), MAX_MESSAGE_BYTES),
            code: None,
            request_id: None,
            http_status: None,
        }
    }

    pub(crate) fn config(origin: &str, message: impl Into<String>) -> Self {
        Self::new(origin, ProviderErrorKind::Configuration, message)
    }

    /// The source the error is about (its kind and non-secret details).
    pub fn origin(&self) -> &str {
        &self.origin
    }
    pub fn kind(&self) -> ProviderErrorKind {
        self.kind
    }
    /// What failed, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The service's error code (`AuthenticationFail.OIDCToken.Expired`), when it answered one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }
}

/// A failure inside a fetcher, before the provider names its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: ProviderErrorKind,
    pub message: String,
    pub code: Option<String>,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
}

impl Failure {
    pub(crate) fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: clean_text(&message.into(), MAX_MESSAGE_BYTES),
            code: None,
            request_id: None,
            http_status: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::InvalidAnswer, message)
    }

    pub(crate) fn into_error(self, origin: &str) -> ProviderError {
        let mut err = ProviderError::new(origin, self.kind, self.message);
        err.code = self.code;
        err.request_id = self
            .request_id
            .map(|id| clean_text(&id, MAX_REQUEST_ID_BYTES));
        err.http_status = self.http_status;
        err
    }
}

/// Replaces every secret in `text`, as is and percent-encoded once or twice (the forms a server
/// may echo from a query or a string-to-sign), longest form first so that no shorter form
/// leaves the tail of a longer one behind. Secrets shorter than 4 characters are not searched
/// for (they would redact ordinary words); none of the secrets handled here is that short.
pub(crate) fn redact_secrets(text: &str, secrets: &[&str]) -> String {
    let mut forms: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .flat_map(|s| {
            let once = percent_encode(s);
            let twice = percent_encode(&once);
            [s.to_string(), once, twice]
        })
        .collect();
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms.iter().fold(text.to_owned(), |acc, form| {
        acc.replace(form.as_str(), "<redacted>")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_every_encoding() {
        let text = "a tok+en/== b tok%2Ben%2F%3D%3D c tok%252Ben%252F%253D%253D d sec";
        let out = redact_secrets(text, &["tok+en/==", "", "sec"]);
        assert!(!out.contains("tok"), "{out}");
        assert_eq!(out.matches("<redacted>").count(), 3);
        assert!(
            out.ends_with("d sec"),
            "short secrets are not searched for: {out}"
        );
    }

    #[test]
    fn errors_are_clean_and_bounded() {
        let err = Failure::new(
            ProviderErrorKind::Refused,
            format!("a\nb{}", "x".repeat(5000)),
        )
        .into_error("oidc_role_arn acs:ram::1:role/x\u{1b}[31m");
        assert!(err.message().starts_with("a b"));
        assert!(err.message().len() <= MAX_MESSAGE_BYTES);
        assert_eq!(err.origin(), "oidc_role_arn acs:ram::1:role/x");
        assert!(
            err.to_string()
                .starts_with("oidc_role_arn acs:ram::1:role/x: a b")
        );
    }
}
