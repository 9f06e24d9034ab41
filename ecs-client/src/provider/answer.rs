//! The credentials in an answer (STS `Credentials`, the metadata server, a credentials URI: the
//! same four fields), and the error of a non-2xx answer. Nothing of a 2xx body is ever quoted in
//! an error: it may hold a secret.

use crate::credentials::Credentials;
use crate::error::{EcsError, ErrorKind};
use crate::sanitize::clean_text;

use super::error::{Failure, ProviderErrorKind};

/// Temporary credentials and when they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub creds: Credentials,
    pub expires_at: jiff::Timestamp,
}

/// Reads `AccessKeyId`, `AccessKeySecret`, `SecurityToken` and `Expiration` (UTC,
/// `2006-01-02T15:04:05Z`) from `object`. `what` names the answer in errors.
pub(crate) fn session_from(
    object: &serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<Session, Failure> {
    let field = |name: &str| -> Result<String, Failure> {
        match object.get(name) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(serde_json::Value::String(_)) => {
                Err(Failure::invalid(format!("{what} has an empty `{name}`")))
            }
            Some(_) => Err(Failure::invalid(format!(
                "{what} has a `{name}` that is not a string"
            ))),
            None => Err(Failure::invalid(format!("{what} has no `{name}`"))),
        }
    };
    let id = field("AccessKeyId")?;
    let secret = field("AccessKeySecret")?;
    let token = field("SecurityToken")?;
    let expiration = field("Expiration")?;
    let expires_at = expiration.parse::<jiff::Timestamp>().map_err(|_| {
        Failure::invalid(format!(
            "{what} has an `Expiration` that is not a UTC timestamp: \"{}\"",
            clean_text(&expiration, 64)
        ))
    })?;
    let creds = Credentials::from_parts(
        ["AccessKeyId", "AccessKeySecret", "SecurityToken"],
        id,
        secret,
        Some(token),
    )
    .map_err(|e| Failure::invalid(format!("{what}: {e}")))?;
    Ok(Session { creds, expires_at })
}

/// A 2xx body as a JSON object.
pub(crate) fn json_object(
    body: &[u8],
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(_) => Err(Failure::invalid(format!("{what} is not a JSON object"))),
        Err(_) if body.is_empty() => Err(Failure::invalid(format!("{what} is empty"))),
        Err(_) => Err(Failure::invalid(format!("{what} is not JSON"))),
    }
}

/// A non-2xx answer of `service` to `action`: the API error (code, message, RequestId) when the
/// body carries one, else the status and a short excerpt; every text scrubbed by `redact` before
/// it is cut.
pub(crate) fn refused(
    service: &str,
    action: &str,
    status: u16,
    body: &[u8],
    redact: &dyn Fn(&str) -> String,
) -> Failure {
    let err = EcsError::from_response_redacted(action, status, body, redact);
    let mut details = Vec::new();
    if let Some(id) = err.request_id() {
        details.push(format!("RequestId {id}"));
    }
    details.push(format!("HTTP {status}"));
    let details = details.join(", ");
    let (kind, verb) = if status >= 500 {
        (ProviderErrorKind::Unavailable, "could not serve")
    } else {
        (ProviderErrorKind::Refused, "refused")
    };
    let message = match (err.kind(), err.code()) {
        (ErrorKind::Api, Some(code)) if err.message().is_empty() => {
            format!("{service} {verb} {action}: {code} ({details})")
        }
        (ErrorKind::Api, Some(code)) => format!(
            "{service} {verb} {action}: {code}: {} ({details})",
            err.message()
        ),
        _ => format!(
            "{service} answered {action} with {} ({details})",
            err.message()
        ),
    };
    let mut failure = Failure::new(kind, message);
    failure.code = err.code().map(str::to_owned);
    failure.request_id = err.request_id().map(str::to_owned);
    failure.http_status = Some(status);
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> serde_json::Map<String, serde_json::Value> {
        json_object(json.as_bytes(), "the answer").unwrap()
    }

    #[test]
    fn reads_the_four_fields() {
        let s = session_from(
            &object(
                r#"{"AccessKeyId":"STS.id","AccessKeySecret":"SECRETVALUE","SecurityToken":"TOKENVALUE","Expiration":"2030-01-02T03:04:05Z"}"#,
            ),
            "the answer",
        )
        .unwrap();
        assert_eq!(s.creds.access_key_id(), "STS.id");
        assert_eq!(s.creds.access_key_secret(), "SECRETVALUE");
        assert_eq!(s.creds.security_token(), Some("TOKENVALUE"));
        assert_eq!(
            s.expires_at,
            "2030-01-02T03:04:05Z".parse::<jiff::Timestamp>().unwrap()
        );
    }

    #[test]
    fn bad_answers_name_the_field_never_a_value() {
        for (json, expected) in [
            (
                r#"{"AccessKeySecret":"SECRETVALUE","SecurityToken":"TOKENVALUE","Expiration":"2030-01-02T03:04:05Z"}"#,
                "has no `AccessKeyId`",
            ),
            (
                r#"{"AccessKeyId":"id","AccessKeySecret":"SECRETVALUE","SecurityToken":"TOKENVALUE"}"#,
                "has no `Expiration`",
            ),
            (
                r#"{"AccessKeyId":"id","AccessKeySecret":"SECRETVALUE","SecurityToken":"TOKENVALUE","Expiration":"tomorrow"}"#,
                "`Expiration` that is not a UTC timestamp: \"tomorrow\"",
            ),
            (
                r#"{"AccessKeyId":"id","AccessKeySecret":"SECRETVALUE","SecurityToken":"TOKEN VALUE","Expiration":"2030-01-02T03:04:05Z"}"#,
                "`SecurityToken` contains characters that cannot be sent",
            ),
            (
                r#"{"AccessKeyId":"id","AccessKeySecret":"","SecurityToken":"TOKENVALUE","Expiration":"2030-01-02T03:04:05Z"}"#,
                "has an empty `AccessKeySecret`",
            ),
            (
                r#"{"AccessKeyId":"id","AccessKeySecret":7,"SecurityToken":"TOKENVALUE","Expiration":"2030-01-02T03:04:05Z"}"#,
                "`AccessKeySecret` that is not a string",
            ),
        ] {
            let err = session_from(&object(json), "the answer").unwrap_err();
            assert_eq!(err.kind, ProviderErrorKind::InvalidAnswer);
            assert!(err.message.contains(expected), "{}", err.message);
            assert!(!err.message.contains("SECRETVALUE"), "{}", err.message);
            assert!(!err.message.contains("TOKEN"), "{}", err.message);
        }
        for body in ["", "[]", "<xml/>"] {
            assert!(json_object(body.as_bytes(), "the answer").is_err());
        }
    }

    #[test]
    fn refusals_carry_code_and_request_id() {
        let body = br#"{"RequestId":"R-1","HostId":"sts.aliyuncs.com","Code":"AuthenticationFail.OIDCToken.Expired","Message":"token eyJSECRET expired"}"#;
        let f = refused("STS", "AssumeRoleWithOIDC", 400, body, &|t: &str| {
            t.replace("eyJSECRET", "<redacted>")
        });
        assert_eq!(f.kind, ProviderErrorKind::Refused);
        assert_eq!(
            f.code.as_deref(),
            Some("AuthenticationFail.OIDCToken.Expired")
        );
        assert_eq!(f.request_id.as_deref(), Some("R-1"));
        assert_eq!(
            f.message,
            "STS refused AssumeRoleWithOIDC: AuthenticationFail.OIDCToken.Expired: token \
             <redacted> expired (RequestId R-1, HTTP 400)"
        );
        let f = refused(
            "STS",
            "AssumeRole",
            502,
            b"<html>bad gateway</html>",
            &|t: &str| t.to_owned(),
        );
        assert_eq!(f.kind, ProviderErrorKind::Unavailable);
        assert!(
            f.message.starts_with("STS answered AssumeRole with a body"),
            "{}",
            f.message
        );
    }
}
