"""``inference.GRPCInferenceService``: the Open Inference Protocol as Triton's clients expect it."""

from __future__ import annotations

import time

import grpc

from gateway import oip_codec
from gateway.auth import current_caller
from gateway.repository_params import load_request, unload_request
from leadgw_client.pb.inference import grpc_service_pb2 as pb
from leadgw_client.pb.inference import grpc_service_pb2_grpc as pb_grpc
from runtimes.control import ModelControl
from runtimes.errors import NotFound
from runtimes.repository import ModelRepository, ServedModel

SERVER_NAME = "leadgw"
EXTENSIONS = ["model_configuration", "model_repository"]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        repository: ModelRepository,
        server_version: str,
        control: ModelControl,
        max_rows: int | None = None,
    ) -> None:
        self._repository = repository
        self._version = server_version
        self._control = control
        self._max_rows = max_rows

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._repository.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            self._repository.get(request.name, request.version or None)
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._version, extensions=EXTENSIONS
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        served = self._repository.get(request.name, request.version or None)
        response = pb.ModelMetadataResponse(
            name=served.name,
            versions=self._repository.versions(served.name),
            platform=served.config.platform,
        )
        response.inputs.add(
            name=served.config.input_name, datatype="FP32", shape=[-1, served.width]
        )
        for name, shape in _output_shapes(served):
            response.outputs.add(name=name, datatype="FP32", shape=[-1, *shape])
        return response

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        served = self._repository.get(request.name, request.version or None)
        return pb.ModelConfigResponse(config=_model_config(served, self._repository))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        for status in self._repository.status():
            if request.ready and status.state != "READY":
                continue
            response.models.add(
                name=status.name, version=status.version, state=status.state, reason=status.reason
            )
        return response

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        version, options = load_request(request)
        await self._control.load(request.model_name, version, options, _caller_name())
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        version, force = unload_request(request)
        await self._control.unload(request.model_name, version, force, _caller_name())
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse | bytes:
        """A raw request's answer comes back as its wire bytes (``oip_codec.encode_response``)."""
        served = self._repository.get(request.model_name, request.model_version or None)
        if not request.model_version and request.id:
            # A canary: the request's id stands for the lead (OIP requests carry no lead ids).
            served = self._repository.assign(
                served.name, None, current_caller().tenant, [request.id]
            )[0][0]
        features = oip_codec.decode_features(request, served, self._max_rows)
        names = oip_codec.requested_outputs(request, served)
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        # A shadow samples by lead; the request's id stands for the lead, as for the canary.
        keys = (lambda: (current_caller().tenant, [request.id])) if request.id else None
        outputs = await served.infer(features, deadline, keys)
        return oip_codec.encode_response(request, served, outputs, names)


def _caller_name() -> str:
    caller = current_caller()
    return f"{caller.tenant}/{caller.key_name}" if caller.key_name else caller.tenant


def _output_shapes(served: ServedModel) -> list[tuple[str, list[int]]]:
    config = served.config
    return [
        (config.probability_output, [1]),
        (config.logit_output, [1]),
        (config.contributions_output, [served.width]),
    ]


def _model_config(served: ServedModel, repository: ModelRepository) -> pb.ModelConfig:
    # The batcher's own settings, defaults included: what the model runs with, not a copy.
    batching = served.config.batching
    config = pb.ModelConfig(
        name=served.name,
        platform=served.config.platform,
        backend="onnxruntime",
        max_batch_size=batching.max_batch_size,
        default_model_filename="model.onnx",
    )
    policy = repository.version_policy(served.name)
    if policy.kind == "latest":
        config.version_policy.latest.num_versions = policy.latest
    elif policy.kind == "specific":
        config.version_policy.specific.versions.extend(int(v) for v in policy.specific)
    else:
        config.version_policy.all.SetInParent()
    # Triton's convention: with max_batch_size > 0, dims leave out the batch dimension.
    config.input.add(name=served.config.input_name, data_type=pb.TYPE_FP32, dims=[served.width])
    for name, shape in _output_shapes(served):
        config.output.add(name=name, data_type=pb.TYPE_FP32, dims=shape)
    config.instance_group.add(name=served.name, count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    config.dynamic_batching.default_queue_policy.max_queue_size = batching.max_queue_size
    config.parameters["feature_names"].string_value = ",".join(served.schema.names)
    config.parameters["base_value"].string_value = repr(served.base_value)
    config.parameters["versions"].string_value = ",".join(repository.versions(served.name))
    return config
