# {{ header }}
# source: {{ source }}
"""Facts that `{{ source }}` declares once, as `mlbridge.options` enum value options:
{{ summary }}."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final
{% if !errors.is_empty() %}
import grpc
{% endif %}
{{ pb2_import }}

__all__ = [
{%- for name in exports %}
    "{{ name }}",
{%- endfor %}
]
{%- for e in errors %}


class {{ e.name }}(enum.IntEnum):
    {{ e.doc }}
{% for v in e.values %}
    {{ v.member }} = {{ v.number }}
{%- endfor %}

    @classmethod
    def from_proto(cls, value: int) -> {{ e.name }}:
        """The member for a wire value; a value this code does not know is `{{ e.unset }}`."""
        try:
            return cls(value)
        except ValueError:
            return cls.{{ e.unset }}

    def to_proto(self) -> _pb2.{{ e.name }}.ValueType:
        """The wire enum value."""
        return _pb2.{{ e.name }}.ValueType(self.value)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        """The gRPC status code that carries this kind."""
        return {{ e.shouty }}_GRPC_CODES[self]

    @property
    def retryable(self) -> bool:
        """Whether a call that failed with this kind may be retried as it is."""
        return self in _{{ e.shouty }}_RETRYABLE

    @property
    def exception(self) -> type[{{ e.base }}]:
        """The exception class raised for this kind."""
        return {{ e.shouty }}_CLASSES[self]


class {{ e.base }}(Exception):
    """A failure of one `{{ e.name }}`; each kind has its own subclass.

    Attributes:
        kind: the `{{ e.name }}`.
        message: the human-readable description (also `str(error)`).
        context: machine-readable details naming what is at fault.
        remote_type: for failures raised by foreign code, the exception type name.
        remote_traceback: for failures raised by foreign code, the formatted traceback.
        origin: where the error was raised (empty when unknown).
        cause: the wrapped error, if this one wraps another.
        grpc_code: the gRPC status code the error arrived with (`None` when it was raised
            locally).
    """

    default_kind: ClassVar[{{ e.name }}] = {{ e.name }}.{{ e.unset }}

    def __init__(
        self,
        message: str,
        *,
        context: Mapping[str, str] | None = None,
        remote_type: str = "",
        remote_traceback: str = "",
        origin: str = "",
        cause: {{ e.base }} | None = None,
        grpc_code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: {{ e.name }} = self.default_kind
        self.message = message
        self.context: dict[str, str] = dict(context or {})
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.origin = origin
        self.cause = cause
        self.grpc_code = grpc_code
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, context={self.context!r})"
{%- for v in e.values %}


class {{ v.exception }}({{ e.base }}):
    {{ v.doc }}

    default_kind = {{ e.name }}.{{ v.member }}
{%- endfor %}


{{ e.shouty }}_CLASSES: Final[Mapping[{{ e.name }}, type[{{ e.base }}]]] = MappingProxyType(
    {
{%- for v in e.values %}
        {{ e.name }}.{{ v.member }}: {{ v.exception }},
{%- endfor %}
    }
)
"""The exception class for each `{{ e.name }}`."""

{{ e.shouty }}_GRPC_CODES: Final[Mapping[{{ e.name }}, grpc.StatusCode]] = MappingProxyType(
    {
{%- for v in e.values %}
        {{ e.name }}.{{ v.member }}: grpc.StatusCode.{{ v.grpc_code }},
{%- endfor %}
    }
)
"""The gRPC status code that carries each `{{ e.name }}`."""

_{{ e.shouty }}_RETRYABLE: Final[frozenset[{{ e.name }}]] = frozenset(
    {
{%- for v in e.values %}{% if v.retryable %}
        {{ e.name }}.{{ v.member }},
{%- endif %}{% endfor %}
    }
)
{%- endfor %}
{%- for n in named %}


class {{ n.name }}(str, enum.Enum):
    """{{ n.doc|indent(4) }}

    Members are their short names, so ``"{{ n.example }}"`` and ``{{ n.name }}.{{ n.example_member }}``
    are interchangeable wherever one is accepted.
    """
{% for v in n.values %}
    {{ v.member }} = "{{ v.short_name }}"
{%- endfor %}

    def __str__(self) -> str:
        return self.value

    def to_proto(self) -> _pb2.{{ n.name }}.ValueType:
        """The wire enum value."""
        return _pb2.{{ n.name }}.ValueType(_{{ n.shouty }}_NUMBERS[self])

    @classmethod
    def from_proto(cls, value: int) -> {{ n.name }} | None:
        """The member for a wire value; `None` for the unset value and unknown values."""
        return _{{ n.shouty }}_BY_NUMBER.get(value)
{%- if n.sized %}

    @property
    def item_size(self) -> int:
        """Bytes per element."""
        return {{ n.shouty }}_ITEM_SIZES[self]
{%- endif %}


_{{ n.shouty }}_NUMBERS: Final[Mapping[{{ n.name }}, int]] = MappingProxyType(
    {
{%- for v in n.values %}
        {{ n.name }}.{{ v.member }}: {{ v.number }},
{%- endfor %}
    }
)
_{{ n.shouty }}_BY_NUMBER: Final[Mapping[int, {{ n.name }}]] = MappingProxyType(
    {number: member for member, number in _{{ n.shouty }}_NUMBERS.items()}
)
{%- if n.sized %}

{{ n.shouty }}_ITEM_SIZES: Final[Mapping[{{ n.name }}, int]] = MappingProxyType(
    {
{%- for v in n.values %}
        {{ n.name }}.{{ v.member }}: {{ v.item_size }},
{%- endfor %}
    }
)
"""Bytes per element of each `{{ n.name }}`."""
{%- endif %}
{%- endfor %}
