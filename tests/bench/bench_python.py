"""Python side of `cargo xtask bench engine`: the SDK against the engine (uncached and cached
reads, writes, a host tool call), and raw generated stubs against both the engine and the
dict-server peer. Prints one JSON object per measurement.

Usage: bench_python.py ENGINE_ADDR PEER_ADDR
       bench_python.py overhead LABEL=ENGINE_ADDR ...

`overhead` measures the SDK's uncached get on several engines (e.g. with telemetry or access
control on and off) in alternating rounds, so that drift on a busy machine falls on all of
them alike; one row per engine, its server column being the label.
"""

from __future__ import annotations

import contextlib
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


def overhead(engines: list[tuple[str, str]], rounds: int = 12, per_round: int = 500) -> None:
    with contextlib.ExitStack() as stack:
        contexts = []
        for _, address in engines:
            ctx = stack.enter_context(SessionContext(address, cache=False))
            contexts.append(ctx)
            ctx.register_variable("temperature", "float", 0.7)
            for _ in range(WARMUP):
                ctx.get_variable("temperature")
        timings: list[list[int]] = [[] for _ in engines]
        for round_number in range(rounds):
            # Rotate which engine goes first, so none always follows another's burst.
            order = [(round_number + k) % len(engines) for k in range(len(engines))]
            for index in order:
                ctx = contexts[index]
                for _ in range(per_round):
                    start = time.perf_counter_ns()
                    ctx.get_variable("temperature")
                    timings[index].append(time.perf_counter_ns() - start)
        for (label, _), samples in zip(engines, timings):
            samples.sort()
            print(
                json.dumps(
                    {
                        "name": "get, uncached (Python SDK), alternating",
                        "server": label,
                        "p50_us": samples[len(samples) // 2] / 1e3,
                        "p99_us": samples[int((len(samples) - 1) * 0.99)] / 1e3,
                        "ops_per_sec": len(samples) / (sum(samples) / 1e9),
                    }
                ),
                flush=True,
            )


def main() -> None:
    if sys.argv[1] == "overhead":
        overhead([(label, address) for label, _, address in (arg.partition("=") for arg in sys.argv[2:])])
        return
    engine, peer = sys.argv[1], sys.argv[2]
    sdk(engine)
    raw_get_set(engine, "engine")
    raw_get_set(peer, "python dict server")


if __name__ == "__main__":
    main()
