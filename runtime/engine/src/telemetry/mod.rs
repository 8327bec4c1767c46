//! Telemetry: a `tracing` span per RPC (method, session, gRPC status; never values or
//! tokens), W3C trace context (`traceparent`, `tracestate`) taken from incoming calls and
//! passed on to workers and callback servers, optional OTLP export, Prometheus metrics and
//! text or JSON logs.
//!
//! The engine library only creates spans and records metrics; [`init`] (what `mlbridge
//! serve` calls) installs the subscriber that turns spans into OpenTelemetry spans and log
//! lines. An embedding program may install its own subscriber instead, with a
//! `tracing_opentelemetry` layer for the trace context to flow.

pub mod metrics;
mod rpc;
mod subscriber;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use rpc::{RpcTelemetry, RpcTelemetryLayer, rpc_label};
pub use subscriber::{LogFormat, TelemetryConfig, TelemetryGuard, init};

/// Reads trace context headers from an incoming HTTP/2 request.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes trace context headers into an outgoing gRPC request.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The caller's trace context from `traceparent`/`tracestate` headers. A missing or
/// malformed `traceparent` gives an empty context: the call then starts a new trace.
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Adds the current span's trace context (`traceparent`, `tracestate`) to an outgoing
/// request, so that the callee's span is a child of it. Without an OpenTelemetry layer in
/// the subscriber there is no context and nothing is added.
pub fn inject<T>(request: &mut tonic::Request<T>) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new()
            .inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    }
}

/// A request carrying `message` and the current trace context.
pub fn traced_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    inject(&mut request);
    request
}

/// Records the session a call names on the current RPC span (`session_id`).
pub fn record_session(session_id: &str) {
    if !session_id.is_empty() {
        tracing::Span::current().record("session_id", session_id);
    }
}

/// A request that names a session, which its RPC span records.
pub trait SessionScoped {
    /// The session the request names (empty when it names none).
    fn session_id(&self) -> &str;
}

macro_rules! session_scoped {
    ($($request:ident),* $(,)?) => {
        $(impl SessionScoped for mlbridge_proto::mlbridge::v1::$request {
            fn session_id(&self) -> &str {
                &self.session_id
            }
        })*
    };
}

session_scoped!(
    CleanupSessionRequest,
    MintTokenRequest,
    RevokeTokenRequest,
    ListTokensRequest,
    CreateResourceRequest,
    DeleteVariableRequest,
    ExecuteFrameworkOperationRequest,
    ExecuteStreamingToolRequest,
    ExecuteToolRequest,
    GetSessionRequest,
    GetVariableHistoryRequest,
    GetVariableRequest,
    GetVariablesRequest,
    HeartbeatRequest,
    InitializeSessionRequest,
    InvokeCallbackRequest,
    InvokeResourceRequest,
    ListResourcesRequest,
    ListToolsRequest,
    ListVariablesRequest,
    RegisterCallbackRequest,
    RegisterToolsRequest,
    RegisterVariableRequest,
    ReleaseResourceRequest,
    RollbackVariableRequest,
    SetVariableRequest,
    SetVariablesRequest,
    StartOptimizationRequest,
    StopOptimizationRequest,
    UnregisterCallbackRequest,
    WatchVariablesRequest,
);

/// The message of `request`, with the session it names recorded on the current RPC span.
pub fn traced<T: SessionScoped>(request: tonic::Request<T>) -> T {
    let message = request.into_inner();
    record_session(message.session_id());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_traceparent_gives_an_empty_context() {
        for garbage in [
            "garbage",
            "00-00000000000000000000000000000000-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", garbage.parse().unwrap());
            assert!(
                !extract(&headers).span().span_context().is_valid(),
                "{garbage}"
            );
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let context = extract(&headers);
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
