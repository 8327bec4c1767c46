"""Client-side checks, ported from the engine so that a bad value is rejected before it is
sent, with the engine's exact error class, message and context.

The sources of truth are `runtime/src/value.rs` (types and constraints), `glob.rs`
(ListVariables patterns), `state/variables.rs` (variable names and payload size) and
`state/memory.rs` (session ids and TTLs). Keep them in step.

One deliberate gap: `Constraints.pattern` uses Rust `regex` syntax in the engine. Patterns
that Python's `re` cannot compile are left for the engine to judge, so the SDK never
rejects what the engine would accept.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import BridgeError, ErrorKind, error_for

__all__ = [
    "check_definition",
    "check_glob",
    "check_session_id",
    "check_ttl",
    "check_value_size",
    "check_variable_name",
    "kind_name",
    "number",
    "type_name",
    "validate",
]

_T = pb.VariableType
_D = pb.Dtype

_TYPE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        _T.VARIABLE_TYPE_UNSPECIFIED: "unspecified",
        _T.VARIABLE_TYPE_FLOAT: "float",
        _T.VARIABLE_TYPE_INTEGER: "integer",
        _T.VARIABLE_TYPE_STRING: "string",
        _T.VARIABLE_TYPE_BOOLEAN: "boolean",
        _T.VARIABLE_TYPE_CHOICE: "choice",
        _T.VARIABLE_TYPE_MODULE: "module",
        _T.VARIABLE_TYPE_EMBEDDING: "embedding",
        _T.VARIABLE_TYPE_TENSOR: "tensor",
        _T.VARIABLE_TYPE_LIST: "list",
        _T.VARIABLE_TYPE_MAP: "map",
        _T.VARIABLE_TYPE_BYTES: "bytes",
        _T.VARIABLE_TYPE_ANY: "any",
    }
)

_KIND_NAMES: Mapping[str | None, str] = MappingProxyType(
    {
        None: "nothing",
        "null_value": "null",
        "bool_value": "boolean",
        "int_value": "integer",
        "float_value": "float",
        "string_value": "string",
        "bytes_value": "bytes",
        "choice_value": "choice",
        "module_value": "module",
        "embedding_value": "embedding",
        "tensor_value": "tensor",
        "list_value": "list",
        "map_value": "map",
    }
)

# Which Value case each type accepts as is (ANY accepts every case).
_ACCEPTS: Mapping[int, str] = MappingProxyType(
    {
        _T.VARIABLE_TYPE_FLOAT: "float_value",
        _T.VARIABLE_TYPE_INTEGER: "int_value",
        _T.VARIABLE_TYPE_STRING: "string_value",
        _T.VARIABLE_TYPE_BOOLEAN: "bool_value",
        _T.VARIABLE_TYPE_CHOICE: "choice_value",
        _T.VARIABLE_TYPE_MODULE: "module_value",
        _T.VARIABLE_TYPE_EMBEDDING: "embedding_value",
        _T.VARIABLE_TYPE_TENSOR: "tensor_value",
        _T.VARIABLE_TYPE_LIST: "list_value",
        _T.VARIABLE_TYPE_MAP: "map_value",
        _T.VARIABLE_TYPE_BYTES: "bytes_value",
    }
)

_DTYPES: Mapping[int, tuple[str, int | None]] = MappingProxyType(
    {
        _D.DTYPE_UNSPECIFIED: ("unspecified", None),
        _D.DTYPE_FLOAT16: ("float16", 2),
        _D.DTYPE_FLOAT32: ("float32", 4),
        _D.DTYPE_FLOAT64: ("float64", 8),
        _D.DTYPE_INT8: ("int8", 1),
        _D.DTYPE_INT16: ("int16", 2),
        _D.DTYPE_INT32: ("int32", 4),
        _D.DTYPE_INT64: ("int64", 8),
        _D.DTYPE_UINT8: ("uint8", 1),
        _D.DTYPE_BOOL: ("bool", 1),
        _D.DTYPE_BFLOAT16: ("bfloat16", 2),
        _D.DTYPE_UINT16: ("uint16", 2),
        _D.DTYPE_UINT32: ("uint32", 4),
        _D.DTYPE_UINT64: ("uint64", 8),
        _D.DTYPE_COMPLEX64: ("complex64", 8),
        _D.DTYPE_COMPLEX128: ("complex128", 16),
    }
)

_U64_MAX = 2**64 - 1
MAX_NAME_BYTES = 255


def type_name(ty: int) -> str:
    """The name of a type as messages spell it (``float``, ``integer``, ...)."""
    return _TYPE_NAMES.get(ty, "any")


def kind_name(value: pb.Value) -> str:
    """The name of the case a value holds (``null``, ``integer``, ..., ``nothing`` when unset)."""
    return _KIND_NAMES[value.WhichOneof("kind")]


def dtype_name(dtype: int) -> str:
    """The dtype's name as numpy spells it."""
    return _DTYPES.get(dtype, _DTYPES[_D.DTYPE_UNSPECIFIED])[0]


def _dtype_known(dtype: int) -> bool:
    return dtype in _DTYPES


def number(value: float) -> str:
    """Formats a number as both languages print it: integral values without a fraction,
    others in the shortest round-trip form and never in exponent notation (Rust `{}`)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == math.floor(value) and abs(value) < 1e15:
        return str(int(value))
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def _rust_debug(text: str) -> str:
    """`format!("{text:?}")`: a Rust string literal with Rust's escapes."""
    out = ['"']
    for char in text:
        if char == "\0":
            out.append("\\0")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif char == "\n":
            out.append("\\n")
        elif char in "\\\"":
            out.append("\\" + char)
        elif _grapheme_extend(char) or not _printable(char):
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _grapheme_extend(char: str) -> bool:
    return unicodedata.category(char) in ("Mn", "Me") or char in "\u200c\uff9e\uff9f"


def _printable(char: str) -> bool:
    if char == " ":
        return True
    return unicodedata.category(char) not in ("Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn")


def _violation(name: str, constraint: str, limit: object, detail: str) -> BridgeError:
    return error_for(
        ErrorKind.CONSTRAINT_VIOLATION,
        f"variable `{name}`: {detail}",
        variable=name,
        constraint=constraint,
        limit=limit,
    )


def _mismatch(name: str, ty: int, value: pb.Value) -> BridgeError:
    return error_for(
        ErrorKind.TYPE_MISMATCH,
        f"variable `{name}` expects {type_name(ty)}, got {kind_name(value)}",
        variable=name,
        expected=type_name(ty),
        actual=kind_name(value),
    )


def _invalid_value(name: str, detail: str) -> BridgeError:
    return error_for(ErrorKind.INVALID_ARGUMENT, f"variable `{name}`: {detail}", variable=name, field="value")


def _join(items: Sequence[object]) -> str:
    return ", ".join(str(item) for item in items)


def _shape_text(shape: Sequence[int]) -> str:
    return f"[{_join(shape)}]"


def validate(name: str, ty: int, constraints: pb.Constraints, value: pb.Value) -> pb.Value:
    """Checks `value` against `ty` and `constraints` and returns it normalised (int widened
    to float for FLOAT, string to choice for CHOICE). `name` names the variable in errors."""
    value = _check_type(name, ty, constraints.nullable, value)
    _check_constraints(name, constraints, value)
    return _convert_elements(name, constraints, value)


def _convert_elements(name: str, c: pb.Constraints, value: pb.Value) -> pb.Value:
    """Applies the element type's conversions to every list element and map value, as the
    engine does; runs after the checks, so every element is acceptable."""
    element = _element_type(c)
    case = value.WhichOneof("kind")
    if element is None or case not in ("list_value", "map_value"):
        return value
    if case == "list_value":
        items = [_check_type(f"{name}[{i}]", element, False, item) for i, item in enumerate(value.list_value.values)]
        return pb.Value(list_value=pb.ValueList(values=items))
    entries = {
        key: _check_type(f"{name}[{_rust_debug(key)}]", element, False, item)
        for key, item in value.map_value.entries.items()
    }
    return pb.Value(map_value=pb.ValueMap(entries=entries))


def _check_type(name: str, ty: int, nullable: bool, value: pb.Value) -> pb.Value:
    case = value.WhichOneof("kind")
    if case is None:
        raise error_for(
            ErrorKind.INVALID_ARGUMENT,
            f"variable `{name}`: no value given (Value has no case set)",
            variable=name,
            field="value",
        )
    if ty == _T.VARIABLE_TYPE_ANY or (case == "null_value" and nullable):
        return value
    if ty == _T.VARIABLE_TYPE_FLOAT and case == "int_value":
        return pb.Value(float_value=float(value.int_value))
    if ty == _T.VARIABLE_TYPE_CHOICE and case == "string_value":
        return pb.Value(choice_value=pb.Choice(value=value.string_value))
    if _ACCEPTS.get(ty) == case:
        return value
    raise _mismatch(name, ty, value)


def _check_constraints(name: str, c: pb.Constraints, value: pb.Value) -> None:
    case = value.WhichOneof("kind")
    if case == "float_value":
        _check_range(name, c, value.float_value)
    elif case == "int_value":
        _check_range(name, c, float(value.int_value))
    elif case == "string_value":
        text = value.string_value
        if c.choices and text not in c.choices:
            raise _violation(name, "choices", _join(c.choices), f"`{text}` is not one of: {_join(c.choices)}")
        _check_length(name, c, len(text))
        if c.HasField("pattern"):
            regex = _compile_pattern(c.pattern)
            if regex is not None and regex.fullmatch(text) is None:
                raise _violation(
                    name, "pattern", c.pattern, f"`{text}` does not match the pattern `{c.pattern}`"
                )
    elif case == "bytes_value":
        _check_length(name, c, len(value.bytes_value))
    elif case == "choice_value":
        chosen = value.choice_value.value
        # A CHOICE variable always has choices; an ANY value may be any choice.
        if c.choices and chosen not in c.choices:
            raise _violation(name, "choices", _join(c.choices), f"`{chosen}` is not one of: {_join(c.choices)}")
    elif case == "module_value":
        module = value.module_value.name
        if c.allowed_modules and module not in c.allowed_modules:
            allowed = _join(c.allowed_modules)
            raise _violation(
                name,
                "allowed_modules",
                allowed,
                f"module `{module}` is not one of the allowed modules: {allowed}",
            )
    elif case == "embedding_value":
        length = len(value.embedding_value.values)
        if c.HasField("dimensions") and length != c.dimensions:
            raise _violation(
                name, "dimensions", c.dimensions, f"embedding has {length} dimensions, expected {c.dimensions}"
            )
    elif case == "tensor_value":
        _check_tensor(name, c, value.tensor_value)
    elif case == "list_value":
        items = value.list_value.values
        _check_length(name, c, len(items))
        _check_items(name, c, len(items))
        element = _element_type(c)
        if element is not None:
            for index, item in enumerate(items):
                _check_type(f"{name}[{index}]", element, False, item)
    elif case == "map_value":
        entries = value.map_value.entries
        _check_items(name, c, len(entries))
        element = _element_type(c)
        if element is not None:
            for key in sorted(entries):
                _check_type(f"{name}[{_rust_debug(key)}]", element, False, entries[key])


def _element_type(c: pb.Constraints) -> int | None:
    if not c.HasField("element_type"):
        return None
    element = c.element_type
    if element not in _TYPE_NAMES or element in (_T.VARIABLE_TYPE_UNSPECIFIED, _T.VARIABLE_TYPE_ANY):
        return None
    return element


def _check_range(name: str, c: pb.Constraints, v: float) -> None:
    if c.HasField("min"):
        low = c.min
        if math.isnan(v) or v < low or (c.min_exclusive and v == low):
            if c.min_exclusive:
                detail = f"{number(v)} is not above the exclusive minimum {number(low)}"
            else:
                detail = f"{number(v)} is below the minimum {number(low)}"
            raise _violation(name, "min", number(low), detail)
    if c.HasField("max"):
        high = c.max
        if math.isnan(v) or v > high or (c.max_exclusive and v == high):
            if c.max_exclusive:
                detail = f"{number(v)} is not below the exclusive maximum {number(high)}"
            else:
                detail = f"{number(v)} is above the maximum {number(high)}"
            raise _violation(name, "max", number(high), detail)


def _check_length(name: str, c: pb.Constraints, length: int) -> None:
    if c.HasField("min_length") and length < c.min_length:
        raise _violation(
            name, "min_length", c.min_length, f"length {length} is below the minimum length {c.min_length}"
        )
    if c.HasField("max_length") and length > c.max_length:
        raise _violation(
            name, "max_length", c.max_length, f"length {length} is above the maximum length {c.max_length}"
        )


def _check_items(name: str, c: pb.Constraints, count: int) -> None:
    if c.HasField("max_items") and count > c.max_items:
        raise _violation(name, "max_items", c.max_items, f"{count} items exceed the maximum of {c.max_items}")


def _check_tensor(name: str, c: pb.Constraints, tensor: pb.Tensor) -> None:
    dtype = tensor.dtype if _dtype_known(tensor.dtype) else _D.DTYPE_UNSPECIFIED
    size = _DTYPES[dtype][1]
    if size is None:
        raise _invalid_value(name, "tensor dtype is unspecified")
    expected: int | None = 1
    for dimension in tensor.shape:
        assert expected is not None
        expected *= dimension
        if expected > _U64_MAX:
            expected = None
            break
    if expected is not None:
        expected *= size
        if expected > _U64_MAX:
            expected = None
    if expected != len(tensor.data):
        raise _invalid_value(
            name,
            f"tensor data has {len(tensor.data)} bytes, expected "
            f"{'too many' if expected is None else expected} for shape {_shape_text(tensor.shape)} "
            f"of {dtype_name(dtype)}",
        )
    if c.HasField("dtype") and _dtype_known(c.dtype) and c.dtype != _D.DTYPE_UNSPECIFIED and c.dtype != dtype:
        required = dtype_name(c.dtype)
        raise _violation(
            name, "dtype", required, f"tensor dtype {dtype_name(dtype)} is not the required {required}"
        )
    if c.shape:
        fits = len(c.shape) == len(tensor.shape) and all(
            want == 0 or want == have for want, have in zip(c.shape, tensor.shape)
        )
        if not fits:
            raise _violation(
                name,
                "shape",
                _shape_text(c.shape),
                f"tensor shape {_shape_text(tensor.shape)} does not match the required shape "
                f"{_shape_text(c.shape)}",
            )


def _compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """The pattern anchored at both ends, or `None` when Python cannot compile it (the
    engine then judges it)."""
    try:
        return re.compile(f"(?:{pattern})")
    except (re.error, RecursionError, OverflowError):
        return None


def check_definition(name: str, ty: int, c: pb.Constraints) -> None:
    """Rejects constraints that contradict themselves or cannot apply to `ty`."""

    def bad(field: str, detail: str) -> BridgeError:
        return error_for(
            ErrorKind.INVALID_ARGUMENT,
            f"constraints of `{name}`: {detail}",
            field=f"constraints.{field}",
            variable=name,
        )

    if ty == _T.VARIABLE_TYPE_UNSPECIFIED:
        raise error_for(ErrorKind.INVALID_ARGUMENT, f"variable `{name}` has no type", field="type", variable=name)
    ty_name = type_name(ty)
    numeric = ty in (_T.VARIABLE_TYPE_FLOAT, _T.VARIABLE_TYPE_INTEGER, _T.VARIABLE_TYPE_ANY)
    has_min, has_max = c.HasField("min"), c.HasField("max")
    if (has_min or has_max) and not numeric:
        raise bad("min", f"min/max do not apply to {ty_name}")
    if c.min_exclusive and not has_min:
        raise bad("min_exclusive", "min_exclusive needs min")
    if c.max_exclusive and not has_max:
        raise bad("max_exclusive", "max_exclusive needs max")
    if has_min and has_max and (c.min > c.max or math.isnan(c.min) or math.isnan(c.max)):
        raise bad("min", f"min {number(c.min)} is greater than max {number(c.max)}")
    if ty == _T.VARIABLE_TYPE_CHOICE and not c.choices:
        raise bad("choices", "a choice variable needs a non-empty list of choices")
    if c.choices and ty not in (_T.VARIABLE_TYPE_CHOICE, _T.VARIABLE_TYPE_STRING):
        raise bad("choices", f"choices do not apply to {ty_name}")
    sized = ty in (_T.VARIABLE_TYPE_STRING, _T.VARIABLE_TYPE_BYTES, _T.VARIABLE_TYPE_LIST)
    has_min_length, has_max_length = c.HasField("min_length"), c.HasField("max_length")
    if (has_min_length or has_max_length) and not sized:
        raise bad("min_length", f"min_length/max_length do not apply to {ty_name}")
    if has_min_length and has_max_length and c.min_length > c.max_length:
        raise bad("min_length", f"min_length {c.min_length} is greater than max_length {c.max_length}")
    if c.HasField("pattern") and ty != _T.VARIABLE_TYPE_STRING:
        raise bad("pattern", f"pattern does not apply to {ty_name}")
    # An uncompilable pattern is left to the engine: only it knows Rust regex syntax.
    if c.HasField("dimensions") and ty != _T.VARIABLE_TYPE_EMBEDDING:
        raise bad("dimensions", f"dimensions do not apply to {ty_name}")
    if c.HasField("dimensions") and c.dimensions == 0:
        raise bad("dimensions", "dimensions must be at least 1")
    if (c.shape or c.HasField("dtype")) and ty != _T.VARIABLE_TYPE_TENSOR:
        raise bad("shape", f"shape/dtype do not apply to {ty_name}")
    if c.HasField("dtype") and not _dtype_known(c.dtype):
        raise bad("dtype", f"unknown dtype {c.dtype}")
    if c.allowed_modules and ty != _T.VARIABLE_TYPE_MODULE:
        raise bad("allowed_modules", f"allowed_modules do not apply to {ty_name}")
    container = ty in (_T.VARIABLE_TYPE_LIST, _T.VARIABLE_TYPE_MAP)
    if (c.HasField("element_type") or c.HasField("max_items")) and not container:
        raise bad("element_type", f"element_type/max_items do not apply to {ty_name}")
    if c.HasField("element_type") and c.element_type not in _TYPE_NAMES:
        raise bad("element_type", f"unknown element type {c.element_type}")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")


def check_variable_name(name: str) -> None:
    """Variable names as ml_bridge.proto defines them: `[A-Za-z_][A-Za-z0-9_.:/-]{0,254}`."""
    if _NAME.fullmatch(name) and len(name) <= MAX_NAME_BYTES:
        return
    if not name:
        problem = "a variable name cannot be empty"
    else:
        shown = name[:40] + ("..." if len(name) > 40 else "")
        problem = (
            f"invalid variable name {_rust_debug(shown)}: a name starts with a letter or `_` and continues "
            f"with letters, digits or `_.:/-`, at most {MAX_NAME_BYTES} characters"
        )
    raise error_for(ErrorKind.INVALID_ARGUMENT, problem, field="name")


def check_value_size(name: str, value: pb.Value, limit: int) -> None:
    """PAYLOAD_TOO_LARGE when the encoded value is over `limit` bytes."""
    size = value.ByteSize()
    if size > limit:
        raise error_for(
            ErrorKind.PAYLOAD_TOO_LARGE,
            f"value of variable `{name}` is {size} bytes, over the limit of {limit} bytes",
            variable=name,
            limit_bytes=limit,
        )


def check_session_id(session_id: str) -> None:
    """Session ids: 1 to 128 characters of letters, digits, '-', '_', '.' and ':'."""
    valid = (
        0 < len(session_id.encode("utf-8", "surrogatepass")) <= 128
        and all(char.isascii() and (char.isalnum() or char in "-_.:") for char in session_id)
    )
    if not valid:
        raise error_for(
            ErrorKind.INVALID_ARGUMENT,
            f"invalid session id {_rust_debug(session_id)}: use 1 to 128 letters, digits, '-', '_', '.' or ':'",
            field="session_id",
        )


def check_ttl(seconds: float) -> None:
    """Session TTLs must be greater than zero."""
    if seconds < 0:
        raise error_for(ErrorKind.INVALID_ARGUMENT, "`ttl` must not be negative", field="ttl")
    if seconds == 0:
        raise error_for(ErrorKind.INVALID_ARGUMENT, "session ttl must be greater than zero", field="ttl")


def check_glob(pattern: str) -> None:
    """Rejects malformed ListVariables/ListTools glob patterns (`*`, `?`, `[abc]`, `[a-z]`,
    `[!abc]`, and `\\` to escape)."""

    def bad(detail: str) -> BridgeError:
        return error_for(
            ErrorKind.INVALID_ARGUMENT, f"malformed pattern `{pattern}`: {detail}", field="pattern"
        )

    chars = list(pattern)
    position = 0

    def take() -> str | None:
        nonlocal position
        if position >= len(chars):
            return None
        position += 1
        return chars[position - 1]

    def peek() -> str | None:
        return chars[position] if position < len(chars) else None

    escape_error: Callable[[], BridgeError] = lambda: bad("ends with an escape")  # noqa: E731
    while (char := take()) is not None:
        if char == "\\":
            if take() is None:
                raise escape_error()
        elif char == "[":
            if peek() in ("!", "^"):
                take()
            closed = False
            first = True
            while (member := take()) is not None:
                if member == "]" and not first:
                    closed = True
                    break
                first = False
                start = member
                if member == "\\":
                    escaped = take()
                    if escaped is None:
                        raise escape_error()
                    start = escaped
                if peek() == "-":
                    take()
                    end = take()
                    if end == "]":
                        closed = True
                        break
                    if end is None:
                        raise bad("unclosed `[`")
                    if end < start:
                        raise bad(f"range `{start}-{end}` is reversed")
            if not closed:
                raise bad("unclosed `[`")
