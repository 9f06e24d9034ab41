//! OIDC tokens (JWTs) as AssumeRoleWithOIDC checks them: an issuer's public keys (a PEM file or
//! a JWKS document, e.g. the kube-apiserver's service-account signing key that RRSA uses), the
//! token's structure, its signature and its claims. Signature arithmetic is the `jsonwebtoken`
//! crate's (RustCrypto backend); parsing is done here so every failure maps to the documented
//! `AuthenticationFail.OIDCToken.*` answer (docs/ecs-reference.md §10).

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::errors::EcsError;

/// The asymmetric JWS algorithms an OIDC issuer signs with; anything else (`HS256`, `none`) is
/// refused as an unknown algorithm.
const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

/// The documented token length limits of AssumeRoleWithOIDC (4..20,000 characters).
const MAX_TOKEN_LEN: usize = 20_000;

struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// An issuer's verification keys.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Key material is public, but the set is long and unhelpful in logs.
impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// One or more public keys in PEM (`PUBLIC KEY`, `RSA PUBLIC KEY` or `EC` SubjectPublicKeyInfo).
    pub fn add_pem(&mut self, pem: &str) -> Result<(), String> {
        let blocks: Vec<&str> = split_pem_blocks(pem);
        if blocks.is_empty() {
            return Err("no PEM public key found".to_owned());
        }
        for block in blocks {
            let key = DecodingKey::from_rsa_pem(block.as_bytes())
                .or_else(|_| DecodingKey::from_ec_pem(block.as_bytes()))
                .map_err(|e| format!("not an RSA or EC public key: {e}"))?;
            self.keys.push(Key { kid: None, key });
        }
        Ok(())
    }

    /// A JWKS document (`{"keys": [...]}`), as an issuer serves at its `jwks_uri`.
    pub fn add_jwks(&mut self, json: &str) -> Result<(), String> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWKS: {e}"))?;
        if set.keys.is_empty() {
            return Err("the JWKS has no keys".to_owned());
        }
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
            self.keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
            });
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn split_pem_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let Some(end_marker) = rest[start..].find("-----END ") else {
            break;
        };
        let after_end = start + end_marker;
        let close = rest[after_end + 9..]
            .find("-----")
            .map(|i| after_end + 9 + i + 5)
            .unwrap_or(rest.len());
        blocks.push(&rest[start..close]);
        rest = &rest[close..];
    }
    blocks
}

/// A structurally valid token, not yet verified.
pub struct Token<'a> {
    alg: Algorithm,
    kid: Option<String>,
    /// `base64url(header) "." base64url(claims)`, the signed bytes.
    message: &'a str,
    signature: &'a str,
    pub claims: Claims,
}

/// The registered claims AssumeRoleWithOIDC looks at.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

/// Splits and decodes a token. Errors: the documented `AuthenticationFail.OIDCToken.Invalid`
/// messages (empty, not three parts, not base64url, unknown algorithm, unrecognisable content).
pub fn parse(token: &str) -> Result<Token<'_>, EcsError> {
    if token.is_empty() {
        return Err(EcsError::oidc_token_empty());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(EcsError::oidc_token_content());
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature] = parts.as_slice() else {
        return Err(EcsError::oidc_token_parts());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| EcsError::oidc_token_base64())
    };
    let header_bytes = decode(header_b64)?;
    let claims_bytes = decode(claims_b64)?;
    decode(signature)?;
    let header: Value =
        serde_json::from_slice(&header_bytes).map_err(|_| EcsError::oidc_token_content())?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(EcsError::oidc_token_content)?;
    let alg = ALGORITHMS
        .iter()
        .find(|(name, _)| *name == alg_name)
        .map(|(_, alg)| *alg)
        .ok_or_else(|| EcsError::oidc_token_algorithm(alg_name))?;
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let claims: Value =
        serde_json::from_slice(&claims_bytes).map_err(|_| EcsError::oidc_token_content())?;
    let claims = claims_of(&claims).ok_or_else(EcsError::oidc_token_content)?;
    let message_len = header_b64.len() + 1 + claims_b64.len();
    Ok(Token {
        alg,
        kid,
        message: &token[..message_len],
        signature,
        claims,
    })
}

fn claims_of(value: &Value) -> Option<Claims> {
    let object = value.as_object()?;
    let string = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    let number = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Some(None),
        // NumericDate: seconds, possibly fractional.
        Some(Value::Number(n)) => n.as_f64().map(|f| Some(f.floor() as i64)),
        Some(_) => None,
    };
    let aud = match object.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    Some(Claims {
        iss: string("iss")?,
        sub: string("sub")?,
        aud,
        exp: number("exp")?,
        nbf: number("nbf")?,
        iat: number("iat")?,
    })
}

impl Token<'_> {
    /// True when one of the keys (the one named by `kid` when the token names one the set has)
    /// verifies the signature.
    pub fn verify(&self, keys: &KeySet) -> bool {
        let named: Vec<&Key> = match &self.kid {
            Some(kid) => keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&Key> = if named.is_empty() {
            keys.keys.iter().collect()
        } else {
            named
        };
        candidates.into_iter().any(|k| {
            jsonwebtoken::crypto::verify(self.signature, self.message.as_bytes(), &k.key, self.alg)
                .unwrap_or(false)
        })
    }
}

/// How far in the future `nbf` and `iat` may be (clock skew between an issuer and the simulator).
const FUTURE_LEEWAY_SECS: i64 = 60;

/// Checks the time claims at `now` (Unix seconds): a missing or past `exp` (no leeway) is
/// expired; an `nbf` or `iat` more than a minute ahead makes the content unusable.
pub fn check_times(claims: &Claims, now: i64) -> Result<(), EcsError> {
    match claims.exp {
        Some(exp) if exp > now => {}
        Some(_) => return Err(EcsError::oidc_token_expired()),
        None => return Err(EcsError::oidc_token_content()),
    }
    let ahead = |t: Option<i64>| t.is_some_and(|t| t > now + FUTURE_LEEWAY_SECS);
    if ahead(claims.nbf) || ahead(claims.iat) {
        return Err(EcsError::oidc_token_content());
    }
    Ok(())
}

/// Whether one of the token's audiences is a client ID of the provider.
pub fn audience_matches(claims: &Claims, client_ids: &BTreeSet<String>) -> bool {
    claims.aud.iter().any(|aud| client_ids.contains(aud))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn structure_errors_have_the_documented_messages() {
        let message = |t: &str| parse(t).err().unwrap().message;
        assert_eq!(message(""), "The OIDCToken can not empty.");
        assert_eq!(
            message("a.b"),
            "The number of Jwt field should be divided into 3 parts with '.' ."
        );
        assert_eq!(
            message("a*.b.c"),
            "Cannot decode base64 encoded response(format invalided)."
        );
        let hs = format!(
            "{}.{}.c2ln",
            b64(&serde_json::json!({"alg": "HS256"})),
            b64(&serde_json::json!({}))
        );
        assert_eq!(
            message(&hs),
            "The algorithm HS256 that be specified in Jwt header is unknown."
        );
        let bad_claims = format!(
            "{}.{}.c2ln",
            b64(&serde_json::json!({"alg": "RS256"})),
            URL_SAFE_NO_PAD.encode(b"not json")
        );
        assert_eq!(
            message(&bad_claims),
            "The Jwt content is invalid that cannot be recognized."
        );
        assert_eq!(
            parse(&bad_claims).err().unwrap().code,
            "AuthenticationFail.OIDCToken.Invalid"
        );
    }

    #[test]
    fn claims_accept_string_or_list_audiences() {
        let token = format!(
            "{}.{}.c2ln",
            b64(&serde_json::json!({"alg": "RS256", "kid": "k1"})),
            b64(
                &serde_json::json!({"iss": "https://issuer", "sub": "s", "aud": ["a", "b"], "exp": 10.5})
            )
        );
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.claims.aud, ["a", "b"]);
        assert_eq!(parsed.claims.exp, Some(10));
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert!(check_times(&parsed.claims, 9).is_ok());
        assert_eq!(
            check_times(&parsed.claims, 10).unwrap_err().code,
            "AuthenticationFail.OIDCToken.Expired"
        );
        let ahead = |nbf| Claims {
            exp: Some(1000),
            nbf: Some(nbf),
            ..Claims::default()
        };
        assert!(check_times(&ahead(160), 100).is_ok());
        assert_eq!(
            check_times(&ahead(161), 100).unwrap_err().code,
            "AuthenticationFail.OIDCToken.Invalid"
        );
        let ids: BTreeSet<String> = ["b".to_owned()].into();
        assert!(audience_matches(&parsed.claims, &ids));
    }

    /// An ES256 token signed with an rcgen (ECDSA P-256) key, the kind testkit's kube-apiserver
    /// signs service-account tokens with, verifies against the key's PEM; another key fails.
    #[test]
    fn es256_tokens_verify_against_a_pem_public_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut keys = KeySet::default();
        keys.add_pem(&key.public_key_pem()).unwrap();
        let signing =
            jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        let claims = serde_json::json!({"iss": "https://issuer", "sub": "s", "aud": "a", "exp": 1});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &claims,
            &signing,
        )
        .unwrap();
        let parsed = parse(&token).unwrap();
        assert!(parsed.verify(&keys));
        let mut other = KeySet::default();
        other
            .add_pem(&rcgen::KeyPair::generate().unwrap().public_key_pem())
            .unwrap();
        assert!(!parsed.verify(&other));
        // Another payload under the same signature fails with the right key.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other_claims =
            serde_json::json!({"iss": "https://issuer", "sub": "t", "aud": "a", "exp": 1});
        let forged = format!("{head}.{}.{signature}", b64(&other_claims));
        assert!(!parse(&forged).unwrap().verify(&keys));
    }

    #[test]
    fn pem_blocks_are_split() {
        let text = "junk\n-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n\n-----BEGIN PUBLIC KEY-----\nBB==\n-----END PUBLIC KEY-----\n";
        let blocks = split_pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("BB=="));
        assert!(KeySet::default().add_pem("nothing").is_err());
    }
}
