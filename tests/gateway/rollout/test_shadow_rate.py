"""Shadow scoring through the real server: the caller's answer does not change, a shadow_rate
compares a sticky share of leads (exactly the leads its hash picks, a share within a binomial
bound), set live by the control RPC, and bad rates are refused naming the parameter."""

from __future__ import annotations

import math

import grpc
import pytest

from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.routing import shadow_share
from runtimes.types import DEFAULT_TENANT
from tests.gateway.leads_helpers import columns_request, sample_leads, score_request
from tests.gateway.rollout.test_control_rpcs import load, wait_until
from tests.gateway.rollout.test_routing import NO_KEY, metric_total, metrics_port, scrape

MODEL = "lead_scorer"
LABELS = {"model": MODEL, "live_version": "1", "shadow_version": "2"}


def _compared(port: int) -> float:
    return metric_total(scrape(port), "leadgw_shadow_leads_total", **LABELS)


def test_shadow_leaves_answers_alone_and_a_rate_compares_its_share(two_version_gateway) -> None:
    gateway = two_version_gateway
    port = metrics_port(gateway)
    first = sample_leads(200, seed=21, prefix="A-")
    with grpc.insecure_channel(gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        lead_stub = pb_grpc.LeadServiceStub(channel)
        alone = lead_stub.ScoreLeads(score_request(first), timeout=10)
        alone_columns = lead_stub.ScoreLeads(columns_request(first), timeout=10)
        assert load(stub, MODEL, NO_KEY, version="2", shadow=True) == grpc.StatusCode.OK
        shadowed = lead_stub.ScoreLeads(score_request(first), timeout=10)
        shadowed_columns = lead_stub.ScoreLeads(columns_request(first), timeout=10)
        # The whole answer, byte for byte: values, ranks, reasons, the version that made it.
        assert shadowed.SerializeToString() == alone.SerializeToString()
        assert shadowed_columns.SerializeToString() == alone_columns.SerializeToString()
        wait_until(lambda: _compared(port) == 400)  # rate 1: every lead of both requests
        # A quarter of the leads, set live on the shadow that is on.
        assert load(stub, MODEL, NO_KEY, shadow_rate="0.25") == grpc.StatusCode.OK
        leads = sample_leads(2000, seed=22, prefix="B-")
        for i in range(0, len(leads), 200):
            part = leads[i : i + 200]
            request = score_request if i % 400 else columns_request
            answer = lead_stub.ScoreLeads(request(part), timeout=10)
            versions = (
                {answer.columns.model_version}
                if answer.HasField("columns")
                else {s.model_version for s in answer.scores}
            )
            assert versions == {"1"}
        picked = [x for x in leads if shadow_share(MODEL, DEFAULT_TENANT, x.lead_id) < 0.25]
        share = len(picked) / len(leads)
        assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(leads)), share
        # Exactly the leads the sticky hash picks: the same again on a second pass.
        wait_until(lambda: _compared(port) == 400 + len(picked))
        lead_stub.ScoreLeads(score_request(leads[:200]), timeout=10)
        again = sum(shadow_share(MODEL, DEFAULT_TENANT, x.lead_id) < 0.25 for x in leads[:200])
        wait_until(lambda: _compared(port) == 400 + len(picked) + again)
        assert metric_total(scrape(port), "leadgw_shadow_dropped_total", **LABELS) == 0
        index = stub.RepositoryIndex(oip.RepositoryIndexRequest(), timeout=10)
        assert {(m.version, m.reason) for m in index.models if m.version == "2"} == {
            ("2", "shadow 0.25")
        }
        # Off: nothing more is compared, and shadow=true alone is back to every lead.
        assert load(stub, MODEL, NO_KEY, version="2", shadow=False) == grpc.StatusCode.OK
        before = _compared(port)
        lead_stub.ScoreLeads(score_request(leads[:50]), timeout=10)
        assert load(stub, MODEL, NO_KEY, version="2", shadow=True) == grpc.StatusCode.OK
        lead_stub.ScoreLeads(score_request(leads[:50]), timeout=10)
        wait_until(lambda: _compared(port) == before + 50)


@pytest.mark.parametrize("rate", ["1.5", "-0.1", "lots", "nan"])
def test_a_shadow_rate_outside_0_1_is_refused_naming_it(two_version_gateway, rate: str) -> None:
    with grpc.insecure_channel(two_version_gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        request = oip.RepositoryModelLoadRequest(model_name=MODEL)
        request.parameters["version"].string_param = "2"
        request.parameters["shadow"].bool_param = True
        request.parameters["shadow_rate"].string_param = rate
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelLoad(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "shadow_rate" in refused.value.details()
        assert "[0, 1]" in refused.value.details()


def test_a_shadow_rate_needs_a_shadow(two_version_gateway) -> None:
    with grpc.insecure_channel(two_version_gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for params in ({"shadow_rate": "0.5"}, {"version": "2", "shadow_rate": "0.5"}):
            request = oip.RepositoryModelLoadRequest(model_name=MODEL)
            for key, value in params.items():
                request.parameters[key].string_param = value
            with pytest.raises(grpc.RpcError) as refused:
                stub.RepositoryModelLoad(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "no shadow is on" in refused.value.details()
        request = oip.RepositoryModelLoadRequest(model_name=MODEL)
        request.parameters["version"].string_param = "2"
        request.parameters["shadow"].bool_param = False
        request.parameters["shadow_rate"].string_param = "0.5"
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelLoad(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "shadow_rate" in refused.value.details()
