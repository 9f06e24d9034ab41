//! The RPC gateway on `/`: what the Alibaba Cloud API gateway does before and around an ECS or
//! STS operation. Checks run in the gateway's order:
//! action/version known (the version picks the product: ECS `2014-05-26`, STS `2015-04-01`) →
//! signature params present → key known (and its STS token: a configured token, or the token of
//! temporary credentials, docs/ecs-reference.md §10) → timestamp → nonce replay → signature →
//! faults (latency, drop, throttle, 5xx) → the operation → the answer, or none (an answer dropped
//! on purpose after the operation). STS AssumeRoleWithOIDC is anonymous: no signature checks.
//! Every request is written to the call log, including rejected ones.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};

use crate::actions;
use crate::call::Caller;
use crate::encoding::{MalformedPair, decode_pairs};
use crate::errors::EcsError;
use crate::faults::Verdict;
use crate::params::Params;
use crate::response::{Format, render_error, render_success};
use crate::sessions::TokenCheck;
use crate::signature::{
    V3_ALGORITHM, V3Request, parse_v3_authorization, sha256_hex, v1_string_to_sign, v1_verify,
    v3_string_to_sign, v3_verify,
};
use crate::state::{CallRecord, Sim, State};
use crate::sts::{self, Principal};

/// An RPC request as received.
pub struct RpcRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// `None` when the body exceeded the size limit.
    pub body: Option<&'a [u8]>,
}

/// What to send back.
pub enum Outcome {
    Respond {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Close the connection without a response (injected fault).
    Drop,
}

const SIGNATURE_METHOD_V1: &str = "HMAC-SHA1";

/// The API a request is for, from its `Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Product {
    Ecs,
    Sts,
}

impl Product {
    /// The `product` of the call log.
    fn log_name(self) -> &'static str {
        match self {
            Product::Ecs => "ecs",
            Product::Sts => "sts",
        }
    }

    /// The `product` of the error's `Recommend` URL.
    fn recommend_name(self) -> &'static str {
        match self {
            Product::Ecs => "Ecs",
            Product::Sts => "Sts",
        }
    }
}

/// A request that passed the gateway's checks.
struct Authenticated {
    /// Empty for the anonymous AssumeRoleWithOIDC.
    access_key_id: String,
    action: String,
    params: Params,
    product: Product,
    principal: Principal,
    /// The instance owners the caller sees.
    owners: Vec<String>,
}

pub async fn handle(sim: &Sim, request: RpcRequest<'_>) -> Outcome {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let host_id = header(request.headers, HOST.as_str()).unwrap_or_default();
    let mut call = CallRecord {
        seq: 0,
        product: Product::Ecs.log_name(),
        action: None,
        access_key_id: None,
        signature_method: None,
        params: BTreeMap::new(),
        http_status: None,
        code: None,
        request_id: request_id.clone(),
        at: jiff::Timestamp::now().to_string(),
        dropped: false,
        answer_dropped: false,
    };
    // V3 answers JSON unless asked otherwise; the RPC default is XML.
    let mut format = if request.headers.contains_key(AUTHORIZATION) {
        Format::Json
    } else {
        Format::Xml
    };

    let mut product = Product::Ecs;
    let result = match authenticate(sim, &request, &mut call, &mut format, &mut product) {
        Err(error) => Err(error),
        Ok(auth) => {
            let (latency, verdict) = {
                let mut state = sim.lock();
                state.faults.decide(
                    &auth.access_key_id,
                    &auth.action,
                    Instant::now(),
                    &mut rand::rng(),
                )
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match verdict {
                Verdict::Drop => {
                    call.dropped = true;
                    sim.lock().calls.push(call);
                    return Outcome::Drop;
                }
                Verdict::Fail(error) => Err(error),
                Verdict::Proceed | Verdict::DropAnswer => {
                    call.answer_dropped = verdict == Verdict::DropAnswer;
                    let mut state = sim.lock();
                    let outcome = match auth.product {
                        Product::Ecs => {
                            let caller = Caller {
                                owners: &auth.owners,
                                now: Instant::now(),
                                timing: sim.timing,
                            };
                            actions::run(&mut state, &caller, &auth.action, &auth.params)
                        }
                        Product::Sts => sts::run(
                            &mut state,
                            &auth.principal,
                            &sim.timing,
                            &auth.action,
                            &auth.params,
                        ),
                    };
                    outcome.map(|fields| (auth.action, fields))
                }
            }
        }
    };

    let (status, body) = match result {
        Ok((action, fields)) => (200, render_success(format, &action, &request_id, fields)),
        Err(error) => {
            call.code = Some(error.code.clone());
            (
                error.status,
                render_error(
                    format,
                    &error,
                    &request_id,
                    &host_id,
                    product.recommend_name(),
                ),
            )
        }
    };
    call.http_status = Some(status);
    let answer_dropped = call.answer_dropped;
    sim.lock().calls.push(call);
    if answer_dropped {
        // The operation took effect; the client only sees its connection closed.
        return Outcome::Drop;
    }
    Outcome::Respond {
        status,
        content_type: format.content_type(),
        body,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

type Pairs = Vec<(String, String)>;

fn malformed(pair: MalformedPair) -> EcsError {
    EcsError::invalid_parameter(&pair.0)
}

/// The form body's pairs when the body is a form.
fn decode_form(request: &RpcRequest) -> Result<Pairs, EcsError> {
    let body = request.body.ok_or_else(EcsError::body_too_large)?;
    let is_form = header(request.headers, CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !is_form || body.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(body).map_err(|_| EcsError::invalid_parameter("body"))?;
    decode_pairs(text).map_err(malformed)
}

/// Applies a `Format` parameter (any letter case); other values keep the default.
fn apply_format(params: &Params, format: &mut Format) {
    match params.get("Format").map(str::to_ascii_uppercase).as_deref() {
        Some("JSON") => *format = Format::Json,
        Some("XML") => *format = Format::Xml,
        _ => {}
    }
}

fn required_common<'a>(params: &'a Params, name: &str) -> Result<&'a str, EcsError> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EcsError::missing_common(name))
}

/// The credential material of either signing scheme, before the key is looked up.
struct Claimed {
    access_key_id: String,
    security_token: Option<String>,
    timestamp: String,
    nonce: String,
    scheme: Scheme,
}

enum Scheme {
    V1 {
        signature: String,
    },
    V3 {
        signed_headers: Vec<String>,
        signature: String,
    },
}

fn authenticate(
    sim: &Sim,
    request: &RpcRequest,
    call: &mut CallRecord,
    format: &mut Format,
    product: &mut Product,
) -> Result<Authenticated, EcsError> {
    // The query decides the error format even when the body turns out to be unusable.
    let query = decode_pairs(request.query).map_err(malformed)?;
    apply_format(&Params::new(query.clone()), format);
    let form = decode_form(request)?;
    let all = Params::new(query.iter().chain(form.iter()).cloned().collect());
    apply_format(&all, format);
    if !matches!(request.method, "GET" | "POST") || request.path != "/" {
        return Err(EcsError::api_not_found());
    }
    for (name, value) in all.pairs() {
        // Credentials never reach the call log: the signature, STS tokens and OIDC tokens.
        let logged = match name.as_str() {
            "Signature" | "SecurityToken" => continue,
            "OIDCToken" => "<redacted>".to_owned(),
            _ => value.clone(),
        };
        call.params.entry(name.clone()).or_insert(logged);
    }

    let authorization = header(request.headers, AUTHORIZATION.as_str());
    let headers = request.headers;
    // V3 carries action and version in headers; parameters are accepted as a fallback.
    let from_header_or_param = |header_name: &str, param: &str| {
        authorization
            .as_ref()
            .and_then(|_| header(headers, header_name))
            .or_else(|| all.get(param).map(str::to_owned))
            .filter(|v| !v.is_empty())
    };
    let action = from_header_or_param("x-acs-action", "Action");
    let version = from_header_or_param("x-acs-version", "Version");
    call.action = action.clone();
    let action = action.ok_or_else(|| EcsError::missing_common("Action"))?;
    let version = version.ok_or_else(|| EcsError::missing_common("Version"))?;
    *product = match version.as_str() {
        actions::API_VERSION => Product::Ecs,
        sts::API_VERSION => Product::Sts,
        _ => return Err(EcsError::invalid_version()),
    };
    call.product = product.log_name();
    // STS answers JSON unless asked otherwise (its common parameters page); ECS V1 answers XML.
    let format_given = all
        .get("Format")
        .is_some_and(|f| f.eq_ignore_ascii_case("JSON") || f.eq_ignore_ascii_case("XML"));
    if *product == Product::Sts && !format_given {
        *format = Format::Json;
    }
    let known = match product {
        Product::Ecs => actions::ACTIONS.contains(&action.as_str()),
        Product::Sts => sts::ACTIONS.contains(&action.as_str()),
    };
    if !known {
        return Err(EcsError::api_not_found());
    }
    if *product == Product::Sts && action == sts::ANONYMOUS_ACTION {
        // The OIDC token is the credential; signature parameters, if any, are ignored.
        return Ok(Authenticated {
            access_key_id: String::new(),
            action,
            params: all,
            product: *product,
            principal: Principal::Anonymous,
            owners: Vec::new(),
        });
    }

    let claimed = match &authorization {
        Some(value) => {
            call.signature_method = Some(V3_ALGORITHM);
            claim_v3(value, headers)?
        }
        None => {
            call.signature_method = Some(SIGNATURE_METHOD_V1);
            claim_v1(&all)?
        }
    };
    call.access_key_id = Some(claimed.access_key_id.clone());

    let mut state = sim.lock();
    let key = look_up_key(&state, &claimed)?;
    let secret = key.secret;

    let timestamp: jiff::Timestamp = claimed
        .timestamp
        .parse()
        .map_err(|_| EcsError::timestamp_format())?;
    let max_skew = sim.timing.max_skew;
    let age = jiff::Timestamp::now().duration_since(timestamp);
    if age.unsigned_abs() > max_skew {
        return Err(EcsError::timestamp_expired());
    }

    let now = Instant::now();
    if state
        .nonces
        .contains(&claimed.access_key_id, &claimed.nonce, now)
    {
        return Err(EcsError::nonce_used());
    }

    let verified = match &claimed.scheme {
        Scheme::V1 { signature } => {
            let pairs = all.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let string_to_sign = v1_string_to_sign(request.method, pairs);
            v1_verify(&secret, &string_to_sign, signature)
                .then_some(())
                .ok_or(string_to_sign)
        }
        Scheme::V3 {
            signed_headers,
            signature,
        } => {
            let payload = sha256_hex(request.body.unwrap_or_default());
            let canonical = V3Request {
                method: request.method,
                path: request.path,
                query: &query,
                signed_headers,
                payload_sha256: &payload,
            }
            .canonical_request(|name| header_values(headers, name));
            let string_to_sign = v3_string_to_sign(&canonical);
            v3_verify(&secret, &string_to_sign, signature)
                .then_some(())
                .ok_or(string_to_sign)
        }
    };
    if let Err(server_string_to_sign) = verified {
        return Err(EcsError::signature_mismatch(&server_string_to_sign));
    }

    // Remember the nonce until its timestamp fails the skew check anyway (plus a second).
    let remaining = jiff::SignedDuration::try_from(max_skew)
        .ok()
        .and_then(|skew| Duration::try_from(skew - age).ok())
        .unwrap_or_default();
    state.nonces.insert(
        &claimed.access_key_id,
        &claimed.nonce,
        now + remaining + Duration::from_secs(1),
    );
    drop(state);

    Ok(Authenticated {
        access_key_id: claimed.access_key_id,
        action,
        params: all,
        product: *product,
        principal: key.principal,
        owners: key.owners,
    })
}

/// A known key: its secret and who it is.
struct Key {
    secret: String,
    principal: Principal,
    owners: Vec<String>,
}

/// A configured account (with its configured token, if any), else temporary credentials: the
/// token must be one the simulator issued, unexpired, for this AccessKeyId.
fn look_up_key(state: &State, claimed: &Claimed) -> Result<Key, EcsError> {
    if let Some(account) = state.accounts.get(&claimed.access_key_id) {
        if let Some(expected) = &account.security_token {
            match &claimed.security_token {
                None => return Err(EcsError::security_token_missing()),
                Some(token) if token != expected => {
                    return Err(EcsError::security_token_mismatch());
                }
                Some(_) => {}
            }
        }
        return Ok(Key {
            secret: account.access_key_secret.clone(),
            principal: Principal::User {
                access_key_id: account.access_key_id.clone(),
                account_id: account.account_id().to_owned(),
                user_name: account.user_name().to_owned(),
            },
            owners: state.owners_for_key(&account.access_key_id),
        });
    }
    if state.sessions.get(&claimed.access_key_id).is_none() {
        return Err(EcsError::access_key_not_found());
    }
    let token = claimed
        .security_token
        .as_deref()
        .ok_or_else(EcsError::security_token_missing)?;
    match state
        .sessions
        .check(&claimed.access_key_id, token, jiff::Timestamp::now())
    {
        TokenCheck::Valid(session) => Ok(Key {
            secret: session.secret.clone(),
            principal: Principal::Role(session.identity.clone()),
            owners: state.owners_for_account(&session.identity.role.account_id),
        }),
        TokenCheck::Mismatch => Err(EcsError::security_token_mismatch()),
        TokenCheck::Malformed => Err(EcsError::security_token_malformed()),
        TokenCheck::Expired => Err(EcsError::security_token_expired()),
    }
}

fn claim_v1(params: &Params) -> Result<Claimed, EcsError> {
    let access_key_id = required_common(params, "AccessKeyId")?.to_owned();
    let signature = required_common(params, "Signature")?.to_owned();
    if required_common(params, "SignatureMethod")? != SIGNATURE_METHOD_V1 {
        return Err(EcsError::invalid_signature_method());
    }
    if required_common(params, "SignatureVersion")? != "1.0" {
        return Err(EcsError::invalid_parameter("SignatureVersion"));
    }
    Ok(Claimed {
        access_key_id,
        security_token: params.get("SecurityToken").map(str::to_owned),
        nonce: required_common(params, "SignatureNonce")?.to_owned(),
        timestamp: required_common(params, "Timestamp")?.to_owned(),
        scheme: Scheme::V1 { signature },
    })
}

fn claim_v3(authorization: &str, headers: &HeaderMap) -> Result<Claimed, EcsError> {
    let auth = parse_v3_authorization(authorization).ok_or_else(|| {
        let scheme = authorization.split(' ').next().unwrap_or_default();
        if scheme.starts_with("ACS3-") && scheme != V3_ALGORITHM {
            EcsError::invalid_signature_method()
        } else {
            EcsError::incomplete_signature()
        }
    })?;
    // Missing V3 headers are reported under the common parameter they stand for.
    let required = |name: &str, common: &str| {
        header(headers, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| EcsError::missing_common(common))
    };
    Ok(Claimed {
        timestamp: required("x-acs-date", "Timestamp")?,
        nonce: required("x-acs-signature-nonce", "SignatureNonce")?,
        security_token: header(headers, "x-acs-security-token"),
        access_key_id: auth.access_key_id,
        scheme: Scheme::V3 {
            signed_headers: auth.signed_headers,
            signature: auth.signature,
        },
    })
}
