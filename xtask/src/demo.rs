//! `cargo xtask demo`: builds everything, prepares the Python environment and runs the main
//! job end to end on the embedded in-memory engine.

use anyhow::Result;

use crate::run::{self, EngineProcess};
use crate::{python, step};

pub(crate) fn run() -> Result<()> {
    let root = crate::root();
    step("regenerating generated/ from proto/");
    crate::codegen::run(false)?;

    step("building the engine");
    run::status(&mut run::cmd(
        run::cargo(),
        &["build", "--quiet", "-p", "mlbridge"],
        &root,
    ))?;
    let venv = python::ensure()?;

    step("starting the engine (in-memory state)");
    let engine = EngineProcess::start(&root.join("target/debug/mlbridge"))?;
    println!("engine at {}", engine.address);

    step("Python client -> Rust engine: Ping through the generated stubs");
    run::status(&mut venv.command(&["examples/python/ping.py", &engine.address], &root))?;

    step("Python-orchestrated: variables, watch and Rust host tools from a Python program");
    run::status(&mut venv.command(&["examples/python/orchestrated.py", &engine.address], &root))?;

    drop(engine);
    println!("\ndemo finished: engine stopped cleanly");
    Ok(())
}
