//! Engine-native optimizers (`tpe`, `random`, `grid`) driven through the Rust client, against
//! an engine in this process and an `mlbridge serve` process. The metrics are served by a
//! `Callback` server written here in Rust (standing in for the Python SDK's): a smooth one,
//! one that raises (CALLBACK_ERROR with a remote type and traceback), one that hangs past its
//! deadline, one that answers text, and one held at a gate so a test can look at the lock
//! while a trial runs.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mlbridge::{BridgeError, Client, Engine as LocalEngine, ErrorKind, Session, WireValue};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType as T,
    callback_server::{Callback, CallbackServer},
    ml_bridge_server::MlBridge,
    value::Kind,
};
use tokio::sync::{Notify, Semaphore, oneshot};
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------------------------------
// The metric server.

/// One metric call as the server saw it: its metadata and its caller.
type Call = (HashMap<String, String>, String);

/// Shared with the test: the gate the `gate` metric waits at, how many calls reached it,
/// and whether a call's future was dropped (cancelled by the engine).
#[derive(Clone)]
struct Metrics {
    gate: Arc<Semaphore>,
    at_gate: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
    cancelled: Arc<AtomicBool>,
    /// Metadata and caller of every call, in arrival order.
    calls: Arc<std::sync::Mutex<Vec<Call>>>,
    /// The `outputs` argument of every `from_outputs` call.
    outputs: Arc<std::sync::Mutex<Vec<pb::Value>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            gate: Arc::new(Semaphore::new(0)),
            at_gate: Arc::default(),
            arrived: Arc::default(),
            cancelled: Arc::default(),
            calls: Arc::default(),
            outputs: Arc::default(),
        }
    }
}

/// Sets its flag when dropped: a call's future is dropped when the engine gives it up.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn score(v: f64) -> Result<Response<pb::ExecuteCallbackResponse>, Status> {
    Ok(Response::new(pb::ExecuteCallbackResponse {
        result: Some(v.into_value()),
        metadata: HashMap::new(),
    }))
}

fn raise(message: &str) -> Status {
    let mut error = BridgeError::new(
        ErrorKind::CallbackError,
        format!("metric raised ValueError: {message}"),
    );
    error.remote_type = "ValueError".into();
    error.remote_traceback = format!(
        "Traceback (most recent call last):\n  File \"metric.py\", line 3\nValueError: {message}"
    );
    error.origin = "callback:flaky".into();
    error.into()
}

fn f(arguments: &HashMap<String, pb::Value>, name: &str) -> f64 {
    f64::from_value(arguments[name].clone()).unwrap()
}

/// The smooth objective: highest (0) at x = 0.3, y = -0.2.
fn bowl(x: f64, y: f64) -> f64 {
    -((x - 0.3).powi(2) + (y + 0.2).powi(2))
}

#[tonic::async_trait]
impl Callback for Metrics {
    async fn execute_callback(
        &self,
        request: Request<pb::ExecuteCallbackRequest>,
    ) -> Result<Response<pb::ExecuteCallbackResponse>, Status> {
        let r = request.into_inner();
        self.calls
            .lock()
            .unwrap()
            .push((r.metadata.clone(), r.caller.clone()));
        let trial: i64 = r.metadata["trial"].parse().unwrap();
        let a = &r.arguments;
        match r.callback_name.as_str() {
            "bowl" => score(bowl(f(a, "x"), f(a, "y"))),
            // Reads the candidate from `values`, and checks `trial` matches the metadata.
            "by_values" => {
                let Some(Kind::MapValue(values)) = &a["values"].kind else {
                    return Err(Status::invalid_argument("values is not a map"));
                };
                assert_eq!(i64::from_value(a["trial"].clone()).unwrap(), trial);
                score(bowl(f(&values.entries, "x"), f(&values.entries, "y")))
            }
            // Raises for every third trial, whatever the attempt.
            "flaky" if trial % 3 == 1 => Err(raise(&format!("trial {trial} is cursed"))),
            "flaky" => score(bowl(f(a, "x"), f(a, "y"))),
            // Hangs on trial 1 until the engine gives up on it.
            "hang" if trial == 1 => {
                let _flag = SetOnDrop(Arc::clone(&self.cancelled));
                std::future::pending::<()>().await;
                unreachable!()
            }
            "hang" => score(bowl(f(a, "x"), f(a, "y"))),
            "constant" => score(1.0),
            // Scores what the module answered (builtin.echo: `{"value": x}`).
            "from_outputs" => {
                let outputs = &a["outputs"];
                self.outputs.lock().unwrap().push(outputs.clone());
                let Some(Kind::MapValue(map)) = &outputs.kind else {
                    return Err(Status::invalid_argument("outputs is not a map"));
                };
                score(bowl(f(&map.entries, "value"), -0.2))
            }
            "line" => score(bowl(f(a, "x"), -0.2)),
            "text" => Ok(Response::new(pb::ExecuteCallbackResponse {
                result: Some("great".to_owned().into_value()),
                metadata: HashMap::new(),
            })),
            "gate" => {
                let _flag = SetOnDrop(Arc::clone(&self.cancelled));
                self.at_gate.fetch_add(1, Ordering::SeqCst);
                self.arrived.notify_one();
                self.gate.acquire().await.unwrap().forget();
                score(bowl(f(a, "x"), f(a, "y")))
            }
            other => Err(Status::not_found(other.to_owned())),
        }
    }
}

/// Serves `metrics` on a free port until the sender is dropped; answers its address.
async fn serve(metrics: Metrics) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CallbackServer::new(metrics))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    (address, stop)
}

// ---------------------------------------------------------------------------------------
// Engines, sessions and values.

/// An engine to test against: a served process or one in this process.
enum Backend {
    /// The process, killed when dropped.
    Served {
        _process: support::Engine,
    },
    Local(Box<LocalEngine>),
}

/// `mlbridge serve` with one Python worker serving the generated builtin adapter (its
/// `echo` operation), run by `$MLBRIDGE_PYTHON` or the workspace's `.venv`.
fn with_workers() -> std::process::Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runtime crate lives in the workspace")
        .to_owned();
    let python = std::env::var_os("MLBRIDGE_PYTHON")
        .filter(|p| !p.is_empty())
        .map_or_else(|| root.join(".venv/bin/python"), std::path::PathBuf::from);
    let path = [root.join("runtime/python"), root.join("generated/python")];
    let mut command =
        support::Engine::command(&["--workers", "1", "--adapter", "mlbridge_adapters.builtin"]);
    command
        .env("MLBRIDGE_PYTHON", python)
        .env("PYTHONPATH", std::env::join_paths(path).unwrap())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// A backend, a client of it, a session with `x` and `y` in [-1, 1] (both 0.5), and the
/// metric server.
struct Setup {
    how: &'static str,
    backend: Backend,
    client: Client,
    session: Session,
    metrics: Metrics,
    endpoint: String,
    _server: oneshot::Sender<()>,
}

impl Setup {
    async fn new(how: &'static str) -> Setup {
        let (backend, client) = match how {
            "workers" => {
                let served = support::Engine::spawn(with_workers());
                let client = served.client().await;
                (Backend::Served { _process: served }, client)
            }
            "grpc" => {
                let served = support::Engine::start(&[]);
                let client = served.client().await;
                (Backend::Served { _process: served }, client)
            }
            _ => {
                let local = LocalEngine::new();
                let client = local.in_process_client();
                (Backend::Local(Box::new(local)), client)
            }
        };
        let session = client.session().await.unwrap();
        let unit = Constraints {
            min: Some(-1.0),
            max: Some(1.0),
            ..Default::default()
        };
        for name in ["x", "y"] {
            session
                .register(name, T::Float, 0.5, unit.clone())
                .await
                .unwrap();
        }
        let metrics = Metrics::default();
        let (endpoint, server) = serve(metrics.clone()).await;
        let setup = Setup {
            how,
            backend,
            client,
            session,
            metrics,
            endpoint,
            _server: server,
        };
        let xy = || vec![param("x", T::Float), param("y", T::Float)];
        setup.callback("bowl", xy(), None).await;
        setup.callback("flaky", xy(), None).await;
        setup.callback("hang", xy(), Some(300)).await;
        setup.callback("gate", xy(), None).await;
        setup.callback("text", vec![], None).await;
        setup.callback("constant", vec![], None).await;
        setup
            .callback("from_outputs", vec![param("outputs", T::Map)], None)
            .await;
        setup
            .callback("line", vec![param("x", T::Float)], None)
            .await;
        setup
            .callback(
                "by_values",
                vec![param("values", T::Map), param("trial", T::Integer)],
                None,
            )
            .await;
        setup
    }

    async fn both() -> Vec<Setup> {
        vec![Setup::new("grpc").await, Setup::new("in-process").await]
    }

    /// Registers metric `name` with the engine, with a deadline of `timeout_ms`.
    async fn callback(
        &self,
        name: &str,
        parameters: Vec<pb::ParameterSpec>,
        timeout_ms: Option<u64>,
    ) {
        let request = pb::RegisterCallbackRequest {
            session_id: self.session.id().into(),
            name: name.into(),
            endpoint: self.endpoint.clone(),
            parameters,
            timeout: timeout_ms
                .map(|ms| prost_types::Duration::try_from(Duration::from_millis(ms)).unwrap()),
            ..Default::default()
        };
        match &self.backend {
            Backend::Served { .. } => {
                self.client.raw().register_callback(request).await.unwrap();
            }
            Backend::Local(engine) => {
                engine
                    .register_callback(Request::new(request))
                    .await
                    .unwrap();
            }
        }
    }

    /// Creates optimizer `name` with `config`.
    async fn optimizer(
        &self,
        name: &str,
        config: &[(&str, pb::Value)],
    ) -> Result<pb::Resource, BridgeError> {
        self.session
            .create_resource("optimizer", name, "", cfg(config), HashMap::new())
            .await
    }

    async fn invoke(
        &self,
        id: &str,
        method: &str,
        arguments: &[(&str, pb::Value)],
    ) -> Result<Option<pb::Value>, BridgeError> {
        Ok(self
            .session
            .invoke_resource(id, method, cfg(arguments))
            .await?
            .result)
    }

    /// The value of an optimizer method that must succeed.
    async fn call(&self, id: &str, method: &str, arguments: &[(&str, pb::Value)]) -> pb::Value {
        self.invoke(id, method, arguments)
            .await
            .unwrap_or_else(|e| panic!("{}: {method}: {e}", self.how))
            .unwrap_or_else(|| panic!("{}: {method} returned nothing", self.how))
    }
}

fn param(name: &str, ty: T) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.into(),
        r#type: ty as i32,
        required: true,
        ..Default::default()
    }
}

fn cfg(pairs: &[(&str, pb::Value)]) -> HashMap<String, pb::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn s(text: &str) -> pb::Value {
    text.to_owned().into_value()
}

fn i(k: i64) -> pb::Value {
    k.into_value()
}

fn names(list: &[&str]) -> pb::Value {
    list.iter()
        .map(|n| (*n).to_owned())
        .collect::<Vec<String>>()
        .into_value()
}

fn xy() -> pb::Value {
    names(&["x", "y"])
}

fn entry<'v>(value: &'v pb::Value, key: &str) -> &'v pb::Value {
    match &value.kind {
        Some(Kind::MapValue(map)) => map
            .entries
            .get(key)
            .unwrap_or_else(|| panic!("no `{key}` in {value:?}")),
        _ => panic!("not a map: {value:?}"),
    }
}

fn has(value: &pb::Value, key: &str) -> bool {
    matches!(&value.kind, Some(Kind::MapValue(map)) if map.entries.contains_key(key))
}

fn int(value: &pb::Value) -> i64 {
    i64::from_value(value.clone()).unwrap()
}

fn num(value: &pb::Value) -> f64 {
    f64::from_value(value.clone()).unwrap()
}

fn text(value: &pb::Value) -> String {
    String::from_value(value.clone()).unwrap()
}

fn list(value: &pb::Value) -> Vec<pb::Value> {
    match &value.kind {
        Some(Kind::ListValue(list)) => list.values.clone(),
        _ => panic!("not a list: {value:?}"),
    }
}

/// The (x, y) a trial tried.
fn tried(trial: &pb::Value) -> (f64, f64) {
    let values = entry(trial, "values");
    (num(entry(values, "x")), num(entry(values, "y")))
}

/// Every trial's candidate and state.
async fn history_of(setup: &Setup, id: &str) -> Vec<((f64, f64), String)> {
    list(&setup.call(id, "trials", &[]).await)
        .iter()
        .map(|t| (tried(t), text(entry(t, "state"))))
        .collect()
}

/// Waits (a bounded number of polls) until `flag` is set.
async fn wait_for(flag: &AtomicBool, what: &str) {
    for _ in 0..400 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}");
}

fn current(variable: &pb::Variable) -> f64 {
    num(variable.value.as_ref().unwrap())
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_each_trial_through_its_lock_and_history_shows_them() {
    for setup in Setup::both().await {
        let how = setup.how;
        let resource = setup
            .optimizer(
                "tpe",
                &[
                    ("variables", xy()),
                    ("metric", s("bowl")),
                    ("seed", i(7)),
                    ("startup_trials", i(4)),
                ],
            )
            .await
            .unwrap();
        let id = resource.resource_id.as_str();
        assert_eq!(resource.metadata["seed"], "7", "{how}");
        assert_eq!(
            resource.methods,
            [
                "apply_best",
                "ask",
                "best",
                "restore",
                "run",
                "tell",
                "trials"
            ],
            "{how}"
        );
        let summary = setup.call(id, "run", &[("n_trials", i(12))]).await;
        assert_eq!(int(entry(&summary, "trials")), 12, "{how}");
        assert_eq!(int(entry(&summary, "complete")), 12, "{how}");
        assert_eq!(int(entry(&summary, "failed")), 0, "{how}");
        assert_eq!(text(entry(&summary, "finished")), "apply_best", "{how}");
        let best = entry(&summary, "best");
        let (bx, by) = tried(best);
        assert!(
            (num(entry(best, "score")) - bowl(bx, by)).abs() < 1e-12,
            "{how}"
        );

        // Every trial is a version of x written by the optimizer, with its trial number,
        // then the best is applied; nothing holds the variables any more.
        let source = format!("optimizer:{id}");
        let history = setup.session.history("x", 0).await.unwrap();
        let by_optimizer: Vec<&pb::VariableVersion> =
            history.iter().filter(|v| v.source == source).collect();
        assert_eq!(by_optimizer.len(), 13, "{how}: {history:?}");
        let applied = by_optimizer[0];
        assert_eq!(applied.metadata["applied"], "best", "{how}");
        assert_eq!(
            applied.metadata["trial"],
            int(entry(best, "number")).to_string(),
            "{how}"
        );
        let mut numbers: Vec<String> = by_optimizer[1..]
            .iter()
            .map(|v| v.metadata["trial"].clone())
            .collect();
        numbers.reverse();
        assert_eq!(
            numbers,
            (0..12).map(|n| n.to_string()).collect::<Vec<_>>(),
            "{how}"
        );
        let trials = list(&setup.call(id, "trials", &[]).await);
        for (trial, version) in trials.iter().zip(by_optimizer[1..].iter().rev()) {
            assert_eq!(
                num(version.value.as_ref().unwrap()),
                tried(trial).0,
                "{how}"
            );
            assert!(int(entry(trial, "duration_us")) > 0, "{how}");
            assert_eq!(int(entry(trial, "attempts")), 1, "{how}");
        }
        let x = setup.session.get("x").await.unwrap();
        assert_eq!(current(&x), bx, "{how}");
        assert_eq!(current(&setup.session.get("y").await.unwrap()), by, "{how}");
        assert!(!x.optimizing, "{how}");
        assert_eq!(x.source, source, "{how}");
        // The metric heard which trial and which optimizer called.
        let calls = setup.metrics.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 12, "{how}");
        assert_eq!(calls[0].0["trial"], "0", "{how}");
        assert_eq!(calls[0].1, format!("resource:{id}"), "{how}");
        assert_eq!(setup.call(id, "best", &[]).await, best.clone(), "{how}");
        // Free again: a plain write goes through.
        setup.session.set("x", 0.0).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_is_held_while_a_run_works_and_a_rival_optimizer_is_refused() {
    for setup in Setup::both().await {
        let how = setup.how;
        let gated = setup
            .optimizer(
                "random",
                &[("variables", xy()), ("metric", s("gate")), ("seed", i(1))],
            )
            .await
            .unwrap();
        let rival = setup
            .optimizer(
                "tpe",
                &[("variables", names(&["x"])), ("metric", s("line"))],
            )
            .await
            .unwrap();
        let session = setup.session.clone();
        let id = gated.resource_id.clone();
        let run = tokio::spawn(async move {
            session
                .invoke_resource(&id, "run", cfg(&[("n_trials", i(2))]))
                .await
        });
        setup.metrics.arrived.notified().await;
        // A trial is at the gate: the optimizer holds x and y.
        let err = setup.session.set("x", 0.0).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");
        assert_eq!(err.context["optimizer_id"], gated.resource_id, "{how}");
        let x = setup.session.get("x").await.unwrap();
        assert!(x.optimizing, "{how}");
        assert_eq!(x.optimizer_id, gated.resource_id, "{how}");
        // Another optimizer on x cannot run, nor ask, and says who holds it.
        for method in ["run", "ask"] {
            let err = setup
                .invoke(&rival.resource_id, method, &[])
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::VariableLocked, "{how} {method}");
            assert_eq!(err.context["optimizer_id"], gated.resource_id, "{how}");
            assert!(
                err.message.contains(&gated.resource_id),
                "{how}: {}",
                err.message
            );
        }
        // The gated optimizer refuses a second run while the first works.
        let err = setup
            .invoke(&gated.resource_id, "run", &[])
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{how}");
        assert!(
            err.message.contains("already running"),
            "{how}: {}",
            err.message
        );
        setup.metrics.gate.add_permits(2);
        let summary = run.await.unwrap().unwrap().result.unwrap();
        assert_eq!(int(entry(&summary, "complete")), 2, "{how}");
        // Exactly one ran: the rival never wrote.
        let history = setup.session.history("x", 0).await.unwrap();
        let rival_source = format!("optimizer:{}", rival.resource_id);
        assert!(history.iter().all(|v| v.source != rival_source), "{how}");
        assert!(
            list(&setup.call(&rival.resource_id, "trials", &[]).await).is_empty(),
            "{how}"
        );
        // Now the rival can run.
        let summary = setup
            .call(&rival.resource_id, "run", &[("n_trials", i(2))])
            .await;
        assert_eq!(int(entry(&summary, "complete")), 2, "{how}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_optimizers_started_together_exactly_one_runs() {
    let setup = Setup::new("grpc").await;
    let mut ids = Vec::new();
    for seed in [1, 2] {
        let r = setup
            .optimizer(
                "random",
                &[
                    ("variables", names(&["x"])),
                    ("metric", s("gate")),
                    ("seed", i(seed)),
                ],
            )
            .await;
        // The metric takes x and y; y is not tuned here, so it is refused at creation.
        let err = r.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert_eq!(err.context["parameter"], "y");
        let r = setup
            .optimizer(
                "random",
                &[
                    ("variables", xy()),
                    ("metric", s("gate")),
                    ("seed", i(seed)),
                ],
            )
            .await
            .unwrap();
        ids.push(r.resource_id);
    }
    let run = |id: String| {
        let session = setup.session.clone();
        tokio::spawn(async move {
            session
                .invoke_resource(&id, "run", cfg(&[("n_trials", i(1))]))
                .await
        })
    };
    let (a, b) = (run(ids[0].clone()), run(ids[1].clone()));
    // One reaches the gate; then open it for good.
    setup.metrics.arrived.notified().await;
    setup.metrics.gate.add_permits(10);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let (winner, loser) = match (a, b) {
        (Ok(_), Err(e)) => (&ids[0], e),
        (Err(e), Ok(_)) => (&ids[1], e),
        other => panic!("exactly one should run: {other:?}"),
    };
    assert_eq!(loser.kind, ErrorKind::VariableLocked);
    assert_eq!(&loser.context["optimizer_id"], winner);
    assert_eq!(setup.metrics.at_gate.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_as_data_retried_and_the_run_goes_on() {
    let setup = Setup::new("in-process").await;
    let id = setup
        .optimizer(
            "random",
            &[
                ("variables", xy()),
                ("metric", s("flaky")),
                ("seed", i(3)),
                ("retries", i(2)),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let summary = setup.call(&id, "run", &[("n_trials", i(6))]).await;
    assert_eq!(int(entry(&summary, "trials")), 6);
    assert_eq!(int(entry(&summary, "failed")), 2, "trials 1 and 4 raise");
    assert_eq!(int(entry(&summary, "complete")), 4);
    let trials = list(&setup.call(&id, "trials", &[]).await);
    let failed = &trials[1];
    assert_eq!(text(entry(failed, "state")), "failed");
    assert!(!has(failed, "score"), "a failed trial has no made-up score");
    assert_eq!(int(entry(failed, "attempts")), 3, "1 + 2 retries");
    let error = entry(failed, "error");
    assert_eq!(text(entry(error, "kind")), "CALLBACK_ERROR");
    assert_eq!(text(entry(error, "type")), "ValueError");
    assert!(text(entry(error, "message")).contains("trial 1 is cursed"));
    assert!(text(entry(error, "traceback")).starts_with("Traceback"));
    assert_eq!(int(entry(&trials[0], "attempts")), 1);
    // The retries called the metric again with the same trial number.
    let calls = setup.metrics.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().filter(|(m, _)| m["trial"] == "1").count(), 3);
    // The best is a complete trial.
    let best = setup.call(&id, "best", &[]).await;
    assert_eq!(text(entry(&best, "state")), "complete");

    // stop_on_failure ends the run after the batch with the first failure.
    let stopping = setup
        .optimizer(
            "random",
            &[
                ("variables", xy()),
                ("metric", s("flaky")),
                ("retries", i(0)),
                ("stop_on_failure", true.into_value()),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let summary = setup.call(&stopping, "run", &[("n_trials", i(10))]).await;
    assert_eq!(int(entry(&summary, "trials")), 2);
    assert_eq!(int(entry(&summary, "failed")), 1);

    // A metric that answers something else than a number fails the trial, saying what came.
    let wordy = setup
        .optimizer(
            "random",
            &[
                ("variables", xy()),
                ("metric", s("text")),
                ("retries", i(0)),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let summary = setup.call(&wordy, "run", &[("n_trials", i(2))]).await;
    assert_eq!(int(entry(&summary, "failed")), 2);
    assert!(matches!(
        entry(&summary, "best").kind,
        Some(Kind::NullValue(_))
    ));
    assert_eq!(
        text(entry(&summary, "finished")),
        "restore",
        "no best to apply"
    );
    let trial = &list(&setup.call(&wordy, "trials", &[]).await)[0];
    let error = entry(trial, "error");
    assert_eq!(text(entry(error, "kind")), "TYPE_MISMATCH");
    assert!(
        text(entry(error, "message")).contains("string"),
        "{error:?}"
    );
    assert!(setup.invoke(&wordy, "best", &[]).await.unwrap().is_none());
    let err = setup.invoke(&wordy, "apply_best", &[]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_metric_times_out_at_its_deadline_and_the_run_continues() {
    let setup = Setup::new("grpc").await;
    let id = setup
        .optimizer(
            "random",
            &[
                ("variables", xy()),
                ("metric", s("hang")),
                ("retries", i(0)),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let summary = setup.call(&id, "run", &[("n_trials", i(3))]).await;
    assert_eq!(int(entry(&summary, "timed_out")), 1);
    assert_eq!(int(entry(&summary, "complete")), 2);
    let trials = list(&setup.call(&id, "trials", &[]).await);
    assert_eq!(text(entry(&trials[1], "state")), "timed_out");
    assert_eq!(text(entry(entry(&trials[1], "error"), "kind")), "TIMEOUT");
    assert!(
        int(entry(&trials[1], "duration_us")) >= 300_000,
        "at the 300 ms deadline"
    );
    assert_eq!(text(entry(&trials[2], "state")), "complete");
    wait_for(
        &setup.metrics.cancelled,
        "the metric call was never cancelled",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_apply_best_then_a_rollback_restores() {
    for setup in Setup::both().await {
        let how = setup.how;
        let before = setup.session.get("x").await.unwrap();
        let id = setup
            .optimizer(
                "tpe",
                &[
                    ("variables", xy()),
                    ("metric", s("by_values")),
                    ("on_finish", s("restore")),
                    ("direction", s("maximize")),
                ],
            )
            .await
            .unwrap()
            .resource_id;
        let summary = setup.call(&id, "run", &[("n_trials", i(5))]).await;
        assert_eq!(text(entry(&summary, "finished")), "restore", "{how}");
        assert_eq!(int(entry(&summary, "complete")), 5, "{how}");
        let x = setup.session.get("x").await.unwrap();
        assert_eq!(current(&x), 0.5, "{how}: restored");
        assert!(!x.optimizing, "{how}");
        let history = setup.session.history("x", 1).await.unwrap();
        assert_eq!(history[0].metadata["applied"], "restore", "{how}");

        let applied = setup.call(&id, "apply_best", &[]).await;
        let version = int(entry(&applied, "x")) as u64;
        let best = setup.call(&id, "best", &[]).await;
        let x = setup.session.get("x").await.unwrap();
        assert_eq!(x.version, version, "{how}");
        assert_eq!(current(&x), tried(&best).0, "{how}");
        let last = &setup.session.history("x", 1).await.unwrap()[0];
        assert_eq!(last.metadata["applied"], "best", "{how}");
        assert_eq!(
            last.metadata["trial"],
            int(entry(&best, "number")).to_string(),
            "{how}"
        );
        // A rollback to the version before the optimizer restores the value.
        let rolled = setup.session.rollback("x", before.version).await.unwrap();
        assert_eq!(current(&rolled), 0.5, "{how}");

        // `restore` writes back the values from before the first trial.
        setup.call(&id, "apply_best", &[]).await;
        let restored = setup.call(&id, "restore", &[]).await;
        assert!(has(&restored, "x") && has(&restored, "y"), "{how}");
        assert_eq!(
            current(&setup.session.get("x").await.unwrap()),
            0.5,
            "{how}"
        );
        assert_eq!(
            current(&setup.session.get("y").await.unwrap()),
            0.5,
            "{how}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_candidates_also_in_parallel_and_after_failures() {
    let setup = Setup::new("in-process").await;
    let mut runs = Vec::new();
    for (name, seed, parallel) in [
        ("tpe", 11, 1),
        ("tpe", 11, 1),
        ("tpe", 12, 1),
        ("tpe", 11, 3),
        ("tpe", 11, 3),
        ("random", 11, 3),
        ("random", 11, 3),
    ] {
        let id = setup
            .optimizer(
                name,
                &[
                    ("variables", xy()),
                    ("metric", s("flaky")),
                    ("seed", i(seed)),
                    ("startup_trials", i(3)),
                    ("retries", i(0)),
                ],
            )
            .await
            .unwrap()
            .resource_id;
        let summary = setup
            .call(
                &id,
                "run",
                &[("n_trials", i(10)), ("parallel", i(parallel))],
            )
            .await;
        assert_eq!(int(entry(&summary, "failed")), 3, "trials 1, 4 and 7 raise");
        runs.push(history_of(&setup, &id).await);
    }
    assert_eq!(runs[0], runs[1], "same seed, one at a time");
    assert_ne!(runs[0], runs[2], "another seed");
    assert_eq!(runs[3], runs[4], "same seed, three at a time");
    assert_eq!(runs[5], runs[6], "random search, three at a time");
    assert_eq!(
        runs[0][..3],
        runs[3][..3],
        "the first batch is the startup either way"
    );
    let distinct: std::collections::HashSet<String> =
        runs[3].iter().map(|(p, _)| format!("{p:?}")).collect();
    assert_eq!(distinct.len(), 10, "trials of a batch differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_and_tell_drive_a_manual_loop_under_the_lock() {
    for setup in Setup::both().await {
        let how = setup.how;
        let id = setup
            .optimizer(
                "tpe",
                &[
                    ("variables", xy()),
                    ("direction", s("minimize")),
                    ("seed", i(5)),
                ],
            )
            .await
            .unwrap()
            .resource_id;
        let asked = setup.call(&id, "ask", &[]).await;
        assert_eq!(int(entry(&asked, "number")), 0, "{how}");
        let x0 = num(entry(entry(&asked, "values"), "x"));
        let x = setup.session.get("x").await.unwrap();
        assert_eq!(current(&x), x0, "{how}: written through the lock");
        assert!(x.optimizing, "{how}");
        assert_eq!(x.source, format!("optimizer:{id}"), "{how}");
        let err = setup.session.set("x", 0.0).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");

        let told = setup
            .call(
                &id,
                "tell",
                &[("number", i(0)), ("score", 2.5.into_value())],
            )
            .await;
        assert_eq!(text(entry(&told, "state")), "complete", "{how}");
        assert_eq!(num(entry(&told, "score")), 2.5, "{how}");
        for (arguments, what) in [
            (
                vec![("number", i(0)), ("score", 1.0.into_value())],
                "already told",
            ),
            (
                vec![("number", i(9)), ("score", 1.0.into_value())],
                "never asked",
            ),
            (vec![("number", i(0))], "score"),
        ] {
            let err = setup.invoke(&id, "tell", &arguments).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{how}: {what}");
        }
        let asked = setup.call(&id, "ask", &[]).await;
        assert_eq!(int(entry(&asked, "number")), 1, "{how}");
        let told = setup
            .call(
                &id,
                "tell",
                &[
                    ("number", i(1)),
                    ("state", s("failed")),
                    ("error", s("diverged")),
                ],
            )
            .await;
        assert_eq!(text(entry(&told, "state")), "failed", "{how}");
        assert_eq!(
            text(entry(entry(&told, "error"), "message")),
            "diverged",
            "{how}"
        );
        let asked = setup.call(&id, "ask", &[]).await;
        setup
            .call(
                &id,
                "tell",
                &[
                    ("number", i(int(entry(&asked, "number")))),
                    ("score", 1.0.into_value()),
                ],
            )
            .await;
        let best = setup.call(&id, "best", &[]).await;
        assert_eq!(int(entry(&best, "number")), 2, "{how}: minimize");
        // Restore writes the old values and gives the lock up.
        setup.call(&id, "restore", &[]).await;
        let x = setup.session.get("x").await.unwrap();
        assert_eq!(current(&x), 0.5, "{how}");
        assert!(!x.optimizing, "{how}");
        setup.session.set("x", 0.0).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_enumerates_every_point_once() {
    let setup = Setup::new("in-process").await;
    setup
        .session
        .register(
            "k",
            T::Integer,
            0i64,
            Constraints {
                min: Some(0.0),
                max: Some(2.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    setup
        .session
        .register("flag", T::Boolean, false, Constraints::default())
        .await
        .unwrap();
    let id = setup
        .optimizer(
            "grid",
            &[
                ("variables", names(&["k", "flag", "x"])),
                ("grid_points", i(3)),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let mut seen = std::collections::HashSet::new();
    loop {
        match setup.invoke(&id, "ask", &[]).await {
            Ok(Some(asked)) => {
                let values = entry(&asked, "values");
                let point = (
                    int(entry(values, "k")),
                    bool::from_value(entry(values, "flag").clone()).unwrap(),
                    num(entry(values, "x")).to_string(),
                );
                assert!(seen.insert(point.clone()), "{point:?} twice");
                setup
                    .call(
                        &id,
                        "tell",
                        &[
                            ("number", entry(&asked, "number").clone()),
                            ("score", 0.0.into_value()),
                        ],
                    )
                    .await;
            }
            Ok(None) => panic!("ask returned nothing"),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::InvalidArgument);
                assert!(e.message.contains("no candidate left"), "{}", e.message);
                break;
            }
        }
    }
    assert_eq!(seen.len(), 3 * 2 * 3);
    for k in 0..3 {
        for flag in [false, true] {
            for x in ["-1", "0", "1"] {
                assert!(seen.contains(&(k, flag, x.to_owned())), "{k} {flag} {x}");
            }
        }
    }
    // Released, it lets go of the lock its last ask took.
    assert!(setup.session.release_resource(&id).await.unwrap());
    // `run` stops when the grid is done, however many trials it was given.
    let id = setup
        .optimizer(
            "grid",
            &[
                ("variables", names(&["k", "flag"])),
                ("metric", s("constant")),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let summary = setup.call(&id, "run", &[("n_trials", i(100))]).await;
    assert_eq!(int(entry(&summary, "trials")), 6);
    let points: std::collections::HashSet<String> = list(&setup.call(&id, "trials", &[]).await)
        .iter()
        .map(|t| format!("{:?}", entry(t, "values")))
        .collect();
    assert_eq!(points.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_refused_with_the_culprit_named() {
    let setup = Setup::new("grpc").await;
    let session = &setup.session;
    session
        .register("free", T::Float, 0.5, Constraints::default())
        .await
        .unwrap();
    session
        .register("words", T::String, "hi".to_owned(), Constraints::default())
        .await
        .unwrap();
    type Case<'a> = (&'a str, Vec<(&'a str, pb::Value)>, ErrorKind, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "tpe",
            vec![("variables", names(&["free"]))],
            ErrorKind::InvalidArgument,
            "free",
        ),
        (
            "tpe",
            vec![("variables", names(&["words"]))],
            ErrorKind::InvalidArgument,
            "words",
        ),
        (
            "tpe",
            vec![("variables", names(&["nope"]))],
            ErrorKind::VariableNotFound,
            "nope",
        ),
        (
            "tpe",
            vec![("variables", xy()), ("metric", s("unregistered"))],
            ErrorKind::CallbackNotFound,
            "unregistered",
        ),
        (
            "tpe",
            vec![("variables", xy()), ("direction", s("upward"))],
            ErrorKind::InvalidArgument,
            "upward",
        ),
        ("tpe", vec![], ErrorKind::InvalidArgument, "variables"),
        (
            "tpe",
            vec![("variables", names(&["x", "x"]))],
            ErrorKind::InvalidArgument,
            "twice",
        ),
        (
            "tpe",
            vec![("variables", xy()), ("colour", s("red"))],
            ErrorKind::InvalidArgument,
            "colour",
        ),
        (
            "tpe",
            vec![("variables", xy()), ("retries", i(-1))],
            ErrorKind::InvalidArgument,
            "retries",
        ),
        (
            "tpe",
            vec![("variables", xy()), ("on_finish", s("keep"))],
            ErrorKind::InvalidArgument,
            "on_finish",
        ),
        (
            "grid",
            vec![("variables", xy()), ("grid_points", i(1))],
            ErrorKind::InvalidArgument,
            "grid_points",
        ),
        (
            "tpe",
            vec![("variables", xy()), ("module", s("mod-0"))],
            ErrorKind::ResourceNotFound,
            "mod-0",
        ),
        (
            "annealing",
            vec![("variables", xy())],
            ErrorKind::InvalidArgument,
            "annealing",
        ),
    ];
    for (name, config, kind, named) in cases {
        let err = setup.optimizer(name, &config).await.unwrap_err();
        assert_eq!(err.kind, kind, "{name} {config:?}: {err}");
        assert!(
            err.message.contains(named),
            "{name} {config:?}: {}",
            err.message
        );
    }
    let err = setup
        .session
        .create_resource(
            "optimizer",
            "tpe",
            "dspy",
            cfg(&[("variables", xy())]),
            HashMap::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    // No metric: ask/tell works, run is refused; a bad run argument is named.
    let id = setup
        .optimizer("random", &[("variables", xy())])
        .await
        .unwrap()
        .resource_id;
    let err = setup.invoke(&id, "run", &[]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert!(err.message.contains("metric"), "{}", err.message);
    let id = setup
        .optimizer("random", &[("variables", xy()), ("metric", s("bowl"))])
        .await
        .unwrap()
        .resource_id;
    for arguments in [
        vec![("n_trials", i(0))],
        vec![("parallel", s("two"))],
        vec![("budget", i(3))],
    ] {
        let err = setup.invoke(&id, "run", &arguments).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{arguments:?}");
    }
    assert!(list(&setup.call(&id, "trials", &[]).await).is_empty());
    assert!(
        !setup.session.get("x").await.unwrap().optimizing,
        "a refused run takes no lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_an_optimizer_or_dropping_its_run_frees_the_variables() {
    let setup = Setup::new("grpc").await;
    // Released while it holds the lock of an ask: the lock goes with it.
    let id = setup
        .optimizer("random", &[("variables", xy())])
        .await
        .unwrap()
        .resource_id;
    setup.call(&id, "ask", &[]).await;
    assert!(setup.session.get("x").await.unwrap().optimizing);
    assert!(setup.session.release_resource(&id).await.unwrap());
    assert!(!setup.session.get("x").await.unwrap().optimizing);
    setup.session.set("x", 0.1).await.unwrap();

    // A run whose caller goes away stops; the lock lapses at the end of its lease.
    let id = setup
        .optimizer(
            "random",
            &[
                ("variables", xy()),
                ("metric", s("gate")),
                ("lease", 0.5.into_value()),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let session = setup.session.clone();
    let run = {
        let id = id.clone();
        tokio::spawn(async move {
            session
                .invoke_resource(&id, "run", cfg(&[("n_trials", i(5))]))
                .await
        })
    };
    setup.metrics.arrived.notified().await;
    run.abort();
    let _ = run.await;
    // The trial's metric call is cancelled with the run.
    wait_for(
        &setup.metrics.cancelled,
        "the metric call was never cancelled",
    )
    .await;
    // Nobody renews the lease any more: the variables come free.
    let mut polls = 0;
    loop {
        match setup.session.set("x", 0.2).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.kind, ErrorKind::VariableLocked),
        }
        polls += 1;
        assert!(polls < 400, "the lock never lapsed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        setup.metrics.at_gate.load(Ordering::SeqCst),
        1,
        "no trial after the drop"
    );
    // The optimizer itself can take the lock again.
    setup.metrics.gate.add_permits(10);
    let summary = setup.call(&id, "run", &[("n_trials", i(1))]).await;
    assert_eq!(int(entry(&summary, "complete")), 1);
    // The trial the dropped run left is recorded as pruned, not left running.
    let trials = list(&setup.call(&id, "trials", &[]).await);
    assert_eq!(trials.len(), 2);
    assert_eq!(text(entry(&trials[0], "state")), "pruned");
    assert_eq!(text(entry(entry(&trials[0], "error"), "kind")), "STOPPED");
    assert_eq!(text(entry(&trials[1], "state")), "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_renews_its_lease_and_stops_when_released_or_its_session_ends() {
    for (how, close_session) in [("grpc", false), ("in-process", true)] {
        let setup = Setup::new(how).await;
        let id = setup
            .optimizer(
                "random",
                &[
                    ("variables", xy()),
                    ("metric", s("gate")),
                    ("lease", 0.2.into_value()),
                ],
            )
            .await
            .unwrap()
            .resource_id;
        let session = setup.session.clone();
        let run = {
            let id = id.clone();
            tokio::spawn(async move {
                session
                    .invoke_resource(&id, "run", cfg(&[("n_trials", i(3))]))
                    .await
            })
        };
        setup.metrics.arrived.notified().await;
        // Five leases later the optimizer still holds its variables: it renews.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let err = setup.session.set("x", 0.0).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");
        if close_session {
            setup.session.clone().close().await.unwrap();
            let err = run.await.unwrap().unwrap_err();
            assert_eq!(err.kind, ErrorKind::SessionNotFound, "{how}: {err}");
        } else {
            assert!(setup.session.release_resource(&id).await.unwrap());
            let err = run.await.unwrap().unwrap_err();
            assert_eq!(err.kind, ErrorKind::ResourceNotFound, "{how}: {err}");
            // Released, it let go of the lock at once.
            setup.session.set("x", 0.0).await.unwrap();
        }
        wait_for(
            &setup.metrics.cancelled,
            "the metric call was never cancelled",
        )
        .await;
        assert_eq!(setup.metrics.at_gate.load(Ordering::SeqCst), 1, "{how}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_trial_runs_the_module_with_its_candidate_before_the_metric() {
    let setup = Setup::new("workers").await;
    let bind = cfg(&[("bind", map(&[("value", s("x"))]))]);
    let module = setup
        .session
        .create_resource("module", "builtin.echo", "", bind, HashMap::new())
        .await
        .unwrap()
        .resource_id;
    // `outputs` is only filled when a module is configured.
    let err = setup
        .optimizer(
            "tpe",
            &[("variables", names(&["x"])), ("metric", s("from_outputs"))],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert_eq!(err.context["parameter"], "outputs");
    let id = setup
        .optimizer(
            "tpe",
            &[
                ("variables", names(&["x"])),
                ("metric", s("from_outputs")),
                ("module", s(&module)),
                ("seed", i(2)),
                ("startup_trials", i(3)),
            ],
        )
        .await
        .unwrap()
        .resource_id;
    let summary = setup.call(&id, "run", &[("n_trials", i(6))]).await;
    assert_eq!(int(entry(&summary, "complete")), 6, "{summary:?}");
    // The module echoed each trial's candidate, which the metric scored.
    let outputs = setup.metrics.outputs.lock().unwrap().clone();
    let trials = list(&setup.call(&id, "trials", &[]).await);
    assert_eq!(outputs.len(), 6);
    for (trial, output) in trials.iter().zip(&outputs) {
        let x = tried_x(trial);
        assert_eq!(num(entry(output, "value")), x);
        assert_eq!(num(entry(trial, "score")), bowl(x, -0.2));
    }
    // A module that goes away fails the trials that need it, as data.
    assert!(setup.session.release_resource(&module).await.unwrap());
    let summary = setup
        .call(&id, "run", &[("n_trials", i(1)), ("parallel", i(1))])
        .await;
    assert_eq!(int(entry(&summary, "failed")), 1);
    let last = list(&setup.call(&id, "trials", &[]).await).pop().unwrap();
    assert_eq!(
        text(entry(entry(&last, "error"), "kind")),
        "RESOURCE_NOT_FOUND"
    );
}

fn tried_x(trial: &pb::Value) -> f64 {
    num(entry(entry(trial, "values"), "x"))
}

fn map(entries: &[(&str, pb::Value)]) -> pb::Value {
    pb::Value {
        kind: Some(Kind::MapValue(pb::ValueMap {
            entries: cfg(entries),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_budget_alone_bounds_a_run_and_seeds_read_back() {
    let setup = Setup::new("in-process").await;
    let resource = setup
        .optimizer(
            "random",
            &[
                ("variables", xy()),
                ("metric", s("constant")),
                ("seed", i(-3)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(resource.metadata["seed"], "-3");
    let drawn = setup
        .optimizer("tpe", &[("variables", xy())])
        .await
        .unwrap();
    let seed: i64 = drawn.metadata["seed"].parse().unwrap();
    assert!(seed >= 0, "a drawn seed is reported, and can be given back");
    // 0.3 s of trials: at least one, and far fewer than the engine's bound of 10 000.
    let summary = setup
        .call(
            &resource.resource_id,
            "run",
            &[("timeout", 0.3.into_value())],
        )
        .await;
    let trials = int(entry(&summary, "trials"));
    assert!((1..10_000).contains(&trials), "{trials}");
    assert_eq!(int(entry(&summary, "complete")), trials);
    // No budget at all: 20 trials.
    let summary = setup.call(&resource.resource_id, "run", &[]).await;
    assert_eq!(int(entry(&summary, "trials")), 20);
}
