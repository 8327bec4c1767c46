//! `cargo xtask demo`: builds everything, prepares the Python environment and runs the main
//! job end to end on the embedded in-memory engine: engine-orchestrated, Python-orchestrated and
//! the Python control plane (engine-native optimizers calling back into Python).

use anyhow::Result;

use crate::run::{self, EngineProcess};
use crate::{python, step};

pub(crate) fn run() -> Result<()> {
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

    step("starting the engine (in-memory state) with 2 Python workers");
    let engine =
        EngineProcess::start_with_workers(&root.join("target/debug/mlbridge"), 2, &venv.python())?;
    println!("engine at {}", engine.address);

    step(
        "Engine-orchestrated: Rust drives DSPy and scikit-learn on the workers, parameters bound to variables",
    );
    run::status(&mut run::cmd(
        root.join("target/debug/engine-orchestrated"),
        &[&engine.address],
        &root,
    ))?;

    step("Python client -> Rust engine: Ping through the generated stubs");
    run::status(&mut venv.command(&["examples/python/ping.py", &engine.address], &root))?;

    step("Python-orchestrated: variables, watch and Rust host tools from a Python program");
    run::status(&mut venv.command(&["examples/python/orchestrated.py", &engine.address], &root))?;

    step(
        "Python control plane: engine-native optimizers tune DSPy and scikit-learn, scoring each trial with a Python callback",
    );
    run::status(&mut venv.command(&["examples/control-plane/tune.py", &engine.address], &root))?;

    drop(engine);
    println!("\ndemo finished: engine stopped cleanly");
    Ok(())
}
