"""Python side of `cargo xtask bench engine`: the SDK against the engine (uncached and cached
reads, writes, a host tool call), and raw generated stubs against both the engine and the
dict-server peer. Prints one JSON object per measurement.

Usage: bench_python.py ENGINE_ADDR PEER_ADDR
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

import grpc

from mlbridge import SessionContext
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc

SAMPLES = 3000
WARMUP = 200


def measure(name: str, server: str, op: Callable[[int], object], samples: int = SAMPLES) -> None:
    for i in range(WARMUP):
        op(i)
    timings = []
    for i in range(samples):
        start = time.perf_counter_ns()
        op(i)
        timings.append(time.perf_counter_ns() - start)
    timings.sort()
    total_s = sum(timings) / 1e9
    print(
        json.dumps(
            {
                "name": name,
                "server": server,
                "p50_us": timings[len(timings) // 2] / 1e3,
                "p99_us": timings[int((len(timings) - 1) * 0.99)] / 1e3,
                "ops_per_sec": len(timings) / total_s,
            }
        ),
        flush=True,
    )


def raw_get_set(address: str, server: str) -> None:
    """The same generated-stub calls against any server speaking MLBridge."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.MLBridgeStub(channel)
        session = stub.InitializeSession(pb.InitializeSessionRequest()).session.session_id
        stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=session,
                name="temperature",
                type=pb.VARIABLE_TYPE_FLOAT,
                initial_value=pb.Value(float_value=0.7),
            )
        )
        get = pb.GetVariableRequest(session_id=session, name="temperature")
        measure("get (Python stub)", server, lambda i: stub.GetVariable(get))
        measure(
            "set (Python stub)",
            server,
            lambda i: stub.SetVariable(
                pb.SetVariableRequest(session_id=session, name="temperature", value=pb.Value(float_value=(i % 100) / 100))
            ),
        )


def sdk(address: str) -> None:
    with SessionContext(address, cache=False) as ctx:
        ctx.register_variable("temperature", "float", 0.7)
        measure("get, uncached (Python SDK)", "engine", lambda i: ctx.get_variable("temperature"))
        measure("set (Python SDK)", "engine", lambda i: ctx.set_variable("temperature", (i % 100) / 100))
        measure("host tool call add (Python SDK)", "engine", lambda i: ctx.tools.add(a=1.0, b=float(i)))
    with SessionContext(address) as ctx:
        ctx.register_variable("temperature", "float", 0.7)
        ctx.get_variable("temperature")
        measure("get, cached (Python SDK)", "engine", lambda i: ctx.get_variable("temperature"), samples=100_000)


def main() -> None:
    engine, peer = sys.argv[1], sys.argv[2]
    sdk(engine)
    raw_get_set(engine, "engine")
    raw_get_set(peer, "python dict server")


if __name__ == "__main__":
    main()
