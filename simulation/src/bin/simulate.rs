//! `simulate --seeds N [--from S]` runs seeds; `simulate --seed S [--trace]` replays one.

use std::process::ExitCode;
use std::time::Instant;

use simulation::{Config, by_invariant, describe_failure, run_seed, run_seeds, survey};

fn usage() -> ExitCode {
    eprintln!("usage: simulate --seeds N [--from S] [--keep-going] | simulate --seed S [--trace]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds = None;
    let mut from = 0;
    let mut seed = None;
    let mut trace = false;
    let mut keep_going = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--seeds" => seeds = value(),
            "--from" => from = value().unwrap_or(0),
            "--seed" => seed = value(),
            "--trace" => trace = true,
            "--keep-going" => keep_going = true,
            _ => return usage(),
        }
    }
    let config = Config::default();
    if let Some(seed) = seed {
        let report = run_seed(seed, config);
        if trace {
            for line in &report.trace {
                println!("{line}");
            }
        }
        if report.violations.is_empty() {
            println!("seed {seed}: ok ({} steps)", report.steps);
            return ExitCode::SUCCESS;
        }
        eprintln!("{}", describe_failure(&report, 60));
        return ExitCode::FAILURE;
    }
    let Some(count) = seeds else {
        return usage();
    };
    let started = Instant::now();
    if keep_going {
        let failures = survey(from, count, config);
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{count} seeds from {from} in {elapsed:.1} s ({:.0} seeds/s); {} failed",
            count as f64 / elapsed.max(1e-9),
            failures.len()
        );
        for (invariant, seeds) in by_invariant(&failures) {
            let shown: Vec<String> = seeds.iter().take(10).map(u64::to_string).collect();
            println!(
                "  {invariant}: {} seeds, e.g. {}",
                seeds.len(),
                shown.join(" ")
            );
        }
        return if failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let (ran, failure) = run_seeds(from, count, config);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{ran} seeds from {from} in {elapsed:.1} s ({:.0} seeds/s)",
        ran as f64 / elapsed.max(1e-9)
    );
    match failure {
        Some(report) => {
            eprintln!("{}", describe_failure(&report, 60));
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
