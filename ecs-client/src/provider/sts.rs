//! STS (`2015-04-01`): `AssumeRole`, signed with HMAC-SHA1 (the RPC signature of [`signing::v1`],
//! the one the official libraries send to STS), and `AssumeRoleWithOIDC`, which is anonymous.
//!
//! Both are sent as the Go and Java libraries send them: `POST /` with the protocol parameters
//! (`Action`, `Version`, `Format`, `Timestamp`, and for `AssumeRole` the signature parameters)
//! in the query string and the API parameters in an `application/x-www-form-urlencoded` body;
//! the signature covers both. So the OIDC token and the policy never travel in a URL (the
//! Python library puts everything in the query string; STS accepts both).

use std::path::PathBuf;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::credentials::Credentials;
use crate::model::Params;
use crate::signing::{Freshness, canonical_query, percent_encode, v1};

use super::CredentialsProvider;
use super::answer::{Session, json_object, refused, session_from};
use super::error::{Failure, ProviderErrorKind, redact_secrets};
use super::http::{HttpClient, Target};

/// The STS API version.
pub(crate) const STS_VERSION: &str = "2015-04-01";

/// The STS error code for a security token that expired.
const EXPIRED_TOKEN: &str = "InvalidSecurityToken.Expired";

/// The role to assume and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: u32,
    pub external_id: Option<String>,
    pub policy: Option<String>,
}

impl RoleRequest {
    fn params(&self) -> Params {
        let mut params = Params::from([
            ("RoleArn".to_owned(), self.role_arn.clone()),
            ("RoleSessionName".to_owned(), self.session_name.clone()),
            (
                "DurationSeconds".to_owned(),
                self.duration_seconds.to_string(),
            ),
        ]);
        if let Some(policy) = &self.policy {
            params.insert("Policy".to_owned(), policy.clone());
        }
        params
    }
}

/// One STS endpoint.
pub(crate) struct Sts {
    http: HttpClient,
    /// `scheme://host[:port]`.
    base: String,
}

impl Sts {
    pub(crate) fn new(target: &Target, http: HttpClient) -> Self {
        Self {
            http,
            base: target.shown.clone(),
        }
    }

    /// `AssumeRole` signed with `creds`.
    pub(crate) async fn assume_role(
        &self,
        creds: &Credentials,
        role: &RoleRequest,
    ) -> Result<Session, Failure> {
        let mut api = role.params();
        if let Some(external_id) = &role.external_id {
            api.insert("ExternalId".to_owned(), external_id.clone());
        }
        let mut secrets = vec![creds.access_key_secret()];
        secrets.extend(creds.security_token());
        self.call("AssumeRole", api, Some(creds), &secrets).await
    }

    /// `AssumeRoleWithOIDC`: anonymous, the OIDC token proves who asks.
    pub(crate) async fn assume_role_with_oidc(
        &self,
        oidc_provider_arn: &str,
        oidc_token: &str,
        role: &RoleRequest,
    ) -> Result<Session, Failure> {
        let mut api = role.params();
        api.insert("OIDCProviderArn".to_owned(), oidc_provider_arn.to_owned());
        api.insert("OIDCToken".to_owned(), oidc_token.to_owned());
        self.call("AssumeRoleWithOIDC", api, None, &[oidc_token])
            .await
    }

    async fn call(
        &self,
        action: &str,
        api: Params,
        signer: Option<&Credentials>,
        secrets: &[&str],
    ) -> Result<Session, Failure> {
        let fresh = Freshness::now();
        let mut common = Params::from([
            ("Action".to_owned(), action.to_owned()),
            ("Version".to_owned(), STS_VERSION.to_owned()),
            ("Format".to_owned(), "JSON".to_owned()),
            ("Timestamp".to_owned(), fresh.timestamp.clone()),
        ]);
        let query = match signer {
            None => canonical_query(&common),
            Some(creds) => {
                for (k, v) in [
                    ("SignatureMethod", "HMAC-SHA1"),
                    ("SignatureVersion", "1.0"),
                    ("SignatureNonce", fresh.nonce.as_str()),
                    ("AccessKeyId", creds.access_key_id()),
                ] {
                    common.insert(k.to_owned(), v.to_owned());
                }
                if let Some(token) = creds.security_token() {
                    common.insert("SecurityToken".to_owned(), token.to_owned());
                }
                let mut signed = common.clone();
                signed.extend(api.iter().map(|(k, v)| (k.clone(), v.clone())));
                let signature = v1::signature(
                    creds.access_key_secret(),
                    &v1::string_to_sign("POST", &signed),
                );
                format!(
                    "{}&Signature={}",
                    canonical_query(&common),
                    percent_encode(&signature)
                )
            }
        };
        let request = self
            .http
            .request(reqwest::Method::POST, &format!("{}/?{query}", self.base))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(canonical_query(&api));
        let (status, body) = self.http.send(request).await.map_err(|f| {
            let kind = if f.unreachable {
                ProviderErrorKind::Unavailable
            } else {
                ProviderErrorKind::InvalidAnswer
            };
            Failure::new(kind, format!("STS {action}: {}", f.message))
        })?;
        if !(200..300).contains(&status) {
            return Err(refused("STS", action, status, &body, &|t: &str| {
                redact_secrets(t, secrets)
            }));
        }
        let what = format!("the STS answer to {action}");
        let answer = json_object(&body, &what)?;
        match answer.get("Credentials") {
            Some(serde_json::Value::Object(credentials)) => {
                session_from(credentials, &format!("{what} (`Credentials`)"))
            }
            _ => Err(Failure::invalid(format!(
                "{what} has no `Credentials` object"
            ))),
        }
    }
}

/// `oidc_role_arn`: the token file is read again at every renewal (projected service account
/// tokens are rotated by the kubelet).
pub(crate) struct OidcFetcher {
    pub sts: Sts,
    pub oidc_provider_arn: String,
    pub token_file: PathBuf,
    pub role: RoleRequest,
}

/// Largest OIDC token file read (a projected token is about 1 KiB).
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

impl OidcFetcher {
    pub(crate) fn fetch(&self) -> BoxFuture<'_, Result<Session, Failure>> {
        async move {
            let token = read_token_file(&self.token_file).await?;
            self.sts
                .assume_role_with_oidc(&self.oidc_provider_arn, &token, &self.role)
                .await
        }
        .boxed()
    }
}

async fn read_token_file(path: &std::path::Path) -> Result<String, Failure> {
    use tokio::io::AsyncReadExt;
    let failed = |what: String| {
        Failure::new(
            ProviderErrorKind::TokenFile,
            format!("the OIDC token file {}: {what}", path.display()),
        )
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| failed(format!("cannot be opened: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| failed(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(failed(format!(
            "is larger than {} KiB",
            MAX_TOKEN_FILE_BYTES / 1024
        )));
    }
    let token = String::from_utf8(bytes)
        .map_err(|_| failed("is not UTF-8".to_owned()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(failed("is empty".to_owned()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(failed(
            "holds characters that are not visible ASCII (not a JWT)".to_owned(),
        ));
    }
    Ok(token)
}

/// `ram_role_arn`: `AssumeRole` with the base provider's current credentials. When STS says
/// the base's security token expired, the base is asked to renew it once and the call is made
/// again.
pub(crate) struct RamRoleFetcher {
    pub sts: Sts,
    pub base: CredentialsProvider,
    pub role: RoleRequest,
}

impl RamRoleFetcher {
    pub(crate) fn fetch(&self) -> BoxFuture<'_, Result<Session, Failure>> {
        async move {
            let base_failed = |e: super::ProviderError| {
                Failure::new(
                    ProviderErrorKind::BaseUnavailable,
                    format!("no credentials to assume the role with: {e}"),
                )
            };
            let creds = self.base.credentials().await.map_err(base_failed)?;
            match self.sts.assume_role(&creds, &self.role).await {
                Err(f) if f.code.as_deref() == Some(EXPIRED_TOKEN) => {
                    let renewed = self.base.renew(&creds).await.map_err(base_failed)?;
                    if renewed == creds {
                        return Err(f);
                    }
                    self.sts.assume_role(&renewed, &self.role).await
                }
                result => result,
            }
        }
        .boxed()
    }
}
