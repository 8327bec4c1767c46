//! Telemetry of an engine served in this process, its spans caught by an in-memory
//! exporter: the RPC span continues the caller's `traceparent` (same trace, caller's span
//! as parent), a garbage `traceparent` starts a new trace and the call still succeeds, the
//! engine → callback server call carries the trace on (client span under the RPC span, its
//! context in the callback server's `traceparent`), spans record method, session and
//! status but no token or value, and `/metrics` shows the documented series with bounded
//! labels.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use mlbridge_engine::{Engine, ListenAddr};
use mlbridge_proto::mlbridge::v1::{
    self as pb,
    callback_server::{Callback, CallbackServer},
    ml_bridge_client::MlBridgeClient,
};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The trace of the callback test (each test its own).
const CALLBACK_TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TOKEN: &str = "Bearer sekrit-token-do-not-log";
const VALUE: &str = "a-value-that-must-not-be-recorded";

/// Spans of every engine in this test binary, caught in memory by one process-wide
/// subscriber (thread-local subscribers race with callsite interest caching when tests
/// run in parallel). Tests tell their spans apart by trace id, session or name.
struct Spans {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl Spans {
    fn install() -> &'static Self {
        static SPANS: OnceLock<Spans> = OnceLock::new();
        SPANS.get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("mlbridge_engine", tracing::Level::DEBUG),
                );
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the only subscriber");
            Spans { exporter, provider }
        })
    }

    fn finished(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap()
    }

    fn named(&self, name: &str) -> Vec<SpanData> {
        self.finished()
            .into_iter()
            .filter(|span| span.name == name)
            .collect()
    }

    /// The spans named `name` in trace `trace`.
    fn in_trace(&self, trace: &str, name: &str) -> Vec<SpanData> {
        let trace = TraceId::from_hex(trace).unwrap();
        self.named(name)
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace)
            .collect()
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Serves `engine` on a free port in this runtime
/// and answers a client.
async fn serve(engine: Engine) -> MlBridgeClient<Channel> {
    MlBridgeClient::new(serve_channel(engine).await)
}

/// Serves `engine` as [`serve`] does; answers a channel to it.
async fn serve_channel(engine: Engine) -> Channel {
    let (ready, address) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
        let mut ready = Some(ready);
        mlbridge_engine::serve(
            engine,
            &addr,
            |bound| {
                let _ = ready.take().unwrap().send(bound.to_string());
            },
            std::future::pending(),
        )
        .await
        .unwrap();
    });
    let address = address.await.unwrap();
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_headers<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    request
}

fn nothing_secret(spans: &[SpanData]) {
    let text = format!("{spans:?}");
    assert!(!text.contains("sekrit"), "a token was recorded: {text}");
    assert!(!text.contains(VALUE), "a value was recorded: {text}");
}

#[tokio::test]
async fn the_rpc_span_continues_the_callers_trace() {
    let spans = Spans::install();
    let mut client = serve(Engine::new()).await;
    client
        .ping(with_headers(
            pb::PingRequest {
                message: VALUE.into(),
            },
            &format!("00-{TRACE}-{CALLER_SPAN}-01"),
        ))
        .await
        .unwrap();
    let [ping] =
        <[SpanData; 1]>::try_from(spans.in_trace(TRACE, "mlbridge.v1.MLBridge/Ping")).unwrap();
    assert_eq!(
        ping.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(
        ping.parent_span_id,
        SpanId::from_hex(CALLER_SPAN).unwrap(),
        "the caller's span is the parent"
    );
    assert_eq!(ping.span_kind, SpanKind::Server);
    assert_eq!(attribute(&ping, "rpc.method").as_deref(), Some("Ping"));
    assert_eq!(
        attribute(&ping, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    nothing_secret(&spans.in_trace(TRACE, "mlbridge.v1.MLBridge/Ping"));
}

#[tokio::test]
async fn a_garbage_traceparent_starts_a_new_trace_and_the_call_succeeds() {
    let spans = Spans::install();
    let mut client = serve(Engine::new()).await;
    for garbage in [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-zzzzzzzzzzzzzzzz-01",
    ] {
        let reply = client
            .ping(with_headers(pb::PingRequest::default(), garbage))
            .await;
        assert!(reply.is_ok(), "{garbage}: {reply:?}");
    }
    // The only Ping calls without a valid traceparent in this binary.
    let pings: Vec<SpanData> = spans
        .named("mlbridge.v1.MLBridge/Ping")
        .into_iter()
        .filter(|span| span.parent_span_id == SpanId::INVALID)
        .collect();
    assert_eq!(pings.len(), 3);
    let traces: std::collections::HashSet<TraceId> =
        pings.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(traces.len(), 3, "each call starts its own trace");
    for ping in &pings {
        assert!(ping.span_context.is_valid());
        assert_ne!(
            ping.span_context.trace_id(),
            TraceId::from_hex(TRACE).unwrap()
        );
        assert_eq!(ping.parent_span_id, SpanId::INVALID, "a root span");
    }
}

#[tokio::test]
async fn spans_record_the_session_and_a_failures_status() {
    let spans = Spans::install();
    let mut client = serve(Engine::new()).await;
    let status = client
        .get_variable(with_headers(
            pb::GetVariableRequest {
                session_id: "no-such-session".into(),
                name: "x".into(),
            },
            "",
        ))
        .await
        .unwrap_err();
    let [get] = <[SpanData; 1]>::try_from(spans.named("mlbridge.v1.MLBridge/GetVariable")).unwrap();
    assert_eq!(
        attribute(&get, "rpc.grpc.status_code"),
        Some((status.code() as i32).to_string())
    );
    assert_eq!(
        attribute(&get, "session_id").as_deref(),
        Some("no-such-session")
    );
    assert!(matches!(
        get.status,
        opentelemetry::trace::Status::Error { .. }
    ));
}

/// A callback server that keeps the `traceparent` of each call.
#[derive(Clone, Default)]
struct Recorder {
    traceparents: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl Callback for Recorder {
    async fn execute_callback(
        &self,
        request: tonic::Request<pb::ExecuteCallbackRequest>,
    ) -> Result<tonic::Response<pb::ExecuteCallbackResponse>, tonic::Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.traceparents.lock().unwrap().push(traceparent);
        Ok(tonic::Response::new(pb::ExecuteCallbackResponse {
            result: Some(pb::Value {
                kind: Some(pb::value::Kind::IntValue(7)),
            }),
            metadata: HashMap::new(),
        }))
    }
}

#[tokio::test]
async fn the_engine_carries_the_trace_to_the_callback_server() {
    let spans = Spans::install();
    let engine = Engine::new();
    let mut client = serve(engine.clone()).await;
    let recorder = Recorder::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CallbackServer::new(recorder.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let session = client
        .initialize_session(pb::InitializeSessionRequest::default())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .session_id;
    client
        .register_callback(pb::RegisterCallbackRequest {
            session_id: session.clone(),
            name: "metric".into(),
            endpoint,
            ..Default::default()
        })
        .await
        .unwrap();
    let answer = client
        .invoke_callback(with_headers(
            pb::InvokeCallbackRequest {
                session_id: session.clone(),
                name: "metric".into(),
                ..Default::default()
            },
            &format!("00-{CALLBACK_TRACE}-{CALLER_SPAN}-01"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.result.is_some());
    server.abort();

    let [rpc] = <[SpanData; 1]>::try_from(
        spans.in_trace(CALLBACK_TRACE, "mlbridge.v1.MLBridge/InvokeCallback"),
    )
    .unwrap();
    let [call] = <[SpanData; 1]>::try_from(
        spans.in_trace(CALLBACK_TRACE, "mlbridge.v1.Callback/ExecuteCallback"),
    )
    .unwrap();
    let trace = TraceId::from_hex(CALLBACK_TRACE).unwrap();
    assert_eq!(rpc.span_context.trace_id(), trace);
    assert_eq!(rpc.parent_span_id, SpanId::from_hex(CALLER_SPAN).unwrap());
    assert_eq!(attribute(&rpc, "session_id"), Some(session));
    assert_eq!(call.span_context.trace_id(), trace);
    assert_eq!(call.parent_span_id, rpc.span_context.span_id());
    assert_eq!(call.span_kind, SpanKind::Client);
    let seen = recorder.traceparents.lock().unwrap().clone();
    assert_eq!(
        seen,
        [format!(
            "00-{CALLBACK_TRACE}-{}-01",
            call.span_context.span_id()
        )],
        "the callback server's parent is the engine's client span"
    );
    nothing_secret(&[rpc, call]);
}

/// `name{labels} value` lines of a Prometheus text exposition, by series name.
/// A series' labels and value.
type Sample = (HashMap<String, String>, f64);

fn series(text: &str) -> HashMap<String, Vec<Sample>> {
    let mut found: HashMap<String, Vec<_>> = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        found
            .entry(name.to_owned())
            .or_default()
            .push((labels, value.parse().unwrap()));
    }
    found
}

#[tokio::test]
async fn metrics_show_rpcs_sessions_variables_watchers_workers_and_memory() {
    Spans::install();
    let engine = Engine::new();
    let channel = serve_channel(engine.clone()).await;
    let mut client = MlBridgeClient::new(channel.clone());
    let session = client
        .initialize_session(pb::InitializeSessionRequest::default())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .session_id;
    client
        .register_variable(pb::RegisterVariableRequest {
            session_id: session.clone(),
            name: "x".into(),
            r#type: pb::VariableType::String as i32,
            initial_value: Some(pb::Value {
                kind: Some(pb::value::Kind::StringValue(VALUE.into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = client
        .watch_variables(pb::WatchVariablesRequest {
            session_id: session.clone(),
            include_initial_values: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The initial value and the SYNCED marker: the watcher is registered and has looked.
    for _ in 0..2 {
        watch.next().await.unwrap().unwrap();
    }
    // A path the engine does not serve is counted as `unknown`, not by its name.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.unwrap();
    let unknown = raw
        .unary::<_, pb::PingResponse, _>(
            tonic::Request::new(pb::PingRequest::default()),
            "/mlbridge.v1.MLBridge/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);

    // Over HTTP, as Prometheus scrapes it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(mlbridge_engine::telemetry::metrics::serve_metrics(
        listener,
        engine.clone(),
        std::future::pending(),
    ));
    let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/openmetrics-text"));
    let found = series(body);
    let value = |name: &str| -> f64 {
        let rows = found
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in\n{body}"));
        rows[0].1
    };
    assert_eq!(value("mlbridge_sessions"), 1.0);
    assert_eq!(value("mlbridge_variables"), 1.0);
    assert_eq!(value("mlbridge_watchers"), 1.0);
    assert!(value("mlbridge_memory_used_bytes") > 0.0);
    assert!(value("mlbridge_memory_budget_bytes") >= value("mlbridge_memory_used_bytes"));
    assert_eq!(value("mlbridge_workers"), 0.0);
    assert_eq!(value("mlbridge_workers_alive"), 0.0);
    assert_eq!(value("mlbridge_workers_busy"), 0.0);
    assert_eq!(value("mlbridge_worker_restarts_total"), 0.0);
    assert!(value("mlbridge_watch_lag_updates_count") >= 1.0);
    let registered = found["mlbridge_rpc_duration_seconds_count"]
        .iter()
        .find(|(labels, _)| labels["method"] == "RegisterVariable")
        .expect("RegisterVariable is counted");
    assert_eq!(registered.0["status"], "Ok");
    assert_eq!(registered.0["service"], "mlbridge.v1.MLBridge");
    assert!(registered.1 >= 1.0);
    let methods: BTreeSet<&str> = found["mlbridge_rpc_duration_seconds_count"]
        .iter()
        .map(|(labels, _)| labels["method"].as_str())
        .collect();
    assert!(methods.contains("unknown"), "{methods:?}");
    assert!(!methods.contains("NoSuchMethod"), "{methods:?}");
    // Bounded labels: only these keys, and never a session id or value.
    for (name, rows) in &found {
        for (labels, _) in rows {
            for (key, label) in labels {
                assert!(
                    ["service", "method", "status", "le"].contains(&key.as_str()),
                    "{name} has label {key}"
                );
                assert_ne!(label, &session);
                assert_ne!(label, VALUE);
            }
        }
    }
    drop(watch);

    let mut stream = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    stream
        .write_all(b"GET /other HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}
