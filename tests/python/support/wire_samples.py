"""Builds the same messages from the same values and prints their wire bytes as hex.

Usage: wire_samples.py CASE [--reparse NAME HEX]
Run once against each generator's output (PYTHONPATH selects which).
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any, Callable


def ml_bridge() -> dict[str, Any]:
    from ml_bridge_pb2 import (  # type: ignore[import-not-found]
        BridgeError,
        Constraints,
        Embedding,
        Tensor,
        Value,
        ValueList,
        ValueMap,
        Variable,
    )

    tensor = Tensor(shape=[2, 2], data=struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
    nested = Value(
        list_value=ValueList(
            values=[
                Value(int_value=-7),
                Value(string_value="héllo"),
                Value(map_value=ValueMap(entries={"a": Value(bool_value=True), "b": Value(float_value=0.25)})),
            ]
        )
    )
    variable = Variable(
        name="temperature",
        value=Value(float_value=0.7),
        constraints=Constraints(min=0.0, max=2.0, choices=["x", "y"]),
        version=3,
        metadata={"owner": "tests", "unit": "none"},
    )
    variable.created_at.FromSeconds(1_700_000_000)
    return {
        "Value.tensor": Value(tensor_value=tensor),
        "Value.nested": nested,
        "Value.embedding": Value(embedding_value=Embedding(values=[0.5, -1.5, 3.25])),
        "Variable": variable,
        "BridgeError": BridgeError(message="boom", context={"variable": "temperature"}, remote_traceback="tb"),
    }


def kitchen() -> dict[str, Any]:
    from fixtures.common.v1 import common_pb2  # type: ignore[import-not-found]
    from fixtures.kitchen.v1 import kitchen_pb2  # type: ignore[import-not-found]

    scalars = kitchen_pb2.Scalars(
        f_double=1.5, f_float=-2.25, f_int32=-3, f_int64=-(2**40), f_uint32=4, f_uint64=2**63,
        f_sint32=-5, f_sint64=-(2**50), f_fixed32=6, f_fixed64=7, f_sfixed32=-8, f_sfixed64=-9,
        f_bool=True, f_string="ünïcode", f_bytes=b"\x00\xff", r_double=[1.0, 2.0], r_int64=[1, -1],
        r_string=["a", "b"], r_bytes=[b"x"], r_bool=[True, False], o_int32=0, o_string="",
        o_status=kitchen_pb2.STATUS_ACTIVE,
    )
    shelf = kitchen_pb2.Kitchen.Shelf(
        items=[kitchen_pb2.Kitchen.Shelf.Item(label="top", children=[kitchen_pb2.Kitchen.Shelf.Item(label="c")])],
        mode=kitchen_pb2.Kitchen.MODE_SLOW,
    )
    full = kitchen_pb2.Kitchen(
        id="k1", mode=kitchen_pb2.Kitchen.MODE_FAST, shelf=shelf, shelves=[shelf, shelf],
        status=kitchen_pb2.STATUS_DONE, page=common_pb2.PageRequest(page_size=10, page_token="t"),
        color=common_pb2.COLOR_GREEN, shelf_payload=shelf, real=2.5,
        labels={"b": "2", "a": "1"}, shelves_by_id={3: shelf}, statuses={"x": kitchen_pb2.STATUS_ACTIVE},
        blobs={9: b"blob"}, colors={True: common_pb2.COLOR_RED}, legacy=4,
    )
    full.created_at.FromSeconds(1_600_000_000)
    full.ttl.FromMilliseconds(1500)
    full.extra.Pack(common_pb2.PageRequest(page_size=1))
    full.attributes.update({"k": [1, "two", None, True]})
    full.dynamic.string_value = "dyn"
    full.nickname.value = "nick"
    full.counter.value = 42
    full.mask.paths.extend(["a.b", "c"])
    return {
        "Scalars": scalars,
        "Kitchen.full": full,
        "Kitchen.text": kitchen_pb2.Kitchen(text="only text", number=5),
        "Kitchen.empty": kitchen_pb2.Kitchen(),
    }


CASES: dict[str, Callable[[], dict[str, Any]]] = {"ml_bridge": ml_bridge, "kitchen": kitchen}


def main() -> None:
    samples = CASES[sys.argv[1]]()
    if sys.argv[2:3] == ["--reparse"]:
        name, encoded = sys.argv[3], sys.argv[4]
        message = type(samples[name]).FromString(bytes.fromhex(encoded))
        assert message == samples[name], f"{name} parsed to a different message"
        print(json.dumps({name: message.SerializeToString(deterministic=True).hex()}))
        return
    print(json.dumps({name: m.SerializeToString(deterministic=True).hex() for name, m in samples.items()}))


if __name__ == "__main__":
    main()
