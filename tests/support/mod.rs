//! Shared by the controller's integration tests: a namespace on the test control plane, an ECS
//! simulator, the controller running in-process against both, and polling helpers.

#![allow(dead_code)] // each test binary uses its own subset

use std::{sync::Arc, time::Duration};

use ecs_client::{ClientConfig, Credentials, CredentialsProvider, EcsClient};
use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, find},
    pacing::Timings,
    reconciler::{self, Context},
};
use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use testkit::{
    TestNamespace,
    sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim},
    test_namespace,
};
use tokio::{sync::oneshot, task::JoinHandle};

pub const REGION: &str = "cn-hangzhou";

/// Short paces so the flows finish in seconds.
pub fn fast_timings() -> Timings {
    Timings {
        transition: Duration::from_millis(200),
        waiting: Duration::from_millis(300),
        steady: Duration::from_secs(2),
        recheck: Duration::from_secs(1),
        recheck_first: Duration::from_millis(500),
        backoff_base: Duration::from_millis(200),
        throttled_base: Duration::from_millis(300),
        slow_base: Duration::from_millis(500),
        backoff_cap: Duration::from_secs(2),
        stop_grace: Duration::from_secs(1),
        release_resend: Duration::from_secs(1),
        ownership_settle: Duration::from_secs(2),
        release_timeout: Duration::from_secs(60),
    }
}

pub struct Harness {
    pub ns: TestNamespace,
    pub sim: EcsSim,
    pub api: Api<EcsInstance>,
    controller: Option<Controller>,
}

struct Controller {
    task: JoinHandle<()>,
    _shutdown: oneshot::Sender<()>,
}

impl Harness {
    /// A namespace, a simulator, and the controller watching that namespace.
    pub async fn start(prefix: &str) -> Harness {
        Self::start_with(prefix, &[], fast_timings()).await
    }

    pub async fn start_with(prefix: &str, sim_args: &[&str], timings: Timings) -> Harness {
        let ns = test_namespace(prefix).await;
        let sim = EcsSim::start_with_args(sim_args).await;
        let mut harness = Harness::attached(ns, sim);
        harness.start_controller(timings);
        harness
    }

    /// The helpers only, for a controller running elsewhere (a separate process or a cluster).
    pub fn attached(ns: TestNamespace, sim: EcsSim) -> Harness {
        let api = Api::namespaced(ns.client.clone(), &ns.name);
        Harness {
            ns,
            sim,
            api,
            controller: None,
        }
    }

    pub fn start_controller(&mut self, timings: Timings) {
        let namespace = self.ns.name.clone();
        self.start_controller_watching(timings, &[namespace]);
    }

    /// The controller as `--namespaces a,b` runs it: one loop per namespace, one shared context.
    pub fn start_controller_watching(&mut self, timings: Timings, namespaces: &[String]) {
        let ecs = EcsClient::new(ClientConfig {
            endpoint_override: Some(self.sim.endpoint().to_string()),
            ..Default::default()
        })
        .expect("ECS client");
        let credentials = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET, None);
        let ctx = Arc::new(Context::new(
            self.ns.client.clone(),
            ecs,
            Some(CredentialsProvider::fixed(credentials)),
            timings,
            Arc::default(),
        ));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let stopped = futures::future::FutureExt::shared(stopped);
        let loops: Vec<_> = namespaces
            .iter()
            .map(|namespace| {
                let stopped = stopped.clone();
                reconciler::run(
                    ctx.clone(),
                    Some(namespace.clone()),
                    reconciler::DEFAULT_CONCURRENCY,
                    async move {
                        let _ = stopped.await;
                    },
                )
            })
            .collect();
        let task = tokio::spawn(async move {
            futures::future::join_all(loops).await;
        });
        self.controller = Some(Controller {
            task,
            _shutdown: shutdown,
        });
    }

    /// Ends the controller at once, wherever it is (like a killed process).
    pub async fn kill_controller(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.task.abort();
            let _ = controller.task.await;
        }
    }

    pub async fn seed(&self, instance_id: &str, attrs: Value) {
        let mut spec = json!({ "instanceId": instance_id, "regionId": REGION });
        spec.as_object_mut()
            .unwrap()
            .extend(attrs.as_object().cloned().unwrap_or_default());
        self.sim.seed(json!([spec])).await;
    }

    pub async fn create(&self, name: &str, instance_id: &str, spec: Value) -> EcsInstance {
        let mut full = json!({ "instanceId": instance_id, "regionId": REGION });
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().cloned().unwrap_or_default());
        let body = json!({
            "apiVersion": "ecs.alicloud.dev/v1alpha1",
            "kind": "EcsInstance",
            "metadata": { "name": name },
            "spec": full,
        });
        self.api
            .patch(name, &PatchParams::apply("test"), &Patch::Apply(&body))
            .await
            .expect("apply EcsInstance")
    }

    /// `count` instances `<prefix><n>` in `status`, each with a resource `web-<n>` that has
    /// observed it (`Ready`); returns the instance IDs.
    pub async fn ready_instances(&self, prefix: &str, count: usize, status: &str) -> Vec<String> {
        let ids: Vec<String> = (0..count).map(|n| format!("{prefix}{n:04}")).collect();
        for (n, id) in ids.iter().enumerate() {
            self.seed(id, json!({ "status": status })).await;
            self.create(&format!("web-{n}"), id, json!({})).await;
        }
        for n in 0..count {
            self.wait_for_condition(&format!("web-{n}"), READY, "True", "InstanceObserved")
                .await;
        }
        ids
    }

    pub async fn delete(&self, name: &str) {
        self.api
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete EcsInstance");
    }

    pub async fn patch_spec(&self, name: &str, spec: Value) {
        let body = json!({ "spec": spec });
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .expect("patch spec");
    }

    /// A credentials Secret in the test namespace, as `spec.credentialsRef` expects it.
    pub async fn create_credentials_secret(&self, name: &str, access_key_id: &str, secret: &str) {
        let body: Secret = serde_json::from_value(json!({
            "metadata": { "name": name },
            "stringData": { "accessKeyId": access_key_id, "accessKeySecret": secret },
        }))
        .expect("a Secret");
        Api::<Secret>::namespaced(self.ns.client.clone(), &self.ns.name)
            .create(&PostParams::default(), &body)
            .await
            .unwrap_or_else(|e| panic!("create Secret {name}: {e}"));
    }

    /// Waits until the resource satisfies `check`; panics with the last status seen.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&EcsInstance) -> bool,
    ) -> EcsInstance {
        let mut last = None;
        for _ in 0..300 {
            if let Some(resource) = self.api.get_opt(name).await.expect("get") {
                if check(&resource) {
                    return resource;
                }
                last = Some(resource);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name}: timed out after 30 s waiting for {what}; last seen: {:#?}",
            last.map(|r| r.status)
        );
    }

    pub async fn wait_for_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> EcsInstance {
        self.wait_for(name, &format!("{type_}={status} reason {reason}"), |r| {
            has_condition(r, type_, status, reason)
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str) {
        for _ in 0..300 {
            if self.api.get_opt(name).await.expect("get").is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resource = self.api.get_opt(name).await.expect("get");
        panic!(
            "{name}: still there after 30 s: {:#?}",
            resource.map(|r| r.status)
        );
    }

    /// The simulator's calls of one action (optionally for one instance).
    pub async fn calls(&self, action: &str, instance_id: Option<&str>) -> Vec<Value> {
        self.sim
            .calls(Some(action))
            .await
            .into_iter()
            .filter(|call| instance_id.is_none_or(|id| call_mentions(call, id)))
            .collect()
    }

    /// `(type, reason)` of the events about one resource, oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let events: Api<Event> = Api::namespaced(self.ns.client.clone(), &self.ns.name);
        let mut list: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The reasons of the events about one resource, oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .map(|(_, reason, _)| reason)
            .collect()
    }

    pub async fn wait_for_event(&self, name: &str, reason: &str) -> (String, String, String) {
        for _ in 0..100 {
            if let Some(event) = self
                .events(name)
                .await
                .into_iter()
                .find(|(_, r, _)| r == reason)
            {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name}: no {reason} event; events: {:#?}",
            self.events(name).await
        );
    }
}

/// The real controller binary as a separate process (ending with the test binary), pointed at
/// the test control plane and a simulator. Returns the child and its metrics and health URLs.
pub fn spawn_controller_binary(
    sim_endpoint: &str,
    access_key: (&str, &str),
    extra_args: &[&str],
    log: &std::path::Path,
) -> (std::process::Child, String, String) {
    spawn_controller_binary_with_env(
        sim_endpoint,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", access_key.0),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", access_key.1),
        ],
        extra_args,
        log,
    )
}

/// The controller binary with exactly these `ALIBABA_CLOUD_*` variables (none other from this
/// process's environment): its credentials chain picks the source they configure.
pub fn spawn_controller_binary_with_env(
    sim_endpoint: &str,
    env: &[(&str, &str)],
    extra_args: &[&str],
    log: &std::path::Path,
) -> (std::process::Child, String, String) {
    let plane = testkit::control_plane();
    let [metrics_port, health_port] = testkit::free_ports().expect("free ports");
    let binary =
        testkit::supervisor::workspace_binary("ecs-instance-controller", "ECS_CONTROLLER_BIN");
    let log_file = std::fs::File::create(log).expect("controller log file");
    let mut command = std::process::Command::new(binary);
    command
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .arg(format!("--ecs-endpoint={sim_endpoint}"))
        .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
        .arg(format!("--health-addr=127.0.0.1:{health_port}"))
        .args(["--transition-poll=200ms", "--resync-period=2s"])
        .args(extra_args)
        .env_clear()
        .envs(std::env::vars().filter(|(name, _)| !name.starts_with("ALIBABA_CLOUD_")))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file);
    let child =
        testkit::supervisor::spawn_for_test_binary(command).expect("start the controller binary");
    let health = format!("http://127.0.0.1:{health_port}");
    (
        child,
        format!("http://127.0.0.1:{metrics_port}/metrics"),
        health,
    )
}

/// GET a URL on a test server: `(status, body)`, or `None` when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = testkit::http_client().get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Waits until a controller's readiness endpoint answers 200.
pub async fn wait_ready(health_url: &str, log: &std::path::Path) {
    for _ in 0..300 {
        if http_get(&format!("{health_url}/readyz"))
            .await
            .is_some_and(|(status, _)| status == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the controller never became ready; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn call_mentions(call: &Value, instance_id: &str) -> bool {
    let params = &call["params"];
    params["InstanceId"].as_str() == Some(instance_id)
        // TagResources and UntagResources: ResourceId.1 to ResourceId.50.
        || params.as_object().is_some_and(|params| {
            params
                .iter()
                .any(|(name, value)| name.starts_with("ResourceId.") && value == instance_id)
        })
        || params["InstanceIds"]
            .as_str()
            .is_some_and(|ids| ids.contains(&format!("\"{instance_id}\"")))
}

pub fn call_succeeded(call: &Value) -> bool {
    call["httpStatus"] == 200
}

pub fn has_condition(resource: &EcsInstance, type_: &str, status: &str, reason: &str) -> bool {
    resource
        .status
        .as_ref()
        .and_then(|s| find(&s.conditions, type_))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

pub fn condition_message(resource: &EcsInstance, type_: &str) -> String {
    resource
        .status
        .as_ref()
        .and_then(|s| find(&s.conditions, type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

// ---- Credentials sources through the real binary (tests/credentials_*.rs) ----

/// The controller binary with one credentials source, started and ready; killed (this child
/// only) when dropped.
pub struct ControllerProcess {
    pub child: std::process::Child,
    pub metrics: String,
    pub health: String,
    pub log: std::path::PathBuf,
}

impl ControllerProcess {
    /// Starts the binary with exactly these `ALIBABA_CLOUD_*` variables and waits until it is
    /// ready (panics with its log when it exits or never gets ready).
    pub async fn start(
        sim_endpoint: &str,
        env: &[(&str, &str)],
        args: &[&str],
        log: &std::path::Path,
    ) -> ControllerProcess {
        let (child, metrics, health) =
            spawn_controller_binary_with_env(sim_endpoint, env, args, log);
        let process = ControllerProcess {
            child,
            metrics,
            health,
            log: log.to_path_buf(),
        };
        wait_ready(&process.health, &process.log).await;
        process
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics when the log holds any of `secrets` (named by their label, never printed).
    pub fn assert_log_free_of(&self, secrets: &[(&str, &str)]) {
        let text = self.log_text();
        assert!(!text.is_empty(), "the controller wrote no log");
        for (label, secret) in secrets {
            assert!(secret.len() >= 4, "{label}: not a secret worth looking for");
            assert!(
                !text.contains(secret),
                "the controller log holds {label} ({})",
                self.log.display()
            );
        }
    }

    /// Still running, and `/healthz` and `/readyz` answer 200.
    pub async fn assert_up(&mut self) {
        assert!(
            self.child.try_wait().expect("child status").is_none(),
            "the controller exited; its log:\n{}",
            self.log_text()
        );
        for probe in ["healthz", "readyz"] {
            let answer = http_get(&format!("{}/{probe}", self.health)).await;
            assert!(
                answer.as_ref().is_some_and(|(status, _)| *status == 200),
                "/{probe} answered {answer:?}"
            );
        }
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for one test (accounts file, token file, profile, logs).
pub fn work_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ecs-controller-{name}"));
    std::fs::create_dir_all(&dir).expect("a work directory");
    dir
}

/// Writes `value` as JSON (the simulator's accounts file).
pub fn write_json(path: &std::path::Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("JSON"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Replaces a file the way the kubelet updates a projected token: a new file renamed over it.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write the new file");
    std::fs::rename(&next, path).expect("rename it over the old one");
}

/// `(status, body)` of a request to a test server: the body as JSON, else as a string.
macro_rules! answer_of {
    ($request:expr, $what:expr) => {{
        let what = $what;
        let response = $request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        (status, body)
    }};
}

/// The temporary credentials the simulator issued so far (`GET /_sim/sts/sessions`; never
/// secrets): `accessKeyId`, `roleArn`, `roleSessionName`, `source`, `issuedAt`, `expiration`.
pub async fn sts_sessions(sim: &EcsSim) -> Vec<Value> {
    let url = format!("{}/_sim/sts/sessions", sim.endpoint());
    let (status, body) = answer_of!(testkit::http_client().get(&url), &url);
    assert_eq!(status, 200, "{url}: {body}");
    body.as_array().cloned().expect("an array of sessions")
}

/// The sessions one source issued (`AssumeRole`, `AssumeRoleWithOIDC`, `Metadata`).
pub async fn sts_sessions_from(sim: &EcsSim, source: &str) -> Vec<Value> {
    sts_sessions(sim)
        .await
        .into_iter()
        .filter(|s| s["source"] == source)
        .collect()
}

/// Makes a temporary credential expire now (ECS then answers `InvalidSecurityToken.Expired`).
pub async fn expire_sts_session(sim: &EcsSim, access_key_id: &str) {
    let url = format!(
        "{}/_sim/sts/sessions/{access_key_id}/expire",
        sim.endpoint()
    );
    let (status, body) = answer_of!(testkit::http_client().post(&url), &url);
    assert_eq!(status, 200, "{url}: {body}");
}

/// The metadata server serves new instance-role credentials from now on; returns their key.
pub async fn rotate_metadata_credentials(sim: &EcsSim) -> String {
    let url = format!("{}/_sim/metadata/rotate", sim.endpoint());
    let (status, body) = answer_of!(testkit::http_client().post(&url), &url);
    assert_eq!(status, 200, "{url}: {body}");
    body["accessKeyId"]
        .as_str()
        .expect("the new accessKeyId")
        .to_string()
}

/// What the metadata server serves the instance role now (token handshake first), as the
/// controller got it: to look for its secret in logs.
pub async fn metadata_credentials(sim: &EcsSim, role_name: &str) -> Value {
    let http = testkit::http_client();
    let url = format!("{}/latest/api/token", sim.endpoint());
    let (status, token) = answer_of!(
        http.put(&url)
            .header("x-aliyun-ecs-metadata-token-ttl-seconds", "60"),
        &url
    );
    assert_eq!(status, 200, "{url}: {token}");
    let token = token.as_str().expect("a text token").to_string();
    let url = format!(
        "{}/latest/meta-data/ram/security-credentials/{role_name}",
        sim.endpoint()
    );
    let (status, body) = answer_of!(
        http.get(&url).header("x-aliyun-ecs-metadata-token", token),
        &url
    );
    assert_eq!(status, 200, "{url}: {body}");
    body
}

/// What the simulator's credentials URI answers now.
pub async fn credentials_uri_answer(sim: &EcsSim) -> Value {
    let url = format!("{}/credentials-uri", sim.endpoint());
    let (status, body) = answer_of!(testkit::http_client().get(&url), &url);
    assert_eq!(status, 200, "{url}: {body}");
    body
}

/// `AssumeRoleWithOIDC` sent by the test itself (anonymous), to probe a token.
pub async fn assume_role_with_oidc(
    sim: &EcsSim,
    role_arn: &str,
    provider_arn: &str,
    token: &str,
    session_name: &str,
) -> (u16, Value) {
    let url = format!(
        "{}/?Action=AssumeRoleWithOIDC&Version=2015-04-01&Format=JSON",
        sim.endpoint()
    );
    let body = form_encode(&[
        ("RoleArn", role_arn),
        ("OIDCProviderArn", provider_arn),
        ("OIDCToken", token),
        ("RoleSessionName", session_name),
    ]);
    answer_of!(
        testkit::http_client()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
        "AssumeRoleWithOIDC"
    )
}

/// `application/x-www-form-urlencoded` (RFC 3986 unreserved characters kept).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A token the test API server issues for a ServiceAccount (created if missing), as the kubelet
/// projects it for RRSA: audience `sts.aliyuncs.com`, one hour.
pub async fn service_account_token(ns: &TestNamespace, account: &str) -> String {
    use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
    let accounts: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    accounts
        .patch(
            account,
            &PatchParams::apply("test"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": account }
            })),
        )
        .await
        .expect("a ServiceAccount");
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": { "audiences": ["sts.aliyuncs.com"], "expirationSeconds": 3600 }
    }))
    .expect("a TokenRequest");
    accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("a token from the API server")
        .status
        .expect("a token")
        .token
}

/// The simulator's OIDC provider for the test API server's ServiceAccount tokens.
pub fn api_server_oidc_provider(provider_arn: &str) -> Value {
    let plane = testkit::control_plane();
    json!({
        "arn": provider_arn,
        "issuerUrl": format!("{}/", plane.server),
        "clientIds": ["sts.aliyuncs.com"],
        "publicKeyFiles": [plane.run_dir.join("pki").join("sa.pub")],
    })
}

/// `template` (a token the API server issued) with the same claims but a lifetime of
/// `lifetime_secs` from now, signed with the API server's service-account key: a token
/// that stops working soon, which the API server cannot issue
/// (TokenRequest's minimum is 10 minutes). Returns the token and its `exp`.
pub fn short_lived_copy(template: &str, lifetime_secs: i64) -> (String, i64) {
    use base64::Engine as _;
    let header = jsonwebtoken::decode_header(template).expect("a JWT header");
    let claims_part = template.split('.').nth(1).expect("a JWT has claims");
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims_part)
            .expect("base64url claims"),
    )
    .expect("JSON JWT claims");
    let now = jiff::Timestamp::now().as_second();
    let exp = now + lifetime_secs;
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now);
    claims["exp"] = json!(exp);
    let pem = std::fs::read(testkit::control_plane().run_dir.join("pki").join("sa.key"))
        .expect("the API server's service-account key");
    let key = match header.alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
        other => panic!("the API server signs with {other:?}, which this helper does not"),
    }
    .expect("the service-account signing key");
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign the token");
    (token, exp)
}

impl Harness {
    /// A Secret with exactly this data, in the test namespace.
    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect();
        let body: Secret = serde_json::from_value(json!({
            "metadata": { "name": name },
            "stringData": data,
        }))
        .expect("a Secret");
        Api::<Secret>::namespaced(self.ns.client.clone(), &self.ns.name)
            .create(&PostParams::default(), &body)
            .await
            .unwrap_or_else(|e| panic!("create Secret {name}: {e}"));
    }

    /// Merges `data` into a Secret's data.
    pub async fn patch_secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect();
        Api::<Secret>::namespaced(self.ns.client.clone(), &self.ns.name)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": data })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch Secret {name}: {e}"));
    }

    /// Who observed the instance (`status.instance.observedWith`).
    pub async fn observed_with(
        &self,
        name: &str,
    ) -> Option<ecs_instance_controller::resource::ObservedWith> {
        self.api
            .get(name)
            .await
            .expect("get")
            .status
            .and_then(|s| s.instance)
            .and_then(|i| i.observed_with)
    }

    /// `(resource, reason)` of every event in the test namespace.
    pub async fn all_event_reasons(&self) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.ns.client.clone(), &self.ns.name);
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .map(|e| {
                (
                    e.regarding.and_then(|r| r.name).unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Successful calls of one action for one instance.
pub fn succeeded_for(calls: &[Value], instance_id: &str) -> usize {
    calls
        .iter()
        .filter(|c| call_succeeded(c) && call_mentions(c, instance_id))
        .count()
}

/// The one successful `DeleteInstance` of `instance_id` (panics unless exactly one), and the
/// simulator's record of the temporary credentials that signed it (panics when they were not
/// temporary credentials the simulator issued).
pub async fn released_once_with(sim: &EcsSim, instance_id: &str) -> Value {
    let deletes: Vec<Value> = sim
        .calls(Some("DeleteInstance"))
        .await
        .into_iter()
        .filter(|c| call_succeeded(c) && call_mentions(c, instance_id))
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "{instance_id} released exactly once: {deletes:#?}"
    );
    let key = deletes[0]["accessKeyId"]
        .as_str()
        .expect("the key that signed it")
        .to_string();
    sts_sessions(sim)
        .await
        .into_iter()
        .find(|s| s["accessKeyId"] == key.as_str())
        .unwrap_or_else(|| panic!("{instance_id} was released with {key}, not a temporary key"))
}
