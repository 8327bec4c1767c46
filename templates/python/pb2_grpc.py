# {{ header }}
# source: {{ source }}
"""Client and server classes corresponding to protobuf-defined services."""
import grpc
import warnings

{% for line in imports %}{{ line }}
{% endfor %}
GRPC_GENERATED_VERSION = '{{ grpc_version }}'
GRPC_VERSION = grpc.__version__
_version_not_supported = False

try:
    from grpc._utilities import first_version_is_lower
    _version_not_supported = first_version_is_lower(GRPC_VERSION, GRPC_GENERATED_VERSION)
except ImportError:
    _version_not_supported = True

if _version_not_supported:
    raise RuntimeError(
        f'The grpc package installed is at version {GRPC_VERSION},'
        + ' but the generated code in {{ path }} depends on'
        + f' grpcio>={GRPC_GENERATED_VERSION}.'
        + f' Please upgrade your grpc module to grpcio>={GRPC_GENERATED_VERSION}'
        + f' or downgrade your generated code using grpcio-tools<={GRPC_VERSION}.'
    )
{% for service in services %}

class {{ service.name }}Stub:
    {{ service.grpc_doc }}

    def __init__(self, channel):
        """Constructor.

        Args:
            channel: A grpc.Channel.
        """
{%- for method in service.methods %}
        self.{{ method.attr }} = channel.{{ method.shape }}(
                '/{{ service.full_name }}/{{ method.name }}',
                request_serializer={{ method.request }}.SerializeToString,
                response_deserializer={{ method.response }}.FromString,
                _registered_method=True)
{%- endfor %}


class {{ service.name }}Servicer:
    {{ service.grpc_doc }}
{% for method in service.methods %}
    def {{ method.attr }}(self, {% if method.client_streaming %}request_iterator{% else %}request{% endif %}, context):
        {{ method.grpc_doc }}
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details('Method not implemented!')
        raise NotImplementedError('Method not implemented!')
{% endfor %}

def add_{{ service.name }}Servicer_to_server(servicer, server):
    rpc_method_handlers = {
{%- for method in service.methods %}
            '{{ method.name }}': grpc.{{ method.shape }}_rpc_method_handler(
                    servicer.{{ method.attr }},
                    request_deserializer={{ method.request }}.FromString,
                    response_serializer={{ method.response }}.SerializeToString,
            ),
{%- endfor %}
    }
    generic_handler = grpc.method_handlers_generic_handler(
            '{{ service.full_name }}', rpc_method_handlers)
    server.add_generic_rpc_handlers((generic_handler,))
    server.add_registered_method_handlers('{{ service.full_name }}', rpc_method_handlers)


 # This class is part of an EXPERIMENTAL API.
class {{ service.name }}:
    {{ service.grpc_doc }}
{% for method in service.methods %}
    @staticmethod
    def {{ method.attr }}({% if method.client_streaming %}request_iterator{% else %}request{% endif %},
            target,
            options=(),
            channel_credentials=None,
            call_credentials=None,
            insecure=False,
            compression=None,
            wait_for_ready=None,
            timeout=None,
            metadata=None):
        return grpc.experimental.{{ method.shape }}(
            {% if method.client_streaming %}request_iterator{% else %}request{% endif %},
            target,
            '/{{ service.full_name }}/{{ method.name }}',
            {{ method.request }}.SerializeToString,
            {{ method.response }}.FromString,
            options,
            channel_credentials,
            insecure,
            call_credentials,
            compression,
            wait_for_ready,
            timeout,
            metadata,
            _registered_method=True)
{% endfor %}
{%- endfor %}
