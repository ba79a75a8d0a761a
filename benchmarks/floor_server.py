"""The transport floor: a bare ``grpc.aio`` server that answers OIP ``ModelInfer`` with a canned
response of the lead model's size, doing no work, so the gap to it is what the gateway itself costs.

Run: ``python -m benchmarks.floor_server --port 0 (--response-file F | --batch B --features N)``.
It prints ``listening on HOST:PORT`` when ready and exits 0 on SIGTERM. ``--stall-every`` freezes
the whole server (a blocking sleep, like a GC pause) every N requests, to test the harness.

The floor of ``tenant-flood`` (``--score-response-file``) also answers leadgw's
``LeadService.ScoreLeads`` with canned bytes, and refuses at once, with RESOURCE_EXHAUSTED and
prebuilt trailers shaped like the gateway's (``RetryInfo`` detail, ``retry-after-ms``), every call
whose ``authorization`` value is in ``--refuse-keys-file``: one dict lookup, no auth, no limiter,
no metrics. ``--workers N`` runs N such processes on one port through SO_REUSEPORT, with
connections aged out after a few seconds as ``leadgw serve --workers`` does;
``--event-loop uvloop`` runs each on uvloop, as the gateway does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from leadgw_client.pb.inference import grpc_service_pb2

SERVICE = "inference.GRPCInferenceService"
LEAD_SERVICE = "leadgw.v1.LeadService"
RETRY_AFTER_KEY = "retry-after-ms"  # the gateway's own trailer next to RetryInfo
WORKER_CONNECTION_AGE_MS = 5_000  # as leadgw serve --workers: the kernel's placement is re-drawn
WORKER_CONNECTION_AGE_GRACE_MS = 30_000
Trailers = tuple[tuple[str, str | bytes], ...]


def refusal_trailers(message: str, retry_ms: int) -> Trailers:
    """The trailers the gateway sends with a rate-limit refusal (gateway.errors.retry_trailers,
    rebuilt here: benchmarks never import the gateway)."""
    retry_info = error_details_pb2.RetryInfo()
    retry_info.retry_delay.FromMilliseconds(retry_ms)
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    return (*rpc_status.to_status(status).trailing_metadata, (RETRY_AFTER_KEY, str(retry_ms)))


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


@dataclass(slots=True)
class LeadFloor:
    """ScoreLeads at the floor: canned bytes, or a refusal at once for a refused key."""

    response: bytes
    refused: dict[str, bool]  # authorization metadata value -> refused
    message: str
    trailers: Trailers
    by_abort: bool = True  # refuse with context.abort (raises); else set the status and return

    async def score_leads(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
        for name, value in context.invocation_metadata() or ():
            if name == "authorization" and self.refused.get(str(value)):
                if self.by_abort:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, self.message, self.trailers
                    )
                context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
                context.set_details(self.message)
                context.set_trailing_metadata(self.trailers)
                return None
        return self.response


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


def _lead_floor(args: argparse.Namespace) -> LeadFloor:
    keys = Path(args.refuse_keys_file).read_text().splitlines() if args.refuse_keys_file else []
    refused = {key.strip(): True for key in keys if key.strip()}
    trailers = refusal_trailers(args.refusal_message, args.retry_ms)
    return LeadFloor(
        Path(args.score_response_file).read_bytes(),
        refused,
        args.refusal_message,
        trailers,
        by_abort=args.refuse_by == "abort",
    )


async def serve(args: argparse.Namespace) -> int:
    if args.response_file:
        response = Path(args.response_file).read_bytes()
    else:
        response = canned_response(args.batch, args.features, args.model)
    service = FloorService(response, args.stall_every, args.stall_ms / 1000.0)
    options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]
    if args.reuse_port:  # one of --workers N: the parent holds the port, N share it
        options += [
            ("grpc.so_reuseport", 1),
            ("grpc.max_connection_age_ms", WORKER_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", WORKER_CONNECTION_AGE_GRACE_MS),
        ]
    else:
        options.append(("grpc.so_reuseport", 0))
    if args.max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", args.max_concurrent_streams))
    server = grpc.aio.server(options=options)
    handlers = [_handler(service)]
    if args.score_response_file:
        lead = _lead_floor(args)
        handlers.append(
            grpc.method_handlers_generic_handler(
                LEAD_SERVICE, {"ScoreLeads": grpc.unary_unary_rpc_method_handler(lead.score_leads)}
            )
        )
    server.add_generic_rpc_handlers(tuple(handlers))
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
    parser.add_argument(
        "--score-response-file",
        help="also answer leadgw.v1.LeadService/ScoreLeads with these exact bytes",
    )
    parser.add_argument(
        "--refuse-keys-file",
        help="ScoreLeads calls whose authorization value is a line of this file are refused "
        "at once with RESOURCE_EXHAUSTED",
    )
    parser.add_argument("--refusal-message", default="over its rate limit", help="their message")
    parser.add_argument("--retry-ms", type=int, default=10, help="their RetryInfo delay")
    parser.add_argument(
        "--refuse-by",
        choices=("abort", "status"),
        default="abort",
        help="how a refusal is made: context.abort (raises, as the gateway does) or setting the "
        "status and trailers and returning no message",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)"
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--max-concurrent-streams", type=int, default=0, help="per connection (0: grpc's default)"
    )
    return parser.parse_args(argv)


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind != "uvloop":
        return None
    import uvloop

    return uvloop.new_event_loop


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bound, not listening, with SO_REUSEPORT: port 0 resolves once for every worker."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def _supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """``--workers N``: N child processes on one port; one ready line when all listen; SIGTERM
    is passed on; 0 only if every worker exits 0."""
    holder = _reserve_port(args.host, args.port)
    port = holder.getsockname()[1]
    child_argv = [a for a in argv if a != "--reuse-port"]
    command = [sys.executable, "-m", "benchmarks.floor_server", *child_argv,
               "--workers", "1", "--reuse-port", "--port", str(port)]  # fmt: skip
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        for _ in range(args.workers)
    ]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for child in children:
            assert child.stdout is not None
            if "listening on" not in child.stdout.readline():
                return 1
        print(f"listening on {args.host}:{port}", flush=True)
        while not stop.wait(0.2):
            if any(child.poll() is not None for child in children):
                break
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = [child.wait(15) for child in children]
        holder.close()
    return 0 if stop.is_set() and all(code == 0 for code in codes) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.workers > 1:
        return _supervise(args, argv)
    with asyncio.Runner(loop_factory=_loop_factory(args.event_loop)) as runner:
        return runner.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
