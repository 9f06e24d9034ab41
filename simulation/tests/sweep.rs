//! The simulation's test suite: determinism, a sweep of 5,000 seeds, and the seeds that found
//! real bugs. Replay any seed with `cargo run -p simulation --release -- --seed S --trace`.

use std::time::Instant;

use simulation::{Config, by_invariant, describe_failure, run_seed, survey};

/// The default size (120 steps, up to 8 resources), so that a failing seed replays as is with
/// the `simulate` binary; 5,000 seeds take about two minutes in a debug build on two cores.
fn sweep_config() -> Config {
    Config::default()
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [0, 1, 7, 42] {
        let first = run_seed(seed, Config::default());
        let second = run_seed(seed, Config::default());
        assert!(first.trace.len() > 50, "seed {seed} did something");
        assert_eq!(
            first.trace, second.trace,
            "seed {seed} is not deterministic"
        );
        assert_eq!(first.violations, second.violations);
    }
}

/// The sweep. Red today: the controller bugs listed in docs/testing.md ("Findings") break
/// invariants 2, 3, 4 and 5 on about 2.3 % of the seeds (117 of 0..5000). Un-ignore once they are fixed.
#[test]
#[ignore = "fails on the controller bugs listed in docs/testing.md (Findings); run with --ignored"]
fn five_thousand_seeds_hold_every_invariant() {
    let seeds = 5_000;
    let started = Instant::now();
    let failures = survey(0, seeds, sweep_config());
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds in {elapsed:.1} s: {:.0} seeds/s; {} failed",
        seeds as f64 / elapsed,
        failures.len()
    );
    for (invariant, seeds) in by_invariant(&failures) {
        println!(
            "  {invariant}: {} seeds, first {:?}",
            seeds.len(),
            &seeds[..seeds.len().min(10)]
        );
    }
    if let Some(first) = failures.first() {
        panic!("{}", describe_failure(first, 40));
    }
}

/// Seeds that found real controller bugs (docs/testing.md, "Findings"); each must pass once its
/// bug is fixed. Default configuration unless said otherwise.
const REGRESSION_SEEDS: &[(u64, bool)] = &[
    // Finding 1: an unconditional status write from a stale cache read erases
    // status.instance.observedWith; after a Secret rotation to another account the deletion
    // ends NeverObserved and the finalizer goes while the tagged instance still runs.
    (2, false),
    // Finding 1, dual leadership: the stale write erases the accepted release (RequestId), the
    // releasing process crashes, and a second DeleteInstance is sent (invariant 3).
    (0, false),
    // Finding 1: the stale write erases the release intent after an answer-lost DeleteInstance;
    // the resource ends NotFound although its own DeleteInstance released the instance.
    (109, false),
    // Finding 2 (with the status writes made conditional): TagResources is processed before
    // any observation is recorded; the status write fails, the credentials move to another
    // account, and the deletion ends NeverObserved with the tagged instance left running.
    (4, true),
    // Finding 3 (with conditional status writes): the release intent carries no observation;
    // DeleteInstance processed, its status write failed, crash; the successor ends NeverObserved.
    (330, true),
    // Finding 4 (with conditional status writes): the one attempt to release a Secret's in-use
    // finalizer fails on a transient API error and is never retried; the namespace never goes.
    (1378, true),
    // Finding 4 again, in the default configuration.
    (3686, false),
    // Finding 5 (with conditional status writes): a duplicate's slow TagResources lands after
    // the owner tagged and released the instance; the duplicate sends a second DeleteInstance.
    (4613, true),
];

#[test]
#[ignore = "the controller bugs these seeds found are not fixed yet; run with --ignored"]
fn regression_seeds() {
    for &(seed, status_precondition) in REGRESSION_SEEDS {
        let report = run_seed(
            seed,
            Config {
                status_precondition,
                ..Config::default()
            },
        );
        assert!(
            report.violations.is_empty(),
            "{}",
            describe_failure(&report, 40)
        );
    }
}
