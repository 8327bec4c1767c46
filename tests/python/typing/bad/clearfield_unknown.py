# Expected: ClearField takes only field and oneof names.
#   error: Argument 1 to "ClearField" of "Kitchen" has incompatible type "Literal['kitchen_id']"; expected "Literal[...]"  [arg-type]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen_pb2.Kitchen().ClearField("kitchen_id")  # E: arg-type
