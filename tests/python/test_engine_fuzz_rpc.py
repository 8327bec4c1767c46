"""Arbitrary bytes as request messages to every RPC of a running engine (`mlbridge serve`).

The RPCs are enumerated from the service descriptor. Each gets raw payloads (empty,
random bytes, deep nesting, absurd length prefixes) and structure-aware ones: a message
of its request type with random field values (against a live session half of the time)
and mutations of it. Every call must end in a status: OK, or a non-OK code whose
trailer carries a `BridgeError` (failures are data) that is not INTERNAL; and after every
call the engine still answers Ping. The seed is fixed (MLBRIDGE_FUZZ_SEED overrides it)
so a failure reproduces; MLBRIDGE_FUZZ_CASES sets the payloads per RPC.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor

import sdk_engine
from mlbridge_proto import ml_bridge_pb2, ml_bridge_pb2_grpc

SEED = int(os.environ.get("MLBRIDGE_FUZZ_SEED", "20261202"))
CASES_PER_RPC = int(os.environ.get("MLBRIDGE_FUZZ_CASES", "40"))
SERVICE = ml_bridge_pb2.DESCRIPTOR.services_by_name["MLBridge"]
# Where any endpoint field points: a Unix socket that does not exist, so that whatever a
# generated request registers, the engine never dials anything but this machine.
NOWHERE = "unix:/nonexistent/mlbridge-fuzz.sock"
ENDPOINT_FIELDS = {"endpoint", "engine_address"}
# Codes that mean the engine failed rather than judged the request.
ENGINE_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


def text(rnd: random.Random) -> str:
    choice = rnd.randrange(6)
    if choice == 0:
        return ""
    if choice == 1:
        return "".join(chr(rnd.randrange(0x20, 0x7F)) for _ in range(rnd.randrange(1, 12)))
    if choice == 2:
        return "".join(chr(rnd.choice([rnd.randrange(0x80, 0xD7FF), rnd.randrange(0xE000, 0x10FFFF)])) for _ in range(rnd.randrange(1, 8)))
    if choice == 3:
        return rnd.choice(["*", "?", "[", "a*b", "..", "/", "\x00", "x" * 300, "v", "temperature", "builtin.echo", "builtin"])
    if choice == 4:
        return rnd.choice("ab*[]{}()\\^$") * rnd.randrange(1, 20_000)
    return "v" + str(rnd.randrange(5))


def scalar(field: FieldDescriptor, rnd: random.Random) -> Any:
    t = field.cpp_type
    if t in (FieldDescriptor.CPPTYPE_INT32,):
        return rnd.choice([0, 1, -1, 2**31 - 1, -(2**31), rnd.randrange(-100, 100)])
    if t == FieldDescriptor.CPPTYPE_INT64:
        return rnd.choice([0, 1, -1, 2**63 - 1, -(2**63), rnd.randrange(-100, 100)])
    if t == FieldDescriptor.CPPTYPE_UINT32:
        return rnd.choice([0, 1, 2**32 - 1, rnd.randrange(0, 100)])
    if t == FieldDescriptor.CPPTYPE_UINT64:
        return rnd.choice([0, 1, 2**64 - 1, rnd.randrange(0, 100)])
    if t in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return rnd.choice([0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), 1e308, rnd.uniform(-10, 10)])
    if t == FieldDescriptor.CPPTYPE_BOOL:
        return rnd.random() < 0.5
    if t == FieldDescriptor.CPPTYPE_ENUM:
        # Open enums: unknown numbers are legal on the wire.
        return rnd.choice([0, 1, 2, rnd.randrange(-3, 40)])
    if t == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return rnd.randbytes(rnd.choice([0, 1, 7, 64, 3000]))
        return text(rnd)
    raise AssertionError(f"unhandled field type {t}")


def fill(message: pb_message.Message, rnd: random.Random, session: str, depth: int = 0) -> None:
    """Sets random fields of `message` (recursively, a few levels deep)."""
    for field in message.DESCRIPTOR.fields:
        if rnd.random() < 0.45:
            continue
        name = field.name
        if name in ENDPOINT_FIELDS:
            setattr(message, name, NOWHERE)
            continue
        if name == "session_id" and rnd.random() < 0.8:
            setattr(message, name, session)
            continue
        is_message = field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        if is_message and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            target = getattr(message, name)
            for _ in range(rnd.randrange(1, 4)):
                key = scalar(key_field, rnd)
                if value_field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                    if depth < 4:
                        fill(target[key], rnd, session, depth + 1)
                else:
                    target[key] = scalar(value_field, rnd)
        elif field.is_repeated:
            target = getattr(message, name)
            for _ in range(rnd.randrange(1, 4)):
                if is_message:
                    if depth < 4:
                        fill(target.add(), rnd, session, depth + 1)
                else:
                    target.append(scalar(field, rnd))
        elif is_message:
            if depth < 4:
                fill(getattr(message, name), rnd, session, depth + 1)
                getattr(message, name).SetInParent()
        else:
            setattr(message, name, scalar(field, rnd))


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def nested_value(depth: int) -> bytes:
    """A `Value` that is a list holding a list holding ... `depth` levels deep."""
    inner = b""
    for _ in range(depth):
        value_list = b"\x0a" + varint(len(inner)) + inner  # ValueList.values = 1
        inner = b"\x5a" + varint(len(value_list)) + value_list  # Value.list_value = 11
    return inner


def raw_payloads(rnd: random.Random) -> Iterator[bytes]:
    yield b""
    yield b"\xff" * 11
    yield b"\x0a\xff\xff\xff\xff\x07" + b"x"  # a length far beyond the message
    yield varint((536_870_911 << 3) | 0) + varint(2**64 - 1)  # the largest field number
    yield (varint((7 << 3) | 5) + struct.pack("<f", 1.0)) * 500  # a field with the wrong wire type, repeated
    yield b"\x12" + varint(len(nested_value(300))) + nested_value(300)  # field 2 as a 300-deep Value
    for _ in range(4):
        yield rnd.randbytes(rnd.choice([1, 2, 5, 17, 200, 5000]))


def mutate(payload: bytes, rnd: random.Random) -> bytes:
    data = bytearray(payload or b"\x00")
    for _ in range(rnd.randrange(1, 4)):
        op = rnd.randrange(4)
        at = rnd.randrange(len(data) + 1)
        if op == 0 and data:
            data[at % len(data)] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del data[at:]
        elif op == 2:
            data[at:at] = rnd.randbytes(rnd.randrange(1, 8))
        else:
            data[at:at] = data[: rnd.randrange(len(data) + 1)]
    return bytes(data)


def payloads(method: Any, rnd: random.Random, session: str) -> Iterator[bytes]:
    yield from raw_payloads(rnd)
    request_class = message_factory.GetMessageClass(method.input_type)
    has_endpoint = any(f.name in ENDPOINT_FIELDS for f in method.input_type.fields)
    for _ in range(CASES_PER_RPC):
        request = request_class()
        fill(request, rnd, session)
        encoded = request.SerializeToString()
        yield encoded
        # Mutations could turn NOWHERE into some other address; requests that name an
        # endpoint are sent only as generated.
        if not has_endpoint:
            yield mutate(encoded, rnd)


def call(chan: grpc.Channel, method: Any, payload: bytes) -> tuple[grpc.StatusCode, Any]:
    """Sends `payload` as the request; the status and its trailing metadata."""
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        if method.server_streaming:
            responses = chan.unary_stream(path)(payload, timeout=60)
            try:
                # One message (a watch's first is its SYNCED marker) shows the stream works.
                next(responses)
            except StopIteration:
                pass
            responses.cancel()
        else:
            chan.unary_unary(path)(payload, timeout=60)
    except grpc.RpcError as failed:
        if failed.code() == grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK, ()
        return failed.code(), failed.trailing_metadata() or ()
    return grpc.StatusCode.OK, ()


@pytest.fixture
def engine(engine_bin: Path, tmp_path: Path) -> Iterator[tuple[sdk_engine.RunningEngine, Path]]:
    """An engine whose stderr is kept, to look for panics a task survived."""
    log = tmp_path / "engine.stderr"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [str(engine_bin), "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert process.stdout is not None
    running = sdk_engine.RunningEngine(process, process.stdout.readline().split()[-1])
    yield running, log
    running.stop()


def test_arbitrary_bytes_to_every_rpc_get_a_status_and_the_engine_stays_up(
    engine: tuple[sdk_engine.RunningEngine, Path],
) -> None:
    running, log = engine
    rnd = random.Random(SEED)
    problems: list[str] = []
    codes: dict[str, int] = {}
    sent = 0
    with grpc.insecure_channel(running.address) as chan:
        stub = ml_bridge_pb2_grpc.MLBridgeStub(chan)
        session = stub.InitializeSession(ml_bridge_pb2.InitializeSessionRequest(), timeout=10).session.session_id
        assert len(SERVICE.methods) >= 30
        for method in SERVICE.methods:
            for payload in payloads(method, rnd, session):
                sent += 1
                code, trailers = call(chan, method, payload)
                codes[code.name] = codes.get(code.name, 0) + 1
                where = f"{method.name}({payload[:40]!r}{'...' if len(payload) > 40 else ''})"
                if code in ENGINE_FAILURES:
                    problems.append(f"{where}: {code.name}")
                elif code != grpc.StatusCode.OK:
                    details = dict(trailers).get("grpc-status-details-bin")
                    if details is None:
                        problems.append(f"{where}: {code.name} without a BridgeError")
                    else:
                        error = ml_bridge_pb2.BridgeError.FromString(details)
                        if not error.message or error.kind in (ml_bridge_pb2.ERROR_KIND_UNSPECIFIED, ml_bridge_pb2.ERROR_KIND_INTERNAL):
                            problems.append(f"{where}: {code.name} {ml_bridge_pb2.ErrorKind.Name(error.kind)} {error.message[:200]!r}")
                # The engine is still up and serving after every call.
                reply = stub.Ping(ml_bridge_pb2.PingRequest(message="still there?"), timeout=10)
                assert reply.message == "still there?", where
    assert running.process.poll() is None, "the engine exited"
    # A panic inside a request's task leaves the process up; it must not happen either.
    assert "panicked" not in log.read_text(), log.read_text()[-4000:]
    print(f"\n{sent} fuzzed requests to {len(SERVICE.methods)} RPCs (seed {SEED}); statuses: {sorted(codes.items())}")
    assert not problems, f"{len(problems)} of {sent} requests:\n" + "\n".join(problems[:40])
    # The requests reached the handlers: some were accepted and some refused by the engine.
    assert codes.get("OK", 0) > 0 and codes.get("INVALID_ARGUMENT", 0) > 0, codes
