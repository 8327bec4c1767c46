"""Our `_pb2_grpc.py` against protoc's: a client built from one calls a server built from
the other, for all four RPC shapes, with `grpc` and with `grpc.aio`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, KITCHEN_FILES, SUPPORT, Outputs, generate_both, python_in


@pytest.fixture(scope="module")
def outputs(codegen_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    return generate_both(codegen_bin, tmp_path_factory.mktemp("kitchen"), FIXTURES, KITCHEN_FILES)


@pytest.mark.parametrize("mode", ["sync", "aio"])
@pytest.mark.parametrize(("server_side", "client_side"), [("theirs", "ours"), ("ours", "theirs"), ("ours", "ours")])
def test_client_calls_server(outputs: Outputs, mode: str, server_side: str, client_side: str) -> None:
    call_kitchen(outputs, mode, mode, server_side, client_side)


@pytest.mark.parametrize("server_side", ["theirs", "ours"])
def test_the_experimental_service_class_calls_a_server(outputs: Outputs, server_side: str) -> None:
    call_kitchen(outputs, "sync", "experimental", server_side, "ours")


def call_kitchen(outputs: Outputs, server_mode: str, client_mode: str, server_side: str, client_side: str) -> None:
    """Serves the kitchen with `server_side`'s code and calls it with `client_side`'s."""
    server_root: Path = getattr(outputs, server_side)
    client_root: Path = getattr(outputs, client_side)
    mode = client_mode
    server = subprocess.Popen(
        [sys.executable, str(SUPPORT / "kitchen_server.py"), server_mode],
        env={**os.environ, "PYTHONPATH": str(server_root)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("PORT "), f"server did not start: {line!r}"
        port = line.split()[1]
        assert python_in(client_root, SUPPORT / "kitchen_client.py", mode, port).strip() == "OK"
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
