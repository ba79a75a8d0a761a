"""The gateway's Prometheus endpoint, scraped over HTTP on loopback after real traffic."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import grpc
from leads_helpers import sample_leads, score_request

from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc


def _metrics_port(gateway) -> int:
    for _ in range(100):
        match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", gateway.stderr_text())
        if match:
            return int(match[1])
        time.sleep(0.05)
    raise AssertionError(gateway.stderr_text())


def _scrape(port: int) -> tuple[str, list[str], dict[str, str]]:
    """The metrics text, its RPC count lines, and ScoreLeads' count line by status code."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts = [
        line for line in text.splitlines() if "rpc_server_duration_milliseconds_count" in line
    ]
    by_status = {
        re.search(r'rpc_grpc_status_code="(\d+)"', line)[1]: line
        for line in counts
        if 'rpc_method="ScoreLeads"' in line
    }
    return text, counts, by_status


def test_metrics_and_json_logs_after_traffic(gateway_process) -> None:
    gateway = gateway_process("--metrics-port", "0", env={"LEADGW_LOAD_DEMO_CORPUS": "true"})
    port = _metrics_port(gateway)
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        stub.ScoreLeads(score_request(sample_leads(3)), timeout=10)
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for _ in stub.SummarizeLead(
            pb.SummarizeLeadRequest(lead_id="demo-0003"),
            timeout=20,
            metadata=(("traceparent", traceparent),),
        ):
            pass
        try:
            stub.ScoreLeads(pb.ScoreLeadsRequest(), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The server sends an aborted RPC's status before it records the RPC, so the scrape may run
    # a moment before the refused ScoreLeads is counted: scrape until it is (bounded).
    deadline = time.monotonic() + 10
    while True:
        text, counts, by_status = _scrape(port)
        if "3" in by_status or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for name in (
        "rpc_server_duration_milliseconds_count",
        "leadgw_batch_size",
        "leadgw_model_execution_duration_milliseconds",
        "leadgw_batcher_queue_wait_milliseconds",
        "leadgw_batcher_queue_depth",
        # The process's own health, beside leadgw's series.
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
        "python_info",
    ):
        assert name in text, name
    assert by_status["0"].endswith(" 1.0") and by_status["3"].endswith(" 1.0")
    assert any('rpc_method="SummarizeLead"' in line for line in counts)
    # Every log line the server wrote is a JSON record.
    records = [json.loads(line) for line in gateway.stderr_text().splitlines() if line.strip()]
    assert records and all("level" in r and "message" in r for r in records)
