//! Framework-operation benchmark driver (run by `cargo xtask bench adapters`): the round
//! trip Rust client → engine → Python worker for the no-op operation and for DSPy `Predict`
//! with the offline echo LM, sequentially (latency) and from concurrent clients
//! (throughput). Prints one JSON object per measurement on stdout.
//!
//! Usage: bench_adapters ENGINE_ADDR SERVER_LABEL [TONIC_ECHO_ADDR GRPCIO_ECHO_ADDR]
//!
//! With the two echo addresses, the sequential no-op is timed in alternating rounds with a
//! unary call to each echo (the floors of the two hops it makes), so that drift on a busy
//! machine falls on all three alike.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mlbridge::adapters::bind;
use mlbridge::adapters::pb::{Constraints, VariableType};
use mlbridge::{Client, Session, SessionOptions};
use mlbridge_adapters::{builtin, dspy};

const CONCURRENCY: usize = 8;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);

#[path = "../../../runtime/examples/support/bench.rs"]
mod support;
use support::{echo, echo_client};

fn report(name: &str, server: &str, samples: &mut [Duration], ops_per_sec: f64) {
    support::report(name, server, samples, Some(ops_per_sec));
}

async fn open(address: &str) -> Session {
    let client = Client::connect(address).await.expect("connect");
    let session = client
        .open(SessionOptions::default())
        .await
        .expect("session");
    session
        .register(
            "temperature",
            VariableType::Float,
            0.7,
            Constraints {
                min: Some(0.0),
                max: Some(2.0),
                ..Constraints::default()
            },
        )
        .await
        .expect("register temperature");
    session
}

#[derive(Clone, Copy)]
enum Op {
    Noop,
    Predict,
}

async fn run(op: Op, session: &Session) {
    match op {
        Op::Noop => {
            builtin::Noop::new().call(session).await.expect("noop");
        }
        Op::Predict => {
            let inputs: BTreeMap<String, String> =
                [("question".to_owned(), "What is 2 + 2?".to_owned())].into();
            dspy::Predict::new("question -> answer", inputs)
                .temperature(bind("temperature"))
                .call(session)
                .await
                .expect("predict");
        }
    }
}

async fn sequential(op: Op, session: &Session, warmup: usize, samples: usize) -> Vec<Duration> {
    for _ in 0..warmup {
        run(op, session).await;
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        run(op, session).await;
        out.push(start.elapsed());
    }
    out
}

/// `CONCURRENCY` clients, each with its own connection and session, for a fixed window.
async fn concurrent(op: Op, address: &str) -> (Vec<Duration>, f64) {
    let mut sessions = Vec::new();
    for _ in 0..CONCURRENCY {
        sessions.push(open(address).await);
    }
    for session in &sessions {
        run(op, session).await; // pin each session to its worker, warm up
    }
    let deadline = Instant::now() + THROUGHPUT_WINDOW;
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| {
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    run(op, &session).await;
                    samples.push(start.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("client task"));
    }
    let ops = samples.len() as f64 / started.elapsed().as_secs_f64();
    (samples, ops)
}

/// The sequential no-op and the two hops' floors, a tonic and a grpcio unary echo, in
/// alternating rounds: `[noop, tonic, grpcio]` samples.
async fn noop_beside_echoes(session: &Session, tonic: &str, grpcio: &str) -> [Vec<Duration>; 3] {
    const ROUNDS: usize = 10;
    const SAMPLES: usize = 3000;
    let echoes = [echo_client(tonic).await, echo_client(grpcio).await];
    let echo = |which: usize| echo(&echoes[which]);
    for _ in 0..300 {
        run(Op::Noop, session).await;
        echo(0).await;
        echo(1).await;
    }
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..ROUNDS {
        for k in 0..3 {
            let which = (round + k) % 3;
            for _ in 0..SAMPLES / ROUNDS {
                let start = Instant::now();
                match which {
                    0 => run(Op::Noop, session).await,
                    n => echo(n - 1).await,
                }
                samples[which].push(start.elapsed());
            }
        }
    }
    samples
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let address = args
        .next()
        .expect("usage: bench_adapters ENGINE_ADDR SERVER_LABEL");
    let server = args.next().unwrap_or_else(|| "engine".to_owned());
    let echoes = args.next().zip(args.next());
    let session = open(&address).await;

    for (op, name, warmup, count) in [
        (Op::Noop, "noop", 300, 3000),
        (Op::Predict, "dspy.Predict, echo LM", 50, 500),
    ] {
        let mut samples = match (op, &echoes) {
            (Op::Noop, Some((tonic, grpcio))) => {
                let [noop, mut tonic, mut grpcio] =
                    noop_beside_echoes(&session, tonic, grpcio).await;
                for (samples, echo) in [(&mut tonic, "rust tonic"), (&mut grpcio, "python grpcio")]
                {
                    let ops = samples.len() as f64
                        / samples.iter().map(Duration::as_secs_f64).sum::<f64>();
                    report(
                        &format!("unary echo beside the no-op, {server}"),
                        echo,
                        samples,
                        ops,
                    );
                }
                noop
            }
            _ => sequential(op, &session, warmup, count).await,
        };
        let ops = samples.len() as f64 / samples.iter().map(Duration::as_secs_f64).sum::<f64>();
        report(&format!("{name}, 1 client"), &server, &mut samples, ops);
        let (mut samples, ops) = concurrent(op, &address).await;
        report(
            &format!("{name}, {CONCURRENCY} clients"),
            &server,
            &mut samples,
            ops,
        );
    }
}
