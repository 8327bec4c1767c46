# Expected: map values are typed (`labels` is map<string, string>).
#   error: Incompatible types in assignment (expression has type "int", target has type "str")  [assignment]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen = kitchen_pb2.Kitchen()
kitchen.labels["color"] = 3  # E: assignment
