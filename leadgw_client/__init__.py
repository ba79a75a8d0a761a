"""leadgw's client side: the generated protobuf and gRPC stubs (``leadgw_client.pb``).

The server (``gateway``) and the benchmarks import the stubs from here; ``runtimes`` and
``retrieval`` never do.
"""
