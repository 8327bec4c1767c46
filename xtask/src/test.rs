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

    step("cargo test");
    let mut cargo_test = run::cmd(&cargo, &["test", "--workspace", "--locked"], &root);
    cargo_test.env("MLBRIDGE_PYTHON", venv.python());
    run::status(&mut cargo_test)?;

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

    step("pytest");
    let target = root.join("target/debug");
    let mut pytest = venv.command(&["-m", "pytest", "-q", "tests/python"], &root);
    pytest.env("MLBRIDGE_CODEGEN", target.join("mlbridge-codegen"));
    pytest.env("MLBRIDGE_ENGINE", target.join("mlbridge"));
    run::status(&mut pytest)?;

    println!("\nall checks passed");
    Ok(())
}
