"""Constraints, and the values that have no plain Python equivalent (`Choice`, `ModuleRef`,
`Embedding`, `Tensor`). `VariableType` and `Dtype` (names, wire numbers, item sizes) are
generated from `ml_bridge.proto` into `mlbridge_proto.ml_bridge_facts` and re-exported.

numpy is optional: it is imported only when a numpy array is converted.
"""

from __future__ import annotations

import importlib
import numbers
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, overload

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto.ml_bridge_facts import Dtype, VariableType

from .errors import ErrorKind, clip, error_for

__all__ = [
    "Choice",
    "Constraints",
    "Dtype",
    "Embedding",
    "ModuleRef",
    "Tensor",
    "VariableType",
    "constraints_from",
    "parse_dtype",
    "parse_variable_type",
]


def import_numpy() -> Any:
    """numpy, imported on first use (it is an optional dependency)."""
    try:
        return importlib.import_module("numpy")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("numpy is needed for this: pip install 'mlbridge[numpy]'") from error


def is_numpy_object(value: object) -> bool:
    """Whether `value` is a numpy array or scalar, without importing numpy."""
    return type(value).__module__.split(".", 1)[0] == "numpy"


def parse_variable_type(value: VariableType | str) -> VariableType:
    """The type named by `value` (a member or its name, e.g. ``"float"``, in any case)."""
    if isinstance(value, VariableType):
        return value
    try:
        return VariableType(value.lower())
    except ValueError:
        names = ", ".join(member.value for member in VariableType)
        raise error_for(
            ErrorKind.INVALID_ARGUMENT, f"unknown variable type {clip(repr(value))} (known: {names})", field="type"
        ) from None


def parse_dtype(value: Dtype | str) -> Dtype:
    """The dtype named by `value` (a member, its name, or a numpy dtype)."""
    if isinstance(value, Dtype):
        return value
    return Dtype(str(value))


class Choice(str):
    """The selected option of a CHOICE variable. A `str`, so it compares equal to its text;
    values of CHOICE variables are returned as `Choice`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Choice({str.__repr__(self)})"


@dataclass(frozen=True)
class ModuleRef:
    """A reference to a framework module or class, e.g. ``ModuleRef("dspy.ChainOfThought")``.

    It names code that a worker imports; it never carries code.
    """

    name: str
    signature: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


def _float32s(values: Iterable[float] | Any) -> tuple[float, ...]:
    if is_numpy_object(values):
        np = import_numpy()
        packed = array("f")
        packed.frombytes(np.ascontiguousarray(values, dtype="<f4").tobytes())
        if sys.byteorder == "big":  # pragma: no cover - little-endian hosts only in CI
            packed.byteswap()
        return tuple(packed)
    return tuple(array("f", values))


@dataclass(frozen=True, eq=False)
class Embedding(Sequence[float]):
    """A dense float32 vector, optionally naming the model that produced it.

    `values` is stored rounded to float32 (what the wire carries), so an embedding compares
    equal to itself after a round trip. A 1-D numpy array is accepted as `values`. An
    embedding is a sequence of floats: it iterates, indexes, slices (to a list) and has a
    length, and it equals a list or tuple of the same numbers (the model aside).
    """

    values: Sequence[float]
    model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _float32s(self.values))

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return list(self.values[index])
        return self.values[index]

    def __iter__(self) -> Iterator[float]:
        return iter(self.values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Embedding):
            return self.values == other.values and self.model == other.model
        if isinstance(other, (list, tuple)):
            return list(self.values) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.values, self.model))

    def to_numpy(self) -> Any:
        """The vector as a float32 numpy array."""
        np = import_numpy()
        return np.asarray(self.values, dtype=np.float32)


@dataclass(frozen=True)
class Tensor:
    """An N-dimensional array as raw bytes: `dtype`, `shape` (outermost first; empty means a
    scalar) and `data` (row-major, little-endian, densely packed).

    `Tensor.from_numpy(array)` and `tensor.to_numpy()` convert without touching elements
    one by one; `Tensor.from_list(nested)` packs a nested list of numbers.
    """

    dtype: Dtype
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "data", bytes(self.data))

    @classmethod
    def from_numpy(cls, value: Any) -> Tensor:
        """The tensor for a numpy array (copied once, to little-endian C order)."""
        np = import_numpy()
        array_ = np.asarray(value)
        dtype = parse_dtype(array_.dtype.name)
        little = np.ascontiguousarray(array_, dtype=array_.dtype.newbyteorder("<"))
        return cls(dtype, tuple(array_.shape), little.tobytes())

    @classmethod
    def from_list(cls, nested: Sequence[Any]) -> Tensor:
        """The tensor for a nested list of numbers (rectangular; no numpy needed): bool if
        every element is a bool, int64 if every element is an int, else float64. Raises
        `ValueError` for ragged or non-numeric input."""
        shape: list[int] = []
        level: Any = nested
        while isinstance(level, (list, tuple)):
            shape.append(len(level))
            if not level:
                break
            level = level[0]
        flat: list[Any] = []

        def walk(item: Any, depth: int) -> None:
            if depth == len(shape):
                if isinstance(item, (list, tuple)) or not isinstance(item, numbers.Real):
                    raise ValueError(f"a tensor holds numbers, got {type(item).__qualname__}")
                flat.append(item)
                return
            if not isinstance(item, (list, tuple)) or len(item) != shape[depth]:
                raise ValueError(f"a tensor is rectangular: expected {shape[depth]} elements at depth {depth}")
            for element in item:
                walk(element, depth + 1)

        walk(nested, 0)
        if flat and all(isinstance(x, bool) for x in flat):
            return cls(Dtype.BOOL, tuple(shape), bytes(int(x) for x in flat))
        if all(isinstance(x, numbers.Integral) for x in flat):
            return cls(Dtype.INT64, tuple(shape), struct.pack(f"<{len(flat)}q", *(int(x) for x in flat)))
        return cls(Dtype.FLOAT64, tuple(shape), struct.pack(f"<{len(flat)}d", *(float(x) for x in flat)))

    def to_numpy(self) -> Any:
        """The tensor as a read-only numpy array over `data` (no copy). bfloat16 has no
        numpy dtype and raises `TypeError`."""
        np = import_numpy()
        if self.dtype is Dtype.BFLOAT16:
            raise TypeError("numpy has no bfloat16 dtype; use Tensor.data")
        dtype = np.dtype(self.dtype.value).newbyteorder("<")
        return np.frombuffer(self.data, dtype=dtype).reshape(self.shape)


@dataclass(frozen=True)
class Constraints:
    """Validation rules for a value, mirroring `mlbridge.v1.Constraints`. `None`/empty means
    "no rule". Rules that cannot apply to the declared type are rejected at registration.

    Attributes:
        min, max: inclusive bounds for FLOAT and INTEGER (exclusive with `min_exclusive` /
            `max_exclusive`).
        choices: allowed options (required for CHOICE; optional for STRING).
        min_length, max_length: length bounds (characters for STRING, bytes for BYTES,
            elements for LIST).
        pattern: a regular expression a STRING must match in full.
        dimensions: exact length of an EMBEDDING.
        shape: required TENSOR shape (0 = any size in that dimension).
        dtype: required TENSOR element type.
        allowed_modules: allowed `ModuleRef.name` values for MODULE.
        element_type: required type of every LIST element / MAP value.
        max_items: maximum number of LIST elements / MAP entries.
        nullable: accept None in addition to the declared type.
    """

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: Sequence[str] = ()
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    dimensions: int | None = None
    shape: Sequence[int] = ()
    dtype: Dtype | str | None = None
    allowed_modules: Sequence[str] = ()
    element_type: VariableType | str | None = None
    max_items: int | None = None
    nullable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "allowed_modules", tuple(self.allowed_modules))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        if self.element_type is not None:
            object.__setattr__(self, "element_type", parse_variable_type(self.element_type))

    def to_proto(self) -> pb.Constraints:
        """The wire message."""
        message = pb.Constraints(
            min_exclusive=self.min_exclusive,
            max_exclusive=self.max_exclusive,
            choices=list(self.choices),
            shape=list(self.shape),
            allowed_modules=list(self.allowed_modules),
            nullable=self.nullable,
        )
        if self.min is not None:
            message.min = float(self.min)
        if self.max is not None:
            message.max = float(self.max)
        if self.min_length is not None:
            message.min_length = self.min_length
        if self.max_length is not None:
            message.max_length = self.max_length
        if self.pattern is not None:
            message.pattern = self.pattern
        if self.dimensions is not None:
            message.dimensions = self.dimensions
        if self.dtype is not None:
            message.dtype = parse_dtype(self.dtype).to_proto()
        if self.element_type is not None:
            message.element_type = parse_variable_type(self.element_type).to_proto()
        if self.max_items is not None:
            message.max_items = self.max_items
        return message

    @classmethod
    def from_proto(cls, message: pb.Constraints) -> Constraints:
        """The constraints carried by a wire message."""
        return cls(
            min=message.min if message.HasField("min") else None,
            max=message.max if message.HasField("max") else None,
            min_exclusive=message.min_exclusive,
            max_exclusive=message.max_exclusive,
            choices=tuple(message.choices),
            min_length=message.min_length if message.HasField("min_length") else None,
            max_length=message.max_length if message.HasField("max_length") else None,
            pattern=message.pattern if message.HasField("pattern") else None,
            dimensions=message.dimensions if message.HasField("dimensions") else None,
            shape=tuple(message.shape),
            dtype=Dtype.from_proto(message.dtype) if message.HasField("dtype") else None,
            allowed_modules=tuple(message.allowed_modules),
            element_type=(
                VariableType.from_proto(message.element_type) or VariableType.ANY
                if message.HasField("element_type")
                else None
            ),
            max_items=message.max_items if message.HasField("max_items") else None,
            nullable=message.nullable,
        )


_CONSTRAINT_FIELDS = tuple(f.name for f in fields(Constraints))


def constraints_from(
    constraints: Constraints | Mapping[str, Any] | None, rules: Mapping[str, Any] | None = None
) -> Constraints | None:
    """The `Constraints` for `register_variable(..., constraints=..., **rules)`: a
    `Constraints`, a plain dict of its fields (``{"min": 0.0, "max": 2.0}``) or `None`,
    with keyword `rules` added (they win over the same field in `constraints`). An
    unknown field raises `TypeError` naming the known ones."""
    if constraints is None and not rules:
        return None
    if constraints is None:
        given: dict[str, Any] = {}
    elif isinstance(constraints, Constraints):
        if not rules:
            return constraints
        given = {name: getattr(constraints, name) for name in _CONSTRAINT_FIELDS}
    elif isinstance(constraints, Mapping):
        given = dict(constraints)
    else:
        raise TypeError(
            f"constraints must be a Constraints, a dict or None, not {type(constraints).__qualname__}"
        )
    given.update(rules or {})
    unknown = sorted(set(given) - set(_CONSTRAINT_FIELDS))
    if unknown:
        raise TypeError(
            f"unknown constraint {', '.join(map(repr, unknown))} (known: {', '.join(_CONSTRAINT_FIELDS)})"
        )
    return Constraints(**given)
