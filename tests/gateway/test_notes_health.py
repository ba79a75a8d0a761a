"""``leadgw.notes`` follows the store; scoring and the other health names never do."""

from __future__ import annotations

import os
import re
import signal
import time

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from leads_helpers import sample_leads, score_request

from gateway.notes_health import NOTES_HEALTH_NAME
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
API_NAMES = ("", "leadgw.v1.LeadService", "inference.GRPCInferenceService")


def status(channel: grpc.Channel, name: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status


def wait_for(channel: grpc.Channel, name: str, wanted: int, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while status(channel, name) != wanted:
        assert time.monotonic() < deadline, f"{name} never became {wanted}"
        time.sleep(0.2)


async def test_notes_health_serves_while_the_store_answers(inproc_gateway) -> None:
    async with grpc.aio.insecure_channel(inproc_gateway.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in (*API_NAMES, NOTES_HEALTH_NAME):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == SERVING, name


@pytest.mark.slow
def test_a_hung_store_turns_notes_not_serving_and_scoring_keeps_serving(gateway_process) -> None:
    gateway = gateway_process("--workers", "2")
    workers = {int(p) for p in re.search(r"pids ([\d, ]+)\)", gateway.ready_line)[1].split(", ")}
    workers.add(int(re.search(r"summaries process \(pid (\d+)\)", gateway.ready_line)[1]))
    children = psutil.Process(gateway.process.pid).children()
    (host,) = [
        c
        for c in children
        if c.pid not in workers and "resource_tracker" not in " ".join(c.cmdline())
    ]
    with grpc.insecure_channel(gateway.address) as channel:
        wait_for(channel, NOTES_HEALTH_NAME, SERVING)
        os.kill(host.pid, signal.SIGSTOP)
        try:
            wait_for(channel, NOTES_HEALTH_NAME, NOT_SERVING)
            for name in API_NAMES:
                assert status(channel, name) == SERVING, name
            stub = pb_grpc.LeadServiceStub(channel)
            reply = stub.ScoreLeads(score_request(sample_leads(3)), timeout=10)
            assert len(reply.scores) == 3
            # A notes call without a client deadline still ends, refused, inside the store's
            # own call timeout.
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as error:
                stub.SearchNotes(pb.SearchNotesRequest(query="retirement"))
            assert error.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            assert time.monotonic() - started < 60
        finally:
            os.kill(host.pid, signal.SIGCONT)
        wait_for(channel, NOTES_HEALTH_NAME, SERVING)


async def test_stop_returns_even_when_a_check_swallows_its_cancellation() -> None:
    """A stop during a store call that eats the cancellation must not hang the shutdown."""
    import asyncio

    from grpc_health.v1 import health

    from gateway.notes_health import NotesHealthProbe

    calls = 0

    async def stubborn_check() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # swallowed: the task goes on to its next turn

    probe = NotesHealthProbe(stubborn_check, health.aio.HealthServicer(), interval_s=0.01)
    await probe.start()
    while calls < 2:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(probe.stop(), timeout=10)


async def test_the_log_names_changes_of_the_stores_health_not_the_first_answer(caplog) -> None:
    """A store that answers at start-up is not "back": only a change is logged, once."""
    from grpc_health.v1 import health

    from gateway.notes_health import NotesHealthProbe
    from runtimes.errors import Unavailable

    answers = [True, True, False, False, True]

    async def check() -> None:
        if not answers.pop(0):
            raise Unavailable("the notes store is closed")

    servicer = health.aio.HealthServicer()
    probe = NotesHealthProbe(check, servicer, interval_s=3600)
    with caplog.at_level("INFO", logger="gateway.notes_health"):
        await probe.start()  # the first probe
        for _ in range(4):
            await probe.probe()
        await probe.stop()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"notes store down: {NOTES_HEALTH_NAME} NOT_SERVING (the notes store is closed)",
        ),
        ("INFO", f"notes store answers again: {NOTES_HEALTH_NAME} SERVING"),
    ]
