"""Python values <-> `mlbridge.v1.Value`.

| Python                                  | Value case        |
| --------------------------------------- | ----------------- |
| None                                    | null_value        |
| bool                                    | bool_value        |
| int (64-bit)                            | int_value         |
| float                                   | float_value       |
| str                                     | string_value      |
| bytes, bytearray, memoryview            | bytes_value       |
| `Choice`                                | choice_value      |
| `ModuleRef`                             | module_value      |
| `Embedding`                             | embedding_value   |
| `Tensor`, numpy.ndarray                 | tensor_value      |
| list, tuple                             | list_value        |
| dict with str keys (any Mapping)        | map_value         |

numpy scalars convert like the Python scalars they hold. A declared type, when known,
guides conversion: with EMBEDDING a sequence of numbers or a 1-D numpy array becomes an
`Embedding`, with TENSOR a nested list of numbers becomes a `Tensor` (bool, int64 or
float64). Whether the value fits the type and constraints, and the conversions the
engine makes itself (int to float, str to choice), are for the engine. An object with no `Value`
raises `UnconvertibleValue` (an `InvalidArgument` and a `TypeError`).
Decoding returns the same Python types; a tensor comes back as a read-only numpy array
(a view over the received bytes) when `numpy=True`, else as a `Tensor`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import UnconvertibleValue, clip
from .value_types import Choice, Dtype, Embedding, ModuleRef, Tensor, VariableType, import_numpy, is_numpy_object

__all__ = ["from_value", "to_value"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def to_value(obj: object, hint: VariableType | None = None) -> pb.Value:
    """The `Value` for a Python object. `hint` is the declared type, if known; it only
    guides conversion (see the module docs)."""
    value = pb.Value()
    _fill(value, obj, hint, "value")
    return value


def _fill(target: pb.Value, obj: object, hint: VariableType | None, path: str) -> None:
    if isinstance(obj, pb.Value):
        target.CopyFrom(obj)
    elif obj is None:
        target.null_value = pb.NULL_VALUE
    elif isinstance(obj, bool):
        target.bool_value = obj
    elif isinstance(obj, Choice):
        target.choice_value.value = str(obj)
    elif isinstance(obj, str):
        target.string_value = obj
    elif isinstance(obj, int):
        if not _INT64_MIN <= obj <= _INT64_MAX:
            raise UnconvertibleValue(f"{path}: integer {obj} does not fit in 64 bits", context={"field": "value"})
        target.int_value = obj
    elif isinstance(obj, float):
        target.float_value = obj
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        target.bytes_value = bytes(obj)
    elif isinstance(obj, ModuleRef):
        module = target.module_value
        module.name = obj.name
        if obj.signature is not None:
            module.signature = obj.signature
        for key, item in obj.config.items():
            _fill(module.config[_key(key, path)], item, None, f"{path}.config[{key!r}]")
    elif isinstance(obj, Embedding):
        _fill_embedding(target, obj)
    elif isinstance(obj, Tensor):
        _fill_tensor(target, obj)
    elif is_numpy_object(obj):
        _fill_numpy(target, obj, hint, path)
    elif isinstance(obj, Mapping):
        entries = target.map_value.entries
        target.map_value.SetInParent()
        for key, item in obj.items():
            _fill(entries[_key(key, path)], item, None, f"{path}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        if hint is VariableType.EMBEDDING and _all_numbers(obj):
            _fill_embedding(target, Embedding(obj))
            return
        if hint is VariableType.TENSOR:
            _fill_tensor(target, _nested_tensor(obj, path))
            return
        values = target.list_value.values
        target.list_value.SetInParent()
        for index, item in enumerate(obj):
            _fill(values.add(), item, None, f"{path}[{index}]")
    else:
        raise UnconvertibleValue(
            f"{path}: cannot send a {type(obj).__qualname__} (supported: None, bool, int, float, str, "
            "bytes, list, dict, Choice, ModuleRef, Embedding, Tensor, numpy arrays)",
            context={"field": "value"},
        )


def _key(key: object, path: str) -> str:
    if not isinstance(key, str):
        raise UnconvertibleValue(
            f"{path}: map keys must be strings, got {type(key).__qualname__} {clip(repr(key))}", context={"field": "value"}
        )
    return key


def _all_numbers(items: list[Any] | tuple[Any, ...]) -> bool:
    return all(isinstance(item, numbers.Real) and not isinstance(item, bool) for item in items)


def _nested_tensor(obj: list[Any] | tuple[Any, ...], path: str) -> Tensor:
    try:
        return Tensor.from_list(obj)
    except ValueError as error:
        raise UnconvertibleValue(f"{path}: {error}", context={"field": "value"}) from None


def _fill_embedding(target: pb.Value, embedding: Embedding) -> None:
    target.embedding_value.SetInParent()
    target.embedding_value.values.extend(embedding.values)
    if embedding.model is not None:
        target.embedding_value.model = embedding.model


def _fill_tensor(target: pb.Value, tensor: Tensor) -> None:
    message = target.tensor_value
    message.dtype = tensor.dtype.to_proto()
    message.shape.extend(tensor.shape)
    message.data = tensor.data


def _fill_numpy(target: pb.Value, obj: object, hint: VariableType | None, path: str) -> None:
    np = import_numpy()
    if isinstance(obj, np.ndarray):
        if hint is VariableType.EMBEDDING and obj.ndim == 1 and obj.dtype.kind in "fiu":
            _fill_embedding(target, Embedding(obj))
        else:
            try:
                tensor = Tensor.from_numpy(obj)
            except ValueError:
                raise UnconvertibleValue(
                    f"{path}: numpy dtype {obj.dtype} has no tensor dtype", context={"field": "value"}
                ) from None
            _fill_tensor(target, tensor)
    elif isinstance(obj, np.generic):
        _fill(target, obj.item(), hint, path)
    else:
        raise UnconvertibleValue(f"{path}: cannot send a {type(obj).__qualname__}", context={"field": "value"})


def from_value(value: pb.Value, *, numpy: bool = False) -> Any:
    """The Python object for a `Value` (None for a Value with no case set)."""
    case = value.WhichOneof("kind")
    if case is None or case == "null_value":
        return None
    if case == "bool_value":
        return value.bool_value
    if case == "int_value":
        return value.int_value
    if case == "float_value":
        return value.float_value
    if case == "string_value":
        return value.string_value
    if case == "bytes_value":
        return value.bytes_value
    if case == "choice_value":
        return Choice(value.choice_value.value)
    if case == "module_value":
        module = value.module_value
        return ModuleRef(
            name=module.name,
            signature=module.signature if module.HasField("signature") else None,
            config={key: from_value(item, numpy=numpy) for key, item in module.config.items()},
        )
    if case == "embedding_value":
        embedding = value.embedding_value
        return Embedding(list(embedding.values), embedding.model if embedding.HasField("model") else None)
    if case == "tensor_value":
        return _tensor(value.tensor_value, numpy)
    if case == "list_value":
        return [from_value(item, numpy=numpy) for item in value.list_value.values]
    if case == "map_value":
        return {key: from_value(item, numpy=numpy) for key, item in value.map_value.entries.items()}
    raise AssertionError(f"unhandled Value case {case}")  # pragma: no cover


def _tensor(message: pb.Tensor, numpy: bool) -> Any:
    dtype = Dtype.from_proto(message.dtype)
    if dtype is None:
        raise UnconvertibleValue(f"received a tensor with unknown dtype {message.dtype}", context={"field": "value"})
    tensor = Tensor(dtype, tuple(message.shape), message.data)
    if numpy and dtype is not Dtype.BFLOAT16:
        return tensor.to_numpy()
    return tensor
