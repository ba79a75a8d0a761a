"""Bytes that are no protobuf message get INVALID_ARGUMENT naming the message they should have
been, on every method of every service, never UNKNOWN with a parser's exception."""

from __future__ import annotations

import grpc
import pytest

from leadgw_client.pb.inference import grpc_service_pb2
from leadgw_client.pb.leadgw.v1 import lead_service_pb2

# Truncated varints: no message of any type can be parsed from these bytes.
UNDECODABLE = b"\xff" * 11


def _methods() -> list[tuple[str, str, bool]]:
    """(path, request message name, server-streaming) for every method leadgw serves."""
    methods = []
    for file in (lead_service_pb2.DESCRIPTOR, grpc_service_pb2.DESCRIPTOR):
        for service in file.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                methods.append((path, method.input_type.full_name, method.server_streaming))
    return methods


METHODS = _methods()


def test_every_service_method_is_covered() -> None:
    paths = {path for path, _, _ in METHODS}
    assert "/leadgw.v1.LeadService/SummarizeLead" in paths
    assert "/inference.GRPCInferenceService/ModelInfer" in paths
    assert len(paths) >= 13


@pytest.mark.parametrize(("path", "message", "streaming"), METHODS, ids=[m[0] for m in METHODS])
def test_undecodable_bytes_are_invalid_argument_naming_the_message(
    channel: grpc.Channel, path: str, message: str, streaming: bool
) -> None:
    if streaming:
        call = channel.unary_stream(path)
        with pytest.raises(grpc.RpcError) as caught:
            list(call(UNDECODABLE, timeout=10))
    else:
        call = channel.unary_unary(path)
        with pytest.raises(grpc.RpcError) as caught:
            call(UNDECODABLE, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert caught.value.details().startswith(f"request is not a valid {message}: ")


def test_the_server_still_serves_after_undecodable_bytes(channel: grpc.Channel) -> None:
    live = channel.unary_unary(
        "/inference.GRPCInferenceService/ServerLive",
        request_serializer=grpc_service_pb2.ServerLiveRequest.SerializeToString,
        response_deserializer=grpc_service_pb2.ServerLiveResponse.FromString,
    )
    with pytest.raises(grpc.RpcError):
        channel.unary_unary("/inference.GRPCInferenceService/ServerLive")(UNDECODABLE, timeout=10)
    assert live(grpc_service_pb2.ServerLiveRequest(), timeout=10).live
