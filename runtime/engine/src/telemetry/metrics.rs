//! Prometheus metrics: RPC latency by method and status, sessions, variables, watchers and
//! watch lag, worker pool health and memory budget use, in the text exposition format on
//! `GET /metrics` ([`serve_metrics`]). Labels are bounded: method, service and status
//! names, never a session id.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Engine;

/// The labels of an RPC's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Metrics recorded as things happen (the rest are read from the engine at each scrape).
struct Recorded {
    rpc: HistogramFamily<RpcLabels>,
    watch_lag: Histogram,
}

static RECORDED: LazyLock<Recorded> = LazyLock::new(|| Recorded {
    rpc: Family::new_with_constructor(|| {
        // 50 µs .. ~50 s.
        Histogram::new(exponential_buckets(0.000_05, 4.0, 11))
    }),
    watch_lag: Histogram::new([0.0, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0]),
});

/// The latency histograms of one method, by status code, each made on first use; looked
/// up without allocating.
struct Method {
    service: String,
    method: String,
    by_status: [OnceLock<Histogram>; 17],
}

/// Methods already seen, by gRPC path (bounded by the methods the engine serves, plus
/// `unknown`).
static METHODS: LazyLock<RwLock<HashMap<String, Arc<Method>>>> = LazyLock::new(RwLock::default);

/// The method at `path` (`unknown` for one the engine does not serve).
fn method(path: &str, served: bool) -> Arc<Method> {
    let path = if served { path } else { "unknown" };
    if let Some(found) = METHODS.read().expect("metrics lock").get(path) {
        return Arc::clone(found);
    }
    let (service, method) = if served {
        super::rpc_label(path)
    } else {
        ("unknown", "unknown")
    };
    let made = Arc::new(Method {
        service: service.to_owned(),
        method: method.to_owned(),
        by_status: std::array::from_fn(|_| OnceLock::new()),
    });
    Arc::clone(
        METHODS
            .write()
            .expect("metrics lock")
            .entry(path.to_owned())
            .or_insert(made),
    )
}

/// Records a served call of the method at `path`. A method the engine does not serve
/// (answered UNIMPLEMENTED) is counted as `unknown`, so that clients cannot grow the label
/// set.
pub(crate) fn rpc_finished(path: &str, code: tonic::Code, elapsed: Duration) {
    let method = method(path, code != tonic::Code::Unimplemented);
    let index = (code as usize).min(method.by_status.len() - 1);
    method.by_status[index]
        .get_or_init(|| {
            RECORDED
                .rpc
                .get_or_create(&RpcLabels {
                    service: method.service.clone(),
                    method: method.method.clone(),
                    status: format!("{code:?}"),
                })
                .clone()
        })
        .observe(elapsed.as_secs_f64());
}

/// Records how many updates a watcher is behind the session when it looks for more.
pub(crate) fn watch_lag(behind: u64) {
    RECORDED.watch_lag.observe(behind as f64);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    registry.register(
        name,
        help,
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
    );
}

/// The metrics in the Prometheus text format (OpenMetrics), as of now.
pub async fn render(engine: &Engine) -> String {
    let mut registry = Registry::with_prefix("mlbridge");
    registry.register(
        "rpc_duration_seconds",
        "Time to answer a gRPC call (to its response headers for a stream), by method and status",
        RECORDED.rpc.clone(),
    );
    registry.register(
        "watch_lag_updates",
        "Updates a watcher was behind its session each time it looked for more",
        RECORDED.watch_lag.clone(),
    );
    let stats = engine.state().stats().await;
    gauge(&mut registry, "sessions", "Live sessions", stats.sessions);
    gauge(
        &mut registry,
        "variables",
        "Variables over all sessions",
        stats.variables,
    );
    gauge(
        &mut registry,
        "watchers",
        "Open watch streams",
        stats.watchers,
    );
    gauge(
        &mut registry,
        "memory_used_bytes",
        "Bytes the sessions hold, as the engine-wide memory budget counts them",
        stats.memory_bytes,
    );
    gauge(
        &mut registry,
        "memory_budget_bytes",
        "The engine-wide memory budget",
        engine.limits().engine_memory_bytes,
    );
    let health = engine
        .workers()
        .map(|pool| pool.health())
        .unwrap_or_default();
    gauge(
        &mut registry,
        "workers",
        "Worker slots in the pool",
        health.slots,
    );
    gauge(
        &mut registry,
        "workers_alive",
        "Workers started and serving",
        health.alive,
    );
    gauge(
        &mut registry,
        "workers_busy",
        "Workers running at least one call",
        health.busy,
    );
    gauge(
        &mut registry,
        "worker_calls_in_flight",
        "Calls running on workers",
        health.calls,
    );
    registry.register(
        "worker_restarts",
        "Times a worker was restarted after it stopped",
        ConstCounter::new(health.restarts),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// How `mlbridge serve --metrics-listen` announces the metrics address in its log (an
/// `info` line: `mlbridge metrics on http://127.0.0.1:9464/metrics`).
pub const METRICS_READY_PREFIX: &str = "mlbridge metrics on http://";

/// Connections the metrics endpoint serves at once; more wait.
const MAX_CONNECTIONS: usize = 16;
/// Bytes of a request the endpoint reads at most (its request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` (HTTP/1, one request per connection) until
/// `shutdown` completes. Anything else gets 404 (or 405 for another method).
pub async fn serve_metrics(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let accept = async {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &engine)).await;
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

async fn answer(mut stream: tokio::net::TcpStream, engine: &Engine) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(engine).await,
        ),
        (_, "/metrics") => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "use GET\n".to_owned(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
