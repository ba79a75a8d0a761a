"""``leadgw serve --workers N``: N processes share one port and stop together."""

from __future__ import annotations

import re

import grpc
import psutil
from leads_helpers import sample_leads, score_request

from gateway.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc


def test_two_workers_share_the_port_and_stop_gracefully(gateway_process) -> None:
    gateway = gateway_process("--workers", "2")
    assert "with 2 workers" in gateway.ready_line
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", gateway.ready_line)[1].split(", ")]
    port = int(gateway.address.rsplit(":", 1)[1])

    listening = {
        pid
        for pid in pids
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
    }
    assert listening == set(pids), "every worker listens on the same port"

    request = score_request(sample_leads(3))
    for _ in range(10):  # fresh connections, spread by the kernel
        with grpc.insecure_channel(gateway.address) as channel:
            assert len(pb_grpc.LeadServiceStub(channel).ScoreLeads(request, timeout=10).scores) == 3

    assert gateway.stop() == 0
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids
    )
