//! Load benchmark: seeds 5,000 instances, then fires a bounded mix of signed requests at the
//! simulator over loopback and prints requests/s, latency percentiles and the simulator's peak
//! RSS. Run: `cargo bench -p ecs-sim --bench load`. It stops by itself.
//!
//! Mix: 4,000 DescribeInstances (V3-signed, 100 IDs each) and 1,000 DeleteInstance (V1-signed)
//! over 16 concurrent connections.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tokio::sync::Mutex;

const INSTANCES: usize = 5_000;
const DESCRIBES: usize = 4_000;
const DELETES: usize = 1_000;
const CONNECTIONS: usize = 16;

fn instance_id(n: usize) -> String {
    format!("i-load{n:010}")
}

enum Job {
    Describe(usize),
    Delete(usize),
}

/// Peak resident set size of a process, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = EcsSim::start_with_args(&["--transition-ms", "1000"]).await;
    let pid = sim.pid().expect("the simulator runs");
    let specs: Vec<_> = (0..INSTANCES)
        .map(|n| json!({"instanceId": instance_id(n), "regionId": "cn-hangzhou", "status": "Stopped"}))
        .collect();
    let seeded = Instant::now();
    sim.seed(json!(specs)).await;
    println!("seeded {INSTANCES} instances in {:?}", seeded.elapsed());

    let mut jobs: Vec<Job> = (0..DESCRIBES).map(Job::Describe).collect();
    jobs.extend((0..DELETES).map(Job::Delete));
    // Interleave deletes among describes so both run throughout.
    jobs.sort_by_key(|job| match job {
        Job::Describe(n) => n * DELETES,
        Job::Delete(n) => n * DESCRIBES + 1,
    });
    let queue = Arc::new(Mutex::new(jobs));
    let sim = Arc::new(sim);

    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let queue = queue.clone();
        let sim = sim.clone();
        workers.push(tokio::spawn(async move {
            // One client per worker: its connection is kept alive between requests.
            let client = http();
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let Some(job) = queue.lock().await.pop() else {
                    break;
                };
                let sent = Instant::now();
                let answer = match job {
                    Job::Describe(n) => {
                        let ids: Vec<String> = (0..100)
                            .map(|k| instance_id((n * 37 + k * 101) % INSTANCES))
                            .collect();
                        let ids = serde_json::to_string(&ids).unwrap();
                        let mut request = V3::new(
                            &sim,
                            "DescribeInstances",
                            &[("RegionId", "cn-hangzhou"), ("InstanceIds", &ids)],
                        );
                        request.client = client.clone();
                        request.send().await
                    }
                    Job::Delete(n) => {
                        let id = instance_id(n * 5);
                        let params = v1_params(
                            "DeleteInstance",
                            &[("InstanceId", &id)],
                            &Credentials::default(),
                        );
                        let signed = v1_sign("GET", params, ACCESS_KEY_SECRET);
                        send_v1_via(&client, &sim, "GET", &signed).await
                    }
                };
                latencies.push(sent.elapsed());
                if answer.status != 200 {
                    failures += 1;
                    if failures == 1 {
                        eprintln!("unexpected answer: {} {}", answer.status, answer.body);
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await.expect("a worker finishes");
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();

    let total = latencies.len();
    println!(
        "requests: {total} ({DESCRIBES} DescribeInstances x100 IDs, {DELETES} DeleteInstance) over {CONNECTIONS} connections"
    );
    println!("failures: {failures}");
    println!(
        "elapsed: {elapsed:.2?}  throughput: {:.0} requests/s",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[total - 1]
    );
    match peak_rss_kib(pid) {
        Some(kib) => println!("ecs-sim peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("ecs-sim peak RSS: unavailable (no /proc)"),
    }
    assert_eq!(failures, 0, "every request should succeed");
}
