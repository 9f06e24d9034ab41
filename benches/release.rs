//! Mass release: N `EcsInstance` resources deleted at once, with the controller running
//! in-process against the real kube-apiserver + etcd of the tests and the ECS simulator. A
//! program that prints figures; it asserts nothing about time.
//!
//! ```sh
//! cargo build --release -p ecs-sim
//! cargo bench -p ecs-instance-controller --bench release            # N = 200
//! cargo bench -p ecs-instance-controller --bench release -- 1000    # or RELEASE_BENCH_N=1000
//! ```
//!
//! The simulator is the release build: testkit looks for `ecs-sim` in the profile directory of
//! the running executable, `target/release/` under `cargo bench`, hence the first command
//! (`ECS_SIM_BIN` overrides). A release simulator also keeps its own cost out of the figures.
//!
//! Steps: seed N Running instances, create N resources (`onDelete.stop: Wait`), wait until all
//! are Ready, delete all resources with one `deletecollection`, wait until all wait for Stopped,
//! and count the `DescribeInstances` calls of a few polling rounds while all N wait (SPEC §5:
//! deleting 1,000 resources must not cost 1,000 describes per polling round). Then stop every
//! instance through the simulator, wait until all resources are gone, and print the release time,
//! the ECS calls per release (simulator call log), the status writes per release and peak memory.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    pin::pin,
    time::{Duration, Instant},
};

use ecs_instance_controller::{
    EcsInstance, EcsInstanceStatus,
    conditions::{READY, RECONCILING},
    pacing::Timings,
};
use futures::StreamExt;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use support::{Harness, REGION, has_condition};
use tokio::sync::oneshot;

const DEFAULT_N: usize = 200;
/// Polling rounds counted while every resource waits for Stopped.
const WAITING_ROUNDS: u32 = 4;
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(600);

/// The production defaults (`Timings::default()`: transition 3 s, waiting 20 s, steady and
/// recheck 5 min, backoff 2 s … 10 min) shortened so a run takes minutes, keeping their
/// proportions. The ECS client keeps its production defaults (10 calls/s per action and region,
/// burst 20; 20 ms batching window), as does the controller's concurrency (`reconciler::DEFAULT_CONCURRENCY`).
fn bench_timings() -> Timings {
    Timings {
        transition: Duration::from_secs(1),
        waiting: Duration::from_secs(5),
        steady: Duration::from_secs(60),
        recheck: Duration::from_secs(60),
        recheck_first: Duration::from_secs(30),
        backoff_base: Duration::from_millis(500),
        throttled_base: Duration::from_secs(1),
        slow_base: Duration::from_secs(5),
        backoff_cap: Duration::from_secs(30),
        stop_grace: Duration::from_secs(10),
        release_resend: Duration::from_secs(10),
        release_timeout: Duration::from_secs(120),
    }
}

/// N: the first argument that is a number (cargo passes `--bench` too), else `RELEASE_BENCH_N`.
fn resource_count() -> usize {
    std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .or_else(|| std::env::var("RELEASE_BENCH_N").ok())
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("N must be a positive number, got {n:?}"))
        })
        .unwrap_or(DEFAULT_N)
        .max(1)
}

#[tokio::main]
async fn main() {
    let n = resource_count();
    let h = Harness::start_with(
        "release-bench",
        &["--transition-ms", "200", "--release-linger-ms", "500"],
        bench_timings(),
    )
    .await;

    let instances = (0..n)
        .map(|i| (format!("bench-{i:05}"), format!("i-bench{i:08}")))
        .collect::<Vec<_>>();
    let specs = instances
        .iter()
        .map(|(_, id)| json!({ "instanceId": id, "regionId": REGION, "status": "Running" }))
        .collect();
    h.sim.seed(Value::Array(specs)).await;
    let started = Instant::now();
    futures::stream::iter(&instances)
        .for_each_concurrent(16, |(name, id)| async {
            h.create(name, id, json!({})).await;
        })
        .await;
    wait_all(&h.api, n, READY, "InstanceObserved").await;
    eprintln!(
        "{n} resources created and Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    h.api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete all EcsInstances");
    wait_all(&h.api, n, RECONCILING, "WaitingForStopped").await;
    h.sim.clear_calls().await;
    let window = bench_timings().waiting * WAITING_ROUNDS;
    tokio::time::sleep(window).await;
    let describes = h.sim.calls(Some("DescribeInstances")).await.len();
    println!(
        "{n} resources waiting for Stopped: {describes} DescribeInstances calls in {:.0} s = {:.1} per polling round of {n} (every {:?})",
        window.as_secs_f64(),
        describes as f64 / f64::from(WAITING_ROUNDS),
        bench_timings().waiting,
    );

    h.sim.clear_calls().await;
    let (listed, all_listed) = oneshot::channel();
    let watch = tokio::spawn(watch_release(h.api.clone(), listed));
    all_listed.await.expect("the watch lists the resources");
    let started = Instant::now();
    futures::stream::iter(&instances)
        .for_each_concurrent(32, |(_, id)| {
            h.sim.patch_instance(id, json!({ "status": "Stopped" }))
        })
        .await;
    let tally = tokio::time::timeout(RELEASE_TIMEOUT, watch)
        .await
        .unwrap_or_else(|_| panic!("not all {n} resources were gone after {RELEASE_TIMEOUT:?}"))
        .expect("the watch task");
    let seconds = tally.all_gone.duration_since(started).as_secs_f64();

    let calls = h.sim.calls(None).await;
    let sim_pid = h.sim.pid().expect("the simulator runs");
    print_figures(n, seconds, &calls, &tally, sim_pid);
}

/// Waits until all `n` resources have condition `type_` True with `reason`.
async fn wait_all(api: &Api<EcsInstance>, n: usize, type_: &str, reason: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let resources = api.list(&ListParams::default()).await.expect("list");
        let ready = resources
            .items
            .iter()
            .filter(|r| has_condition(r, type_, "True", reason))
            .count();
        if ready == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready} of {n} resources {type_}={reason} after {READY_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Tally {
    /// Updates of a resource whose `status` differs from the version before.
    status_writes: usize,
    /// Updates that left `status` as it was (setting `deletionTimestamp`; the finalizer's removal
    /// deletes the object, which is a deletion, not an update).
    other_updates: usize,
    all_gone: Instant,
}

/// Counts status writes during the release by watching the resources: the API server sends
/// every new resourceVersion of an object to a watch (events are never merged), so an update
/// whose `status` differs from the previous version of that object is exactly one status write
/// (the controller writes only when the status changes). Ends when every resource is gone.
async fn watch_release(api: Api<EcsInstance>, listed: oneshot::Sender<()>) -> Tally {
    let mut live: HashMap<String, Option<EcsInstanceStatus>> = HashMap::new();
    let mut relisted = HashSet::new();
    let mut listed = Some(listed);
    let (mut status_writes, mut other_updates) = (0, 0);
    let mut record = |live: &mut HashMap<_, _>, resource: EcsInstance| {
        let status = resource.status.clone();
        match live.insert(resource.name_any(), resource.status) {
            Some(previous) if previous != status => status_writes += 1,
            Some(_) => other_updates += 1,
            None => {}
        }
    };
    let mut events = pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => relisted.clear(),
            Ok(watcher::Event::InitApply(resource)) => {
                relisted.insert(resource.name_any());
                record(&mut live, resource);
            }
            // After a relist, what was not listed again was deleted meanwhile.
            Ok(watcher::Event::InitDone) => {
                live.retain(|name, _| relisted.contains(name));
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
            }
            Ok(watcher::Event::Apply(resource)) => record(&mut live, resource),
            Ok(watcher::Event::Delete(resource)) => {
                live.remove(&resource.name_any());
            }
            Err(error) => eprintln!("watch error (retried): {error}"),
        }
        if listed.is_none() && live.is_empty() {
            break;
        }
    }
    Tally {
        status_writes,
        other_updates,
        all_gone: Instant::now(),
    }
}

/// The number of IDs in a DescribeInstances call (`InstanceIds` is a JSON array string).
fn describe_ids(call: &Value) -> usize {
    call["params"]["InstanceIds"]
        .as_str()
        .and_then(|ids| serde_json::from_str::<Vec<String>>(ids).ok())
        .map_or(0, |ids| ids.len())
}

fn print_figures(n: usize, seconds: f64, calls: &[Value], tally: &Tally, sim_pid: u32) {
    let per_release = |count: usize| count as f64 / n as f64;
    let of_action = |action: &'static str| calls.iter().filter(move |c| c["action"] == action);
    println!(
        "EcsInstance mass release ({n} resources deleted at once, then their instances stopped at once)"
    );
    println!("  resources                      {n}");
    println!("  time to release all            {seconds:.2} s  (from stopping the instances)");
    println!("  releases per second            {:.1}", n as f64 / seconds);
    println!("  ECS calls per release (all attempts, from the simulator's call log):");
    for action in ["DescribeInstances", "DeleteInstance", "StopInstance"] {
        let count = of_action(action).count();
        println!(
            "    {action:<28} {:.2}  ({count} calls)",
            per_release(count)
        );
    }
    let batches: Vec<usize> = of_action("DescribeInstances").map(describe_ids).collect();
    let looked_up: usize = batches.iter().sum();
    if !batches.is_empty() {
        // One polling round looks every resource up once: rounds = lookups / N.
        let rounds = looked_up as f64 / n as f64;
        println!(
            "  DescribeInstances batching     {looked_up} lookups in {} calls: {:.1} IDs per call (max {}); {:.1} calls per polling round of {n} (unbatched: {n})",
            batches.len(),
            looked_up as f64 / batches.len() as f64,
            batches.iter().max().unwrap_or(&0),
            batches.len() as f64 / rounds,
        );
    }
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls.iter().filter(|c| c["httpStatus"] != 200) {
        let key = format!(
            "{} {}",
            call["action"].as_str().unwrap_or("?"),
            call["code"].as_str().unwrap_or("dropped")
        );
        *errors.entry(key).or_default() += 1;
    }
    println!("  ECS error answers              {errors:?}");
    println!(
        "  status writes per release      {:.2}  ({} writes; {} other updates)",
        per_release(tally.status_writes),
        tally.status_writes,
        tally.other_updates
    );
    println!(
        "  peak RSS, benchmark process    {}  (controller in-process, with the bench's clients; control plane excluded)",
        peak_rss("self")
    );
    println!(
        "  peak RSS, ecs-sim              {}",
        peak_rss(&sim_pid.to_string())
    );
}

/// `VmHWM` of /proc/PID/status in MiB.
fn peak_rss(pid: &str) -> String {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || format!("unknown (no VmHWM in {path})"),
            |kb| format!("{:.1} MiB", kb / 1024.0),
        )
}
