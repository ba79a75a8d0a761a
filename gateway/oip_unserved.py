"""Triton's ``GRPCInferenceService`` methods that leadgw does not serve, answered UNIMPLEMENTED
with the method's name and what leadgw offers instead.

leadgw's proto declares only the methods it serves, so a Triton client calling another one got
grpc's bare "Method not found!", which says neither what was called nor what to do. The request
is never parsed: these handlers have no deserializer, and leadgw keeps no copy of Triton's
messages for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

SERVICE = "inference.GRPCInferenceService"

_SHARED_MEMORY = (
    "leadgw does not support shared memory: send the input in the request "
    "(raw_input_contents or contents) and read the outputs in the answer"
)

INSTEAD: Mapping[str, str] = {
    "ModelStreamInfer": (
        "call ModelInfer once per request (tritonclient: infer or async_infer); it batches "
        "concurrent calls on the server"
    ),
    "ModelStatistics": (
        "per-model request counts and latencies are in the Prometheus metrics on the "
        "metrics port (rpc_server_duration_milliseconds, leadgw_model_execution_duration_"
        "milliseconds; docs/observability.md); versions and their states in RepositoryIndex "
        "or `leadgw models`"
    ),
    "SystemSharedMemoryStatus": _SHARED_MEMORY,
    "SystemSharedMemoryRegister": _SHARED_MEMORY,
    "SystemSharedMemoryUnregister": _SHARED_MEMORY,
    "CudaSharedMemoryStatus": _SHARED_MEMORY,
    "CudaSharedMemoryRegister": _SHARED_MEMORY,
    "CudaSharedMemoryUnregister": _SHARED_MEMORY,
    "TraceSetting": (
        "tracing is set when the gateway starts, by the OTEL_* variables and trace_detail "
        "(docs/observability.md)"
    ),
    "LogSettings": (
        "logging is set when the gateway starts, by log_level and log_format "
        "(--log-level, LEADGW_LOG_LEVEL; docs/observability.md)"
    ),
}
"""Method → what to use instead, for each method of Triton's service that leadgw lacks."""

_STREAMING = frozenset({"ModelStreamInfer"})  # bidirectional streams in Triton's proto


def message(method: str) -> str:
    return f"{SERVICE}/{method} is not implemented by leadgw; {INSTEAD[method]}"


def handlers() -> dict[str, Any]:
    """A method handler per unserved method, to register after every served service's, so
    that a served call never looks here first."""
    made = {}
    for method in INSTEAD:
        make = (
            grpc.stream_stream_rpc_method_handler
            if method in _STREAMING
            else grpc.unary_unary_rpc_method_handler
        )
        made[method] = make(_refusal(message(method)))
    return made


def _refusal(text: str) -> Any:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, text)

    return refuse
