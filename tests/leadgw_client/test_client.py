"""``LeadClient`` against the real gateway, and its retry and balancing rules against small
servers that refuse on purpose (the refusals' wire format is the gateway's)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from leadgw_client import LeadClient, RetryPolicy, channel_target, server_delay_s
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.training import synth


def sample(n: int) -> dict[str, dict]:
    return {lead.lead_id: dict(lead.features) for lead in synth.generate(n, 5).leads("C-")}


def test_scores_through_the_real_gateway(shared_gateway) -> None:
    leads = sample(6)
    with LeadClient(shared_gateway.address) as client:
        scores = client.score(leads, max_reasons=2)
    assert [s.lead_id for s in scores] == list(leads)
    assert sorted(s.rank for s in scores) == [1, 2, 3, 4, 5, 6]
    assert all(0.0 < s.probability < 1.0 and len(s.reasons) == 2 for s in scores)
    assert {(s.model_name, s.model_version) for s in scores} == {("lead_scorer", "1")}
    best = min(scores, key=lambda s: s.rank)
    assert best.probability == max(s.probability for s in scores)


def test_bad_input_is_refused_once_not_retried(shared_gateway) -> None:
    leads = sample(2)
    first = next(iter(leads))
    leads[first]["age"] = 250.0
    slept: list[float] = []
    with (
        LeadClient(shared_gateway.address, sleep=slept.append) as client,
        pytest.raises(grpc.RpcError) as error,
    ):
        client.score(leads)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert first in error.value.details() and "age" in error.value.details()
    assert slept == []


def test_a_value_of_the_wrong_type_names_lead_and_feature(shared_gateway) -> None:
    with (
        LeadClient(shared_gateway.address) as client,
        pytest.raises(TypeError, match=r"'x'.*'age'"),
    ):
        client.score({"x": {"age": [1, 2]}})  # type: ignore[dict-item]


# ---- retries, against a server that refuses as the gateway does ----


def retry_info_trailer(seconds: float) -> tuple[str, bytes]:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(seconds), nanos=round((seconds % 1) * 1e9)
            )
        )
    )
    status = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], details=[detail])
    return ("grpc-status-details-bin", status.SerializeToString())


class Refusing(pb_grpc.LeadServiceServicer):
    """Refuses the first ``refusals`` calls with ``code`` and ``trailer``, then answers."""

    def __init__(self, refusals: int, code: grpc.StatusCode, trailer=None, name: str = "") -> None:
        self.refusals, self.code, self.trailer, self.name = refusals, code, trailer, name
        self.calls = 0
        self.lock = threading.Lock()

    def ScoreLeads(self, request, context):
        with self.lock:
            self.calls += 1
            refuse = self.calls <= self.refusals
        if refuse:
            if self.trailer is not None:
                context.set_trailing_metadata((self.trailer,))
            context.abort(self.code, "try later")
        return pb.ScoreLeadsResponse(
            scores=[
                pb.LeadScore(lead_id=lead.lead_id, model_version=self.name)
                for lead in request.leads
            ]
        )


@pytest.fixture
def serve() -> Iterator:
    servers: list[grpc.Server] = []

    def start(servicer: Refusing) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_LeadServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


def test_retry_info_is_honoured(serve) -> None:
    servicer = Refusing(2, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_info_trailer(0.25))
    slept: list[float] = []
    with LeadClient(serve(servicer), sleep=slept.append, timeout_s=5) as client:
        (score,) = client.score({"a": {}})
    assert score.lead_id == "a" and servicer.calls == 3
    assert slept == [pytest.approx(0.25), pytest.approx(0.25)]


def test_the_deprecated_trailer_is_honoured_too(serve) -> None:
    servicer = Refusing(1, grpc.StatusCode.UNAVAILABLE, ("retry-after-ms", "120"))
    slept: list[float] = []
    with LeadClient(serve(servicer), sleep=slept.append) as client:
        client.score({"a": {}})
    assert slept == [pytest.approx(0.12)]


def test_no_retry_when_the_wait_would_pass_the_deadline(serve) -> None:
    servicer = Refusing(5, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_info_trailer(5.0))
    slept: list[float] = []
    with (
        LeadClient(serve(servicer), sleep=slept.append, timeout_s=1.0) as client,
        pytest.raises(grpc.RpcError) as error,
    ):
        client.score({"a": {}})
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert servicer.calls == 1 and slept == []


def test_attempts_are_bounded_and_back_off_without_a_server_hint(serve) -> None:
    servicer = Refusing(10, grpc.StatusCode.UNAVAILABLE)
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=1.0)
    with (
        LeadClient(serve(servicer), sleep=slept.append, retry=policy) as client,
        pytest.raises(grpc.RpcError),
    ):
        client.score({"a": {}})
    assert servicer.calls == 3 and len(slept) == 2
    assert 0 <= slept[0] <= 0.1 and 0 <= slept[1] <= 0.2


def test_other_errors_are_not_retried(serve) -> None:
    servicer = Refusing(1, grpc.StatusCode.PERMISSION_DENIED)
    with (
        LeadClient(serve(servicer), sleep=lambda s: None) as client,
        pytest.raises(grpc.RpcError) as error,
    ):
        client.score({"a": {}})
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED and servicer.calls == 1


def test_calls_are_balanced_round_robin_over_every_address(serve) -> None:
    first, second = (
        Refusing(0, grpc.StatusCode.OK, name="a"),
        Refusing(0, grpc.StatusCode.OK, name="b"),
    )
    addresses = [serve(first), serve(second)]
    with LeadClient(addresses) as client:
        served_by = [client.score({"x": {}})[0].model_version for _ in range(40)]
    assert first.calls + second.calls == 40
    assert first.calls >= 10 and second.calls >= 10, served_by


# ---- small parts ----


def test_targets() -> None:
    assert channel_target("dns:///leadgw.prod.svc:50051") == "dns:///leadgw.prod.svc:50051"
    assert channel_target(["10.0.0.1:1", "10.0.0.2:1"]) == "ipv4:10.0.0.1:1,10.0.0.2:1"
    assert channel_target(["[::1]:1", "[::2]:1"]) == "ipv6:[::1]:1,[::2]:1"
    with pytest.raises(ValueError, match="dns:///"):
        channel_target(["gw-0:1", "gw-1:1"])
    with pytest.raises(ValueError):
        channel_target([])


def test_server_delay_parsing() -> None:
    assert server_delay_s([retry_info_trailer(1.5)]) == pytest.approx(1.5)
    assert server_delay_s([("retry-after-ms", "250")]) == pytest.approx(0.25)
    assert server_delay_s([("grpc-status-details-bin", b"\xff\xff")]) is None
    assert server_delay_s([("retry-after-ms", "soon")]) is None
    assert server_delay_s(None) is None


def test_the_client_imports_nothing_of_the_server() -> None:
    probe = "import sys, json, leadgw_client; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    server_side = {
        "onnxruntime",
        "qdrant_client",
        "numpy",
        "gateway",
        "runtimes",
        "retrieval",
        "openai",
    }
    assert not server_side & {name.partition(".")[0] for name in loaded}
