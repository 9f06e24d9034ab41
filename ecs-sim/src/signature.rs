//! Server-side signature computation for the two schemes the ECS gateway accepts, written from
//! the published algorithms (docs/ecs-reference.md §6), independent of any client code.
//!
//! - V1: `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`, all params signed.
//! - V3: `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::encoding::percent_encode;

pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// `name=value` pairs, RFC 3986-encoded, sorted by encoded name (then value, so repeated names
/// give a stable order), joined by `&`. Empty values are kept as `name=`.
fn canonical_query<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut encoded: Vec<(String, String)> = params
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// V1 string to sign over every request parameter except `Signature`, with the HTTP method the
/// request actually used.
pub fn v1_string_to_sign<'a>(
    method: &str,
    params: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    let query = canonical_query(params.filter(|(k, _)| *k != "Signature"));
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&query)
    )
}

/// Checks a base64 HMAC-SHA1 keyed with `secret + "&"`, in constant time; an undecodable
/// signature simply does not match.
pub fn v1_verify(secret: &str, string_to_sign: &str, provided: &str) -> bool {
    let Ok(provided) = BASE64.decode(provided) else {
        return false;
    };
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&provided).is_ok()
}

/// The parts of a V3 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct V3Authorization {
    pub access_key_id: String,
    /// Lowercase header names in the order the client declared them.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// `None` when the header is not a well-formed ACS3-HMAC-SHA256 authorization.
pub fn parse_v3_authorization(value: &str) -> Option<V3Authorization> {
    let rest = value.strip_prefix(V3_ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return None,
        };
        *slot = Some(val.to_owned());
    }
    let signed_headers: Vec<String> = signed_headers?
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    let (access_key_id, signature) = (credential?, signature?);
    if access_key_id.is_empty()
        || signature.is_empty()
        || signed_headers.iter().any(String::is_empty)
    {
        return None;
    }
    Some(V3Authorization {
        access_key_id,
        signed_headers,
        signature,
    })
}

/// Lowercase hex SHA-256, the form of `x-acs-content-sha256` and of the hashed canonical request.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The request as V3 canonicalises it. `header_values(name)` returns every value the request
/// carries for a (lowercase) header name.
pub struct V3Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub signed_headers: &'a [String],
    pub payload_sha256: &'a str,
}

impl V3Request<'_> {
    pub fn canonical_request(&self, header_values: impl Fn(&str) -> Vec<String>) -> String {
        let query = canonical_query(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut headers = String::new();
        for name in self.signed_headers {
            let mut values: Vec<String> = header_values(name)
                .iter()
                .map(|v| v.trim().to_owned())
                .collect();
            values.sort();
            headers.push_str(name);
            headers.push(':');
            headers.push_str(&values.join(","));
            headers.push('\n');
        }
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            query,
            headers,
            self.signed_headers.join(";"),
            self.payload_sha256
        )
    }
}

pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{V3_ALGORITHM}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Hex HMAC-SHA256 keyed with the raw secret (no `&`), compared in constant time.
pub fn v3_verify(secret: &str, string_to_sign: &str, provided_hex: &str) -> bool {
    let Ok(provided) = hex::decode(provided_hex) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&provided).is_ok()
}

#[cfg(test)]
mod tests {
    //! The official vectors A, B, C of docs/ecs-reference.md §6.
    use super::*;

    fn v1_signature(secret: &str, string_to_sign: &str) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
        mac.update(string_to_sign.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn v1_official_vector_a() {
        let params = pairs(&[
            ("Action", "DescribeRegions"),
            ("Version", "2014-05-26"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Signature", "ignored"),
        ]);
        let sts = v1_string_to_sign("GET", params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            v1_signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert!(v1_verify(
            "testsecret",
            &sts,
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        ));
        assert!(!v1_verify(
            "othersecret",
            &sts,
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        ));
        assert!(!v1_verify("testsecret", &sts, "not base64!"));
    }

    #[test]
    fn v1_official_vector_b_get_and_post() {
        let params = pairs(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        let iter = || params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let get = v1_string_to_sign("GET", iter());
        assert_eq!(
            v1_signature("testsecret", &get),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
        let post = v1_string_to_sign("POST", iter());
        assert_eq!(
            v1_signature("testsecret", &post),
            "ZvQ9xGiFnquSJRvj+WE6kdSpTwU="
        );
    }

    #[test]
    fn v3_official_vector_c() {
        let headers = pairs(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]);
        let auth = parse_v3_authorization(
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
        )
        .unwrap();
        assert_eq!(auth.access_key_id, "YourAccessKeyId");
        let query = pairs(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let request = V3Request {
            method: "POST",
            path: "/",
            query: &query,
            signed_headers: &auth.signed_headers,
            payload_sha256: &sha256_hex(b""),
        };
        let canonical = request.canonical_request(|name| {
            headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        });
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let sts = v3_string_to_sign(&canonical);
        assert!(v3_verify("YourAccessKeySecret", &sts, &auth.signature));
        assert!(!v3_verify("YourAccessKeySecret", &sts, "zz"));
        assert!(!v3_verify("wrong", &sts, &auth.signature));
    }

    #[test]
    fn rejects_malformed_authorization() {
        for bad in [
            "",
            "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=",
            "ACS3-HMAC-SHA256 Credential=a;SignedHeaders=host;Signature=x",
            "ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab,Extra=1",
        ] {
            assert_eq!(parse_v3_authorization(bad), None, "{bad}");
        }
    }
}
