//! Chaos run: N `EcsInstance` resources for Stopped instances deleted at once (plus a few
//! `Orphan` ones, plus a few that are not deleted) while the ECS simulator throttles (per-action
//! quotas), answers 5xx, drops connections and adds latency, and the real controller binary is
//! SIGKILLed and restarted at random intervals. Then it checks the invariants and prints the
//! figures; it exits non-zero when an invariant fails (and, with `--strict`, when a quota
//! target is missed).
//!
//! ```sh
//! cargo run --example chaos -- --n 50 --kills 3            # the CI size, about 40 s
//! cargo run --example chaos -- --n 200 --kills 5 --timeout 400
//! ```
//!
//! Everything runs on loopback: a real etcd + kube-apiserver (testkit), `ecs-sim`, and the
//! controller binary (`target/<profile>/ecs-instance-controller`, built first with
//! `cargo build --workspace --bins --examples` by the cargo that built this program, unless
//! `--no-build`). Every process it starts ends with it (they are spawned with PDEATHSIG
//! through `testkit::supervisor` and killed by PID at the end).
//!
//! Invariants checked:
//! - every `Delete` resource is gone and its instance was released exactly once: exactly one
//!   successful `DeleteInstance` per instance in the simulator's call log, and no
//!   `DeleteInstance` after it that got past the injected faults (i.e. reached the released
//!   instance);
//! - the final event of every `Delete` resource is `Released` and carries the RequestId of that
//!   accepted `DeleteInstance`; none reads `NotFound` / `NeverObserved` ("nothing to release");
//! - `Orphan` resources are gone, their instances and those of the resources not deleted were
//!   never stopped or deleted (no `StopInstance`/`DeleteInstance` naming them at all), and the
//!   resources not deleted are still there;
//! - no finalizer is left on a deleted resource (everything deleted is gone within `--timeout`);
//! - the controller was killed at least `--kills` times while releases were in flight (the kills
//!   come at random intervals, `--kill-min`..`--kill-max` seconds apart, and the k-th required
//!   one at the latest when k / (kills + 1) of the deletions are done).
//!
//! Figures: `Throttling.*` share of all ECS calls, ECS calls per release (all, and excluding the
//! calls that hit an injected 5xx or drop), calls by action and outcome, wall time.

/// How the controller's final event says that a kill lost the answer of its accepted release.
const ANSWER_LOST: &str = "answer lost";

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use ecs_instance_controller::{
    EcsInstance,
    conditions::{READY, find},
};
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use testkit::{
    programs::{
        ControllerLauncher, Started, build_workspace_programs, start_sim_process, workspace_program,
    },
    sim::EcsSim,
};

const REGION: &str = "cn-hangzhou";
const FINALIZER_FREE_REASONS: [&str; 3] = ["Released", "NotFound", "NeverObserved"];

#[derive(Parser, Debug, Clone)]
#[command(about = "Chaos run against the real controller binary (see the source's header)")]
struct Args {
    /// `Delete` resources (Stopped instances) deleted at once.
    #[arg(long, default_value_t = 50)]
    n: usize,
    /// `Orphan` resources deleted with them.
    #[arg(long, default_value_t = 5)]
    orphans: usize,
    /// Resources that are not deleted.
    #[arg(long, default_value_t = 5)]
    kept: usize,
    /// The controller is SIGKILLed (and restarted) at least this many times while releases are
    /// in flight; fewer is a failure.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Shortest and longest time between two kills, seconds (uniformly random in between).
    #[arg(long, default_value_t = 3.0)]
    kill_min: f64,
    #[arg(long, default_value_t = 7.0)]
    kill_max: f64,
    /// Quota of `DescribeInstances` per second (simulator `throttleQps`).
    #[arg(long, default_value_t = 4.0)]
    describe_qps: f64,
    /// Quota of `DeleteInstance` per second.
    #[arg(long, default_value_t = 6.0)]
    delete_qps: f64,
    /// Share of calls answered 503 `ServiceUnavailable`.
    #[arg(long, default_value_t = 0.2)]
    error_rate: f64,
    /// Share of calls whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.05)]
    drop_rate: f64,
    /// Latency added to every call, milliseconds.
    #[arg(long, default_value_t = 25)]
    latency_ms: u64,
    /// The whole run's budget in seconds (start-up included); past it the run fails.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Seed of the kill schedule (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Do not build the controller and simulator binaries first.
    #[arg(long)]
    no_build: bool,
    /// Also fail when a quota target (≤ 5 % throttled, ≤ 1.5 calls per release without
    /// injected faults) is missed.
    #[arg(long)]
    strict: bool,
    /// Extra arguments for the controller (repeatable), e.g. `--controller-arg=--ecs-qps=5`.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    controller_args: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.no_build
        && let Err(e) = build_workspace_programs(env!("CARGO"), env!("CARGO_MANIFEST_DIR"))
    {
        eprintln!("chaos: {e}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let budget = Duration::from_secs(args.timeout);
    let mut run = Started::default();
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = tokio::time::timeout(budget, chaos(&args, &mut run)) => match result {
                Ok(Ok(failures)) => Ok(failures),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("the run did not finish within --timeout {}s", args.timeout)),
            },
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    // Clean up what this program started, by PID; PDEATHSIG is the backstop.
    run.stop_all();
    drop(runtime);
    testkit::control_plane::shut_down();
    match outcome {
        Ok(failures) if failures.is_empty() => {
            if let Some(dir) = &run.log_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            println!("chaos: PASS");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            println!("chaos: FAIL ({} invariant(s) broken)", failures.len());
            for failure in failures {
                println!("  - {failure}");
            }
            if let Some(dir) = &run.log_dir {
                println!("  controller logs kept in {}", dir.display());
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("chaos: FAIL: {e}");
            if let Some(dir) = &run.log_dir {
                println!("  controller logs kept in {}", dir.display());
            }
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Delete,
    Orphan,
    Kept,
}

struct Item {
    name: String,
    instance: String,
    kind: Kind,
}

fn items(args: &Args) -> Vec<Item> {
    let make = |kind: Kind, count: usize, tag: &str| {
        (0..count)
            .map(move |i| Item {
                name: format!("chaos-{tag}-{i:05}"),
                instance: format!("i-chaos{tag}{i:06}"),
                kind,
            })
            .collect::<Vec<_>>()
    };
    let mut all = make(Kind::Delete, args.n, "d");
    all.extend(make(Kind::Orphan, args.orphans, "o"));
    all.extend(make(Kind::Kept, args.kept, "k"));
    all
}

fn has_condition(resource: &EcsInstance, type_: &str, status: &str, reason: &str) -> bool {
    resource
        .status
        .as_ref()
        .and_then(|s| find(&s.conditions, type_))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

async fn chaos(args: &Args, run: &mut Started) -> Result<Vec<String>, String> {
    if args.n == 0 || args.kill_min <= 0.0 || args.kill_max < args.kill_min {
        return Err("need --n ≥ 1 and 0 < --kill-min ≤ --kill-max".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    println!(
        "chaos: n={} orphans={} kept={} kills≥{} every {}–{} s; quotas DescribeInstances {}/s DeleteInstance {}/s; {:.0} % 503, {:.0} % drops, +{} ms; seed {seed}",
        args.n,
        args.orphans,
        args.kept,
        args.kills,
        args.kill_min,
        args.kill_max,
        args.describe_qps,
        args.delete_qps,
        args.error_rate * 100.0,
        args.drop_rate * 100.0,
        args.latency_ms
    );
    let controller_binary = workspace_program("ecs-instance-controller", "ECS_CONTROLLER_BIN")?;
    let setup = Instant::now();

    let ns = testkit::test_namespace("chaos").await;
    let plane = testkit::control_plane();
    println!(
        "chaos: control plane up in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let (sim_child, endpoint) = start_sim_process(&[])?;
    run.sim = Some(sim_child);
    let sim = EcsSim::attach(&endpoint);
    let log_dir = std::env::temp_dir().join(format!("ecs-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    run.log_dir = Some(log_dir.clone());
    let launcher = ControllerLauncher {
        binary: controller_binary,
        kubeconfig: plane.kubeconfig.clone(),
        endpoint: endpoint.clone(),
        namespace: ns.name.clone(),
        log_dir: log_dir.clone(),
        // A DeleteInstance whose outcome is unknown (an injected 503 or drop, a kill) is sent
        // again only if the instance is still listed after this window: 5× the simulator's 2 s
        // release linger, where production's 5 minutes would not fit the run's timeout.
        // The quota levels it learns survive its restarts, as on a Pod's emptyDir.
        extra: [
            vec![
                "--release-resend-after=10s".to_string(),
                format!("--quota-file={}", log_dir.join("quotas.json").display()),
            ],
            args.controller_args.clone(),
        ]
        .concat(),
    };

    let all = items(args);
    let specs = all
        .iter()
        .map(|i| json!({ "instanceId": i.instance, "regionId": REGION, "status": "Stopped" }))
        .collect();
    sim.seed(Value::Array(specs)).await;
    run.controller = Some(launcher.start(1)?);

    let api: Api<EcsInstance> = Api::namespaced(ns.client.clone(), &ns.name);
    futures::stream::iter(&all)
        .map(|item| {
            let api = api.clone();
            async move {
                let policy = if item.kind == Kind::Orphan {
                    "Orphan"
                } else {
                    "Delete"
                };
                let body = json!({
                    "apiVersion": "ecs.alicloud.dev/v1alpha1",
                    "kind": "EcsInstance",
                    "metadata": { "name": item.name },
                    "spec": {
                        "instanceId": item.instance,
                        "regionId": REGION,
                        "deletionPolicy": policy,
                        "onDelete": { "stop": "Wait" },
                    },
                });
                api.patch(
                    &item.name,
                    &PatchParams::apply("chaos"),
                    &Patch::Apply(&body),
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("apply {}: {e}", item.name))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()?;
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list: {e}"))?;
        let ready = list
            .items
            .iter()
            .filter(|r| has_condition(r, READY, "True", "InstanceObserved"))
            .count();
        if ready == all.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "chaos: {} resources Ready after {:.1} s of set-up (control plane, simulator, controller)",
        all.len(),
        setup.elapsed().as_secs_f64()
    );

    // The faults, from the deletion on. Throttling first: a throttled request is not counted by
    // the quota; one that passes it may still be dropped or answered 503 (and counts).
    sim.set_faults(json!([
        {"action": "DescribeInstances", "throttleQps": args.describe_qps},
        {"action": "DeleteInstance", "throttleQps": args.delete_qps},
        {"latencyMs": args.latency_ms},
        {"dropRate": args.drop_rate},
        {"errorRate": args.error_rate, "errorCode": "ServiceUnavailable"},
    ]))
    .await;
    sim.clear_calls().await;
    let deleted: Vec<&Item> = all.iter().filter(|i| i.kind != Kind::Kept).collect();
    let started = Instant::now();
    futures::stream::iter(&deleted)
        .map(|item| {
            let api = api.clone();
            async move {
                api.delete(&item.name, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("delete {}: {e}", item.name))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()?;
    println!(
        "chaos: {} resources deleted ({} Delete, {} Orphan) in {:.1} s",
        deleted.len(),
        args.n,
        args.orphans,
        started.elapsed().as_secs_f64()
    );

    // Kill and restart at random intervals until every deleted resource is gone.
    let deleted_names: HashSet<&str> = deleted.iter().map(|i| i.name.as_str()).collect();
    let mut kills_in_flight = 0usize;
    let mut lives = 1usize;
    let mut next_kill =
        started + Duration::from_secs_f64(rng.random_range(args.kill_min..=args.kill_max));
    let mut last_report = Instant::now();
    let all_gone = loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list: {e}"))?;
        let left = list
            .items
            .iter()
            .filter(|r| deleted_names.contains(r.name_any().as_str()))
            .count();
        if left == 0 {
            break started.elapsed();
        }
        // Random intervals; but the k-th of the required kills comes at the latest once
        // k / (kills + 1) of the deletions are done, so that they all land while releases
        // are in flight however fast the releases go.
        let done = deleted_names.len() - left;
        let behind = kills_in_flight < args.kills
            && done * (args.kills + 1) >= (kills_in_flight + 1) * deleted_names.len();
        if Instant::now() >= next_kill || behind {
            let controller = run.controller.as_mut().expect("a controller runs");
            controller.kill();
            kills_in_flight += 1;
            lives += 1;
            println!(
                "chaos: t={:5.1} s SIGKILL controller #{} ({left} deleted resources left); starting #{lives}",
                started.elapsed().as_secs_f64(),
                controller.life
            );
            run.controller = Some(launcher.start(lives)?);
            next_kill = Instant::now()
                + Duration::from_secs_f64(rng.random_range(args.kill_min..=args.kill_max));
        } else if last_report.elapsed() >= Duration::from_secs(5) {
            println!(
                "chaos: t={:5.1} s {left} deleted resources left",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "chaos: every deleted resource gone after {:.1} s, {kills_in_flight} kills",
        all_gone.as_secs_f64()
    );
    // Give the last controller a moment (anything it still sends would show in the log), then
    // stop it before reading the call log.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(mut controller) = run.controller.take() {
        controller.kill();
    }

    let calls = sim.calls(None).await;
    let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let events = events
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list events: {e}"))?
        .items;
    let remaining = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list: {e}"))?
        .items;
    let mut failures = Vec::new();
    check(&all, &calls, &events, &remaining, &sim, &mut failures).await;
    if kills_in_flight < args.kills {
        failures.push(format!(
            "only {kills_in_flight} kills happened while releases were in flight (wanted ≥ {}): the releases finished too fast for the kill interval",
            args.kills
        ));
    }
    let figures = figures(args.n, &calls, all_gone, kills_in_flight);
    if args.strict {
        failures.extend(figures);
    }
    Ok(failures)
}

fn instance_of(call: &Value) -> Option<&str> {
    call["params"]["InstanceId"].as_str()
}

fn is_throttled(call: &Value) -> bool {
    call["code"]
        .as_str()
        .is_some_and(|c| c.starts_with("Throttling"))
}

/// A call that hit an injected 5xx or drop (it never reached the operation).
fn is_injected_fault(call: &Value) -> bool {
    call["dropped"] == true
        || matches!(
            call["code"].as_str(),
            Some("ServiceUnavailable" | "InternalError")
        )
}

async fn check(
    all: &[Item],
    calls: &[Value],
    events: &[Event],
    remaining: &[EcsInstance],
    sim: &EcsSim,
    failures: &mut Vec<String>,
) {
    let mut deletes: HashMap<&str, Vec<&Value>> = HashMap::new();
    let mut stops: HashMap<&str, usize> = HashMap::new();
    for call in calls {
        match (call["action"].as_str(), instance_of(call)) {
            (Some("DeleteInstance"), Some(id)) => deletes.entry(id).or_default().push(call),
            (Some("StopInstance"), Some(id)) => *stops.entry(id).or_default() += 1,
            _ => {}
        }
    }
    let mut by_resource: HashMap<&str, Vec<&Event>> = HashMap::new();
    for event in events {
        if let Some(name) = event.regarding.as_ref().and_then(|r| r.name.as_deref()) {
            by_resource.entry(name).or_default().push(event);
        }
    }
    let left: HashMap<String, &EcsInstance> = remaining.iter().map(|r| (r.name_any(), r)).collect();
    let (mut released_once, mut request_id_kept, mut answer_lost) = (0usize, 0usize, 0usize);
    for item in all {
        let id = item.instance.as_str();
        let calls_for = deletes.get(id).map(Vec::as_slice).unwrap_or_default();
        match item.kind {
            Kind::Delete => {
                if let Some(resource) = left.get(&item.name) {
                    failures.push(format!(
                        "{}: still there (finalizers {:?})",
                        item.name,
                        resource.finalizers()
                    ));
                }
                let accepted: Vec<&&Value> = calls_for
                    .iter()
                    .filter(|c| c["httpStatus"] == 200)
                    .collect();
                if accepted.len() != 1 {
                    failures.push(format!(
                        "{}: {} successful DeleteInstance calls for {id} (want exactly 1)",
                        item.name,
                        accepted.len()
                    ));
                    continue;
                }
                let seq = accepted[0]["seq"].as_u64().unwrap_or(0);
                let after: Vec<String> = calls_for
                    .iter()
                    .filter(|c| c["seq"].as_u64().unwrap_or(0) > seq)
                    .filter(|c| !is_injected_fault(c) && !is_throttled(c))
                    .map(|c| c["code"].as_str().unwrap_or("?").to_owned())
                    .collect();
                if after.is_empty() {
                    released_once += 1;
                } else {
                    failures.push(format!(
                        "{}: DeleteInstance reached {id} after its release ({after:?})",
                        item.name
                    ));
                }
                match sim.instance(id).await {
                    None => {}
                    Some(state) if state["released"] == true => {}
                    Some(state) => failures.push(format!(
                        "{}: {id} is not released in the simulator: {state}",
                        item.name
                    )),
                }
                let request_id = accepted[0]["requestId"].as_str().unwrap_or("?");
                let finals: Vec<(&str, &str)> = by_resource
                    .get(item.name.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| {
                        let reason = e.reason.as_deref()?;
                        FINALIZER_FREE_REASONS
                            .contains(&reason)
                            .then(|| (reason, e.note.as_deref().unwrap_or("")))
                    })
                    .collect();
                // A kill between ECS accepting the release and the status write recording it
                // loses the RequestId; the successor then says so (the intent was recorded),
                // which is the truth, never "nothing to release".
                let lost = |note: &str| note.contains(ANSWER_LOST);
                let wrong: Vec<&(&str, &str)> = finals
                    .iter()
                    .filter(|(reason, note)| {
                        *reason != "Released" || !(note.contains(request_id) || lost(note))
                    })
                    .collect();
                if finals.is_empty() {
                    failures.push(format!("{}: no final (Released) event", item.name));
                } else if !wrong.is_empty() {
                    failures.push(format!(
                        "{}: final event(s) without the accepted release's RequestId {request_id}: {wrong:?}",
                        item.name
                    ));
                } else if finals.iter().any(|(_, note)| lost(note)) {
                    answer_lost += 1;
                } else {
                    request_id_kept += 1;
                }
            }
            Kind::Orphan | Kind::Kept => {
                let touched = calls_for.len() + stops.get(id).copied().unwrap_or(0);
                if touched > 0 {
                    failures.push(format!(
                        "{} ({:?}): {touched} StopInstance/DeleteInstance calls for {id}",
                        item.name, item.kind
                    ));
                }
                match sim.instance(id).await {
                    Some(state) if state["released"] != true && state["status"] == "Stopped" => {}
                    other => failures.push(format!(
                        "{} ({:?}): {id} changed in the simulator: {other:?}",
                        item.name, item.kind
                    )),
                }
                let present = left.contains_key(&item.name);
                if item.kind == Kind::Orphan && present {
                    failures.push(format!("{}: Orphan resource still there", item.name));
                }
                if item.kind == Kind::Kept && !present {
                    failures.push(format!(
                        "{}: a resource that was not deleted is gone",
                        item.name
                    ));
                }
            }
        }
    }
    let n = all.iter().filter(|i| i.kind == Kind::Delete).count();
    println!("chaos: invariants");
    println!("  released exactly once, no DeleteInstance after it   {released_once}/{n}");
    println!("  final event Released with the accepted RequestId     {request_id_kept}/{n}");
    println!("  … or saying a kill lost the answer (intent recorded)  {answer_lost}/{n}");
    let untouched = all
        .iter()
        .filter(|i| i.kind != Kind::Delete)
        .filter(|i| deletes.get(i.instance.as_str()).is_none_or(Vec::is_empty))
        .filter(|i| !stops.contains_key(i.instance.as_str()))
        .count();
    println!(
        "  Orphan and kept instances without Stop/Delete         {untouched}/{}",
        all.len() - n
    );
    println!(
        "  deleted resources left (finalizer not removed)       {}",
        remaining
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_some())
            .count()
    );
}

/// Prints the figures; returns the missed targets.
fn figures(n: usize, calls: &[Value], wall: Duration, kills: usize) -> Vec<String> {
    let total = calls.len();
    let throttled = calls.iter().filter(|c| is_throttled(c)).count();
    let faulted = calls.iter().filter(|c| is_injected_fault(c)).count();
    let share = throttled as f64 / total.max(1) as f64;
    let per_release = total as f64 / n as f64;
    let per_release_clean = (total - faulted) as f64 / n as f64;
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for call in calls {
        let outcome = if call["dropped"] == true {
            "dropped".to_owned()
        } else {
            call["code"].as_str().unwrap_or("OK").to_owned()
        };
        let action = call["action"].as_str().unwrap_or("?").to_owned();
        *by.entry((action, outcome)).or_default() += 1;
    }
    println!("chaos: figures");
    println!(
        "  wall time, deletion → every deleted resource gone  {:.1} s",
        wall.as_secs_f64()
    );
    println!("  controller kills while releases were in flight    {kills}");
    println!("  ECS calls                                          {total}");
    println!(
        "  Throttling.* answers                               {throttled} ({:.1} % of all calls; target ≤ 5 %)",
        share * 100.0
    );
    println!("  calls that hit an injected 5xx or drop            {faulted}");
    // The same without the tag calls, which are about the Orphan resources, not releases.
    let release_calls = calls
        .iter()
        .filter(|c| !is_injected_fault(c))
        .filter(|c| {
            matches!(
                c["action"].as_str(),
                Some("DescribeInstances" | "DeleteInstance" | "StopInstance")
            )
        })
        .count();
    println!("  ECS calls per release, all                         {per_release:.2}");
    println!(
        "  ECS calls per release, without injected faults     {per_release_clean:.2} (target ≤ 1.5)"
    );
    println!(
        "  … of them Describe/Stop/DeleteInstance only         {:.2}",
        release_calls as f64 / n as f64
    );
    println!("  by action and outcome:");
    for ((action, outcome), count) in &by {
        println!("    {action:<20} {outcome:<28} {count}");
    }
    let mut missed = Vec::new();
    if share > 0.05 {
        missed.push(format!(
            "target missed: {:.1} % of ECS calls throttled (≤ 5 %)",
            share * 100.0
        ));
    }
    if per_release_clean > 1.5 {
        missed.push(format!(
            "target missed: {per_release_clean:.2} ECS calls per release without injected faults (≤ 1.5)"
        ));
    }
    missed
}
