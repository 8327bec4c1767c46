"""The Rust engine (a tonic server from generated/rust) answers Ping from a Python client
using generated/python, over TCP and over a Unix socket."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from google.protobuf import message_factory

import sdk_engine
from mlbridge_proto import ml_bridge_pb2, ml_bridge_pb2_grpc


def channel(address: str) -> grpc.Channel:
    """grpc-core sends a Unix socket's path as the HTTP/2 :authority, which the engine's
    HTTP/2 stack rejects as malformed; name a plain authority instead."""
    options = [("grpc.default_authority", "localhost")] if address.startswith("unix:") else []
    return grpc.insecure_channel(address, options=options)


def start_engine(engine_bin: Path, listen: str) -> tuple[subprocess.Popen[str], str]:
    running = sdk_engine.start_engine(engine_bin, listen=listen)
    return running.process, running.address


@pytest.fixture(params=["tcp", "unix"])
def engine_address(request: pytest.FixtureRequest, engine_bin: Path, tmp_path: Path) -> Iterator[str]:
    listen = "127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path / 'engine.sock'}"
    process, address = start_engine(engine_bin, listen)
    try:
        yield address
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0, "the engine did not exit cleanly on SIGTERM"


def test_ping(engine_address: str) -> None:
    with channel(engine_address) as chan:
        stub = ml_bridge_pb2_grpc.MLBridgeStub(chan)
        reply = stub.Ping(ml_bridge_pb2.PingRequest(message="marco"), timeout=10)
    assert reply.message == "marco"
    assert reply.protocol_version == "mlbridge.v1"
    assert reply.server_id.startswith("engine-")
    assert reply.server_time.seconds > 1_600_000_000


def test_the_listening_line_names_a_real_port(engine_bin: Path) -> None:
    process, address = start_engine(engine_bin, "127.0.0.1:0")
    try:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert process.stdout is not None
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_rpc_of_the_schema_is_implemented(engine_address: str) -> None:
    service = ml_bridge_pb2.DESCRIPTOR.services_by_name["MLBridge"]
    assert len(service.methods) >= 30
    with channel(engine_address) as chan:
        codes = {method.name: status_of_empty_call(chan, service.full_name, method) for method in service.methods}
        unimplemented = [name for name, code in codes.items() if code == grpc.StatusCode.UNIMPLEMENTED]
        assert unimplemented == []
        # An unknown method is still answered UNIMPLEMENTED, so the check above can fail.
        with pytest.raises(grpc.RpcError) as raised:
            chan.unary_unary(f"/{service.full_name}/NoSuchMethod")(b"", timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def status_of_empty_call(chan: grpc.Channel, service: str, method: Any) -> grpc.StatusCode:
    """The status of `method` called with an empty request (OK if it answered)."""
    request = message_factory.GetMessageClass(method.input_type)()
    path = f"/{service}/{method.name}"
    try:
        if method.server_streaming:
            for _ in chan.unary_stream(path, request_serializer=type(request).SerializeToString)(request, timeout=10):
                pass
        else:
            chan.unary_unary(path, request_serializer=type(request).SerializeToString)(request, timeout=10)
    except grpc.RpcError as failed:
        code: grpc.StatusCode = failed.code()
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_the_engine_shuts_down_cleanly_on_a_signal(engine_bin: Path, signal_name: str) -> None:
    import signal

    process, address = start_engine(engine_bin, "127.0.0.1:0")
    with channel(address) as chan:
        ml_bridge_pb2_grpc.MLBridgeStub(chan).Ping(ml_bridge_pb2.PingRequest(), timeout=10)
    process.send_signal(getattr(signal, signal_name))
    assert process.wait(timeout=10) == 0
