"""leadgw's client for backend services: ``LeadClient`` (scores, summaries; deadlines, retries
honouring ``RetryInfo``, API keys, TLS, round-robin over replicas) and the generated stubs in
``leadgw_client.pb``.

Installable on its own (``pip install ./leadgw_client``): it needs grpcio and protobuf, never
the server's ONNX Runtime, Qdrant or ``gateway`` package. The server and the benchmarks import
the stubs from here; ``runtimes`` and ``retrieval`` never do.
"""

from leadgw_client.channel import Tls, channel_target
from leadgw_client.client import LeadClient, Reason, Score, Summary
from leadgw_client.retry import RetryPolicy, server_delay_s

__all__ = [
    "LeadClient",
    "Reason",
    "RetryPolicy",
    "Score",
    "Summary",
    "Tls",
    "channel_target",
    "server_delay_s",
]
