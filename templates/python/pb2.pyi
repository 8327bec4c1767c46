# {{ header }}
# source: {{ source }}
{% if let Some(doc) = doc -%}
{{ doc }}
{% endif -%}
{% for group in imports %}
{% for line in group -%}
{{ line }}
{% endfor -%}
{% endfor -%}
{% if !reexports.is_empty() %}
{% for line in reexports -%}
{{ line }}
{% endfor -%}
{% endif %}
DESCRIPTOR: _descriptor.FileDescriptor
{% for block in blocks -%}
{% match block -%}
{% when Block::Enum with (e) %}
{{ e.indent }}class {{ e.holder }}:
{{ e.indent }}    ValueType = _typing.NewType("ValueType", _builtins.int)
{{ e.indent }}    V: _typing_extensions.TypeAlias = ValueType

{{ e.indent }}class {{ e.holder }}EnumTypeWrapper(_enum_type_wrapper._EnumTypeWrapper[{{ e.helper_value_type }}], _builtins.type):
{{ e.indent }}    DESCRIPTOR: _descriptor.EnumDescriptor
{% for v in e.wrapper_values -%}
{% if let Some(deprecated) = v.deprecated -%}
{{ e.indent }}    @_builtins.property
{{ e.indent }}    @_typing_extensions.deprecated({{ deprecated }})
{{ e.indent }}    def {{ v.name }}(self) -> {{ e.helper_value_type }}:{% if let Some(doc) = v.doc %}  # {{ v.number }}
{{ e.indent }}        {{ doc }}{% else %} ...  # {{ v.number }}{% endif %}
{% else -%}
{{ e.indent }}    {{ v.name }}: {{ e.helper_value_type }}  # {{ v.number }}
{% if let Some(doc) = v.doc -%}
{{ e.indent }}    {{ doc }}
{% endif -%}
{% endif -%}
{% endfor %}
{% if let Some(deprecated) = e.deprecated -%}
{{ e.indent }}@_typing_extensions.deprecated({{ deprecated }})
{% endif -%}
{{ e.indent }}class {{ e.name }}({{ e.holder }}, metaclass={{ e.holder }}EnumTypeWrapper):{% if let Some(doc) = e.doc %}
{{ e.indent }}    {{ doc }}{% else %} ...{% endif %}

{% for v in e.scope_values -%}
{{ e.indent }}{{ v.name }}: {{ e.value_type }}  # {{ v.number }}
{% if let Some(doc) = v.doc -%}
{{ e.indent }}{{ doc }}
{% endif -%}
{% endfor -%}
{% for a in e.aliases -%}
{{ a.name }}: _typing_extensions.TypeAlias = {{ a.target }}{% if a.deprecated %}  # type: ignore[deprecated, unused-ignore]{% endif %}
{% endfor -%}
{% when Block::Open with (m) %}
{% if let Some(deprecated) = m.deprecated -%}
{{ m.indent }}@_typing_extensions.deprecated({{ deprecated }})
{% endif -%}
{{ m.indent }}@_typing.final
{{ m.indent }}class {{ m.name }}(_message.Message):
{% if let Some(doc) = m.doc -%}
{{ m.indent }}    {{ doc }}

{% endif -%}
{{ m.indent }}    DESCRIPTOR: _descriptor.Descriptor
{% when Block::Close with (c) %}
{% for constant in c.field_numbers -%}
{{ c.indent }}{{ constant }}: _builtins.int
{% endfor -%}
{% for x in c.extensions -%}
{{ c.indent }}{{ x.constant }}: _builtins.int
{% endfor -%}
{% for f in c.fields -%}
{% if f.is_property() -%}
{{ c.indent }}@_builtins.property
{% if let Some(deprecated) = f.deprecated -%}
{{ c.indent }}@_typing_extensions.deprecated({{ deprecated }})
{% endif -%}
{{ c.indent }}def {{ f.name }}(self) -> {{ f.ty }}:{% if let Some(doc) = f.doc %}
{{ c.indent }}    {{ doc }}{% else %} ...{% endif %}
{% if !f.read_only -%}
{{ c.indent }}@{{ f.name }}.setter
{% if let Some(deprecated) = f.deprecated -%}
{{ c.indent }}@_typing_extensions.deprecated({{ deprecated }})
{% endif -%}
{{ c.indent }}def {{ f.name }}(self, value: {{ f.ty }}) -> None: ...
{% endif -%}
{% else -%}
{{ c.indent }}{{ f.name }}: {{ f.ty }}
{% if let Some(doc) = f.doc -%}
{{ c.indent }}{{ doc }}
{% endif -%}
{% endif -%}
{% endfor -%}
{% for x in c.extensions -%}
{% if x.declared -%}
{{ c.indent }}{{ x.name }}: {{ x.ty }}
{% if let Some(doc) = x.doc -%}
{{ c.indent }}{{ doc }}
{% endif -%}
{% endif -%}
{% endfor -%}
{% if c.init_params.is_empty() -%}
{{ c.indent }}def __init__(self) -> None: ...
{% else -%}
{{ c.indent }}def __init__(
{{ c.indent }}    {{ c.init_self }},{% if c.init_self != "self" %}  # pyright: ignore[reportSelfClsParameterName]{% endif %}
{{ c.indent }}    *,
{% for p in c.init_params -%}
{{ c.indent }}    {{ p.name }}: {{ p.ty }} = ...,
{% endfor -%}
{{ c.indent }}) -> None: ...
{% endif -%}
{{ c.indent }}_HasFieldArgType: {{ c.type_alias }} = {{ c.has_field }}  # noqa: Y015
{{ c.indent }}def HasField(self, field_name: _HasFieldArgType) -> _builtins.bool: ...
{{ c.indent }}_ClearFieldArgType: {{ c.type_alias }} = {{ c.clear_field }}  # noqa: Y015
{{ c.indent }}def ClearField(self, field_name: _ClearFieldArgType) -> None: ...
{% for w in c.which_oneof -%}
{% if let Some((name, argument, members)) = w.oneof -%}
{{ c.indent }}_WhichOneofReturnType_{{ name }}: {{ c.type_alias }} = {{ members }}  # noqa: Y015
{{ c.indent }}_WhichOneofArgType_{{ name }}: {{ c.type_alias }} = {{ argument }}  # noqa: Y015
{% endif -%}
{% endfor -%}
{% for w in c.which_oneof -%}
{% if w.overload -%}
{{ c.indent }}@_typing.overload
{% endif -%}
{{ c.indent }}def WhichOneof(self, oneof_group: {{ w.argument }}) -> {{ w.result }}: ...
{% endfor -%}
{% if !c.aliases.is_empty() %}
{% for a in c.aliases -%}
{{ a.name }}: _typing_extensions.TypeAlias = {{ a.target }}{% if a.deprecated %}  # type: ignore[deprecated, unused-ignore]{% endif %}
{% endfor -%}
{% endif -%}
{% endmatch -%}
{% endfor -%}
{% if !extensions.is_empty() %}
{% for x in extensions -%}
{{ x.constant }}: _builtins.int
{% endfor -%}
{% for x in extensions -%}
{% if x.declared -%}
{{ x.name }}: {{ x.ty }}
{% if let Some(doc) = x.doc -%}
{{ doc }}
{% endif -%}
{% endif -%}
{% endfor -%}
{% endif -%}
