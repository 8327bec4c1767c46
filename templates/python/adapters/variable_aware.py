# {{ self.0.header }}
"""In-process `VariableAware` classes for the `{{ self.0.fw.id }}` framework adapter.

Each class is the framework's own class whose bindable parameters follow session
variables: bind them with ``bindings={"parameter": "variable"}`` or
``bind_to_variable(...)``, and the current values are read (through the session's cache)
before each call. Importing this module imports the framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

{% for module in self.0.fw.target_imports -%}
import {{ module }}  # type: ignore[import-untyped,unused-ignore]
{% endfor %}
from mlbridge import SessionContext
from mlbridge.variable_aware import VariableAwareEstimator, VariableAwareMixin

__all__ = [
{%- for op in self.0.fw.operations %}{% match op.variable_aware %}{% when Some with (class) %}
    "{{ class }}",
{%- when None %}{% endmatch %}{% endfor %}
]
{% for op in self.0.fw.operations %}{% match op.variable_aware %}{% when Some with (class) %}
{%- if op.estimator %}

class {{ class }}(VariableAwareEstimator[Any]):
    """`{{ op.target }}` with hyper-parameters bound to session variables (`set_params`).

    ``{{ class }}(ctx, bindings={"{{ op.first_bindable }}": "variable"}, **params)`` builds
    ``{{ op.target }}(**params)``; bound values are applied before each fit (a fitted model keeps the values it was fitted with).
    Bindable: {{ op.bindable_names }}.
    """

    BINDABLE: ClassVar[Mapping[str, str]] = { {%- for b in op.bindable %}{{ b.0 }}: {{ b.1 }}{% if !loop.last %}, {% endif %}{% endfor -%} }

    def __init__(
        self, ctx: SessionContext | None = None, *, bindings: Mapping[str, str] | None = None, **params: Any
    ) -> None:
        super().__init__({{ op.target }}(**params), ctx, bindings=bindings)
{%- else %}

class {{ class }}(VariableAwareMixin, {{ op.target }}):  # type: ignore[misc,unused-ignore]
    """`{{ op.target }}` whose bindable parameters follow session variables.

    ``{{ class }}(..., ctx=ctx, bindings={"{{ op.first_bindable }}": "variable"})`` takes the
    framework class's own arguments plus ``ctx`` and ``bindings``; bound values are applied
    before each ``forward``. Bindable: {{ op.bindable_names }}.
    """

    BINDABLE: ClassVar[Mapping[str, str]] = { {%- for b in op.bindable %}{{ b.0 }}: {{ b.1 }}{% if !loop.last %}, {% endif %}{% endfor -%} }
    IMPLEMENTATION: ClassVar[str] = "{{ self.0.fw.implementation }}"
{%- endif %}
{% when None %}{% endmatch %}{% endfor %}
