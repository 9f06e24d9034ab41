//! HMAC-SHA1 RPC signing (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`).
//!
//! StringToSign = `METHOD & enc("/") & enc(canonical query)`; the key is `secret + "&"`; the
//! signature is Base64 and is sent (percent-encoded) as the `Signature` parameter.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::{canonical_query, percent_encode};

/// `params` are all request parameters except `Signature`, decoded.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// Base64(HMAC-SHA1(secret + "&", string_to_sign)).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Official vector A (ECS DescribeRegions, GET).
    #[test]
    fn official_vector_a() {
        let p = params(&[
            ("Action", "DescribeRegions"),
            ("Version", "2014-05-26"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
        ]);
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z\
             %26Version%3D2014-05-26"
        );
        let sig = signature("testsecret", &sts);
        assert_eq!(sig, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(percent_encode(&sig), "OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D");
    }

    fn vector_b() -> BTreeMap<String, String> {
        params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ])
    }

    /// Official vector B (ECS DescribeDedicatedHosts, GET), plus its documented POST variant.
    #[test]
    fn official_vector_b() {
        let p = vector_b();
        assert_eq!(
            canonical_query(&p),
            "AccessKeyId=testid&Action=DescribeDedicatedHosts&Format=JSON&RegionId=cn-beijing\
             &SignatureMethod=HMAC-SHA1&SignatureNonce=edb2b34af0af9a6d14deaf7c1a5315eb\
             &SignatureVersion=1.0&Timestamp=2023-03-13T08%3A34%3A30Z&Version=2014-05-26"
        );
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeDedicatedHosts%26Format%3DJSON\
             %26RegionId%3Dcn-beijing%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureNonce%3Dedb2b34af0af9a6d14deaf7c1a5315eb%26SignatureVersion%3D1.0\
             %26Timestamp%3D2023-03-13T08%253A34%253A30Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
        assert_eq!(
            signature("testsecret", &string_to_sign("POST", &p)),
            "ZvQ9xGiFnquSJRvj+WE6kdSpTwU="
        );
    }

    fn vector_d() -> BTreeMap<String, String> {
        params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DeleteInstance"),
            ("Force", "true"),
            ("Format", "JSON"),
            ("InstanceId", "i-bp1g6zv0ce8oghu7abcd"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", "2014-05-26"),
        ])
    }

    /// Self-computed regression vector D (DeleteInstance, POST), with and without STS token.
    #[test]
    fn regression_vector_d() {
        let mut p = vector_d();
        assert_eq!(
            signature("testsecret", &string_to_sign("POST", &p)),
            "fus7gMl7OzAZ3KuRT2wx3tHIxoU="
        );
        p.insert("SecurityToken".into(), "tok+en/==".into());
        assert!(string_to_sign("POST", &p).contains("SecurityToken%3Dtok%252Ben%252F%253D%253D"));
        assert_eq!(
            signature("testsecret", &string_to_sign("POST", &p)),
            "utBY30yyxTzEflEHVorHbEEbJCQ="
        );
    }

    /// Values that differ between RFC 3986 and form encoding, and non-ASCII. Expected values were
    /// computed independently (Python: `urllib.parse.quote(v, safe='-_.~')`, `hmac`, `hashlib`).
    #[test]
    fn special_characters_are_encoded_before_signing() {
        let mut p = vector_d();
        p.insert("InstanceName".into(), "a b*c~d/e+f=g&h中文é".into());
        let sts = string_to_sign("POST", &p);
        assert!(
            sts.contains(
                "InstanceName%3Da%2520b%252Ac~d%252Fe%252Bf%253Dg%2526h%25E4%25B8%25AD%25E6%2596%2587%25C3%25A9"
            ),
            "{sts}"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "kZPN7Xvf3aG8fRgpbGLHKpAq3cQ="
        );
    }

    /// An empty value is kept as `k=` (the legacy SDK signs `SignatureType=` this way).
    #[test]
    fn empty_values_are_kept() {
        let p = params(&[("A", "1"), ("SignatureType", "")]);
        assert_eq!(canonical_query(&p), "A=1&SignatureType=");
        assert_eq!(
            string_to_sign("GET", &p),
            "GET&%2F&A%3D1%26SignatureType%3D"
        );
    }

    #[test]
    fn the_signature_depends_on_method_secret_and_every_value() {
        let p = vector_d();
        let base = signature("testsecret", &string_to_sign("POST", &p));
        assert_ne!(base, signature("testsecret", &string_to_sign("GET", &p)));
        assert_ne!(base, signature("testsecreT", &string_to_sign("POST", &p)));
        let mut changed = p.clone();
        changed.insert("Force".into(), "false".into());
        assert_ne!(
            base,
            signature("testsecret", &string_to_sign("POST", &changed))
        );
    }
}
