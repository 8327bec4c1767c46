"""Python side of `cargo xtask bench engine`: the SDK against the engine (uncached and cached
reads, writes, a host tool call), and raw generated stubs against both the engine and the
dict-server peer. Prints one JSON object per measurement.

Usage: bench_python.py ENGINE_ADDR PEER_ADDR [TONIC_ECHO_ADDR]
       bench_python.py overhead LABEL=ENGINE_ADDR ...
       bench_python.py floors TONIC_ECHO_ADDR GRPCIO_ECHO_ADDR

`floors` times a plain grpcio client's unary call to the run's two echo servers (the floor of
the SDK's calls), in alternating rounds.

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
    summary(name, server, timings)


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


def get_beside_echo(ctx: SessionContext, echo: str, rounds: int = 10) -> None:
    """The SDK's uncached get and its floor, a grpcio client's unary call to the tonic echo,
    in alternating rounds, so that drift on a busy machine falls on both alike."""
    request = pb.ExecuteCallbackRequest(callback_id="bench", callback_name="noop", session_id="bench-session")
    with grpc.insecure_channel(echo) as channel:
        call = pb_grpc.CallbackStub(channel).ExecuteCallback
        ops = [lambda: ctx.get_variable("temperature"), lambda: call(request)]
        for _ in range(WARMUP):
            for op in ops:
                op()
        timings: list[list[int]] = [[], []]
        for round_number in range(rounds):
            for k in range(2):
                index = (round_number + k) % 2
                op = ops[index]
                for _ in range(SAMPLES // rounds):
                    start = time.perf_counter_ns()
                    op()
                    timings[index].append(time.perf_counter_ns() - start)
    summary("get, uncached (Python SDK)", "engine", timings[0])
    summary("unary echo (Python client), beside the get", "rust tonic", timings[1])


def sdk(address: str, echo: str | None) -> None:
    with SessionContext(address, cache=False) as ctx:
        ctx.register_variable("temperature", "float", 0.7)
        if echo is None:
            measure("get, uncached (Python SDK)", "engine", lambda i: ctx.get_variable("temperature"))
        else:
            get_beside_echo(ctx, echo)
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
            summary("get, uncached (Python SDK), alternating", label, samples)


def summary(name: str, server: str, samples: list[int]) -> None:
    samples.sort()
    print(
        json.dumps(
            {
                "name": name,
                "server": server,
                "p50_us": samples[len(samples) // 2] / 1e3,
                "p99_us": samples[int((len(samples) - 1) * 0.99)] / 1e3,
                "ops_per_sec": len(samples) / (sum(samples) / 1e9),
            }
        ),
        flush=True,
    )


def floors(servers: list[tuple[str, str]], rounds: int = 10, per_round: int = 300) -> None:
    request = pb.ExecuteCallbackRequest(callback_id="bench", callback_name="noop", session_id="bench-session")
    with contextlib.ExitStack() as stack:
        calls = []
        for _, address in servers:
            channel = stack.enter_context(grpc.insecure_channel(address))
            call = pb_grpc.CallbackStub(channel).ExecuteCallback
            for _ in range(WARMUP):
                call(request)
            calls.append(call)
        timings: list[list[int]] = [[] for _ in servers]
        for round_number in range(rounds):
            for k in range(len(servers)):
                index = (round_number + k) % len(servers)
                call = calls[index]
                for _ in range(per_round):
                    start = time.perf_counter_ns()
                    call(request)
                    timings[index].append(time.perf_counter_ns() - start)
        for (server, _), samples in zip(servers, timings):
            summary("unary echo (Python client)", server, samples)


def main() -> None:
    if sys.argv[1] == "floors":
        floors([("rust tonic", sys.argv[2]), ("python grpcio", sys.argv[3])])
        return
    if sys.argv[1] == "overhead":
        overhead([(label, address) for label, _, address in (arg.partition("=") for arg in sys.argv[2:])])
        return
    engine, peer = sys.argv[1], sys.argv[2]
    sdk(engine, sys.argv[3] if len(sys.argv) > 3 else None)
    raw_get_set(engine, "engine")
    raw_get_set(peer, "python dict server")


if __name__ == "__main__":
    main()
