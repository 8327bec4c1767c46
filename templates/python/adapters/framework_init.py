# {{ self.0.header }}
"""The `{{ self.0.fw.id }}` framework adapter: typed client proxies.

{{ self.0.fw.description }}

``{{ self.0.fw.class_name }}(ctx)`` / ``Async{{ self.0.fw.class_name }}(ctx)`` run the operations on the engine's
workers. The worker side is ``{{ self.0.package }}.{{ self.0.fw.id }}.dispatch``{% if self.0.fw.target_imports.len() > 0 %}; in-process
``VariableAware`` classes are in ``{{ self.0.package }}.{{ self.0.fw.id }}.variable_aware`` (they import the framework){% endif %}.
"""

from .proxy import (
    Async{{ self.0.fw.class_name }},
    {{ self.0.fw.class_name }},
{%- for op in self.0.fw.operations %}
    {{ op.class_name }}Result,
{%- endfor %}
)

__all__ = [
    "Async{{ self.0.fw.class_name }}",
    "{{ self.0.fw.class_name }}",
{%- for op in self.0.fw.operations %}
    "{{ op.class_name }}Result",
{%- endfor %}
]
