//! HTTP/1.1 (plain, or TLS when a connection starts with a TLS handshake) on a loopback
//! listener: routes `/_sim/*` to the admin interface, `/latest/*` and `/credentials-uri` to the
//! metadata server, and everything else to the RPC gateway (ECS and STS).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::gateway::{self, Outcome, RpcRequest};
use crate::metadata;
use crate::state::Sim;
use crate::tls::HANDSHAKE_RECORD;

/// RPC bodies are small forms; anything larger is refused, not buffered.
const MAX_RPC_BODY: usize = 1024 * 1024;
/// Admin bodies may seed thousands of instances at once.
const MAX_ADMIN_BODY: usize = 64 * 1024 * 1024;

/// Returned by the service to make hyper close the connection without a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub async fn serve(listener: TcpListener, sim: Arc<Sim>, tls: TlsAcceptor) -> Infallible {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: keep serving the connections we have.
                eprintln!("ecs-sim: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sim = sim.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let is_tls =
                matches!(stream.peek(&mut first).await, Ok(1) if first[0] == HANDSHAKE_RECORD);
            if is_tls {
                // A failed handshake (e.g. the client does not trust the CA) just ends here.
                if let Ok(stream) = tls.accept(stream).await {
                    serve_http(stream, sim).await;
                }
            } else {
                serve_http(stream, sim).await;
            }
        });
    }
}

async fn serve_http<S>(stream: S, sim: Arc<Sim>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let sim = sim.clone();
        async move { route(&sim, request).await }
    });
    // Errors here are client-side disconnects, malformed HTTP or our own drops.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn route(
    sim: &Sim,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let is_admin = path == "/_sim" || path.starts_with("/_sim/");
    let limit = if is_admin {
        MAX_ADMIN_BODY
    } else {
        MAX_RPC_BODY
    };
    // The metadata server and the credentials URI take no body. Absolute-form requests (through
    // a client's HTTP proxy option, `GET http://100.100.100.200/latest/...`) arrive here with
    // their path too.
    if metadata::serves(&path) {
        let answer = metadata::handle(sim, parts.method.as_str(), &path, &parts.headers);
        return Ok(respond(answer.status, answer.content_type, answer.body));
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => Some(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => None,
        // The client went away mid-body: nobody is left to answer.
        Err(_) => return Err(DropConnection),
    };

    if is_admin {
        let Some(body) = body else {
            return Ok(respond(
                413,
                "application/json",
                "{\"error\":\"body too large\"}".to_owned(),
            ));
        };
        let answer = admin::handle(sim, parts.method.as_str(), &path, &query, &body);
        return Ok(respond(
            answer.status,
            "application/json",
            answer.body.to_string(),
        ));
    }

    let rpc = RpcRequest {
        method: parts.method.as_str(),
        path: &path,
        query: &query,
        headers: &parts.headers,
        body: body.as_deref(),
    };
    match gateway::handle(sim, rpc).await {
        Outcome::Respond {
            status,
            content_type,
            body,
        } => Ok(respond(status, content_type, body)),
        Outcome::Drop => Err(DropConnection),
    }
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
