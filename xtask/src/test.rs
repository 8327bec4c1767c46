//! `cargo xtask test`: every check and test, Rust and Python, from a fresh clone.

use anyhow::{Result, bail};

use crate::{python, run, step};

pub(crate) fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("`cargo xtask test` takes no arguments (got {args:?})");
    }
    let root = crate::root();
    let cargo = run::cargo();

    step("cargo fmt --check");
    run::status(&mut run::cmd(&cargo, &["fmt", "--all", "--check"], &root))?;

    step("cargo xtask codegen --check");
    crate::codegen::run(true)?;

    step("cargo clippy -D warnings");
    run::status(&mut run::cmd(
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &root,
    ))?;

    step("cargo build (binaries used by the Python tests)");
    run::status(&mut run::cmd(
        &cargo,
        &["build", "--workspace", "--bins", "--locked"],
        &root,
    ))?;

    let venv = python::ensure()?;
    // The Redis state backend's tests run a private redis-server.
    let redis_server = crate::redis::ensure_server()?;

    step("cargo test");
    // Each property test records how many generated cases it ran here (see the tests'
    // `support::check`); cleared first so that the sum below is this run's.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let cases_dir = target.join("tmp/proptest-cases");
    let _ = std::fs::remove_dir_all(&cases_dir);
    let mut cargo_test = run::cmd(&cargo, &["test", "--workspace", "--locked"], &root);
    cargo_test.env("MLBRIDGE_PYTHON", venv.python());
    cargo_test.env("MLBRIDGE_REDIS_SERVER", &redis_server);
    run::status(&mut cargo_test)?;
    report_property_cases(&cases_dir);

    // Not a workspace member (its code stays as upstream wrote it), so tested on its own,
    // with its own lock file, into a target folder of its own.
    step("cargo test: the patched protox-parse (third_party/protox-parse/PATCHED.md)");
    let third_party = target.join("third-party");
    run::status(&mut run::cmd(
        &cargo,
        &[
            "test",
            "--locked",
            "--manifest-path",
            "third_party/protox-parse/Cargo.toml",
            "--target-dir",
            &third_party.to_string_lossy(),
        ],
        &root,
    ))?;

    step("mypy --strict");
    run::status(&mut venv.command(
        &[
            "-m",
            "mypy",
            "--strict",
            // A cache of its own: a mypy run over a subset (say, only the SDK) resolves the
            // generated packages differently and would poison a shared cache.
            "--cache-dir",
            "target/mypy-cache",
            "generated/python/mlbridge_proto",
            "generated/python/mlbridge_adapters",
            "runtime/python/mlbridge",
        ],
        &root,
    ))?;

    // The wheel a Python user installs (tests/python/test_wheel.py installs it into a
    // fresh venv); the debug engine is already built above.
    let wheel = crate::wheel::package(crate::wheel::Profile::Debug, &root.join("target/wheels"))?;

    step("pytest");
    let target = root.join("target/debug");
    let mut pytest = venv.command(&["-m", "pytest", "-q", "tests/python"], &root);
    pytest.env("MLBRIDGE_CODEGEN", target.join("mlbridge-codegen"));
    pytest.env("MLBRIDGE_ENGINE", target.join("mlbridge"));
    pytest.env("MLBRIDGE_WHEEL", &wheel);
    run::status(&mut pytest)?;

    step("pytest: the conformance and access-control suites on the Redis state backend");
    let redis = crate::redis::RedisServer::start(&redis_server)?;
    let mut pytest = venv.command(
        &[
            "-m",
            "pytest",
            "-q",
            "tests/python/test_engine_conformance.py",
            "tests/python/test_sdk_engine_conformance.py",
            // Access control, whose tokens live in Redis too.
            "tests/python/test_engine_auth.py",
        ],
        &root,
    );
    pytest.env("MLBRIDGE_CODEGEN", target.join("mlbridge-codegen"));
    pytest.env("MLBRIDGE_ENGINE", target.join("mlbridge"));
    // Every engine these tests start keeps its state in this Redis.
    pytest.env("MLBRIDGE_TEST_STATE", redis.url());
    run::status(&mut pytest)?;
    drop(redis);

    // The SDK's everyday paths again, as the client of an engine that checks tokens
    // (`--auth required`): contexts hold owner tokens and pass them when they join.
    step("pytest with --auth required (SDK subset)");
    let mut args = vec!["-m", "pytest", "-q", "-p", "no:cacheprovider"];
    args.extend(AUTH_REQUIRED_SDK_TESTS);
    let mut secured = venv.command(&args, &root);
    secured.env("MLBRIDGE_CODEGEN", target.join("mlbridge-codegen"));
    secured.env("MLBRIDGE_ENGINE", target.join("mlbridge"));
    secured.env("MLBRIDGE_TEST_AUTH", "required");
    run::status(&mut secured)?;

    println!("\nall checks passed");
    Ok(())
}

/// SDK test modules that run a second time against engines with `--auth required`. Left
/// out: modules that probe unknown sessions or call the engine raw without a token (their
/// answers are UNAUTHENTICATED there, by design).
const AUTH_REQUIRED_SDK_TESTS: &[&str] = &[
    "tests/python/test_sdk_values.py",
    "tests/python/test_sdk_variables.py",
    "tests/python/test_sdk_cache.py",
    "tests/python/test_sdk_watch.py",
    "tests/python/test_sdk_constraints.py",
    "tests/python/test_sdk_locks.py",
    "tests/python/test_sdk_tools.py",
    "tests/python/test_sdk_dependencies.py",
    "tests/python/test_sdk_resources.py",
    "tests/python/test_sdk_async.py",
    "tests/python/test_sdk_callbacks.py",
];

/// Prints how many generated cases each property test ran, and the total.
fn report_property_cases(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("no property test recorded its cases in {}", dir.display());
        return;
    };
    let mut counts: Vec<(String, u64)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let count = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
            Some((path.file_name()?.to_string_lossy().into_owned(), count))
        })
        .collect();
    counts.sort();
    for (name, count) in &counts {
        println!("property `{name}`: {count} generated cases");
    }
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    println!(
        "property tests: {total} generated cases in {} properties",
        counts.len()
    );
}
