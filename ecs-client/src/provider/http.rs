//! HTTP for the credentials sources: which endpoints are acceptable, and one bounded exchange
//! (no redirects, no decompression, a deadline, at most 64 KiB read), as the ECS transport does.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderValue, USER_AGENT};

use crate::transport::{error_chain, hardened, human_duration, is_loopback, read_at_most};

/// The ECS metadata server's fixed link-local address. It serves plain HTTP by design (it is
/// only reachable from the instance itself), so plain HTTP to it is accepted.
pub(crate) const METADATA_HOST: &str = "100.100.100.200";

/// Largest answer read from STS, the metadata server or a credentials URI.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An endpoint a source talks to, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub url: Url,
    /// `scheme://host[:port][path]`: what logs and errors may show (never a query).
    pub shown: String,
    /// Loopback or the metadata server: never through a proxy.
    pub direct: bool,
}

/// What an endpoint may look like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetRules {
    /// The scheme of a bare host name.
    pub default_scheme: &'static str,
    /// Plain HTTP to any host (an explicit option); otherwise only to loopback, and to the
    /// metadata server when `metadata_plain_ok`.
    pub allow_plain_http: bool,
    pub metadata_plain_ok: bool,
    /// A path (and a query) is part of the endpoint (a credentials URI); otherwise only `/`.
    pub path_allowed: bool,
}

/// Parses an endpoint: a bare host (`sts.cn-hangzhou.aliyuncs.com`) or a URL. The raw text is
/// never echoed in an error, since a credentials URI may carry a secret in its query.
pub(crate) fn parse_target(raw: &str, rules: TargetRules) -> Result<Target, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is empty".to_owned());
    }
    let text = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("{}://{raw}", rules.default_scheme)
    };
    let url = Url::parse(&text).map_err(|e| format!("is not a valid URL ({e})"))?;
    let host = url
        .host_str()
        .ok_or_else(|| "has no host".to_owned())?
        .to_owned();
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user information".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    if !rules.path_allowed && (url.path() != "/" || url.query().is_some()) {
        return Err("must not have a path or a query (calls go to `/`)".to_owned());
    }
    let loopback = is_loopback(&host);
    let metadata = host == METADATA_HOST;
    match url.scheme() {
        "https" => {}
        "http" if loopback || rules.allow_plain_http || (metadata && rules.metadata_plain_ok) => {}
        "http" => {
            let also = if rules.metadata_plain_ok {
                format!(", the metadata server {METADATA_HOST}")
            } else {
                String::new()
            };
            return Err(format!(
                "uses plain HTTP to `{host}`: plain HTTP is only allowed to loopback{also} or \
                 when explicitly allowed; use https"
            ));
        }
        other => return Err(format!("has the unsupported scheme `{other}`")),
    }
    let mut shown = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if rules.path_allowed && url.path() != "/" {
        shown.push_str(url.path());
    }
    Ok(Target {
        url,
        shown,
        direct: loopback || metadata,
    })
}

/// Why an exchange failed: `unreachable` when no answer came (connection, timeout), else the
/// answer was unusable (a redirect, too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpFailure {
    pub unreachable: bool,
    pub message: String,
}

/// One client per source, with the ECS transport's TLS (rustls, ring, platform verifier).
pub(crate) struct HttpClient {
    client: reqwest::Client,
    deadline: Duration,
}

impl HttpClient {
    pub(crate) fn new(
        target: &Target,
        connect_timeout: Duration,
        deadline: Duration,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if target.direct {
            builder = builder.no_proxy();
        }
        let client = hardened(builder.connect_timeout(connect_timeout))?;
        Ok(Self { client, deadline })
    }

    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url).header(
            USER_AGENT,
            HeaderValue::from_static(concat!("ecs-client/", env!("CARGO_PKG_VERSION"))),
        )
    }

    /// Sends and reads the answer (status and at most [`MAX_ANSWER_BYTES`]) within the deadline.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), HttpFailure> {
        let exchange = async {
            let unreachable = |e: reqwest::Error| {
                let what = if e.is_connect() {
                    "could not connect"
                } else if e.is_timeout() {
                    "timed out"
                } else {
                    "the HTTP exchange failed"
                };
                HttpFailure {
                    unreachable: true,
                    // Without the URL: it may carry a signature.
                    message: format!("{what}: {}", error_chain(e)),
                }
            };
            let mut response = request.send().await.map_err(unreachable)?;
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                return Err(HttpFailure {
                    unreachable: false,
                    message: format!("HTTP {status} redirect refused"),
                });
            }
            let (body, more) = read_at_most(&mut response, MAX_ANSWER_BYTES)
                .await
                .map_err(unreachable)?;
            if more {
                return Err(HttpFailure {
                    unreachable: false,
                    message: format!(
                        "HTTP {status} with an answer larger than {} KiB",
                        MAX_ANSWER_BYTES / 1024
                    ),
                });
            }
            Ok((status, body))
        };
        match tokio::time::timeout(self.deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpFailure {
                unreachable: true,
                message: format!(
                    "timed out: no complete answer within {}",
                    human_duration(self.deadline)
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STS: TargetRules = TargetRules {
        default_scheme: "https",
        allow_plain_http: false,
        metadata_plain_ok: false,
        path_allowed: false,
    };
    const METADATA: TargetRules = TargetRules {
        default_scheme: "http",
        allow_plain_http: false,
        metadata_plain_ok: true,
        path_allowed: false,
    };
    const URI: TargetRules = TargetRules {
        default_scheme: "http",
        allow_plain_http: false,
        metadata_plain_ok: false,
        path_allowed: true,
    };

    #[test]
    fn bare_hosts_get_the_default_scheme() {
        let t = parse_target("sts.cn-hangzhou.aliyuncs.com", STS).unwrap();
        assert_eq!(t.shown, "https://sts.cn-hangzhou.aliyuncs.com");
        assert!(!t.direct);
        let t = parse_target(METADATA_HOST, METADATA).unwrap();
        assert_eq!(t.shown, "http://100.100.100.200");
        assert!(t.direct);
    }

    #[test]
    fn plain_http_only_to_loopback_and_the_metadata_server() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:1",
        ] {
            for rules in [STS, METADATA, URI] {
                assert!(parse_target(ok, rules).is_ok(), "{ok}");
            }
        }
        assert!(parse_target("http://100.100.100.200", METADATA).is_ok());
        for (bad, rules) in [
            ("http://100.100.100.200", STS),
            ("http://10.0.0.1:8080", METADATA),
            ("http://sts.aliyuncs.com", STS),
            ("http://creds.example/path", URI),
        ] {
            let err = parse_target(bad, rules).unwrap_err();
            assert!(err.contains("plain HTTP"), "{bad}: {err}");
            let allowed = TargetRules {
                allow_plain_http: true,
                ..rules
            };
            assert!(parse_target(bad, allowed).is_ok(), "{bad}");
        }
    }

    #[test]
    fn shapes_are_checked_and_queries_never_shown() {
        for bad in [
            "https://sts.aliyuncs.com/path",
            "https://sts.aliyuncs.com/?a=b",
            "https://user:pw@sts.aliyuncs.com",
            "ftp://sts.aliyuncs.com",
            "",
            "https://",
        ] {
            assert!(parse_target(bad, STS).is_err(), "{bad}");
        }
        let t = parse_target("http://127.0.0.1:9/creds?token=SECRETQUERY", URI).unwrap();
        assert_eq!(t.shown, "http://127.0.0.1:9/creds");
        assert!(t.url.as_str().contains("SECRETQUERY"));
        let err = parse_target("http://x y/?token=SECRETQUERY", URI).unwrap_err();
        assert!(!err.contains("SECRETQUERY"), "{err}");
    }
}
