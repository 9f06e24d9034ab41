//! `credentials_uri`: `GET ALIBABA_CLOUD_CREDENTIALS_URI`, answered with a JSON object carrying
//! `AccessKeyId`, `AccessKeySecret`, `SecurityToken` and `Expiration` (all required, as the Go
//! library requires them) and `Code`, which must be `Success` when present (the Python library
//! requires it; the Go library ignores it).

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::sanitize::clean_text;

use super::answer::{Session, json_object, refused, session_from};
use super::error::{Failure, ProviderErrorKind};
use super::http::{HttpClient, Target};

pub(crate) struct UriFetcher {
    pub http: HttpClient,
    /// The whole URI, query included: never shown.
    pub url: String,
    /// What may be shown of it.
    pub shown: String,
}

impl UriFetcher {
    pub(crate) fn new(target: &Target, http: HttpClient) -> Self {
        Self {
            http,
            url: target.url.to_string(),
            shown: target.shown.clone(),
        }
    }

    pub(crate) fn fetch(&self) -> BoxFuture<'_, Result<Session, Failure>> {
        async move {
            let request = self.http.request(reqwest::Method::GET, &self.url);
            let (status, body) = self.http.send(request).await.map_err(|f| {
                let kind = if f.unreachable {
                    ProviderErrorKind::Unavailable
                } else {
                    ProviderErrorKind::InvalidAnswer
                };
                Failure::new(kind, format!("GET {}: {}", self.shown, f.message))
            })?;
            let action = format!("GET {}", self.shown);
            if !(200..300).contains(&status) {
                return Err(refused(
                    "the credentials URI",
                    &action,
                    status,
                    &body,
                    &|t: &str| t.to_owned(),
                ));
            }
            let what = format!("the answer to {action}");
            let answer = json_object(&body, &what)?;
            match answer.get("Code") {
                None => {}
                Some(serde_json::Value::String(code)) if code == "Success" => {}
                Some(code) => {
                    let code = code.as_str().map(str::to_owned).unwrap_or(code.to_string());
                    return Err(Failure::new(
                        ProviderErrorKind::Refused,
                        format!(
                            "{what} has `Code` \"{}\", not \"Success\"",
                            clean_text(&code, 64)
                        ),
                    ));
                }
            }
            session_from(&answer, &what)
        }
        .boxed()
    }
}
