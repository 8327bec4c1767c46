"""Imports the kitchen fixture from inside package `acme.protos` and uses a cross-file type.
Prints the module names that the message classes report."""

import json

from acme.protos.fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc

kitchen = kitchen_pb2.Kitchen(page={"page_size": 3})
assert kitchen.page.page_size == 3
assert kitchen_pb2_grpc.KitchenServiceStub is not None
print(json.dumps({
    "kitchen": type(kitchen).__module__,
    "page": type(kitchen.page).__module__,
}))
