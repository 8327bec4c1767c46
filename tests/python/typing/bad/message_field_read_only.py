# Expected: message fields cannot be assigned (the runtime raises AttributeError); use CopyFrom.
#   error: Property "shelf" defined in "Kitchen" is read-only  [misc]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen = kitchen_pb2.Kitchen()
kitchen.shelf = kitchen_pb2.Kitchen.Shelf()  # E: misc
