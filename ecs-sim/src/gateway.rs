//! The RPC gateway on `/`: what the Alibaba Cloud API gateway does before and around an ECS
//! operation. Checks run in the gateway's order:
//! action/version known → signature params present → key known (and its STS token) →
//! timestamp → nonce replay → signature → faults (latency, drop, throttle, 5xx) → the operation
//! → the answer, or none (an answer dropped on purpose after the operation).
//! Every request is written to the call log, including rejected ones.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};

use crate::actions::{self, API_VERSION};
use crate::call::Caller;
use crate::encoding::{MalformedPair, decode_pairs};
use crate::errors::EcsError;
use crate::faults::Verdict;
use crate::params::Params;
use crate::response::{Format, render_error, render_success};
use crate::signature::{
    V3_ALGORITHM, V3Request, parse_v3_authorization, sha256_hex, v1_string_to_sign, v1_verify,
    v3_string_to_sign, v3_verify,
};
use crate::state::{CallRecord, Sim};

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

/// A request that passed the gateway's checks.
struct Authenticated {
    access_key_id: String,
    action: String,
    params: Params,
}

pub async fn handle(sim: &Sim, request: RpcRequest<'_>) -> Outcome {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let host_id = header(request.headers, HOST.as_str()).unwrap_or_default();
    let mut call = CallRecord {
        seq: 0,
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

    let result = match authenticate(sim, &request, &mut call, &mut format) {
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
                    let caller = Caller {
                        access_key_id: &auth.access_key_id,
                        now: Instant::now(),
                        timing: sim.timing,
                    };
                    let mut state = sim.lock();
                    actions::run(&mut state, &caller, &auth.action, &auth.params)
                        .map(|fields| (auth.action, fields))
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
                render_error(format, &error, &request_id, &host_id),
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
        if name != "Signature" && name != "SecurityToken" {
            call.params
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
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
    if version != API_VERSION {
        return Err(EcsError::invalid_version());
    }
    if !actions::ACTIONS.contains(&action.as_str()) {
        return Err(EcsError::api_not_found());
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
    let account = state
        .accounts
        .get(&claimed.access_key_id)
        .ok_or_else(EcsError::access_key_not_found)?;
    if let Some(expected) = &account.security_token {
        match &claimed.security_token {
            None => return Err(EcsError::security_token_missing()),
            Some(token) if token != expected => return Err(EcsError::security_token_mismatch()),
            Some(_) => {}
        }
    }
    let secret = account.access_key_secret.clone();

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
    })
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
