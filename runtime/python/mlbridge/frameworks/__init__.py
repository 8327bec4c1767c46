"""Hand-written implementations of the adapters in proto/adapters/.

Each module here holds the functions that an adapter manifest's operations and tools name;
the generated ``mlbridge_adapters.<id>.dispatch`` module decodes parameters and calls them.
"""
