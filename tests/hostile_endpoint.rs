//! The real controller binary against an ECS endpoint that answers badly (issue 15): a tiny
//! HTTP/1.1 server in this test answers like ECS until it is told to misbehave, one way at a
//! time — an HTML 502 page, invalid JSON, `{}`, `{"RequestId":"x"}`, a 200 MiB body streamed
//! (never held by the server), a gzip bomb, one byte a second, reset connections, a redirect to
//! another local port, an error with a 1 MiB message, an error full of control characters,
//! `InvalidInstanceId.NotFound` from `DescribeInstances`, and `DescribeInstances` answers that
//! list an instance nobody asked for or the asked IDs re-cased (the asked ID then "not listed":
//! the instance would look gone) — while EcsInstance resources are being deleted against the
//! real test control plane.
//!
//! For each behaviour it asserts: the controller process stays up with a bounded RSS; every
//! deleting resource keeps its finalizer and no release is recorded (nothing ever reaches the
//! redirect target); the status says what went wrong, bounded and clean, with a Warning event;
//! the AccessKeySecret appears nowhere (log, events, status). Then the endpoint behaves again and
//! every resource is released normally: one accepted `DeleteInstance` each, then the finalizer
//! goes once the instance is no longer listed. A table of the figures is printed at the end.

mod support;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, find},
    reasons::RECHECK_ANNOTATION,
    resource::{FINALIZER, OWNER_UID_TAG},
};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use support::Harness;
use testkit::sim::EcsSim;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The controller's credentials. The secret must never show up anywhere.
const ACCESS_KEY_ID: &str = "LTAI5tHostileTestKey";
const ACCESS_KEY_SECRET: &str = "hostileSecret-Zq7Wx3Pv9Ku2";
const REGION: &str = "cn-hangzhou";
const MIB: u64 = 1 << 20;
/// The controller's RSS must stay below this through every behaviour (200 MiB bodies included).
const RSS_LIMIT: u64 = 150 * MIB;
/// The huge body: 200 MiB, written in chunks, delimited by closing the connection.
const HUGE_BODY_BYTES: u64 = 200 * MIB;
/// Length-258 back-references in the gzip bomb: ~2.1 MB compressed, ~335 MB uncompressed.
const GZIP_REPEATS: usize = 1_300_000;
/// The longest any one behaviour may take to show in every resource's status.
const PHASE_TIMEOUT: Duration = Duration::from_secs(25);

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    Html502,
    InvalidJson,
    EmptyObject,
    RequestIdOnly,
    HugeBody,
    GzipBomb,
    SlowDrip,
    Reset,
    Redirect,
    HugeMessage,
    ControlChars,
    DescribeNotFound,
    /// `DescribeInstances` lists the asked instances and [`STRANGER`], which nobody asked for.
    DescribeExtraId,
    /// `DescribeInstances` lists the asked instances with their IDs in upper case.
    DescribeRecasedIds,
}

/// The instance the `DescribeExtraId` answer adds.
const STRANGER: &str = "i-hostilestranger";

/// Which call must fail with the hostile answer (every other call is answered like ECS would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `DescribeInstances` — and `DeleteInstance` too: a pass that observed the instance just
    /// before the switch must not get its release accepted.
    Describe,
    /// `DeleteInstance` only (`DescribeInstances` lists the instance Stopped and ours).
    Delete,
}

impl Target {
    /// The call whose error the status must show.
    fn action(self) -> &'static str {
        match self {
            Target::Describe => "DescribeInstances",
            Target::Delete => "DeleteInstance",
        }
    }

    fn covers(self, action: &str) -> bool {
        action == "DeleteInstance" || (self == Target::Describe && action == "DescribeInstances")
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct FakeInstance {
    tags: BTreeMap<String, String>,
    deleted: bool,
}

#[derive(Default)]
struct State {
    mode: Option<(Hostile, Target)>,
    instances: BTreeMap<String, FakeInstance>,
    /// `(action, hostile answer?)` of every request, in arrival order.
    calls: Vec<(String, bool)>,
    /// `(instance, RequestId)` of every accepted `DeleteInstance`.
    accepted_deletes: Vec<(String, String)>,
    next_request: u64,
    /// Request heads that carried the AccessKeySecret (never expected: it is only a key).
    heads_with_secret: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Body bytes the server wrote for huge bodies and drips.
    written: AtomicU64,
    redirect_target: SocketAddr,
    gzip_bomb: Vec<u8>,
}

struct HostileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Connections the redirect target ever accepted.
    redirect_hits: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl HostileServer {
    async fn start(instance_ids: &[String]) -> Self {
        // The redirect target: counts connections; were one ever to arrive, it would "accept"
        // the release, so a followed redirect could not go unnoticed.
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let redirect_target = target.local_addr().expect("address");
        let redirect_hits = Arc::new(AtomicUsize::new(0));
        let hits = redirect_hits.clone();
        let target_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = target.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if read_head(&mut stream).await.is_some() {
                        let body = r#"{"RequestId":"FAKE-ACCEPTED-BY-REDIRECT-TARGET"}"#;
                        respond(&mut stream, 200, "application/json", &[], body.as_bytes()).await;
                    }
                });
            }
        });

        let (gzip_bomb, expanded) = gzip_bomb(GZIP_REPEATS);
        assert!(expanded > 300 * MIB && (gzip_bomb.len() as u64) < 3 * MIB);
        let state = State {
            instances: instance_ids
                .iter()
                .map(|id| (id.clone(), FakeInstance::default()))
                .collect(),
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            written: AtomicU64::new(0),
            redirect_target,
            gzip_bomb,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        Self {
            addr,
            shared,
            redirect_hits,
            tasks: vec![target_task, task],
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_mode(&self, mode: Option<(Hostile, Target)>) {
        self.state().mode = mode;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("server state")
    }

    fn written(&self) -> u64 {
        self.shared.written.load(Ordering::SeqCst)
    }
}

/// Reads one request head (the controller's requests have empty bodies).
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(action, query parameters)` of a request head; the action is V3's `x-acs-action` header or
/// V1's `Action` parameter.
fn parse_request(head: &str) -> (String, BTreeMap<String, String>, String) {
    let first = head.lines().next().unwrap_or_default();
    let target = first.split(' ').nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    let header = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-acs-action")
            .then(|| value.trim().to_string())
    });
    let action = header
        .or_else(|| params.get("Action").cloned())
        .unwrap_or_default();
    (action, params, query.to_string())
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let (action, params, query) = parse_request(&head);
    let (hostile, request_id) = {
        let mut state = shared.state.lock().expect("server state");
        if head.contains(ACCESS_KEY_SECRET) {
            state.heads_with_secret += 1;
        }
        let hostile = state
            .mode
            .filter(|(_, target)| target.covers(&action))
            .map(|(hostile, _)| hostile);
        state.calls.push((action.clone(), hostile.is_some()));
        state.next_request += 1;
        (hostile, format!("HOSTILE-TEST-{:06}", state.next_request))
    };
    match hostile {
        None => {
            let (status, body) = answer_like_ecs(&shared, &action, &params, &request_id);
            respond(
                &mut stream,
                status,
                "application/json;charset=utf-8",
                &[],
                body.to_string().as_bytes(),
            )
            .await;
        }
        Some(hostile) => {
            let asked = Asked {
                action: &action,
                params: &params,
                query: &query,
            };
            misbehave(stream, &shared, hostile, &request_id, asked).await;
        }
    }
}

/// What ECS would answer (no signature check): instances are Stopped; tags are kept.
fn answer_like_ecs(
    shared: &Shared,
    action: &str,
    params: &BTreeMap<String, String>,
    request_id: &str,
) -> (u16, Value) {
    let mut state = shared.state.lock().expect("server state");
    let not_found = |id: &str| {
        (
            404,
            json!({
                "RequestId": request_id,
                "Code": "InvalidInstanceId.NotFound",
                "Message": format!("The specified InstanceId does not exist ({id})."),
            }),
        )
    };
    match action {
        "DescribeInstances" => {
            let asked: Vec<String> = params
                .get("InstanceIds")
                .and_then(|ids| serde_json::from_str(ids).ok())
                .unwrap_or_default();
            let listed: Vec<Value> = asked
                .iter()
                .filter_map(|id| {
                    let instance = state.instances.get(id).filter(|i| !i.deleted)?;
                    let tags: Vec<Value> = instance
                        .tags
                        .iter()
                        .map(|(k, v)| json!({ "TagKey": k, "TagValue": v }))
                        .collect();
                    Some(json!({
                        "InstanceId": id,
                        "Status": "Stopped",
                        "RegionId": REGION,
                        "ZoneId": "cn-hangzhou-h",
                        "InstanceChargeType": "PostPaid",
                        "DeletionProtection": false,
                        "OperationLocks": { "LockReason": [] },
                        "Tags": { "Tag": tags },
                    }))
                })
                .collect();
            (
                200,
                json!({
                    "RequestId": request_id,
                    "TotalCount": listed.len(),
                    "PageNumber": 1,
                    "PageSize": 100,
                    "Instances": { "Instance": listed },
                }),
            )
        }
        "TagResources" | "UntagResources" => {
            // Up to 50 instances per call (ResourceId.1, .2, ...), one tag set for all.
            let ids: Vec<String> = (1..)
                .map_while(|n| params.get(&format!("ResourceId.{n}")).cloned())
                .collect();
            if let Some(missing) = ids
                .iter()
                .find(|id| state.instances.get(*id).is_none_or(|i| i.deleted))
            {
                return not_found(missing);
            }
            for id in &ids {
                let instance = state.instances.get_mut(id).expect("found above");
                for n in 1.. {
                    if action == "TagResources" {
                        let Some(key) = params.get(&format!("Tag.{n}.Key")) else {
                            break;
                        };
                        let value = params.get(&format!("Tag.{n}.Value")).cloned();
                        instance.tags.insert(key.clone(), value.unwrap_or_default());
                    } else {
                        let Some(key) = params.get(&format!("TagKey.{n}")) else {
                            break;
                        };
                        instance.tags.remove(key);
                    }
                }
            }
            (200, json!({ "RequestId": request_id }))
        }
        "DeleteInstance" | "StopInstance" => {
            let id = params.get("InstanceId").cloned().unwrap_or_default();
            let Some(instance) = state.instances.get_mut(&id).filter(|i| !i.deleted) else {
                return not_found(&id);
            };
            if action == "DeleteInstance" {
                instance.deleted = true;
                state.accepted_deletes.push((id, request_id.to_string()));
            }
            (200, json!({ "RequestId": request_id }))
        }
        other => (
            400,
            json!({
                "RequestId": request_id,
                "Code": "InvalidAction.NotFound",
                "Message": format!("The specified action {other} is not supported."),
            }),
        ),
    }
}

/// The request a hostile answer answers.
struct Asked<'a> {
    action: &'a str,
    params: &'a BTreeMap<String, String>,
    /// The raw query string, as signed.
    query: &'a str,
}

async fn misbehave(
    mut stream: TcpStream,
    shared: &Shared,
    hostile: Hostile,
    request_id: &str,
    asked: Asked<'_>,
) {
    let json_type = "application/json;charset=utf-8";
    match hostile {
        Hostile::Html502 => {
            let page = "<html><head><title>502 hostile-gateway says Bad Gateway</title></head>\
                        <body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>";
            respond(&mut stream, 502, "text/html", &[], page.as_bytes()).await;
        }
        Hostile::InvalidJson => {
            let body = format!(r#"{{"RequestId":"{request_id}","Instances":{{"Instance":[{{"#);
            respond(&mut stream, 200, json_type, &[], body.as_bytes()).await;
        }
        Hostile::EmptyObject => respond(&mut stream, 200, json_type, &[], b"{}").await,
        Hostile::RequestIdOnly => {
            respond(&mut stream, 200, json_type, &[], br#"{"RequestId":"x"}"#).await;
        }
        Hostile::HugeBody => {
            // No Content-Length: the body ends when the connection closes, so only reading
            // (and stopping) tells the client how big it is.
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {json_type}\r\nConnection: close\r\n\r\n\
                 {{\"RequestId\":\"{request_id}\",\"Padding\":\""
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < HUGE_BODY_BYTES {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len() as u64;
                shared
                    .written
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            // Never closed: read to the end, it is still not an answer.
            let _ = stream.shutdown().await;
        }
        Hostile::GzipBomb => {
            respond(
                &mut stream,
                200,
                json_type,
                &[("Content-Encoding", "gzip".into())],
                &shared.gzip_bomb,
            )
            .await;
        }
        Hostile::SlowDrip => {
            let total = 10_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {json_type}\r\nContent-Length: {total}\r\n\
                 Connection: close\r\n\r\n{{"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 1..total {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
                shared.written.fetch_add(1, Ordering::SeqCst);
            }
        }
        Hostile::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Hostile::Redirect => {
            // The whole signed query goes along, as a hostile proxy would send it on.
            let location = format!("http://{}/?{}", shared.redirect_target, asked.query);
            respond(
                &mut stream,
                302,
                "text/html",
                &[("Location", location)],
                b"<html>moved</html>",
            )
            .await;
        }
        Hostile::HugeMessage => {
            let body = json!({
                "RequestId": request_id,
                "Code": "Hostile.HugeMessage",
                "Message": "M".repeat(MIB as usize),
            });
            respond(
                &mut stream,
                400,
                json_type,
                &[],
                body.to_string().as_bytes(),
            )
            .await;
        }
        Hostile::ControlChars => {
            let body = json!({
                "RequestId": format!("{request_id}\r\n\u{1b}[31mred"),
                "Code": "Hostile\u{1b}[31m.Code\r\nINFO injected\u{7f}",
                "Message": "first line\r\n2026-01-01T00:00:00.000000Z ERROR forged log line \
                            \u{1b}[2J\u{1b}]0;pwned\u{7} del\u{7f} nul\u{0} nel\u{85} ls\u{2028} \
                            bidi\u{202e}txet\u{202c} tab\tend\n{\"level\":\"ERROR\"}",
            });
            respond(
                &mut stream,
                400,
                json_type,
                &[],
                body.to_string().as_bytes(),
            )
            .await;
        }
        Hostile::DescribeNotFound => {
            let body = json!({
                "RequestId": request_id,
                "HostId": "ecs.aliyuncs.com",
                "Code": "InvalidInstanceId.NotFound",
                "Message": "The specified InstanceId does not exist.",
            });
            respond(
                &mut stream,
                404,
                json_type,
                &[],
                body.to_string().as_bytes(),
            )
            .await;
        }
        Hostile::DescribeExtraId | Hostile::DescribeRecasedIds
            if asked.action != "DescribeInstances" =>
        {
            // A release is refused outright: nothing is accepted, no outcome is left unknown.
            let body = json!({
                "RequestId": request_id,
                "Code": "IncorrectInstanceStatus",
                "Message": "The current status of the resource does not support this operation.",
            });
            respond(
                &mut stream,
                403,
                json_type,
                &[],
                body.to_string().as_bytes(),
            )
            .await;
        }
        Hostile::DescribeExtraId | Hostile::DescribeRecasedIds => {
            // The honest answer, then made wrong in a way its shape does not show.
            let (status, mut body) =
                answer_like_ecs(shared, asked.action, asked.params, request_id);
            let listed = body["Instances"]["Instance"]
                .as_array_mut()
                .expect("an instance list");
            if hostile == Hostile::DescribeExtraId {
                let mut stranger = listed.first().cloned().unwrap_or_else(|| json!({}));
                stranger["InstanceId"] = json!(STRANGER);
                listed.push(stranger);
            } else {
                for instance in listed.iter_mut() {
                    let id = instance["InstanceId"].as_str().unwrap_or_default();
                    instance["InstanceId"] = json!(id.to_uppercase());
                }
            }
            body["TotalCount"] = json!(listed.len());
            respond(
                &mut stream,
                status,
                json_type,
                &[],
                body.to_string().as_bytes(),
            )
            .await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gzip bomb: one deflate block with fixed Huffman codes, a literal 0 and then length-258,
// distance-1 back-references (13 bits for 258 bytes), with a correct CRC-32 and size.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    /// `n` bits of `value`, least significant first (deflate's order for header fields).
    fn put(&mut self, value: u32, n: u32) {
        self.acc |= u64::from(value) << self.bits;
        self.bits += n;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    /// A Huffman code of `n` bits, most significant first.
    fn code(&mut self, code: u32, n: u32) {
        self.put(code.reverse_bits() >> (32 - n), n);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// CRC-32 (gzip's) of `n` zero bytes, in O(log n): one zero byte is a linear map of the CRC
/// register, raised to the n-th power by squaring.
fn crc32_of_zeros(mut n: u64) -> u32 {
    fn apply(matrix: &[u32; 32], vector: u32) -> u32 {
        (0..32)
            .filter(|i| vector >> i & 1 == 1)
            .fold(0, |acc, i| acc ^ matrix[i])
    }
    let zero_byte = |mut register: u32| {
        for _ in 0..8 {
            register = if register & 1 == 1 {
                (register >> 1) ^ 0xEDB8_8320
            } else {
                register >> 1
            };
        }
        register
    };
    let mut power: [u32; 32] = std::array::from_fn(|i| zero_byte(1 << i));
    let mut register = 0xFFFF_FFFF;
    while n > 0 {
        if n & 1 == 1 {
            register = apply(&power, register);
        }
        let squared: [u32; 32] = std::array::from_fn(|i| apply(&power, power[i]));
        power = squared;
        n >>= 1;
    }
    register ^ 0xFFFF_FFFF
}

/// `(gzip bytes, uncompressed size)`.
fn gzip_bomb(repeats: usize) -> (Vec<u8>, u64) {
    let mut bits = BitWriter::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE 01: fixed Huffman codes
    bits.code(0x30, 8); // literal 0x00
    for _ in 0..repeats {
        bits.code(0xC5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
    }
    bits.code(0, 7); // end of block
    let size = 1 + 258 * repeats as u64;
    let mut gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gzip.extend(bits.finish());
    gzip.extend(crc32_of_zeros(size).to_le_bytes());
    gzip.extend((size as u32).to_le_bytes());
    (gzip, size)
}

// ---------------------------------------------------------------------------------------------
// Watching the controller
// ---------------------------------------------------------------------------------------------

fn rss_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples the controller's RSS every 20 ms and keeps the peak per phase.
struct RssSampler {
    phase: Arc<AtomicUsize>,
    peaks: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32, phases: usize) -> Self {
        let phase = Arc::new(AtomicUsize::new(0));
        let peaks = Arc::new(Mutex::new(vec![0; phases]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (phase, peaks, stop) = (phase.clone(), peaks.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(rss) = rss_bytes(pid, "VmRSS:") {
                        let mut peaks = peaks.lock().expect("peaks");
                        let slot = &mut peaks[phase.load(Ordering::SeqCst)];
                        *slot = (*slot).max(rss);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            phase,
            peaks,
            stop,
            thread: Some(thread),
        }
    }

    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    fn peak(&self, phase: usize) -> u64 {
        self.peaks.lock().expect("peaks")[phase]
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Characters that must never reach a status, an event or a log line from the cloud.
fn is_unclean(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Every string in the status is clean and bounded, and no secret or fake release is in it.
fn check_status(name: &str, resource: &EcsInstance) -> Result<(), String> {
    let Some(status) = &resource.status else {
        return Ok(());
    };
    let value = serde_json::to_value(status).expect("status serializes");
    let text = value.to_string();
    if text.contains(ACCESS_KEY_SECRET) {
        return Err(format!("{name}: the AccessKeySecret is in the status"));
    }
    if text.len() > 16 * 1024 {
        return Err(format!("{name}: a status of {} bytes", text.len()));
    }
    fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&value, &mut all);
    if let Some(bad) = all.iter().find(|s| s.chars().any(is_unclean)) {
        return Err(format!("{name}: unclean text in the status: {bad:?}"));
    }
    for condition in &status.conditions {
        if condition.message.len() > 4096 {
            return Err(format!(
                "{name}: condition {} message of {} bytes",
                condition.type_,
                condition.message.len()
            ));
        }
    }
    if let Some(error) = &status.last_error {
        if error.message.len() > 1100 {
            return Err(format!(
                "{name}: lastError.message of {} bytes",
                error.message.len()
            ));
        }
        let code_ok = error.code.as_deref().is_none_or(|code| {
            !code.is_empty()
                && code.len() <= 128
                && code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
        if !code_ok {
            return Err(format!("{name}: lastError.code {:?}", error.code));
        }
    }
    if let Some(release) = status.release.as_ref().and_then(|r| r.request_id.as_ref()) {
        return Err(format!(
            "{name}: a release was recorded (RequestId {release}) while the endpoint misbehaved"
        ));
    }
    Ok(())
}

fn ready(resource: &EcsInstance) -> Option<(String, String)> {
    let status = resource.status.as_ref()?;
    find(&status.conditions, READY).map(|c| (c.reason.clone(), c.message.clone()))
}

/// A behaviour to show to the controller and what the status must then say.
struct Phase {
    name: &'static str,
    hostile: Hostile,
    target: Target,
    reason: &'static str,
    /// Texts the Ready condition message (and the Warning event's note) must contain.
    markers: Vec<String>,
}

struct Outcome {
    name: &'static str,
    action: &'static str,
    reason: &'static str,
    to_error: Duration,
    peak_rss: u64,
    written: u64,
    calls: usize,
    message: String,
}

async fn annotate_all(h: &Harness, names: &[String], value: &str) {
    for name in names {
        let patch = json!({ "metadata": { "annotations": { RECHECK_ANNOTATION: value } } });
        h.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("annotate {name}: {e}"));
    }
}

async fn all_events(h: &Harness) -> Vec<Event> {
    Api::<Event>::namespaced(h.ns.client.clone(), &h.ns.name)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_endpoint_never_costs_a_finalizer_memory_or_a_secret() {
    let ns = testkit::test_namespace("hostile").await;
    let namespace = ns.name.clone();
    let names: Vec<String> = (0..3).map(|n| format!("web-{n}")).collect();
    let ids: Vec<String> = (0..3).map(|n| format!("i-hostile{n}")).collect();
    let server = HostileServer::start(&ids).await;
    let h = Harness::attached(ns, EcsSim::attach(&server.endpoint()));

    let plane = testkit::control_plane();
    let log = plane.run_dir.join("controller-hostile.log");
    let (mut child, _metrics, health) = support::spawn_controller_binary(
        &server.endpoint(),
        (ACCESS_KEY_ID, ACCESS_KEY_SECRET),
        &[
            "--ecs-call-deadline=5s",
            "--ecs-max-body-bytes=4194304",
            // A DeleteInstance whose outcome is unknown is sent again on the next look, so each
            // Delete phase meets its own misbehaviour.
            "--release-resend-after=1s",
            &format!("--namespaces={namespace}"),
        ],
        &log,
    );
    let pid = child.id();
    support::wait_ready(&health, &log).await;

    // Well-behaved first: every resource observed and its instance tagged as ours.
    for (name, id) in names.iter().zip(&ids) {
        h.create(name, id, json!({})).await;
    }
    for name in &names {
        h.wait_for_condition(name, READY, "True", "InstanceObserved")
            .await;
    }
    for (name, id) in names.iter().zip(&ids) {
        let resource = h.api.get(name).await.expect("get");
        let uid = resource.uid().expect("uid");
        // Its UID, or (tags asked for in quick succession share calls) the claim its status
        // records for its UID.
        let claim = resource
            .status
            .and_then(|s| s.instance?.claim)
            .filter(|claim| claim.uid == uid)
            .map(|claim| claim.value);
        let tag = server.state().instances[id]
            .tags
            .get(OWNER_UID_TAG)
            .cloned();
        assert!(
            tag.is_some() && (tag == Some(uid) || tag == claim),
            "{name}: the controller tags its instance ({tag:?})"
        );
    }

    let redirect_host = format!("host `{}`", server.shared.redirect_target);
    let phases = vec![
        Phase {
            name: "HTML 502 page",
            hostile: Hostile::Html502,
            target: Target::Describe,
            reason: "Retrying",
            markers: vec!["HTTP 502".into(), "hostile-gateway".into()],
        },
        Phase {
            name: "invalid JSON",
            hostile: Hostile::InvalidJson,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["not JSON".into()],
        },
        Phase {
            name: "{}",
            hostile: Hostile::EmptyObject,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["without a RequestId".into()],
        },
        Phase {
            name: "{\"RequestId\":\"x\"}",
            hostile: Hostile::RequestIdOnly,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["without an `Instances` object".into()],
        },
        Phase {
            name: "200 MiB body (x3)",
            hostile: Hostile::HugeBody,
            target: Target::Delete,
            // An unreadable 200: ECS may have released the instance.
            reason: "ReleaseOutcomeUnknown",
            markers: vec!["4 MiB limit".into()],
        },
        Phase {
            name: "gzip bomb (x3)",
            hostile: Hostile::GzipBomb,
            target: Target::Delete,
            // An unreadable 200: ECS may have released the instance.
            reason: "ReleaseOutcomeUnknown",
            markers: vec!["not JSON".into()],
        },
        Phase {
            name: "slow drip 1 B/s",
            hostile: Hostile::SlowDrip,
            target: Target::Describe,
            reason: "Retrying",
            markers: vec!["attempt deadline of 5 s".into()],
        },
        Phase {
            name: "connection reset",
            hostile: Hostile::Reset,
            target: Target::Describe,
            reason: "Retrying",
            markers: vec!["HTTP exchange failed".into()],
        },
        Phase {
            name: "connection reset",
            hostile: Hostile::Reset,
            target: Target::Delete,
            // Reset after sending: ECS may have released the instance.
            reason: "ReleaseOutcomeUnknown",
            markers: vec!["HTTP exchange failed".into()],
        },
        Phase {
            name: "302 redirect",
            hostile: Hostile::Redirect,
            target: Target::Delete,
            reason: "UnexpectedError",
            markers: vec!["HTTP 302 redirect".into(), redirect_host],
        },
        Phase {
            name: "1 MiB error message",
            hostile: Hostile::HugeMessage,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["Hostile.HugeMessage".into()],
        },
        Phase {
            name: "control chars/ANSI",
            hostile: Hostile::ControlChars,
            target: Target::Delete,
            reason: "UnexpectedError",
            markers: vec!["InvalidErrorCode".into(), "forged log line".into()],
        },
        Phase {
            name: "NotFound (Describe)",
            hostile: Hostile::DescribeNotFound,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["InvalidInstanceId.NotFound".into()],
        },
        Phase {
            name: "extra ID (Describe)",
            hostile: Hostile::DescribeExtraId,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["that was not asked for".into(), STRANGER.into()],
        },
        Phase {
            name: "re-cased ID (Describe)",
            hostile: Hostile::DescribeRecasedIds,
            target: Target::Describe,
            reason: "UnexpectedError",
            markers: vec!["that was not asked for".into(), "I-HOSTILE".into()],
        },
    ];

    let sampler = RssSampler::start(pid, phases.len() + 2);
    let mut outcomes = Vec::new();
    for (index, phase) in phases.iter().enumerate() {
        sampler.enter(index + 1);
        server.set_mode(Some((phase.hostile, phase.target)));
        let written_before = server.written();
        let calls_before = server.state().calls.len();
        let started = Instant::now();
        if index == 0 {
            // The deletions themselves meet the first misbehaving answer.
            for name in &names {
                h.delete(name).await;
            }
        }
        annotate_all(&h, &names, &format!("phase-{index}")).await;

        // Until every resource's status tells this phase's error: the process is up, every
        // resource still there with its finalizer, its status clean and bounded.
        let mut done: BTreeMap<String, Duration> = BTreeMap::new();
        let mut message = String::new();
        loop {
            if let Ok(Some(exit)) = child.try_wait() {
                panic!(
                    "[{}] the controller exited ({exit}); its log:\n{}",
                    phase.name,
                    log_tail(&log)
                );
            }
            let rss = sampler.peak(index + 1);
            assert!(
                rss < RSS_LIMIT,
                "[{}] the controller's RSS reached {:.1} MiB",
                phase.name,
                rss as f64 / MIB as f64
            );
            let listed = h.api.list(&ListParams::default()).await.expect("list");
            for name in &names {
                let Some(resource) = listed.items.iter().find(|r| r.name_any() == *name) else {
                    panic!(
                        "[{}] {name} is gone: its finalizer was removed while the endpoint \
                         misbehaved; log:\n{}",
                        phase.name,
                        log_tail(&log)
                    );
                };
                assert!(
                    resource.finalizers().iter().any(|f| f == FINALIZER),
                    "[{}] {name} lost its finalizer: {:#?}",
                    phase.name,
                    resource.status
                );
                assert!(resource.metadata.deletion_timestamp.is_some());
                if let Err(problem) = check_status(name, resource) {
                    panic!("[{}] {problem}", phase.name);
                }
                let (reason, text) = ready(resource).unwrap_or_default();
                let action_ok = resource
                    .status
                    .as_ref()
                    .and_then(|s| s.last_error.as_ref())
                    .is_some_and(|e| e.action == phase.target.action());
                if reason == phase.reason
                    && action_ok
                    && phase.markers.iter().all(|m| text.contains(m.as_str()))
                    && !done.contains_key(name)
                {
                    done.insert(name.clone(), started.elapsed());
                    message = text;
                }
            }
            if done.len() == names.len() {
                break;
            }
            if started.elapsed() > PHASE_TIMEOUT {
                let seen: Vec<_> = listed
                    .items
                    .iter()
                    .map(|r| {
                        (
                            r.name_any(),
                            ready(r),
                            r.status.as_ref().map(|s| &s.last_error),
                        )
                    })
                    .collect();
                panic!(
                    "[{}] not every status shows reason {} with {:?} from {} after {:?}: \
                     {seen:#?}\nlog:\n{}",
                    phase.name,
                    phase.reason,
                    phase.markers,
                    phase.target.action(),
                    PHASE_TIMEOUT,
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let to_error = done.values().copied().max().unwrap_or_default();

        // A Warning event with this phase's error, per resource.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = all_events(&h).await;
            let missing: Vec<&String> = names
                .iter()
                .filter(|name| {
                    !events.iter().any(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                            && e.type_.as_deref() == Some("Warning")
                            && e.reason.as_deref() == Some(phase.reason)
                            && e.note.as_deref().is_some_and(|note| {
                                phase.markers.iter().all(|m| note.contains(m.as_str()))
                            })
                    })
                })
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] no Warning event {} with {:?} for {missing:?}; events: {:#?}",
                phase.name,
                phase.reason,
                phase.markers,
                events
                    .iter()
                    .map(|e| (&e.regarding, &e.type_, &e.reason, &e.note))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let peak_rss = sampler.peak(index + 1);
        assert!(
            peak_rss < RSS_LIMIT,
            "[{}] the controller's RSS reached {:.1} MiB",
            phase.name,
            peak_rss as f64 / MIB as f64
        );
        outcomes.push(Outcome {
            name: phase.name,
            action: phase.target.action(),
            reason: phase.reason,
            to_error,
            peak_rss,
            written: server.written() - written_before,
            calls: server.state().calls.len() - calls_before,
            message,
        });
    }

    assert_eq!(
        server.redirect_hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed: a signed request reached the redirect target"
    );
    assert!(
        server.state().accepted_deletes.is_empty(),
        "a DeleteInstance was accepted while the endpoint misbehaved"
    );

    // Well-behaved again: every resource released normally.
    let last = phases.len() + 1;
    sampler.enter(last);
    server.set_mode(None);
    let released_from = Instant::now();
    annotate_all(&h, &names, "behaving").await;
    for name in &names {
        h.wait_gone(name).await;
    }
    let release_time = released_from.elapsed();
    {
        let state = server.state();
        for id in &ids {
            let accepted = state.accepted_deletes.iter().filter(|(a, _)| a == id);
            let accepted = accepted.count();
            assert_eq!(accepted, 1, "{id}: accepted DeleteInstance calls");
            assert!(state.instances[id].deleted);
        }
        assert_eq!(state.heads_with_secret, 0);
    }
    // The finalizer went only after the instance was no longer listed following this
    // resource's own accepted DeleteInstance: the Released event names its RequestId.
    let accepted = server.state().accepted_deletes.clone();
    for (name, id) in names.iter().zip(&ids) {
        let (_, request_id) = accepted.iter().find(|(a, _)| a == id).expect("accepted");
        let events = h.events(name).await;
        assert!(
            events
                .iter()
                .any(|(_, reason, _)| reason == "ReleaseRequested"),
            "{name}: {events:#?}"
        );
        let released = format!("DeleteInstance RequestId {request_id}");
        assert!(
            events.iter().any(|(type_, reason, note)| {
                type_ == "Normal" && reason == "Released" && note.contains(&released)
            }),
            "{name}: no Released event naming {request_id}: {events:#?}"
        );
    }
    assert_eq!(server.redirect_hits.load(Ordering::SeqCst), 0);
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the controller exited; log:\n{}",
        log_tail(&log)
    );
    let hwm = rss_bytes(pid, "VmHWM:").unwrap_or_default();
    let final_peak = sampler.peak(last);
    drop(sampler);

    // No secret anywhere; no forged or escaped log line.
    let events = all_events(&h).await;
    for event in &events {
        let note = event.note.clone().unwrap_or_default();
        assert!(
            !note.contains(ACCESS_KEY_SECRET),
            "secret in an event: {note}"
        );
        assert!(
            !note.chars().any(is_unclean),
            "unclean event note: {note:?}"
        );
        assert!(note.len() <= 1024 + 3, "event note of {} bytes", note.len());
    }
    let text = std::fs::read_to_string(&log).expect("controller log");
    assert!(
        !text.contains(ACCESS_KEY_SECRET),
        "the secret is in the log"
    );
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.as_bytes()[0].is_ascii_digit(),
            "a log line that is not the logger's (forged or split): {line:?}"
        );
        assert!(
            !line.chars().any(|c| c != '\t' && is_unclean(c)),
            "control characters in the log: {line:?}"
        );
        assert!(line.len() < 8 * 1024, "a log line of {} bytes", line.len());
    }
    let log_lines = text.lines().count();
    let forged_lines = text
        .lines()
        .filter(|l| l.contains("forged log line"))
        .count();
    assert!(
        hwm < RSS_LIMIT,
        "peak RSS {:.1} MiB",
        hwm as f64 / MIB as f64
    );

    let _ = child.kill();
    let _ = child.wait();

    let mut table = String::from(
        "\nhostile endpoint: the real controller binary, 3 deleting EcsInstances, \
         --ecs-call-deadline=5s --release-resend-after=1s\n",
    );
    let _ = writeln!(
        table,
        "{:<22} {:<18} {:<16} {:>9} {:>10} {:>12} {:>6}  status message (start)",
        "behaviour", "hostile call", "reason", "to error", "peak RSS", "server wrote", "calls"
    );
    for o in &outcomes {
        let written = match o.written {
            0 => "-".to_string(),
            n if n < MIB => format!("{n} B"),
            n => format!("{:.1} MiB", n as f64 / MIB as f64),
        };
        let start: String = o.message.chars().take(90).collect();
        let _ = writeln!(
            table,
            "{:<22} {:<18} {:<16} {:>7.1} s {:>6.1} MiB {:>12} {:>6}  {start}",
            o.name,
            o.action,
            o.reason,
            o.to_error.as_secs_f64(),
            o.peak_rss as f64 / MIB as f64,
            written,
            o.calls,
        );
    }
    let _ = writeln!(
        table,
        "{:<22} {:<18} {:<16} {:>7.1} s {:>6.1} MiB   \
         (all 3 released: 1 accepted DeleteInstance each)",
        "well-behaved again",
        "-",
        "Released",
        release_time.as_secs_f64(),
        final_peak as f64 / MIB as f64,
    );
    let _ = writeln!(
        table,
        "peak RSS over the whole run (VmHWM): {:.1} MiB (limit {} MiB); redirect target \
         connections: 0; gzip bomb: {} bytes -> {} MiB; controller log: {} lines, {} of them \
         carrying the forged text, none split or escaped",
        hwm as f64 / MIB as f64,
        RSS_LIMIT / MIB,
        server.shared.gzip_bomb.len(),
        (1 + 258 * GZIP_REPEATS as u64) / MIB,
        log_lines,
        forged_lines,
    );
    if let Some(line) = text.lines().find(|l| l.contains("forged log line")) {
        let start: String = line.chars().take(400).collect();
        let _ = writeln!(table, "a log line carrying the forged text: {start}");
    }
    println!("{table}");
}
