"""Routing policies through the real server: shadow (metrics compare, caller sees live only),
canary (sticky, share within a binomial bound), aliases, promote and rollback, and refusals."""

from __future__ import annotations

import math
import re
import shutil
import urllib.request
from pathlib import Path

import grpc
import pytest

from gateway import lead_codec
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from tests.gateway.leads_helpers import sample_leads, score_request
from tests.gateway.rollout.test_control_rpcs import load, wait_until

NO_KEY: tuple = ()


def metrics_port(gateway) -> int:
    wait_until(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", gateway.stderr_text()))
    return int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", gateway.stderr_text())[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def metric_total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_shadow_then_canary_then_promote_and_rollback(two_version_gateway) -> None:
    gateway = two_version_gateway
    port = metrics_port(gateway)
    leads = sample_leads(20, seed=5)
    with grpc.insecure_channel(gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        lead_stub = pb_grpc.LeadServiceStub(channel)
        # Shadow: callers still get version 1 only; the comparison shows in the metrics.
        assert load(stub, "lead_scorer", NO_KEY, version="2", shadow=True) == grpc.StatusCode.OK
        for _ in range(10):
            response = lead_stub.ScoreLeads(score_request(leads), timeout=10)
            assert {s.model_version for s in response.scores} == {"1"}
        labels = {"model": "lead_scorer", "live_version": "1", "shadow_version": "2"}
        wait_until(lambda: metric_total(scrape(port), "leadgw_shadow_leads_total", **labels) >= 200)
        text = scrape(port)
        assert metric_total(text, "leadgw_shadow_probability_difference_count", **labels) >= 200
        assert metric_total(text, "leadgw_shadow_rank_distance_count", **labels) >= 10
        agree = metric_total(text, "leadgw_shadow_leads_total", band_agreement="agree", **labels)
        assert 0 < agree <= metric_total(text, "leadgw_shadow_leads_total", **labels)
        # The challenger alias names the shadow; champion the live version.
        challenger = lead_stub.ScoreLeads(
            score_request(leads[:2], model_version="challenger"), timeout=10
        )
        assert {s.model_version for s in challenger.scores} == {"2"}
        champion = lead_stub.ScoreLeads(score_request(leads[:2], model_version="champion"))
        assert {s.model_version for s in champion.scores} == {"1"}
        # Canary at 30%: sticky per lead; the share within a binomial bound.
        assert load(stub, "lead_scorer", NO_KEY, version="2", canary_weight="0.3") == (
            grpc.StatusCode.OK
        )
        many = sample_leads(400, seed=9, prefix="C-")
        first = lead_stub.ScoreLeads(score_request(many), timeout=30)
        by_lead = {s.lead_id: s.model_version for s in first.scores}
        assert sorted(s.rank for s in first.scores) == list(range(1, 401))
        share = sum(v == "2" for v in by_lead.values()) / len(by_lead)
        bound = 4 * math.sqrt(0.3 * 0.7 / len(by_lead))  # 4 sigma: fails about 1 run in 15,000
        assert abs(share - 0.3) < bound, share
        for chunk in (many[:7], many[100:101], many[200:260]):
            again = lead_stub.ScoreLeads(score_request(chunk), timeout=10)
            assert all(by_lead[s.lead_id] == s.model_version for s in again.scores)
        # Promote: version 2 live for everyone; rollback: version 1 again, one call each.
        assert load(stub, "lead_scorer", NO_KEY, version="2", promote=True) == grpc.StatusCode.OK
        response = lead_stub.ScoreLeads(score_request(many[:50]), timeout=10)
        assert {s.model_version for s in response.scores} == {"2"}
        assert load(stub, "lead_scorer", NO_KEY, rollback=True) == grpc.StatusCode.OK
        response = lead_stub.ScoreLeads(score_request(many[:50]), timeout=10)
        assert {s.model_version for s in response.scores} == {"1"}
    text = scrape(port)
    for action in ("shadow", "canary", "promote", "rollback"):
        assert (
            metric_total(text, "leadgw_model_control_actions_total", action=action, outcome="OK")
            == 1
        ), action
    audit = [
        line
        for line in gateway.stderr_text().splitlines()
        if '"leadgw.audit"' in line and '"audit.action"' in line  # control actions, not auth
    ]
    assert len(audit) == 4 and '"audit.action": "rollback"' in audit[-1]


def test_bad_routing_requests_are_refused_with_the_reason(
    two_version_gateway, repository_v1: Path
) -> None:
    model = repository_v1 / "lead_scorer"
    # Version 3: another feature schema (a feature renamed).
    shutil.copytree(model / "2", model / "3")
    config3 = model / "3" / "config.toml"
    config3.write_text(config3.read_text().replace('"existing_accounts"', '"accounts_held"'))
    with grpc.insecure_channel(two_version_gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for weight in ("1.5", "-0.1", "lots"):
            request = oip.RepositoryModelLoadRequest(model_name="lead_scorer")
            request.parameters["version"].string_param = "2"
            request.parameters["canary_weight"].string_param = weight
            with pytest.raises(grpc.RpcError) as refused:
                stub.RepositoryModelLoad(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "[0, 1]" in refused.value.details()
        request = oip.RepositoryModelLoadRequest(model_name="lead_scorer")
        request.parameters["version"].string_param = "3"
        request.parameters["shadow"].bool_param = True
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelLoad(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "feature schema" in refused.value.details()
        assert "accounts_held" in refused.value.details()
        assert load(stub, "lead_scorer", NO_KEY, rollback=True) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        lead_stub = pb_grpc.LeadServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unknown:
            lead_stub.ScoreLeads(score_request(sample_leads(1), model_version="nobody"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "champion" in unknown.value.details()


def test_every_worker_applies_a_control_action_before_it_returns(
    gateway_process, tmp_path: Path, repository_v1: Path, retrained_v2: Path
) -> None:
    model = repository_v1 / "lead_scorer"
    shutil.copytree(retrained_v2, model / "2")
    gateway = gateway_process(
        "--model-repository", str(repository_v1), "--workers", "2",
        "--model-control-mode", "explicit", "--repository-poll-secs", "0.3",
    )  # fmt: skip
    acks = tmp_path / "data" / "model-control"

    def versions_across_connections() -> set[str]:
        seen: set[str] = set()
        for i in range(24):  # new connections: the kernel spreads them over both workers
            with grpc.insecure_channel(
                gateway.address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                response = pb_grpc.LeadServiceStub(channel).ScoreLeads(
                    score_request(sample_leads(2, seed=i)), timeout=10
                )
                seen |= {s.model_version for s in response.scores}
        return seen

    assert versions_across_connections() == {"2"}
    # Both workers served calls: each one's acknowledgement says how long ago its last was.
    wait_until(lambda: all(_idle(acks / f"worker-{i}.json") is not None for i in (0, 1)))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        request = oip.RepositoryModelUnloadRequest(model_name="lead_scorer")
        request.parameters["version"].string_param = "2"
        stub.RepositoryModelUnload(request, timeout=60)
    # Returned: so no worker serves version 2 any more.
    assert versions_across_connections() == {"1"}
    for i in (0, 1):
        assert (acks / f"worker-{i}.json").read_text().count('"lead_scorer": ') >= 1


def _idle(path: Path) -> float | None:
    import json

    try:
        return json.loads(path.read_text())["idle_s"].get("lead_scorer")
    except (OSError, ValueError, KeyError):
        return None


def test_a_summary_scores_its_lead_with_the_version_score_leads_gives_it(
    two_version_gateway,
) -> None:
    """With a canary on, a summary's score comes from the version ScoreLeads picks for that lead
    (sticky by tenant and lead id), not always the live one: the advisor's list and the summary
    agree. No LLM: the marked fallback, which carries the score too."""
    leads = sample_leads(24, seed=3, prefix="S-")
    notes = []
    for lead in leads:
        note = pb.Note(note_id=f"{lead.lead_id}-n1", lead_id=lead.lead_id, kind="call")
        note.text = "Call with the client: plans to retire in 2027 and wants to review pensions."
        note.created_at.FromSeconds(1_760_000_000)
        notes.append(note)
    with grpc.insecure_channel(two_version_gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        lead_stub = pb_grpc.LeadServiceStub(channel)
        profiles = [lead_codec.lead_to_pb(lead) for lead in leads]
        lead_stub.IndexNotes(pb.IndexNotesRequest(notes=notes, leads=profiles), timeout=60)
        assert load(stub, "lead_scorer", NO_KEY, version="2", canary_weight="0.5") == (
            grpc.StatusCode.OK
        )
        scored = lead_stub.ScoreLeads(score_request(leads), timeout=10)
        by_lead = {s.lead_id: s.model_version for s in scored.scores}
        assert set(by_lead.values()) == {"1", "2"}  # both versions among these leads
        summarized = {}
        for lead in leads:
            request = pb.SummarizeLeadRequest(lead_id=lead.lead_id)
            final = [m for m in lead_stub.SummarizeLead(request, timeout=20) if m.HasField("final")]
            summarized[lead.lead_id] = final[-1].final.score.model_version
    assert summarized == by_lead
