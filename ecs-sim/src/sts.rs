//! The STS operations (RPC, version `2015-04-01`, docs/ecs-reference.md §10): AssumeRole,
//! AssumeRoleWithOIDC (anonymous: the OIDC token is the credential) and GetCallerIdentity.
//!
//! Order of checks, the first failure answers:
//! - AssumeRole: `RoleArn`, `RoleSessionName` present → `RoleArn` form → `RoleSessionName` form
//!   → `DurationSeconds` (an integer ≥ 900) → `Policy` (JSON) → role exists → the caller is
//!   trusted (account or AccessKeyId) and passes the role's `ExternalId` → `DurationSeconds` ≤
//!   the role's MaxSessionDuration → credentials.
//! - AssumeRoleWithOIDC (no signature, no timestamp or nonce check): `OIDCProviderArn` present →
//!   the same parameter checks → token structure (`AuthenticationFail.OIDCToken.Invalid`) →
//!   provider registered → signature → `iss` is the provider's issuer URL → `exp` (no leeway;
//!   `nbf`, `iat` at most 60 s ahead) → `aud` is one of the provider's client IDs → role exists → the role trusts the
//!   provider (and the token's `sub`) → MaxSessionDuration → credentials.
//!
//! The order within each list is this simulator's choice (docs/ecs-reference.md §10 gives the
//! codes, not the order).

use std::time::Duration;

use crate::call::Fields;
use crate::errors::EcsError;
use crate::iam::{Role, RoleArn};
use crate::oidc;
use crate::params::Params;
use crate::response::Node;
use crate::sessions::{RoleSession, Session, Source, format_time};
use crate::state::{State, Timing};

pub const API_VERSION: &str = "2015-04-01";

pub const ACTIONS: &[&str] = &["AssumeRole", "AssumeRoleWithOIDC", "GetCallerIdentity"];

/// The action that takes no signature.
pub const ANONYMOUS_ACTION: &str = "AssumeRoleWithOIDC";

const MIN_DURATION: u64 = 900;
const DEFAULT_DURATION: u64 = 3600;

/// Who called, as the gateway authenticated it.
pub enum Principal {
    /// A configured AccessKey: a RAM user.
    User {
        access_key_id: String,
        account_id: String,
        user_name: String,
    },
    /// Temporary credentials of an assumed role.
    Role(RoleSession),
    /// AssumeRoleWithOIDC: no signature.
    Anonymous,
}

impl Principal {
    fn account_id(&self) -> Option<&str> {
        match self {
            Principal::User { account_id, .. } => Some(account_id),
            Principal::Role(session) => Some(&session.role.account_id),
            Principal::Anonymous => None,
        }
    }
}

pub fn run(
    state: &mut State,
    principal: &Principal,
    timing: &Timing,
    action: &str,
    params: &Params,
) -> Result<Fields, EcsError> {
    match action {
        "AssumeRole" => assume_role(state, principal, timing, params),
        "AssumeRoleWithOIDC" => assume_role_with_oidc(state, timing, params),
        "GetCallerIdentity" => Ok(caller_identity(principal)),
        _ => Err(EcsError::api_not_found()),
    }
}

/// Required STS parameters are reported in the gateway's `Missing{Name}` form (UNCONFIRMED for
/// STS, whose tables do not list the missing case).
fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, EcsError> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EcsError::missing_common(name))
}

/// `[A-Za-z0-9.@_-]`, 2..64 characters (the current AssumeRoleWithOIDC page; older AssumeRole
/// pages say 2..32).
fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'_' | b'-'))
}

/// The checks every assume call shares before the credential is looked at.
struct Request<'a> {
    role_arn: RoleArn,
    session_name: &'a str,
    duration: u64,
}

fn common_request<'a>(params: &'a Params) -> Result<Request<'a>, EcsError> {
    let role_arn = required(params, "RoleArn")?;
    let session_name = required(params, "RoleSessionName")?;
    let role_arn = RoleArn::parse(role_arn).ok_or_else(EcsError::role_arn_invalid)?;
    if !valid_session_name(session_name) {
        return Err(EcsError::role_session_name_invalid());
    }
    let duration = match params.get("DurationSeconds").filter(|v| !v.is_empty()) {
        None => DEFAULT_DURATION,
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|d| *d >= MIN_DURATION)
            .ok_or_else(EcsError::duration_seconds_invalid)?,
    };
    // The session policy is checked for grammar (JSON with a `Statement`), not enforced.
    if let Some(policy) = params.get("Policy").filter(|v| !v.is_empty()) {
        let parsed: Option<serde_json::Value> = serde_json::from_str(policy).ok();
        if parsed.is_none_or(|p| p.get("Statement").is_none()) {
            return Err(EcsError::policy_grammar());
        }
    }
    Ok(Request {
        role_arn,
        session_name,
        duration,
    })
}

fn check_max_duration(role: &Role, duration: u64) -> Result<(), EcsError> {
    if duration > role.max_session_duration {
        return Err(EcsError::duration_seconds_invalid());
    }
    Ok(())
}

fn assume_role(
    state: &mut State,
    principal: &Principal,
    timing: &Timing,
    params: &Params,
) -> Result<Fields, EcsError> {
    let request = common_request(params)?;
    let role = state
        .iam
        .roles
        .get(&request.role_arn.to_string())
        .ok_or_else(EcsError::role_not_found)?;
    let trusted_key = match principal {
        Principal::User { access_key_id, .. } => {
            role.trusted_access_key_ids.contains(access_key_id)
        }
        _ => false,
    };
    let trusted_account = principal
        .account_id()
        .is_some_and(|a| role.trusted_account_ids.contains(a));
    if !(trusted_key || trusted_account) {
        return Err(EcsError::sts_no_permission());
    }
    if let Some(expected) = &role.external_id
        && params.get("ExternalId") != Some(expected.as_str())
    {
        return Err(EcsError::sts_no_permission());
    }
    check_max_duration(role, request.duration)?;
    let role_arn = role.arn.clone();
    let session = issue(state, timing, role_arn, &request, Source::AssumeRole);
    Ok(credentials_fields(session))
}

fn assume_role_with_oidc(
    state: &mut State,
    timing: &Timing,
    params: &Params,
) -> Result<Fields, EcsError> {
    let provider_arn = required(params, "OIDCProviderArn")?;
    let request = common_request(params)?;
    let token = params.get("OIDCToken").unwrap_or_default();
    let token = oidc::parse(token)?;
    let provider = state
        .iam
        .providers
        .get(provider_arn)
        .ok_or_else(EcsError::oidc_provider_not_found)?;
    if !token.verify(&provider.keys) {
        return Err(EcsError::oidc_token_signature());
    }
    let claims = &token.claims;
    if claims.iss.as_deref() != Some(provider.issuer_url.as_str()) {
        return Err(EcsError::oidc_issuer());
    }
    oidc::check_times(claims, jiff::Timestamp::now().as_second())?;
    if !oidc::audience_matches(claims, &provider.client_ids) {
        return Err(EcsError::oidc_audience());
    }
    let role_arn = request.role_arn.to_string();
    let role = state
        .iam
        .roles
        .get(&role_arn)
        .ok_or_else(|| EcsError::oidc_role_not_found(&role_arn))?;
    if !role.trusts_oidc(provider_arn, claims.sub.as_deref()) {
        return Err(EcsError::oidc_no_permission());
    }
    check_max_duration(role, request.duration)?;
    let token_info = Node::Object(vec![
        ("Subject", claims.sub.clone().unwrap_or_default().into()),
        ("Issuer", claims.iss.clone().unwrap_or_default().into()),
        ("ClientIds", claims.aud.join(",").into()),
        ("ExpirationTime", unix_time(claims.exp).into()),
        ("IssuanceTime", unix_time(claims.iat).into()),
    ]);
    let role_arn = role.arn.clone();
    let session = issue(
        state,
        timing,
        role_arn,
        &request,
        Source::AssumeRoleWithOIDC,
    );
    let mut fields = credentials_fields(session);
    fields.push(("OIDCTokenInfo", token_info));
    Ok(fields)
}

/// The session of an accepted assume call: the role, the request's session name, and its
/// duration as the timing allows (`--sts-max-lifetime-secs`).
fn issue<'s>(
    state: &'s mut State,
    timing: &Timing,
    role_arn: RoleArn,
    request: &Request,
    source: Source,
) -> &'s Session {
    let identity = RoleSession {
        role: role_arn,
        session_name: request.session_name.to_owned(),
    };
    let lifetime = timing.sts_lifetime(Duration::from_secs(request.duration));
    state
        .sessions
        .issue(identity, source, jiff::Timestamp::now(), lifetime)
}

fn unix_time(seconds: Option<i64>) -> String {
    seconds
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(format_time)
        .unwrap_or_default()
}

/// `AssumedRoleUser` (the AssumeRole page's `acs:ram::<account>:role/<role>/<session>` form)
/// and `Credentials`.
pub fn credentials_fields(session: &Session) -> Fields {
    let identity = &session.identity;
    vec![
        (
            "AssumedRoleUser",
            Node::Object(vec![
                (
                    "Arn",
                    format!(
                        "acs:ram::{}:role/{}/{}",
                        identity.role.account_id, identity.role.name, identity.session_name
                    )
                    .into(),
                ),
                ("AssumedRoleId", identity.assumed_role_id().into()),
            ]),
        ),
        (
            "Credentials",
            Node::Object(vec![
                ("AccessKeyId", session.access_key_id.as_str().into()),
                ("AccessKeySecret", session.secret.as_str().into()),
                ("Expiration", format_time(session.expires_at).into()),
                ("SecurityToken", session.security_token.as_str().into()),
            ]),
        ),
    ]
}

/// GetCallerIdentity: a RAM user (`UserId`) or an assumed role (`RoleId`, the
/// `assumed-role/<role>/<session>` ARN form of the RRSA page's example).
fn caller_identity(principal: &Principal) -> Fields {
    match principal {
        Principal::User {
            access_key_id,
            account_id,
            user_name,
        } => {
            let user_id = crate::iam::numeric_id(access_key_id, 16);
            vec![
                ("AccountId", account_id.as_str().into()),
                ("UserId", user_id.as_str().into()),
                (
                    "Arn",
                    format!("acs:ram::{account_id}:user/{user_name}").into(),
                ),
                ("IdentityType", "RAMUser".into()),
                ("PrincipalId", user_id.into()),
            ]
        }
        Principal::Role(session) => vec![
            ("AccountId", session.role.account_id.as_str().into()),
            ("RoleId", session.role_id().into()),
            (
                "Arn",
                format!(
                    "acs:ram::{}:assumed-role/{}/{}",
                    session.role.account_id, session.role.name, session.session_name
                )
                .into(),
            ),
            ("IdentityType", "AssumedRoleUser".into()),
            ("PrincipalId", session.assumed_role_id().into()),
        ],
        // Unreachable: only AssumeRoleWithOIDC is anonymous.
        Principal::Anonymous => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn parameter_checks_in_order() {
        let code = |pairs: &[(&str, &str)]| common_request(&params(pairs)).err().map(|e| e.code);
        assert_eq!(code(&[]).as_deref(), Some("MissingRoleArn"));
        assert_eq!(
            code(&[("RoleArn", "x")]).as_deref(),
            Some("MissingRoleSessionName")
        );
        assert_eq!(
            code(&[("RoleArn", "x"), ("RoleSessionName", "s1")]).as_deref(),
            Some("InvalidParameter.RoleArn")
        );
        let arn = ("RoleArn", "acs:ram::1:role/r");
        assert_eq!(
            code(&[arn, ("RoleSessionName", "a")]).as_deref(),
            Some("InvalidParameter.RoleSessionName")
        );
        assert_eq!(
            code(&[arn, ("RoleSessionName", "a b")]).as_deref(),
            Some("InvalidParameter.RoleSessionName")
        );
        for bad in ["899", "abc", "-1"] {
            assert_eq!(
                code(&[arn, ("RoleSessionName", "s1"), ("DurationSeconds", bad)]).as_deref(),
                Some("InvalidParameter.DurationSeconds"),
                "{bad}"
            );
        }
        assert_eq!(
            code(&[arn, ("RoleSessionName", "s1"), ("Policy", "{")]).as_deref(),
            Some("InvalidParameter.PolicyGrammar")
        );
        let good = params(&[
            arn,
            ("RoleSessionName", "a.b@c_d-e"),
            ("Policy", r#"{"Statement":[],"Version":"1"}"#),
        ]);
        assert_eq!(common_request(&good).unwrap().duration, 3600);
    }
}
