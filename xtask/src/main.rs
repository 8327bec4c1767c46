//! `cargo xtask`: the project's automation, one binary with subcommands.
//!
//! * `cargo xtask codegen [--check]` regenerates `generated/` from `proto/`, and the
//!   blocking twins of async Python code (`unasync`).
//! * `cargo xtask test` runs everything, Rust and Python, from nothing.
//! * `cargo xtask demo` builds everything and runs the main job end to end.
//! * `cargo xtask bench [NAME...] [--compare OLD.json] [--update-readme]` measures
//!   against floors and peers in the same run (`codegen`, `engine`, `scale`, `adapters`,
//!   `control-plane`) and writes the run as JSON under `target/bench/`.
//! * `cargo xtask wheel [--release|--debug] [--out DIR]` builds a platform wheel carrying
//!   the Python SDK and the engine binary.

mod bench;
mod bench_control_plane;
mod bench_report;
mod codegen;
mod demo;
mod python;
// The engine's ready line, from the client crate's own file (the xtask cannot depend on
// crates built from generated code).
#[path = "../../runtime/client/src/ready.rs"]
#[allow(unreachable_pub)]
mod ready;
mod redis;
mod run;
mod test;
mod unasync;
mod wheel;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  codegen [--check]   regenerate generated/ (with --check: fail if it is stale)
  test                run every check and test, Rust and Python
  demo [--state redis]
                      build everything and run the main job end to end (with --state
                      redis: on two engines sharing a private Redis)
  bench [NAME...] [--compare OLD.json] [--update-readme]
                      run benchmarks (codegen, engine, scale, adapters, control-plane; all
                      when no name is given) after the floors (loopback, tonic and grpcio
                      echoes); write target/bench/<time>.json; with --compare, print the
                      change per row against an earlier run's file; with --update-readme,
                      write the scale table into README.md
  wheel [--release|--debug] [--out DIR]
                      build a Python wheel carrying the SDK and the engine binary";

fn main() {
    if let Err(err) = dispatch() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn dispatch() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => bail!("no command given\n\n{USAGE}"),
    };
    match command {
        "codegen" => match rest {
            [] => codegen::run(false),
            [flag] if flag == "--check" => codegen::run(true),
            _ => bail!("unexpected arguments to codegen: {rest:?}\n\n{USAGE}"),
        },
        "test" => test::run(rest),
        "demo" => match rest {
            [] => demo::run(false),
            [flag, state] if flag == "--state" && state == "memory" => demo::run(false),
            [flag, state] if flag == "--state" && state == "redis" => demo::run(true),
            _ => bail!("unexpected arguments to demo: {rest:?}\n\n{USAGE}"),
        },
        "bench" => bench::run(rest),
        "wheel" => wheel::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root (the folder above `xtask/`).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Prints a step heading so long runs show where they are.
pub(crate) fn step(title: &str) {
    println!("\n==> {title}");
}
