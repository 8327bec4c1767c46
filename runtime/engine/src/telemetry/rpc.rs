//! The tower layer that wraps every gRPC call the engine serves in a span (child of the
//! caller's trace context) and records its latency and status in the metrics.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics;

/// Wraps a gRPC service in [`RpcTelemetry`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTelemetryLayer;

impl<S> tower::Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetry { inner }
    }
}

/// A gRPC service whose calls each run in an `rpc` span and are counted in the metrics.
#[derive(Debug, Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
}

/// The method name of a gRPC path (`/mlbridge.v1.MLBridge/GetVariable` → `GetVariable`).
pub fn rpc_label(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    match path.rsplit_once('/') {
        Some((service, method)) => (service, method),
        None => ("", path),
    }
}

/// The gRPC status code of a response whose status is in its headers (an error, or a
/// trailers-only answer); `0` (OK) otherwise: a unary success or a stream that opened.
fn header_status(headers: &http::HeaderMap) -> i32 {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = rpc_label(&path);
        // Only these fields: never metadata (`authorization`), never a message.
        // At debug level: below `--log-level debug` the log layer neither formats nor shows
        // it, and without the OpenTelemetry layer it is not made at all.
        let span = tracing::debug_span!(
            "rpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            session_id = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        if !span.is_disabled() && super::subscriber::otel_spans() {
            // A missing or malformed traceparent leaves the span a root: a new trace.
            let _ = span.set_parent(super::extract(request.headers()));
            if super::subscriber::log_trace_ids() {
                let ids = span.context().span().span_context().clone();
                if ids.is_valid() {
                    span.record("trace_id", tracing::field::display(ids.trace_id()));
                    span.record("span_id", tracing::field::display(ids.span_id()));
                }
            }
        }
        let started = Instant::now();
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = call.await;
                let code = match &result {
                    Ok(response) => header_status(response.headers()),
                    Err(_) => tonic::Code::Internal as i32,
                };
                let code = tonic::Code::from_i32(code);
                let elapsed = started.elapsed();
                metrics::rpc_finished(&path, code, elapsed);
                let current = tracing::Span::current();
                if !current.is_disabled() {
                    current.record("rpc.grpc.status_code", code as i32);
                    if code != tonic::Code::Ok {
                        current.record("otel.status_code", "error");
                    }
                    tracing::debug!(
                        status = ?code,
                        elapsed_us = elapsed.as_micros() as u64,
                        "rpc finished"
                    );
                }
                result
            }
            .instrument(span),
        )
    }
}

use opentelemetry::trace::TraceContextExt as _;
