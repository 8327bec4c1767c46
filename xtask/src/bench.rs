//! `cargo xtask bench [SECTION...] [--compare OLD.json]`: benchmarks against floors and
//! peers measured in the same run (the floors first, in every run), with alternating runs
//! so that machine noise hits both sides alike. Each run is also written as JSON under
//! `target/bench/`, and `--compare` prints the change per row against an earlier file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) use crate::bench_report::{Report, Row, parse_rows};
use crate::{python, run, step};

const ALL: &[&str] = &["codegen", "engine", "scale", "adapters", "control-plane"];

/// The release binaries every run needs: the engine and the floors' driver.
const BASE_BUILD: &[&str] = &[
    "-p",
    "mlbridge",
    "--bin",
    "mlbridge",
    "--example",
    "bench_floors",
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut names = Vec::new();
    let mut compare = None;
    let mut update_readme = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--compare" => match args.next() {
                Some(path) => compare = Some(PathBuf::from(path)),
                None => bail!("--compare needs the JSON file of an earlier run"),
            },
            "--update-readme" => update_readme = true,
            name if ALL.contains(&name) => names.push(name),
            other => bail!(
                "unknown benchmark `{other}` (known: {}; flags: --compare OLD.json, --update-readme)",
                ALL.join(", ")
            ),
        }
    }
    if names.is_empty() {
        names = ALL.to_vec();
    }
    if update_readme && !names.contains(&"scale") {
        bail!("--update-readme writes the scale table: run the `scale` section with it");
    }
    // Read the old file first: a typo should not cost a whole run.
    if let Some(old) = &compare {
        std::fs::metadata(old).with_context(|| format!("--compare {}", old.display()))?;
    }
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let root = crate::root();
    let mut build: Vec<&str> = BASE_BUILD.to_vec();
    for name in &names {
        build.extend_from_slice(match *name {
            "engine" | "scale" => &["--example", "bench_engine"],
            "adapters" => &[
                "-p",
                "example-engine-orchestrated",
                "--example",
                "bench_adapters",
            ],
            "control-plane" => &["--example", "bench_control_plane"],
            _ => &[],
        });
    }
    step("bench: building release binaries");
    let mut cargo_args = vec!["build", "--quiet", "--release"];
    cargo_args.extend(build);
    run::status(&mut run::cmd(run::cargo(), &cargo_args, &root))?;
    let venv = python::ensure()?;

    let mut report = Report::new();
    let floors = Floors::start(&root, &venv)?;
    floors.measure(&root, &venv, &mut report)?;
    for name in names {
        report.section(name);
        match name {
            "codegen" => codegen(&root, &venv)?,
            "engine" => engine(&root, &venv, &floors, &mut report)?,
            "scale" => scale(&root, &mut report, update_readme)?,
            "adapters" => adapters(&root, &venv, &floors, &mut report)?,
            "control-plane" => crate::bench_control_plane::run(&root, &venv, &floors, &mut report)?,
            _ => unreachable!("checked above"),
        }
    }
    floors.stop()?;
    let path = report.write(&root, started_unix)?;
    println!(
        "
this run: {}",
        path.display()
    );
    if let Some(old) = compare {
        report.compare(&old)?;
    }
    Ok(())
}

/// The floor servers of a run: a Rust process serving a TCP and a Unix-socket ping-pong
/// and a tonic unary echo, and a Python grpcio unary echo. They stay up for the whole run,
/// so sections can use them as peers too.
pub(crate) struct Floors {
    rust: run::Served,
    python: run::Served,
    tcp_port: String,
    unix_path: String,
    /// `127.0.0.1:PORT` of the tonic echo.
    pub(crate) tonic: String,
    /// `127.0.0.1:PORT` of the Python grpcio echo.
    pub(crate) grpcio: String,
}

/// The floors' rows, as `(name, server)`.
pub(crate) const TCP_ROUND_TRIP: (&str, &str) = ("loopback round trip, 1 byte", "tcp");
pub(crate) const TONIC_ECHO: (&str, &str) = ("unary echo (Rust client)", "rust tonic");
pub(crate) const GRPCIO_ECHO: (&str, &str) = ("unary echo (Rust client)", "python grpcio");
pub(crate) const TONIC_ECHO_FROM_PYTHON: (&str, &str) =
    ("unary echo (Python client)", "rust tonic");

impl Floors {
    fn start(root: &Path, venv: &python::Venv) -> Result<Self> {
        let rust = run::Served::start(
            run::cmd(
                root.join("target/release/examples/bench_floors"),
                &["serve"],
                root,
            ),
            "FLOORS ",
        )?;
        let python =
            run::Served::start(venv.command(&["tests/bench/echo_server.py"], root), "PORT ")?;
        let said: Vec<&str> = rust.said.split(' ').collect();
        let [tcp_port, unix_path, tonic_port] = said.as_slice() else {
            bail!(
                "bench_floors printed `FLOORS {}`, not three fields",
                rust.said
            );
        };
        Ok(Floors {
            tcp_port: (*tcp_port).to_owned(),
            unix_path: (*unix_path).to_owned(),
            tonic: format!("127.0.0.1:{tonic_port}"),
            grpcio: format!("127.0.0.1:{}", python.said),
            rust,
            python,
        })
    }

    fn measure(&self, root: &Path, venv: &python::Venv, report: &mut Report) -> Result<()> {
        report.section("floors");
        step("bench floors: loopback round trips, tonic and grpcio echoes (Rust client)");
        let out = run::output(&mut run::cmd(
            root.join("target/release/examples/bench_floors"),
            &[
                "measure",
                &self.tcp_port,
                &self.unix_path,
                &self.tonic,
                &self.grpcio,
            ],
            root,
        ))?;
        let mut rows = parse_rows(&String::from_utf8_lossy(&out.stdout))?;
        step("bench floors: the same echoes from a Python grpcio client");
        let out = run::output(&mut venv.command(
            &[
                "tests/bench/bench_python.py",
                "floors",
                &self.tonic,
                &self.grpcio,
            ],
            root,
        ))?;
        rows.extend(parse_rows(&String::from_utf8_lossy(&out.stdout))?);
        print_rows("floor", "server", &rows);
        report.rows(&rows);
        let tcp = report.p50(TCP_ROUND_TRIP.0, TCP_ROUND_TRIP.1);
        for (label, floor) in [("tonic echo", TONIC_ECHO), ("grpcio echo", GRPCIO_ECHO)] {
            if let (Some(echo), Some(tcp)) = (report.p50(floor.0, floor.1), tcp) {
                report.note(&format!(
                    "{label} (Rust client) = {:.1}x the bare TCP round trip",
                    echo / tcp
                ));
            }
        }
        Ok(())
    }

    fn stop(self) -> Result<()> {
        self.rust.stop()?;
        self.python.stop()
    }
}

/// Prints rows as a table whose first two columns are titled `what` and `server`.
pub(crate) fn print_rows(what: &str, server: &str, rows: &[Row]) {
    println!(
        "\n{:<52} {:<22} {:>10} {:>10} {:>12}",
        what, server, "p50 µs", "p99 µs", "ops/s"
    );
    for row in rows {
        print!(
            "{:<52} {:<22} {:>10.1} {:>10.1} {:>12.0}",
            row.name, row.server, row.p50_us, row.p99_us, row.ops_per_sec
        );
        match row.rss_mib {
            Some(rss) => println!("  engine RSS {rss:.1} MiB"),
            None => println!(),
        }
    }
}

/// Python stub generation: our CLI against `python -m grpc_tools.protoc` with the
/// mypy-protobuf plugins, producing the same four kinds of file.
fn codegen(root: &Path, venv: &python::Venv) -> Result<()> {
    step("bench codegen: building the release CLI");
    run::status(&mut run::cmd(
        run::cargo(),
        &["build", "--quiet", "--release", "-p", "mlbridge-codegen"],
        root,
    ))?;
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
            let mut ours_cmd = run::cmd(&ours, &[], root);
            ours_cmd
                .arg("-I")
                .arg(&include)
                .arg("--python-out")
                .arg(&ours_out)
                .args(files);
            let mut theirs_cmd = venv.command(&["-m", "grpc_tools.protoc"], root);
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

/// Engine latency and throughput from Rust and Python, against the floors of the run and a
/// plain grpcio dict server as the peer for throughput.
fn engine(root: &Path, venv: &python::Venv, floors: &Floors, report: &mut Report) -> Result<()> {
    let engine = run::EngineProcess::start(&root.join("target/release/mlbridge"))?;
    let peer = run::Served::start(venv.command(&["tests/bench/dict_server.py"], root), "PORT ")?;
    let peer_address = format!("127.0.0.1:{}", peer.said);

    step("bench engine: Rust client");
    let rust = run::output(&mut run::cmd(
        root.join("target/release/examples/bench_engine"),
        &[&engine.address, &peer_address, &floors.tonic],
        root,
    ))?;
    step("bench engine: Python client");
    let python = run::output(&mut venv.command(
        &[
            "tests/bench/bench_python.py",
            &engine.address,
            &peer_address,
            &floors.tonic,
        ],
        root,
    ))?;
    peer.stop()?;
    drop(engine);

    let mut rows = parse_rows(&String::from_utf8_lossy(&rust.stdout))?;
    rows.extend(parse_rows(&String::from_utf8_lossy(&python.stdout))?);
    print_rows("operation", "server", &rows);
    report.rows(&rows);
    let find =
        |name: &str, server: &str| rows.iter().find(|r| r.name == name && r.server == server);
    let p50 = |name: &str, server: &str| find(name, server).map(|r| r.p50_us);
    // The floors measured beside each get, in alternating rounds.
    let tonic = p50("unary echo (Rust client), beside the get", TONIC_ECHO.1);
    let tonic_from_python = p50(
        "unary echo (Python client), beside the get",
        TONIC_ECHO_FROM_PYTHON.1,
    );
    let rust_get = p50("get (Rust client)", "engine");
    println!("\ngoals (floors measured beside the gets, in alternating rounds):");
    report.ratio("Rust client get p50 / tonic echo p50", rust_get, tonic, 1.3);
    report.ratio(
        "Python SDK uncached get p50 / Python grpcio client -> tonic echo p50",
        p50("get, uncached (Python SDK)", "engine"),
        tonic_from_python,
        1.3,
    );
    report.at_most(
        "Rust in-process get p50 (µs)",
        p50("get (Rust, in-process)", "in-process"),
        1.0,
    );
    report.ratio(
        "set batch of 100 p50 / single set p50 (Rust client)",
        p50("set batch of 100 (Rust client)", "engine"),
        p50("set (Rust client)", "engine"),
        10.0,
    );
    report.ratio(
        "watch notification (set -> update) p50 / get p50 (Rust client)",
        p50("watch notification (set -> update)", "engine"),
        rust_get,
        1.5,
    );
    report.at_most(
        "Python cached get p50 (µs)",
        p50("get, cached (Python SDK)", "engine"),
        2.0,
    );
    let concurrent = "get, 32 concurrent clients";
    report.ratio_at_least(
        "throughput at 32 clients, engine / Python dict server",
        find(concurrent, "engine").map(|r| r.ops_per_sec),
        find(concurrent, "python dict server").map(|r| r.ops_per_sec),
        3.0,
    );
    what_telemetry_and_auth_cost(root, venv, report)?;
    redis_backend(root, report)
}

/// The Redis state backend beside the memory one, with a bare Redis round trip from Rust as
/// the floor, on a private `redis-server` (installed when missing, as for the tests).
fn redis_backend(root: &Path, report: &mut Report) -> Result<()> {
    step("bench engine: the Redis backend beside the memory backend (Rust client)");
    let server = crate::redis::RedisServer::start(&crate::redis::ensure_server()?)?;
    let binary = root.join("target/release/mlbridge");
    let memory = run::EngineProcess::start(&binary)?;
    let state = ["--state", &server.url()];
    let (a, b) = (
        run::EngineProcess::start_with_args(&binary, &state)?,
        run::EngineProcess::start_with_args(&binary, &state)?,
    );
    let out = run::output(&mut run::cmd(
        root.join("target/release/examples/bench_engine"),
        &[
            "redis",
            &memory.address,
            &a.address,
            &b.address,
            &server.url(),
        ],
        root,
    ))?;
    drop((memory, a, b, server));
    let rows = parse_rows(&String::from_utf8_lossy(&out.stdout))?;
    print_rows("operation", "server", &rows);
    report.rows(&rows);
    let find =
        |name: &str, server: &str| rows.iter().find(|r| r.name == name && r.server == server);
    let p50 = |name: &str, server: &str| find(name, server).map(|r| r.p50_us);
    println!("\ngoals (Redis with append-only fsync on every write; floors measured beside):");
    let get = "get (Rust client)";
    report.ratio(
        "get on Redis - get on memory, over one bare Redis GET round trip",
        p50(get, "engine, redis")
            .zip(p50(get, "engine, memory"))
            .map(|(r, m)| r - m),
        p50("bare GET round trip (Rust)", "redis"),
        1.0,
    );
    let clients = "get, 32 concurrent clients";
    report.ratio_at_least(
        &format!(
            "throughput at 32 clients on Redis, 2 engines / 1 engine ({} cores)",
            std::thread::available_parallelism().map_or(0, usize::from)
        ),
        find(clients, "2 engines, redis").map(|r| r.ops_per_sec),
        find(clients, "1 engine, redis").map(|r| r.ops_per_sec),
        1.5,
    );
    Ok(())
}

/// The Python SDK's uncached get on an engine as started by default (on loopback: access
/// control off, no telemetry), on one with access control on (`--auth required`: the SDK
/// passes its session's owner token), on one with all telemetry on (OTLP export to a
/// collector, Prometheus metrics, JSON logs) and on one with both, in alternating rounds of
/// one run.
fn what_telemetry_and_auth_cost(
    root: &Path,
    venv: &python::Venv,
    report: &mut Report,
) -> Result<()> {
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
    print_rows("operation", "engine", &rows);
    report.rows(&rows);
    println!("(the collector received {spans} spans from the engines with telemetry on)");
    if spans == 0 {
        bail!("the engines with telemetry on exported no spans: the comparison would be void");
    }
    let p50 = |server: &str| rows.iter().find(|r| r.server == server).map(|r| r.p50_us);
    println!("\ngoals:");
    for on in ["auth on", "telemetry on", "both on"] {
        report.ratio(
            &format!("Python uncached get p50, {on} / off"),
            p50(on),
            p50("off"),
            1.10,
        );
    }
    Ok(())
}

/// How cost grows with work, each size on a fresh engine process (so its memory is its
/// own): get latency and engine memory with 1, 1,000 and 100,000 variables in a session
/// and with 1, 100 and 10,000 sessions; watch fan-out to 1, 100 and 1,000 watchers.
fn scale(root: &Path, report: &mut Report, update_readme: bool) -> Result<()> {
    let binary = root.join("target/release/mlbridge");
    let driver = root.join("target/release/examples/bench_engine");
    let mut rows = Vec::new();
    for (kind, sizes) in [
        ("variables", ["1", "1000", "100000"]),
        ("sessions", ["1", "100", "10000"]),
        ("watchers", ["1", "100", "1000"]),
    ] {
        for size in sizes {
            step(&format!("bench scale: {size} {kind}"));
            // Limits raised to the largest size (the defaults stop at 10,000 variables per
            // session and 256 watchers per session).
            let engine = run::EngineProcess::start_with_args(
                &binary,
                &[
                    "--max-variables",
                    "100000",
                    "--max-sessions",
                    "10000",
                    "--max-watchers",
                    "1000",
                ],
            )?;
            let out = run::output(&mut run::cmd(
                &driver,
                &[
                    "scale",
                    kind,
                    size,
                    &engine.address,
                    &engine.pid().to_string(),
                ],
                root,
            ))?;
            drop(engine);
            rows.extend(parse_rows(&String::from_utf8_lossy(&out.stdout))?);
        }
    }
    print_rows("scale", "server", &rows);
    report.rows(&rows);
    let mut table = scale_table(&rows);
    if let Some(floor) = report.p50(TONIC_ECHO.0, TONIC_ECHO.1) {
        table.push_str(&format!(
            "\nThe floor in the same run: a tonic unary echo from a Rust client, {floor:.1} µs p50 ({} cores).\n",
            std::thread::available_parallelism().map_or(0, usize::from)
        ));
    }
    if update_readme {
        let readme = root.join("README.md");
        let text = std::fs::read_to_string(&readme)?;
        let (begin, end) = ("<!-- scale table: begin -->", "<!-- scale table: end -->");
        let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
            bail!("README.md has no `{begin}` ... `{end}` block to write the table into");
        };
        let updated = format!("{}{begin}\n{table}{}", &text[..a], &text[b..]);
        std::fs::write(&readme, updated)?;
        println!("\nwrote the scale table into README.md");
    }
    Ok(())
}

/// The README's scale table (Markdown) from the scale rows of a run.
fn scale_table(rows: &[Row]) -> String {
    let mut table =
        String::from("| measurement | p50 µs | p99 µs | engine RSS MiB |\n|---|---:|---:|---:|\n");
    for row in rows {
        let rss = row.rss_mib.map_or("-".to_owned(), |m| format!("{m:.1}"));
        table.push_str(&format!(
            "| {} | {:.1} | {:.1} | {rss} |\n",
            row.name, row.p50_us, row.p99_us
        ));
    }
    table
}

/// Framework-operation round trips (Rust client → engine → Python worker) with 1 and 2
/// workers, against the same calls made in-process in Python (the floor), in one run.
fn adapters(root: &Path, venv: &python::Venv, floors: &Floors, report: &mut Report) -> Result<()> {
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
            &[
                &engine.address,
                &format!("engine, {label}"),
                &floors.tonic,
                &floors.grpcio,
            ],
            root,
        ))?;
        drop(engine);
        rows.extend(parse_rows(&String::from_utf8_lossy(&out.stdout))?);
    }
    step("bench adapters: the floor, in-process Python");
    let floor = run::output(&mut venv.command(&["tests/bench/bench_adapters_floor.py"], root))?;
    rows.extend(parse_rows(&String::from_utf8_lossy(&floor.stdout))?);
    print_rows("operation", "server", &rows);
    report.rows(&rows);

    let find =
        |name: &str, server: &str| rows.iter().find(|r| r.name == name && r.server == server);
    let p50 = |name: &str, server: &str| find(name, server).map(|r| r.p50_us);
    let in_process = "in-process Python";
    let (noop, predict) = ("noop, 1 client", "dspy.Predict, echo LM, 1 client");
    println!(
        "\ngoals (overhead = p50 through the engine - p50 in-process; floors measured beside the no-op):"
    );
    for server in ["engine, 1 worker", "engine, 2 workers"] {
        let overhead = |name: &str| Some(p50(name, server)? - p50(name, in_process)?);
        let beside = format!("unary echo beside the no-op, {server}");
        let two_hops = p50(&beside, TONIC_ECHO.1)
            .zip(p50(&beside, GRPCIO_ECHO.1))
            .map(|(tonic, grpcio)| tonic + grpcio);
        report.ratio(
            &format!("no-op overhead, {server} / (tonic echo + grpcio echo)"),
            overhead(noop),
            two_hops,
            1.0,
        );
        // DSPy through a worker: at most the no-op overhead plus 20% of the in-process call.
        report.ratio(
            &format!(
                "dspy.Predict through the worker - no-op overhead, {server} / in-process Predict"
            ),
            p50(predict, server).zip(overhead(noop)).map(|(p, o)| p - o),
            p50(predict, in_process),
            1.2,
        );
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let throughput =
        |server: &str| find("dspy.Predict, echo LM, 8 clients", server).map(|r| r.ops_per_sec);
    let (one, two) = (
        throughput("engine, 1 worker"),
        throughput("engine, 2 workers"),
    );
    if cores >= 4 {
        report.ratio_at_least(
            &format!("dspy.Predict throughput at 8 clients, 2 workers / 1 worker ({cores} cores)"),
            two,
            one,
            1.7,
        );
    } else if let (Some(one), Some(two)) = (one, two) {
        report.note(&format!(
            "dspy.Predict throughput at 8 clients, 2 workers / 1 worker: {:.2}x ({cores} cores: the 1.7x goal needs at least 4)",
            two / one
        ));
    }
    Ok(())
}
