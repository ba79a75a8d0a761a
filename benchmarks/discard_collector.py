"""An OTLP/gRPC trace collector that accepts every export and keeps nothing, run as its own process.

The tracing-cost bench points the gateway's real OTLP exporter at it, so export is paid for in
full (serialisation, the gRPC call, the answer) without a real collector's own CPU on the machine.
It counts what it received and, when stopped, writes the counts to ``--counts`` as JSON, so the
report can show that 1% sampling really exported about 1% of the spans.

    python -m benchmarks.discard_collector --counts counts.json   # "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class DiscardTraces(trace_service_pb2_grpc.TraceServiceServicer):
    """Answers every export with an empty (fully accepted) response, counting spans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # exports arrive on the server's worker threads
        self.exports = 0
        self.spans = 0

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self._lock:
            self.exports += 1
            self.spans += spans
        return trace_service_pb2.ExportTraceServiceResponse()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"exports": self.exports, "spans": self.spans}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OTLP/gRPC trace collector that discards.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--counts", type=Path, help="write export and span counts here on exit")
    args = parser.parse_args(argv)
    servicer = DiscardTraces()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"discard collector listening on 127.0.0.1:{port}", flush=True)
    try:
        while not stop.is_set():
            stop.wait(0.5)  # a timed wait lets the signal handler run promptly
    finally:
        server.stop(grace=1.0).wait(2.0)
        if args.counts is not None:
            args.counts.write_text(json.dumps(servicer.counts()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
