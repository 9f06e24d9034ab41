//! Deleting a namespace with kube-controller-manager running against the test control plane: its
//! namespace controller deletes the namespace's objects, then the namespace
//! (`testkit::controller_manager`, started once for this test binary by the first test that asks).
//!
//! With the controller running (design.md §6, §7):
//!
//! - `kubectl delete namespace` of a namespace holding a credentials Secret and two `EcsInstance`s
//!   naming it: each instance is released exactly once with the Secret's key, the Secret stays
//!   (deleted, held by the in-use finalizer) until the last resource has let go, and then the
//!   namespace goes. Events are refused in a terminating namespace; nothing waits on them.
//! - a Secret that no resource names is never written to;
//! - the real controller binary watching `good,bad` under a ServiceAccount bound in `good` only:
//!   `good` works, `bad` is named by `/healthz` (still 200) and the `watch_failing` metric.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ecs_instance_controller::{
    EcsInstance,
    resource::{EcsInstanceStatus, FINALIZER, SECRET_IN_USE_FINALIZER},
};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{ConfigMap, Secret, ServiceAccount},
    rbac::v1::{ClusterRole, RoleBinding},
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};
use support::{Harness, call_mentions, call_succeeded, has_condition, http_get};
use testkit::{
    control_plane, controller_manager,
    sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim},
    test_namespace, wait_namespace_gone,
};

/// How long a namespace may take to go once deleted (seconds in practice).
const GONE_WITHIN: Duration = Duration::from_secs(60);

/// How long a namespace whose `EcsInstance`s must be released first may take to go.
const RELEASED_AND_GONE_WITHIN: Duration = Duration::from_secs(90);

const MANAGER: &str = "namespace-teardown-test";

/// A key of a second simulator account, used only through a credentials Secret.
const TEAM_KEY: &str = "LTAIteardownteam";
const TEAM_SECRET: &str = "teardown-team-secret";

/// `kubectl delete namespace NAME --wait=false` against the test control plane (the waiting is
/// `wait_namespace_gone`'s, which says what holds the namespace when it does not go).
fn kubectl_delete_namespace(name: &str) {
    let plane = control_plane();
    let output = Command::new(plane.kubectl())
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .args(["delete", "namespace", name, "--wait=false"])
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl delete namespace {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn create_config_map(client: &Client, namespace: &str, name: &str) {
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": name },
        "data": { "key": "value" },
    }))
    .expect("a valid ConfigMap");
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap_or_else(|e| panic!("create ConfigMap {namespace}/{name}: {e}"));
}

/// An `EcsInstance` without finalizers (no controller runs in this test to add its own).
async fn create_instance(client: &Client, namespace: &str, name: &str) {
    let manifest = json!({
        "apiVersion": "ecs.alicloud.dev/v1alpha1",
        "kind": "EcsInstance",
        "metadata": { "name": name },
        "spec": { "instanceId": "i-bp67acfmxazb4ph3t1ab", "regionId": "cn-hangzhou" },
    });
    let created = Api::<EcsInstance>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest))
        .await
        .unwrap_or_else(|e| panic!("create EcsInstance {namespace}/{name}: {e}"));
    assert!(
        created.metadata.finalizers.is_none_or(|f| f.is_empty()),
        "created without finalizers"
    );
}

#[tokio::test]
async fn kubectl_delete_namespace_removes_its_objects_and_the_namespace() {
    let manager = controller_manager();
    eprintln!("kube-controller-manager ready in {:?}", manager.started_in);
    let ns = test_namespace("teardown").await;
    create_config_map(&ns.client, &ns.name, "settings").await;
    create_instance(&ns.client, &ns.name, "web-1").await;

    kubectl_delete_namespace(&ns.name);
    let took = wait_namespace_gone(&ns.client, &ns.name, GONE_WITHIN).await;
    eprintln!("namespace {} gone {took:?} after kubectl delete", ns.name);

    // The namespace goes only once its objects are gone.
    let config_maps = Api::<ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("list ConfigMaps");
    assert!(config_maps.items.is_empty(), "{:?}", config_maps.items);
    let instances = Api::<EcsInstance>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("list EcsInstances");
    assert!(instances.items.is_empty(), "{:?}", instances.items);
}

fn secrets(client: &Client, namespace: &str) -> Api<Secret> {
    Api::namespaced(client.clone(), namespace)
}

fn has_in_use_finalizer(secret: &Secret) -> bool {
    secret
        .finalizers()
        .iter()
        .any(|f| f == SECRET_IN_USE_FINALIZER)
}

/// Waits until the Secret carries the in-use finalizer (`true`) or no longer does (`false`).
async fn wait_secret_in_use(h: &Harness, name: &str, in_use: bool) -> Secret {
    let api = secrets(&h.ns.client, &h.ns.name);
    let mut last = None;
    for _ in 0..300 {
        let secret = api.get(name).await.expect("get Secret");
        if has_in_use_finalizer(&secret) == in_use {
            return secret;
        }
        last = Some(secret.metadata);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Secret {name}: in-use finalizer not {in_use} after 30 s; metadata: {last:#?}");
}

/// A Stopped instance visible to the team key only, and a resource naming the Secret `creds`,
/// Ready.
async fn ready_with_secret(h: &Harness, name: &str, id: &str) {
    h.seed(id, json!({ "status": "Stopped", "owner": TEAM_KEY }))
        .await;
    h.create(name, id, json!({ "credentialsRef": { "name": "creds" } }))
        .await;
    h.wait_for_condition(name, "Ready", "True", "InstanceObserved")
        .await;
}

/// What one look at the namespace saw, `at` after `kubectl delete namespace`.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    /// `creds`: `None` once gone, else (being deleted, carries the in-use finalizer).
    creds: Option<(bool, bool)>,
    /// The finalizers of the unreferenced Secret, while it exists.
    unrelated_finalizers: Option<Vec<String>>,
    /// Resources still holding the controller's finalizer (read after `creds`).
    holding: Vec<String>,
    /// `(name, status.release.requestId)` of every resource present.
    present: Vec<(String, Option<String>)>,
}

/// Looks at the namespace every 50 ms until the sampler is dropped; the Secret first, then the
/// resources, so a resource seen holding its finalizer held it when the Secret was read too.
fn sample_namespace(client: Client, namespace: String) -> (Arc<Mutex<Vec<Sample>>>, Sampler) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let recorded = samples.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let secret_api = secrets(&client, &namespace);
        let instance_api = Api::<EcsInstance>::namespaced(client.clone(), &namespace);
        loop {
            let at = started.elapsed();
            let creds = secret_api.get_opt("creds").await;
            let unrelated = secret_api.get_opt("unrelated").await;
            let instances = instance_api.list(&ListParams::default()).await;
            if let (Ok(creds), Ok(unrelated), Ok(instances)) = (creds, unrelated, instances) {
                let sample = Sample {
                    at,
                    creds: creds.map(|s| {
                        (
                            s.metadata.deletion_timestamp.is_some(),
                            has_in_use_finalizer(&s),
                        )
                    }),
                    unrelated_finalizers: unrelated.map(|s| s.finalizers().to_vec()),
                    holding: instances
                        .items
                        .iter()
                        .filter(|r| r.finalizers().iter().any(|f| f == FINALIZER))
                        .map(|r| r.name_any())
                        .collect(),
                    present: instances
                        .items
                        .iter()
                        .map(|r| {
                            let request_id = r
                                .status
                                .as_ref()
                                .and_then(|s| s.release.as_ref())
                                .and_then(|r| r.request_id.clone());
                            (r.name_any(), request_id)
                        })
                        .collect(),
                };
                recorded.lock().expect("samples lock").push(sample);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (samples, Sampler(task))
}

/// The samples where something changed, one line each.
fn timeline(samples: &[Sample]) -> String {
    let mut lines = Vec::new();
    let mut last = None;
    for sample in samples {
        let state = format!(
            "creds {} | holding our finalizer {:?} | present {:?}",
            match sample.creds {
                None => "gone".to_string(),
                Some((deleting, in_use)) => format!("deleting={deleting} in-use={in_use}"),
            },
            sample.holding,
            sample.present
        );
        if last.as_ref() != Some(&state) {
            lines.push(format!("{:>7.2?}  {state}", sample.at));
            last = Some(state);
        }
    }
    lines.join("\n")
}

/// The simulator's calls, one line each, timed from `since`.
fn call_timeline(calls: &[Value], since: jiff::Timestamp) -> String {
    calls
        .iter()
        .map(|call| {
            let at = call["at"]
                .as_str()
                .and_then(|at| at.parse::<jiff::Timestamp>().ok())
                .and_then(|at| (at - since).total(jiff::Unit::Second).ok())
                .map(|seconds| format!("{seconds:>6.2}s"))
                .unwrap_or_default();
            format!(
                "{at}  {} {} -> {} {}",
                call["action"].as_str().unwrap_or("?"),
                call["params"],
                call["httpStatus"],
                call["code"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Stops the sampling task when dropped (also when the test panics).
struct Sampler(tokio::task::JoinHandle<()>);

impl Drop for Sampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Teardown: a credentials Secret, a Secret nobody names and two resources naming the first, all
/// deleted together by `kubectl delete namespace`. The controller releases both instances (with
/// the Secret's key, so the Secret was still readable), once each; the Secret's in-use finalizer
/// goes only after the last resource's finalizer; the unreferenced Secret never gets one; the
/// namespace is gone within 90 s.
#[tokio::test]
async fn namespace_teardown_releases_every_instance_once_and_leaves_nothing_behind() {
    controller_manager();
    let h = Harness::start("teardown-release").await;
    h.sim.add_account(TEAM_KEY, TEAM_SECRET, None).await;
    h.create_credentials_secret("creds", TEAM_KEY, TEAM_SECRET)
        .await;
    h.create_credentials_secret("unrelated", "LTAInobodyuses", "nobody")
        .await;
    let resources = [("web-0", "i-teardown00000"), ("web-1", "i-teardown00001")];
    for (name, id) in resources {
        ready_with_secret(&h, name, id).await;
    }
    wait_secret_in_use(&h, "creds", true).await;
    let unrelated = secrets(&h.ns.client, &h.ns.name)
        .get("unrelated")
        .await
        .expect("get Secret unrelated");
    assert!(
        unrelated.finalizers().is_empty(),
        "a Secret no resource names got finalizers: {:?}",
        unrelated.finalizers()
    );
    // Slow releases: the namespace controller deletes the Secret while they are in flight.
    h.sim
        .set_faults(json!([{ "action": "DeleteInstance", "latencyMs": 1000 }]))
        .await;

    // The call log is kept from the start: a release before the teardown would count too.
    let (samples, sampler) = sample_namespace(h.ns.client.clone(), h.ns.name.clone());
    let deleted = Instant::now();
    let deleted_at = jiff::Timestamp::now();
    kubectl_delete_namespace(&h.ns.name);
    let took = wait_namespace_gone(&h.ns.client, &h.ns.name, RELEASED_AND_GONE_WITHIN).await;
    drop(sampler);
    let samples = samples.lock().expect("samples lock").clone();
    eprintln!(
        "namespace {} with 2 resources to release gone {took:?} after kubectl delete ({:?} in \
         all, {} samples)",
        h.ns.name,
        deleted.elapsed(),
        samples.len()
    );

    // Shown with a failure (and with --nocapture).
    eprintln!(
        "what the namespace held, as it changed:\n{}",
        timeline(&samples)
    );
    eprintln!(
        "ECS calls, from kubectl delete:\n{}",
        call_timeline(&h.sim.calls(None).await, deleted_at)
    );

    // Each instance: exactly one accepted DeleteInstance, sent with the Secret's key, and it is
    // the release the resource recorded.
    let deletes = h.sim.calls(Some("DeleteInstance")).await;
    for (name, id) in resources {
        let calls: Vec<&Value> = deletes.iter().filter(|c| call_mentions(c, id)).collect();
        let accepted: Vec<&Value> = calls
            .iter()
            .copied()
            .filter(|c| call_succeeded(c))
            .collect();
        assert_eq!(
            accepted.len(),
            1,
            "{name}: {} accepted DeleteInstance of {id} (of {} calls): {calls:#?}",
            accepted.len(),
            calls.len()
        );
        assert_eq!(
            accepted[0]["accessKeyId"], TEAM_KEY,
            "{name}: released with the Secret's key"
        );
        let request_id = accepted[0]["requestId"].as_str().expect("a RequestId");
        let recorded: Vec<&Option<String>> = samples
            .iter()
            .flat_map(|s| s.present.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, request_id)| request_id)
            .filter(|r| r.is_some())
            .collect();
        assert!(
            recorded.iter().all(|r| r.as_deref() == Some(request_id)),
            "{name}: status.release.requestId seen {recorded:?}, the accepted call's is \
             {request_id}"
        );
        assert!(
            h.sim
                .instance(id)
                .await
                .is_none_or(|i| i["released"] == true),
            "{id} is released in the simulator"
        );
    }
    let stray: Vec<&Value> = deletes
        .iter()
        .filter(|c| !resources.iter().any(|(_, id)| call_mentions(c, id)))
        .collect();
    assert!(
        stray.is_empty(),
        "DeleteInstance of other instances: {stray:#?}"
    );

    // The Secret was deleted with everything else while releases were still under way, and
    // stayed (readable) until the last resource had let go.
    assert!(
        samples
            .iter()
            .any(|s| s.creds == Some((true, true)) && !s.holding.is_empty()),
        "the Secret was never seen deleted-but-held while a resource still held its finalizer: \
         {samples:#?}"
    );
    let early: Vec<&Sample> = samples
        .iter()
        .filter(|s| !s.holding.is_empty() && s.creds.is_none_or(|(_, in_use)| !in_use))
        .collect();
    assert!(
        early.is_empty(),
        "the Secret lost its in-use finalizer (or went) while a resource still held its \
         finalizer: {early:#?}"
    );
    let touched: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.unrelated_finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        })
        .collect();
    assert!(
        touched.is_empty(),
        "the Secret nobody names got finalizers: {touched:#?}"
    );
    let released_at = samples
        .iter()
        .find(|s| s.creds.is_none_or(|(_, in_use)| !in_use))
        .map(|s| s.at);
    let last_let_go = samples.iter().find(|s| s.holding.is_empty()).map(|s| s.at);
    eprintln!(
        "both resources let go by {last_let_go:?}, the Secret's in-use finalizer gone by \
         {released_at:?}, namespace gone after {took:?}"
    );
}

/// A Secret that no resource names: not written to while a resource names another Secret of the
/// namespace, when it changes, or when that resource is released and the other Secret freed.
#[tokio::test]
async fn a_secret_no_resource_names_is_never_touched() {
    let h = Harness::start("unnamed-secret").await;
    h.sim.add_account(TEAM_KEY, TEAM_SECRET, None).await;
    h.create_credentials_secret("creds", TEAM_KEY, TEAM_SECRET)
        .await;
    h.create_credentials_secret("unrelated", TEAM_KEY, TEAM_SECRET)
        .await;
    let api = secrets(&h.ns.client, &h.ns.name);
    let untouched = |secret: &Secret, version: &str, when: &str| {
        assert!(
            secret.finalizers().is_empty(),
            "{when}: the unreferenced Secret got finalizers {:?}",
            secret.finalizers()
        );
        assert_eq!(
            secret.resource_version().as_deref(),
            Some(version),
            "{when}: the unreferenced Secret was written to; managedFields: {:#?}",
            secret.metadata.managed_fields
        );
    };
    let version = api
        .get("unrelated")
        .await
        .expect("get")
        .resource_version()
        .expect("a resourceVersion");

    ready_with_secret(&h, "web-0", "i-unnamed000000").await;
    wait_secret_in_use(&h, "creds", true).await;
    // Several resync periods (2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    untouched(
        &api.get("unrelated").await.expect("get"),
        &version,
        "while a resource names the other Secret",
    );

    // A change of the Secret reaches the controller's Secret watch.
    let patched = api
        .patch(
            "unrelated",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "changed": "yes" } } })),
        )
        .await
        .expect("label the Secret");
    let version = patched.resource_version().expect("a resourceVersion");
    tokio::time::sleep(Duration::from_secs(3)).await;
    untouched(
        &api.get("unrelated").await.expect("get"),
        &version,
        "after it changed",
    );

    h.delete("web-0").await;
    h.wait_gone("web-0").await;
    wait_secret_in_use(&h, "creds", false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    untouched(
        &api.get("unrelated").await.expect("get"),
        &version,
        "after the other Secret was freed",
    );
    let released = h
        .calls("DeleteInstance", Some("i-unnamed000000"))
        .await
        .into_iter()
        .filter(call_succeeded)
        .count();
    assert_eq!(released, 1, "the instance was released once");

    // Nothing holds it: deleted, it is gone at once.
    api.delete("unrelated", &DeleteParams::default())
        .await
        .expect("delete the Secret");
    assert!(
        api.get_opt("unrelated").await.expect("get").is_none(),
        "the unreferenced Secret is gone once deleted"
    );
}

// --- One bad namespace (design.md §7) --------------------------------------------------------

/// The identity the controller binary runs as: a ServiceAccount in `good` whose token the test
/// API server accepts (it signs and checks tokens with `--service-account-*-key-file`).
const CONTROLLER_ACCOUNT: &str = "ecs-controller-test";

/// Writes a kubeconfig for a ServiceAccount token into the control plane's run directory (mode
/// 0700, removed with it).
fn write_token_kubeconfig(token: &str, file_name: &str) -> PathBuf {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let plane = control_plane();
    let path = plane.run_dir.join(file_name);
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {CONTROLLER_ACCOUNT}
  user:
    token: {token}
contexts:
- name: controller
  context:
    cluster: testenv
    user: {CONTROLLER_ACCOUNT}
current-context: controller
",
        server = plane.server,
        ca = plane.ca_cert().display(),
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(yaml.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load kubeconfig");
    Client::try_from(config).expect("build kube client")
}

/// The project's ClusterRole (`deploy/base/cluster_role.yaml`) and a ServiceAccount in `good`
/// bound to it there only; returns a kubeconfig with a token of that ServiceAccount.
async fn controller_identity_in(admin: &Client, good: &str) -> PathBuf {
    let path = testkit::control_plane::workspace_root().join("deploy/base/cluster_role.yaml");
    let text = std::fs::read_to_string(&path).expect("read the ClusterRole");
    let role: ClusterRole = serde_saphyr::from_str(&text).expect("a ClusterRole");
    let role_name = role.name_any();
    Api::<ClusterRole>::all(admin.clone())
        .patch(
            &role_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&role),
        )
        .await
        .expect("apply the ClusterRole");
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), good);
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": CONTROLLER_ACCOUNT } }))
            .expect("a ServiceAccount");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create the ServiceAccount");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "ecs-instance-controller" },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role_name,
        },
        "subjects": [{ "kind": "ServiceAccount", "name": CONTROLLER_ACCOUNT, "namespace": good }],
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(admin.clone(), good)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the RoleBinding");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(CONTROLLER_ACCOUNT, &PostParams::default(), &request)
        .await
        .expect("a token for the ServiceAccount (TokenRequest)")
        .status
        .expect("the TokenRequest's status")
        .token;
    write_token_kubeconfig(&token, &format!("kubeconfig-{good}"))
}

/// The real controller binary with `kubeconfig` (not the admin's), killed when dropped.
struct ControllerProcess {
    child: std::process::Child,
    metrics: String,
    health: String,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(kubeconfig: &Path, sim: &EcsSim, args: &[&str], log_name: &str) -> Self {
        let plane = control_plane();
        let [metrics_port, health_port] = testkit::free_ports().expect("free ports");
        let binary =
            testkit::supervisor::workspace_binary("ecs-instance-controller", "ECS_CONTROLLER_BIN");
        let log = plane.run_dir.join(log_name);
        let log_file = std::fs::File::create(&log).expect("controller log file");
        let mut command = Command::new(binary);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--ecs-endpoint={}", sim.endpoint()))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!("--health-addr=127.0.0.1:{health_port}"))
            .args(["--transition-poll=200ms", "--resync-period=2s"])
            .args(args)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file);
        let child = testkit::supervisor::spawn_for_test_binary(command)
            .expect("start the controller binary");
        ControllerProcess {
            child,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            health: format!("http://127.0.0.1:{health_port}"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--watch-unhealthy-after` of the controller watching `good,bad`.
const UNHEALTHY_AFTER: Duration = Duration::from_secs(2);

/// The value of a metric line `name{namespace="ns"}` in an OpenMetrics text.
fn watch_failing(metrics: &str, namespace: &str) -> Option<String> {
    let prefix = format!(
        "ecs_instance_controller_watch_failing{{namespace=\"{namespace}\",resource=\"ecsinstances\"}} "
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_string())
}

/// `--namespaces good,bad` under a ServiceAccount bound (the project's ClusterRole) in `good`
/// only: a resource in `good` is released and goes while `bad` cannot be watched; `/healthz`
/// stays 200 and names `bad`; `watch_failing` is 1 for `bad` and 0 for `good`. A resource in
/// `bad` is left alone (the controller cannot see it).
#[tokio::test]
async fn one_namespace_without_rights_holds_up_only_itself() {
    let admin = control_plane().client().await;
    let good = test_namespace("good").await.name;
    let bad = test_namespace("bad").await.name;
    let kubeconfig = controller_identity_in(&admin, &good).await;

    // The identity as the controller will have it: EcsInstances in `good`, nothing in `bad`.
    let restricted = client_for(&kubeconfig).await;
    Api::<EcsInstance>::namespaced(restricted.clone(), &good)
        .list(&ListParams::default())
        .await
        .expect("the controller's identity lists EcsInstances in good");
    match Api::<EcsInstance>::namespaced(restricted.clone(), &bad)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the controller's identity must get 403 in {bad}, got {other:?}"),
    }

    let sim = EcsSim::start().await;
    let h = Harness::attached(
        testkit::TestNamespace {
            client: admin.clone(),
            name: good.clone(),
        },
        sim,
    );
    let mut controller = ControllerProcess::start(
        &kubeconfig,
        &h.sim,
        &[
            &format!("--namespaces={good},{bad}"),
            &format!("--watch-unhealthy-after={}s", UNHEALTHY_AFTER.as_secs()),
            // Namespaced rights only, as deploy/overlays/namespaced: no Namespace watch.
            "--namespace-deletion-policies=false",
        ],
        &format!("controller-{good}-{bad}.log"),
    );
    support::wait_ready(&controller.health, &controller.log).await;
    let started = Instant::now();

    // A resource in `bad`, created by the admin: the controller must not see it.
    h.sim
        .seed(json!([
            { "instanceId": "i-goodns000001", "regionId": support::REGION, "status": "Stopped" },
            { "instanceId": "i-badns0000001", "regionId": support::REGION, "status": "Stopped" },
        ]))
        .await;
    let bad_api = Api::<EcsInstance>::namespaced(admin.clone(), &bad);
    bad_api
        .patch(
            "web-1",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "ecs.alicloud.dev/v1alpha1",
                "kind": "EcsInstance",
                "metadata": { "name": "web-1" },
                "spec": { "instanceId": "i-badns0000001", "regionId": support::REGION },
            })),
        )
        .await
        .expect("create the resource in bad");

    h.create("web-1", "i-goodns000001", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !h
        .api
        .get("web-1")
        .await
        .is_ok_and(|r| has_condition(&r, "Ready", "True", "InstanceObserved"))
    {
        assert!(
            Instant::now() < deadline,
            "the resource in {good} never became Ready; controller log:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.delete("web-1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.api.get_opt("web-1").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "the resource in {good} was not released within 30 s: {:#?}; controller log:\n{}",
            h.api
                .get_opt("web-1")
                .await
                .ok()
                .flatten()
                .map(|r| r.status),
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deletes = h.sim.calls(Some("DeleteInstance")).await;
    let accepted: Vec<&Value> = deletes
        .iter()
        .filter(|c| call_mentions(c, "i-goodns000001") && call_succeeded(c))
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "good's instance released once: {deletes:#?}"
    );
    let about_bad: Vec<Value> = h
        .sim
        .calls(None)
        .await
        .into_iter()
        .filter(|c| call_mentions(c, "i-badns0000001"))
        .collect();
    assert!(
        about_bad.is_empty(),
        "the controller called ECS about bad's instance: {about_bad:#?}"
    );
    let bad_resource = bad_api.get("web-1").await.expect("bad's resource");
    assert!(
        // Untouched: its status is the CRD's schema default, `{observedGeneration: 0}`.
        bad_resource.finalizers().is_empty()
            && bad_resource.status
                == Some(EcsInstanceStatus {
                    observed_generation: Some(0),
                    ..Default::default()
                }),
        "the controller touched a resource it has no rights to see: {:?} {:?}",
        bad_resource.finalizers(),
        bad_resource.status
    );

    // The health endpoint: 200 (a restart would not help) even once bad's watch has failed for
    // longer than --watch-unhealthy-after, naming bad and only bad.
    tokio::time::sleep(
        (UNHEALTHY_AFTER + Duration::from_secs(1)).saturating_sub(started.elapsed()),
    )
    .await;
    let (status, body) = http_get(&format!("{}/healthz", controller.health))
        .await
        .expect("/healthz answers");
    assert_eq!(status, 200, "/healthz: {body}");
    assert!(
        body.contains(&format!("{bad} (ecsinstances): "))
            && body.contains(&format!("{bad} (secrets): "))
            && !body.contains(&format!("{good} (")),
        "/healthz must name {bad} (and not {good}): {body:?}"
    );
    let (status, metrics) = http_get(&controller.metrics)
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    assert_eq!(
        (
            watch_failing(&metrics, &bad).as_deref(),
            watch_failing(&metrics, &good).as_deref()
        ),
        (Some("1"), Some("0")),
        "watch_failing{{namespace}} for {bad} and {good}:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("watch_failing"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The controller's own watch-failure line carries `namespace="…"` (the API server's message
    // names the ServiceAccount, whose namespace is good's).
    let log = controller.log_text();
    let watch_failed_in = |namespace: &str| {
        log.lines().any(|l| {
            l.contains("watch failed")
                && l.contains("resource=\"ecsinstances\"")
                && l.contains(&format!("namespace=\"{namespace}\""))
        })
    };
    assert!(
        watch_failed_in(&bad) && !watch_failed_in(&good),
        "the log must name {bad} (and not {good}) in its watch failures:\n{}",
        controller.log_tail()
    );
    assert!(
        matches!(controller.child.try_wait(), Ok(None)),
        "the controller exited; log:\n{}",
        controller.log_tail()
    );
}
