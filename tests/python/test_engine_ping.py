"""The Rust engine (a tonic server from generated/rust) answers Ping from a Python client
using generated/python, over TCP and over a Unix socket."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import grpc
import pytest

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


def test_unimplemented_rpcs_say_so(engine_address: str) -> None:
    with channel(engine_address) as chan:
        stub = ml_bridge_pb2_grpc.MLBridgeStub(chan)
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateResource(ml_bridge_pb2.CreateResourceRequest(session_id="nope"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_the_engine_shuts_down_cleanly_on_a_signal(engine_bin: Path, signal_name: str) -> None:
    import signal

    process, address = start_engine(engine_bin, "127.0.0.1:0")
    with channel(address) as chan:
        ml_bridge_pb2_grpc.MLBridgeStub(chan).Ping(ml_bridge_pb2.PingRequest(), timeout=10)
    process.send_signal(getattr(signal, signal_name))
    assert process.wait(timeout=10) == 0
