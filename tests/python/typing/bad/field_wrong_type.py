# Expected: mypy rejects assigning an int to a `string` field.
#   error: Incompatible types in assignment (expression has type "int", variable has type "str")  [assignment]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen = kitchen_pb2.Kitchen()
kitchen.id = 5  # E: assignment
