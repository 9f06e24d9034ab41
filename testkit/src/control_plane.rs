//! A real etcd + kube-apiserver on loopback, started once per test binary (envtest-style).
//!
//! The binaries come from `scripts/build-testbin.sh` (built from the Go module proxy and cached
//! outside the repository). They end with the test binary (see `supervisor`).
//!
//! The state (certificates and private keys, etcd data, logs) lives in `ecs-testenv-<pid>` in the
//! temporary directory, mode 0700, keys 0600. It is removed, and etcd and kube-apiserver (and
//! kube-controller-manager) are killed first, when the process that made it exits normally
//! (`exit`, return from `main`, the end of a test binary, a panic in `main`) or calls
//! [`shut_down`]; a binary that must survive SIGINT/SIGTERM handles them and returns (as
//! `local-control-plane` does). Directories of processes that died otherwise (SIGKILL) are removed
//! by the next start.
//!
//! kube-controller-manager (the namespace controller and the garbage collector) is opt-in: a test
//! binary that calls [`controller_manager`] gets one for its control plane (see that module).
//!
//! Outages: [`stop_apiserver`] kills kube-apiserver (as a crash would; etcd keeps running) and
//! [`start_apiserver`] starts it again with the same arguments, so on the same address and port,
//! with the same certificates and etcd, and returns once `/readyz` answers `ok`
//! ([`restart_apiserver`] does both). Tests that stop it must not run next to tests that need it:
//! put them in a test binary of their own and serialise them.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::TcpListener,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, MutexGuard, Once, OnceLock, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use crate::supervisor::spawn_for_test_binary;
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};

mod controller_manager;
pub use controller_manager::{
    CONTROLLERS, ControllerManager, controller_manager, controller_manager_running,
    delete_namespace, wait_namespace_gone,
};

/// Everything a test needs to reach the shared control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// Directory holding `kube-apiserver`, `etcd` and `kubectl` (and `kube-controller-manager`).
    pub testbin: PathBuf,
    /// A kubeconfig for the admin user (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// The API server URL, `https://127.0.0.1:PORT`.
    pub server: String,
    /// Where the certificates, etcd data and logs live (mode 0700; removed when this process
    /// exits, see [`shut_down`]).
    pub run_dir: PathBuf,
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane of this test binary, started on first use. Panics with the reason (and the
/// tail of the component's log) when it cannot start: tests that need it must fail, not skip.
pub fn control_plane() -> &'static ControlPlane {
    match CONTROL_PLANE.get_or_init(start_supervised) {
        Ok(plane) => plane,
        Err(reason) => {
            panic!("the test control plane (etcd + kube-apiserver) could not start: {reason}")
        }
    }
}

impl ControlPlane {
    /// A fresh client (clients must not outlive the tokio runtime of the test that made them).
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read test kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("load test kubeconfig");
        Client::try_from(config).expect("build kube client")
    }

    /// The test CA (PEM): it signed the API server's serving certificate and the admin client
    /// certificate, and the API server accepts client certificates it signed (`write_pki`).
    pub fn ca_cert(&self) -> PathBuf {
        self.run_dir.join("pki").join("ca.crt")
    }

    /// Path of the `kubectl` built alongside the API server.
    pub fn kubectl(&self) -> PathBuf {
        self.testbin.join("kubectl")
    }
}

/// A client and a namespace of its own for one test.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

/// Creates a fresh namespace for one test. It is not deleted afterwards (each test binary has its
/// own etcd): deleting a namespace takes the namespace controller of kube-controller-manager, which
/// runs only in test binaries that ask for it ([`controller_manager`]); elsewhere a deleted
/// namespace stays `Terminating`. A test that has it can delete the namespace with
/// [`delete_namespace`] (or `kubectl delete namespace`) and wait for it with
/// [`wait_namespace_gone`].
pub async fn test_namespace(prefix: &str) -> TestNamespace {
    let client = control_plane().client().await;
    // Each test binary has its own etcd, so a counter makes names unique.
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    create_namespace(&client, &name).await;
    TestNamespace { client, name }
}

/// Creates a namespace (panics with the reason when the API server refuses).
pub async fn create_namespace(client: &Client, name: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Runs the start-up on a thread of its own: it drives a tokio runtime, which cannot nest in
/// the calling test's runtime.
fn start_supervised() -> Result<ControlPlane, String> {
    std::thread::scope(|scope| scope.spawn(start_with_retries).join())
        .map_err(|_| "control plane start-up panicked".to_string())?
}

fn start_with_retries() -> Result<ControlPlane, String> {
    let testbin = testbin_dir()?;
    let mut last_error = String::new();
    // Free ports are picked by binding port 0 and releasing it; another process can take one in
    // between, so a failed start is tried again with new ports.
    for _attempt in 0..3 {
        match start_once(&testbin) {
            Ok(plane) => return Ok(plane),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// `$KUBE_TESTBIN`, else whatever `scripts/build-testbin.sh` prints (it builds once, then is a
/// no-op), so the versions live in that one script.
fn testbin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("KUBE_TESTBIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = workspace_root().join("scripts/build-testbin.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .to_path_buf()
}

fn start_once(testbin: &Path) -> Result<ControlPlane, String> {
    for binary in ["etcd", "kube-apiserver"] {
        if !testbin.join(binary).is_file() {
            return Err(format!(
                "{} is missing: run scripts/build-testbin.sh",
                testbin.join(binary).display()
            ));
        }
    }
    remove_stale_run_dirs();
    let run_dir = create_run_dir()?;
    let mut children = Vec::new();
    let started = start_processes(testbin, &run_dir, &mut children);
    match started {
        // Not killed on drop: they run until this process exits (see `shut_down`; PDEATHSIG
        // ends them when it is killed). The API server's handle is kept for restarts.
        Ok((plane, command)) => {
            let child = children.pop().expect("kube-apiserver was started last");
            *apiserver() = Some(ApiServer {
                command,
                child: Some(child),
            });
            Ok(plane)
        }
        Err(reason) => {
            children.iter_mut().for_each(stop);
            Err(reason)
        }
    }
}

/// Starts etcd and kube-apiserver in `run_dir` (pushing each onto `children` as it starts) and
/// waits until the API server is ready and the CRDs are established. Returns the plane and how
/// kube-apiserver was started.
fn start_processes(
    testbin: &Path,
    run_dir: &Path,
    children: &mut Vec<Child>,
) -> Result<(ControlPlane, ApiServerCommand), String> {
    let pki = write_pki(run_dir)?;
    let etcd_dir = run_dir.join("etcd");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&etcd_dir)
        .map_err(|e| format!("create {}: {e}", etcd_dir.display()))?;

    let [etcd_port, peer_port, api_port] = free_ports()?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    children.push(spawn(
        testbin.join("etcd"),
        &[
            "--name=testenv".into(),
            format!("--data-dir={}", etcd_dir.display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testenv={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
        &run_dir.join("etcd.log"),
    )?);
    wait_until(
        Duration::from_secs(30),
        || tcp_ready(etcd_port),
        &mut children[0],
        &run_dir.join("etcd.log"),
    )?;

    let server = format!("https://127.0.0.1:{api_port}");
    let mut args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--cert-dir={}", pki.dir.display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        "--authorization-mode=RBAC".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        format!("--service-account-issuer={server}/"),
        format!(
            "--service-account-key-file={}",
            pki.service_account_public_key.display()
        ),
        format!(
            "--service-account-signing-key-file={}",
            pki.service_account_key.display()
        ),
        "--allow-privileged=true".into(),
        "--disable-admission-plugins=ServiceAccount".into(),
    ];
    if let Some(address) = advertise_address()? {
        args.push(format!("--advertise-address={address}"));
    }
    let command = ApiServerCommand {
        program: testbin.join("kube-apiserver"),
        args,
        log: run_dir.join("kube-apiserver.log"),
    };
    let apiserver_log = command.log.clone();
    children.push(spawn(command.program.clone(), &command.args, &command.log)?);

    let kubeconfig = run_dir.join("kubeconfig");
    write_file(&kubeconfig, &kubeconfig_yaml(&server, &pki), 0o600)?;
    let plane = ControlPlane {
        testbin: testbin.to_path_buf(),
        kubeconfig,
        server,
        run_dir: run_dir.to_path_buf(),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let setup = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(120),
            wait_ready_and_install_crds(&plane, &mut children[1]),
        )
        .await
        .unwrap_or_else(|_| {
            Err("timed out after 120 s waiting for kube-apiserver to become ready".into())
        })
    });
    setup.map_err(|reason| {
        format!(
            "{reason}\n--- kube-apiserver.log (tail) ---\n{}",
            log_tail(&apiserver_log)
        )
    })?;
    Ok((plane, command))
}

/// How kube-apiserver was started: a restart runs exactly this again.
struct ApiServerCommand {
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

/// The kube-apiserver of this process's control plane.
struct ApiServer {
    command: ApiServerCommand,
    /// `None` while stopped.
    child: Option<Child>,
}

static APISERVER: Mutex<Option<ApiServer>> = Mutex::new(None);

/// Lock order: `APISERVER` before `OWNED`.
fn apiserver() -> MutexGuard<'static, Option<ApiServer>> {
    APISERVER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills kube-apiserver at once (SIGKILL, like a crash: open connections and watches break) and
/// reaps it; etcd and the state directory stay. Starts the control plane first if this test
/// binary has none yet; does nothing when the API server is stopped already.
pub fn stop_apiserver() {
    control_plane();
    let mut guard = apiserver();
    let Some(mut child) = guard.as_mut().and_then(|server| server.child.take()) else {
        return;
    };
    let mut owned = owned();
    // Not in the list: `shut_down` has killed and reaped it already (its PID may be reused).
    if let Some(index) = owned.pids.iter().position(|&pid| pid == child.id()) {
        let _ = child.kill();
        let _ = child.wait();
        owned.pids.remove(index);
    }
}

/// Starts kube-apiserver again after [`stop_apiserver`] with the same arguments (address, port,
/// certificates, etcd; its output is appended to `kube-apiserver.log`) and waits until `/readyz`
/// answers `ok`; when it runs already, only waits for that. Returns how long it took. Panics with
/// the reason and the tail of its log when it is not ready within 60 s.
pub async fn start_apiserver() -> Duration {
    let plane = control_plane();
    let started = Instant::now();
    let log = {
        let mut guard = apiserver();
        let server = guard
            .as_mut()
            .expect("the control plane of this process has a kube-apiserver");
        if server.child.is_none() {
            let command = &server.command;
            let child = spawn(command.program.clone(), &command.args, &command.log)
                .unwrap_or_else(|reason| panic!("restart kube-apiserver: {reason}"));
            server.child = Some(child);
        }
        server.command.log.clone()
    };
    let fail = |reason: String| -> ! {
        panic!(
            "restarted kube-apiserver: {reason}\n--- {} (tail) ---\n{}",
            log.display(),
            log_tail(&log)
        )
    };
    let client = plane.client().await;
    let deadline = started + Duration::from_secs(60);
    loop {
        if let Err(reason) = apiserver_running() {
            fail(reason);
        }
        let ready = tokio::time::timeout(
            Duration::from_secs(2),
            client.request_text(http_get("/readyz")),
        )
        .await
        .is_ok_and(|answer| answer.is_ok_and(|body| body.trim() == "ok"));
        if ready {
            return started.elapsed();
        }
        if Instant::now() > deadline {
            fail("/readyz not ok after 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether kube-apiserver still runs; one that exited is reaped and forgotten (so its PID, which
/// may be reused, is not signalled at exit) and can be started again.
fn apiserver_running() -> Result<(), String> {
    let mut guard = apiserver();
    let Some(slot) = guard.as_mut().map(|server| &mut server.child) else {
        return Err("the control plane was never started".into());
    };
    let Some(child) = slot.as_mut() else {
        return Err("stopped while starting".into());
    };
    let status = match child.try_wait() {
        Ok(None) => return Ok(()),
        Ok(Some(status)) => status,
        Err(e) => return Err(format!("cannot check its process: {e}")),
    };
    let pid = child.id();
    *slot = None;
    owned().pids.retain(|&p| p != pid);
    Err(format!("exited ({status})"))
}

/// [`stop_apiserver`], `down_for`, then [`start_apiserver`]; returns the start-up time (until
/// `/readyz` answered `ok`).
pub async fn restart_apiserver(down_for: Duration) -> Duration {
    stop_apiserver();
    tokio::time::sleep(down_for).await;
    start_apiserver().await
}

async fn wait_ready_and_install_crds(
    plane: &ControlPlane,
    apiserver: &mut Child,
) -> Result<(), String> {
    let client = plane.client().await;
    // Like envtest: ready once /readyz answers ok and the `default` namespace exists.
    loop {
        if let Ok(Some(status)) = apiserver.try_wait() {
            return Err(format!("kube-apiserver exited ({status})"));
        }
        let ready = client
            .request_text(http_get("/readyz"))
            .await
            .is_ok_and(|body| body.trim() == "ok");
        if ready
            && Api::<Namespace>::all(client.clone())
                .get_opt("default")
                .await
                .ok()
                .flatten()
                .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in read_crds()? {
        let name = crd
            .metadata
            .name
            .clone()
            .ok_or("a CRD in crds/ has no name")?;
        crds.patch(
            &name,
            &PatchParams::apply("testkit").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| format!("install CRD {name}: {e}"))?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .map_err(|_| format!("CRD {name} not established after 30 s"))?
        .map_err(|e| format!("wait for CRD {name}: {e}"))?;
    }
    Ok(())
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .body(Vec::new())
        .expect("valid request")
}

fn read_crds() -> Result<Vec<CustomResourceDefinition>, String> {
    let dir = workspace_root().join("crds");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text =
                fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
            serde_saphyr::from_str(&text).map_err(|e| format!("parse {}: {e}", path.display()))
        })
        .collect()
}

const RUN_DIR_PREFIX: &str = "ecs-testenv-";

/// What this process must undo when it exits: its run directory and the processes using it.
struct Owned {
    run_dir: Option<PathBuf>,
    pids: Vec<u32>,
    /// Set by `shut_down`: nothing may be started any more (a start-up still running on another
    /// thread fails instead of leaving processes or files behind).
    closed: bool,
}

static OWNED: Mutex<Owned> = Mutex::new(Owned {
    run_dir: None,
    pids: Vec::new(),
    closed: false,
});

fn owned() -> MutexGuard<'static, Owned> {
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills (SIGKILL; their state is throw-away) and reaps the etcd, kube-apiserver and (when
/// started) kube-controller-manager of this process and removes its run directory. Idempotent;
/// runs by itself when the process exits normally. Afterwards this process can start no control
/// plane.
pub fn shut_down() {
    let mut owned = owned();
    owned.closed = true;
    for pid in owned.pids.drain(..) {
        let pid = pid as libc::pid_t;
        // SAFETY: plain system calls on a child of this process that nothing else reaps (its
        // `Child` was dropped unwaited, or `stop` removed it from this list after reaping it).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    if let Some(dir) = owned.run_dir.take() {
        let _ = fs::remove_dir_all(dir);
    }
}

extern "C" fn shut_down_at_exit() {
    shut_down();
}

/// A fresh `ecs-testenv-<pid>` (mode 0700) in the temporary directory, removed at exit.
fn create_run_dir() -> Result<PathBuf, String> {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a handler that does not unwind (`shut_down` cannot panic).
        unsafe { libc::atexit(shut_down_at_exit) };
    });
    let run_dir = std::env::temp_dir().join(format!("{RUN_DIR_PREFIX}{}", std::process::id()));
    let mut owned = owned();
    if owned.closed {
        return Err("the control plane of this process was shut down".into());
    }
    // An earlier attempt of this process leaves it behind. Created without `_all` and after the
    // removal (which never follows a symlink): a path that someone else put there in between
    // makes this fail instead of being used.
    let _ = fs::remove_dir_all(&run_dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&run_dir)
        .map_err(|e| format!("create {}: {e}", run_dir.display()))?;
    owned.run_dir = Some(run_dir.clone());
    Ok(run_dir)
}

/// Kills and reaps a process of a failed start, and forgets it (so its PID, which may be reused,
/// is not signalled again at exit).
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
    owned().pids.retain(|&pid| pid != child.id());
}

/// Run directories of test binaries that have exited (their processes ended with them).
fn remove_stale_run_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(RUN_DIR_PREFIX)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts `program` (it ends with this process), its output appended to `log`.
fn spawn(program: PathBuf, args: &[String], log: &Path) -> Result<Child, String> {
    // Appended: a restarted kube-apiserver writes after the output of its earlier run.
    let log_file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let stderr = log_file
        .try_clone()
        .map_err(|e| format!("clone log handle: {e}"))?;
    let mut command = Command::new(&program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr);
    // Spawned and recorded under the lock, so `shut_down` (at exit, perhaps while a start-up
    // runs on another thread) sees every process or prevents it.
    let mut owned = owned();
    if owned.closed {
        return Err(format!(
            "start {}: the control plane of this process was shut down",
            program.display()
        ));
    }
    let child =
        spawn_for_test_binary(command).map_err(|e| format!("start {}: {e}", program.display()))?;
    owned.pids.push(child.id());
    Ok(child)
}

/// Writes a new file (never through an existing path) with `mode`.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn wait_until(
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    child: &mut Child,
    log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} exited ({status}):\n{}",
                log.display(),
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err(format!("not ready after {timeout:?}:\n{}", log_tail(log)))
}

fn tcp_ready(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Free loopback ports: bound to port 0, then released (another process could take one in
/// between; callers that start servers on them retry).
pub fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("find a free port: {e}"))?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<u16>, _>>()
        .map_err(|e| format!("find a free port: {e}"))?;
    Ok(std::array::from_fn(|i| ports[i]))
}

/// kube-apiserver derives its advertise address from the default route; loopback is refused.
/// Without a default route, the first non-loopback local address is passed explicitly (it is
/// only recorded in the `kubernetes` Endpoints; no traffic goes to it).
fn advertise_address() -> Result<Option<String>, String> {
    let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let has_default_route = routes
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1) == Some("00000000"));
    if has_default_route {
        return Ok(None);
    }
    let trie = fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let lines: Vec<&str> = trie.lines().collect();
    lines
        .windows(2)
        .filter(|pair| pair[1].contains("/32 host LOCAL"))
        .filter_map(|pair| pair[0].trim().strip_prefix("|-- "))
        .find(|address| !address.starts_with("127."))
        .map(|address| Some(address.to_string()))
        .ok_or_else(|| {
            "no default route and no non-loopback IPv4 address for --advertise-address".into()
        })
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

struct Pki {
    dir: PathBuf,
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    service_account_key: PathBuf,
    service_account_public_key: PathBuf,
}

/// A CA, a serving certificate for 127.0.0.1, an admin client certificate (O=system:masters, the
/// x509 authenticator's group mapping) and a service-account signing key.
fn write_pki(run_dir: &Path) -> Result<Pki, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| format!("generate test certificates: {e}");
    let dir = run_dir.join("pki");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ecs-testenv-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate().map_err(err)?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "10.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .map_err(err)?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer).map_err(err)?;

    let admin_key = KeyPair::generate().map_err(err)?;
    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    admin.distinguished_name = DistinguishedName::new();
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin
        .distinguished_name
        .push(DnType::CommonName, "testenv-admin");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(err)?;

    let service_account_key = KeyPair::generate().map_err(err)?;

    let files: BTreeMap<&str, String> = BTreeMap::from([
        ("ca.crt", ca_cert.pem()),
        ("apiserver.crt", serving_cert.pem()),
        ("apiserver.key", serving_key.serialize_pem()),
        ("admin.crt", admin_cert.pem()),
        ("admin.key", admin_key.serialize_pem()),
        ("sa.key", service_account_key.serialize_pem()),
        ("sa.pub", service_account_key.public_key_pem()),
    ]);
    for (name, pem) in &files {
        // Private keys are readable by the owner only.
        let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
        write_file(&dir.join(name), pem, mode)?;
    }
    Ok(Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        service_account_key: dir.join("sa.key"),
        service_account_public_key: dir.join("sa.pub"),
        dir,
    })
}

fn kubeconfig_yaml(server: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: testenv-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-admin
current-context: testenv
",
        ca = pki.ca_cert.display(),
        cert = pki.admin_cert.display(),
        key = pki.admin_key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apiserver_pid() -> Option<u32> {
        apiserver()
            .as_ref()
            .and_then(|server| server.child.as_ref())
            .map(Child::id)
    }

    #[tokio::test]
    async fn the_api_server_restarts_on_the_same_address_with_the_same_etcd() {
        let plane = control_plane();
        let client = plane.client().await;
        create_namespace(&client, "before-restart").await;
        let log = plane.run_dir.join("kube-apiserver.log");
        let log_before = fs::metadata(&log).expect("kube-apiserver.log").len();
        let pid_before = apiserver_pid().expect("running");

        stop_apiserver();
        assert_eq!(apiserver_pid(), None);
        assert!(!owned().pids.contains(&pid_before), "forgotten once reaped");
        assert!(
            client.request_text(http_get("/readyz")).await.is_err(),
            "nothing answers while it is stopped"
        );
        stop_apiserver(); // already stopped: nothing to do

        start_apiserver().await;
        let pid_after = apiserver_pid().expect("running again");
        assert_ne!(pid_after, pid_before);
        assert!(
            owned().pids.contains(&pid_after),
            "ended at exit like the first one"
        );
        // The same kubeconfig (address, CA, client certificate) reaches it, and etcd kept the data.
        let client = plane.client().await;
        assert_eq!(
            client
                .request_text(http_get("/readyz"))
                .await
                .expect("ready"),
            "ok"
        );
        let kept = Api::<Namespace>::all(client)
            .get_opt("before-restart")
            .await;
        assert!(kept.expect("get namespace").is_some());
        assert!(
            fs::metadata(&log).expect("kube-apiserver.log").len() > log_before,
            "the new run's output is appended to the log"
        );
        // Running already: only waits for /readyz.
        start_apiserver().await;
        assert_eq!(apiserver_pid(), Some(pid_after));
    }
}
