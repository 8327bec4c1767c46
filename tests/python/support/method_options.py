"""Prints {method full name: whether its embedded descriptor has an options message} for
every method of the modules named on the command line."""

import importlib
import json
import sys

from google.protobuf import descriptor_pb2

out = {}
for name in sys.argv[1:]:
    proto = descriptor_pb2.FileDescriptorProto.FromString(importlib.import_module(name).DESCRIPTOR.serialized_pb)
    for service in proto.service:
        for method in service.method:
            out[f"{proto.package}.{service.name}.{method.name}"] = method.HasField("options")
print(json.dumps(out, sort_keys=True))
