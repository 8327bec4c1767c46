# Expected: mypy rejects a keyword argument that is not a field.
#   error: Unexpected keyword argument "kitchen_id" for "Kitchen"  [call-arg]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen_pb2.Kitchen(kitchen_id="k1")  # E: call-arg
