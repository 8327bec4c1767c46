"""The engine conformance suite: every case of `tests/conformance/values.json` (a type,
constraints, a value, and what the engine answers) is sent to a real engine over the wire,
as raw protobuf requests, and the answer is asserted. The engine is the only judge of
types, constraints and names; the same file drives the Rust side of the suite. The
format is described in `tests/conformance/README.md`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlbridge.errors import BridgeError, ErrorKind, error_from_rpc
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from mlbridge_proto.ml_bridge_facts import Dtype, VariableType
from sdk_engine import RunningEngine, engine  # noqa: F401

CASES_FILE = Path(__file__).resolve().parents[1] / "conformance" / "values.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["cases"]


def value_from_json(data: Mapping[str, Any]) -> pb.Value:
    """A `Value` from the file's tagged form (one key naming the case)."""
    if len(data) != 1:
        raise ValueError(f"a value has exactly one key, got {sorted(data)}")
    ((case, item),) = data.items()
    if case == "null":
        return pb.Value(null_value=pb.NULL_VALUE)
    if case == "bool":
        return pb.Value(bool_value=item)
    if case == "int":
        return pb.Value(int_value=item)
    if case == "float":
        return pb.Value(float_value=float(item))  # "nan", "inf" and "-inf" are strings
    if case == "string":
        return pb.Value(string_value=item)
    if case == "bytes":
        return pb.Value(bytes_value=bytes.fromhex(item))
    if case == "choice":
        return pb.Value(choice_value=pb.Choice(value=item))
    if case == "module":
        return pb.Value(module_value=pb.ModuleRef(name=item))
    if case == "embedding":
        return pb.Value(embedding_value=pb.Embedding(values=item))
    if case == "tensor":
        tensor = pb.Tensor(dtype=Dtype(item["dtype"]).to_proto(), shape=item["shape"], data=bytes.fromhex(item["data"]))
        return pb.Value(tensor_value=tensor)
    if case == "list":
        return pb.Value(list_value=pb.ValueList(values=[value_from_json(v) for v in item]))
    if case == "map":
        return pb.Value(map_value=pb.ValueMap(entries={k: value_from_json(v) for k, v in item.items()}))
    raise ValueError(f"unknown value case {case!r}")


def constraints_from_json(data: Mapping[str, Any]) -> pb.Constraints:
    """`Constraints` from the file's form: proto field names, with `dtype` and
    `element_type` given by name."""
    fields = dict(data)
    if "dtype" in fields:
        fields["dtype"] = Dtype(fields["dtype"]).to_proto()
    if "element_type" in fields:
        fields["element_type"] = VariableType(fields["element_type"]).to_proto()
    return pb.Constraints(**fields)


@pytest.fixture(scope="module")
def stub(engine: RunningEngine) -> Iterator[pb_grpc.MLBridgeStub]:  # noqa: F811
    with grpc.insecure_channel(engine.address) as channel:
        yield pb_grpc.MLBridgeStub(channel)


def answer(call: Any) -> tuple[Any, BridgeError | None]:
    try:
        return call(), None
    except grpc.RpcError as error:
        return None, error_from_rpc(error)


def same_value(got: pb.Value, want: pb.Value) -> bool:
    if want.WhichOneof("kind") == "float_value" and math.isnan(want.float_value):
        return got.WhichOneof("kind") == "float_value" and math.isnan(got.float_value)
    return got == want


def test_the_cases_file_is_well_formed() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)), "case names are unique"
    for case in CASES:
        assert set(case) <= {"name", "variable", "type", "constraints", "initial", "value", "expect"}, case["name"]
        assert set(case["expect"]) in ({"ok"}, {"error", "message", "context"}), case["name"]
        VariableType(case["type"])
        constraints_from_json(case.get("constraints", {}))
        value_from_json(case["value"])


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_engine_answers(stub: pb_grpc.MLBridgeStub, case: dict[str, Any]) -> None:
    session_id = stub.InitializeSession(pb.InitializeSessionRequest(), timeout=10).session.session_id
    name = case.get("variable", "v")
    register = pb.RegisterVariableRequest(
        session_id=session_id,
        name=name,
        type=VariableType(case["type"]).to_proto(),
        constraints=constraints_from_json(case.get("constraints", {})),
    )
    value = value_from_json(case["value"])
    try:
        if "initial" in case:
            register.initial_value.CopyFrom(value_from_json(case["initial"]))
            stub.RegisterVariable(register, timeout=10)
            request = pb.SetVariableRequest(session_id=session_id, name=name, value=value)
            response, error = answer(lambda: stub.SetVariable(request, timeout=10))
        else:
            register.initial_value.CopyFrom(value)
            response, error = answer(lambda: stub.RegisterVariable(register, timeout=10))
        expect = case["expect"]
        if "ok" in expect:
            assert error is None, f"{case['name']}: the engine refused: {error!r}"
            assert same_value(response.variable.value, value_from_json(expect["ok"]))
            return
        assert error is not None, f"{case['name']}: the engine accepted it"
        assert error.grpc_code is not None, "the engine answered"
        assert error.kind is ErrorKind[expect["error"]]
        assert error.message == expect["message"]
        assert error.context == expect["context"]
        if "initial" in case:  # a refused write leaves the variable as it was
            current = stub.GetVariable(pb.GetVariableRequest(session_id=session_id, name=name), timeout=10)
            assert current.variable.version == 1
    finally:
        stub.CleanupSession(pb.CleanupSessionRequest(session_id=session_id), timeout=10)
