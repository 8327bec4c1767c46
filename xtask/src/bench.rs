//! `cargo xtask bench [codegen]`: benchmarks against peers measured in the same run, with
//! alternating runs so that machine noise hits both sides alike.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{python, run, step};

const ALL: &[&str] = &["codegen", "engine", "adapters", "control-plane"];

pub(crate) fn run(names: &[String]) -> Result<()> {
    let names: Vec<&str> = if names.is_empty() {
        ALL.to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };
    for name in names {
        match name {
            "codegen" => codegen()?,
            "engine" => engine()?,
            "adapters" => adapters()?,
            "control-plane" => crate::bench_control_plane::run()?,
            other => bail!("unknown benchmark `{other}` (known: {})", ALL.join(", ")),
        }
    }
    Ok(())
}

/// Python stub generation: our CLI against `python -m grpc_tools.protoc` with the
/// mypy-protobuf plugins, producing the same four kinds of file.
fn codegen() -> Result<()> {
    let root = crate::root();
    step("bench codegen: building the release CLI");
    run::status(&mut run::cmd(
        run::cargo(),
        &["build", "--quiet", "--release", "-p", "mlbridge-codegen"],
        &root,
    ))?;
    let venv = python::ensure()?;
    let ours = root.join("target/release/mlbridge-codegen");
    let fixtures = [
        "fixtures/kitchen/v1/kitchen.proto",
        "fixtures/common/v1/common.proto",
        "fixtures/options/v1/options.proto",
    ];
    let cases: [(&str, &str, &[&str]); 2] = [
        ("ml_bridge.proto", "proto", &["ml_bridge.proto"]),
        (
            "kitchen-sink fixture (3 files)",
            "tests/fixtures/proto",
            &fixtures,
        ),
    ];
    const ROUNDS: usize = 15;
    let scratch = std::env::temp_dir().join(format!("mlbridge-bench-{}", std::process::id()));
    println!(
        "{ROUNDS} alternating rounds per input; output: _pb2.py, _pb2.pyi, _pb2_grpc.py, _pb2_grpc.pyi\n"
    );
    println!(
        "{:<32} {:>14} {:>18} {:>10}",
        "input", "ours (median)", "grpc_tools (median)", "speed-up"
    );
    for (label, include, files) in cases {
        let include = root.join(include);
        let mut ours_times = Vec::new();
        let mut theirs_times = Vec::new();
        for round in 0..ROUNDS {
            let out = scratch.join(format!("{round}"));
            let (ours_out, theirs_out) = (out.join("ours"), out.join("theirs"));
            std::fs::create_dir_all(&theirs_out)?;
            let mut ours_cmd = run::cmd(&ours, &[], &root);
            ours_cmd
                .arg("-I")
                .arg(&include)
                .arg("--python-out")
                .arg(&ours_out)
                .args(files);
            let mut theirs_cmd = venv.command(&["-m", "grpc_tools.protoc"], &root);
            theirs_cmd.arg(format!("-I{}", include.display()));
            for flag in [
                "--python_out",
                "--grpc_python_out",
                "--mypy_out",
                "--mypy_grpc_out",
            ] {
                theirs_cmd.arg(format!("{flag}={}", theirs_out.display()));
            }
            theirs_cmd.args(files);
            // Alternate which side goes first.
            if round % 2 == 0 {
                ours_times.push(time(&mut ours_cmd)?);
                theirs_times.push(time(&mut theirs_cmd)?);
            } else {
                theirs_times.push(time(&mut theirs_cmd)?);
                ours_times.push(time(&mut ours_cmd)?);
            }
            ensure_same_files(&ours_out, &theirs_out)?;
        }
        let (ours_median, theirs_median) = (median(&mut ours_times), median(&mut theirs_times));
        println!(
            "{:<32} {:>11.1} ms {:>15.1} ms {:>9.1}x",
            label,
            ours_median.as_secs_f64() * 1e3,
            theirs_median.as_secs_f64() * 1e3,
            theirs_median.as_secs_f64() / ours_median.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn time(command: &mut std::process::Command) -> Result<Duration> {
    let start = Instant::now();
    run::output(command)?;
    Ok(start.elapsed())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Both sides must have produced the same set of files, or the comparison is unfair.
fn ensure_same_files(ours: &Path, theirs: &Path) -> Result<()> {
    let list = |dir: &Path| -> Result<Vec<String>> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(dir)?.to_string_lossy().into_owned();
                    // protoc's gRPC plugins write (empty) service files for every input.
                    if !relative.ends_with("_grpc.py") && !relative.ends_with("_grpc.pyi") {
                        files.push(relative);
                    }
                }
            }
        }
        files.sort();
        Ok(files)
    };
    let (a, b) = (list(ours)?, list(theirs)?);
    if a != b {
        bail!("the two generators produced different message files: {a:?} vs {b:?}");
    }
    Ok(())
}

/// One measured row, as the bench drivers print it (one JSON object per line).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) server: String,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) ops_per_sec: f64,
}

/// Parses the drivers' flat JSON lines without a JSON dependency.
pub(crate) fn parse_rows(text: &str) -> Result<Vec<Row>> {
    let field = |line: &str, key: &str| -> Result<String> {
        let start = line
            .find(&format!("\"{key}\":"))
            .ok_or_else(|| anyhow::anyhow!("no `{key}` in {line}"))?
            + key.len()
            + 3;
        // `"key":` is key.len() + 3 bytes; JSON writers may put a space after the colon.
        let rest = line[start..].trim_start();
        Ok(if let Some(quoted) = rest.strip_prefix('"') {
            quoted[..quoted.find('"').unwrap_or(quoted.len())].to_owned()
        } else {
            rest[..rest.find([',', '}']).unwrap_or(rest.len())]
                .trim()
                .to_owned()
        })
    };
    text.lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .map(|line| {
            Ok(Row {
                name: field(line, "name")?,
                server: field(line, "server")?,
                p50_us: field(line, "p50_us")?.parse()?,
                p99_us: field(line, "p99_us")?.parse()?,
                ops_per_sec: field(line, "ops_per_sec")?.parse()?,
            })
        })
        .collect()
}

/// Engine latency and throughput from Rust and Python, with a plain grpcio dict server
/// as the peer, all in one run.
fn engine() -> Result<()> {
    use std::io::{BufRead, Write as _};
    let root = crate::root();
    step("bench engine: building release binaries");
    run::status(&mut run::cmd(
        run::cargo(),
        &[
            "build",
            "--quiet",
            "--release",
            "-p",
            "mlbridge",
            "--bin",
            "mlbridge",
            "--example",
            "bench_engine",
        ],
        &root,
    ))?;
    let venv = python::ensure()?;
    let engine = run::EngineProcess::start(&root.join("target/release/mlbridge"))?;

    let mut peer = venv
        .command(&["tests/bench/dict_server.py"], &root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(peer.stdout.take().expect("piped")).read_line(&mut line)?;
    let peer_address = format!(
        "127.0.0.1:{}",
        line.trim()
            .strip_prefix("PORT ")
            .ok_or_else(|| anyhow::anyhow!("dict server printed {line:?}"))?
    );

    step("bench engine: Rust client");
    let rust = run::output(&mut run::cmd(
        root.join("target/release/examples/bench_engine"),
        &[&engine.address, &peer_address],
        &root,
    ))?;
    step("bench engine: Python client");
    let python = run::output(&mut venv.command(
        &[
            "tests/bench/bench_python.py",
            &engine.address,
            &peer_address,
        ],
        &root,
    ))?;
    if let Some(stdin) = peer.stdin.as_mut() {
        let _ = stdin.flush();
    }
    drop(peer.stdin.take());
    let _ = peer.wait();
    drop(engine);

    let mut rows = parse_rows(&String::from_utf8_lossy(&rust.stdout))?;
    rows.extend(parse_rows(&String::from_utf8_lossy(&python.stdout))?);
    println!(
        "\n{:<44} {:<20} {:>10} {:>10} {:>12}",
        "operation", "server", "p50 µs", "p99 µs", "ops/s"
    );
    for row in &rows {
        println!(
            "{:<44} {:<20} {:>10.1} {:>10.1} {:>12.0}",
            row.name, row.server, row.p50_us, row.p99_us, row.ops_per_sec
        );
    }
    let find =
        |name: &str, server: &str| rows.iter().find(|r| r.name == name && r.server == server);
    println!("\ngoals:");
    let goal = |label: &str, value: Option<f64>, limit: f64, lower_is_better: bool| match value {
        Some(v) => {
            let met = if lower_is_better {
                v <= limit
            } else {
                v >= limit
            };
            println!(
                "  {label}: {v:.1} (goal {} {limit}) {}",
                if lower_is_better { "<=" } else { ">=" },
                if met { "met" } else { "NOT met" }
            );
        }
        None => println!("  {label}: not measured"),
    };
    goal(
        "Python uncached get p50 (µs)",
        find("get, uncached (Python SDK)", "engine").map(|r| r.p50_us),
        150.0,
        true,
    );
    goal(
        "Python cached get p50 (µs)",
        find("get, cached (Python SDK)", "engine").map(|r| r.p50_us),
        2.0,
        true,
    );
    goal(
        "Rust client get p50 (µs)",
        find("get (Rust client)", "engine").map(|r| r.p50_us),
        50.0,
        true,
    );
    goal(
        "Rust in-process get p50 (µs)",
        find("get (Rust, in-process)", "in-process").map(|r| r.p50_us),
        1.0,
        true,
    );
    let concurrent = "get, 32 concurrent clients";
    let ratio = match (
        find(concurrent, "engine"),
        find(concurrent, "python dict server"),
    ) {
        (Some(engine), Some(peer)) => Some(engine.ops_per_sec / peer.ops_per_sec),
        _ => None,
    };
    goal(
        "throughput at 32 clients, engine / Python dict server",
        ratio,
        3.0,
        false,
    );
    what_telemetry_and_auth_cost(&root, &venv)
}

/// The Python SDK's uncached get on an engine as started by default (on loopback: access
/// control off, no telemetry), on one with access control on (`--auth required`: the SDK
/// passes its session's owner token), on one with all telemetry on (OTLP export to a
/// collector, Prometheus metrics, JSON logs) and on one with both, in alternating rounds of
/// one run.
fn what_telemetry_and_auth_cost(root: &Path, venv: &python::Venv) -> Result<()> {
    use std::io::{BufRead, Read as _};
    step(
        "bench engine: what access control and telemetry cost (Python uncached get, alternating rounds)",
    );
    let binary = root.join("target/release/mlbridge");
    let mut sink = venv
        .command(&["tests/bench/otlp_sink.py"], root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut sink_out = std::io::BufReader::new(sink.stdout.take().expect("piped"));
    let mut line = String::new();
    sink_out.read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or_else(|| anyhow::anyhow!("the OTLP sink printed {line:?}"))?
        .to_owned();
    let collector = format!("http://127.0.0.1:{port}");
    let telemetry_flags = [
        "--otlp-endpoint",
        &collector,
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ];
    let plain = run::EngineProcess::start_with_args(&binary, &["--auth", "off"])?;
    let auth = run::EngineProcess::start_with_args(&binary, &["--auth", "required"])?;
    let mut flags = vec!["--auth", "off"];
    flags.extend(telemetry_flags);
    let telemetry = run::EngineProcess::start_with_args(&binary, &flags)?;
    flags[1] = "required";
    let both = run::EngineProcess::start_with_args(&binary, &flags)?;
    let out = run::output(&mut venv.command(
        &[
            "tests/bench/bench_python.py",
            "overhead",
            &format!("off={}", plain.address),
            &format!("auth on={}", auth.address),
            &format!("telemetry on={}", telemetry.address),
            &format!("both on={}", both.address),
        ],
        root,
    ))?;
    drop(plain);
    drop(auth);
    // Stopping the engines flushes their last spans to the collector.
    drop(telemetry);
    drop(both);
    drop(sink.stdin.take());
    let mut rest = String::new();
    sink_out.read_to_string(&mut rest)?;
    let _ = sink.wait();
    let spans: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("SPANS "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the OTLP sink did not report its span count"))?;

    let rows = parse_rows(&String::from_utf8_lossy(&out.stdout))?;
    println!(
        "\n{:<44} {:<20} {:>10} {:>10} {:>12}",
        "operation", "engine", "p50 µs", "p99 µs", "ops/s"
    );
    for row in &rows {
        println!(
            "{:<44} {:<20} {:>10.1} {:>10.1} {:>12.0}",
            row.name, row.server, row.p50_us, row.p99_us, row.ops_per_sec
        );
    }
    println!("(the collector received {spans} spans from the engines with telemetry on)");
    if spans == 0 {
        bail!("the engines with telemetry on exported no spans: the comparison would be void");
    }
    let p50 = |server: &str| rows.iter().find(|r| r.server == server).map(|r| r.p50_us);
    println!("\ngoals:");
    for on in ["auth on", "telemetry on", "both on"] {
        goal_ratio(
            &format!("Python uncached get p50, {on} / off"),
            p50(on),
            p50("off"),
            1.10,
        );
    }
    Ok(())
}

/// Framework-operation round trips (Rust client → engine → Python worker) with 1 and 2
/// workers, against the same calls made in-process in Python (the floor), in one run.
fn adapters() -> Result<()> {
    let root = crate::root();
    step("bench adapters: building release binaries");
    run::status(&mut run::cmd(
        run::cargo(),
        &[
            "build",
            "--quiet",
            "--release",
            "-p",
            "mlbridge",
            "--bin",
            "mlbridge",
            "-p",
            "example-engine-orchestrated",
            "--example",
            "bench_adapters",
        ],
        &root,
    ))?;
    let venv = python::ensure()?;
    let mut rows = Vec::new();
    for workers in [1, 2] {
        let label = format!("{workers} worker{}", if workers == 1 { "" } else { "s" });
        step(&format!("bench adapters: engine with {label}"));
        let engine = run::EngineProcess::start_with_workers(
            &root.join("target/release/mlbridge"),
            workers,
            &venv.python(),
        )?;
        let out = run::output(&mut run::cmd(
            root.join("target/release/examples/bench_adapters"),
            &[&engine.address, &format!("engine, {label}")],
            &root,
        ))?;
        drop(engine);
        rows.extend(parse_rows(&String::from_utf8_lossy(&out.stdout))?);
    }
    step("bench adapters: the floor, in-process Python");
    let floor = run::output(&mut venv.command(&["tests/bench/bench_adapters_floor.py"], &root))?;
    rows.extend(parse_rows(&String::from_utf8_lossy(&floor.stdout))?);

    println!(
        "\n{:<36} {:<24} {:>10} {:>10} {:>12}",
        "operation", "server", "p50 µs", "p99 µs", "ops/s"
    );
    for row in &rows {
        println!(
            "{:<36} {:<24} {:>10.1} {:>10.1} {:>12.0}",
            row.name, row.server, row.p50_us, row.p99_us, row.ops_per_sec
        );
    }
    let p50 = |name: &str, server: &str| {
        rows.iter()
            .find(|r| r.name == name && r.server == server)
            .map(|r| r.p50_us)
    };
    println!("\noverhead over the in-process floor (p50):");
    for (name, goal) in [
        ("noop, 1 client", Some(500.0)),
        ("dspy.Predict, echo LM, 1 client", None),
    ] {
        for server in ["engine, 1 worker", "engine, 2 workers"] {
            match (p50(name, server), p50(name, "in-process Python")) {
                (Some(remote), Some(floor)) => {
                    let overhead = remote - floor;
                    let verdict = match goal {
                        Some(limit) if overhead <= limit => format!(" (goal <= {limit} µs: met)"),
                        Some(limit) => format!(" (goal <= {limit} µs: NOT met)"),
                        None => String::new(),
                    };
                    println!("  {name}, {server}: {overhead:.1} µs{verdict}");
                }
                _ => println!("  {name}, {server}: not measured"),
            }
        }
    }
    Ok(())
}

/// Prints a goal on a ratio of two figures measured in the same run: `value / floor`
/// against `limit` (lower is better), with both figures shown.
pub(crate) fn goal_ratio(label: &str, value: Option<f64>, floor: Option<f64>, limit: f64) {
    match (value, floor) {
        (Some(v), Some(f)) if f > 0.0 => {
            let ratio = v / f;
            println!(
                "  {label}: {ratio:.2}x ({} / {}; goal <= {limit}x) {}",
                figure(v),
                figure(f),
                if ratio <= limit { "met" } else { "NOT met" }
            );
        }
        (Some(v), Some(f)) => println!(
            "  {label}: {} vs {} (no ratio to a floor of 0; goal: at most {limit}x) {}",
            figure(v),
            figure(f),
            if v <= f * limit { "met" } else { "NOT met" }
        ),
        _ => println!("  {label}: not measured"),
    }
}

/// A measured figure with as many decimals as its size deserves.
fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    }
}
