"""Stubs on a channel to the shared gateway."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc


@pytest.fixture
def channel(shared_gateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(shared_gateway.address) as open_channel:
        yield open_channel


@pytest.fixture
def lead_stub(channel: grpc.Channel) -> pb_grpc.LeadServiceStub:
    return pb_grpc.LeadServiceStub(channel)


@pytest.fixture
def oip_stub(channel: grpc.Channel) -> oip_grpc.GRPCInferenceServiceStub:
    return oip_grpc.GRPCInferenceServiceStub(channel)
