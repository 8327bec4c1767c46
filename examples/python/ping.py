"""Ping the mlbridge engine through the generated Python stubs.

Usage: python examples/python/ping.py HOST:PORT | unix:PATH
"""

from __future__ import annotations

import sys
import time

import grpc

from mlbridge_proto import ml_bridge_pb2, ml_bridge_pb2_grpc


def main(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = ml_bridge_pb2_grpc.MLBridgeStub(channel)
        started = time.perf_counter()
        reply = stub.Ping(ml_bridge_pb2.PingRequest(message="hello from Python"), timeout=10)
        elapsed_ms = (time.perf_counter() - started) * 1e3
    print(f"engine {reply.server_id} (mlbridge {reply.server_version}, {reply.protocol_version})")
    print(f"echoed {reply.message!r} in {elapsed_ms:.2f} ms")
    print(f"engine clock: {reply.server_time.ToJsonString()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
