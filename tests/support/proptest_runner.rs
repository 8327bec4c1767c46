//! Shared by the property tests of the generator and the engine: a runner with a modest,
//! recorded case count.
// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};

/// The seed used unless `PROPTEST_RNG_SEED` names another: CI runs the same cases every
/// time, and a failure reproduces by rerunning the test.
const DEFAULT_SEED: u64 = 0x6d6c_6272_6964_6765;

/// Runs `test` on `cases` values of `strategy` (`PROPTEST_CASES` overrides the count,
/// `PROPTEST_RNG_SEED` the seed), shrinking and panicking on the first failure; a panic
/// inside `test` is a failure too. Prints how many cases ran and records the count in
/// `target/tmp/proptest-cases/<name>` for `cargo xtask test` to sum up.
pub(crate) fn check<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env_number("PROPTEST_CASES").map_or(cases, |n| n as u32);
    let seed = env_number("PROPTEST_RNG_SEED").unwrap_or(DEFAULT_SEED);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // Failures are reproduced by the fixed seed; nothing is written next to the sources.
        failure_persistence: None,
        ..Config::default()
    };
    let ran = AtomicU64::new(0);
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    let ran = ran.into_inner();
    println!("property `{name}`: {ran} generated cases ran (seed {seed})");
    record(name, ran);
    if let Err(failure) = result {
        panic!("property `{name}` failed (seed {seed}): {failure}");
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn record(name: &str, ran: u64) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("proptest-cases");
    // Recording is a report for humans; a test never fails because of it.
    let _ = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(name), format!("{ran}\n")));
}
