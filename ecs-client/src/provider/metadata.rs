//! `ecs_ram_role`: the instance's RAM role credentials from the ECS metadata server.
//!
//! Hardened mode first: `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds`,
//! then every `GET` with `X-aliyun-ecs-metadata-token`. When the token request fails, the plain
//! mode (the same `GET`s without the header) is used, as both official libraries do, unless
//! `ALIBABA_CLOUD_IMDSV1_DISABLED=true`. A `GET` that fails *with* a token is an error: only the
//! newest Python library retries it in plain mode (`docs/credentials-chain.md`).

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{HeaderName, HeaderValue};

use crate::sanitize::clean_text;

use super::answer::{Session, json_object, refused, session_from};
use super::error::{Failure, ProviderErrorKind, redact_secrets};
use super::http::{HttpClient, Target};

const TOKEN_PATH: &str = "/latest/api/token";
const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const TOKEN_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The token lifetime the libraries ask for (6 hours, the most the server grants).
const TOKEN_TTL_SECONDS: u32 = 21_600;
/// A metadata token goes into a header: anything longer or stranger is not one.
const MAX_TOKEN_CHARS: usize = 4096;

pub(crate) struct MetadataFetcher {
    pub http: HttpClient,
    /// `scheme://host[:port]`.
    pub base: String,
    /// `None`: asked from the server at every renewal (the libraries' behaviour).
    pub role_name: Option<String>,
    /// `ALIBABA_CLOUD_IMDSV1_DISABLED=true`: the hardened mode or nothing.
    pub imds_v1_disabled: bool,
}

impl MetadataFetcher {
    pub(crate) fn new(
        target: &Target,
        http: HttpClient,
        role_name: Option<String>,
        imds_v1_disabled: bool,
    ) -> Self {
        Self {
            http,
            base: target.shown.clone(),
            role_name,
            imds_v1_disabled,
        }
    }

    pub(crate) fn fetch(&self) -> BoxFuture<'_, Result<Session, Failure>> {
        async move {
            let token = match self.token().await {
                Ok(token) => Some(token),
                Err(f) if !self.imds_v1_disabled => {
                    tracing::debug!(error = %f.message,
                        "ECS metadata hardened mode unavailable; using the plain mode");
                    None
                }
                Err(f) => {
                    return Err(Failure {
                        message: clean_text(
                            &format!(
                                "{} (ALIBABA_CLOUD_IMDSV1_DISABLED=true requires the hardened mode)",
                                f.message
                            ),
                            crate::sanitize::MAX_MESSAGE_BYTES,
                        ),
                        ..f
                    });
                }
            };
            let token = token.as_deref();
            let role = match &self.role_name {
                Some(role) => role.clone(),
                None => self.discover_role(token).await?,
            };
            let body = self.get(&format!("{ROLES_PATH}{role}"), token).await?;
            let what = format!("the metadata server's answer for role {role}");
            let answer = json_object(&body, &what)?;
            match answer.get("Code").and_then(|c| c.as_str()) {
                Some("Success") => {}
                Some(code) => {
                    return Err(Failure::new(
                        ProviderErrorKind::Refused,
                        format!(
                            "{what} has `Code` \"{}\", not \"Success\"",
                            clean_text(code, 64)
                        ),
                    ));
                }
                None => return Err(Failure::invalid(format!("{what} has no `Code`"))),
            }
            session_from(&answer, &what)
        }
        .boxed()
    }

    async fn token(&self) -> Result<String, Failure> {
        let request = self
            .http
            .request(reqwest::Method::PUT, &format!("{}{TOKEN_PATH}", self.base))
            .header(
                HeaderName::from_static(TOKEN_TTL_HEADER),
                HeaderValue::from(TOKEN_TTL_SECONDS),
            );
        let (status, body) = self
            .http
            .send(request)
            .await
            .map_err(|f| unreachable_or_invalid(f, "PUT", TOKEN_PATH))?;
        if !(200..300).contains(&status) {
            return Err(refused(
                "the metadata server",
                &format!("PUT {TOKEN_PATH}"),
                status,
                &body,
                &|t: &str| t.to_owned(),
            ));
        }
        let token = String::from_utf8(body)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if token.is_empty()
            || token.len() > MAX_TOKEN_CHARS
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Failure::invalid(
                "the metadata server answered a token that cannot be sent in a header",
            ));
        }
        Ok(token)
    }

    /// The first role the server lists.
    async fn discover_role(&self, token: Option<&str>) -> Result<String, Failure> {
        let body = self.get(ROLES_PATH, token).await?;
        let text = String::from_utf8_lossy(&body);
        let role = text.lines().map(str::trim).find(|l| !l.is_empty());
        match role {
            Some(role) if is_role_name(role) => Ok(role.to_owned()),
            Some(_) => Err(Failure::invalid(
                "the metadata server lists a role name that is not a RAM role name",
            )),
            None => Err(Failure::new(
                ProviderErrorKind::Refused,
                "the metadata server lists no RAM role: attach one to the instance",
            )),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Vec<u8>, Failure> {
        let mut request = self
            .http
            .request(reqwest::Method::GET, &format!("{}{path}", self.base));
        if let Some(token) = token {
            let value = HeaderValue::from_str(token)
                .map_err(|_| Failure::invalid("the metadata token cannot be sent"))?;
            request = request.header(HeaderName::from_static(TOKEN_HEADER), value);
        }
        let (status, body) = self
            .http
            .send(request)
            .await
            .map_err(|f| unreachable_or_invalid(f, "GET", path))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let secrets: Vec<&str> = token.into_iter().collect();
        let mut failure = refused(
            "the metadata server",
            &format!("GET {path}"),
            status,
            &body,
            &|t: &str| redact_secrets(t, &secrets),
        );
        if status == 404 && path != ROLES_PATH {
            failure.message = clean_text(
                &format!(
                    "the metadata server knows no such role (GET {path}: HTTP 404): check \
                     ALIBABA_CLOUD_ECS_METADATA or `role_name` against the instance's RAM role"
                ),
                crate::sanitize::MAX_MESSAGE_BYTES,
            );
        }
        Err(failure)
    }
}

fn unreachable_or_invalid(f: super::http::HttpFailure, method: &str, path: &str) -> Failure {
    let kind = if f.unreachable {
        ProviderErrorKind::Unavailable
    } else {
        ProviderErrorKind::InvalidAnswer
    };
    Failure::new(
        kind,
        format!("the metadata server ({method} {path}): {}", f.message),
    )
}

/// A RAM role name as it may go into the metadata path: 1 to 64 of `[A-Za-z0-9._-]`.
pub(crate) fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
