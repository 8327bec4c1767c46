//! Engine benchmark driver (run by `cargo xtask bench engine`): latency and throughput of
//! the Rust client against an engine, and throughput against a peer server speaking the
//! same protocol, and the same get and set against an engine in this process. Prints one
//! JSON object per measurement on stdout.
//!
//! Usage: bench_engine ENGINE_ADDR [PEER_ADDR]

use std::time::{Duration, Instant};

use mlbridge::{Client, Engine, Session, Write};
use mlbridge_proto::mlbridge::v1::{self as pb, Constraints, VariableType};
use tokio_stream::StreamExt;

const SAMPLES: usize = 3000;
const CONCURRENCY: usize = 32;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(2);

fn report(name: &str, server: &str, samples: &mut [Duration], ops_per_sec: Option<f64>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    let throughput = ops_per_sec.unwrap_or_else(|| {
        samples.len() as f64 / samples.iter().map(Duration::as_secs_f64).sum::<f64>()
    });
    println!(
        "{{\"name\":\"{name}\",\"server\":\"{server}\",\"p50_us\":{:.1},\"p99_us\":{:.1},\"ops_per_sec\":{:.0}}}",
        at(0.5),
        at(0.99),
        throughput
    );
}

async fn timed<F, Fut>(mut op: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..200 {
        op(i).await; // warm-up
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let start = Instant::now();
        op(i).await;
        samples.push(start.elapsed());
    }
    samples
}

/// Gets from `CONCURRENCY` clients for a fixed window; returns per-call latencies and ops/s.
async fn concurrent_gets(address: &str, session_id: &str) -> (Vec<Duration>, f64) {
    let mut tasks = Vec::new();
    let deadline = Instant::now() + THROUGHPUT_WINDOW;
    for _ in 0..CONCURRENCY {
        // One connection per client, as separate client processes would have.
        let client = Client::connect(address).await.expect("connect");
        let mut raw = client.raw();
        let session_id = session_id.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                raw.get_variable(pb::GetVariableRequest {
                    session_id: session_id.clone(),
                    name: "temperature".into(),
                })
                .await
                .expect("get");
                samples.push(start.elapsed());
            }
            samples
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let ops = all.len() as f64
        / started
            .elapsed()
            .as_secs_f64()
            .max(THROUGHPUT_WINDOW.as_secs_f64());
    (all, ops)
}

async fn prepare(address: &str) -> (Client, Session) {
    let client = Client::connect(address).await.expect("connect");
    let session = prepare_session(&client).await;
    (client, session)
}

async fn prepare_session(client: &Client) -> Session {
    let session = client.session().await.expect("session");
    session
        .register(
            "temperature",
            VariableType::Float,
            0.7,
            Constraints {
                min: Some(0.0),
                max: Some(2.0),
                ..Default::default()
            },
        )
        .await
        .expect("register");
    session
}

/// The same get and set through an engine in this process (no socket, no encoding).
async fn in_process() {
    let client = Engine::new().in_process_client();
    let session = prepare_session(&client).await;
    let mut samples = timed(|_| async {
        session.get("temperature").await.unwrap();
    })
    .await;
    report("get (Rust, in-process)", "in-process", &mut samples, None);
    let mut samples = timed(|i| {
        let session = session.clone();
        async move {
            session
                .set("temperature", (i % 100) as f64 / 100.0)
                .await
                .unwrap();
        }
    })
    .await;
    report("set (Rust, in-process)", "in-process", &mut samples, None);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let engine = args
        .first()
        .expect("usage: bench_engine ENGINE_ADDR [PEER_ADDR]");
    let (_client, session) = prepare(engine).await;

    let mut samples = timed(|_| async {
        session.get("temperature").await.unwrap();
    })
    .await;
    report("get (Rust client)", "engine", &mut samples, None);
    let mut samples = timed(|i| {
        let session = session.clone();
        async move {
            session
                .set("temperature", (i % 100) as f64 / 100.0)
                .await
                .unwrap();
        }
    })
    .await;
    report("set (Rust client)", "engine", &mut samples, None);
    in_process().await;

    for i in 0..100 {
        session
            .register(
                &format!("batch.{i}"),
                VariableType::Integer,
                0i64,
                Constraints::default(),
            )
            .await
            .unwrap();
    }
    let mut samples = timed(|round| {
        let session = session.clone();
        async move {
            let writes = (0..100)
                .map(|i| Write::new(&format!("batch.{i}"), round as i64))
                .collect();
            session.set_many(writes, true).await.unwrap();
        }
    })
    .await;
    report(
        "set batch of 100 (Rust client)",
        "engine",
        &mut samples,
        None,
    );

    // Watch latency: time from the start of a set to its update arriving at a watcher.
    let mut watch = Box::pin(session.watch(&["temperature"], false, None).await.unwrap());
    let synced = watch.next().await.unwrap().unwrap();
    assert_eq!(synced.kind, pb::VariableUpdateKind::Synced as i32);
    let mut latencies = Vec::with_capacity(SAMPLES / 3);
    for i in 0..SAMPLES / 3 {
        let start = Instant::now();
        session
            .set("temperature", (i % 100) as f64 / 100.0)
            .await
            .unwrap();
        watch.next().await.unwrap().unwrap();
        latencies.push(start.elapsed());
    }
    report(
        "watch notification (set -> update)",
        "engine",
        &mut latencies,
        None,
    );

    let (mut samples, ops) = concurrent_gets(engine, session.id()).await;
    report(
        &format!("get, {CONCURRENCY} concurrent clients"),
        "engine",
        &mut samples,
        Some(ops),
    );

    if let Some(peer) = args.get(1) {
        let (_peer_client, peer_session) = prepare(peer).await;
        let (mut samples, ops) = concurrent_gets(peer, peer_session.id()).await;
        report(
            &format!("get, {CONCURRENCY} concurrent clients"),
            "python dict server",
            &mut samples,
            Some(ops),
        );
    }
}
