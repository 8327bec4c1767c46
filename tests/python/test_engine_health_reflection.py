"""The engine's standard gRPC services, seen by the standard Python clients: health
(`grpc.health.v1`, from grpcio-health-checking) and server reflection (from
grpcio-reflection), with no generated code of ours on the client side."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import sdk_engine
from mlbridge import SessionContext

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MLBRIDGE = "mlbridge.v1.MLBridge"


@pytest.fixture
def running(engine_bin: Path) -> Iterator[sdk_engine.RunningEngine]:
    engine = sdk_engine.start_engine(engine_bin)
    yield engine
    engine.stop()


def check(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as chan:
        reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    status: int = reply.status
    return status


@pytest.mark.parametrize("service", ["", MLBRIDGE])
def test_health_check_reports_serving_per_service(running: sdk_engine.RunningEngine, service: str) -> None:
    assert check(running.address, service) == SERVING


def test_health_check_of_an_unknown_service_is_not_found(running: sdk_engine.RunningEngine) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        check(running.address, "no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("service", ["", MLBRIDGE])
def test_health_watch_starts_with_serving(running: sdk_engine.RunningEngine, service: str) -> None:
    with grpc.insecure_channel(running.address) as chan:
        stream = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(service=service), timeout=10)
        first = next(stream)
        stream.cancel()
    assert first.status == SERVING


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_turns_health_not_serving_while_a_call_drains(engine_bin: Path, workers: int) -> None:
    """A SIGTERM while a call and health watches are in flight: the watches see NOT_SERVING
    and then end; health checks on new connections answer NOT_SERVING for "" and for
    MLBridge while the call is still running (the listener stays open until it ends); the
    call itself completes; the engine exits cleanly. With workers, they stop after health
    has turned NOT_SERVING."""
    flags = ["--workers", str(workers), "--adapter", "mlbridge_adapters.builtin"]
    engine = sdk_engine.start_engine(engine_bin, *flags, env=sdk_engine.worker_env())
    try:
        seen: dict[str, queue.Queue[int | str]] = {name: queue.Queue() for name in ("", MLBRIDGE)}

        def watch(service: str) -> None:
            with grpc.insecure_channel(engine.address) as chan:
                stream = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(service=service))
                for reply in stream:
                    seen[service].put(reply.status)
            seen[service].put("ended")

        watchers = [threading.Thread(target=watch, args=(name,), daemon=True) for name in seen]
        for watcher in watchers:
            watcher.start()
        for name in seen:
            assert seen[name].get(timeout=10) == SERVING

        entered, release = threading.Event(), threading.Event()
        result: queue.Queue[object] = queue.Queue()
        owner = SessionContext(engine.address).open()
        caller = SessionContext(engine.address, owner.session_id, keep_session=True).open()
        try:
            # A call that stays inside the engine until the test lets it go: the engine
            # calls back into this process, and the callback waits for `release`.
            @owner.register_callback
            def held() -> int:
                entered.set()
                release.wait(60)
                return 7

            call = threading.Thread(target=lambda: result.put(caller.call_callback("held")), daemon=True)
            call.start()
            assert entered.wait(10), "the callback did not start"
            engine.process.terminate()

            for name in seen:
                assert seen[name].get(timeout=10) == NOT_SERVING, f"watch of {name!r}"
                assert seen[name].get(timeout=10) == "ended", f"watch of {name!r} did not end"
            # The listener is still open while the call runs: new connections are told.
            assert check(engine.address, "") == NOT_SERVING
            assert check(engine.address, MLBRIDGE) == NOT_SERVING
            assert engine.process.poll() is None
            release.set()
            call.join(timeout=30)
            assert result.get(timeout=1) == 7
        finally:
            release.set()
            # The engine is gone: nothing left to clean up there.
            caller.close(cleanup=False)
            owner.close(cleanup=False)
        assert engine.process.wait(timeout=30) == 0
    finally:
        engine.stop()


def reflection_services(address: str) -> list[str]:
    with grpc.insecure_channel(address) as chan:
        stub = reflection_pb2_grpc.ServerReflectionStub(chan)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return sorted(service.name for service in reply.list_services_response.service)


def test_reflection_lists_the_served_services(running: sdk_engine.RunningEngine) -> None:
    assert reflection_services(running.address) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        MLBRIDGE,
        "mlbridge.v1.WorkerHub",
    ]


def test_reflection_resolves_the_schema_and_a_dynamic_client_calls_ping(running: sdk_engine.RunningEngine) -> None:
    """Everything the client knows comes from reflection: the file that defines MLBridge
    with every file it imports, then request and response classes made from them."""
    with grpc.insecure_channel(running.address) as chan:
        database = ProtoReflectionDescriptorDatabase(chan)
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(MLBRIDGE)
        assert service.file.name == "ml_bridge.proto"
        imported = {file.name for file in service.file.dependencies}
        assert "ml_bridge_options.proto" in imported
        assert "google/protobuf/timestamp.proto" in imported
        # Custom options survive: the error kinds still carry their gRPC codes
        # (`(mlbridge.options.grpc_code)`, unknown to this client's default pool).
        kind = pool.FindEnumTypeByName("mlbridge.v1.ErrorKind").values_by_name["ERROR_KIND_UNSPECIFIED"]
        assert kind.GetOptions().SerializeToString() != b""

        ping = service.methods_by_name["Ping"]
        request_class = message_factory.GetMessageClass(ping.input_type)
        response_class = message_factory.GetMessageClass(ping.output_type)
        call = chan.unary_unary(
            f"/{MLBRIDGE}/Ping",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        reply = call(request_class(message="polo"), timeout=10)
    assert reply.message == "polo"
    assert reply.protocol_version == "mlbridge.v1"


def test_reflection_names_the_file_of_a_symbol(running: sdk_engine.RunningEngine) -> None:
    with grpc.insecure_channel(running.address) as chan:
        stub = reflection_pb2_grpc.ServerReflectionStub(chan)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="mlbridge.v1.PingRequest")
        [found] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        assert found.file_descriptor_response.file_descriptor_proto
        # tonic's reflection ends the stream with NOT_FOUND for an unknown symbol.
        unknown = reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol")
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.ServerReflectionInfo(iter([unknown]), timeout=10))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
