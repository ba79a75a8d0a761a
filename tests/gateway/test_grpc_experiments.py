"""``grpc_experiments``: chosen before grpc starts in a gateway process, and in effect there."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grpc
import pytest
from leads_helpers import sample_leads, score_request
from pydantic import ValidationError

from gateway import grpc_experiments
from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc


def test_the_setting_is_a_comma_separated_list_of_experiment_names() -> None:
    assert Settings(grpc_experiments=" -event_engine_client , v3_x ").grpc_experiments == (
        "-event_engine_client,v3_x"
    )
    assert Settings(grpc_experiments="").grpc_experiments == ""
    for bad in ("-Event_engine", "a;b", "--a", "a,,b", "event engine"):
        with pytest.raises(
            ValidationError, match=r"grpc_experiments: .* is not an experiment name"
        ):
            Settings(grpc_experiments=bad)


def test_apply_sets_the_variable_only_before_grpc_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    environ: dict[str, str] = {}
    assert not grpc_experiments.apply("-a", environ), "grpc is imported in this process"
    assert environ == {}

    monkeypatch.delitem(sys.modules, "grpc")  # as in `leadgw serve` before it imports the server
    assert not grpc_experiments.apply("", environ), "empty: grpc's own defaults"
    assert grpc_experiments.in_effect(environ) == "grpc's defaults"
    assert grpc_experiments.apply("-a,b", environ)
    assert environ == {"GRPC_EXPERIMENTS": "-a,b"}
    assert grpc_experiments.in_effect(environ) == "-a,b"

    operators = {"GRPC_EXPERIMENTS": "c"}  # grpc's own variable, set on purpose, wins
    assert not grpc_experiments.apply("-a", operators)
    assert operators == {"GRPC_EXPERIMENTS": "c"}


def _event_engine_cpu_ns(pid: int) -> int:
    """CPU time of the process's threads named ``event_engine`` (grpc's EventEngine pool)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "event_engine":
                total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread ended
            continue
    return total


def _event_engine_cpu_over_calls(gateway, calls: int = 300) -> int:
    request = score_request(sample_leads(1))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        stub.ScoreLeads(request, timeout=10)  # connected and warm
        before = _event_engine_cpu_ns(gateway.process.pid)
        for _ in range(calls):
            assert len(stub.ScoreLeads(request, timeout=10).scores) == 1
        return _event_engine_cpu_ns(gateway.process.pid) - before


@pytest.mark.slow
def test_by_default_grpcs_event_engine_threads_do_no_work_per_call(gateway_process) -> None:
    """The default turns off the EventEngine client and listener: a call's socket I/O stays on
    grpc's poller thread instead of hopping through EventEngine's threads. With grpc's own
    defaults (an empty setting) those threads work on every call."""
    tuned = gateway_process()
    stock = gateway_process(env={"LEADGW_GRPC_EXPERIMENTS": ""})
    assert "gRPC experiments: -event_engine_client,-event_engine_listener" in tuned.stderr_text()
    assert "gRPC experiments: grpc's defaults" in stock.stderr_text()

    tuned_ns = _event_engine_cpu_over_calls(tuned)
    stock_ns = _event_engine_cpu_over_calls(stock)
    assert stock_ns > 0, "with grpc's defaults, EventEngine's threads carry each call"
    assert tuned_ns < stock_ns / 4, (tuned_ns, stock_ns)


@pytest.mark.slow
def test_workers_inherit_the_experiments(gateway_process) -> None:
    gateway = gateway_process("--workers", "2")
    lines = re.findall(r"gRPC experiments: ([^\"\n]*)", gateway.stderr_text())
    # Both workers and the summaries process (each is ready before the ready line).
    assert lines == ["-event_engine_client,-event_engine_listener"] * 3, lines
