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

/// The sweep: every invariant on 5,000 seeds (a long soak: the `simulate` binary, see
/// docs/testing.md).
#[test]
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

/// Seeds that found real controller bugs (docs/testing.md, "Findings"), each kept once its bug
/// was fixed. Default configuration.
const REGRESSION_SEEDS: &[u64] = &[
    // Finding 1: an unconditional status write from a stale cache read erased
    // status.instance.observedWith; after a Secret rotation to another account the deletion
    // ended NeverObserved and the finalizer went while the tagged instance still ran.
    2,
    // Finding 1, dual leadership: the stale write erased the accepted release (RequestId), the
    // releasing process crashed, and a second DeleteInstance was sent (invariant 3).
    0,
    // Finding 1: the stale write erased the release intent after an answer-lost DeleteInstance;
    // the resource ended NotFound although its own DeleteInstance released the instance.
    109,
    // Finding 2 (found with status writes made conditional): TagResources was processed before
    // any observation was recorded; the status write failed, the credentials moved to another
    // account, and the deletion ended NeverObserved with the tagged instance left running.
    4,
    // Finding 3: the release intent carried no observation; DeleteInstance processed, its
    // status write failed, crash; the successor ended NeverObserved.
    330,
    // Finding 4: the one attempt to release a Secret's in-use finalizer failed on a transient
    // API error and was never retried; the namespace never went.
    1378, 3686,
    // Finding 5: a duplicate's slow TagResources landed after the owner tagged and released the
    // instance; the duplicate sent a second DeleteInstance (invariants 1 and 3).
    4613, 8563, 8571, 25764, 44912, 47539,
    // The checker itself: a final event whose finalizer removal failed is not the final word.
    15815,
    // Finding 6: a claimant removed as a duplicate while its TagResources (decided when the
    // instance was untagged) was still on its way; the owner, seeing no claimant any more,
    // released at once, and the late tag landed between its observation and its
    // DeleteInstance (invariant 1).
    228184,
    // Finding 7: a duplicate removed while its own TagResources was still on its way; the tag
    // landed after and left the instance tagged for a resource that no longer existed
    // (invariant 2).
    121784,
    // Finding 8: an orphaned duplicate's stale UntagResources removed the new owner's tag, and
    // the owner, not counting itself contested, released the untagged instance (invariant 1).
    70852,
];

#[test]
fn regression_seeds() {
    for &seed in REGRESSION_SEEDS {
        let report = run_seed(seed, Config::default());
        assert!(
            report.violations.is_empty(),
            "{}",
            describe_failure(&report, 40)
        );
    }
}
