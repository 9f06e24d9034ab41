//! Request signing: ACS3-HMAC-SHA256 ("V3", the default) and HMAC-SHA1 RPC signing ("V1",
//! `SignatureVersion=1.0`), as pure functions over fixed inputs so the official test vectors run
//! as unit tests. [`sign_request`] is what the transport calls, once per attempt, with a fresh
//! nonce and timestamp.

pub mod v1;
pub mod v3;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::credentials::Credentials;
// Public as `signing::percent_encode`; defined in `encoding` so that `credentials` can use it
// without depending on the signer.
pub use crate::encoding::percent_encode;

/// The API version every call uses.
pub const API_VERSION: &str = "2014-05-26";

/// `enc(k1)=enc(v1)&enc(k2)=enc(v2)…` sorted by name: the canonical query of both versions, and
/// also the query string actually sent, so the server decodes exactly the signed values.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Which signature the client puts on requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SigningMethod {
    /// ACS3-HMAC-SHA256, headers `x-acs-*` and `Authorization` (what current official SDKs use).
    #[default]
    Acs3HmacSha256,
    /// HMAC-SHA1 RPC signing, `Signature` query parameter (legacy SDKs, Terraform).
    HmacSha1,
}

impl SigningMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningMethod::Acs3HmacSha256 => "ACS3-HMAC-SHA256",
            SigningMethod::HmacSha1 => "HMAC-SHA1",
        }
    }
}

impl fmt::Display for SigningMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signing method `{0}` (expected v3, acs3-hmac-sha256, v1 or hmac-sha1)")]
pub struct UnknownSigningMethod(String);

impl FromStr for SigningMethod {
    type Err = UnknownSigningMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v3" | "acs3-hmac-sha256" => Ok(SigningMethod::Acs3HmacSha256),
            "v1" | "hmac-sha1" => Ok(SigningMethod::HmacSha1),
            _ => Err(UnknownSigningMethod(s.to_owned())),
        }
    }
}

/// What one attempt needs to be unique: a nonce and a timestamp (`yyyy-MM-ddTHH:mm:ssZ`, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    pub nonce: String,
    pub timestamp: String,
}

impl Freshness {
    /// A new random nonce (UUID v4 as 32 hex chars) and the current time.
    pub fn now() -> Self {
        Self {
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            timestamp: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        }
    }
}

/// One RPC call's inputs to signing. `params` are the API parameters (including `Format`);
/// the signer adds the protocol's common parameters or headers.
#[derive(Debug, Clone, Copy)]
pub struct RpcRequest<'a> {
    pub method: &'a str,
    /// The `Host` header sent, with `:port` when it is not the scheme's default.
    pub host: &'a str,
    pub action: &'a str,
    pub params: &'a BTreeMap<String, String>,
}

/// The signed request: the query string for `/` and the headers to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub query: String,
    pub headers: Vec<(String, String)>,
}

/// Signs one attempt. The body is always empty: parameters travel in the query string, as the
/// official SDKs send RPC calls.
pub fn sign_request(
    signing: SigningMethod,
    request: RpcRequest<'_>,
    creds: &Credentials,
    fresh: &Freshness,
) -> SignedRequest {
    match signing {
        SigningMethod::HmacSha1 => {
            let mut params = request.params.clone();
            let common = [
                ("AccessKeyId", creds.access_key_id()),
                ("Action", request.action),
                ("Version", API_VERSION),
                ("SignatureMethod", "HMAC-SHA1"),
                ("SignatureVersion", "1.0"),
                ("SignatureNonce", &fresh.nonce),
                ("Timestamp", &fresh.timestamp),
            ];
            for (k, v) in common {
                params.insert(k.to_owned(), v.to_owned());
            }
            if let Some(token) = creds.security_token() {
                params.insert("SecurityToken".to_owned(), token.to_owned());
            }
            let string_to_sign = v1::string_to_sign(request.method, &params);
            let signature = v1::signature(creds.access_key_secret(), &string_to_sign);
            let query = format!(
                "{}&Signature={}",
                canonical_query(&params),
                percent_encode(&signature)
            );
            SignedRequest {
                query,
                headers: vec![("host".to_owned(), request.host.to_owned())],
            }
        }
        SigningMethod::Acs3HmacSha256 => {
            let mut headers = BTreeMap::from([
                ("host".to_owned(), request.host.to_owned()),
                ("x-acs-action".to_owned(), request.action.to_owned()),
                ("x-acs-version".to_owned(), API_VERSION.to_owned()),
                ("x-acs-date".to_owned(), fresh.timestamp.clone()),
                ("x-acs-signature-nonce".to_owned(), fresh.nonce.clone()),
                ("x-acs-content-sha256".to_owned(), v3::hashed_payload(b"")),
            ]);
            if let Some(token) = creds.security_token() {
                headers.insert("x-acs-security-token".to_owned(), token.to_owned());
            }
            let canonical = v3::canonical_request(
                request.method,
                "/",
                request.params,
                &headers,
                &headers["x-acs-content-sha256"],
            );
            let signature =
                v3::signature(creds.access_key_secret(), &v3::string_to_sign(&canonical));
            let authorization = v3::authorization(
                creds.access_key_id(),
                &v3::signed_headers(&headers),
                &signature,
            );
            let mut headers: Vec<(String, String)> = headers.into_iter().collect();
            headers.push(("authorization".to_owned(), authorization));
            SignedRequest {
                query: canonical_query(request.params),
                headers,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_method_parses_cli_spellings() {
        for s in ["v3", "V3", "acs3-hmac-sha256", "ACS3-HMAC-SHA256"] {
            assert_eq!(s.parse(), Ok(SigningMethod::Acs3HmacSha256));
        }
        for s in ["v1", "hmac-sha1", "HMAC-SHA1"] {
            assert_eq!(s.parse(), Ok(SigningMethod::HmacSha1));
        }
        let err = "v2".parse::<SigningMethod>().unwrap_err();
        assert!(err.to_string().contains("`v2`"));
        assert_eq!(SigningMethod::default(), SigningMethod::Acs3HmacSha256);
    }

    #[test]
    fn freshness_differs_per_attempt_and_has_the_wire_format() {
        let a = Freshness::now();
        let b = Freshness::now();
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 32);
        assert!(a.nonce.bytes().all(|c| c.is_ascii_hexdigit()));
        // e.g. 2026-11-28T15:04:05Z
        assert_eq!(a.timestamp.len(), 20, "{}", a.timestamp);
        assert!(a.timestamp.ends_with('Z'));
        assert!(a.timestamp.parse::<jiff::Timestamp>().is_ok());
    }

    fn delete_params() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("Force".to_owned(), "true".to_owned()),
            ("InstanceId".to_owned(), "i-bp1g6zv0ce8oghu7abcd".to_owned()),
        ])
    }

    /// Regression vector D (V1) through the production entry point: the common parameters the
    /// signer adds must be exactly the documented set.
    #[test]
    fn sign_request_v1_matches_vector_d() {
        let mut params = delete_params();
        params.insert("Format".into(), "JSON".into());
        let fresh = Freshness {
            nonce: "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf".into(),
            timestamp: "2024-01-02T03:04:05Z".into(),
        };
        let request = RpcRequest {
            method: "POST",
            host: "ecs.cn-hangzhou.aliyuncs.com",
            action: "DeleteInstance",
            params: &params,
        };
        let plain = sign_request(
            SigningMethod::HmacSha1,
            request,
            &Credentials::new("testid", "testsecret", None),
            &fresh,
        );
        assert_eq!(
            plain.query,
            "AccessKeyId=testid&Action=DeleteInstance&Force=true&Format=JSON\
             &InstanceId=i-bp1g6zv0ce8oghu7abcd&SignatureMethod=HMAC-SHA1\
             &SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0\
             &Timestamp=2024-01-02T03%3A04%3A05Z&Version=2014-05-26\
             &Signature=fus7gMl7OzAZ3KuRT2wx3tHIxoU%3D"
        );
        let sts = sign_request(
            SigningMethod::HmacSha1,
            request,
            &Credentials::new("testid", "testsecret", Some("tok+en/==".into())),
            &fresh,
        );
        assert!(sts.query.contains("&SecurityToken=tok%2Ben%2F%3D%3D&"));
        assert!(
            sts.query
                .ends_with("&Signature=utBY30yyxTzEflEHVorHbEEbJCQ%3D"),
            "{}",
            sts.query
        );
    }

    /// Regression vector D (V3) through the production entry point.
    #[test]
    fn sign_request_v3_matches_vector_d() {
        let params = delete_params();
        let fresh = Freshness {
            nonce: "3156853299f313e23d1673dc12e1703d".into(),
            timestamp: "2024-01-02T03:04:05Z".into(),
        };
        let signed = sign_request(
            SigningMethod::Acs3HmacSha256,
            RpcRequest {
                method: "POST",
                host: "ecs.cn-hangzhou.aliyuncs.com",
                action: "DeleteInstance",
                params: &params,
            },
            &Credentials::new("YourAccessKeyId", "YourAccessKeySecret", None),
            &fresh,
        );
        assert_eq!(signed.query, "Force=true&InstanceId=i-bp1g6zv0ce8oghu7abcd");
        let header = |name: &str| {
            signed
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header("authorization"),
            Some(
                "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;\
                 x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,\
                 Signature=f85883f4e7164307368a7ee0825afa04c3e80d72e06d51b815b342a9c601e3c6"
            )
        );
        assert_eq!(header("x-acs-security-token"), None);
    }

    #[test]
    fn sign_request_v3_signs_the_security_token_header() {
        let params = delete_params();
        let fresh = Freshness {
            nonce: "n".into(),
            timestamp: "2024-01-02T03:04:05Z".into(),
        };
        let signed = sign_request(
            SigningMethod::Acs3HmacSha256,
            RpcRequest {
                method: "POST",
                host: "127.0.0.1:8080",
                action: "DeleteInstance",
                params: &params,
            },
            &Credentials::new("id", "secret", Some("tok+en/==".into())),
            &fresh,
        );
        let auth = &signed.headers.last().unwrap().1;
        assert!(
            auth.contains(
                "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;\
                 x-acs-security-token;x-acs-signature-nonce;x-acs-version,"
            ),
            "{auth}"
        );
        assert!(
            signed
                .headers
                .contains(&("x-acs-security-token".into(), "tok+en/==".into()))
        );
        assert!(
            signed
                .headers
                .contains(&("host".into(), "127.0.0.1:8080".into()))
        );
    }
}
