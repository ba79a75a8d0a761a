"""A rate-limit refusal is held before it is sent (``rate_refusal_hold_ms``), so that a client
retrying at once cannot turn refusals into a flood: never past the caller's deadline, its retry
delay what remains after the hold, and a bounded number held at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from leads_helpers import sample_leads, score_request

from gateway.auth import hash_key
from gateway.rate_limits import Refusal, RefusalHold
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

SLOW, FREE = "slow-key", "free-key"
KEYS = f"""
[[keys]]
name = "slow-backend"
tenant = "slow"
scopes = ["score"]
sha256 = "{hash_key(SLOW)}"

[[keys]]
name = "free-backend"
tenant = "free"
scopes = ["score"]
sha256 = "{hash_key(FREE)}"

# A request a minute (one token, 62.5 s to refill): every call after the first is refused.
[tenants.slow]
rate_requests_per_s = 0.016
"""
HOLD_MS = 1500


def _retry_delay_ms(error: grpc.RpcError) -> int:
    status = rpc_status.from_call(error)
    assert status is not None
    (detail,) = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return int(info.retry_delay.ToMilliseconds())


@pytest.fixture
def held_gateway(gateway_process, tmp_path: Path):
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(KEYS)
    return gateway_process(
        "--keys-file", str(keys_file), env={"LEADGW_RATE_REFUSAL_HOLD_MS": str(HOLD_MS)}
    )


def test_a_refusal_is_held_and_says_what_remains_to_wait(held_gateway) -> None:
    with grpc.insecure_channel(held_gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        request = score_request(sample_leads(1))
        stub.ScoreLeads(request, metadata=(("x-api-key", SLOW),), timeout=10)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            stub.ScoreLeads(request, metadata=(("x-api-key", SLOW),), timeout=10)
        held_s = time.monotonic() - started
        # Another tenant is neither refused nor held behind the refused call.
        assert stub.ScoreLeads(request, metadata=(("x-api-key", FREE),), timeout=10).scores
    error = refused.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert held_s >= HOLD_MS / 1000  # a lower bound: the hold is a sleep, never shorter
    # Refused right after the first call, the token was ~62.5 s away (sent as 63,000 ms unheld);
    # sent 1.5 to 3 s later, the delay is what remains: at most 61,000 ms.
    delay_ms = _retry_delay_ms(error)
    assert 55_000 <= delay_ms <= 61_000, delay_ms
    assert f"retry in {delay_ms} ms" in error.details()


def test_a_held_refusal_is_sent_before_the_callers_deadline(held_gateway) -> None:
    with grpc.insecure_channel(held_gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        request = score_request(sample_leads(1))
        stub.ScoreLeads(request, metadata=(("x-api-key", SLOW),), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            # The deadline comes before the hold would end: refused, not timed out.
            stub.ScoreLeads(request, metadata=(("x-api-key", SLOW),), timeout=0.6)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()


def test_the_random_part_of_a_hold_never_passes_the_deadline(held_gateway) -> None:
    with grpc.insecure_channel(held_gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        request = score_request(sample_leads(1))
        stub.ScoreLeads(request, metadata=(("x-api-key", SLOW),), timeout=10)
        # The deadline is after the 1.5 s hold but before twice it: each hold would pass it two
        # times in three were its random part not cut.
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ScoreLeads(request, metadata=(("x-api-key", SLOW),), timeout=2.0)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_hold_length_follows_the_deadline_and_the_bound_on_held_calls() -> None:
    hold = RefusalHold(0.05, max_held=2)
    assert hold.seconds_for(None) == 0.05
    assert hold.seconds_for(10.0) == 0.05
    assert hold.seconds_for(0.03) == pytest.approx(0.01)  # 20 ms before the deadline
    assert hold.seconds_for(0.015) == 0.0
    assert RefusalHold(0.0).seconds_for(None) == 0.0  # the setting at 0: sent at once

    async def flood() -> None:
        refusal = Refusal("requests", 0.2, 10.0)
        waiting = [asyncio.create_task(hold.hold(refusal, None)) for _ in range(2)]
        await asyncio.sleep(0)  # both are now held, each waiting for its tick
        assert hold.held == 2
        assert sum(len(waiters) for waiters in hold._ticks.values()) == 2
        assert hold.seconds_for(None) == 0.0  # a third is sent at once
        assert await hold.hold(refusal, None) is refusal
        held = await asyncio.gather(*waiting)
        for after in held:  # held at least 50 ms: at most 150 ms left of the 200 to wait
            assert after.wait_s <= 0.15 and after.reason == "requests" and after.per_s == 10.0
        assert hold.held == 0 and not hold._ticks
        cancelled = asyncio.create_task(hold.hold(refusal, None))
        await asyncio.sleep(0)
        cancelled.cancel()  # the caller went away: no longer counted
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert hold.held == 0

    asyncio.run(flood())


def test_a_refusal_never_asks_for_a_negative_wait() -> None:
    assert Refusal("leads", 0.02, 5.0).after(0.05).wait_s == 0.0
