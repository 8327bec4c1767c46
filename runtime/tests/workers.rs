//! The worker pool with real processes (`mlbridge serve --workers N` spawning
//! `python -m mlbridge.worker`): readiness, DescribeAdapters, framework operations with
//! literals and bindings, validation errors, session affinity, crash and restart, and no
//! orphaned workers when the engine dies.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;

use mlbridge::{BridgeError, ErrorKind, Session, SessionOptions};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType as T, parameter_value, value::Kind,
};

mod support;
use support::Engine;
use support::redis::RedisServer;
use support::workers::{
    Attached, signal, stand_in_adapters, token_file, wait_gone, worker_env, workspace,
};

/// An engine process with `workers` workers serving the builtin adapter.
fn start_engine(workers: usize, extra: &[&str]) -> Engine {
    let workers = workers.to_string();
    let mut command = Engine::command(&[
        "--workers",
        &workers,
        "--adapter",
        "mlbridge_adapters.builtin",
    ]);
    command.args(extra);
    worker_env(&mut command);
    Engine::spawn(command)
}

fn value(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

fn literal(kind: Kind) -> pb::ParameterValue {
    pb::ParameterValue {
        kind: Some(parameter_value::Kind::Value(value(kind))),
    }
}

fn binding(variable: &str) -> pb::ParameterValue {
    pb::ParameterValue {
        kind: Some(parameter_value::Kind::Binding(pb::VariableBinding {
            variable_name: variable.to_owned(),
        })),
    }
}

fn params(entries: Vec<(&str, pb::ParameterValue)>) -> HashMap<String, pb::ParameterValue> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

async fn run(
    session: &Session,
    operation: &str,
    parameters: Vec<(&str, pb::ParameterValue)>,
) -> Result<pb::ExecuteFrameworkOperationResponse, BridgeError> {
    session
        .execute_framework_operation("builtin", operation, params(parameters), HashMap::new())
        .await
}

async fn worker_pid(session: &Session) -> u32 {
    let pid = session
        .call_tool("worker_pid", HashMap::new())
        .await
        .unwrap();
    match pid.kind {
        Some(Kind::IntValue(pid)) => pid as u32,
        other => panic!("worker_pid returned {other:?}"),
    }
}

#[tokio::test]
async fn workers_describe_their_adapters_and_tools() {
    let engine = start_engine(1, &[]);
    let client = engine.client().await;
    let adapters = client.describe_adapters(&[]).await.unwrap();
    let builtin = adapters
        .iter()
        .find(|a| a.framework == "builtin")
        .expect("builtin adapter");
    assert_eq!(builtin.python_module, "mlbridge.frameworks.builtin");
    let operations: Vec<&str> = builtin.operations.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(operations, ["apply", "echo", "noop", "sleep"]);
    let sleep = &builtin.operations[3];
    assert_eq!(sleep.parameters[0].name, "seconds");
    assert_eq!(sleep.parameters[0].r#type, T::Float as i32);
    let tools: Vec<(&str, bool)> = builtin
        .tools
        .iter()
        .map(|t| (t.name.as_str(), t.supports_streaming))
        .collect();
    assert_eq!(tools, [("read_variables", true), ("worker_pid", false)]);

    assert_eq!(
        client.describe_adapters(&["builtin"]).await.unwrap().len(),
        1
    );
    assert!(
        client
            .describe_adapters(&["nope"])
            .await
            .unwrap()
            .is_empty()
    );

    let session = client.session().await.unwrap();
    let listed = client
        .raw()
        .list_tools(pb::ListToolsRequest {
            session_id: session.id().to_owned(),
            pattern: "worker_*".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .tools;
    assert_eq!(listed.len(), 1);
    let host = listed[0].host.clone().unwrap();
    assert_eq!(host.kind, pb::ToolHostKind::Worker as i32);
    assert_eq!(host.framework, "builtin");
    assert!(worker_pid(&session).await > 0);
    // Engine tools are still listed beside worker tools.
    let all = client
        .raw()
        .list_tools(pb::ListToolsRequest {
            session_id: session.id().to_owned(),
            pattern: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tools;
    let names: Vec<String> = all.iter().map(|t| t.spec.clone().unwrap().name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(
        names.len() > 1 && names.contains(&"worker_pid".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn echo_round_trips_literals_and_bindings() {
    let engine = start_engine(1, &[]);
    let client = engine.client().await;
    let builtin = client.describe_adapters(&["builtin"]).await.unwrap();
    let echo = builtin[0]
        .operations
        .iter()
        .find(|o| o.name == "echo")
        .unwrap();
    assert!(
        echo.parameters[0].bindable,
        "proto/adapters/builtin.toml must declare echo's `value` with `bindable = true`"
    );
    let session = client.session().await.unwrap();

    let response = run(
        &session,
        "echo",
        vec![("value", literal(Kind::StringValue("hi".into())))],
    )
    .await
    .unwrap();
    assert_eq!(
        response.results["value"],
        value(Kind::StringValue("hi".into()))
    );
    assert_eq!(
        response.resolved_parameters["value"],
        value(Kind::StringValue("hi".into()))
    );
    assert!(response.bindings.is_empty());
    assert_eq!(response.worker_id, "worker-0");
    assert!(response.total_us >= response.execution_us);

    session
        .register(
            "greeting",
            T::String,
            "hello".to_owned(),
            Constraints::default(),
        )
        .await
        .unwrap();
    session
        .set("greeting", "hello again".to_owned())
        .await
        .unwrap();
    let response = run(&session, "echo", vec![("value", binding("greeting"))])
        .await
        .unwrap();
    let expected = value(Kind::StringValue("hello again".into()));
    assert_eq!(response.results["value"], expected);
    assert_eq!(response.resolved_parameters["value"], expected);
    assert_eq!(
        response.bindings["value"],
        pb::BoundVariable {
            variable_name: "greeting".into(),
            version: 2
        }
    );

    // Changing the variable changes the next call.
    session.set("greeting", "bye".to_owned()).await.unwrap();
    let response = run(&session, "echo", vec![("value", binding("greeting"))])
        .await
        .unwrap();
    assert_eq!(
        response.results["value"],
        value(Kind::StringValue("bye".into()))
    );
    assert_eq!(response.bindings["value"].version, 3);

    // Nested values survive the trip to Python and back.
    let nested = value(Kind::ListValue(pb::ValueList {
        values: vec![value(Kind::IntValue(1)), value(Kind::FloatValue(2.5))],
    }));
    let response = run(
        &session,
        "echo",
        vec![(
            "value",
            pb::ParameterValue {
                kind: Some(parameter_value::Kind::Value(nested.clone())),
            },
        )],
    )
    .await
    .unwrap();
    assert_eq!(response.results["value"], nested);

    let response = run(&session, "noop", vec![]).await.unwrap();
    assert!(response.results.is_empty());
}

#[tokio::test]
async fn invalid_calls_fail_with_the_right_kind_naming_the_culprit() {
    let engine = start_engine(1, &[]);
    let session = engine.client().await.session().await.unwrap();
    session
        .register("seconds", T::Float, 1.0f64, Constraints::default())
        .await
        .unwrap();

    let expect = |result: Result<pb::ExecuteFrameworkOperationResponse, BridgeError>,
                  kind: ErrorKind,
                  names: &[&str]| {
        let error = result.expect_err("the call should fail");
        assert_eq!(error.kind, kind, "{error}");
        for name in names {
            assert!(
                error.message.contains(name),
                "`{name}` not in: {}",
                error.message
            );
        }
        error
    };

    let error = expect(
        session
            .execute_framework_operation("nope", "echo", HashMap::new(), HashMap::new())
            .await,
        ErrorKind::OperationNotFound,
        &["nope", "builtin"],
    );
    assert_eq!(error.context["framework"], "nope");
    expect(
        run(&session, "fly", vec![]).await,
        ErrorKind::OperationNotFound,
        &["fly", "echo", "noop", "sleep"],
    );
    let error = expect(
        run(
            &session,
            "echo",
            vec![
                ("value", literal(Kind::IntValue(1))),
                ("bogus", literal(Kind::IntValue(1))),
            ],
        )
        .await,
        ErrorKind::InvalidArgument,
        &["bogus", "builtin.echo"],
    );
    assert_eq!(error.context["parameter"], "bogus");
    expect(
        run(&session, "sleep", vec![("seconds", binding("seconds"))]).await,
        ErrorKind::InvalidArgument,
        &["builtin.sleep.seconds", "bindable"],
    );
    let error = expect(
        run(&session, "echo", vec![("value", binding("missing"))]).await,
        ErrorKind::VariableNotFound,
        &["missing", "builtin.echo.value"],
    );
    assert_eq!(error.context["variable"], "missing");
    let error = expect(
        run(
            &session,
            "sleep",
            vec![("seconds", literal(Kind::StringValue("x".into())))],
        )
        .await,
        ErrorKind::TypeMismatch,
        &["builtin.sleep.seconds", "float", "string"],
    );
    assert_eq!(error.context["parameter"], "seconds");
    let error = expect(
        run(
            &session,
            "sleep",
            vec![("seconds", literal(Kind::FloatValue(1000.0)))],
        )
        .await,
        ErrorKind::ConstraintViolation,
        &["builtin.sleep.seconds", "600"],
    );
    assert_eq!(error.context["constraint"], "max");
    expect(
        run(&session, "sleep", vec![]).await,
        ErrorKind::InvalidArgument,
        &["builtin.sleep", "seconds"],
    );
    expect(
        run(
            &session,
            "echo",
            vec![("value", pb::ParameterValue { kind: None })],
        )
        .await,
        ErrorKind::InvalidArgument,
        &["builtin.echo.value"],
    );
    // A session that does not exist.
    let error = engine
        .client()
        .await
        .raw()
        .execute_framework_operation(pb::ExecuteFrameworkOperationRequest {
            session_id: "no-such-session".into(),
            framework: "builtin".into(),
            operation: "noop".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let error = BridgeError::from(error);
    assert_eq!(error.kind, ErrorKind::SessionNotFound, "{error}");
    assert!(
        error.message.contains("no-such-session"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn an_engine_without_workers_says_how_to_start_them() {
    let engine = start_engine(0, &[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    let error = run(&session, "noop", vec![]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::WorkerUnavailable, "{error}");
    assert!(error.message.contains("--workers"), "{}", error.message);
    let error = client.describe_adapters(&[]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::WorkerUnavailable, "{error}");
}

#[tokio::test]
async fn a_session_sticks_to_one_worker_and_sessions_spread_over_the_pool() {
    let engine = start_engine(2, &[]);
    let client = engine.client().await;
    let first = client.session().await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(run(&first, "noop", vec![]).await.unwrap().worker_id);
    }
    assert_eq!(seen.len(), 1, "one session ran on {seen:?}");
    let mut used = seen.clone();
    for _ in 0..3 {
        let session = client.session().await.unwrap();
        let id = run(&session, "noop", vec![]).await.unwrap().worker_id;
        assert_eq!(run(&session, "noop", vec![]).await.unwrap().worker_id, id);
        used.insert(id);
    }
    assert_eq!(
        used,
        ["worker-0".to_owned(), "worker-1".to_owned()].into(),
        "sessions should use both workers"
    );
    // Worker tools follow the same pin.
    let pid = worker_pid(&first).await;
    assert_eq!(worker_pid(&first).await, pid);
}

#[tokio::test]
async fn a_killed_worker_fails_its_call_with_worker_crashed_and_is_restarted() {
    let engine = start_engine(1, &[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    let pid = worker_pid(&session).await;

    let sleeper = session.clone();
    let started = Instant::now();
    let call = tokio::spawn(async move {
        run(
            &sleeper,
            "sleep",
            vec![("seconds", literal(Kind::FloatValue(30.0)))],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(pid, "-KILL");
    let error = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call in flight must return once its worker dies")
        .unwrap()
        .expect_err("the call ran on a killed worker");
    assert_eq!(error.kind, ErrorKind::WorkerCrashed, "{error}");
    assert!(error.message.contains("worker-0"), "{}", error.message);
    assert_eq!(error.context["worker_id"], "worker-0");
    assert!(started.elapsed() < Duration::from_secs(20));

    // The slot comes back; the next call waits for it and succeeds on a new process.
    let response = run(&session, "noop", vec![]).await.unwrap();
    assert_eq!(response.worker_id, "worker-0");
    let new_pid = worker_pid(&session).await;
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn a_hung_worker_fails_its_health_pings_and_is_replaced() {
    let engine = start_engine(1, &[]);
    let session = engine.client().await.session().await.unwrap();
    let pid = worker_pid(&session).await;
    let sleeper = session.clone();
    let call = tokio::spawn(async move {
        run(
            &sleeper,
            "sleep",
            vec![("seconds", literal(Kind::FloatValue(60.0)))],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stopped, not dead: only the health pings can tell.
    signal(pid, "-STOP");
    let error = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call must fail once the hung worker is killed")
        .unwrap()
        .expect_err("the call ran on a hung worker");
    assert_eq!(error.kind, ErrorKind::WorkerCrashed, "{error}");
    assert!(error.message.contains("health"), "{}", error.message);
    assert_ne!(worker_pid(&session).await, pid);
    wait_gone(&[pid], Duration::from_secs(10));
}

#[test]
fn a_worker_that_cannot_start_stops_the_engine_with_the_reason() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlbridge"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--adapter", "no_such_adapters.thing"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    worker_env(&mut command);
    let output = command.output().expect("run mlbridge");
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "the engine must not report listening"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("worker-0"), "{stderr}");
    assert!(stderr.contains("no_such_adapters"), "{stderr}");
}

#[tokio::test]
async fn killing_the_engine_leaves_no_worker_behind() {
    let mut engine = start_engine(2, &[]);
    let client = engine.client().await;
    let mut pids = Vec::new();
    for _ in 0..2 {
        pids.push(worker_pid(&client.session().await.unwrap()).await);
    }
    pids.dedup();
    assert_eq!(pids.len(), 2, "two sessions should reach both workers");
    // A call in flight must not keep a worker alive either.
    let session = client.session().await.unwrap();
    tokio::spawn(async move {
        let _ = run(
            &session,
            "sleep",
            vec![("seconds", literal(Kind::FloatValue(30.0)))],
        )
        .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.child.kill().unwrap(); // SIGKILL: no cleanup code runs in the engine
    engine.child.wait().unwrap();
    wait_gone(&pids, Duration::from_secs(10));
}

#[tokio::test]
async fn stopping_the_engine_stops_its_workers() {
    let mut engine = start_engine(1, &[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    let pid = worker_pid(&session).await;
    let sleeper = session.clone();
    let call = tokio::spawn(async move {
        run(
            &sleeper,
            "sleep",
            vec![("seconds", literal(Kind::FloatValue(30.0)))],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(engine.child.id(), "-TERM");
    // Poll rather than block: this runtime also drives the client's side of the call.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = engine.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not stop within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "engine exited with {status}");
    wait_gone(&[pid], Duration::from_secs(10));
    let outcome = tokio::time::timeout(Duration::from_secs(5), call).await;
    if let Ok(Ok(result)) = outcome {
        assert!(result.is_err(), "a 30 s sleep cannot have finished");
    }
}

/// The floor of a framework operation: `builtin.noop` through the engine to a worker and
/// back. Run with `cargo test --release -p mlbridge --test workers -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn noop_round_trip_latency() {
    let engine = start_engine(1, &[]);
    let session = engine.client().await.session().await.unwrap();
    for _ in 0..200 {
        run(&session, "noop", vec![]).await.unwrap();
    }
    let mut micros = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let started = Instant::now();
        run(&session, "noop", vec![]).await.unwrap();
        micros.push(started.elapsed().as_micros());
    }
    micros.sort_unstable();
    eprintln!(
        "builtin.noop through the engine: p50 {} us, p99 {} us",
        micros[micros.len() / 2],
        micros[micros.len() * 99 / 100]
    );
}

/// Asserts that `result` failed with `kind` and a message naming each of `names`.
fn fails<T: std::fmt::Debug>(result: Result<T, BridgeError>, kind: ErrorKind, names: &[&str]) {
    let error = result.expect_err("the call should fail");
    assert_eq!(error.kind, kind, "{error}");
    for name in names {
        assert!(
            error.message.contains(name),
            "`{name}` not in: {}",
            error.message
        );
    }
}

fn text(s: &str) -> pb::Value {
    value(Kind::StringValue(s.to_owned()))
}

fn map(entries: &[(&str, pb::Value)]) -> pb::Value {
    value(Kind::MapValue(pb::ValueMap {
        entries: entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }))
}

#[tokio::test]
async fn modules_run_their_operation_with_bindings_and_go_with_their_session() {
    let engine = start_engine(1, &[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    session
        .register(
            "greeting",
            T::String,
            "hello".to_owned(),
            Constraints::default(),
        )
        .await
        .unwrap();
    let bind = HashMap::from([("bind".to_owned(), map(&[("value", text("greeting"))]))]);
    let module = session
        .create_resource("module", "builtin.echo", "", bind, HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        (
            module.kind.as_str(),
            module.framework.as_str(),
            module.name.as_str()
        ),
        ("module", "builtin", "echo")
    );
    assert_eq!(module.methods, ["describe", "forward"]);
    let id = module.resource_id.clone();

    // forward reads the bound variable when it runs; an argument overrides it.
    let forward = |arguments: HashMap<String, pb::Value>| {
        let session = &session;
        let id = id.clone();
        async move { session.invoke_resource(&id, "forward", arguments).await }
    };
    let result = forward(HashMap::new()).await.unwrap().result.unwrap();
    assert_eq!(result, map(&[("value", text("hello"))]));
    session.set("greeting", "hi".to_owned()).await.unwrap();
    let result = forward(HashMap::new()).await.unwrap().result.unwrap();
    assert_eq!(result, map(&[("value", text("hi"))]));
    let given = HashMap::from([("value".to_owned(), text("given"))]);
    assert_eq!(
        forward(given).await.unwrap().result.unwrap(),
        map(&[("value", text("given"))])
    );
    let described = session
        .invoke_resource(&id, "describe", HashMap::new())
        .await
        .unwrap()
        .result
        .unwrap();
    let Some(Kind::MapValue(described)) = described.kind else {
        panic!("describe answers a map")
    };
    assert_eq!(described.entries["operation"], text("echo"));
    assert_eq!(
        described.entries["bind"],
        map(&[("value", text("greeting"))])
    );

    // Bad calls and bad configurations name what is wrong.
    fails(
        session.invoke_resource(&id, "fly", HashMap::new()).await,
        ErrorKind::InvalidArgument,
        &["fly", "describe, forward"],
    );
    fails(
        session
            .invoke_resource("mod-nope", "forward", HashMap::new())
            .await,
        ErrorKind::ResourceNotFound,
        &["mod-nope"],
    );
    fails(
        session
            .create_resource("module", "fly", "builtin", HashMap::new(), HashMap::new())
            .await,
        ErrorKind::OperationNotFound,
        &["fly", "echo"],
    );
    let unknown = HashMap::from([("colour".to_owned(), text("red"))]);
    fails(
        session
            .create_resource("module", "echo", "builtin", unknown, HashMap::new())
            .await,
        ErrorKind::InvalidArgument,
        &["colour", "value"],
    );
    let not_bindable = HashMap::from([("bind".to_owned(), map(&[("seconds", text("greeting"))]))]);
    fails(
        session
            .create_resource("module", "sleep", "builtin", not_bindable, HashMap::new())
            .await,
        ErrorKind::InvalidArgument,
        &["seconds", "not bindable"],
    );
    fails(
        session
            .create_resource("gadget", "x", "", HashMap::new(), HashMap::new())
            .await,
        ErrorKind::InvalidArgument,
        &["gadget", "module, optimizer"],
    );

    // Listed on the session, counted, released once, and released with the session.
    let second = session
        .create_resource("module", "noop", "builtin", HashMap::new(), HashMap::new())
        .await
        .unwrap();
    let listed: Vec<String> = session
        .resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.resource_id)
        .collect();
    assert_eq!(listed, [id.clone(), second.resource_id.clone()]);
    assert_eq!(session.info().await.unwrap().resource_count, 2);
    assert!(session.release_resource(&id).await.unwrap());
    assert!(!session.release_resource(&id).await.unwrap());
    assert_eq!(session.info().await.unwrap().resource_count, 1);
    let other = client.session().await.unwrap();
    assert!(other.resources().await.unwrap().is_empty());
    fails(
        other
            .invoke_resource(&second.resource_id, "forward", HashMap::new())
            .await,
        ErrorKind::ResourceNotFound,
        &[&second.resource_id],
    );
    let cleaned = session.close().await.unwrap();
    assert_eq!(cleaned.resources_released, 1);
}

/// The builtin `sleep` operation for `seconds`, running in the background.
fn sleeping(
    session: &Session,
    seconds: f64,
) -> tokio::task::JoinHandle<Result<pb::ExecuteFrameworkOperationResponse, BridgeError>> {
    let session = session.clone();
    tokio::spawn(async move {
        run(
            &session,
            "sleep",
            vec![("seconds", literal(Kind::FloatValue(seconds)))],
        )
        .await
    })
}

/// A session id no other test uses.
fn fresh_session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("attached-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_attached_to_engine_b_serves_engine_a_sessions_and_its_death_is_worker_crashed() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "attach-0123456789abcdef");
    let a = Engine::start(&["--state", &url]);
    let b = Engine::spawn(Engine::command(&[
        "--state",
        &url,
        "--workers",
        "0",
        "--attach-token-file",
        token.to_str().unwrap(),
    ]));
    let id = fresh_session_id();
    let options = || SessionOptions {
        id: Some(id.clone()),
        ..Default::default()
    };
    let through_a = a.client().await.open(options()).await.unwrap();
    let through_b = b.client().await.open(options()).await.unwrap();

    // Before any worker attaches, engine B knows no framework, and says how to add one.
    let error = run(&through_b, "noop", vec![]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::WorkerUnavailable, "{error}");
    assert!(error.message.contains("--connect"), "{}", error.message);

    let worker = Attached::spawn(Attached::command(&b.address, &token));
    assert_eq!(worker.worker_id, "attached-0");
    let adapters = b.client().await.describe_adapters(&[]).await.unwrap();
    assert_eq!(adapters.len(), 1);
    assert_eq!(adapters[0].framework, "builtin");

    // State written through A; the operation asked of B, bound to it, runs on the worker.
    through_a
        .register(
            "greeting",
            T::String,
            "written through A".to_owned(),
            Constraints::default(),
        )
        .await
        .unwrap();
    let response = run(&through_b, "echo", vec![("value", binding("greeting"))])
        .await
        .unwrap();
    assert_eq!(response.worker_id, "attached-0");
    assert_eq!(
        response.results["value"],
        value(Kind::StringValue("written through A".into()))
    );
    assert_eq!(worker_pid(&through_b).await, worker.pid());
    // A streaming tool whose chunks the worker reads back through the engine it dialed.
    let chunks: Vec<pb::Value> = through_b
        .stream_tool(
            "read_variables",
            HashMap::from([
                (
                    "names".to_owned(),
                    value(Kind::ListValue(pb::ValueList {
                        values: vec![value(Kind::StringValue("greeting".into()))],
                    })),
                ),
                ("pause".to_owned(), value(Kind::FloatValue(0.0))),
            ]),
        )
        .await
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(
        chunks,
        [value(Kind::StringValue("written through A".into()))]
    );
    // A worker's own failure comes back typed, with its origin.
    let error = run(
        &through_b,
        "sleep",
        vec![("seconds", literal(Kind::FloatValue(-1.0)))],
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::ConstraintViolation, "{error}");

    // Killed mid-call: the call fails with WORKER_CRASHED at once, not at a timeout.
    let started = Instant::now();
    let call = sleeping(&through_b, 60.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(worker.pid(), "-KILL");
    let error = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call in flight must end once its worker dies")
        .unwrap()
        .expect_err("the call ran on a killed worker");
    assert_eq!(error.kind, ErrorKind::WorkerCrashed, "{error}");
    assert_eq!(error.context["worker_id"], "attached-0");
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(worker);

    // The next call says the worker left, at once; a worker that attaches takes its slot.
    let error = run(&through_b, "noop", vec![]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::WorkerUnavailable, "{error}");
    let again = Attached::spawn(Attached::command(&b.address, &token));
    assert_eq!(again.worker_id, "attached-0");
    let response = run(&through_b, "noop", vec![]).await.unwrap();
    assert_eq!(response.worker_id, "attached-0");
    assert_eq!(worker_pid(&through_b).await, again.pid());
}

#[tokio::test]
async fn attaching_takes_the_token_and_the_same_adapters_and_sessions_use_both_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "attach-0123456789abcdef");
    let engine = start_engine(1, &["--attach-token-file", token.to_str().unwrap()]);
    let refused = |command: &mut Command| {
        let output = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    let wrong = tempfile::tempdir().unwrap();
    let wrong = token_file(wrong.path(), "not-the-engine-token-at-all");
    let stderr = refused(&mut Attached::command(&engine.address, &wrong));
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    assert!(
        !stderr.contains("not-the-engine-token"),
        "the token leaked: {stderr}"
    );

    // A worker whose builtin adapter has other operations than the spawned worker's.
    let mut other = Attached::command(&engine.address, &token);
    let root = workspace();
    other.env(
        "PYTHONPATH",
        std::env::join_paths([
            stand_in_adapters().to_owned(),
            root.join("runtime/python"),
            root.join("generated/python"),
        ])
        .unwrap(),
    );
    let stderr = refused(&mut other);
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    assert!(stderr.contains("builtin"), "{stderr}");

    let worker = Attached::spawn(Attached::command(&engine.address, &token));
    assert_eq!(worker.worker_id, "attached-0");
    let client = engine.client().await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let session = client.session().await.unwrap();
        seen.insert(run(&session, "noop", vec![]).await.unwrap().worker_id);
    }
    assert_eq!(
        seen,
        ["attached-0".to_owned(), "worker-0".to_owned()].into(),
        "sessions go to spawned and attached workers"
    );

    // An engine without an attach token takes no attached worker.
    let closed = start_engine(1, &[]);
    let stderr = refused(&mut Attached::command(&closed.address, &token));
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(stderr.contains("--attach-token-file"), "{stderr}");
}

#[tokio::test]
async fn an_attached_worker_that_stops_answering_is_dropped_and_its_calls_fail() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "attach-0123456789abcdef");
    let engine = Engine::spawn(Engine::command(&[
        "--workers",
        "0",
        "--attach-token-file",
        token.to_str().unwrap(),
    ]));
    let mut worker = Attached::spawn(Attached::command(&engine.address, &token));
    let session = engine.client().await.session().await.unwrap();
    let call = sleeping(&session, 120.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Stopped, not dead: its connection stays open, only its pings go unanswered.
    signal(worker.pid(), "-STOP");
    let error = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call must fail once the worker misses its pings")
        .unwrap()
        .expect_err("the call ran on a stopped worker");
    assert_eq!(error.kind, ErrorKind::WorkerCrashed, "{error}");
    assert!(error.message.contains("health pings"), "{}", error.message);
    // Let go by the engine, the worker exits with status 1 when it runs again.
    signal(worker.pid(), "-CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the dropped worker kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_reading_a_stream_slowly_neither_stalls_its_worker_nor_buffers_without_end() {
    let engine = start_engine(1, &[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    session
        .register("big", T::String, "x".repeat(10_000), Constraints::default())
        .await
        .unwrap();
    let pid = worker_pid(&session).await;
    // 600 chunks of 10 kB as fast as the worker reads them back, far more than the
    // transport and the engine hold for a caller that does not read.
    let names = value(Kind::ListValue(pb::ValueList {
        values: vec![value(Kind::StringValue("big".into())); 600],
    }));
    let arguments = HashMap::from([
        ("names".to_owned(), names),
        ("pause".to_owned(), value(Kind::FloatValue(0.0))),
    ]);
    let mut chunks = Box::pin(
        session
            .stream_tool("read_variables", arguments)
            .await
            .unwrap(),
    );
    chunks.next().await.unwrap().unwrap();
    // The caller reads nothing more for a while; the worker answers other calls meanwhile.
    let other = client.session().await.unwrap();
    for _ in 0..5 {
        let reply = tokio::time::timeout(Duration::from_secs(5), run(&other, "noop", vec![]))
            .await
            .expect("the worker answers while a caller of it is slow")
            .unwrap();
        assert_eq!(reply.worker_id, "worker-0");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Its stream then ends with the reason, after the chunks that were waiting.
    let mut read = 1;
    let error = loop {
        match chunks.next().await {
            Some(Ok(_)) => read += 1,
            Some(Err(error)) => break error,
            None => panic!("the stream ended after {read} chunks without saying why"),
        }
    };
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("too slowly"), "{}", error.message);
    assert!(read < 600, "{read} chunks");
    assert_eq!(worker_pid(&session).await, pid, "the worker kept running");
}
