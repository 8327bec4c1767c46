# {{ self.0.header }}
"""Worker-side dispatch for the `{{ self.0.fw.id }}` framework adapter.

`ADAPTER` is what ``python -m mlbridge.worker`` serves: the operations and tools of the
manifest with their parameter specs, each calling ``{{ self.0.fw.implementation }}``.
The ``*Function`` protocols are the signatures that module's functions must have
(``mypy`` checks them below).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from mlbridge.dispatch import Adapter, Call, HostedTool, OperationSpec, ParameterSpec, ResultSpec
{%- if self.0.fw.uses_callbacks %}
from mlbridge.dispatch import RemoteCallback
{%- endif %}
from mlbridge.value_types import Constraints, Embedding, ModuleRef, VariableType

__all__ = ["ADAPTER"]

{% for op in self.0.fw.operations %}

class {{ op.class_name }}Function(Protocol):
    """``{{ self.0.fw.implementation }}.{{ op.function }}``: operation `{{ op.name }}`."""

    def __call__(
        self,
        call: Call,
{%- if op.params.len() > 0 %}
        *,
{%- endif %}
{%- for p in op.params %}
        {{ p.name }}: {{ p.decoded_type }},
{%- endfor %}
    ) -> Mapping[str, object]: ...


def _{{ op.name }}(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> Mapping[str, object]:
    function: {{ op.class_name }}Function = module.{{ op.function }}
    return function(
        call,
{%- for p in op.params %}
        {{ p.name }}=arguments["{{ p.name }}"],
{%- endfor %}
    )
{% endfor %}
{%- for tool in self.0.fw.tools %}

class {{ tool.class_name }}Tool(Protocol):
    """``{{ self.0.fw.implementation }}.{{ tool.function }}``: tool `{{ tool.name }}`."""

    def __call__(
        self,
        call: Call,
{%- if tool.params.len() > 0 %}
        *,
{%- endif %}
{%- for p in tool.params %}
        {{ p.name }}: {{ p.decoded_type }},
{%- endfor %}
    ) -> {{ tool.returns }}: ...


def _tool_{{ tool.name }}(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> object:
    function: {{ tool.class_name }}Tool = module.{{ tool.function }}
    return function(
        call,
{%- for p in tool.params %}
        {{ p.name }}=arguments["{{ p.name }}"],
{%- endfor %}
    )
{% endfor %}

ADAPTER = Adapter(
    framework="{{ self.0.fw.id }}",
    implementation="{{ self.0.fw.implementation }}",
{%- if !self.0.fw.package.is_empty() %}
    package="{{ self.0.fw.package }}",
{%- endif %}
    description={{ self.0.fw.description_lit }},
    operations=(
{%- for op in self.0.fw.operations %}
        OperationSpec(
            name="{{ op.name }}",
            kind="{{ op.kind }}",
            call=_{{ op.name }},
{%- if !op.target.is_empty() %}
            target="{{ op.target }}",
{%- endif %}
            description={{ op.description_lit }},
            parameters=(
{%- for p in op.params %}
                {{ p.spec }},
{%- endfor %}
            ),
            results=(
{%- for r in op.results %}
                {{ r.spec }},
{%- endfor %}
            ),
        ),
{%- endfor %}
    ),
    tools=(
{%- for tool in self.0.fw.tools %}
        HostedTool({{ tool.spec_args }}),
{%- endfor %}
    ),
)

if TYPE_CHECKING:
    import {{ self.0.fw.implementation }} as _implementation
{% for op in self.0.fw.operations %}
    _check_{{ op.name }}: {{ op.class_name }}Function = _implementation.{{ op.function }}
{%- endfor %}
{%- for tool in self.0.fw.tools %}
    _check_tool_{{ tool.name }}: {{ tool.class_name }}Tool = _implementation.{{ tool.function }}
{%- endfor %}
