//! A deterministic simulation of the whole EcsInstance controller, in the style of
//! FoundationDB's simulator and TigerBeetle's VOPR: the real pass code ([`Shell::reconcile`],
//! hence the real decision) runs against an in-memory cloud and an in-memory Kubernetes API,
//! driven by one seeded random schedule on tokio's paused clock, with invariants checked after
//! every step. The same seed gives the same trace, byte for byte. See `docs/testing.md`.
//!
//! [`Shell::reconcile`]: ecs_instance_controller::reconciler::Shell::reconcile

pub mod process;
pub mod sim;
pub mod world;

pub use sim::{Config, Report, run_seed};

/// The command that replays one seed with its trace.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p simulation --release -- --seed {seed} --trace")
}

/// Runs seeds `from..from + count`; returns the first failing report, if any, and the number
/// of seeds run.
pub fn run_seeds(from: u64, count: u64, config: Config) -> (u64, Option<Report>) {
    for seed in from..from + count {
        let report = run_seed(seed, config);
        if !report.violations.is_empty() {
            return (seed - from + 1, Some(report));
        }
    }
    (count, None)
}

/// Runs seeds `from..from + count` without stopping at a failure: every failing report, with
/// its trace dropped except for the tail kept by [`describe_failure`].
pub fn survey(from: u64, count: u64, config: Config) -> Vec<Report> {
    (from..from + count)
        .map(|seed| run_seed(seed, config))
        .filter(|report| !report.violations.is_empty())
        .map(|mut report| {
            let start = report.trace.len().saturating_sub(80);
            report.trace.drain(..start);
            report
        })
        .collect()
}

/// Failing reports by invariant (the violation's first words), with their seeds.
pub fn by_invariant(reports: &[Report]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut groups: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for report in reports {
        let first = &report.violations[0];
        let name = first.split(':').next().unwrap_or(first).to_string();
        groups.entry(name).or_default().push(report.seed);
    }
    groups
}

/// A failing seed, for people: the violations, the replay command and the tail of the trace.
pub fn describe_failure(report: &Report, tail: usize) -> String {
    let mut text = format!("seed {} violated an invariant:\n", report.seed);
    for violation in &report.violations {
        text.push_str(&format!("  {violation}\n"));
    }
    text.push_str(&format!("replay: {}\n", replay_command(report.seed)));
    text.push_str(&format!("last {tail} trace lines:\n"));
    let start = report.trace.len().saturating_sub(tail);
    for line in &report.trace[start..] {
        text.push_str(line);
        text.push('\n');
    }
    text
}
