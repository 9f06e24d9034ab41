//! ACS3-HMAC-SHA256 signing.
//!
//! CanonicalRequest = method, URI, canonical query, canonical headers (each `name:value\n`),
//! signed header names, hashed payload, joined by `\n`. StringToSign =
//! `ACS3-HMAC-SHA256\n` + hex(SHA-256(CanonicalRequest)); the key is the raw secret.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::canonical_query;

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Lowercase hex SHA-256 of the body (`x-acs-content-sha256`).
pub fn hashed_payload(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `headers` maps lowercase names to values; every one of them is signed.
pub fn canonical_request(
    method: &str,
    uri: &str,
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    payload_hash: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    format!(
        "{method}\n{uri}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query(query),
        signed_headers(headers)
    )
}

/// The `;`-joined lowercase header names, in canonical (sorted) order.
pub fn signed_headers(headers: &BTreeMap<String, String>) -> String {
    headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";")
}

pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// Lowercase hex HMAC-SHA256(secret, string_to_sign).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn headers(host: &str, action: &str, date: &str, nonce: &str) -> BTreeMap<String, String> {
        map(&[
            ("host", host),
            ("x-acs-action", action),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", date),
            ("x-acs-signature-nonce", nonce),
            ("x-acs-content-sha256", EMPTY_SHA256),
        ])
    }

    /// Official vector C (ECS RunInstances).
    #[test]
    fn official_vector_c() {
        assert_eq!(hashed_payload(b""), EMPTY_SHA256);
        let query = map(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let h = headers(
            "ecs.cn-shanghai.aliyuncs.com",
            "RunInstances",
            "2023-10-26T10:22:32Z",
            "3156853299f313e23d1673dc12e1703d",
        );
        let canonical = canonical_request("POST", "/", &query, &h, EMPTY_SHA256);
        let expected = [
            "POST",
            "/",
            "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai",
            "host:ecs.cn-shanghai.aliyuncs.com",
            "x-acs-action:RunInstances",
            &format!("x-acs-content-sha256:{EMPTY_SHA256}"),
            "x-acs-date:2023-10-26T10:22:32Z",
            "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d",
            "x-acs-version:2014-05-26",
            "",
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version",
            EMPTY_SHA256,
        ]
        .join("\n");
        assert_eq!(canonical, expected);
        let sts = string_to_sign(&canonical);
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let sig = signature("YourAccessKeySecret", &sts);
        assert_eq!(
            sig,
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        assert_eq!(
            authorization("YourAccessKeyId", &signed_headers(&h), &sig),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;\
             x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,\
             Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    /// Self-computed regression vector D (DeleteInstance).
    #[test]
    fn regression_vector_d() {
        let query = map(&[("Force", "true"), ("InstanceId", "i-bp1g6zv0ce8oghu7abcd")]);
        let h = headers(
            "ecs.cn-hangzhou.aliyuncs.com",
            "DeleteInstance",
            "2024-01-02T03:04:05Z",
            "3156853299f313e23d1673dc12e1703d",
        );
        let sts = string_to_sign(&canonical_request("POST", "/", &query, &h, EMPTY_SHA256));
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n3a46e8786ab2ebe22622220ea99e2b4c26e9088b57c24fac26eaa76827e779d8"
        );
        assert_eq!(
            signature("YourAccessKeySecret", &sts),
            "f85883f4e7164307368a7ee0825afa04c3e80d72e06d51b815b342a9c601e3c6"
        );
    }

    /// RFC 3986 encoding in the canonical query, a host with a port, an STS header, a JSON-array
    /// value. Expected values computed independently with Python (`hashlib`, `hmac`, `quote`).
    #[test]
    fn special_characters_ports_and_security_token() {
        let query = map(&[
            ("InstanceName", "a b*c~d/e+f=g&h中文é"),
            ("InstanceIds", r#"["i-1","i-2"]"#),
            ("Format", "JSON"),
        ]);
        let mut h = headers(
            "127.0.0.1:8080",
            "DescribeInstances",
            "2024-01-02T03:04:05Z",
            "0123456789abcdef0123456789abcdef",
        );
        h.insert("x-acs-security-token".into(), "tok+en/==".into());
        let canonical = canonical_request("POST", "/", &query, &h, EMPTY_SHA256);
        assert!(canonical.contains(
            "\nFormat=JSON&InstanceIds=%5B%22i-1%22%2C%22i-2%22%5D\
             &InstanceName=a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%E4%B8%AD%E6%96%87%C3%A9\n"
        ));
        let sts = string_to_sign(&canonical);
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\nbc174cbba92257093c4cba0125ff189533ebd0006d674fda6f78dc0e9528b037"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "9cb8ac9f87c16bdbdaf49fdf85e88039e8c60d25b6237c3a63c8c60a43727047"
        );
    }

    #[test]
    fn empty_query_gives_an_empty_line_and_values_are_trimmed() {
        let h = map(&[("host", " example "), ("x-acs-action", "A")]);
        let canonical = canonical_request("POST", "/", &BTreeMap::new(), &h, EMPTY_SHA256);
        assert_eq!(
            canonical,
            format!("POST\n/\n\nhost:example\nx-acs-action:A\n\nhost;x-acs-action\n{EMPTY_SHA256}")
        );
    }
}
