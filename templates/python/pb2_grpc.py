# {{ header }}
# source: {{ source }}
"""Client and server classes corresponding to protobuf-defined services."""
import grpc

{% for line in imports %}{{ line }}
{% endfor %}
{% for service in services %}

class {{ service.name }}Stub(object):
{%- match service.doc %}{% when Some with (doc) %}
    """{{ doc|indent(4) }}
    """
{%- when None %}
    """Missing associated documentation comment in .proto file."""
{%- endmatch %}

    def __init__(self, channel):
        """Constructor.

        Args:
            channel: A grpc.Channel or a grpc.aio.Channel.
        """
{%- for method in service.methods %}
        self.{{ method.attr }} = channel.{{ method.shape }}(
                '/{{ service.full_name }}/{{ method.name }}',
                request_serializer={{ method.request }}.SerializeToString,
                response_deserializer={{ method.response }}.FromString,
                _registered_method=True)
{%- endfor %}


class {{ service.name }}Servicer(object):
{%- match service.doc %}{% when Some with (doc) %}
    """{{ doc|indent(4) }}
    """
{%- when None %}
    """Missing associated documentation comment in .proto file."""
{%- endmatch %}
{% for method in service.methods %}
    def {{ method.attr }}(self, {% if method.client_streaming %}request_iterator{% else %}request{% endif %}, context):
{%- match method.doc %}{% when Some with (doc) %}
        """{{ doc|indent(8) }}
        """
{%- when None %}
        """Missing associated documentation comment in .proto file."""
{%- endmatch %}
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
{% endfor %}
