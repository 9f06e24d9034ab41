//! Test-only client for raw ECS RPC requests: an independent, minimal V1 (HMAC-SHA1) and V3
//! (ACS3-HMAC-SHA256) signer, so tests can send what no SDK would (bad encodings, replays,
//! skewed clocks, tampered headers).
#![allow(dead_code)] // each test binary uses a different subset

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub use testkit::sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim};

const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

pub fn now_timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn http() -> reqwest::Client {
    testkit::http_client()
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: response.text().await.unwrap(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The error code (JSON bodies).
    pub fn code(&self) -> String {
        self.json()["Code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Who signs, and with which secret.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret: ACCESS_KEY_SECRET.into(),
            token: None,
        }
    }
}

/// The V1 common parameters for `action` plus `params`, with `Format=JSON`.
pub fn v1_params(
    action: &str,
    params: &[(&str, &str)],
    creds: &Credentials,
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("Action".into(), action.into()),
        ("Version".into(), "2014-05-26".into()),
        ("Format".into(), "JSON".into()),
        ("AccessKeyId".into(), creds.access_key_id.clone()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), nonce()),
        ("Timestamp".into(), now_timestamp()),
    ];
    if let Some(token) = &creds.token {
        all.push(("SecurityToken".into(), token.clone()));
    }
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

/// Replaces (or adds) a parameter.
pub fn set(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    params.retain(|(k, _)| k != name);
    params.push((name.into(), value.into()));
}

pub fn remove(params: &mut Vec<(String, String)>, name: &str) {
    params.retain(|(k, _)| k != name);
}

pub fn v1_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    // Sorted by encoded name (then value), not as joined `name=value` strings: `TagKey.1=`
    // sorts before `TagKey.10=` although `=` sorts after `0`.
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}&%2F&{}", enc(&pairs.join("&")))
}

/// Adds `Signature` computed for `method`.
pub fn v1_sign(
    method: &str,
    mut params: Vec<(String, String)>,
    secret: &str,
) -> Vec<(String, String)> {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(v1_string_to_sign(method, &params).as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    set(&mut params, "Signature", &signature);
    params
}

pub fn query_string(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Sends already-signed V1 params with GET (query) or POST (form body).
pub async fn send_v1(sim: &EcsSim, method: &str, params: &[(String, String)]) -> Answer {
    send_v1_via(&http(), sim, method, params).await
}

/// Like [`send_v1`] on a given client (to reuse its connections).
pub async fn send_v1_via(
    client: &reqwest::Client,
    sim: &EcsSim,
    method: &str,
    params: &[(String, String)],
) -> Answer {
    let response = if method == "GET" {
        client
            .get(format!("{}/?{}", sim.endpoint(), query_string(params)))
            .send()
            .await
    } else {
        client
            .post(format!("{}/", sim.endpoint()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(query_string(params))
            .send()
            .await
    };
    Answer::from(response.unwrap()).await
}

/// Signs with `creds` and sends a V1 request by GET.
pub async fn v1(sim: &EcsSim, action: &str, params: &[(&str, &str)]) -> Answer {
    v1_as(sim, &Credentials::default(), action, params).await
}

pub async fn v1_as(
    sim: &EcsSim,
    creds: &Credentials,
    action: &str,
    params: &[(&str, &str)],
) -> Answer {
    let signed = v1_sign("GET", v1_params(action, params, creds), &creds.secret);
    send_v1(sim, "GET", &signed).await
}

/// A V3 request before signing; tests may tamper with any part.
pub struct V3 {
    pub action: String,
    pub query: Vec<(String, String)>,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub creds: Credentials,
    pub client: reqwest::Client,
}

impl V3 {
    pub fn new(sim: &EcsSim, action: &str, query: &[(&str, &str)]) -> V3 {
        let host = sim.endpoint().trim_start_matches("http://").to_owned();
        V3 {
            action: action.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: String::new(),
            headers: vec![
                ("host".into(), host),
                ("x-acs-action".into(), action.into()),
                ("x-acs-version".into(), "2014-05-26".into()),
                ("x-acs-date".into(), now_timestamp()),
                ("x-acs-signature-nonce".into(), nonce()),
            ],
            creds: Credentials::default(),
            client: http(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> V3 {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `Authorization` value over all headers set so far.
    pub fn authorization(&mut self) -> String {
        if let Some(token) = self.creds.token.clone() {
            self.headers.retain(|(k, _)| k != "x-acs-security-token");
            self.headers.push(("x-acs-security-token".into(), token));
        }
        let payload = hex::encode(Sha256::digest(self.body.as_bytes()));
        self.headers.retain(|(k, _)| k != "x-acs-content-sha256");
        self.headers
            .push(("x-acs-content-sha256".into(), payload.clone()));
        let mut headers = self.headers.clone();
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let mut query: Vec<(String, String)> =
            self.query.iter().map(|(k, v)| (enc(k), enc(v))).collect();
        query.sort();
        let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let canonical = format!(
            "POST\n/\n{}\n{}\n{}\n{}",
            query.join("&"),
            canonical_headers,
            signed.join(";"),
            payload
        );
        let string_to_sign = format!(
            "ACS3-HMAC-SHA256\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(self.creds.secret.as_bytes()).unwrap();
        mac.update(string_to_sign.as_bytes());
        format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={},Signature={}",
            self.creds.access_key_id,
            signed.join(";"),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Sends with the given Authorization value (POST, params in the query string).
    pub async fn send_with(&self, authorization: &str) -> Answer {
        let host = &self.headers.iter().find(|(k, _)| k == "host").unwrap().1;
        let mut request = self
            .client
            .post(format!("http://{host}/?{}", query_string(&self.query)))
            .header("authorization", authorization)
            .body(self.body.clone());
        for (k, v) in &self.headers {
            if k != "host" {
                request = request.header(k.as_str(), v.as_str());
            }
        }
        if !self.body.is_empty() {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        Answer::from(request.send().await.unwrap()).await
    }

    pub async fn send(mut self) -> Answer {
        let authorization = self.authorization();
        self.send_with(&authorization).await
    }
}

/// Seeds `cn-hangzhou` instances given as (id, status) with defaults for the rest.
pub async fn seed_simple(sim: &EcsSim, instances: &[(&str, &str)]) {
    let specs: Vec<serde_json::Value> = instances
        .iter()
        .map(|(id, status)| serde_json::json!({"instanceId": id, "regionId": "cn-hangzhou", "status": status}))
        .collect();
    sim.seed(serde_json::Value::Array(specs)).await;
}
