//! The ECS instance metadata server's RAM-role part (docs/ecs-reference.md §10), on the same
//! listener under `/latest/` (also as absolute-form proxy requests, `GET
//! http://100.100.100.200/latest/...`, which is how the official credentials libraries reach a
//! test server through their proxy option), and a credentials URI (`/credentials-uri`).
//!
//! - `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds: 1..21600` → a
//!   session token (text).
//! - `GET /latest/meta-data/ram/security-credentials/` → the role name (text).
//! - `GET /latest/meta-data/ram/security-credentials/<role>` → `{"AccessKeyId",
//!   "AccessKeySecret", "Expiration", "SecurityToken", "LastUpdated", "Code": "Success"}`.
//!
//! A GET that carries `X-aliyun-ecs-metadata-token` must carry a valid, unexpired token (else
//! 401); without one it is answered in normal mode and refused (401) in hardened mode.

use std::time::{Duration, Instant};

use hyper::HeaderMap;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::json;

use crate::iam::RoleArn;
use crate::sessions::{RoleSession, Source, format_time};
use crate::state::{CallRecord, Sim, State, Timing};

pub const TOKEN_PATH: &str = "/latest/api/token";
pub const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials";
pub const CREDENTIALS_URI_PATH: &str = "/credentials-uri";
pub const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
const MAX_TOKEN_TTL_SECS: u64 = 21_600;

/// How long instance-role credentials live (UNCONFIRMED: the pages do not say; the libraries
/// refresh long before), and when the server hands out new ones instead of the current ones.
const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(6 * 3600);
const REFRESH_BEFORE: Duration = Duration::from_secs(30 * 60);
/// The RoleSessionName of instance-role credentials (not documented; any valid name).
const SESSION_NAME: &str = "ecs-instance-metadata";

pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

fn text(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        content_type: "text/plain",
        body: body.into(),
    }
}

fn json_answer(status: u16, body: serde_json::Value) -> Answer {
    Answer {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

/// Whether the server routes `path` here.
pub fn serves(path: &str) -> bool {
    path == "/latest" || path.starts_with("/latest/") || path == CREDENTIALS_URI_PATH
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn handle(sim: &Sim, method: &str, path: &str, headers: &HeaderMap) -> Answer {
    let token_present = headers.contains_key(TOKEN_HEADER);
    let mut state = sim.lock();
    let (action, answer) = route(&mut state, &sim.timing, method, path, headers);
    let mut params = std::collections::BTreeMap::new();
    params.insert("method".to_owned(), method.to_owned());
    params.insert("path".to_owned(), path.to_owned());
    params.insert("tokenPresent".to_owned(), token_present.to_string());
    state.calls.push(CallRecord {
        seq: 0,
        product: "metadata",
        action: Some(action.to_owned()),
        access_key_id: None,
        signature_method: None,
        params,
        http_status: Some(answer.status),
        code: None,
        request_id: uuid::Uuid::new_v4().to_string().to_uppercase(),
        at: jiff::Timestamp::now().to_string(),
        dropped: false,
        answer_dropped: false,
    });
    answer
}

fn route(
    state: &mut State,
    timing: &Timing,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> (&'static str, Answer) {
    let now = Instant::now();
    if path == TOKEN_PATH {
        return ("MetadataToken", issue_token(state, method, headers, now));
    }
    if path == CREDENTIALS_URI_PATH {
        let answer = if method != "GET" {
            text(405, "Method Not Allowed")
        } else {
            match state.iam.metadata_role.clone() {
                None => json_answer(404, json!({"Code": "NotFound"})),
                Some(role) => json_answer(200, credentials(state, timing, &role, false)),
            }
        };
        return ("CredentialsUri", answer);
    }
    if method != "GET" {
        return ("Metadata", text(405, "Method Not Allowed"));
    }
    // The session token: when sent it must be valid; without one only normal mode answers.
    let authorized = match header(headers, TOKEN_HEADER) {
        Some(token) => state.metadata.token_valid(token, now),
        None => !state.iam.metadata_requires_token,
    };
    if !authorized {
        return ("Metadata", text(401, "Unauthorized"));
    }
    let Some(rest) = path.strip_prefix(CREDENTIALS_PATH) else {
        return ("Metadata", text(404, "Not Found"));
    };
    let role = state.iam.metadata_role.clone();
    match (rest, role) {
        ("" | "/", Some(role)) => ("MetadataRoleName", text(200, role.name.clone())),
        (name, Some(role)) if name.strip_prefix('/') == Some(role.name.as_str()) => (
            "MetadataCredentials",
            json_answer(200, credentials(state, timing, &role, true)),
        ),
        _ => ("MetadataCredentials", text(404, "Not Found")),
    }
}

fn issue_token(state: &mut State, method: &str, headers: &HeaderMap, now: Instant) -> Answer {
    if method != "PUT" {
        return text(405, "Method Not Allowed");
    }
    let ttl = header(headers, TTL_HEADER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ttl| (1..=MAX_TOKEN_TTL_SECS).contains(ttl));
    let Some(ttl) = ttl else {
        return text(400, "Bad Request");
    };
    let token: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(56)
        .map(char::from)
        .collect();
    state.metadata.tokens.retain(|_, until| *until > now);
    state
        .metadata
        .tokens
        .insert(token.clone(), now + Duration::from_secs(ttl));
    text(200, token)
}

/// The instance role's current credentials, issuing new ones when there are none, they have
/// expired or they are close to it. `with_last_updated`: the metadata form (the credentials URI
/// form has no `LastUpdated`).
fn credentials(
    state: &mut State,
    timing: &Timing,
    role: &RoleArn,
    with_last_updated: bool,
) -> serde_json::Value {
    let now = jiff::Timestamp::now();
    let lifetime = timing.sts_lifetime(CREDENTIAL_LIFETIME);
    let refresh_before = REFRESH_BEFORE.min(lifetime / 2);
    let reusable = state
        .metadata
        .current
        .as_deref()
        .and_then(|ak| state.sessions.get(ak))
        .filter(|s| {
            s.identity.role == *role
                && jiff::SignedDuration::try_from(refresh_before)
                    .ok()
                    .is_some_and(|margin| now + margin < s.expires_at)
        })
        .map(|s| s.access_key_id.clone());
    let access_key_id = match reusable {
        Some(ak) => ak,
        None => issue(state, timing, role),
    };
    let session = state
        .sessions
        .get(&access_key_id)
        .expect("the current metadata session exists");
    let mut body = json!({
        "AccessKeyId": session.access_key_id,
        "AccessKeySecret": session.secret,
        "Expiration": format_time(session.expires_at),
        "SecurityToken": session.security_token,
        "Code": "Success",
    });
    if with_last_updated {
        body["LastUpdated"] = json!(format_time(session.issued_at));
    }
    body
}

/// New credentials for the instance role; they become the ones served. Returns the AccessKeyId.
pub fn issue(state: &mut State, timing: &Timing, role: &RoleArn) -> String {
    let identity = RoleSession {
        role: role.clone(),
        session_name: SESSION_NAME.to_owned(),
    };
    let lifetime = timing.sts_lifetime(CREDENTIAL_LIFETIME);
    let access_key_id = state
        .sessions
        .issue(identity, Source::Metadata, jiff::Timestamp::now(), lifetime)
        .access_key_id
        .clone();
    state.metadata.current = Some(access_key_id.clone());
    access_key_id
}
