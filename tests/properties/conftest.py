"""One real gateway (a process on port 0) for the whole property suite: it is the thing whose
staying up is checked, and it takes writes that the shared gateway's readers must not see."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import GatewayProcess, start_gateway_process


@pytest.fixture(scope="module")
def property_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start_gateway_process(tmp_path_factory.mktemp("property-gateway"))
    yield gateway
    assert gateway.process.poll() is None, "the gateway died during the property suite"
    gateway.stop()


@pytest.fixture(scope="module")
def property_channel(property_gateway: GatewayProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(property_gateway.address) as channel:
        yield channel
