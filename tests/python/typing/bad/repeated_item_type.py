# Expected: repeated fields are typed (`shelves` holds Kitchen.Shelf messages).
#   error: Argument 1 to "append" of "RepeatedCompositeFieldContainer" has incompatible type "PageRequest"; expected "Shelf"  [arg-type]
from fixtures.common.v1 import common_pb2
from fixtures.kitchen.v1 import kitchen_pb2

kitchen = kitchen_pb2.Kitchen()
kitchen.shelves.append(common_pb2.PageRequest())  # E: arg-type
