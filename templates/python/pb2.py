# -*- coding: utf-8 -*-
# {{ header }}
# source: {{ source }}
# Protobuf Python Version: {{ version.text }}
"""Generated protocol buffer code."""
from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf import runtime_version as _runtime_version
from google.protobuf import symbol_database as _symbol_database
from google.protobuf.internal import builder as _builder
_runtime_version.ValidateProtobufRuntimeVersion(
    _runtime_version.Domain.PUBLIC,
    {{ version.major }},
    {{ version.minor }},
    {{ version.patch }},
    '{{ version.suffix }}',
    '{{ source }}'
)
# @@protoc_insertion_point(imports)

_sym_db = _symbol_database.Default()


{{ imports }}DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(b'{{ serialized }}')

_globals = globals()
_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, _globals)
_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, '{{ module }}', _globals)
if not _descriptor._USE_C_DESCRIPTORS:
{{ fixups }}{% if generic_services %}_builder.BuildServices(DESCRIPTOR, '{{ module }}', _globals)
{% endif %}# @@protoc_insertion_point(module_scope)
