//! The workspace's own programs run as separate processes by the programs that measure or
//! torture them (`examples/chaos.rs`, `benches/release.rs`): built first with the cargo and
//! profile that built the caller, then started with production flags except the ECS endpoint,
//! and always spawned through [`crate::supervisor`] so they end with the caller.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, READY_PREFIX, TEST_ARGS};

/// Builds the controller and the simulator with the caller's cargo (`env!("CARGO")`) in the
/// workspace (`manifest_dir`) and profile, so the programs it starts are never stale. A dev build
/// is `cargo build --workspace --bins --examples`: the same package selection and dev-dependency
/// features as `scripts/test.sh`'s `--all-targets` build, so after it this is a no-op instead
/// of a rebuild with other features.
pub fn build_workspace_programs(cargo: &str, manifest_dir: &str) -> Result<(), String> {
    let mut command = Command::new(cargo);
    // Not the variables `cargo run`/`cargo bench` set for the caller: build scripts that watch
    // the environment would see a change and rebuild (here, and again in the next plain build).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let kept = [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_",
            "CARGO_PROFILE_",
            "CARGO_TERM_",
            "CARGO_NET_",
            "CARGO_HTTP_",
            "CARGO_REGISTRIES_",
            "CARGO_REGISTRY_",
            "CARGO_INCREMENTAL",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix));
        if (name.starts_with("CARGO") && !kept) || name == "OUT_DIR" {
            command.env_remove(name.as_ref());
        }
    }
    command.current_dir(manifest_dir).arg("build");
    if profile_dir().file_name().is_some_and(|p| p == "release") {
        // Only the two programs, exactly as scripts/node-e2e.sh builds them (LTO makes every
        // other release target expensive), so either build reuses the other's.
        command.args([
            "--release",
            "--locked",
            "-p",
            "ecs-instance-controller",
            "-p",
            "ecs-sim",
        ]);
        command.args(["--bin", "ecs-instance-controller", "--bin", "ecs-sim"]);
    } else {
        command.args(["--workspace", "--bins", "--examples"]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the binaries failed ({status})"));
    }
    Ok(())
}

/// `target/<profile>` of the running program (`target/<profile>/examples/x`,
/// `target/<profile>/deps/x-hash` or `target/<profile>/x`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this program");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir
        .file_name()
        .is_some_and(|d| d == "examples" || d == "deps")
    {
        dir.pop();
    }
    dir
}

/// A binary of the workspace in [`profile_dir`], or `$env_override` when set.
pub fn workspace_program(name: &str, env_override: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env_override) {
        return Ok(path.into());
    }
    let path = profile_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it (cargo build --bins) or set {env_override}",
            path.display()
        ))
    }
}

/// `ecs-sim` ([`workspace_program`], `$ECS_SIM_BIN`) on a free loopback port with testkit's
/// test arguments plus `extra`; returns the child and its URL.
pub fn start_sim_process(extra: &[&str]) -> Result<(Child, String), String> {
    let binary = workspace_program("ecs-sim", "ECS_SIM_BIN")?;
    let mut command = Command::new(&binary);
    command
        .args(TEST_ARGS)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = crate::supervisor::spawn_for_test_binary(command)
        .map_err(|e| format!("start {}: {e}", binary.display()))?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| format!("ecs-sim: {e}"))?;
    let endpoint = line
        .trim()
        .strip_prefix(READY_PREFIX)
        .ok_or_else(|| format!("unexpected first line from ecs-sim: {line:?}"))?
        .to_owned();
    // Keep reading (and discarding) so the simulator never writes into a closed pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    Ok((child, endpoint))
}

/// What a measuring program started (the simulator, the current controller process, the
/// directory of the controllers' logs), stopped by PID at its end; PDEATHSIG is the backstop.
#[derive(Default)]
pub struct Started {
    pub sim: Option<Child>,
    pub controller: Option<ControllerProcess>,
    pub log_dir: Option<PathBuf>,
}

impl Started {
    /// SIGKILLs and reaps the controller and the simulator.
    pub fn stop_all(&mut self) {
        if let Some(mut controller) = self.controller.take() {
            controller.kill();
        }
        if let Some(mut sim) = self.sim.take() {
            let _ = sim.kill();
            let _ = sim.wait();
        }
    }
}

/// The settings of controller processes: the production defaults except the ECS endpoint,
/// loopback operational ports and the watched namespace (plus `extra` flags). Credentials are
/// the simulator's test account, from the environment as in a Deployment.
pub struct ControllerLauncher {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub endpoint: String,
    pub namespace: String,
    pub log_dir: PathBuf,
    pub extra: Vec<String>,
}

/// One controller process; `life` numbers the processes of a launcher (and names its log).
pub struct ControllerProcess {
    pub child: Child,
    pub life: usize,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
}

impl ControllerProcess {
    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControllerLauncher {
    /// Starts process number `life`, logging to `<log_dir>/controller-<life>.log`.
    pub fn start(&self, life: usize) -> Result<ControllerProcess, String> {
        let [metrics, health] = crate::free_ports()?;
        let log = self.log_dir.join(format!("controller-{life}.log"));
        let log = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--ecs-endpoint={}", self.endpoint))
            .arg(format!("--namespaces={}", self.namespace))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
            .arg(format!("--health-addr=127.0.0.1:{health}"))
            .args(&self.extra)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = crate::supervisor::spawn_for_test_binary(command)
            .map_err(|e| format!("start {}: {e}", self.binary.display()))?;
        Ok(ControllerProcess {
            child,
            life,
            metrics_url: format!("http://127.0.0.1:{metrics}/metrics"),
        })
    }
}

/// The API server's Prometheus metrics (`GET /metrics`), as text.
pub async fn apiserver_metrics(client: &kube::Client) -> Result<String, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| format!("GET /metrics of the API server: {e}"))
}

/// User + system CPU seconds of a process (/proc/PID/stat, in clock ticks of 1/100 s on Linux).
pub fn process_cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the name and state.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok((user + system) / clock_ticks_per_second()),
        _ => Err(format!("unexpected {path}: {stat}")),
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A `Vm*` line of /proc/PID/status in MiB.
pub fn process_memory_mib(pid: u32, field: &str) -> Result<f64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| format!("no {field} in {path}"))
}
