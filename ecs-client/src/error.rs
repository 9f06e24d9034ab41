//! One error type for every failed call, parsed from the API's JSON or XML error bodies, and the
//! classification the reconciler decides on (SPEC §3: the code first, the HTTP status only when
//! there is no code).

use std::fmt;

use serde::Deserialize;

/// What the reconciler does about an error (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The instance is gone: treat as released.
    NotFound,
    /// The instance is not in a state that allows the call yet: observe again / retry later.
    StateConflict,
    /// Server trouble, timeouts, lost connections: retry with backoff.
    Transient,
    /// The account's API quota: back off; the limiter slows down.
    Throttled,
    /// The credentials were refused: a person must fix the Secret.
    CredentialsRejected,
    /// A person must act on the instance or the resource.
    Terminal,
    /// Anything else: surfaced verbatim, retried slowly.
    Unknown,
}

impl ErrorClass {
    /// The class of an API error code, or `None` when the code is not in the table.
    pub fn of_code(code: &str) -> Option<ErrorClass> {
        let class = match code {
            "InvalidInstanceId.NotFound" | "Forbidden.InstanceNotFound" => ErrorClass::NotFound,
            "IncorrectInstanceStatus"
            | "IncorrectInstanceStatus.Initializing"
            | "DependencyViolation.SLBConfiguring" => ErrorClass::StateConflict,
            "DependencyViolation.RouteEntry"
            | "InvalidParameter"
            | "ChargeTypeViolation"
            | "InstanceLockedForSecurity"
            | "InvalidOperation.DeletionProtection" => ErrorClass::Terminal,
            // Our nonces are 128 random bits, fresh per attempt: the server seeing one twice means
            // the same signed request was delivered twice (a replaying proxy, a duplicated
            // packet), not that the credentials or the request are wrong. A new attempt carries
            // a new nonce, and the reconciler observes before repeating a mutating call, so it
            // is safe and correct to treat it as transient.
            "SignatureNonceUsed" => ErrorClass::Transient,
            "ServiceUnavailable" | "InternalError" | "UnknownError" => ErrorClass::Transient,
            "SignatureDoesNotMatch" | "IncompleteSignature" | "Forbidden.RAM" => {
                ErrorClass::CredentialsRejected
            }
            c if c.starts_with("Throttling") => ErrorClass::Throttled,
            c if c.starts_with("InvalidAccessKeyId.")
                || c.starts_with("InvalidTimeStamp.")
                || c.starts_with("InvalidSecurityToken.") =>
            {
                ErrorClass::CredentialsRejected
            }
            _ => return None,
        };
        Some(class)
    }
}

/// What kind of failure an [`EcsError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The API answered with an error body carrying a `Code`.
    Api,
    /// An HTTP answer whose body is not an API answer (HTML from a proxy, empty, truncated).
    InvalidBody,
    /// No answer within the connect or read timeout.
    Timeout,
    /// The connection could not be established: the request never reached the server.
    Connect,
    /// The connection broke or HTTP failed after the request may have been sent.
    Transport,
    /// Refused before sending: the request could not be built (bad region, bad endpoint).
    InvalidRequest,
}

/// A failed ECS call. `Clone` so the batcher can hand every waiter its own copy; boxed so a
/// `Result` stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsError(Box<ErrorData>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorData {
    action: String,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
    http_status: Option<u16>,
    recommend: Option<String>,
    kind: ErrorKind,
}

/// Longest excerpt of a non-API body kept in an error (in characters).
const EXCERPT_CHARS: usize = 160;

impl EcsError {
    /// An error without an API answer (timeouts, connection failures, refused requests).
    pub fn new(action: &str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorData {
            action: action.to_owned(),
            code: None,
            message: message.into(),
            request_id: None,
            http_status: None,
            recommend: None,
            kind,
        }))
    }

    /// Interprets a non-2xx answer: an API error when the body (JSON or XML) carries a `Code`,
    /// otherwise an `InvalidBody` error with the status and a short excerpt.
    pub fn from_response(action: &str, status: u16, body: &[u8]) -> Self {
        match ApiErrorBody::parse(body) {
            Some(api) => Self(Box::new(ErrorData {
                action: action.to_owned(),
                code: Some(api.code),
                message: api.message.unwrap_or_default(),
                request_id: api.request_id,
                http_status: Some(status),
                recommend: api.recommend,
                kind: ErrorKind::Api,
            })),
            None => Self::invalid_body(action, status, body),
        }
    }

    /// A body that is not what the API sends (any status, also 2xx with an unreadable body).
    pub(crate) fn invalid_body(action: &str, status: u16, body: &[u8]) -> Self {
        let excerpt = excerpt(body);
        let message = if excerpt.is_empty() {
            "an empty body instead of an API answer".to_owned()
        } else {
            format!("a body that is not an API answer: \"{excerpt}\"")
        };
        let mut err = Self::new(action, ErrorKind::InvalidBody, message);
        err.0.http_status = Some(status);
        err
    }

    /// Applies `f` to every text that came from the server (see `Credentials::redact`).
    pub(crate) fn map_server_text(mut self, f: impl Fn(&str) -> String) -> Self {
        self.0.message = f(&self.0.message);
        self.0.recommend = self.0.recommend.as_deref().map(&f);
        self
    }

    pub fn action(&self) -> &str {
        &self.0.action
    }
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }
    pub fn message(&self) -> &str {
        &self.0.message
    }
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
    pub fn http_status(&self) -> Option<u16> {
        self.0.http_status
    }
    pub fn recommend(&self) -> Option<&str> {
        self.0.recommend.as_deref()
    }
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// SPEC §3: the code decides; without a known code a 5xx status is transient, a 429 is
    /// throttling; transport failures are transient; a request we refused to build is terminal.
    pub fn class(&self) -> ErrorClass {
        if let Some(class) = self.0.code.as_deref().and_then(ErrorClass::of_code) {
            return class;
        }
        match self.0.kind {
            ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Transport => ErrorClass::Transient,
            ErrorKind::InvalidRequest => ErrorClass::Terminal,
            ErrorKind::Api | ErrorKind::InvalidBody => match self.0.http_status {
                Some(s) if s >= 500 => ErrorClass::Transient,
                Some(429) => ErrorClass::Throttled,
                _ => ErrorClass::Unknown,
            },
        }
    }

    /// A short label for metrics: the API code, or the failure kind when there is none.
    pub fn outcome_label(&self) -> &str {
        self.0.code.as_deref().unwrap_or(match self.0.kind {
            ErrorKind::Api | ErrorKind::InvalidBody => "InvalidResponse",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Connect => "ConnectionFailed",
            ErrorKind::Transport => "TransportError",
            ErrorKind::InvalidRequest => "InvalidRequest",
        })
    }
}

impl fmt::Display for EcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: ", self.0.action)?;
        match &self.0.code {
            Some(code) => write!(f, "{code}: {}", self.0.message)?,
            None => f.write_str(&self.0.message)?,
        }
        let mut details = Vec::new();
        if let Some(id) = &self.0.request_id {
            details.push(format!("RequestId {id}"));
        }
        if let Some(status) = self.0.http_status {
            details.push(format!("HTTP {status}"));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for EcsError {}

/// The API's error body; the same field names in JSON and in XML (`<Error>…</Error>`).
#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "Recommend")]
    recommend: Option<String>,
}

impl ApiErrorBody {
    /// JSON is what we ask for; XML is what a gateway or proxy may still send. Whatever lacks a
    /// non-empty `Code` is not an API error body.
    fn parse(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body)
            .ok()?
            .trim_start_matches('\u{feff}')
            .trim();
        let parsed: Self = if text.starts_with('{') {
            serde_json::from_str(text).ok()?
        } else if text.starts_with('<') {
            quick_xml::de::from_str(text).ok()?
        } else {
            return None;
        };
        (!parsed.code.trim().is_empty()).then_some(parsed)
    }
}

/// The start of a body, whitespace collapsed, cut at a character boundary.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_code_of_the_spec_table() {
        let table = [
            ("InvalidInstanceId.NotFound", ErrorClass::NotFound),
            ("Forbidden.InstanceNotFound", ErrorClass::NotFound),
            ("IncorrectInstanceStatus", ErrorClass::StateConflict),
            (
                "IncorrectInstanceStatus.Initializing",
                ErrorClass::StateConflict,
            ),
            (
                "DependencyViolation.SLBConfiguring",
                ErrorClass::StateConflict,
            ),
            ("DependencyViolation.RouteEntry", ErrorClass::Terminal),
            ("InvalidParameter", ErrorClass::Terminal),
            ("ChargeTypeViolation", ErrorClass::Terminal),
            ("InstanceLockedForSecurity", ErrorClass::Terminal),
            ("InvalidOperation.DeletionProtection", ErrorClass::Terminal),
            ("Throttling", ErrorClass::Throttled),
            ("Throttling.User", ErrorClass::Throttled),
            ("Throttling.Api", ErrorClass::Throttled),
            ("ServiceUnavailable", ErrorClass::Transient),
            ("InternalError", ErrorClass::Transient),
            ("UnknownError", ErrorClass::Transient),
            ("SignatureNonceUsed", ErrorClass::Transient),
            (
                "InvalidAccessKeyId.NotFound",
                ErrorClass::CredentialsRejected,
            ),
            (
                "InvalidAccessKeyId.Inactive",
                ErrorClass::CredentialsRejected,
            ),
            ("SignatureDoesNotMatch", ErrorClass::CredentialsRejected),
            ("IncompleteSignature", ErrorClass::CredentialsRejected),
            ("Forbidden.RAM", ErrorClass::CredentialsRejected),
            ("InvalidTimeStamp.Expired", ErrorClass::CredentialsRejected),
            ("InvalidTimeStamp.Format", ErrorClass::CredentialsRejected),
            (
                "InvalidSecurityToken.Expired",
                ErrorClass::CredentialsRejected,
            ),
            (
                "InvalidSecurityToken.MismatchWithAccessKey",
                ErrorClass::CredentialsRejected,
            ),
        ];
        for (code, class) in table {
            // A misleading status must not change the decision: the code wins.
            for status in [400, 403, 404, 500, 503] {
                let body = format!(r#"{{"Code":"{code}","Message":"m","RequestId":"R"}}"#);
                let err = EcsError::from_response("DeleteInstance", status, body.as_bytes());
                assert_eq!(err.class(), class, "{code} with HTTP {status}");
            }
        }
        for code in [
            "DryRunOperation",
            "InvalidOperation.EniLinked",
            "InvalidParameter.Foo",
            "Forbidden",
            "InvalidAccessKeyId",
            "IdempotentProcessing",
        ] {
            assert_eq!(ErrorClass::of_code(code), None, "{code}");
            let body = format!(r#"{{"Code":"{code}","Message":"m"}}"#);
            assert_eq!(
                EcsError::from_response("A", 400, body.as_bytes()).class(),
                ErrorClass::Unknown,
                "{code}"
            );
        }
    }

    #[test]
    fn status_decides_only_without_a_known_code() {
        let unknown_5xx = EcsError::from_response("A", 502, br#"{"Code":"Weird","Message":""}"#);
        assert_eq!(unknown_5xx.class(), ErrorClass::Transient);
        assert_eq!(
            EcsError::from_response("A", 503, b"").class(),
            ErrorClass::Transient
        );
        assert_eq!(
            EcsError::from_response("A", 429, b"slow down").class(),
            ErrorClass::Throttled
        );
        assert_eq!(
            EcsError::from_response("A", 403, b"<html>denied</html>").class(),
            ErrorClass::Unknown
        );
        for kind in [ErrorKind::Timeout, ErrorKind::Connect, ErrorKind::Transport] {
            assert_eq!(EcsError::new("A", kind, "x").class(), ErrorClass::Transient);
        }
        assert_eq!(
            EcsError::new("A", ErrorKind::InvalidRequest, "x").class(),
            ErrorClass::Terminal
        );
    }

    #[test]
    fn parses_the_json_error_body() {
        let body = br#"{
          "RequestId": "81EF1E7D-0D15-5CAF-B602-3487FAFA88D5",
          "HostId": "ecs.cn-hangzhou.aliyuncs.com",
          "Code": "InvalidInstanceId.NotFound",
          "Message": "The specified InstanceId does not exist.",
          "Recommend": "https://api.aliyun.com/troubleshoot?q=InvalidInstanceId.NotFound",
          "AccessDeniedDetail": {"x": 1}
        }"#;
        let err = EcsError::from_response("DeleteInstance", 404, body);
        assert_eq!(err.kind(), ErrorKind::Api);
        assert_eq!(err.action(), "DeleteInstance");
        assert_eq!(err.code(), Some("InvalidInstanceId.NotFound"));
        assert_eq!(err.message(), "The specified InstanceId does not exist.");
        assert_eq!(
            err.request_id(),
            Some("81EF1E7D-0D15-5CAF-B602-3487FAFA88D5")
        );
        assert_eq!(err.http_status(), Some(404));
        assert_eq!(
            err.recommend(),
            Some("https://api.aliyun.com/troubleshoot?q=InvalidInstanceId.NotFound")
        );
        assert_eq!(
            err.to_string(),
            "DeleteInstance failed: InvalidInstanceId.NotFound: The specified InstanceId does not \
             exist. (RequestId 81EF1E7D-0D15-5CAF-B602-3487FAFA88D5, HTTP 404)"
        );
    }

    #[test]
    fn parses_the_xml_error_body() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  \
                    <RequestId>540CFF28-407A-40B5-B6A5-74B000000000</RequestId>\n  \
                    <HostId>ecs.aliyuncs.com</HostId>\n  <Code>Throttling.User</Code>\n  \
                    <Message>Request was denied due to user flow control.</Message>\n</Error>";
        let err = EcsError::from_response("DescribeInstances", 400, body.as_bytes());
        assert_eq!(err.kind(), ErrorKind::Api);
        assert_eq!(err.code(), Some("Throttling.User"));
        assert_eq!(
            err.message(),
            "Request was denied due to user flow control."
        );
        assert_eq!(
            err.request_id(),
            Some("540CFF28-407A-40B5-B6A5-74B000000000")
        );
        assert_eq!(err.recommend(), None);
        assert_eq!(err.class(), ErrorClass::Throttled);
    }

    #[test]
    fn non_api_bodies_become_clear_errors_with_an_excerpt() {
        let html = format!(
            "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>{}</body></html>",
            "x".repeat(500)
        );
        let cases: Vec<(u16, Vec<u8>, &str)> = vec![
            (
                502,
                html.into_bytes(),
                "<html> <head><title>502 Bad Gateway</title>",
            ),
            (500, Vec::new(), "an empty body"),
            (
                400,
                br#"{"RequestId":"R","Code":"Throt"#.to_vec(),
                r#"{"RequestId":"R","Code":"Throt"#,
            ),
            (400, br#"{"RequestId":"R"}"#.to_vec(), "not an API answer"),
            (400, br#"{"Code":""}"#.to_vec(), "not an API answer"),
            (400, b"<Error><Code>X".to_vec(), "<Error><Code>X"),
            (503, b"\xff\xfe\x00binary".to_vec(), "not an API answer"),
            (400, b"[1,2]".to_vec(), "[1,2]"),
        ];
        for (status, body, expected) in cases {
            let err = EcsError::from_response("StopInstance", status, &body);
            assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
            assert_eq!(err.code(), None);
            assert_eq!(err.http_status(), Some(status));
            let text = err.to_string();
            assert!(text.starts_with("StopInstance failed: "), "{text}");
            assert!(text.contains(expected), "{text}");
            assert!(text.ends_with(&format!("(HTTP {status})")), "{text}");
            assert!(text.chars().count() < 260, "excerpt too long: {text}");
        }
    }

    #[test]
    fn excerpts_cut_at_character_boundaries() {
        let body = "é".repeat(400);
        let cut = excerpt(body.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn outcome_labels_never_leave_metrics_unlabelled() {
        assert_eq!(
            EcsError::from_response("A", 400, br#"{"Code":"Throttling"}"#).outcome_label(),
            "Throttling"
        );
        assert_eq!(
            EcsError::from_response("A", 502, b"").outcome_label(),
            "InvalidResponse"
        );
        assert_eq!(
            EcsError::new("A", ErrorKind::Timeout, "t").outcome_label(),
            "Timeout"
        );
    }
}
