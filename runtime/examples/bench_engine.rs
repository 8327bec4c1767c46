//! Engine benchmark driver (run by `cargo xtask bench engine`): latency and throughput of
//! the Rust client against an engine, and throughput against a peer server speaking the
//! same protocol, and the same get and set against an engine in this process. Prints one
//! JSON object per measurement on stdout.
//!
//! Usage: bench_engine ENGINE_ADDR [PEER_ADDR]
//!        bench_engine scale variables|sessions|watchers N ENGINE_ADDR ENGINE_PID
//!
//!        bench_engine redis MEMORY_ENGINE_ADDR REDIS_ENGINE_A REDIS_ENGINE_B REDIS_URL
//!
//! `redis` times get, set and watch through an engine on memory and through one on Redis
//! (the two Redis engines share that Redis), beside a bare Redis GET and SET round trip
//! from Rust (the floor), in alternating rounds; then gets from 32 clients on one engine
//! and spread over both.
//!
//! `scale` fills a fresh engine with N variables in one session, N sessions of one
//! variable, or N watchers of one variable, then times gets (or, for watchers, each
//! watcher's notification after a set) and reports the engine's resident memory.

use std::time::{Duration, Instant};

use mlbridge::{Client, Engine, Session, Write};
use mlbridge_proto::mlbridge::v1::{self as pb, Constraints, VariableType};
use tokio_stream::StreamExt;

const SAMPLES: usize = 3000;
const CONCURRENCY: usize = 32;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(2);

#[path = "support/bench.rs"]
mod support;
use support::{echo, echo_client, report, report_line};

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
    concurrent_gets_across(&[address], session_id).await
}

/// As [`concurrent_gets`], the clients spread evenly over engines that share the state.
async fn concurrent_gets_across(addresses: &[&str], session_id: &str) -> (Vec<Duration>, f64) {
    let mut tasks = Vec::new();
    let deadline = Instant::now() + THROUGHPUT_WINDOW;
    for i in 0..CONCURRENCY {
        // One connection per client, as separate client processes would have.
        let client = Client::connect(addresses[i % addresses.len()])
            .await
            .expect("connect");
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
    // A get takes about as long as reading the clock twice, so each sample times a batch
    // of gets and counts the mean of its batch.
    const BATCH: u32 = 100;
    let mut samples = timed(|_| async {
        for _ in 0..BATCH {
            session.get("temperature").await.unwrap();
        }
    })
    .await;
    for sample in &mut samples {
        *sample /= BATCH;
    }
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

/// The get and its floor, a tonic unary echo, in alternating rounds, so that drift on a
/// busy machine falls on both alike.
async fn get_beside_echo(session: &Session, echo_address: &str) {
    const ROUNDS: usize = 10;
    let client = echo_client(echo_address).await;
    let call_echo = || echo(&client);
    for _ in 0..200 {
        session.get("temperature").await.unwrap();
        call_echo().await;
    }
    let mut samples: [Vec<Duration>; 2] = Default::default();
    for round in 0..ROUNDS {
        for k in 0..2 {
            let which = (round + k) % 2;
            for _ in 0..SAMPLES / ROUNDS {
                let start = Instant::now();
                if which == 0 {
                    session.get("temperature").await.unwrap();
                } else {
                    call_echo().await;
                }
                samples[which].push(start.elapsed());
            }
        }
    }
    let [get, echo] = &mut samples;
    report("get (Rust client)", "engine", get, None);
    report(
        "unary echo (Rust client), beside the get",
        "rust tonic",
        echo,
        None,
    );
}

/// Watch latency: from the start of a set to its update arriving at a watcher.
async fn watch_latency(session: &Session) -> Vec<Duration> {
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
    latencies
}

/// The memory backend against the Redis one, and the Redis floor (see the module docs).
async fn redis_backend(memory: &str, engine_a: &str, engine_b: &str, url: &str) {
    const ROUNDS: usize = 10;
    let (_memory_client, on_memory) = prepare(memory).await;
    let (_redis_client, on_redis) = prepare(engine_a).await;
    let mut redis = redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let bare_get = {
        let redis = redis.clone();
        move || {
            let mut redis = redis.clone();
            async move {
                let _: Option<String> = redis::cmd("GET")
                    .arg("bench:floor")
                    .query_async(&mut redis)
                    .await
                    .expect("GET");
            }
        }
    };
    let _: () = redis::cmd("SET")
        .arg("bench:floor")
        .arg("0.5")
        .query_async(&mut redis)
        .await
        .expect("SET");
    const KINDS: usize = 6;
    let mut samples: [Vec<Duration>; KINDS] = Default::default();
    for round in 0..ROUNDS + 1 {
        for k in 0..KINDS {
            let which = (round + k) % KINDS;
            // The first round warms up.
            let count = if round == 0 { 100 } else { SAMPLES / ROUNDS };
            for i in 0..count {
                let value = (i % 100) as f64 / 100.0;
                let start = Instant::now();
                match which {
                    0 => drop(on_memory.get("temperature").await.unwrap()),
                    1 => drop(on_redis.get("temperature").await.unwrap()),
                    2 => drop(on_memory.set("temperature", value).await.unwrap()),
                    3 => drop(on_redis.set("temperature", value).await.unwrap()),
                    4 => bare_get().await,
                    _ => {
                        let _: () = redis::cmd("SET")
                            .arg("bench:floor")
                            .arg(value)
                            .query_async(&mut redis)
                            .await
                            .expect("SET");
                    }
                }
                if round > 0 {
                    samples[which].push(start.elapsed());
                }
            }
        }
    }
    let [get_m, get_r, set_m, set_r, floor_get, floor_set] = &mut samples;
    report("get (Rust client)", "engine, memory", get_m, None);
    report("get (Rust client)", "engine, redis", get_r, None);
    report("set (Rust client)", "engine, memory", set_m, None);
    report("set (Rust client)", "engine, redis", set_r, None);
    report("bare GET round trip (Rust)", "redis", floor_get, None);
    report("bare SET round trip (Rust)", "redis", floor_set, None);

    for (label, session) in [("engine, memory", &on_memory), ("engine, redis", &on_redis)] {
        let mut latencies = watch_latency(session).await;
        report(
            "watch notification (set -> update)",
            label,
            &mut latencies,
            None,
        );
    }

    let (mut samples, ops) = concurrent_gets_across(&[engine_a], on_redis.id()).await;
    let one = format!("get, {CONCURRENCY} concurrent clients");
    report(&one, "1 engine, redis", &mut samples, Some(ops));
    let (mut samples, ops) = concurrent_gets_across(&[engine_a, engine_b], on_redis.id()).await;
    report(&one, "2 engines, redis", &mut samples, Some(ops));
}

/// The resident memory of process `pid`, in MiB (Linux `/proc`).
fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024.0
}

/// Runs `count` calls of `op`, at most `IN_FLIGHT` at a time (filling an engine fast).
async fn fill<F, Fut>(count: usize, op: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    const IN_FLIGHT: usize = 64;
    let mut calls = futures_util::StreamExt::buffer_unordered(
        futures_util::stream::iter((0..count).map(op)),
        IN_FLIGHT,
    );
    while calls.next().await.is_some() {}
}

async fn scale(kind: &str, size: usize, address: &str, pid: &str) {
    let client = Client::connect(address).await.expect("connect");
    match kind {
        "variables" => {
            let session = client.session().await.expect("session");
            fill(size, |i| {
                let session = session.clone();
                async move {
                    session
                        .register(
                            &format!("v{i}"),
                            VariableType::Float,
                            0.5,
                            Constraints::default(),
                        )
                        .await
                        .expect("register");
                }
            })
            .await;
            let mut samples = timed(|i| {
                let session = session.clone();
                async move {
                    session.get(&format!("v{}", i * 7919 % size)).await.unwrap();
                }
            })
            .await;
            report_line(
                &format!("get, session of {size} variables"),
                "engine",
                &mut samples,
                None,
                Some(rss_mib(pid)),
            );
        }
        "sessions" => {
            let sessions = std::sync::Mutex::new(Vec::with_capacity(size));
            fill(size, |_| {
                let (client, sessions) = (&client, &sessions);
                async move {
                    let session = prepare_session(client).await;
                    sessions.lock().unwrap().push(session);
                }
            })
            .await;
            let sessions = sessions.into_inner().unwrap();
            let mut samples = timed(|i| {
                let session = sessions[i * 7919 % size].clone();
                async move {
                    session.get("temperature").await.unwrap();
                }
            })
            .await;
            report_line(
                &format!("get, 1 of {size} sessions"),
                "engine",
                &mut samples,
                None,
                Some(rss_mib(pid)),
            );
        }
        "watchers" => {
            let session = prepare_session(&client).await;
            // A connection per 100 watchers, as separate programs would open.
            let (seen, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            for chunk in 0..size.div_ceil(100) {
                let watcher_client = Client::connect(address).await.expect("connect");
                let joined = watcher_client
                    .open(mlbridge::SessionOptions {
                        id: Some(session.id().to_owned()),
                        ..Default::default()
                    })
                    .await
                    .expect("join");
                for _ in 0..(size - chunk * 100).min(100) {
                    let mut watch = Box::pin(
                        joined
                            .watch(&["temperature"], false, None)
                            .await
                            .expect("watch"),
                    );
                    let synced = watch.next().await.unwrap().unwrap();
                    assert_eq!(synced.kind, pb::VariableUpdateKind::Synced as i32);
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        while let Some(Ok(_)) = watch.next().await {
                            if seen.send(Instant::now()).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
            let rounds = (30_000 / size).clamp(30, 1000);
            let mut samples = Vec::with_capacity(rounds * size);
            for round in 0..rounds + 10 {
                let start = Instant::now();
                session
                    .set("temperature", (round % 100) as f64 / 100.0)
                    .await
                    .unwrap();
                for _ in 0..size {
                    let at = arrivals.recv().await.expect("a watcher's update");
                    // The first rounds warm up.
                    if round >= 10 {
                        samples.push(at - start);
                    }
                }
            }
            report_line(
                &format!("watch notification, {size} watchers"),
                "engine",
                &mut samples,
                None,
                Some(rss_mib(pid)),
            );
        }
        other => panic!("unknown scale kind {other}"),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, kind, size, address, pid] = args.as_slice()
        && mode == "scale"
    {
        scale(kind, size.parse().expect("a size"), address, pid).await;
        return;
    }
    if let [mode, memory, engine_a, engine_b, url] = args.as_slice()
        && mode == "redis"
    {
        redis_backend(memory, engine_a, engine_b, url).await;
        return;
    }
    let engine = args
        .first()
        .expect("usage: bench_engine ENGINE_ADDR [PEER_ADDR [TONIC_ECHO_ADDR]]");
    let (_client, session) = prepare(engine).await;

    match args.get(2) {
        Some(echo) => get_beside_echo(&session, echo).await,
        None => {
            let mut samples = timed(|_| async {
                session.get("temperature").await.unwrap();
            })
            .await;
            report("get (Rust client)", "engine", &mut samples, None);
        }
    }
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

    let mut latencies = watch_latency(&session).await;
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
