"""OpenTelemetry for the SDK, the worker and the callback server: the optional
``mlbridge[otel]`` extra (``pip install 'mlbridge[otel]'``).

With the extra's ``opentelemetry-api`` installed, the SDK's channels to the engine open a
client span per call (``mlbridge.v1.MLBridge/<Method>``) and send its W3C trace context
(``traceparent``, ``tracestate``), so the engine's span of the call is its child; the
worker's and the callback server's gRPC servers continue the context the engine sends, so
one trace covers a framework operation or a callback end to end; and the client's variable
cache counts its hits and misses (the ``mlbridge.client.cache.lookups`` counter, attribute
``result`` = ``hit`` or ``miss``, and an event on the current span). Spans and counters go
to the tracer and meter providers the application set; set them before creating a
``SessionContext`` (channels and servers made while no tracer provider is set are left
as they are, so that the extra costs nothing when nobody traces). A worker exports its spans over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
and the OTLP exporter is installed (:func:`configure_worker`).

Without the extra, or with ``MLBRIDGE_OTEL=0``, every function here does nothing and
nothing imports ``opentelemetry``. Spans carry method names and gRPC status codes only:
never metadata (``authorization``), values or arguments.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
import grpc.aio

from ._wrap import MetadataCall, WrappedChannel

__all__ = [
    "aio_client_interceptors",
    "cache_lookup",
    "configure_worker",
    "enabled",
    "instrument_channel",
    "server_interceptors",
    "shutdown",
    "tracing",
]

_TRACER = "mlbridge"


@functools.cache
def enabled() -> bool:
    """Whether ``opentelemetry-api`` is importable and ``MLBRIDGE_OTEL`` is not ``0``."""
    if os.environ.get("MLBRIDGE_OTEL", "").strip().lower() in {"0", "false", "off", "no"}:
        return False
    try:
        import opentelemetry.propagate  # noqa: F401, PLC0415
        import opentelemetry.trace  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def tracing() -> bool:
    """Whether spans are recorded: the extra is enabled and the application has set a
    tracer provider. Channels and servers made before that stay uninstrumented, which
    keeps calls as cheap as without the extra when nobody traces."""
    if not enabled():
        return False
    from opentelemetry import trace  # noqa: PLC0415

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _metering() -> bool:
    """Whether the application has set a meter provider."""
    from opentelemetry import metrics  # noqa: PLC0415

    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a later API without the private class
        return True
    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


def _span_name(method: str | bytes) -> str:
    text = method.decode() if isinstance(method, bytes) else method
    return text.lstrip("/")


def _with_context(metadata: Any) -> list[tuple[str, str | bytes]]:
    """`metadata` plus the current trace context (``traceparent``, ``tracestate``)."""
    from opentelemetry import propagate  # noqa: PLC0415

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    pairs = [(k, v) for k, v in (metadata or ()) if k not in carrier]
    pairs.extend(carrier.items())
    return pairs


def _status_of(error: BaseException) -> int:
    code = error.code() if isinstance(error, grpc.Call) else None
    return int(code.value[0]) if isinstance(code, grpc.StatusCode) else int(grpc.StatusCode.UNKNOWN.value[0])


def _traced(method: str, inner: Any) -> Any:
    """`inner`, opening a client span per call and sending its context; a stream's span
    covers its opening."""
    name = _span_name(method)

    def around(call: Any, request: Any, timeout: Any, metadata: Any, args: Any, kwargs: Any) -> Any:
        from opentelemetry import trace  # noqa: PLC0415

        tracer = trace.get_tracer(_TRACER)
        with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("rpc.system", "grpc")
            span.set_attribute("rpc.method", name.rsplit("/", 1)[-1])
            try:
                return call(request, timeout, _with_context(metadata), *args, **kwargs)
            except grpc.RpcError as error:
                span.set_attribute("rpc.grpc.status_code", _status_of(error))
                span.set_status(trace.Status(trace.StatusCode.ERROR))
                raise

    return MetadataCall(inner, around)


def instrument_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel`, sending the trace context with every call (unchanged unless
    :func:`tracing`)."""
    if not tracing():
        return channel
    return WrappedChannel(channel, _traced)


class _AioBase:
    """The asyncio twin of the blocking interceptor: a span per call, its context sent.
    grpc.aio files an interceptor under its first matching kind only, so each kind has
    its own class."""

    async def _call(self, continuation: Any, details: Any, request: Any, unary: bool) -> Any:
        from opentelemetry import trace  # noqa: PLC0415

        name = _span_name(details.method)
        tracer = trace.get_tracer(_TRACER)
        with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("rpc.system", "grpc")
            span.set_attribute("rpc.method", name.rsplit("/", 1)[-1])
            details = grpc.aio.ClientCallDetails(
                details.method,
                details.timeout,
                grpc.aio.Metadata(*_with_context(details.metadata)),
                details.credentials,
                details.wait_for_ready,
            )
            call = await continuation(details, request)
            if unary:
                try:
                    await call
                except grpc.aio.AioRpcError as error:
                    span.set_attribute("rpc.grpc.status_code", _status_of(error))
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
            return call


class _AioUnaryUnary(_AioBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request, True)


class _AioUnaryStream(_AioBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request, False)


class _AioStreamUnary(_AioBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, client_call_details, request_iterator, True)


class _AioStreamStream(_AioBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, client_call_details, request_iterator, False)


def aio_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for an asyncio channel (none unless :func:`tracing`)."""
    if not tracing():
        return []
    return [_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream()]


class _ServerInterceptor(grpc.ServerInterceptor):
    """Runs each call in a server span continuing the caller's trace context."""

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        from opentelemetry import propagate, trace  # noqa: PLC0415

        # Only the trace context headers are read; other metadata is never recorded.
        carrier = {
            key: value
            for key, value in handler_call_details.invocation_metadata or ()
            if key in ("traceparent", "tracestate") and isinstance(value, str)
        }
        parent = propagate.extract(carrier)
        name = _span_name(handler_call_details.method)

        def span() -> Any:
            tracer = trace.get_tracer(_TRACER)
            current = tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER)
            return current

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                with span() as current:
                    current.set_attribute("rpc.system", "grpc")
                    current.set_attribute("rpc.method", name.rsplit("/", 1)[-1])
                    return behavior(request, context)

            return run

        def streaming(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with span() as current:
                    current.set_attribute("rpc.system", "grpc")
                    current.set_attribute("rpc.method", name.rsplit("/", 1)[-1])
                    yield from behavior(request, context)

            return run

        if handler.unary_unary is not None:
            return handler._replace(unary_unary=unary(handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=streaming(handler.unary_stream))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=unary(handler.stream_unary))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=streaming(handler.stream_stream))
        return handler


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """Interceptors for a blocking gRPC server (none unless :func:`tracing`)."""
    return [_ServerInterceptor()] if tracing() else []


@contextlib.contextmanager
def server_span(method: str, carrier: Mapping[str, str]) -> Iterator[None]:
    """A server span for `method` (``/package.Service/Method``) continuing the trace context
    in `carrier` (its ``traceparent`` and ``tracestate``), when :func:`tracing`; nothing
    otherwise. For calls that arrive other than as gRPC calls (an attached worker's)."""
    if not tracing():
        yield
        return
    from opentelemetry import propagate, trace  # noqa: PLC0415

    parent = propagate.extract({key: value for key, value in carrier.items() if key in ("traceparent", "tracestate")})
    name = _span_name(method)
    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER) as current:
        current.set_attribute("rpc.system", "grpc")
        current.set_attribute("rpc.method", name.rsplit("/", 1)[-1])
        yield


def cache_lookup(hit: bool) -> None:
    """Counts a client cache lookup and notes it on the current span (when the application
    has set a meter or tracer provider). Without providers it costs two attribute reads:
    a cached read is meant to take a microsecond or two."""
    if not enabled():
        return
    metering, tracing_ = _providers_set()
    if not (metering or tracing_):
        return
    result = "hit" if hit else "miss"
    if metering:
        _cache_counter()(result)
    if tracing_:
        from opentelemetry import trace  # noqa: PLC0415

        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("mlbridge.cache", {"mlbridge.cache.result": result})


def _providers_set() -> tuple[bool, bool]:
    """Whether the application has set a global meter provider and a tracer provider."""
    holders = _provider_holders()
    if holders is None:
        return _metering(), tracing()
    metrics_module, trace_module = holders
    return metrics_module._METER_PROVIDER is not None, trace_module._TRACER_PROVIDER is not None


@functools.cache
def _provider_holders() -> tuple[Any, Any] | None:
    """opentelemetry-api's modules that hold the global providers (``None`` until set, and
    set at most once), read directly because the public getters look at ``os.environ`` on
    every call; ``None`` when this version of the API keeps them elsewhere."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.metrics import _internal as metrics_internal  # noqa: PLC0415

    if not hasattr(trace, "_TRACER_PROVIDER") or not hasattr(metrics_internal, "_METER_PROVIDER"):
        return None
    # Providers named by OTEL_PYTHON_*_PROVIDER are loaded by the first public get.
    trace.get_tracer_provider()
    metrics_internal.get_meter_provider()
    return metrics_internal, trace


@functools.cache
def _cache_counter() -> Callable[[str], None]:
    from opentelemetry import metrics  # noqa: PLC0415

    counter = metrics.get_meter(_TRACER).create_counter(
        "mlbridge.client.cache.lookups", unit="1", description="Variable reads answered from the client cache or not"
    )

    def add(result: str) -> None:
        counter.add(1, {"result": result})

    return add


_shutdown: list[Callable[[], None]] = []


def configure_worker(service_name: str) -> None:
    """For a worker process: exports its spans over OTLP/gRPC when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and
    ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-grpc`` are installed;
    otherwise does nothing."""
    if not enabled():
        return
    if not (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return
    try:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _shutdown.append(provider.shutdown)


def shutdown() -> None:
    """Flushes and stops what :func:`configure_worker` started."""
    while _shutdown:
        _shutdown.pop()()

