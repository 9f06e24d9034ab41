//! Temporary credentials issued by STS and the metadata server: an `STS.` AccessKeyId, a secret
//! and a SecurityToken, valid until their expiration (docs/ecs-reference.md §10). ECS and STS
//! calls accept them until then and refuse them afterwards with `InvalidSecurityToken.Expired`.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Serialize;

use crate::iam::RoleArn;

/// Expired sessions are kept (so their keys answer `Expired`, not `NotFound`) until the store
/// holds this many; then the expired ones are dropped.
const CAPACITY: usize = 100_000;

/// How a session was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Source {
    AssumeRole,
    AssumeRoleWithOIDC,
    /// The instance metadata server (and the credentials URI, which serves the same role).
    Metadata,
}

/// The assumed-role identity a session acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSession {
    pub role: RoleArn,
    pub session_name: String,
}

impl RoleSession {
    pub fn role_id(&self) -> String {
        self.role.role_id()
    }

    /// `<roleId>:<sessionName>`, AssumedRoleUser.AssumedRoleId and GetCallerIdentity's PrincipalId.
    pub fn assumed_role_id(&self) -> String {
        format!("{}:{}", self.role_id(), self.session_name)
    }
}

pub struct Session {
    pub access_key_id: String,
    pub secret: String,
    pub security_token: String,
    pub identity: RoleSession,
    pub source: Source,
    pub issued_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
}

/// The secret and the token never reach logs.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("security_token", &"<redacted>")
            .field("identity", &self.identity)
            .field("source", &self.source)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Session {
    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        now >= self.expires_at
    }

    /// The admin view: everything but the secret and the token.
    pub fn summary(&self, now: jiff::Timestamp) -> serde_json::Value {
        serde_json::json!({
            "accessKeyId": self.access_key_id,
            "roleArn": self.identity.role.to_string(),
            "roleSessionName": self.identity.session_name,
            "source": self.source,
            "issuedAt": format_time(self.issued_at),
            "expiration": format_time(self.expires_at),
            "expired": self.is_expired(now),
        })
    }
}

/// `2015-04-09T11:52:19Z`, the form of `Expiration` in every answer (whole seconds).
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a SecurityToken presented with an `STS.` key resolves to.
pub enum TokenCheck<'a> {
    Valid(&'a Session),
    /// Issued by us, for another AccessKeyId.
    Mismatch,
    /// Not a token the simulator issued.
    Malformed,
    Expired,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_key: HashMap<String, Session>,
    /// SecurityToken → AccessKeyId.
    by_token: HashMap<String, String>,
}

fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

impl Sessions {
    /// Issues new credentials for `identity`, valid for `lifetime` from `now` (rounded down to
    /// whole seconds, so the `Expiration` shown is exactly when they stop working).
    pub fn issue(
        &mut self,
        identity: RoleSession,
        source: Source,
        now: jiff::Timestamp,
        lifetime: std::time::Duration,
    ) -> &Session {
        if self.by_key.len() >= CAPACITY {
            self.drop_expired(now);
        }
        let issued_at = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let lifetime =
            jiff::SignedDuration::try_from(lifetime).unwrap_or(jiff::SignedDuration::ZERO);
        let expires_at = issued_at.checked_add(lifetime).unwrap_or(issued_at);
        let mut token_bytes = [0u8; 96];
        rand::rng().fill(&mut token_bytes[..]);
        let session = Session {
            access_key_id: format!("STS.{}", random_alphanumeric(28)),
            secret: random_alphanumeric(44),
            // Real tokens are long base64 strings with `+`, `/` and `=`, which exercises every
            // client's encoding of the SecurityToken parameter and header.
            security_token: format!("CAIS{}", BASE64.encode(token_bytes)),
            identity,
            source,
            issued_at,
            expires_at,
        };
        let key = session.access_key_id.clone();
        self.by_token
            .insert(session.security_token.clone(), key.clone());
        self.by_key.entry(key).or_insert(session)
    }

    pub fn get(&self, access_key_id: &str) -> Option<&Session> {
        self.by_key.get(access_key_id)
    }

    /// The checks of an `STS.` key's token, in the order the gateway answers them: a token we
    /// never issued, an expired session, a token of another key.
    pub fn check(&self, access_key_id: &str, token: &str, now: jiff::Timestamp) -> TokenCheck<'_> {
        let Some(owner) = self.by_token.get(token) else {
            return TokenCheck::Malformed;
        };
        let Some(session) = self.by_key.get(owner) else {
            return TokenCheck::Malformed;
        };
        if session.is_expired(now) {
            return TokenCheck::Expired;
        }
        if owner != access_key_id {
            return TokenCheck::Mismatch;
        }
        TokenCheck::Valid(session)
    }

    /// Makes a session expire now (admin). False when unknown.
    pub fn expire(&mut self, access_key_id: &str, now: jiff::Timestamp) -> bool {
        match self.by_key.get_mut(access_key_id) {
            Some(session) => {
                if session.expires_at > now {
                    session.expires_at = now;
                }
                true
            }
            None => false,
        }
    }

    /// Forgets a session: its key then answers `InvalidAccessKeyId.NotFound` (admin).
    pub fn remove(&mut self, access_key_id: &str) -> bool {
        match self.by_key.remove(access_key_id) {
            Some(session) => {
                self.by_token.remove(&session.security_token);
                true
            }
            None => false,
        }
    }

    /// Sessions ordered by issue time.
    pub fn list(&self) -> Vec<&Session> {
        let mut all: Vec<&Session> = self.by_key.values().collect();
        all.sort_by(|a, b| (a.issued_at, &a.access_key_id).cmp(&(b.issued_at, &b.access_key_id)));
        all
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.by_token.clear();
    }

    fn drop_expired(&mut self, now: jiff::Timestamp) {
        self.by_key.retain(|_, s| !s.is_expired(now));
        let keys = &self.by_key;
        self.by_token.retain(|_, key| keys.contains_key(key));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn identity() -> RoleSession {
        RoleSession {
            role: RoleArn::parse("acs:ram::1000000000000000:role/r").unwrap(),
            session_name: "s1".into(),
        }
    }

    #[test]
    fn issue_check_expire_remove() {
        let now: jiff::Timestamp = "2026-01-02T03:04:05.9Z".parse().unwrap();
        let mut sessions = Sessions::default();
        let (ak, token) = {
            let s = sessions.issue(
                identity(),
                Source::AssumeRole,
                now,
                Duration::from_secs(900),
            );
            assert!(s.access_key_id.starts_with("STS."));
            assert!(s.security_token.starts_with("CAIS"));
            assert_eq!(format_time(s.expires_at), "2026-01-02T03:19:05Z");
            (s.access_key_id.clone(), s.security_token.clone())
        };
        let other = sessions
            .issue(identity(), Source::Metadata, now, Duration::from_secs(900))
            .access_key_id
            .clone();
        assert!(matches!(
            sessions.check(&ak, &token, now),
            TokenCheck::Valid(_)
        ));
        assert!(matches!(
            sessions.check(&other, &token, now),
            TokenCheck::Mismatch
        ));
        assert!(matches!(
            sessions.check(&ak, "CAISnope", now),
            TokenCheck::Malformed
        ));
        let later = now + jiff::SignedDuration::from_secs(900);
        assert!(matches!(
            sessions.check(&ak, &token, later),
            TokenCheck::Expired
        ));
        assert!(sessions.expire(&ak, now));
        assert!(matches!(
            sessions.check(&ak, &token, now),
            TokenCheck::Expired
        ));
        assert!(sessions.remove(&ak));
        assert!(matches!(
            sessions.check(&ak, &token, now),
            TokenCheck::Malformed
        ));
        assert!(!sessions.expire(&ak, now));
        assert_eq!(sessions.list().len(), 1);
    }

    #[test]
    fn debug_hides_secrets() {
        let now = jiff::Timestamp::now();
        let mut sessions = Sessions::default();
        let s = sessions.issue(
            identity(),
            Source::AssumeRole,
            now,
            Duration::from_secs(900),
        );
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(&s.secret) && !shown.contains(&s.security_token),
            "{shown}"
        );
        let summary = s.summary(now).to_string();
        assert!(!summary.contains(&s.secret) && !summary.contains(&s.security_token));
    }
}
