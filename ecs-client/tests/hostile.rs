//! The client against endpoints that answer badly: redirects, huge and slow bodies, resets,
//! compressed bodies, answers of the wrong shape and error texts full of control characters.
//! Each test runs a tiny HTTP/1.1 server on 127.0.0.1 (plain tokio) that records what reaches it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecs_client::{
    ClientConfig, Credentials, DeleteInstance, EcsClient, EcsError, ErrorClass, ErrorKind,
    RetryConfig, SigningMethod, StopInstance, TagInstance, UntagInstance,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REGION: &str = "cn-hangzhou";
const BOTH: [SigningMethod; 2] = [SigningMethod::Acs3HmacSha256, SigningMethod::HmacSha1];
const MIB: u64 = 1 << 20;

/// What the server does with every request.
#[derive(Clone)]
enum Behaviour {
    /// One complete answer.
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// `Content-Length: total`, then one byte every `every`.
    Drip { every: Duration, total: usize },
    /// `status`, then `total` bytes as fast as the client takes them; with `Content-Length`
    /// or delimited by closing the connection.
    Flood {
        status: u16,
        total: u64,
        content_length: bool,
    },
    /// Reads the request, then resets the connection after sending `partial` (may be empty).
    Reset { partial: &'static str },
}

struct Server {
    addr: SocketAddr,
    /// Request heads, in arrival order.
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    /// Body bytes the server managed to write (floods and drips).
    written: Arc<AtomicU64>,
    /// A flood stopped because the client closed the connection.
    closed_by_client: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let closed_by_client = Arc::new(AtomicBool::new(false));
        let task = {
            let (requests, connections, written, closed) = (
                requests.clone(),
                connections.clone(),
                written.clone(),
                closed_by_client.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (behaviour, requests, written, closed) = (
                        behaviour.clone(),
                        requests.clone(),
                        written.clone(),
                        closed.clone(),
                    );
                    tokio::spawn(async move {
                        serve(stream, behaviour, requests, written, closed).await;
                    });
                }
            })
        };
        Self {
            addr,
            requests,
            connections,
            written,
            closed_by_client,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    requests: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
) {
    // One request per connection (the answer says `Connection: close`).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    match behaviour {
        Behaviour::Respond {
            status,
            headers,
            body,
        } => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Drip { every, total } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\
                 Connection: close\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..total {
                tokio::time::sleep(every).await;
                if stream.write_all(b" ").await.is_err() {
                    closed.store(true, Ordering::SeqCst);
                    return;
                }
                written.fetch_add(1, Ordering::SeqCst);
            }
        }
        Behaviour::Flood {
            status,
            total,
            content_length,
        } => {
            let length = if content_length {
                format!("Content-Length: {total}\r\n")
            } else {
                String::new()
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{length}\
                 Connection: close\r\n\r\n{{\"RequestId\":\""
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < total {
                if stream.write_all(&chunk).await.is_err() {
                    closed.store(true, Ordering::SeqCst);
                    return;
                }
                sent += chunk.len() as u64;
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Behaviour::Reset { partial } => {
            if !partial.is_empty() {
                let _ = stream.write_all(partial.as_bytes()).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }
}

fn json(status: u16, body: impl Into<Vec<u8>>) -> Behaviour {
    Behaviour::Respond {
        status,
        headers: vec![("Content-Type", "application/json".into())],
        body: body.into(),
    }
}

fn creds() -> Credentials {
    Credentials::new("LTAI5tHostileTestKey", "HostileTestSecret", None)
}

fn config(server: &Server, signing: SigningMethod) -> ClientConfig {
    ClientConfig {
        endpoint_override: Some(server.endpoint()),
        signing,
        retry: RetryConfig {
            base_delay: Duration::from_millis(10),
            throttled_base_delay: Duration::from_millis(10),
            ..RetryConfig::default()
        },
        batch_window: Duration::from_millis(5),
        ..ClientConfig::default()
    }
}

fn client(server: &Server) -> EcsClient {
    EcsClient::new(config(server, SigningMethod::default())).unwrap()
}

fn delete() -> DeleteInstance {
    DeleteInstance {
        instance_id: "i-hostile0001".into(),
        ..Default::default()
    }
}

fn stop() -> StopInstance {
    StopInstance {
        instance_id: "i-hostile0001".into(),
        ..Default::default()
    }
}

/// Every text of an error is one bounded, printable line.
fn assert_clean(err: &EcsError) {
    let shown = err.to_string();
    for text in [
        Some(err.message()),
        err.code(),
        err.request_id(),
        err.recommend(),
        Some(shown.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            !text.chars().any(char::is_control),
            "control character in {text:?}"
        );
        assert!(text.len() <= 1400, "{} bytes", text.len());
    }
}

#[tokio::test]
async fn redirects_are_errors_and_the_signed_request_never_reaches_the_target() {
    let target = Server::start(json(200, r#"{"RequestId":"FAKE-ACCEPTED"}"#)).await;
    for status in [301u16, 302, 303, 307, 308] {
        let location = format!(
            "http://{}/?Action=DeleteInstance&Signature=c2lnbmF0dXJl&AccessKeyId=LTAI5t",
            target.addr
        );
        let redirector = Server::start(Behaviour::Respond {
            status,
            headers: vec![("Location", location)],
            body: b"moved".to_vec(),
        })
        .await;
        for signing in BOTH {
            let c = EcsClient::new(config(&redirector, signing)).unwrap();
            let before = redirector.request_count();
            let errors = [
                c.delete_instance(REGION, &creds(), &delete())
                    .await
                    .unwrap_err(),
                c.stop_instance(REGION, &creds(), &stop())
                    .await
                    .unwrap_err(),
                c.describe_instances(REGION, &creds(), &["i-hostile0001".into()])
                    .await
                    .unwrap_err(),
                c.lookup_instance(REGION, &creds(), "i-hostile0001")
                    .await
                    .unwrap_err(),
            ];
            for err in &errors {
                assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
                assert_eq!(err.class(), ErrorClass::Unknown, "{err}");
                assert_eq!(err.http_status(), Some(status));
                let text = err.to_string();
                assert!(text.contains(&format!("HTTP {status} redirect")), "{text}");
                assert!(
                    text.contains(&format!("host `{}`", target.addr)),
                    "names the Location host: {text}"
                );
                assert!(
                    !text.contains("Signature") && !text.contains("AccessKeyId"),
                    "never the query: {text}"
                );
                assert_clean(err);
            }
            // One request per call: a redirect is not retried either.
            assert_eq!(redirector.request_count() - before, 4, "{signing:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the redirect target was contacted"
    );
}

#[tokio::test]
async fn a_relative_redirect_names_the_same_host() {
    let server = Server::start(Behaviour::Respond {
        status: 302,
        headers: vec![("Location", "/login?next=%2F&Signature=abc".into())],
        body: vec![],
    })
    .await;
    let err = client(&server)
        .delete_instance(REGION, &creds(), &delete())
        .await
        .unwrap_err();
    assert!(
        err.message().contains(&format!("host `{}`", server.addr)),
        "{err}"
    );
    assert!(!err.message().contains("Signature"), "{err}");
}

#[tokio::test]
async fn a_huge_success_body_fails_fast_without_being_read() {
    for content_length in [false, true] {
        let server = Server::start(Behaviour::Flood {
            status: 200,
            total: 200 * MIB,
            content_length,
        })
        .await;
        let c = EcsClient::new(ClientConfig {
            retry: RetryConfig {
                max_attempts: 1,
                ..RetryConfig::default()
            },
            ..config(&server, SigningMethod::default())
        })
        .unwrap();
        let started = Instant::now();
        let err = c
            .describe_instances(REGION, &creds(), &["i-hostile0001".into()])
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
        assert_eq!(err.class(), ErrorClass::Unknown);
        assert!(
            err.message()
                .contains("larger than the 4 MiB limit for a response body"),
            "{err}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        // The client stopped reading and closed the connection: the server's writes fail long
        // before the 200 MiB are out (socket buffers hold a few MiB at most).
        wait_until(|| server.closed_by_client.load(Ordering::SeqCst)).await;
        let written = server.written.load(Ordering::SeqCst);
        assert!(
            written < 40 * MIB,
            "the server wrote {} MiB (Content-Length: {content_length})",
            written / MIB
        );
    }
}

#[tokio::test]
async fn a_configured_body_limit_is_named_in_the_error() {
    let server = Server::start(Behaviour::Flood {
        status: 200,
        total: 10 * MIB,
        content_length: false,
    })
    .await;
    let c = EcsClient::new(ClientConfig {
        max_body_bytes: 64 * 1024,
        ..config(&server, SigningMethod::default())
    })
    .unwrap();
    let err = c
        .delete_instance(REGION, &creds(), &delete())
        .await
        .unwrap_err();
    assert!(err.message().contains("the 64 KiB limit"), "{err}");
}

#[tokio::test]
async fn a_huge_error_body_is_read_only_in_part() {
    let server = Server::start(Behaviour::Flood {
        status: 500,
        total: 100 * MIB,
        content_length: false,
    })
    .await;
    let started = Instant::now();
    let err = client(&server)
        .stop_instance(REGION, &creds(), &stop())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(
        err.message()
            .starts_with("a body that is not an API answer: \"{\"RequestId\":\"xxx")
    );
    assert_clean(&err);
    wait_until(|| server.closed_by_client.load(Ordering::SeqCst)).await;
    assert!(server.written.load(Ordering::SeqCst) < 40 * MIB);
    // A mutating call is not repeated after the server saw it.
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_dripping_server_fails_the_call_at_the_attempt_deadline() {
    let server = Server::start(Behaviour::Drip {
        every: Duration::from_millis(100),
        total: 100_000,
    })
    .await;
    let c = EcsClient::new(ClientConfig {
        // The read timeout never fires: a byte arrives every 100 ms.
        read_timeout: Duration::from_secs(5),
        attempt_deadline: Duration::from_secs(1),
        ..config(&server, SigningMethod::HmacSha1)
    })
    .unwrap();
    for action in ["DescribeInstances", "DeleteInstance"] {
        let before = server.request_count();
        let started = Instant::now();
        let err = match action {
            "DescribeInstances" => c
                .describe_instances(REGION, &creds(), &["i-hostile0001".into()])
                .await
                .unwrap_err(),
            _ => c
                .delete_instance(REGION, &creds(), &delete())
                .await
                .unwrap_err(),
        };
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(err.message().contains("attempt deadline of 1 s"), "{err}");
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(3),
            "{action} took {took:?}"
        );
        // No retry once the deadline is spent, not even for a read-only call.
        assert_eq!(server.request_count() - before, 1, "{action}");
    }
}

#[tokio::test]
async fn a_batch_stuck_on_a_slow_call_answers_every_waiter_at_the_deadline() {
    let server = Server::start(Behaviour::Drip {
        every: Duration::from_millis(100),
        total: 100_000,
    })
    .await;
    let c = EcsClient::new(ClientConfig {
        read_timeout: Duration::from_secs(5),
        attempt_deadline: Duration::from_secs(1),
        batch_window: Duration::from_millis(50),
        ..config(&server, SigningMethod::default())
    })
    .unwrap();
    let started = Instant::now();
    let lookups: Vec<_> = (0..20)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                let result = c
                    .lookup_instance(REGION, &creds(), &format!("i-hostile{n:04}"))
                    .await;
                (result, started.elapsed())
            })
        })
        .collect();
    for lookup in lookups {
        let (result, took) = lookup.await.unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(took < Duration::from_secs(3), "a waiter took {took:?}");
    }
    assert_eq!(server.request_count(), 1, "the lookups shared one call");
}

#[tokio::test]
async fn reset_connections_are_transport_errors() {
    for partial in [
        "",
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"Request",
    ] {
        let server = Server::start(Behaviour::Reset { partial }).await;
        let err = client(&server)
            .delete_instance(REGION, &creds(), &delete())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(err.outcome_unknown(), "the server had the request: {err}");
        assert_clean(&err);
        assert_eq!(server.request_count(), 1, "a mutation is not repeated");
        let err = client(&server)
            .describe_instances(REGION, &creds(), &["i-hostile0001".into()])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    }
}

#[tokio::test]
async fn compressed_bodies_are_not_decompressed() {
    // The start of a gzip stream; were it decompressed, it could expand without bound.
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03];
    gzip.extend(std::iter::repeat_n(0u8, 1000));
    let server = Server::start(Behaviour::Respond {
        status: 200,
        headers: vec![
            ("Content-Encoding", "gzip".into()),
            ("Content-Type", "application/json".into()),
        ],
        body: gzip,
    })
    .await;
    let err = client(&server)
        .lookup_instance(REGION, &creds(), "i-hostile0001")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
    assert_clean(&err);
    let head = server.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(!head.contains("accept-encoding: gzip"), "{head}");
}

#[tokio::test]
async fn answers_of_the_wrong_shape_are_errors_never_absences() {
    let bodies: [&[u8]; 9] = [
        b"{}",
        br#"{"RequestId":"x"}"#,
        b"[]",
        br#"[{"RequestId":"x","Instances":{"Instance":[]}}]"#,
        br#"{"RequestId":"x","Instances":{}}"#,
        br#"{"RequestId":"x","TotalCount":"1","Instances":{"Instance":[]}}"#,
        br#"{"Instances":{"Instance":[]}}"#,
        b"<DescribeInstancesResponse><RequestId>x</RequestId><Instances></Instances></DescribeInstancesResponse>",
        b"",
    ];
    for body in bodies {
        let server = Server::start(json(200, body)).await;
        let shown = String::from_utf8_lossy(body);
        let c = client(&server);
        let err = c
            .lookup_instance(REGION, &creds(), "i-hostile0001")
            .await
            .expect_err(&shown);
        assert_eq!(err.kind(), ErrorKind::InvalidBody, "{shown}: {err}");
        assert_eq!(err.class(), ErrorClass::Unknown, "{shown}: {err}");
        assert_eq!(err.http_status(), Some(200));
        assert_clean(&err);
        c.describe_instances(REGION, &creds(), &["i-hostile0001".into()])
            .await
            .expect_err(&shown);
        // Not retried: an Unknown answer is not transient.
        assert_eq!(server.request_count(), 2, "{shown}");
    }
    for body in [
        &b"{}"[..],
        b"[]",
        br#"{"RequestId":""}"#,
        b"<R><RequestId>x</RequestId></R>",
    ] {
        let server = Server::start(json(200, body)).await;
        let c = client(&server);
        let shown = String::from_utf8_lossy(body);
        let errors = [
            c.delete_instance(REGION, &creds(), &delete())
                .await
                .unwrap_err(),
            c.stop_instance(REGION, &creds(), &stop())
                .await
                .unwrap_err(),
            c.tag_instance(
                &creds(),
                &TagInstance {
                    region_id: REGION.into(),
                    instance_id: "i-hostile0001".into(),
                    tags: [("k".to_string(), "v".to_string())].into(),
                },
            )
            .await
            .unwrap_err(),
            c.untag_instance(
                &creds(),
                &UntagInstance {
                    region_id: REGION.into(),
                    instance_id: "i-hostile0001".into(),
                    keys: vec!["k".into()],
                },
            )
            .await
            .unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidBody, "{shown}: {err}");
            assert_eq!(err.class(), ErrorClass::Unknown, "{shown}: {err}");
        }
    }
}

#[tokio::test]
async fn an_instance_listed_twice_counts_once() {
    let server = Server::start(json(
        200,
        r#"{"RequestId":"R","TotalCount":2,"Instances":{"Instance":[
            {"InstanceId":"i-mine00001","Status":"Stopped"},
            {"InstanceId":"i-mine00001","Status":"Running"}]}}"#,
    ))
    .await;
    let found = client(&server)
        .describe_instances(REGION, &creds(), &["i-mine00001".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance_id, "i-mine00001");
    assert_eq!(
        found[0].status.as_str(),
        "Stopped",
        "the first listing counts"
    );
}

#[tokio::test]
async fn an_instance_that_was_not_asked_for_fails_the_call_and_its_whole_batch() {
    // An extra instance; the asked ID re-cased; the asked ID with a trailing space. Read as
    // "i-mine00001 is not listed", each would report the instance absent.
    let cases: [(&[&str], &str); 4] = [
        (&["i-mine00001", "i-other0001"], r#""i-other0001""#),
        (&["I-MINE00001"], r#""I-MINE00001""#),
        (&["i-MINE00001"], r#""i-MINE00001""#),
        (&["i-mine00001 "], r#""i-mine00001 ""#),
    ];
    for (listed, quoted) in cases {
        let instances: Vec<_> = listed
            .iter()
            .map(|id| serde_json::json!({"InstanceId": id, "Status": "Running"}))
            .collect();
        let body = serde_json::json!({
            "RequestId": "R", "TotalCount": instances.len(), "Instances": {"Instance": instances},
        });
        let server = Server::start(json(200, body.to_string())).await;
        let c = client(&server);
        let check = |err: &EcsError| {
            assert_eq!(err.kind(), ErrorKind::InvalidBody, "{listed:?}: {err}");
            assert_eq!(err.class(), ErrorClass::Unknown, "{listed:?}: {err}");
            assert_eq!(err.http_status(), Some(200));
            assert_eq!(
                err.message(),
                format!("DescribeInstances listed instance {quoted} that was not asked for")
            );
            assert_clean(err);
        };
        let err = c
            .describe_instances(REGION, &creds(), &["i-mine00001".into()])
            .await
            .unwrap_err();
        check(&err);
        // Both lookups of the batch get the error: the ID the answer lists and the one it
        // does not.
        let creds = creds();
        let (mine, absent) = tokio::join!(
            c.lookup_instance(REGION, &creds, "i-mine00001"),
            c.lookup_instance(REGION, &creds, "i-absent0001"),
        );
        check(&mine.unwrap_err());
        check(&absent.unwrap_err());
        // Not retried (the answer is not transient); the two lookups shared one call.
        assert_eq!(server.request_count(), 2, "{listed:?}");
    }

    // A full page of strangers and a huge TotalCount: one call, an error, no endless paging.
    let strangers: Vec<_> = (0..100)
        .map(|n| serde_json::json!({"InstanceId": format!("i-stranger{n:03}")}))
        .collect();
    let body = serde_json::json!({
        "RequestId": "R", "TotalCount": 1_000_000, "Instances": {"Instance": strangers},
    });
    let server = Server::start(json(200, body.to_string())).await;
    let err = client(&server)
        .describe_instances(REGION, &creds(), &["i-mine00001".into()])
        .await
        .unwrap_err();
    assert!(err.message().contains(r#""i-stranger000""#), "{err}");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn error_texts_are_cleaned_and_bounded() {
    // Fits the 64 KiB error read: parsed, then cleaned and cut.
    let message = format!(
        "line one\r\nINFO forged \u{7f} \u{1b}[31mred\u{1b}[0m {}",
        "m".repeat(60_000)
    );
    let body = serde_json::json!({
        "Code": "Bad Code/ü",
        "Message": message,
        "RequestId": "R\r\n1",
        "Recommend": "https://x/\u{1b}]0;t\u{7}y",
    })
    .to_string();
    let server = Server::start(json(400, body)).await;
    let err = client(&server)
        .delete_instance(REGION, &creds(), &delete())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Api);
    assert_eq!(err.code(), Some("InvalidErrorCode"));
    assert_eq!(err.class(), ErrorClass::Unknown);
    assert!(
        err.message().starts_with(
            "error code not of the documented form: \"Bad Code/ü\": line one INFO forged red mmm"
        ),
        "{}",
        err.message()
    );
    assert!(err.message().len() <= 1024);
    assert_eq!(err.request_id(), Some("R 1"));
    assert_eq!(err.recommend(), Some("https://x/ y"));
    assert_clean(&err);

    // 1 MiB: more than is read of an error body, so it is no API error, just a clean excerpt.
    let body = serde_json::json!({
        "Code": "Throttling.User",
        "Message": format!("\u{7f}{}", "\r\n".repeat(1 << 19)),
    })
    .to_string();
    let server = Server::start(json(503, body)).await;
    let err = client(&server)
        .delete_instance(REGION, &creds(), &delete())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_clean(&err);
}

#[tokio::test]
async fn html_and_invalid_json_bodies_are_clear_errors() {
    for (status, body, expected) in [
        (
            502u16,
            &b"<html><body>Bad Gateway</body></html>"[..],
            ErrorClass::Transient,
        ),
        (200, b"{\"RequestId\":", ErrorClass::Unknown),
        (403, b"<html>captive portal</html>", ErrorClass::Unknown),
    ] {
        let server = Server::start(Behaviour::Respond {
            status,
            headers: vec![("Content-Type", "text/html".into())],
            body: body.to_vec(),
        })
        .await;
        let err = client(&server)
            .delete_instance(REGION, &creds(), &delete())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidBody, "{err}");
        assert_eq!(err.class(), expected, "{err}");
        assert!(
            err.to_string().ends_with(&format!("(HTTP {status})")),
            "{err}"
        );
    }
}

async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 5 s");
}
