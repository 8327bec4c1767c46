# {{ header }}
# source: {{ source }}
"""Client and server classes corresponding to protobuf-defined services."""
{% for group in imports %}
{% for line in group -%}
{{ line }}
{% endfor -%}
{% endfor %}
_TRequest = _typing.TypeVar("_TRequest")
_TResponse = _typing.TypeVar("_TResponse")
{% if client_streaming %}
@_typing.type_check_only
class _MaybeAsyncIterator(_abc.AsyncIterator[_TRequest], _abc.Iterator[_TRequest], metaclass=_ABCMeta):
    """A request stream: iterated with `for` by `grpc` servers, `async for` by `grpc.aio` ones."""
{% endif %}
@_typing.type_check_only
class _ServicerContext(_grpc.ServicerContext, _aio.ServicerContext[_TRequest, _TResponse]):  # type: ignore[misc]
    """The context a servicer gets: a `grpc.ServicerContext` or a `grpc.aio.ServicerContext`."""

GRPC_GENERATED_VERSION: str
GRPC_VERSION: str
{% for service in services %}
{%- if let Some(deprecated) = service.stub_deprecated %}
@_typing_extensions.deprecated({{ deprecated }})
{%- endif %}
class {{ service.name }}Stub:
{%- if let Some(doc) = service.doc %}
    {{ doc }}
{% endif %}
    @_typing.overload
    def __new__(cls, channel: _grpc.Channel) -> _typing_extensions.Self: ...
    @_typing.overload
    def __new__(cls, channel: _aio.Channel) -> {{ service.async_ref }}: ...
{%- for m in service.methods %}
{%- if let Some(deprecated) = m.deprecated %}
    @_builtins.property
    @_typing_extensions.deprecated({{ deprecated }})
    def {{ m.attr }}(self) -> _grpc.{{ m.callable }}[{{ m.request }}, {{ m.response }}]:{% if let Some(doc) = m.body_doc %}
        {{ doc }}{% else %} ...{% endif %}
{%- else %}
    {{ m.attr }}: _grpc.{{ m.callable }}[{{ m.request }}, {{ m.response }}]
{%- if let Some(doc) = m.attr_doc %}
    {{ doc }}
{%- endif %}
{%- endif %}
{%- endfor %}

{%- if let Some(a) = service.stub_alias %}

{{ a.name }}: _typing_extensions.TypeAlias = {{ a.target }}  # type: ignore[deprecated, unused-ignore]
{%- endif %}
{% if let Some(deprecated) = service.async_deprecated %}
@_typing_extensions.deprecated({{ deprecated }})
{%- endif %}
@_typing.type_check_only
class {{ service.name }}AsyncStub({{ service.stub_ref }}):
    """{{ service.name }}Stub as built on a `grpc.aio.Channel`: its calls are awaited."""

    def __init__(self, channel: _aio.Channel) -> None: ...
{%- for m in service.methods %}
{%- if let Some(deprecated) = m.deprecated %}
    @_builtins.property
    @_typing_extensions.deprecated({{ deprecated }})
    def {{ m.attr }}(self) -> _aio.{{ m.callable }}[{{ m.request }}, {{ m.response }}]:  # type: ignore[override]{% if let Some(doc) = m.body_doc %}
        {{ doc }}{% else %}
        ...{% endif %}
{%- else %}
    {{ m.attr }}: _aio.{{ m.callable }}[{{ m.request }}, {{ m.response }}]  # type: ignore[assignment]
{%- if let Some(doc) = m.attr_doc %}
    {{ doc }}
{%- endif %}
{%- endif %}
{%- endfor %}

{% if let Some(deprecated) = service.servicer_deprecated -%}
@_typing_extensions.deprecated({{ deprecated }})
{% endif -%}
class {{ service.name }}Servicer(metaclass=_ABCMeta):
{%- if let Some(doc) = service.doc %}
    {{ doc }}
{%- else if service.methods.is_empty() %}
    ...
{%- endif %}
{%- for m in service.methods %}
{%- if !loop.first || service.doc.is_some() %}
{% endif %}
{%- if let Some(deprecated) = m.deprecated %}
    @_typing_extensions.deprecated({{ deprecated }})
{%- endif %}
    @_abstractmethod
    def {{ m.attr }}(
        self,
        {{ m.request_param }}: {{ m.request_type }},
        context: _ServicerContext[{{ m.request }}, {{ m.response }}],
    ) -> {{ m.response_type }}:{% if let Some(doc) = m.body_doc %}
        {{ doc }}{% else %} ...{% endif %}
{%- endfor %}

{% if let Some(deprecated) = service.servicer_deprecated -%}
@_typing_extensions.deprecated({{ deprecated }})
{% endif -%}
def add_{{ service.name }}Servicer_to_server(servicer: {{ service.servicer_ref }}, server: _grpc.Server | _aio.Server) -> None: ...
{%- for a in service.aliases %}
{%- if loop.first %}
{% endif %}
{{ a.name }}: _typing_extensions.TypeAlias = {{ a.target }}  # type: ignore[deprecated, unused-ignore]
{%- endfor %}
{% endfor -%}
