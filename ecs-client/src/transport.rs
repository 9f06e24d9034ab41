//! One HTTP attempt: resolve the endpoint, sign with a fresh nonce and timestamp, POST with the
//! parameters in the query string, and turn the answer into a body or an [`EcsError`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, USER_AGENT};

use crate::credentials::Credentials;
use crate::error::{EcsError, ErrorKind};
use crate::model::Params;
use crate::sanitize::clean_text;
use crate::signing::{self, Freshness, RpcRequest, SigningMethod};

/// Where requests for one region go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
    /// The `Host` header, signed by V3: the host plus `:port` when not the scheme's default.
    pub host: String,
    loopback: bool,
}

impl Endpoint {
    /// An override such as `http://127.0.0.1:8080` (the simulator) or `https://proxy.example`.
    /// Plain HTTP is refused unless the host is loopback or `allow_plain_http` (an explicit
    /// opt-in, for a test double such as the simulator behind a cluster Service): credentials-
    /// signed traffic must not cross a network in clear text.
    fn parse_override(raw: &str, allow_plain_http: bool) -> Result<Self, String> {
        let url = Url::parse(raw.trim()).map_err(|e| format!("endpoint `{raw}`: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("endpoint `{raw}` has no host"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("endpoint `{raw}` must not carry user information"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "endpoint `{raw}` must not have a path, query or fragment (RPC calls go to `/`)"
            ));
        }
        let loopback = is_loopback(host);
        match url.scheme() {
            "https" => {}
            "http" if loopback || allow_plain_http => {}
            "http" => {
                return Err(format!(
                    "endpoint `{raw}`: plain HTTP is only allowed on loopback without the \
                     explicit opt-in to plain HTTP; use https"
                ));
            }
            other => return Err(format!("endpoint `{raw}`: unsupported scheme `{other}`")),
        }
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            base: format!("{}://{host}", url.scheme()),
            host,
            loopback,
        })
    }

    /// The public regional endpoint `https://ecs.<region>.aliyuncs.com`.
    fn regional(region: &str) -> Self {
        let host = format!("ecs.{region}.aliyuncs.com");
        Self {
            base: format!("https://{host}"),
            host,
            loopback: false,
        }
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Region IDs are lowercase words joined by `-` (`cn-hangzhou`, `eu-central-1`); anything else
/// would change the endpoint's host name, so it is refused before any request is built.
pub(crate) fn check_region(region: &str) -> Result<(), String> {
    let valid = !region.is_empty()
        && region.len() <= 64
        && region.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(format!("`{region}` is not a valid region ID"))
    }
}

/// A successful HTTP exchange (2xx).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

pub(crate) struct Transport {
    http: reqwest::Client,
    signing: SigningMethod,
    endpoint_override: Option<Endpoint>,
    max_body_bytes: usize,
    max_error_body_bytes: usize,
}

/// Connection settings the transport needs from the client's configuration.
pub(crate) struct TransportConfig<'a> {
    pub endpoint_override: Option<&'a str>,
    /// Plain HTTP to a non-loopback `endpoint_override` (an explicit opt-in).
    pub allow_plain_http: bool,
    pub signing: SigningMethod,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Largest success body read; a longer one fails the attempt.
    pub max_body_bytes: usize,
    /// How much of an error body is read; the rest is never read (the connection is dropped).
    pub max_error_body_bytes: usize,
}

impl Transport {
    pub(crate) fn new(config: TransportConfig<'_>) -> Result<Self, String> {
        let endpoint_override = config
            .endpoint_override
            .map(|raw| Endpoint::parse_override(raw, config.allow_plain_http))
            .transpose()?;
        let mut builder = reqwest::Client::builder();
        // Proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`) apply to the real endpoints,
        // as operators expect; a loopback endpoint (the simulator) is never proxied.
        if endpoint_override.as_ref().is_some_and(|e| e.loopback) {
            builder = builder.no_proxy();
        }
        let http = hardened(
            builder
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout),
        )?;
        Ok(Self {
            http,
            signing: config.signing,
            endpoint_override,
            max_body_bytes: config.max_body_bytes,
            max_error_body_bytes: config.max_error_body_bytes,
        })
    }

    pub(crate) fn endpoint(&self, action: &str, region: &str) -> Result<Endpoint, EcsError> {
        check_region(region).map_err(|m| EcsError::new(action, ErrorKind::InvalidRequest, m))?;
        Ok(self
            .endpoint_override
            .clone()
            .unwrap_or_else(|| Endpoint::regional(region)))
    }

    /// One attempt, signed afresh, finished (answer read or failed) within `deadline`. Non-2xx
    /// answers become errors; server text in them is scrubbed of the security token.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        action: &str,
        params: &Params,
        creds: &Credentials,
        deadline: Duration,
    ) -> Result<Answer, EcsError> {
        match tokio::time::timeout(deadline, self.attempt(endpoint, action, params, creds)).await {
            Ok(result) => result,
            Err(_) => Err(EcsError::new(
                action,
                ErrorKind::Timeout,
                format!(
                    "timed out: no complete answer within the attempt deadline of {}",
                    human_duration(deadline)
                ),
            )),
        }
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        action: &str,
        params: &Params,
        creds: &Credentials,
    ) -> Result<Answer, EcsError> {
        let mut params = params.clone();
        params.insert("Format".to_owned(), "JSON".to_owned());
        let signed = signing::sign_request(
            self.signing,
            RpcRequest {
                method: "POST",
                host: &endpoint.host,
                action,
                params: &params,
            },
            creds,
            &Freshness::now(),
        );
        let mut headers = HeaderMap::new();
        for (name, value) in &signed.headers {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = HeaderValue::from_str(value);
            let (Ok(name), Ok(value)) = (name, value) else {
                // Only credentials built with `Credentials::new` can get here; say which part.
                return Err(EcsError::new(
                    action,
                    ErrorKind::InvalidRequest,
                    "the access key ID or security token contains characters not allowed in \
                     an HTTP header",
                ));
            };
            headers.insert(name, value);
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("ecs-client/", env!("CARGO_PKG_VERSION"))),
        );
        let url = format!("{}/?{}", endpoint.base, signed.query);
        let mut response = self
            .http
            .post(url)
            .headers(headers)
            .body(Vec::new())
            .send()
            .await
            .map_err(|e| transport_error(action, e))?;
        let status = response.status().as_u16();
        let redact = |t: &str| creds.redact(t);
        if response.status().is_redirection() {
            // The body is not read: the connection is dropped with the response.
            return Err(EcsError::with_status(
                action,
                ErrorKind::InvalidBody,
                status,
                format!(
                    "HTTP {status} redirect to {} refused: ECS calls never follow redirects \
                     (check the endpoint and any proxy in between)",
                    location_host(response.headers(), response.url())
                ),
            ));
        }
        if (200..300).contains(&status) {
            let limit = self.max_body_bytes;
            let too_large = || {
                EcsError::with_status(
                    action,
                    ErrorKind::InvalidBody,
                    status,
                    format!(
                        "the answer is larger than the {} limit for a response body",
                        human_bytes(limit)
                    ),
                )
            };
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            match read_at_most(&mut response, limit).await {
                Ok((body, false)) => Ok(Answer { status, body }),
                Ok((_, true)) => Err(too_large()),
                Err(e) => Err(transport_error(action, e)),
            }
        } else {
            // Only the start of an error body matters (code, message, or an excerpt); a huge
            // one is cut, and the rest is never read.
            let body = match read_at_most(&mut response, self.max_error_body_bytes).await {
                Ok((body, _)) => body,
                Err(e) => return Err(transport_error(action, e)),
            };
            Err(EcsError::from_response_redacted(
                action, status, &body, &redact,
            ))
        }
    }
}

/// Reads the body chunk by chunk, keeping at most `limit` bytes: `(body, true)` when there was
/// more (which is then left unread; dropping the response closes the connection).
pub(crate) async fn read_at_most(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Where a redirect points, as `host[:port]` only — never the path or query, which may carry a
/// signature.
fn location_host(headers: &HeaderMap, request_url: &Url) -> String {
    let Some(location) = headers.get(LOCATION) else {
        return "nowhere (no Location header)".to_owned();
    };
    let target = location
        .to_str()
        .ok()
        .and_then(|l| request_url.join(l.trim()).ok());
    match target
        .as_ref()
        .and_then(|u| u.host_str().map(|h| (h, u.port())))
    {
        Some((host, port)) => {
            let host = match port {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            format!("host `{}`", clean_text(&host, 256))
        }
        None => "an unreadable Location".to_owned(),
    }
}

fn human_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n}-byte")
    }
}

pub(crate) fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Every HTTP client of this crate (ECS, STS, the metadata server, a credentials URI) is built
/// here. A redirect would re-send a signed request (V1: the whole signed query; V3: the signed
/// headers), a token or credentials to wherever the answer points: never follow one. Bodies are
/// read raw and bounded; no decompression (even if another crate enables reqwest's decompression
/// features), so a small compressed answer cannot expand.
pub(crate) fn hardened(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .tls_backend_preconfigured(tls_config()?)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(e)))
}

/// TLS with the ring provider passed explicitly (no process-wide default is assumed or set) and
/// the platform's certificate verifier, as reqwest configures it for itself.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("cannot set up TLS certificate verification: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        // "dangerous" is rustls' name for any verifier it does not ship; this one is the
        // platform's full certificate verification.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// reqwest errors print the URL, which carries the signature and (V1) the security token:
/// drop it and keep the causes.
fn transport_error(action: &str, err: reqwest::Error) -> EcsError {
    let kind = if err.is_connect() {
        ErrorKind::Connect
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    let what = match kind {
        ErrorKind::Connect => "could not connect",
        ErrorKind::Timeout => "timed out",
        _ => "the HTTP exchange failed",
    };
    EcsError::new(action, kind, format!("{what}: {}", error_chain(err)))
}

pub(crate) fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoint_is_regional_https() {
        let t = Transport::new(TransportConfig {
            endpoint_override: None,
            allow_plain_http: false,
            signing: SigningMethod::default(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            max_error_body_bytes: 64 << 10,
        })
        .expect("HTTPS client builds without a process-wide crypto provider");
        let e = t.endpoint("DescribeInstances", "cn-hangzhou").unwrap();
        assert_eq!(e.base, "https://ecs.cn-hangzhou.aliyuncs.com");
        assert_eq!(e.host, "ecs.cn-hangzhou.aliyuncs.com");
        for bad in [
            "",
            "CN-hangzhou",
            "cn-hangzhou.evil.com/x",
            "cn--x",
            "cn hangzhou",
            "-cn",
        ] {
            let err = t.endpoint("DescribeInstances", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn overrides_are_checked() {
        let ok = [
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080",
                "127.0.0.1:8080",
            ),
            (
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080",
                "127.0.0.1:8080",
            ),
            ("http://localhost:80", "http://localhost", "localhost"),
            ("http://[::1]:9000", "http://[::1]:9000", "[::1]:9000"),
            (
                "https://ecs.example.com:443",
                "https://ecs.example.com",
                "ecs.example.com",
            ),
            (
                "https://10.0.0.1:8443",
                "https://10.0.0.1:8443",
                "10.0.0.1:8443",
            ),
        ];
        for (raw, base, host) in ok {
            let e = Endpoint::parse_override(raw, false).unwrap();
            assert_eq!((e.base.as_str(), e.host.as_str()), (base, host), "{raw}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://ecs.example.com",
            "ftp://127.0.0.1",
            "https://ecs.example.com/api",
            "https://ecs.example.com/?a=b",
            "https://user:pw@ecs.example.com",
            "not a url",
        ] {
            assert!(Endpoint::parse_override(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_to_a_non_loopback_host_needs_the_opt_in() {
        for raw in [
            "http://10.96.0.12:9100",
            "http://ecs-sim.ecs-system.svc:9100",
        ] {
            let refused = Endpoint::parse_override(raw, false).unwrap_err();
            assert!(
                refused.contains("plain HTTP") && refused.contains("opt-in"),
                "{raw}: {refused}"
            );
            let allowed = Endpoint::parse_override(raw, true).unwrap();
            assert!(allowed.base.starts_with("http://"), "{raw}");
            assert!(!allowed.loopback, "{raw}: proxies still apply");
        }
        // The opt-in relaxes only the scheme rule.
        for bad in [
            "ftp://10.0.0.1",
            "http://10.0.0.1/api",
            "http://user:pw@10.0.0.1",
        ] {
            assert!(Endpoint::parse_override(bad, true).is_err(), "{bad}");
        }
    }

    /// Proves the TLS stack is wired (a missing crypto provider would panic here) without any
    /// network: nothing listens on the port, so the connection is refused.
    #[tokio::test]
    async fn https_requests_fail_cleanly_without_a_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("https://127.0.0.1:{port}");
        let t = Transport::new(TransportConfig {
            endpoint_override: Some(&endpoint),
            allow_plain_http: false,
            signing: SigningMethod::HmacSha1,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            max_error_body_bytes: 64 << 10,
        })
        .unwrap();
        let creds = Credentials::new("id", "TOPSECRET", Some("TOKENVALUE".into()));
        let err = t
            .send(
                &t.endpoint("DescribeInstances", "cn-hangzhou").unwrap(),
                "DescribeInstances",
                &Params::new(),
                &creds,
                Duration::from_secs(30),
            )
            .await
            .err()
            .expect("nothing listens there");
        assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
        let text = format!("{err} {err:?}");
        assert!(
            text.starts_with("DescribeInstances failed: could not connect"),
            "{text}"
        );
        assert!(
            !text.contains("TOKENVALUE") && !text.contains("Signature"),
            "{text}"
        );
    }
}
