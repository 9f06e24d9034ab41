//! kube-controller-manager for the test control plane, opt-in: a test binary that calls
//! [`controller_manager`] gets one, started once (whichever test asks first) and ended with the
//! test binary like etcd and kube-apiserver. It runs only [`CONTROLLERS`]: the namespace controller
//! (`kubectl delete namespace` removes the namespace's objects, then the namespace) and the garbage
//! collector (owner references, foreground and orphan deletion).
//!
//! It authenticates with the control plane's admin kubeconfig (client certificate in
//! `system:masters`), and every controller uses it (no `--use-service-account-credentials`, so no
//! per-controller RBAC). No leader election, so it keeps running across [`super::stop_apiserver`]
//! and reconnects, but its watches come back with client-go's backoff: after a 20 s outage a
//! namespace deleted right after the restart took 50 s to go (5 s otherwise), so allow for a
//! minute or more there. Its log is `kube-controller-manager.log` in the run directory.
//!
//! The binary comes from `$KUBE_TESTBIN` like the others: `scripts/build-testbin.sh` builds it for
//! `K8S_VERSION` (the version of the wrapper module `tools/kube-testbin/node`), not for other
//! versions.
//!
//! What it does not do: objects with finalizers keep their namespace `Terminating` until something
//! removes the finalizers (e.g. the controller under test); the garbage collector learns about
//! resource types (CRDs) added after it started within 30 s (its discovery resync), while the
//! namespace controller rediscovers them on every namespace it deletes.

use std::{
    os::unix::fs::DirBuilderExt,
    path::PathBuf,
    process::Child,
    sync::{Mutex, MutexGuard, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ResourceExt},
};

use super::{
    ControlPlane, control_plane, free_ports, http_get, log_tail, owned, spawn, write_file,
};

/// The controllers started (`--controllers`), by their canonical names.
pub const CONTROLLERS: [&str; 2] = ["namespace-controller", "garbage-collector-controller"];

/// The kube-controller-manager of this test binary's control plane.
#[derive(Debug, Clone)]
pub struct ControllerManager {
    /// Its secure port, `https://127.0.0.1:PORT` (a self-signed serving certificate; `/healthz`
    /// answers without credentials).
    pub server: String,
    /// Its output (appended across start attempts).
    pub log: PathBuf,
    /// How long the start took, until every controller of [`CONTROLLERS`] reported healthy.
    pub started_in: Duration,
}

static CONTROLLER_MANAGER: OnceLock<Result<ControllerManager, String>> = OnceLock::new();

/// Its process while it runs; `None` once it has exited (and was reaped) or before it started.
static PROCESS: Mutex<Option<Child>> = Mutex::new(None);

/// The kube-controller-manager of this test binary's control plane (which starts first if it has
/// not yet), started on first use and waited for until its controllers run. Panics with the reason
/// and the tail of its log when it cannot start: tests that need it must fail, not skip.
pub fn controller_manager() -> &'static ControllerManager {
    let plane = control_plane();
    let started = CONTROLLER_MANAGER.get_or_init(|| {
        // A thread of its own: the start-up drives a tokio runtime, which cannot nest in the
        // calling test's runtime.
        std::thread::scope(|scope| scope.spawn(|| start_with_retries(plane)).join())
            .unwrap_or_else(|_| Err("its start-up panicked".into()))
    });
    match started {
        Ok(manager) => manager,
        Err(reason) => {
            panic!("kube-controller-manager for the test control plane could not start: {reason}")
        }
    }
}

/// `Ok` while the kube-controller-manager of this process runs; why not otherwise (never started,
/// or exited: then it is reaped and forgotten, so its PID, which may be reused, is not signalled
/// at exit).
pub fn controller_manager_running() -> Result<(), String> {
    if CONTROLLER_MANAGER.get().is_none_or(Result::is_err) {
        let reason = "kube-controller-manager was not started in this test binary: call \
                      testkit::controller_manager() first";
        return Err(reason.into());
    }
    let mut process = process();
    let Some(child) = process.as_mut() else {
        return Err("kube-controller-manager has exited".into());
    };
    match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => {
            let pid = child.id();
            *process = None;
            owned().pids.retain(|&p| p != pid);
            Err(format!("kube-controller-manager exited ({status})"))
        }
        Err(e) => Err(format!(
            "cannot check the kube-controller-manager process: {e}"
        )),
    }
}

fn process() -> MutexGuard<'static, Option<Child>> {
    PROCESS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_with_retries(plane: &ControlPlane) -> Result<ControllerManager, String> {
    let program = plane.testbin.join("kube-controller-manager");
    if !program.is_file() {
        return Err(format!(
            "{} is missing: run scripts/build-testbin.sh (it builds kube-controller-manager for \
             K8S_VERSION, the version of tools/kube-testbin/node, only)",
            program.display()
        ));
    }
    let dir = plane.run_dir.join("kube-controller-manager");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    // A serving certificate of its own, so that the readiness probe can check whom it talks to.
    let serving = rcgen::generate_simple_self_signed(["127.0.0.1".to_string()])
        .map_err(|e| format!("generate its serving certificate: {e}"))?;
    let cert = dir.join("serving.crt");
    let key = dir.join("serving.key");
    write_file(&cert, &serving.cert.pem(), 0o644)?;
    write_file(&key, &serving.signing_key.serialize_pem(), 0o600)?;
    let root_cert = serving.cert.der().to_vec();

    let ca = plane.ca_cert();
    let log = plane.run_dir.join("kube-controller-manager.log");
    let kubeconfig = plane.kubeconfig.display();
    let mut last_error = String::new();
    // The free port is picked by binding port 0 and releasing it; another process can take it in
    // between, so a failed start is tried again with a new one.
    for _attempt in 0..3 {
        let [port] = free_ports()?;
        let args = vec![
            format!("--kubeconfig={kubeconfig}"),
            // Its own port: /healthz answers anyone; the rest (/metrics) takes client
            // certificates of the test CA (the admin kubeconfig's) or tokens (TokenReview), and
            // asks the API server (SubjectAccessReview). The CA is given rather than looked up in
            // the `extension-apiserver-authentication` ConfigMap, which has no front-proxy CA here:
            // the lookup would log an error about that again and again.
            format!("--authentication-kubeconfig={kubeconfig}"),
            "--authentication-skip-lookup".into(),
            format!("--client-ca-file={}", ca.display()),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            "--leader-elect=false".into(),
            format!("--controllers={}", CONTROLLERS.join(",")),
            "--profiling=false".into(),
            "--v=2".into(),
        ];
        let started = Instant::now();
        let child = spawn(program.clone(), &args, &log)?;
        *process() = Some(child);
        let server = format!("https://127.0.0.1:{port}");
        match wait_ready(&server, &root_cert) {
            Ok(()) => {
                return Ok(ControllerManager {
                    server,
                    log,
                    started_in: started.elapsed(),
                });
            }
            Err(reason) => {
                if let Some(mut child) = process().take() {
                    super::stop(&mut child);
                }
                last_error = format!(
                    "{reason}\n--- {} (tail) ---\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
        }
    }
    Err(last_error)
}

/// Polls `/healthz?verbose` until it lists every controller of [`CONTROLLERS`] as `ok` (they are
/// added to it once started); fails at once when the process exits, or after 60 s.
fn wait_ready(server: &str, root_cert: &[u8]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let mut config = Config::new(server.parse().map_err(|e| format!("{server}: {e}"))?);
        config.root_cert = Some(vec![root_cert.to_vec()]);
        config.read_timeout = Some(Duration::from_secs(5));
        let client = Client::try_from(config).map_err(|e| format!("client for {server}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let mut process = process();
                let child = process.as_mut().ok_or("its process is gone")?;
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("kube-controller-manager exited ({status})"));
                }
            }
            let last_answer = match client.request_text(http_get("/healthz?verbose")).await {
                Ok(body) => {
                    if CONTROLLERS
                        .iter()
                        .all(|name| body.lines().any(|l| l.trim() == format!("[+]{name} ok")))
                    {
                        return Ok(());
                    }
                    body
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "its controllers {CONTROLLERS:?} were not all healthy after 60 s; \
                     last /healthz?verbose: {last_answer}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Deletes namespace `name` as `kubectl delete namespace` does (its objects are then deleted by
/// the namespace controller: see [`controller_manager`]). Panics when the API server refuses.
pub async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete namespace {name}: {e}"));
}

/// Waits until namespace `name` is gone (polling) and returns how long that took: at least 5 s,
/// the namespace controller's fixed delay before it handles a deleted namespace. Needs the
/// kube-controller-manager of this test binary ([`controller_manager`]; without it a deleted
/// namespace stays `Terminating`). Panics, at once when it is not running and otherwise after
/// `timeout`, with what holds the namespace: its phase, finalizers and the namespace controller's
/// conditions (e.g. `NamespaceFinalizersRemaining`), and the tail of the controller-manager's log.
/// Does not delete it: [`delete_namespace`] or `kubectl delete namespace` first.
pub async fn wait_namespace_gone(client: &Client, name: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    let namespaces = Api::<Namespace>::all(client.clone());
    let log = || {
        CONTROLLER_MANAGER
            .get()
            .and_then(|started| started.as_ref().ok())
            .map(|manager| {
                format!(
                    "\n--- {} (tail) ---\n{}",
                    manager.log.display(),
                    log_tail(&manager.log)
                )
            })
            .unwrap_or_default()
    };
    loop {
        if let Err(reason) = controller_manager_running() {
            panic!("namespace {name} cannot go away: {reason}{}", log());
        }
        // A failed read (say, while the test has stopped the API server) is tried again.
        let seen = match namespaces.get_opt(name).await {
            Ok(None) => return started.elapsed(),
            Ok(Some(namespace)) => describe(&namespace),
            Err(e) => format!("cannot read it: {e}"),
        };
        if started.elapsed() > timeout {
            panic!(
                "namespace {name} still exists after {timeout:?}: {seen}{}",
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Phase, deletion timestamp, finalizers and conditions of a namespace, on one line.
fn describe(namespace: &Namespace) -> String {
    let status = namespace.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("-");
    let deleting = namespace
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or("not deleted".to_string(), |t| format!("deleted at {}", t.0));
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|spec| spec.finalizers.clone())
        .unwrap_or_default();
    let conditions: Vec<String> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={} ({}: {})",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or("-"),
                c.message.as_deref().unwrap_or("-")
            )
        })
        .collect();
    format!(
        "phase {phase}, {deleting}, spec.finalizers {finalizers:?}, metadata.finalizers {:?}, \
         conditions {conditions:?}",
        namespace.finalizers()
    )
}
