//! Alibaba Cloud access keys (optionally STS) from a Kubernetes Secret's data or the environment.
//!
//! The secret and the security token are never printed: `Debug` redacts them, `Display` shows only
//! the access key ID, and every error names the offending key, never its value.

use std::collections::BTreeMap;
use std::fmt;

/// Secret data keys (the `credentialsRef` Secret of an `EcsInstance`).
pub const SECRET_KEY_ACCESS_KEY_ID: &str = "accessKeyId";
pub const SECRET_KEY_ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECRET_KEY_SECURITY_TOKEN: &str = "securityToken";

/// Environment variables of the controller's own credentials (the names the official tools use).
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// An access key pair, plus the security token of temporary (STS) credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
}

/// Why credentials could not be read. `key` is a Secret data key or an environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials: `{key}` is missing")]
    Missing { key: &'static str },
    #[error("credentials: `{key}` is empty")]
    Empty { key: &'static str },
    #[error("credentials: `{key}` is not valid UTF-8")]
    NotUtf8 { key: &'static str },
    #[error("credentials: `{key}` contains characters that cannot be sent ({reason})")]
    Invalid {
        key: &'static str,
        reason: &'static str,
    },
}

impl Credentials {
    /// Plain constructor for values already validated elsewhere (tests, the local run).
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token,
        }
    }

    /// From a Secret's `data`: `accessKeyId`, `accessKeySecret`, optional `securityToken`.
    /// Surrounding whitespace is trimmed (a trailing newline from `echo | base64` is common).
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, CredentialsError> {
        let read = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            data.get(key)
                .map(|bytes| {
                    std::str::from_utf8(bytes)
                        .map(str::to_owned)
                        .map_err(|_| CredentialsError::NotUtf8 { key })
                })
                .transpose()
        };
        Self::validated(
            (SECRET_KEY_ACCESS_KEY_ID, read(SECRET_KEY_ACCESS_KEY_ID)?),
            (
                SECRET_KEY_ACCESS_KEY_SECRET,
                read(SECRET_KEY_ACCESS_KEY_SECRET)?,
            ),
            (SECRET_KEY_SECURITY_TOKEN, read(SECRET_KEY_SECURITY_TOKEN)?),
        )
    }

    /// From `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and optionally
    /// `ALIBABA_CLOUD_SECURITY_TOKEN`.
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// `from_env` over any variable source, so it is testable without touching the process env.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, CredentialsError> {
        let read = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            lookup(key)
                .map(|v| {
                    v.into_string()
                        .map_err(|_| CredentialsError::NotUtf8 { key })
                })
                .transpose()
        };
        Self::validated(
            (ENV_ACCESS_KEY_ID, read(ENV_ACCESS_KEY_ID)?),
            (ENV_ACCESS_KEY_SECRET, read(ENV_ACCESS_KEY_SECRET)?),
            (ENV_SECURITY_TOKEN, read(ENV_SECURITY_TOKEN)?),
        )
    }

    /// Credentials from a cloud answer or a file (STS, the metadata server, a credentials URI, a
    /// profile), checked like a Secret's; `keys` name the fields (ID, secret, token) in errors.
    pub(crate) fn from_parts(
        keys: [&'static str; 3],
        access_key_id: String,
        access_key_secret: String,
        security_token: Option<String>,
    ) -> Result<Self, CredentialsError> {
        Self::validated(
            (keys[0], Some(access_key_id)),
            (keys[1], Some(access_key_secret)),
            (keys[2], security_token),
        )
    }

    fn validated(
        id: (&'static str, Option<String>),
        secret: (&'static str, Option<String>),
        token: (&'static str, Option<String>),
    ) -> Result<Self, CredentialsError> {
        let required = |(key, value): (&'static str, Option<String>)| {
            value
                .ok_or(CredentialsError::Missing { key })
                .and_then(|v| non_empty(key, v))
        };
        let access_key_id = required(id.clone())?;
        check_visible_ascii(id.0, &access_key_id)?;
        let access_key_secret = required(secret.clone())?;
        if access_key_secret.chars().any(char::is_control) {
            return Err(CredentialsError::Invalid {
                key: secret.0,
                reason: "control characters",
            });
        }
        // An empty optional token is treated as absent: templated Secrets often carry `""`.
        let security_token = match token.1.map(|t| t.trim().to_owned()) {
            Some(t) if !t.is_empty() => {
                check_visible_ascii(token.0, &t)?;
                Some(t)
            }
            _ => None,
        };
        Ok(Self {
            access_key_id,
            access_key_secret,
            security_token,
        })
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn access_key_secret(&self) -> &str {
        &self.access_key_secret
    }

    pub(crate) fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }

    /// Removes the security token from text that came back from the server: the gateway echoes
    /// its string-to-sign in `SignatureDoesNotMatch` messages, and for HMAC-SHA1 that includes
    /// the token (percent-encoded once or twice). The secret itself never travels.
    pub(crate) fn redact(&self, text: &str) -> String {
        let Some(token) = self.security_token.as_deref() else {
            return text.to_owned();
        };
        let once = crate::encoding::percent_encode(token);
        let twice = crate::encoding::percent_encode(&once);
        // Longest first, so a shorter form never leaves a tail of a longer one behind.
        let mut forms = [twice, once, token.to_owned()];
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.iter().fold(text.to_owned(), |acc, form| {
            acc.replace(form.as_str(), "<redacted>")
        })
    }
}

fn non_empty(key: &'static str, value: String) -> Result<String, CredentialsError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(CredentialsError::Empty { key })
    } else {
        Ok(trimmed.to_owned())
    }
}

/// Access key IDs and STS tokens go into HTTP headers, so they must be visible ASCII.
fn check_visible_ascii(key: &'static str, value: &str) -> Result<(), CredentialsError> {
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(CredentialsError::Invalid {
            key,
            reason: "only visible ASCII is allowed",
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access key {}", self.access_key_id)?;
        if self.security_token.is_some() {
            f.write_str(" (STS)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn reads_secret_data_and_trims_newlines() {
        let creds = Credentials::from_secret_data(&data(&[
            ("accessKeyId", b"LTAIexample\n"),
            ("accessKeySecret", b"s3cr3t-value\n"),
            ("securityToken", b"tok+en/=="),
        ]))
        .unwrap();
        assert_eq!(creds.access_key_id(), "LTAIexample");
        assert_eq!(creds.access_key_secret(), "s3cr3t-value");
        assert_eq!(creds.security_token(), Some("tok+en/=="));
        assert_eq!(
            creds,
            Credentials::new("LTAIexample", "s3cr3t-value", Some("tok+en/==".into()))
        );
    }

    #[test]
    fn empty_token_is_absent() {
        let creds = Credentials::from_secret_data(&data(&[
            ("accessKeyId", b"id"),
            ("accessKeySecret", b"secret"),
            ("securityToken", b""),
        ]))
        .unwrap();
        assert_eq!(creds.security_token(), None);
    }

    #[test]
    fn errors_name_the_key_never_the_value() {
        let cases: Vec<(BTreeMap<String, Vec<u8>>, CredentialsError)> = vec![
            (
                data(&[("accessKeySecret", b"hunter2")]),
                CredentialsError::Missing { key: "accessKeyId" },
            ),
            (
                data(&[("accessKeyId", b"id")]),
                CredentialsError::Missing {
                    key: "accessKeySecret",
                },
            ),
            (
                data(&[("accessKeyId", b"id"), ("accessKeySecret", b"  \n")]),
                CredentialsError::Empty {
                    key: "accessKeySecret",
                },
            ),
            (
                data(&[
                    ("accessKeyId", b"id"),
                    ("accessKeySecret", b"\xff\xfehunter2"),
                ]),
                CredentialsError::NotUtf8 {
                    key: "accessKeySecret",
                },
            ),
            (
                data(&[("accessKeyId", b"i d"), ("accessKeySecret", b"hunter2")]),
                CredentialsError::Invalid {
                    key: "accessKeyId",
                    reason: "only visible ASCII is allowed",
                },
            ),
            (
                data(&[
                    ("accessKeyId", b"id"),
                    ("accessKeySecret", b"hunter2"),
                    ("securityToken", "tök".as_bytes()),
                ]),
                CredentialsError::Invalid {
                    key: "securityToken",
                    reason: "only visible ASCII is allowed",
                },
            ),
        ];
        for (input, expected) in cases {
            let err = Credentials::from_secret_data(&input).unwrap_err();
            assert_eq!(err, expected);
            let text = err.to_string();
            assert!(text.contains(expected_key(&expected)), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    fn expected_key(e: &CredentialsError) -> &'static str {
        match e {
            CredentialsError::Missing { key }
            | CredentialsError::Empty { key }
            | CredentialsError::NotUtf8 { key }
            | CredentialsError::Invalid { key, .. } => key,
        }
    }

    #[test]
    fn reads_environment_variables() {
        let env = |name: &str| match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("envid".into()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("envsecret".into()),
            "ALIBABA_CLOUD_SECURITY_TOKEN" => Some("envtoken".into()),
            _ => None,
        };
        let creds = Credentials::from_lookup(env).unwrap();
        assert_eq!(
            creds,
            Credentials::new("envid", "envsecret", Some("envtoken".into()))
        );

        let missing = Credentials::from_lookup(|name| {
            (name == "ALIBABA_CLOUD_ACCESS_KEY_ID").then(|| "envid".into())
        })
        .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "credentials: `ALIBABA_CLOUD_ACCESS_KEY_SECRET` is missing"
        );
    }

    #[test]
    fn debug_and_display_never_print_secrets() {
        let creds = Credentials::new(
            "LTAIvisible",
            "VERY-SECRET-KEY",
            Some("VERY-SECRET-TOKEN".into()),
        );
        for text in [
            format!("{creds:?}"),
            format!("{creds:#?}"),
            format!("{creds}"),
            format!("{:?}", Some(&creds)),
        ] {
            assert!(text.contains("LTAIvisible"), "{text}");
            assert!(!text.contains("VERY-SECRET"), "{text}");
        }
    }

    #[test]
    fn redacts_the_token_in_all_encodings() {
        let creds = Credentials::new("id", "secret", Some("tok+en/==".into()));
        let echoed = "server string to sign is:POST&%2F&SecurityToken%3Dtok%252Ben%252F%253D%253D \
                      and tok%2Ben%2F%3D%3D and tok+en/==";
        let redacted = creds.redact(echoed);
        assert!(!redacted.contains("tok"), "{redacted}");
        assert_eq!(redacted.matches("<redacted>").count(), 3);
    }
}
