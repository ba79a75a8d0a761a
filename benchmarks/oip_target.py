"""Open Inference Protocol ``ModelInfer`` targets: leadgw, MLServer, Triton, KServe, the floor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import numpy as np

from benchmarks.targets import CHANNEL_OPTIONS, GrpcUnaryTarget, TargetError
from leadgw_client.pb.inference import grpc_service_pb2, grpc_service_pb2_grpc

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class OipTarget(GrpcUnaryTarget):
    """``ModelInfer`` on ``model``; requests carry the batch in ``raw_input_contents``."""

    model: str = ""

    def check_response(self, response: bytes) -> str:
        message = grpc_service_pb2.ModelInferResponse.FromString(response)
        if not message.outputs:
            raise TargetError(f"{self.name}: the preflight response has no outputs")
        first = message.outputs[0]
        if not first.shape or first.shape[0] != self.rows_per_request:
            raise TargetError(
                f"{self.name}: output {first.name} has shape {list(first.shape)}, "
                f"expected {self.rows_per_request} rows"
            )
        names = ", ".join(f"{o.name}{list(o.shape)}" for o in message.outputs)
        return f"outputs {names}"


def oip_target(
    name: str,
    address: str,
    model: str,
    matrices: list[np.ndarray],
    timeout_s: float,
    server_pid: int | None = None,
    input_name: str = "features",
) -> OipTarget:
    from benchmarks.leads import model_infer_request

    payloads = tuple(
        model_infer_request(m, model, input_name).SerializeToString() for m in matrices
    )
    return OipTarget(
        name=name,
        address=address,
        method=MODEL_INFER,
        payloads=payloads,
        rows_per_request=int(matrices[0].shape[0]),
        timeout_s=timeout_s,
        server_pid=server_pid,
        model=model,
    )


async def input_shape(address: str, model: str, timeout_s: float) -> tuple[str, int]:
    """The first input's name and column count, from ``ModelMetadata``."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout_s)
        except TimeoutError:
            raise TargetError(f"cannot connect to {address} within {timeout_s:g} s") from None
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            meta = await stub.ModelMetadata(
                grpc_service_pb2.ModelMetadataRequest(name=model), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise TargetError(
                f"{address}: no metadata for model {model!r}: {exc.code().name}: "
                f"{' '.join((exc.details() or '').split())[:200]}"
            ) from None
    if not meta.inputs or len(meta.inputs[0].shape) != 2 or meta.inputs[0].shape[1] <= 0:
        raise TargetError(
            f"{address}: model {model!r} does not declare a 2-D input with a fixed column count; "
            "pass --features"
        )
    return meta.inputs[0].name, int(meta.inputs[0].shape[1])
