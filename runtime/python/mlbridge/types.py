"""Variable types, constraints, and the values that have no plain Python equivalent
(`Choice`, `ModuleRef`, `Embedding`, `Tensor`).

numpy is optional: it is imported only when a numpy array is converted.
"""

from __future__ import annotations

import enum
import importlib
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import ErrorKind, error_for

__all__ = ["Choice", "Constraints", "Dtype", "Embedding", "ModuleRef", "Tensor", "VariableType"]


def import_numpy() -> Any:
    """numpy, imported on first use (it is an optional dependency)."""
    try:
        return importlib.import_module("numpy")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("numpy is needed for this: pip install 'mlbridge[numpy]'") from error


def is_numpy_object(value: object) -> bool:
    """Whether `value` is a numpy array or scalar, without importing numpy."""
    return type(value).__module__.split(".", 1)[0] == "numpy"


class VariableType(str, enum.Enum):
    """The declared type of a variable, parameter or result.

    Members are strings, so ``"float"`` and ``VariableType.FLOAT`` are interchangeable
    wherever a type is accepted.
    """

    FLOAT = "float"
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MODULE = "module"
    EMBEDDING = "embedding"
    TENSOR = "tensor"
    LIST = "list"
    MAP = "map"
    BYTES = "bytes"
    ANY = "any"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: VariableType | str) -> VariableType:
        """The type named by `value` (a member or its name, e.g. ``"float"``)."""
        if isinstance(value, VariableType):
            return value
        try:
            return cls(value.lower())
        except ValueError:
            names = ", ".join(member.value for member in cls)
            raise error_for(
                ErrorKind.INVALID_ARGUMENT, f"unknown variable type {value!r} (known: {names})", field="type"
            ) from None

    def to_proto(self) -> pb.VariableType.ValueType:
        """The wire enum value."""
        return pb.VariableType.Value("VARIABLE_TYPE_" + self.name)

    @classmethod
    def from_proto(cls, value: int) -> VariableType | None:
        """The type for a wire value; `None` for UNSPECIFIED or unknown values."""
        name = pb.VariableType.Name(pb.VariableType.ValueType(value)) if value in pb.VariableType.values() else ""
        return cls.__members__.get(name.removeprefix("VARIABLE_TYPE_"))


class Dtype(str, enum.Enum):
    """Element type of a `Tensor`, named as numpy names it."""

    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    BOOL = "bool"
    BFLOAT16 = "bfloat16"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    COMPLEX64 = "complex64"
    COMPLEX128 = "complex128"

    def __str__(self) -> str:
        return self.value

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _DTYPE_SIZES[self]

    def to_proto(self) -> pb.Dtype.ValueType:
        """The wire enum value."""
        return pb.Dtype.Value("DTYPE_" + self.name)

    @classmethod
    def from_proto(cls, value: int) -> Dtype | None:
        """The dtype for a wire value; `None` for UNSPECIFIED or unknown values."""
        name = pb.Dtype.Name(pb.Dtype.ValueType(value)) if value in pb.Dtype.values() else ""
        return cls.__members__.get(name.removeprefix("DTYPE_"))

    @classmethod
    def parse(cls, value: Dtype | str) -> Dtype:
        """The dtype named by `value` (a member, its name, or a numpy dtype)."""
        if isinstance(value, Dtype):
            return value
        return cls(str(value))


_DTYPE_SIZES: Mapping[Dtype, int] = MappingProxyType(
    {
        Dtype.FLOAT16: 2,
        Dtype.FLOAT32: 4,
        Dtype.FLOAT64: 8,
        Dtype.INT8: 1,
        Dtype.INT16: 2,
        Dtype.INT32: 4,
        Dtype.INT64: 8,
        Dtype.UINT8: 1,
        Dtype.BOOL: 1,
        Dtype.BFLOAT16: 2,
        Dtype.UINT16: 2,
        Dtype.UINT32: 4,
        Dtype.UINT64: 8,
        Dtype.COMPLEX64: 8,
        Dtype.COMPLEX128: 16,
    }
)


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


@dataclass(frozen=True)
class Embedding:
    """A dense float32 vector, optionally naming the model that produced it.

    `values` is stored rounded to float32 (what the wire carries), so an embedding compares
    equal to itself after a round trip. A 1-D numpy array is accepted as `values`.
    """

    values: Sequence[float]
    model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _float32s(self.values))

    def __len__(self) -> int:
        return len(self.values)

    def to_numpy(self) -> Any:
        """The vector as a float32 numpy array."""
        np = import_numpy()
        return np.asarray(self.values, dtype=np.float32)


@dataclass(frozen=True)
class Tensor:
    """An N-dimensional array as raw bytes: `dtype`, `shape` (outermost first; empty means a
    scalar) and `data` (row-major, little-endian, densely packed).

    `Tensor.from_numpy(array)` and `tensor.to_numpy()` convert without touching elements
    one by one.
    """

    dtype: Dtype
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", Dtype.parse(self.dtype))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "data", bytes(self.data))

    @classmethod
    def from_numpy(cls, value: Any) -> Tensor:
        """The tensor for a numpy array (copied once, to little-endian C order)."""
        np = import_numpy()
        array_ = np.asarray(value)
        dtype = Dtype.parse(array_.dtype.name)
        little = np.ascontiguousarray(array_, dtype=array_.dtype.newbyteorder("<"))
        return cls(dtype, tuple(array_.shape), little.tobytes())

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
            object.__setattr__(self, "dtype", Dtype.parse(self.dtype))
        if self.element_type is not None:
            object.__setattr__(self, "element_type", VariableType.parse(self.element_type))

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
            message.dtype = Dtype.parse(self.dtype).to_proto()
        if self.element_type is not None:
            message.element_type = VariableType.parse(self.element_type).to_proto()
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
