//! Mass release at scale: N `EcsInstance` resources for Stopped instances deleted at once, with
//! the real controller binary (release build) as a separate process, production flags except
//! the ECS endpoint, so the memory and CPU figures are the controller's alone. A program that
//! prints figures; it asserts nothing about time (it fails only when a run cannot finish).
//!
//! ```sh
//! cargo bench --bench release -- --n 1000                  # quota 10/s: batched, unbatched, +50 ms
//! cargo bench --bench release -- --n 10000 --quota 50 --idle 60
//! cargo bench --bench release -- --help
//! ```
//!
//! It first builds the controller and the simulator in the release profile (as
//! `scripts/node-e2e.sh` does; `--no-build` skips it). Every process it starts (etcd,
//! kube-apiserver, ecs-sim, the controller) ends with it.
//!
//! Each mode is one run on the same control plane, in a namespace of its own:
//! 1. a fresh simulator; N resources created (no controller yet), each naming the namespace's
//!    credentials Secret (`spec.credentialsRef`), then their N instances seeded Stopped and
//!    already tagged as owned by them — the state of a controller restarted with N
//!    adopted resources, so set-up does not cost N `TagResources` calls;
//! 2. the controller started (`--ecs-qps Q --ecs-burst 2Q`, the rest default; the baseline
//!    mode adds `--ecs-describe-batch-max 1`: one `DescribeInstances` per lookup); the time
//!    until all N are Ready;
//! 3. idle: CPU and RSS of the controller over `--idle` seconds while N sit Ready;
//! 4. the simulator enforces the account's quota (Q calls per second on each action, fixed
//!    1 s windows; the latency mode also adds 50 ms to every call), then all N are deleted at
//!    once (one DELETE each, 32 in flight); the run waits until every resource is gone.
//!
//! Figures per mode: time from the deletion until every finalizer is gone and its ratio to the
//! floor N / Q; per-resource release latency (deletionTimestamp seen → gone) p50/p99; ECS calls
//! per release by action (the simulator's call log) and the throttled share; Kubernetes writes
//! and reads per release by resource (the API server's `apiserver_request_total`, minus the
//! bench's own DELETEs and watch); status writes per release (seen by a watch);
//! the controller's peak and steady RSS and CPU seconds. Then a comparison of the modes.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    pin::pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use ecs_instance_controller::{
    EcsInstance, EcsInstanceStatus,
    conditions::{READY, is_true},
    resource::{OWNER_TAG, OWNER_UID_TAG},
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use testkit::{
    programs::{
        ControllerLauncher, Started, apiserver_metrics, build_workspace_programs,
        process_cpu_seconds, process_memory_mib, start_sim_process, workspace_program,
    },
    sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim},
};

const REGION: &str = "cn-hangzhou";
const SECRET: &str = "ecs-credentials";

#[derive(Parser, Debug)]
#[command(about = "Mass release against the real controller binary (see the source's header)")]
struct Args {
    /// Resources (Stopped instances) deleted at once.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// The account's ECS quota, calls per second on each action: enforced by the simulator,
    /// told to the controller as `--ecs-qps` (burst twice that).
    #[arg(long, default_value_t = 10.0)]
    quota: f64,
    /// Modes, in order (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [Mode::Batched, Mode::Unbatched, Mode::Latency])]
    modes: Vec<Mode>,
    /// ECS latency added to every call in the `latency` mode, milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Seconds of idle measurement while every resource sits Ready.
    #[arg(long, default_value_t = 30)]
    idle: u64,
    /// Budget of one mode, seconds; past it the run fails.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// More flags for the controller (repeatable), e.g. `--controller-arg=--concurrency=256`.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    controller_args: Vec<String>,
    /// Do not build the controller and simulator first.
    #[arg(long)]
    no_build: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The controller as shipped.
    Batched,
    /// The baseline: `--ecs-describe-batch-max 1`, one DescribeInstances per lookup.
    Unbatched,
    /// As shipped, with the ECS latency of `--latency-ms` on every call.
    Latency,
    /// As shipped, the instances not yet tagged: N new resources adopt existing instances
    /// (one owner tag each) before they are Ready; the release follows as in the other modes.
    Adopt,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Batched => "batched",
            Mode::Unbatched => "unbatched",
            Mode::Latency => "latency",
            Mode::Adopt => "adopt",
        })
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.n == 0 || args.quota <= 0.0 {
        eprintln!("release bench: need --n ≥ 1 and --quota > 0");
        return std::process::ExitCode::from(2);
    }
    if !args.no_build
        && let Err(e) = build_workspace_programs(env!("CARGO"), env!("CARGO_MANIFEST_DIR"))
    {
        eprintln!("release bench: {e}");
        return std::process::ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut processes = Started::default();
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run_all(&args, &mut processes) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    processes.stop_all();
    drop(runtime);
    testkit::control_plane::shut_down();
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("release bench: FAILED: {e}");
            if let Some(dir) = &processes.log_dir {
                eprintln!("  controller logs kept in {}", dir.display());
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_all(args: &Args, processes: &mut Started) -> Result<(), String> {
    let started = Instant::now();
    // Started here, so its start-up is not part of the first mode.
    testkit::control_plane();
    println!(
        "release bench: control plane up in {:.1} s; N = {}, quota {}/s per action, modes {:?}, controller flags {:?}",
        started.elapsed().as_secs_f64(),
        args.n,
        args.quota,
        args.modes,
        args.controller_args
    );
    let log_dir = std::env::temp_dir().join(format!("ecs-release-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    processes.log_dir = Some(log_dir.clone());
    let mut results = Vec::new();
    for &mode in &args.modes {
        let budget = Duration::from_secs(args.timeout);
        let figures = tokio::time::timeout(budget, run_mode(args, mode, &log_dir, processes))
            .await
            .map_err(|_| {
                format!(
                    "mode {mode} did not finish within --timeout {}s",
                    args.timeout
                )
            })??;
        processes.stop_all();
        figures.print(args);
        results.push(figures);
    }
    compare(args, &results);
    let _ = std::fs::remove_dir_all(&log_dir);
    processes.log_dir = None;
    Ok(())
}

async fn run_mode(
    args: &Args,
    mode: Mode,
    log_dir: &std::path::Path,
    processes: &mut Started,
) -> Result<Figures, String> {
    let n = args.n;
    let ns = testkit::test_namespace(&format!("bench-{mode}")).await;
    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let watch = tokio::spawn(track(api.clone(), tally.clone()));

    let (sim_child, endpoint) = start_sim_process(&[])?;
    processes.sim = Some(sim_child);
    let sim = EcsSim::attach(&endpoint);
    let setup = Instant::now();
    // Every resource names the namespace's Secret (as in a cluster shared by teams), so the
    // reads per release show whether credentials cost a GET per pass.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": SECRET },
        "stringData": { "accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET },
    }))
    .map_err(|e| e.to_string())?;
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .map_err(|e| format!("create Secret {SECRET}: {e}"))?;
    let names: Vec<String> = (0..n).map(|i| format!("r-{i:05}")).collect();
    let instance = |i: usize| format!("i-bench{i:08}");
    let uids = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let api = api.clone();
            let body = json!({
                "apiVersion": "ecs.alicloud.dev/v1alpha1",
                "kind": "EcsInstance",
                "metadata": { "name": name },
                "spec": {
                    "instanceId": instance(i),
                    "regionId": REGION,
                    "credentialsRef": { "name": SECRET },
                },
            });
            async move {
                api.patch(name, &PatchParams::apply("bench"), &Patch::Apply(&body))
                    .await
                    .map(|created| created.uid().unwrap_or_default())
                    .map_err(|e| format!("apply {name}: {e}"))
            }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<String>, String>>()?;
    // Already adopted: the owner tags the controller would have put on them (not in the
    // adoption mode, where tagging them is what is measured).
    let specs = uids
        .iter()
        .enumerate()
        .map(|(i, uid)| {
            let tags = if mode == Mode::Adopt {
                json!({})
            } else {
                json!({ OWNER_TAG: format!("{}/{}", ns.name, names[i]), OWNER_UID_TAG: uid })
            };
            json!({
                "instanceId": instance(i),
                "regionId": REGION,
                "status": "Stopped",
                "tags": tags,
            })
        })
        .collect();
    sim.seed(Value::Array(specs)).await;
    let created = setup.elapsed();

    let qps = args.quota.to_string();
    let burst = ((args.quota * 2.0).ceil() as u64).max(1).to_string();
    let mut extra = vec![format!("--ecs-qps={qps}"), format!("--ecs-burst={burst}")];
    if mode == Mode::Unbatched {
        extra.push("--ecs-describe-batch-max=1".to_owned());
    }
    extra.extend(args.controller_args.iter().cloned());
    let launcher = ControllerLauncher {
        binary: workspace_program("ecs-instance-controller", "ECS_CONTROLLER_BIN")?,
        kubeconfig: testkit::control_plane().kubeconfig.clone(),
        endpoint: endpoint.clone(),
        namespace: ns.name.clone(),
        log_dir: log_dir.join(mode.to_string()),
        extra,
    };
    std::fs::create_dir_all(&launcher.log_dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let controller = launcher.start(1)?;
    let pid = controller.child.id();
    processes.controller = Some(controller);
    wait_until(&tally, |t| t.ready == n, "every resource Ready").await?;
    let to_ready = started.elapsed();
    let ready_calls = sim.calls(None).await;
    let ready_rss_mib = process_memory_mib(pid, "VmRSS")?;

    // Idle: every resource Ready, nothing to do until the resync.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu_before, calls_before) = (process_cpu_seconds(pid)?, sim.calls(None).await.len());
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle = Idle {
        seconds: idle_started.elapsed().as_secs_f64(),
        cpu: process_cpu_seconds(pid)? - cpu_before,
        rss_mib: process_memory_mib(pid, "VmRSS")?,
        peak_mib: process_memory_mib(pid, "VmHWM")?,
        ecs_calls: sim.calls(None).await.len() - calls_before,
    };
    let count = |action: &str| ready_calls.iter().filter(|c| c["action"] == action).count();
    eprintln!(
        "release bench: {n} Ready after {:.1} s ({} DescribeInstances, {} TagResources; RSS {ready_rss_mib:.1} MiB); idle {:.0} s: RSS {:.1} MiB, peak {:.1} MiB, {:.3} cores",
        to_ready.as_secs_f64(),
        count("DescribeInstances"),
        count("TagResources"),
        idle.seconds,
        idle.rss_mib,
        idle.peak_mib,
        idle.cpu / idle.seconds
    );

    let mut faults = vec![];
    for action in [
        "DescribeInstances",
        "StopInstance",
        "DeleteInstance",
        "TagResources",
    ] {
        faults.push(json!({ "action": action, "throttleQps": args.quota }));
    }
    if mode == Mode::Latency {
        faults.push(json!({ "latencyMs": args.latency_ms }));
    }
    sim.set_faults(Value::Array(faults)).await;
    sim.clear_calls().await;
    let requests_before = apiserver_requests(&ns.client).await?;
    let cpu_before = process_cpu_seconds(pid)?;
    let status_writes_before = tally.lock().expect("tally").status_writes;

    // One DELETE per resource, as `kubectl delete` and GitOps prunes do (a `deletecollection`
    // of 10,000 outlasts the client's timeout), 32 at a time.
    let deleted = Instant::now();
    futures::stream::iter(&names)
        .map(|name| {
            let api = api.clone();
            async move {
                api.delete(name, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("delete {name}: {e}"))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()?;
    let deletes_sent = deleted.elapsed();
    wait_until(&tally, |t| t.gone.len() == n, "every resource gone").await?;
    let mut requests = apiserver_requests(&ns.client)
        .await?
        .since(&requests_before);
    requests.forget(("DELETE", "ecsinstances"), n);
    let release_cpu = process_cpu_seconds(pid)? - cpu_before;
    let peak_rss_mib = process_memory_mib(pid, "VmHWM")?;
    let rss_after_mib = process_memory_mib(pid, "VmRSS")?;
    let calls = sim.calls(None).await;
    watch.abort();

    let tally = tally.lock().expect("tally");
    let mut latencies: Vec<f64> = tally
        .gone
        .iter()
        .filter_map(|(name, gone)| {
            let since = tally.deleting_since.get(name)?;
            Some(gone.duration_since(*since).as_secs_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last_gone = tally.gone.values().max().copied().unwrap_or(deleted);
    Ok(Figures {
        mode,
        n,
        created,
        to_ready,
        ready_describes: count("DescribeInstances"),
        ready_tags: count("TagResources"),
        ready_rss_mib,
        idle,
        release: last_gone.duration_since(deleted),
        deletes_sent,
        latencies,
        calls,
        requests,
        status_writes: tally.status_writes - status_writes_before,
        release_cpu,
        peak_rss_mib,
        rss_after_mib,
    })
}

/// What the bench's own watch saw.
#[derive(Default)]
struct Tally {
    ready: usize,
    status: HashMap<String, Option<EcsInstanceStatus>>,
    deleting_since: HashMap<String, Instant>,
    gone: HashMap<String, Instant>,
    /// Updates whose `status` differs from the version before: the API server sends every new
    /// resourceVersion to a watch (events are never merged), and the controller writes the
    /// status only when it changes, so this is exactly the number of status writes.
    status_writes: usize,
}

impl Tally {
    fn record(&mut self, resource: EcsInstance) {
        let name = resource.name_any();
        if resource.metadata.deletion_timestamp.is_some() {
            self.deleting_since
                .entry(name.clone())
                .or_insert_with(Instant::now);
        }
        self.ready += usize::from(is_ready(&resource.status));
        if let Some(previous) = self.status.insert(name, resource.status.clone()) {
            self.ready -= usize::from(is_ready(&previous));
            self.status_writes += usize::from(previous != resource.status);
        }
    }

    fn remove(&mut self, resource: EcsInstance) {
        let name = resource.name_any();
        if let Some(previous) = self.status.remove(&name) {
            self.ready -= usize::from(is_ready(&previous));
        }
        self.gone.insert(name, Instant::now());
    }
}

fn is_ready(status: &Option<EcsInstanceStatus>) -> bool {
    status
        .as_ref()
        .is_some_and(|s| is_true(&s.conditions, READY))
}

/// Keeps the tally from a watch of the namespace's resources.
async fn track(api: Api<EcsInstance>, tally: Arc<Mutex<Tally>>) {
    let mut events = pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let mut tally = tally.lock().expect("tally");
        match event {
            Ok(watcher::Event::Apply(resource) | watcher::Event::InitApply(resource)) => {
                tally.record(resource);
            }
            Ok(watcher::Event::Delete(resource)) => tally.remove(resource),
            Ok(_) => {}
            Err(error) => eprintln!("release bench: watch error (retried): {error}"),
        }
    }
}

async fn wait_until(
    tally: &Mutex<Tally>,
    done: impl Fn(&Tally) -> bool,
    what: &str,
) -> Result<(), String> {
    let mut last_report = Instant::now();
    loop {
        {
            let tally = tally.lock().expect("tally");
            if done(&tally) {
                return Ok(());
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "release bench: waiting for {what}: {} Ready, {} deleting, {} gone",
                    tally.ready,
                    tally.deleting_since.len(),
                    tally.gone.len()
                );
                last_report = Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Idle {
    seconds: f64,
    cpu: f64,
    rss_mib: f64,
    /// Peak RSS of the process until the end of the idle time (before the release).
    peak_mib: f64,
    ecs_calls: usize,
}

struct Figures {
    mode: Mode,
    n: usize,
    created: Duration,
    to_ready: Duration,
    ready_describes: usize,
    ready_tags: usize,
    /// The controller's RSS when every resource had just become Ready.
    ready_rss_mib: f64,
    idle: Idle,
    release: Duration,
    /// How long sending the N DELETE requests took.
    deletes_sent: Duration,
    latencies: Vec<f64>,
    calls: Vec<Value>,
    requests: Requests,
    status_writes: usize,
    release_cpu: f64,
    peak_rss_mib: f64,
    rss_after_mib: f64,
}

impl Figures {
    fn per_release(&self, count: usize) -> f64 {
        count as f64 / self.n as f64
    }

    fn ecs_calls(&self, action: Option<&str>) -> usize {
        self.calls
            .iter()
            .filter(|c| action.is_none_or(|a| c["action"] == a))
            .count()
    }

    fn throttled(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| {
                c["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("Throttling"))
            })
            .count()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn print(&self, args: &Args) {
        let n = self.n;
        let floor = n as f64 / args.quota;
        let seconds = self.release.as_secs_f64();
        let mode = match self.mode {
            Mode::Batched => "batched (as shipped)".to_owned(),
            Mode::Unbatched => "unbatched baseline (--ecs-describe-batch-max 1)".to_owned(),
            Mode::Latency => format!("batched, +{} ms ECS latency", args.latency_ms),
            Mode::Adopt => "batched, N new resources adopt untagged instances".to_owned(),
        };
        println!("\n== mode {}: {mode}", self.mode);
        println!(
            "  set-up: {n} resources created and their instances seeded in {:.1} s; all Ready {:.1} s after the controller started ({} DescribeInstances, {} TagResources; RSS {:.1} MiB)",
            self.created.as_secs_f64(),
            self.to_ready.as_secs_f64(),
            self.ready_describes,
            self.ready_tags,
            self.ready_rss_mib
        );
        println!(
            "  idle with {n} Ready: {:.3} CPU cores over {:.0} s, RSS {:.1} MiB (peak so far {:.1} MiB), {} ECS calls",
            self.idle.cpu / self.idle.seconds,
            self.idle.seconds,
            self.idle.rss_mib,
            self.idle.peak_mib,
            self.idle.ecs_calls
        );
        println!(
            "  deletion → every finalizer gone   {seconds:.1} s = {:.2} × the floor N / quota ({floor:.1} s); the {n} DELETEs took {:.1} s to send",
            seconds / floor,
            self.deletes_sent.as_secs_f64()
        );
        println!(
            "  release latency per resource      p50 {:.1} s, p99 {:.1} s, max {:.1} s (deletionTimestamp seen → gone)",
            self.percentile(50.0),
            self.percentile(99.0),
            self.latencies.last().copied().unwrap_or(f64::NAN)
        );
        let total = self.ecs_calls(None);
        println!(
            "  ECS calls per release             {:.3} ({total} calls; {} Throttling.* = {:.1} %)",
            self.per_release(total),
            self.throttled(),
            100.0 * self.throttled() as f64 / total.max(1) as f64
        );
        let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
        for call in &self.calls {
            *actions
                .entry(call["action"].as_str().unwrap_or("?"))
                .or_default() += 1;
        }
        for (action, count) in &actions {
            println!("    {action:<30} {:.3} ({count})", self.per_release(*count));
        }
        let (writes, reads) = (self.requests.writes(), self.requests.reads());
        let resource_writes = self.requests.writes_to("ecsinstances");
        println!(
            "  Kubernetes writes per release     {:.2} on the EcsInstance (status and finalizer; {} status writes seen by the watch = {:.2}), {:.2} events, {:.2} in all ({writes})",
            self.per_release(resource_writes),
            self.status_writes,
            self.per_release(self.status_writes),
            self.per_release(self.requests.writes_to("events")),
            self.per_release(writes),
        );
        for ((verb, resource), count) in self.requests.by(true) {
            println!(
                "    {verb:<8} {resource:<28} {:.3} ({count})",
                self.per_release(count)
            );
        }
        println!(
            "  Kubernetes reads per release      {:.3} ({reads})",
            self.per_release(reads)
        );
        for ((verb, resource), count) in self.requests.by(false) {
            println!(
                "    {verb:<8} {resource:<28} {:.3} ({count})",
                self.per_release(count)
            );
        }
        println!(
            "  controller CPU during the release {:.1} s ({:.2} cores on average)",
            self.release_cpu,
            self.release_cpu / seconds.max(0.001)
        );
        println!(
            "  controller RSS                    peak {:.1} MiB (process lifetime), steady {:.1} MiB with {n} Ready, {:.1} MiB after the release",
            self.peak_rss_mib, self.idle.rss_mib, self.rss_after_mib
        );
    }
}

/// The modes side by side, and batching's gain over the baseline.
fn compare(args: &Args, results: &[Figures]) {
    println!(
        "\n== summary: N = {}, quota {}/s (floor {:.1} s)",
        args.n,
        args.quota,
        args.n as f64 / args.quota
    );
    println!(
        "  {:<10} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "mode",
        "release",
        "×floor",
        "p50",
        "p99",
        "ECS/rel",
        "Desc/rel",
        "res w/rel",
        "events/rel",
        "reads/rel",
        "peak RSS",
        "idle CPU"
    );
    for f in results {
        println!(
            "  {:<10} {:>8.1}s {:>7.2} {:>6.1}s {:>6.1}s {:>8.3} {:>9.3} {:>9.2} {:>9.2} {:>9.3} {:>7.1}MiB {:>9.3}",
            f.mode.to_string(),
            f.release.as_secs_f64(),
            f.release.as_secs_f64() / (f.n as f64 / args.quota),
            f.percentile(50.0),
            f.percentile(99.0),
            f.per_release(f.ecs_calls(None)),
            f.per_release(f.ecs_calls(Some("DescribeInstances"))),
            f.per_release(f.requests.writes_to("ecsinstances")),
            f.per_release(f.requests.writes_to("events")),
            f.per_release(f.requests.reads()),
            f.peak_rss_mib,
            f.idle.cpu / f.idle.seconds,
        );
    }
    targets(args, results);
    let find = |mode| results.iter().find(|f| f.mode == mode);
    if let (Some(batched), Some(baseline)) = (find(Mode::Batched), find(Mode::Unbatched)) {
        let describes = |f: &Figures| f.ecs_calls(Some("DescribeInstances")).max(1) as f64;
        println!(
            "  batching: {:.1}× fewer DescribeInstances ({} vs {}), {:.2}× the ECS calls, {:.2}× the time of the baseline",
            describes(baseline) / describes(batched),
            batched.ecs_calls(Some("DescribeInstances")),
            baseline.ecs_calls(Some("DescribeInstances")),
            batched.ecs_calls(None) as f64 / baseline.ecs_calls(None).max(1) as f64,
            batched.release.as_secs_f64() / baseline.release.as_secs_f64(),
        );
    }
}

/// `apiserver_request_total` summed by (verb, resource[/subresource]).
#[derive(Default)]
struct Requests(BTreeMap<(String, String), u64>);

impl Requests {
    /// Takes out `count` requests that were the bench's own.
    fn forget(&mut self, (verb, resource): (&str, &str), count: usize) {
        if let Some(total) = self.0.get_mut(&(verb.to_owned(), resource.to_owned())) {
            *total = total.saturating_sub(count as u64);
        }
    }

    fn since(&self, before: &Requests) -> Requests {
        Requests(
            self.0
                .iter()
                .map(|(key, after)| (key.clone(), after - before.0.get(key).copied().unwrap_or(0)))
                .filter(|(_, count)| *count > 0)
                .collect(),
        )
    }

    /// Writes (`true`) or reads (`false`) by (verb, resource); watches (long-running, counted
    /// when they start) are neither.
    fn by(&self, writes: bool) -> Vec<((String, String), usize)> {
        self.0
            .iter()
            .filter(|((verb, _), _)| match verb.as_str() {
                // Server-side apply is counted as `APPLY`.
                "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" => writes,
                "GET" | "LIST" => !writes,
                _ => false,
            })
            .map(|(key, count)| (key.clone(), *count as usize))
            .collect()
    }

    fn writes(&self) -> usize {
        self.by(true).iter().map(|(_, c)| c).sum()
    }

    /// Writes to one resource (`ecsinstances` covers its subresources too).
    fn writes_to(&self, resource: &str) -> usize {
        self.by(true)
            .iter()
            .filter(|((_, r), _)| r == resource || r.starts_with(&format!("{resource}/")))
            .map(|(_, c)| c)
            .sum()
    }

    fn reads(&self) -> usize {
        self.by(false).iter().map(|(_, c)| c).sum()
    }
}

async fn apiserver_requests(client: &Client) -> Result<Requests, String> {
    let text = apiserver_metrics(client).await?;
    let mut requests = Requests::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let mut resource = label("resource");
        let subresource = label("subresource");
        if !subresource.is_empty() {
            resource = format!("{resource}/{subresource}");
        }
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *requests.0.entry((label("verb"), resource)).or_default() += count;
    }
    Ok(requests)
}

/// The targets of the "Tight at every size" work, each met or missed, for the modes that run
/// with default flags (batched and adopt; the baseline and the latency mode are for comparison).
fn targets(args: &Args, results: &[Figures]) {
    let default_flags = args.controller_args.is_empty();
    println!(
        "\n== targets (N = {}, quota {}/s{})",
        args.n,
        args.quota,
        if default_flags {
            ""
        } else {
            "; extra controller flags: the targets are for default flags"
        }
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for f in results
        .iter()
        .filter(|f| matches!(f.mode, Mode::Batched | Mode::Adopt))
    {
        let floor = f.n as f64 / args.quota;
        let ratio = f.release.as_secs_f64() / floor;
        let allowed = if f.n >= 1000 { 1.1 } else { 1.5 };
        println!(
            "  {:<8} release time        {ratio:.2} × N/quota   target ≤ {allowed} × {}",
            f.mode.to_string(),
            verdict(ratio <= allowed)
        );
        let calls = f.per_release(f.ecs_calls(None));
        println!(
            "  {:<8} ECS calls/release   {calls:.3}            target ≤ 1.1     {}",
            f.mode.to_string(),
            verdict(calls <= 1.1)
        );
        if f.n <= 10_000 {
            let rss = f.idle.rss_mib.max(f.ready_rss_mib);
            println!(
                "  {:<8} RSS with N Ready    steady {rss:.1} / peak {:.1} MiB   target < 40 MiB at ≤ 10,000 {} (during the release: peak {:.1} MiB)",
                f.mode.to_string(),
                f.idle.peak_mib,
                verdict(rss < 40.0 && f.idle.peak_mib < 40.0),
                f.peak_rss_mib
            );
        } else {
            println!(
                "  {:<8} RSS steady / peak   {:.1} / {:.1} MiB   ({:.2} KiB per resource above 16 MiB; no target above 10,000)",
                f.mode.to_string(),
                f.idle.rss_mib,
                f.peak_rss_mib,
                (f.idle.rss_mib - 16.0) * 1024.0 / f.n as f64
            );
        }
        if f.mode == Mode::Adopt {
            // 120 s for 10,000 at 10 calls/s, in proportion for other N and quotas.
            let allowed = 120.0 * (f.n as f64 / 10_000.0) * (10.0 / args.quota);
            let took = f.to_ready.as_secs_f64();
            println!(
                "  adopt    all Ready           {took:.1} s ({} TagResources)   target ≤ {allowed:.1} s {}",
                f.ready_tags,
                verdict(took <= allowed)
            );
        }
    }
}
