# {{ self.0.header }}
"""Typed client proxies for the `{{ self.0.fw.id }}` framework adapter.

{{ self.0.fw.description }}

Each method runs one operation on the engine's worker pool, in the context's session.
Bindable parameters take a literal or ``mlbridge.bind("variable")``: the engine then reads
the variable when it dispatches the call. An optional parameter left as None is omitted
and gets the manifest's default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mlbridge import AsyncSessionContext, Binding, Embedding, ModuleRef, OperationResult, SessionContext

__all__ = [
    "Async{{ self.0.fw.class_name }}",
    "{{ self.0.fw.class_name }}",
{%- for op in self.0.fw.operations %}
    "{{ op.class_name }}Result",
{%- endfor %}
]

FRAMEWORK: Final = "{{ self.0.fw.id }}"


def _present(**parameters: object) -> dict[str, object]:
    return {name: value for name, value in parameters.items() if value is not None}
{% for op in self.0.fw.operations %}

@dataclass(frozen=True)
class {{ op.class_name }}Result:
    """The results of `{{ self.0.fw.id }}.{{ op.name }}`."""
{% for r in op.results %}
    {{ r.name }}: {{ r.python_type }}
    """{{ r.doc }}"""
{%- endfor %}
    operation: OperationResult
    """The engine's whole answer: resolved parameters, bindings, worker and timings."""

    @classmethod
    def _from(cls, operation: OperationResult) -> {{ op.class_name }}Result:
        return cls(
{%- for r in op.results %}
            {{ r.name }}=operation.results["{{ r.name }}"],
{%- endfor %}
            operation=operation,
        )
{% endfor %}
{%- for mode in self.0.fw.modes %}

class {{ mode }}{{ self.0.fw.class_name }}:
    """Typed proxies for the `{{ self.0.fw.id }}` operations{% if *mode == "Async" %} (asyncio){% endif %}.

    ``{{ mode }}{{ self.0.fw.class_name }}(ctx)`` wraps an open `{{ mode }}SessionContext`.
    """

    FRAMEWORK: Final = FRAMEWORK

    def __init__(self, ctx: {{ mode }}SessionContext) -> None:
        self._ctx = ctx
{% for op in self.0.fw.operations %}
    {% if *mode == "Async" %}async {% endif %}def {{ op.name }}(
        self,
{%- for p in op.required %}
        {{ p.name }}: {{ p.argument_type }},
{%- endfor %}
        *,
{%- for p in op.optional %}
        {{ p.name }}: {{ p.argument_type }} | None = None,
{%- endfor %}
        metadata: Mapping[str, str] | None = None,
    ) -> {{ op.class_name }}Result:
        """{{ op.description }}
{%- if op.params.len() > 0 %}

        Args:
{%- for p in op.params %}
            {{ p.name }}: {{ p.doc }}
{%- endfor %}
{%- endif %}
        """
        operation = {% if *mode == "Async" %}await {% endif %}self._ctx.execute_operation(
            FRAMEWORK,
            "{{ op.name }}",
            _present(
{%- for p in op.params %}
                {{ p.name }}={{ p.name }},
{%- endfor %}
            ),
            metadata=metadata,
        )
        return {{ op.class_name }}Result._from(operation)
{% endfor %}
{%- endfor %}
