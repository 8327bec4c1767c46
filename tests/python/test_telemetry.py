"""Telemetry end to end (the `mlbridge[otel]` extra, issue 11 item 2): this process's
spans are caught by an in-memory exporter; the engine and its worker export theirs over
OTLP/gRPC to a small collector the test runs (opentelemetry-proto's TraceService), and
are read once the engine has stopped (which flushes both). One trace covers a Python
client span → the engine's RPC span → the engine's worker call → the worker's span, and
the same through a callback server; a garbage `traceparent` starts a new trace and the
call succeeds; `--log-format json` lines parse, carry trace ids and hold no token or
value; `/metrics` shows the documented series with bounded labels; and everything works
with the extra not installed (a subprocess where `import opentelemetry` fails)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import metrics, trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mlbridge import AsyncSessionContext, SessionContext, VariableNotFound, VariableType
from mlbridge_adapters.builtin import Builtin
from mlbridge_proto import ml_bridge_pb2, ml_bridge_pb2_grpc

SECRET = "a-value-that-must-not-be-logged"
TOKEN = "Bearer sekrit-token-do-not-log"
METRICS_PREFIX = "mlbridge metrics on http://"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str
    kind: int


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                    "",
                )
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            Span(
                                service,
                                span.name,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                span.kind,
                            )
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, service: str, name: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.service == service and s.name == name]


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    kept = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(kept, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield kept, f"http://127.0.0.1:{port}"
    server.stop(grace=None)


class _Recording(SpanProcessor):
    """Keeps this process's finished spans while a test runs (other tests' are dropped)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.active = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            self.exporter.export([span])


_RECORDING = _Recording()
_METRICS = InMemoryMetricReader()
_installed = False


@pytest.fixture
def local_spans() -> Iterator[InMemorySpanExporter]:
    """This process's spans (the client's and its callback server's)."""
    global _installed
    if not _installed:
        provider = TracerProvider()
        provider.add_span_processor(_RECORDING)
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))
        _installed = True
    _RECORDING.exporter.clear()
    _RECORDING.active = True
    yield _RECORDING.exporter
    _RECORDING.active = False
    _RECORDING.exporter.clear()


@dataclass
class Engine:
    process: subprocess.Popen[str]
    address: str
    stderr: Path

    def stop(self) -> str:
        """Stops the engine (flushing its and its workers' spans); returns its stderr."""
        if self.process.poll() is None:
            self.process.terminate()
            assert self.process.wait(timeout=30) == 0
        return self.stderr.read_text()

    def metrics_address(self) -> str:
        match = re.search(re.escape(METRICS_PREFIX) + r"([0-9.:]+)/metrics", self.stderr.read_text())
        if match:
            return match.group(1)
        raise AssertionError(f"no metrics line in {self.stderr.read_text()}")


def start(engine_bin: Path, tmp: Path, *flags: str, env: dict[str, str] | None = None) -> Engine:
    stderr = tmp / f"engine-{len(list(tmp.glob('engine-*')))}.log"
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            [str(engine_bin), "serve", "--listen", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**os.environ, "MLBRIDGE_PYTHON": sys.executable, **(env or {})},
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        process.kill()
        process.wait()
        pytest.fail(f"the engine did not start:\n{stderr.read_text()[-4000:]}")
    return Engine(process, line.split()[-1], stderr)


WORKER_FLAGS = ("--workers", "1", "--adapter", "mlbridge_adapters.builtin")


@pytest.fixture
def traced_engine(engine_bin: Path, tmp_path: Path, collector: tuple[Collector, str]) -> Iterator[Engine]:
    """An engine with a worker, both exporting to the collector; JSON logs; metrics."""
    _, endpoint = collector
    engine = start(
        engine_bin,
        tmp_path,
        *WORKER_FLAGS,
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--metrics-listen",
        "127.0.0.1:0",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
    )
    yield engine
    engine.stop()


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def hex_ids(span: ReadableSpan) -> tuple[str, str, str]:
    context = span.get_span_context()
    assert context is not None
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", parent


def only(spans: Sequence[Any]) -> Any:
    assert len(spans) == 1, spans
    return spans[0]


def test_one_trace_covers_a_framework_operation(
    traced_engine: Engine, collector: tuple[Collector, str], local_spans: InMemorySpanExporter
) -> None:
    kept, _ = collector
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("user operation"):
        with SessionContext(traced_engine.address) as ctx:
            echoed = Builtin(ctx).echo({"k": SECRET})
    assert echoed.value == {"k": SECRET}
    stderr = traced_engine.stop()

    root = only(finished(local_spans, "user operation"))
    trace_id, root_id, _ = hex_ids(root)
    client = only(finished(local_spans, "mlbridge.v1.MLBridge/ExecuteFrameworkOperation"))
    client_trace, client_id, client_parent = hex_ids(client)
    assert (client_trace, client_parent) == (trace_id, root_id)
    assert client.kind == trace.SpanKind.CLIENT

    rpc = only(kept.named("mlbridge-engine", "mlbridge.v1.MLBridge/ExecuteFrameworkOperation"))
    assert (rpc.trace_id, rpc.parent) == (trace_id, client_id)
    call = only(kept.named("mlbridge-engine", "mlbridge.v1.Worker/ExecuteFrameworkOperation"))
    assert (call.trace_id, call.parent) == (trace_id, rpc.span_id)
    worker = only(kept.named("mlbridge-worker", "mlbridge.v1.Worker/ExecuteFrameworkOperation"))
    assert (worker.trace_id, worker.parent) == (trace_id, call.span_id)
    assert worker.kind == 2  # SPAN_KIND_SERVER

    # The engine's JSON log lines parse, carry the trace ids of the calls, and hold no value.
    # (The worker's own log lines share the engine's stderr in the worker's format.)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip() and "[worker-" not in line]
    finished_rpcs = [line for line in lines if line["fields"].get("message") == "rpc finished"]
    operation = [
        line for line in finished_rpcs if line["span"].get("rpc.method") == "ExecuteFrameworkOperation"
    ]
    assert operation and operation[0]["span"]["trace_id"] == trace_id
    assert operation[0]["span"]["span_id"] == rpc.span_id
    assert all("trace_id" in line["span"] for line in finished_rpcs)
    assert SECRET not in stderr


def test_one_trace_covers_a_callback(
    traced_engine: Engine, collector: tuple[Collector, str], local_spans: InMemorySpanExporter
) -> None:
    kept, _ = collector
    tracer = trace.get_tracer("test")
    with SessionContext(traced_engine.address) as ctx:

        @ctx.register_callback
        def score(x: float) -> float:
            return x * 2

        with tracer.start_as_current_span("user operation"):
            assert ctx.call_callback("score", x=1.5) == 3.0
    traced_engine.stop()

    trace_id, root_id, _ = hex_ids(only(finished(local_spans, "user operation")))
    client = only(finished(local_spans, "mlbridge.v1.MLBridge/InvokeCallback"))
    _, client_id, client_parent = hex_ids(client)
    assert client_parent == root_id
    rpc = only(kept.named("mlbridge-engine", "mlbridge.v1.MLBridge/InvokeCallback"))
    assert (rpc.trace_id, rpc.parent) == (trace_id, client_id)
    call = only(kept.named("mlbridge-engine", "mlbridge.v1.Callback/ExecuteCallback"))
    assert (call.trace_id, call.parent) == (trace_id, rpc.span_id)
    server = only(finished(local_spans, "mlbridge.v1.Callback/ExecuteCallback"))
    server_trace, _, server_parent = hex_ids(server)
    assert (server_trace, server_parent) == (trace_id, call.span_id)
    assert server.kind == trace.SpanKind.SERVER


def test_the_asyncio_client_sends_its_trace_context(
    traced_engine: Engine, collector: tuple[Collector, str], local_spans: InMemorySpanExporter
) -> None:
    kept, _ = collector
    tracer = trace.get_tracer("test")

    async def body() -> None:
        async with AsyncSessionContext(traced_engine.address) as ctx:
            await ctx.register_variable("x", VariableType.INTEGER, 1)
            with tracer.start_as_current_span("user operation"):
                await ctx.set_variable("x", 2)
                watch = ctx.watch(["x"])
                await watch.__anext__()
                await watch.aclose()

    asyncio.run(body())
    traced_engine.stop()
    trace_id, root_id, _ = hex_ids(only(finished(local_spans, "user operation")))
    client = only(finished(local_spans, "mlbridge.v1.MLBridge/SetVariable"))
    client_trace, client_id, client_parent = hex_ids(client)
    assert (client_trace, client_parent) == (trace_id, root_id)
    rpc = only(kept.named("mlbridge-engine", "mlbridge.v1.MLBridge/SetVariable"))
    assert (rpc.trace_id, rpc.parent) == (trace_id, client_id)
    # A stream's context goes out too: its engine span is in the same trace (the SDK's
    # cache watch, opened outside the span, is in another).
    watches = kept.named("mlbridge-engine", "mlbridge.v1.MLBridge/WatchVariables")
    watch_client = only(
        [w for w in finished(local_spans, "mlbridge.v1.MLBridge/WatchVariables") if hex_ids(w)[0] == trace_id]
    )
    _, watch_client_id, _ = hex_ids(watch_client)
    assert [(w.trace_id, w.parent) for w in watches if w.trace_id == trace_id] == [(trace_id, watch_client_id)]


def test_a_garbage_traceparent_starts_a_new_trace_and_the_call_succeeds(
    traced_engine: Engine, collector: tuple[Collector, str]
) -> None:
    kept, _ = collector
    garbage = "00-zzzz-not-a-trace-01"
    with grpc.insecure_channel(traced_engine.address) as channel:
        stub = ml_bridge_pb2_grpc.MLBridgeStub(channel)
        reply = stub.Ping(
            ml_bridge_pb2.PingRequest(message="marco"),
            metadata=[("traceparent", garbage), ("authorization", TOKEN)],
            timeout=10,
        )
    assert reply.message == "marco"
    stderr = traced_engine.stop()
    ping = only(kept.named("mlbridge-engine", "mlbridge.v1.MLBridge/Ping"))
    assert ping.parent == "" and len(ping.trace_id) == 32 and set(ping.trace_id) != {"0"}
    assert "sekrit" not in stderr


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Series of a Prometheus text exposition, by name."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, rest = head.partition("{")
        labels = dict(
            (pair.split("=", 1)[0], pair.split("=", 1)[1].strip('"')) for pair in rest.rstrip("}").split(",") if pair
        )
        found.setdefault(name, []).append((labels, float(value)))
    return found


def test_metrics_are_scraped_with_bounded_labels(traced_engine: Engine) -> None:
    with SessionContext(traced_engine.address) as ctx:
        ctx.register_variable("x", VariableType.STRING, SECRET)
        Builtin(ctx).noop()
        session = ctx.session_id
        with urllib.request.urlopen(f"http://{traced_engine.metrics_address()}/metrics", timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
    found = parse_exposition(text)
    assert found["mlbridge_sessions"][0][1] == 1
    assert found["mlbridge_variables"][0][1] == 1
    assert found["mlbridge_workers"][0][1] == 1
    assert found["mlbridge_workers_alive"][0][1] == 1
    assert "mlbridge_workers_busy" in found and "mlbridge_worker_restarts_total" in found
    assert "mlbridge_watchers" in found and "mlbridge_watch_lag_updates_count" in found
    assert found["mlbridge_memory_used_bytes"][0][1] > 0
    operations = [
        labels
        for labels, count in found["mlbridge_rpc_duration_seconds_count"]
        if labels["method"] == "ExecuteFrameworkOperation" and count >= 1
    ]
    assert operations == [{"service": "mlbridge.v1.MLBridge", "method": "ExecuteFrameworkOperation", "status": "Ok"}]
    for name, rows in found.items():
        for labels, _ in rows:
            assert set(labels) <= {"service", "method", "status", "le"}, name
            assert session not in labels.values() and SECRET not in labels.values()


def test_the_client_cache_counts_hits_and_misses(engine_bin: Path, tmp_path: Path, local_spans: Any) -> None:
    engine = start(engine_bin, tmp_path)
    try:
        with SessionContext(engine.address) as owner:
            owner.register_variable("x", VariableType.INTEGER, 1)
            # A second client of the session, its cache kept without a watch: the first
            # read misses (and asks the engine), the next two are answered from the cache.
            with SessionContext(
                engine.address, owner.session_id, keep_session=True, watch_cache=False, cache_ttl=None
            ) as other:
                before = _cache_counts()
                for _ in range(3):
                    assert other.get_variable("x") == 1
                after = _cache_counts()
    finally:
        engine.stop()
    assert after.get("miss", 0) - before.get("miss", 0) == 1
    assert after.get("hit", 0) - before.get("hit", 0) == 2


def _cache_counts() -> dict[str, int]:
    data = _METRICS.get_metrics_data()
    counts: dict[str, int] = {}
    if data is None:
        return counts
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "mlbridge.client.cache.lookups":
                    for point in metric.data.data_points:
                        counts[str(point.attributes["result"])] = int(point.value)  # type: ignore[attr-defined, index]
    return counts


BLOCKED = """
import sys
from mlbridge import SessionContext, VariableType, telemetry
from mlbridge_adapters.builtin import Builtin

assert not telemetry.enabled()
with SessionContext(sys.argv[1]) as ctx:
    ctx.register_variable("x", VariableType.INTEGER, 1)
    assert ctx.get_variable("x") == 1
    assert Builtin(ctx).echo({"k": 1}).value == {"k": 1}

    @ctx.register_callback
    def score(x: float) -> float:
        return x * 2

    assert ctx.call_callback("score", x=1.5) == 3.0
loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
assert not loaded, loaded
print("ok")
"""


def test_everything_works_without_the_extra(engine_bin: Path, tmp_path: Path) -> None:
    # A package that shadows opentelemetry and fails to import, first on the path of the
    # client and of the engine's workers: as if the extra were not installed.
    blocker = tmp_path / "blocker" / "opentelemetry"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('opentelemetry is not installed here')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    engine = start(engine_bin, tmp_path, *WORKER_FLAGS, env={"PYTHONPATH": path})
    try:
        result = subprocess.run(
            [sys.executable, "-c", BLOCKED, engine.address],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
    finally:
        stderr = engine.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "Traceback" not in stderr, stderr


def test_a_failing_call_marks_its_client_span(
    traced_engine: Engine, local_spans: InMemorySpanExporter
) -> None:
    """The client span records a call's gRPC status when the call fails (the spans are
    made by a channel wrapper, not an interceptor: see mlbridge/_wrap.py)."""
    with SessionContext(traced_engine.address, cache=False) as ctx:
        with pytest.raises(VariableNotFound):
            ctx.get_variable("no_such_variable")
        ctx.register_variable("fine", "float", 0.5)
        assert ctx.get_variable("fine") == 0.5
    gets = finished(local_spans, "mlbridge.v1.MLBridge/GetVariable")
    assert len(gets) == 2, gets
    failed, ok = gets
    assert failed.attributes is not None and failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert ok.attributes is not None and "rpc.grpc.status_code" not in ok.attributes
    assert ok.kind == trace.SpanKind.CLIENT and ok.attributes["rpc.method"] == "GetVariable"
