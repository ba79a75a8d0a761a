"""The transport floor: a bare ``grpc.aio`` server that answers OIP ``ModelInfer`` with a canned
response of the lead model's size, doing no work, so the gap to it is what the gateway itself costs.

Run: ``python -m benchmarks.floor_server --port 0 (--response-file F | --batch B --features N)``.
It prints ``listening on HOST:PORT`` when ready and exits 0 on SIGTERM. ``--stall-every`` freezes
the whole server (a blocking sleep, like a GC pause) every N requests, to test the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from leadgw_client.pb.inference import grpc_service_pb2

SERVICE = "inference.GRPCInferenceService"


def canned_response(batch: int, features: int, model: str) -> bytes:
    """What the lead model answers for ``batch`` rows: probability, logit, contributions."""
    response = grpc_service_pb2.ModelInferResponse(model_name=model, model_version="1")
    for name, columns in (("probability", 1), ("logit", 1), ("contributions", features)):
        response.outputs.add(name=name, datatype="FP32", shape=[batch, columns])
        response.raw_output_contents.append(np.zeros((batch, columns), "<f4").tobytes())
    return response.SerializeToString()


@dataclass(slots=True)
class FloorService:
    response: bytes
    stall_every: int = 0
    stall_s: float = 0.0
    _count: int = field(default=0, init=False)

    async def model_infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._count += 1
        if self.stall_every and self._count % self.stall_every == 0:
            # Blocks the event loop on purpose: every request in flight waits, as in a real pause.
            time.sleep(self.stall_s)
        return self.response

    async def ready(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # ServerLive/ServerReady/ModelReady responses all are `bool field 1 = true`.
        return b"\x08\x01"


def _handler(service: FloorService) -> grpc.GenericRpcHandler:
    raw = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ModelInfer": raw(service.model_infer),
            "ServerLive": raw(service.ready),
            "ServerReady": raw(service.ready),
            "ModelReady": raw(service.ready),
        },
    )


async def serve(args: argparse.Namespace) -> int:
    if args.response_file:
        response = Path(args.response_file).read_bytes()
    else:
        response = canned_response(args.batch, args.features, args.model)
    service = FloorService(response, args.stall_every, args.stall_ms / 1000.0)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
    )
    server.add_generic_rpc_handlers((_handler(service),))
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {args.host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop(1.0)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--response-file", help="answer with these exact bytes")
    parser.add_argument("--batch", type=int, default=1, help="rows in the canned response")
    parser.add_argument("--features", type=int, default=16, help="contribution columns")
    parser.add_argument("--model", default="lead_scorer")
    parser.add_argument("--stall-every", type=int, default=0, help="freeze every N requests")
    parser.add_argument("--stall-ms", type=float, default=200.0, help="length of each freeze")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
