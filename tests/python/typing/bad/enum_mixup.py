# Expected: each enum has its own value type; a Status is not a Kitchen.Mode.
#   error: Incompatible types in assignment (expression has type "..._Status.ValueType", variable has type "...Kitchen._Mode.ValueType")  [assignment]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen = kitchen_pb2.Kitchen()
kitchen.mode = kitchen_pb2.STATUS_ACTIVE  # E: assignment
