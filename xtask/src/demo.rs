//! `cargo xtask demo`: builds everything, prepares the Python environment and runs the main
//! job end to end on the embedded in-memory engine: engine-orchestrated, Python-orchestrated and
//! the Python control plane (engine-native optimizers calling back into Python). With
//! `--state redis` the same job runs on two engines sharing one private Redis: the Rust
//! program and the control plane talk to one, the Python program to the other.

use anyhow::Result;

use crate::run::{self, EngineProcess};
use crate::{python, step};

pub(crate) fn run(redis: bool) -> Result<()> {
    let root = crate::root();
    step("regenerating generated/ from proto/");
    crate::codegen::run(false)?;

    step("building the engine and the Rust example");
    run::status(&mut run::cmd(
        run::cargo(),
        &[
            "build",
            "--quiet",
            "-p",
            "mlbridge",
            "-p",
            "example-engine-orchestrated",
        ],
        &root,
    ))?;
    let venv = python::ensure()?;

    let binary = root.join("target/debug/mlbridge");
    // With --state redis: a private Redis, and a second engine sharing it.
    let (engine, other, _redis) = if redis {
        let server = crate::redis::ensure_server()?;
        let redis = crate::redis::RedisServer::start(&server)?;
        let url = redis.url();
        step(&format!(
            "starting two engines sharing the state in {url}, the first with 2 Python workers"
        ));
        let flags = ["--state", url.as_str()];
        let with_workers = [flags[0], flags[1], "--workers", "2"];
        let engine = EngineProcess::start_with(&binary, &with_workers, Some(&venv.python()))?;
        let other = EngineProcess::start_with(&binary, &flags, None)?;
        println!("engines at {} and {}", engine.address, other.address);
        (engine, Some(other), Some(redis))
    } else {
        step("starting the engine (in-memory state) with 2 Python workers");
        let engine = EngineProcess::start_with_workers(&binary, 2, &venv.python())?;
        println!("engine at {}", engine.address);
        (engine, None, None)
    };
    // The Python program's engine: the second one when there are two.
    let python_engine = other
        .as_ref()
        .map_or(engine.address.as_str(), |e| e.address.as_str());

    step(
        "Engine-orchestrated: Rust drives DSPy and scikit-learn on the workers, parameters bound to variables",
    );
    run::status(&mut run::cmd(
        root.join("target/debug/engine-orchestrated"),
        &[&engine.address],
        &root,
    ))?;

    step("Python client -> Rust engine: Ping through the generated stubs");
    run::status(&mut venv.command(&["examples/python/ping.py", python_engine], &root))?;

    step("Python-orchestrated: variables, watch and Rust host tools from a Python program");
    run::status(&mut venv.command(&["examples/python/orchestrated.py", python_engine], &root))?;

    step(
        "Python control plane: engine-native optimizers tune DSPy and scikit-learn, scoring each trial with a Python callback",
    );
    run::status(&mut venv.command(&["examples/control-plane/tune.py", &engine.address], &root))?;

    drop(other);
    drop(engine);
    println!("\ndemo finished: engine stopped cleanly");
    Ok(())
}
