"""Prints {module: hex of DESCRIPTOR.serialized_pb} for the modules named on the command line."""

import importlib
import json
import sys

print(json.dumps({name: importlib.import_module(name).DESCRIPTOR.serialized_pb.hex() for name in sys.argv[1:]}))
