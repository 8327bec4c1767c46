# Expected: WhichOneof takes only oneof names (`text` is a member, not a oneof).
#   error: No overload variant of "WhichOneof" of "Kitchen" matches argument type "str"  [call-overload]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen_pb2.Kitchen().WhichOneof("text")  # E: call-overload
