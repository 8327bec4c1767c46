//! Control-plane benchmark driver (run by `cargo xtask bench control-plane`): unary echo
//! round trips to a Python grpcio server (the floor) and to a Rust tonic server, the SDK's
//! callback server called directly (`ExecuteCallback` of the no-op, as the engine calls
//! it), the callback round trip Rust client -> engine -> Python no-op callback -> engine ->
//! client (`InvokeCallback`), the callback round trip as the engine sees it (engine ->
//! Python no-op -> engine, timed inside an engine embedded in this process, whose callback
//! a second Python program registers), and an optimization lock's acquire + release. All
//! are measured in alternating rounds, so that machine noise hits them alike. Prints one
//! JSON object per measurement on stdout.
//!
//! The two echo servers are the run's floor servers (`bench_floors serve` and
//! `tests/bench/echo_server.py`).
//!
//! Usage:
//!   bench_control_plane measure ENGINE_ADDR SESSION_ID SDK_CALLBACK_ADDR PYTHON_ECHO_ADDR
//!       RUST_ECHO_ADDR PYTHON CALLBACK_SCRIPT
//!     SESSION_ID is a session of the engine in which a Python program registered the
//!     no-op callback `noop`, served by its SDK callback server at SDK_CALLBACK_ADDR.
//!     `PYTHON CALLBACK_SCRIPT serve ADDR` starts such a program against the embedded
//!     engine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mlbridge::Client;
use mlbridge_proto::mlbridge::v1::callback_client::CallbackClient;
use mlbridge_proto::mlbridge::v1::{self as pb, Constraints, VariableType};
use tonic::transport::Channel;

/// Samples per measurement, taken in `ROUNDS` alternating rounds.
const SAMPLES: usize = 3000;
const ROUNDS: usize = 10;
const WARMUP: usize = 200;
/// The deadline the engine puts on each callback call (its default), sent on the echo
/// calls too so that both legs carry the same headers.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[path = "support/bench.rs"]
mod support;
use support::echo_client;

fn report(name: &str, server: &str, samples: &mut [Duration]) {
    support::report(name, server, samples, None);
}

/// An engine embedded in this process, served on 127.0.0.1:0, and a Python program that
/// registered the no-op callback `noop` with it: the engine's side of a callback round trip
/// can then be timed where the engine makes it, without a client -> engine hop in front.
struct Embedded {
    session: mlbridge::Session,
    program: std::process::Child,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Embedded {
    async fn start(python: &str, script: &str) -> Self {
        use std::io::BufRead;

        let engine = mlbridge::Engine::builder().build();
        let (bound_tx, bound) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = engine.clone();
        tokio::spawn(async move {
            let addr = "127.0.0.1:0".parse().expect("listen address");
            mlbridge::serve(
                served,
                &addr,
                |at| {
                    let _ = bound_tx.send(at.to_string());
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("serve the embedded engine");
        });
        let address = bound.await.expect("embedded engine bound");
        let mut program = std::process::Command::new(python)
            .args([script, "serve", &address])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the Python callback program");
        let stdout = program.stdout.take().expect("piped stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .expect("read the program's SESSION line");
            line
        })
        .await
        .expect("reader");
        let session_id = line
            .strip_prefix("SESSION ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("expected `SESSION <id> <endpoint>`, got {line:?}"))
            .to_owned();
        let session = engine
            .in_process_client()
            .open(mlbridge::SessionOptions {
                id: Some(session_id),
                ..Default::default()
            })
            .await
            .expect("join the program's session in process");
        Embedded {
            session,
            program,
            stop: Some(stop),
        }
    }

    /// Engine -> Python no-op -> engine: `InvokeCallback` handled in process.
    async fn callback(&self) {
        let result = self
            .session
            .call_callback("noop", HashMap::new())
            .await
            .expect("engine -> Python noop");
        assert!(result.is_none(), "noop returned {result:?}");
    }

    fn stop(mut self) {
        // Closing its stdin ends the program (and its session with it).
        drop(self.program.stdin.take());
        let _ = self.program.wait();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One `ExecuteCallback` of `noop`, as the engine sends it: to an echo server, or to the
/// SDK's callback server, which runs the no-op.
async fn echo(client: &CallbackClient<Channel>, session_id: &str) {
    // The request the engine would send for a no-argument callback.
    let mut request = tonic::Request::new(pb::ExecuteCallbackRequest {
        callback_id: "bench".into(),
        callback_name: "noop".into(),
        session_id: session_id.to_owned(),
        arguments: HashMap::new(),
        metadata: HashMap::new(),
        caller: String::new(),
    });
    request.set_timeout(CALL_TIMEOUT);
    // The SDK's callback server answers only calls with its secret, as the engine sends it;
    // the echo servers get the same header, so that every row carries the same bytes.
    if let Ok(secret) = std::env::var("MLBRIDGE_BENCH_CALLBACK_SECRET") {
        let value = format!("Bearer {secret}")
            .parse()
            .expect("the secret is ASCII");
        request.metadata_mut().insert("authorization", value);
    }
    client
        .clone()
        .execute_callback(request)
        .await
        .expect("echo call");
}

async fn measure(
    engine: &str,
    session_id: &str,
    sdk_server: &str,
    python_echo: &str,
    rust_echo: &str,
    (python, script): (&str, &str),
) {
    let client = Client::connect(engine).await.expect("connect");
    let embedded = Embedded::start(python, script).await;
    let session = client
        .open(mlbridge::SessionOptions {
            id: Some(session_id.to_owned()),
            ..Default::default()
        })
        .await
        .expect("join the session");
    assert_eq!(session.id(), session_id, "joined another session");
    let python = echo_client(python_echo).await;
    let rust = echo_client(rust_echo).await;
    let sdk = echo_client(sdk_server).await;

    // The callback round trip: InvokeCallback on the engine, which calls the Python
    // program's no-op over its own connection and answers.
    let callback = || async {
        let result = session
            .call_callback("noop", HashMap::new())
            .await
            .expect("InvokeCallback noop");
        assert!(result.is_none(), "noop returned {result:?}");
    };
    session
        .register(
            "x",
            VariableType::Float,
            0.5,
            Constraints {
                min: Some(0.0),
                max: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .expect("register x");
    let lock = || async {
        let held = session
            .optimization(&["x"], "bench", None)
            .await
            .expect("StartOptimization");
        held.stop(HashMap::new()).await.expect("StopOptimization");
    };

    for _ in 0..WARMUP {
        echo(&python, session_id).await;
        echo(&rust, session_id).await;
        echo(&sdk, session_id).await;
        callback().await;
        lock().await;
        embedded.callback().await;
    }
    const KINDS: usize = 6;
    let per_round = SAMPLES / ROUNDS;
    let mut samples: [Vec<Duration>; KINDS] = Default::default();
    for round in 0..ROUNDS {
        // Rotate which measurement goes first.
        for k in 0..KINDS {
            let which = (round + k) % KINDS;
            for _ in 0..per_round {
                let start = Instant::now();
                match which {
                    0 => echo(&python, session_id).await,
                    1 => echo(&rust, session_id).await,
                    2 => echo(&sdk, session_id).await,
                    3 => callback().await,
                    4 => lock().await,
                    _ => embedded.callback().await,
                }
                samples[which].push(start.elapsed());
            }
        }
    }
    let [
        python_samples,
        rust_samples,
        sdk_samples,
        callback_samples,
        lock_samples,
        embedded_samples,
    ] = &mut samples;
    embedded.stop();
    report("unary echo (floor)", "python grpcio", python_samples);
    report("unary echo", "rust tonic", rust_samples);
    report(
        "ExecuteCallback no-op, called directly",
        "python SDK server",
        sdk_samples,
    );
    report(
        "callback round trip (InvokeCallback, Python no-op)",
        "engine",
        callback_samples,
    );
    report(
        "callback round trip engine -> Python no-op -> engine",
        "engine (timed inside)",
        embedded_samples,
    );
    report(
        "lock acquire + release (Start/StopOptimization)",
        "engine",
        lock_samples,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [
            "measure",
            engine,
            session_id,
            sdk_server,
            python_echo,
            rust_echo,
            python,
            script,
        ] => {
            measure(
                engine,
                session_id,
                sdk_server,
                python_echo,
                rust_echo,
                (python, script),
            )
            .await;
        }
        _ => {
            eprintln!(
                "usage: bench_control_plane measure ENGINE_ADDR SESSION_ID SDK_CALLBACK_ADDR PYTHON_ECHO_ADDR RUST_ECHO_ADDR PYTHON CALLBACK_SCRIPT"
            );
            std::process::exit(2);
        }
    }
}
