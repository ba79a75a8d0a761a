"""``leadgw serve --workers N``: N processes share one port and stop together."""

from __future__ import annotations

import os
import re

import grpc
import psutil
import pytest
from leads_helpers import sample_leads, score_request

from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as lead_pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


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


def _workers_serving(pids: list[int], port: int) -> set[int]:
    """The workers holding an established connection to the shared port right now."""
    return {
        pid
        for pid in pids
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == port
    }


def test_workers_share_one_embedded_store(gateway_process) -> None:
    gateway = gateway_process("--workers", "2")
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", gateway.ready_line)[1].split(", ")]
    port = int(gateway.address.rsplit(":", 1)[1])
    # Open connections until the kernel has given each worker at least one (bounded).
    channels: list[grpc.Channel] = []
    try:
        while len(channels) < 40:
            # A local subchannel pool: a connection of its own, not the process-wide shared one.
            channel = grpc.insecure_channel(
                gateway.address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            grpc.channel_ready_future(channel).result(timeout=10)
            channels.append(channel)
            if _workers_serving(pids, port) == set(pids):
                break
        assert _workers_serving(pids, port) == set(pids), "the kernel never reached a worker"

        # Each connection writes its own note; every connection then reads every note back.
        for i, channel in enumerate(channels):
            note = lead_pb.Note(
                note_id=f"n{i}", lead_id="lead-1", kind="call", text=f"Call number {i} about bonds."
            )
            reply = pb_grpc.LeadServiceStub(channel).IndexNotes(
                lead_pb.IndexNotesRequest(notes=[note]), timeout=30
            )
            assert reply.added == 1, reply
        expected = {f"n{i}" for i in range(len(channels))}
        for channel in channels:
            hits = pb_grpc.LeadServiceStub(channel).SearchNotes(
                lead_pb.SearchNotesRequest(query="bonds", top_k=len(expected)), timeout=30
            )
            assert {h.note_id for h in hits.hits} == expected
    finally:
        for channel in channels:
            channel.close()

    assert gateway.stop() == 0
    assert "notes and summaries are off" not in gateway.stderr_text()


def test_workers_default_to_one_per_usable_core() -> None:
    assert Settings().workers == min(64, len(os.sched_getaffinity(0)))
    assert Settings(workers=1).workers == 1


def test_one_metrics_endpoint_carries_every_workers_series(gateway_process) -> None:
    """A scraper sees one target per gateway, with each worker's series labelled by worker."""
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    # Port 0: the supervisor binds a free port itself and names it (a port probed here and
    # released could be taken again before the gateway binds it).
    gateway = gateway_process("--workers", "2", "--metrics-port", "0")
    found = re.search(
        r"metrics of every worker on http://127\.0\.0\.1:(\d+)/metrics", gateway.stderr_text()
    )
    assert found, gateway.stderr_text()
    port = int(found[1])
    assert port != 0
    seen: set[str] = set()
    every = {"0", "1", "2"}  # the two workers, and the summaries process after them
    deadline = time.monotonic() + 30
    while seen != every and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        seen = {s.labels["worker"] for s in families["process_cpu_seconds"].samples}
        time.sleep(0.2)
    assert seen == every


def test_workers_stop_when_their_supervisor_is_killed(gateway_process) -> None:
    """SIGKILL of the supervisor must not leave workers serving the port on their own."""
    import signal
    import time

    gateway = gateway_process("--workers", "2")
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", gateway.ready_line)[1].split(", ")]
    os.kill(gateway.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        time.sleep(0.2)
    assert not alive, f"workers {alive} outlived their supervisor"


def _threads_cpus(pid: int) -> dict[int, set[int]]:
    return {thread.id: os.sched_getaffinity(thread.id) for thread in psutil.Process(pid).threads()}


def test_pinned_workers_run_every_thread_on_a_cpu_of_their_own(gateway_process) -> None:
    """``--pin-workers on``: worker i and every thread it has (gRPC's, ONNX Runtime's, numpy's
    BLAS pool started on import, before the pinning) may run on the i-th usable CPU only; the
    ready line says which."""
    gateway = gateway_process("--workers", "2", "--pin-workers", "on")
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", gateway.ready_line)[1].split(", ")]
    cpus = sorted(os.sched_getaffinity(0))
    expected = [cpus[i % len(cpus)] for i in range(2)]
    assert f"pinned to CPUs {expected[0]}, {expected[1]} and a summaries" in gateway.ready_line
    for pid, cpu in zip(pids, expected, strict=True):
        threads = _threads_cpus(pid)
        assert len(threads) > 5  # the loop's thread and the ones started around it
        assert set(map(frozenset, threads.values())) == {frozenset({cpu})}
    # The summaries process is not pinned: it takes whichever core the workers leave.
    summaries = int(re.search(r"summaries process \(pid (\d+)\)", gateway.ready_line)[1])
    every_cpu = frozenset(os.sched_getaffinity(0))
    assert set(map(frozenset, _threads_cpus(summaries).values())) == {every_cpu}
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        assert len(stub.ScoreLeads(score_request(sample_leads(2)), timeout=10).scores) == 2
    assert gateway.stop() == 0


def test_workers_told_not_to_pin_may_run_on_every_cpu(gateway_process) -> None:
    gateway = gateway_process("--workers", "2", "--pin-workers", "off")
    assert "pinned" not in gateway.ready_line
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", gateway.ready_line)[1].split(", ")]
    for pid in pids:
        threads = _threads_cpus(pid)
        assert set(map(frozenset, threads.values())) == {frozenset(os.sched_getaffinity(0))}
