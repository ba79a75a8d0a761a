"""The floor of ``tenant-flood``: a bare grpc.aio server that serves ScoreLeads with canned bytes
and refuses a listed key at once, with the gateway's own refusal, in N processes on one port."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import psutil
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from benchmarks.flood_suite import FLOODER, refusal_message
from benchmarks.floor_server import refusal_trailers
from benchmarks.servers import start_listening_server
from gateway.errors import retry_trailers
from gateway.rate_limits import Refusal

SCORE_LEADS = "/leadgw.v1.LeadService/ScoreLeads"


def test_the_floor_refuses_as_the_gateway_does() -> None:
    message = refusal_message(100)
    assert message == Refusal("requests", 0.01, 100.0).message(FLOODER)
    assert refusal_trailers(message, 10) == retry_trailers(message, 10)


@pytest.mark.parametrize(("workers", "refuse_by"), [(1, "abort"), (2, "abort"), (1, "status")])
def test_floor_serves_one_tenant_and_refuses_the_other(
    tmp_path: Path, workers: int, refuse_by: str
) -> None:
    response, refuse = tmp_path / "response.bin", tmp_path / "refuse.txt"
    response.write_bytes(b"canned score")
    refuse.write_text("Bearer flooder\n")
    command = [
        sys.executable, "-m", "benchmarks.floor_server", "--port", "0",
        "--score-response-file", str(response), "--refuse-keys-file", str(refuse),
        "--refusal-message", "over", "--retry-ms", "40",
        "--workers", str(workers), "--event-loop", "uvloop", "--refuse-by", refuse_by,
    ]  # fmt: skip
    with start_listening_server("flood-floor-test", command) as server:
        serving = [server.pid] if workers == 1 else [
            p.pid for p in psutil.Process(server.pid).children()
        ]  # fmt: skip
        assert len(serving) == workers
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary(SCORE_LEADS)
            assert call(b"", metadata=(("authorization", "Bearer steady"),)) == b"canned score"
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", metadata=(("authorization", "Bearer flooder"),))
        error = refused.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error.details() == "over"
        assert ("retry-after-ms", "40") in [tuple(m) for m in error.trailing_metadata()]
        status = rpc_status.from_call(error)
        assert status is not None
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info) and info.retry_delay.ToMilliseconds() == 40
        assert server.stop() == 0
