//! One error type for every failed call, parsed from the API's JSON or XML error bodies, and the
//! classification the reconciler decides on (docs/ecs-reference.md §9: the code first, the HTTP
//! status only when there is no code).

use std::fmt;

use serde::Deserialize;

use crate::sanitize::{
    INVALID_ERROR_CODE, MAX_MESSAGE_BYTES, MAX_RECOMMEND_BYTES, MAX_REQUEST_ID_BYTES, clean_code,
    clean_text,
};

/// What the reconciler does about an error (docs/ecs-reference.md §9).
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
            // A region the account cannot use: a person must fix `regionId`. Never NotFound,
            // which means "the instance is gone".
            "InvalidRegionId.NotFound" => ErrorClass::Terminal,
            // TagResources / UntagResources (error codes of both calls: docs/ecs-reference.md §4).
            // A tag call's resource-not-found is terminal too: only StopInstance/DeleteInstance's
            // own `InvalidInstanceId.NotFound` may count as "released".
            "InvalidResourceId.NotFound"
            | "InvalidResourceId.NotSupported"
            | "InvalidResourceType.NotFound"
            | "InvalidTagKey.Malformed"
            | "InvalidTagValue.Malformed"
            | "InvalidTag.Mismatch"
            | "InvalidTagCount"
            | "Duplicate.TagKey"
            | "NumberExceed.Tags"
            | "NumberExceed.ResourceIds"
            | "OperationDenied.QuotaExceed"
            | "QuotaExceed.Tags"
            | "TagKey.Duplication"
            | "NoPermission.Tag"
            // The tag pages' own missing-parameter form (HTTP 404, so the status must not
            // decide): a request we built wrong, not an absent instance.
            | "MissingParameter.RegionId"
            | "MissingParameter.ResourceIds"
            | "MissingParameter.ResourceType"
            | "MissingParameter.Tags" => ErrorClass::Terminal,
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
    /// Not sent: its turn under the rate limit came later than the call may be sent after the
    /// observation it was planned from (a tag decided on an old observation could replace a tag
    /// that landed since).
    NotSentInTime,
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

/// Longest excerpt of a non-API body kept in an error (bytes of UTF-8).
const EXCERPT_BYTES: usize = 160;
/// How much of a body is looked at for an excerpt (and scrubbed of the token first).
const EXCERPT_SOURCE_BYTES: usize = 64 * 1024;

impl EcsError {
    /// An error without an API answer (timeouts, connection failures, refused requests). The
    /// message is cleaned and bounded like any server text (see [`clean_text`]).
    pub fn new(action: &str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorData {
            action: action.to_owned(),
            code: None,
            message: clean_text(&message.into(), MAX_MESSAGE_BYTES),
            request_id: None,
            http_status: None,
            recommend: None,
            kind,
        }))
    }

    /// An error about an HTTP answer that is not an API answer (its status is kept).
    pub(crate) fn with_status(
        action: &str,
        kind: ErrorKind,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        let mut err = Self::new(action, kind, message);
        err.0.http_status = Some(status);
        err
    }

    /// Interprets a non-2xx answer: an API error when the body (JSON or XML) carries a `Code`,
    /// otherwise an `InvalidBody` error with the status and a short excerpt. Every text taken
    /// from the body is cleaned and bounded: a code not of the documented shape
    /// (`[A-Za-z0-9._-]`, at most 128) becomes [`INVALID_ERROR_CODE`] with the raw code quoted in
    /// the message; the message is cut at 1 KiB; RequestId and Recommend are bounded too.
    pub fn from_response(action: &str, status: u16, body: &[u8]) -> Self {
        Self::from_response_redacted(action, status, body, &|t: &str| t.to_owned())
    }

    /// [`EcsError::from_response`], with `redact` applied to every server text *before* it is
    /// cut, so a secret the server echoes can never survive as a truncated prefix.
    pub(crate) fn from_response_redacted(
        action: &str,
        status: u16,
        body: &[u8],
        redact: &dyn Fn(&str) -> String,
    ) -> Self {
        let Some(api) = ApiErrorBody::parse(body) else {
            return Self::invalid_body(action, status, body, redact);
        };
        let message = redact(api.message.as_deref().unwrap_or_default());
        let (code, message) = match clean_code(&api.code) {
            Ok(code) => (code, clean_text(&message, MAX_MESSAGE_BYTES)),
            Err(_) => {
                let raw = clean_code(&redact(&api.code)).unwrap_or_else(|excerpt| excerpt);
                (
                    INVALID_ERROR_CODE.to_owned(),
                    clean_text(
                        &format!("error code not of the documented form: \"{raw}\": {message}"),
                        MAX_MESSAGE_BYTES,
                    ),
                )
            }
        };
        let bounded = |text: Option<String>, max| {
            text.map(|t| clean_text(&redact(&t), max))
                .filter(|t| !t.is_empty())
        };
        Self(Box::new(ErrorData {
            action: action.to_owned(),
            code: Some(code),
            message,
            request_id: bounded(api.request_id, MAX_REQUEST_ID_BYTES),
            http_status: Some(status),
            recommend: bounded(api.recommend, MAX_RECOMMEND_BYTES),
            kind: ErrorKind::Api,
        }))
    }

    /// A body that is not what the API sends (any status, also a 2xx body of the wrong shape),
    /// with a short, clean excerpt (scrubbed by `redact` first).
    pub(crate) fn invalid_body(
        action: &str,
        status: u16,
        body: &[u8],
        redact: &dyn Fn(&str) -> String,
    ) -> Self {
        Self::invalid_body_because(
            action,
            status,
            body,
            "a body that is not an API answer",
            redact,
        )
    }

    /// [`EcsError::invalid_body`] saying what is wrong with the body.
    pub(crate) fn invalid_body_because(
        action: &str,
        status: u16,
        body: &[u8],
        what: &str,
        redact: &dyn Fn(&str) -> String,
    ) -> Self {
        let excerpt = excerpt(body, redact);
        let message = if excerpt.is_empty() {
            "an empty body instead of an API answer".to_owned()
        } else {
            format!("{what}: \"{excerpt}\"")
        };
        Self::with_status(action, ErrorKind::InvalidBody, status, message)
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

    /// docs/ecs-reference.md §9: the code decides; without a known code a 5xx status is transient,
    /// a 429 is throttling; transport failures are transient; a request we refused to build is
    /// terminal.
    pub fn class(&self) -> ErrorClass {
        if let Some(class) = self.0.code.as_deref().and_then(ErrorClass::of_code) {
            return class;
        }
        match self.0.kind {
            ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::Transport
            | ErrorKind::NotSentInTime => ErrorClass::Transient,
            ErrorKind::InvalidRequest => ErrorClass::Terminal,
            ErrorKind::Api | ErrorKind::InvalidBody => match self.0.http_status {
                Some(s) if s >= 500 => ErrorClass::Transient,
                Some(429) => ErrorClass::Throttled,
                _ => ErrorClass::Unknown,
            },
        }
    }

    /// Whether a *mutating* call that failed this way may nevertheless have been carried out by
    /// ECS: no definite answer came back. True for a timeout, a connection broken after the
    /// request may have been sent, any 5xx answer (with or without a code) except `Throttling*`
    /// (the gateway's flow control answers before the call is processed), and an unreadable 2xx
    /// answer. False when the request never reached the server (`Connect`, `InvalidRequest`),
    /// for a 4xx API error with a code (a definite refusal), and for any other answer that is
    /// not an API answer (a 3xx, an HTML 4xx page from a proxy).
    ///
    /// The client never repeats such a call by itself: the caller must find out what happened
    /// (observe the instance) before it calls again.
    pub fn outcome_unknown(&self) -> bool {
        match self.0.kind {
            ErrorKind::Timeout | ErrorKind::Transport => true,
            ErrorKind::Connect | ErrorKind::InvalidRequest | ErrorKind::NotSentInTime => false,
            ErrorKind::Api | ErrorKind::InvalidBody => match self.0.http_status {
                Some(500..) => self.class() != ErrorClass::Throttled,
                Some(200..300) => self.0.kind == ErrorKind::InvalidBody,
                _ => false,
            },
        }
    }

    /// ECS refused the call because the STS security token it was signed with has expired
    /// (`InvalidSecurityToken.Expired`): the caller asks its
    /// [`CredentialsProvider`](crate::CredentialsProvider) to
    /// [`renew`](crate::CredentialsProvider::renew) these credentials once and retries with the
    /// new ones.
    pub fn is_expired_security_token(&self) -> bool {
        self.0.code.as_deref() == Some("InvalidSecurityToken.Expired")
    }

    /// A short label for metrics: the API code, or the failure kind when there is none.
    pub fn outcome_label(&self) -> &str {
        self.0.code.as_deref().unwrap_or(match self.0.kind {
            ErrorKind::Api | ErrorKind::InvalidBody => "InvalidResponse",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Connect => "ConnectionFailed",
            ErrorKind::Transport => "TransportError",
            ErrorKind::InvalidRequest => "InvalidRequest",
            ErrorKind::NotSentInTime => "NotSentInTime",
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

/// The start of a body, scrubbed by `redact`, cleaned, cut at a character boundary.
fn excerpt(body: &[u8], redact: &dyn Fn(&str) -> String) -> String {
    let head = &body[..body.len().min(EXCERPT_SOURCE_BYTES)];
    clean_text(&redact(&String::from_utf8_lossy(head)), EXCERPT_BYTES)
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
        let cut = excerpt(body.as_bytes(), &|t: &str| t.to_owned());
        assert!(cut.len() <= EXCERPT_BYTES && cut.len() > EXCERPT_BYTES - 4);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn region_and_tag_call_codes_are_terminal_never_not_found() {
        for code in [
            "InvalidRegionId.NotFound",
            "InvalidResourceId.NotFound",
            "InvalidResourceId.NotSupported",
            "InvalidResourceType.NotFound",
            "InvalidTagKey.Malformed",
            "InvalidTagValue.Malformed",
            "InvalidTag.Mismatch",
            "InvalidTagCount",
            "Duplicate.TagKey",
            "NumberExceed.Tags",
            "NumberExceed.ResourceIds",
            "OperationDenied.QuotaExceed",
            "QuotaExceed.Tags",
            "TagKey.Duplication",
            "NoPermission.Tag",
            "MissingParameter.RegionId",
            "MissingParameter.ResourceIds",
            "MissingParameter.ResourceType",
            "MissingParameter.Tags",
        ] {
            assert_eq!(
                ErrorClass::of_code(code),
                Some(ErrorClass::Terminal),
                "{code}"
            );
            for (action, status) in [
                ("TagResources", 404),
                ("UntagResources", 400),
                ("DescribeInstances", 404),
                ("DeleteInstance", 403),
            ] {
                let body = format!(r#"{{"Code":"{code}","Message":"m","RequestId":"R"}}"#);
                let err = EcsError::from_response(action, status, body.as_bytes());
                assert_eq!(err.class(), ErrorClass::Terminal, "{code} from {action}");
            }
        }
        // Only the instance's own not-found codes mean "gone".
        assert_eq!(
            ErrorClass::of_code("InvalidInstanceId.NotFound"),
            Some(ErrorClass::NotFound)
        );
        assert_eq!(
            ErrorClass::of_code("Forbidden.InstanceNotFound"),
            Some(ErrorClass::NotFound)
        );
    }

    fn assert_clean(text: &str) {
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "control character in {text:?}"
        );
    }

    #[test]
    fn server_text_is_cleaned_and_bounded() {
        let mib = "m".repeat(1 << 20);
        let body = serde_json::json!({
            "Code": "Throttling.User",
            "Message": format!("first\r\nINFO forged line \u{7f}del \u{1b}[31mred\u{1b}[0m {mib}"),
            "RequestId": format!("R-1\n{}", "9".repeat(10_000)),
            "Recommend": format!("https://x/\u{1b}]0;title\u{7}{}", "r".repeat(10_000)),
        })
        .to_string();
        let err = EcsError::from_response("DescribeInstances", 400, body.as_bytes());
        assert_eq!(err.code(), Some("Throttling.User"));
        assert_eq!(err.class(), ErrorClass::Throttled);
        assert!(
            err.message()
                .starts_with("first INFO forged line del red mmm"),
            "{}",
            err.message()
        );
        assert!(err.message().len() <= MAX_MESSAGE_BYTES);
        assert!(err.message().ends_with('…'));
        let id = err.request_id().unwrap();
        assert!(
            id.starts_with("R-1 999") && id.len() <= MAX_REQUEST_ID_BYTES,
            "{id}"
        );
        let rec = err.recommend().unwrap();
        assert!(
            rec.starts_with("https://x/ rrr") && rec.len() <= MAX_RECOMMEND_BYTES,
            "{rec}"
        );
        let shown = err.to_string();
        assert!(shown.len() < 1400, "{}", shown.len());
        for text in [err.message(), id, rec, &shown] {
            assert_clean(text);
        }
    }

    #[test]
    fn codes_not_of_the_documented_shape_are_replaced() {
        for (raw, quoted) in [
            ("Bad Code", "Bad Code"),
            ("a/b/../c", "a/b/../c"),
            ("Código.Inválido", "Código.Inválido"),
            ("X\u{1b}[2J\r\nY", "X Y"),
        ] {
            let body = serde_json::json!({"Code": raw, "Message": "the message", "RequestId": "R"})
                .to_string();
            let err = EcsError::from_response("StopInstance", 400, body.as_bytes());
            assert_eq!(err.kind(), ErrorKind::Api);
            assert_eq!(err.code(), Some(INVALID_ERROR_CODE), "{raw:?}");
            assert_eq!(err.class(), ErrorClass::Unknown);
            assert_eq!(
                err.message(),
                format!("error code not of the documented form: \"{quoted}\": the message")
            );
            assert_clean(&err.to_string());
        }
        let long = "A".repeat(10_000);
        let body = format!(r#"{{"Code":"{long}","Message":"m"}}"#);
        let err = EcsError::from_response("StopInstance", 503, body.as_bytes());
        assert_eq!(err.code(), Some(INVALID_ERROR_CODE));
        assert_eq!(err.class(), ErrorClass::Transient, "the status decides");
        assert!(err.message().len() < 200, "{}", err.message());
        // 128 characters of the documented alphabet are a code.
        let max = "A".repeat(128);
        let body = format!(r#"{{"Code":"{max}"}}"#);
        assert_eq!(
            EcsError::from_response("A", 400, body.as_bytes()).code(),
            Some(max.as_str())
        );
    }

    #[test]
    fn secrets_are_redacted_before_text_is_cut() {
        let token = "SECRETTOKEN".repeat(20);
        let redact = |t: &str| t.replace(&token, "<redacted>");
        // The token straddles the 1 KiB cut: redacting after cutting would leave its start.
        let message = format!("{}{token}", "x".repeat(MAX_MESSAGE_BYTES - 50));
        let body =
            serde_json::json!({"Code": "SignatureDoesNotMatch", "Message": message}).to_string();
        let err = EcsError::from_response_redacted("A", 400, body.as_bytes(), &redact);
        assert!(!err.message().contains("SECRET"), "{}", err.message());
        // The same for an excerpt of a non-API body.
        let html = format!("<html>{}{token}</html>", "y".repeat(EXCERPT_BYTES - 30));
        let err = EcsError::from_response_redacted("A", 502, html.as_bytes(), &redact);
        assert_eq!(err.kind(), ErrorKind::InvalidBody);
        assert!(!err.message().contains("SECRET"), "{}", err.message());
    }

    #[test]
    fn local_messages_are_cleaned_too() {
        let err = EcsError::new(
            "A",
            ErrorKind::Transport,
            format!("a\nb\u{7f}{}", "z".repeat(5000)),
        );
        assert!(err.message().starts_with("a b z"));
        assert!(err.message().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn outcome_unknown_when_a_mutation_may_have_been_processed() {
        let api = |status: u16, code: &str| {
            let body = format!(r#"{{"Code":"{code}","Message":"m","RequestId":"R"}}"#);
            EcsError::from_response("DeleteInstance", status, body.as_bytes())
        };
        let unknown = [
            EcsError::new("DeleteInstance", ErrorKind::Timeout, "t"),
            EcsError::new("DeleteInstance", ErrorKind::Transport, "reset"),
            api(500, "InternalError"),
            api(503, "ServiceUnavailable"),
            api(500, "UnknownError"),
            // The status decides for 5xx, whatever the code says.
            api(502, "Weird.Code"),
            api(500, "IncorrectInstanceStatus"),
            api(500, "Bad Code"),
            EcsError::from_response("DeleteInstance", 502, b"<html>Bad Gateway</html>"),
            EcsError::from_response("DeleteInstance", 504, b""),
            EcsError::invalid_body("DeleteInstance", 200, b"{}", &|t: &str| t.to_owned()),
            EcsError::invalid_body("DeleteInstance", 204, b"", &|t: &str| t.to_owned()),
        ];
        for err in &unknown {
            assert!(err.outcome_unknown(), "{err}");
        }
        let definite = [
            EcsError::new("DeleteInstance", ErrorKind::Connect, "refused"),
            EcsError::new("DeleteInstance", ErrorKind::InvalidRequest, "bad region"),
            // Flow control answers before processing, whatever the status.
            api(400, "Throttling.User"),
            api(503, "Throttling"),
            api(500, "Throttling.Api"),
            api(403, "IncorrectInstanceStatus"),
            api(404, "InvalidInstanceId.NotFound"),
            api(400, "SignatureDoesNotMatch"),
            api(403, "Forbidden.RAM"),
            api(400, "DryRunOperation"),
            api(400, "Bad Code"),
            EcsError::from_response("DeleteInstance", 429, b"slow down"),
            EcsError::from_response("DeleteInstance", 403, b"<html>denied</html>"),
            EcsError::with_status("DeleteInstance", ErrorKind::InvalidBody, 302, "redirect"),
        ];
        for err in &definite {
            assert!(!err.outcome_unknown(), "{err}");
        }
    }

    #[test]
    fn an_expired_security_token_is_recognised() {
        let api = |code: &str| {
            let body = format!(r#"{{"Code":"{code}","Message":"m","RequestId":"R"}}"#);
            EcsError::from_response("DescribeInstances", 400, body.as_bytes())
        };
        assert!(api("InvalidSecurityToken.Expired").is_expired_security_token());
        let expired = api("InvalidSecurityToken.Expired");
        assert_eq!(expired.class(), ErrorClass::CredentialsRejected);
        for other in [
            "InvalidSecurityToken.MismatchWithAccessKey",
            "InvalidSecurityToken.Malformed",
            "InvalidAccessKeyId.NotFound",
            "SignatureDoesNotMatch",
        ] {
            assert!(!api(other).is_expired_security_token(), "{other}");
        }
        assert!(!EcsError::new("A", ErrorKind::Timeout, "t").is_expired_security_token());
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
