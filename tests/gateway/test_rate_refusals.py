"""What a rate-limit refusal carries now that the requests/s limit refuses before decoding and
before the span: RetryInfo, the deprecated trailer, the rejection and RPC metrics; a leads/s
refusal gives its request token back; retry delays are rounded up into shared buckets."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from leads_helpers import sample_leads, score_request

from gateway.auth import hash_key
from gateway.rate_limits import Refusal, RefusalStatuses, retry_ms
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

FLOOD, BOTH = "flood-key", "both-key"
KEYS = f"""
[[keys]]
name = "flood-backend"
tenant = "flood"
scopes = ["score"]
sha256 = "{hash_key(FLOOD)}"

[[keys]]
name = "both-backend"
tenant = "both"
scopes = ["score"]
sha256 = "{hash_key(BOTH)}"

# A request a minute: every call after the first is refused however slow the machine is.
[tenants.flood]
rate_requests_per_s = 0.016

# With rate_burst_s = 60: 3 requests a minute, and 6 leads (0.1 a second) that a 25-lead call
# leaves 19 in debt (over 3 minutes to repay).
[tenants.both]
rate_requests_per_s = 0.05
rate_leads_per_s = 0.1
"""


def _call(stub: pb_grpc.LeadServiceStub, key: str, leads: int = 1) -> grpc.RpcError | None:
    try:
        stub.ScoreLeads(
            score_request(sample_leads(leads)), metadata=(("x-api-key", key),), timeout=10
        )
    except grpc.RpcError as error:
        return error
    return None


def _metrics_page(gateway) -> str:
    port = None
    for _ in range(100):
        match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", gateway.stderr_text())
        if match:
            port = int(match[1])
            break
        time.sleep(0.05)
    assert port is not None, gateway.stderr_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def _count(page: str, metric: str, *labels: str) -> float:
    found = [
        line
        for line in page.splitlines()
        if line.startswith(metric + "{") and all(label in line for label in labels)
    ]
    assert len(found) == 1, (metric, labels, found)
    return float(found[0].rsplit(" ", 1)[1])


def test_a_flood_of_refusals_carries_retry_info_and_is_counted_as_rejections_and_rpcs(
    gateway_process, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(KEYS)
    gateway = gateway_process("--keys-file", str(keys_file), "--metrics-port", "0")
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        answers = [_call(stub, FLOOD) for _ in range(20)]
    assert answers[0] is None
    refused = answers[1:]
    delays = set()
    for error in refused:
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant 'flood'" in error.details() and "0.016 requests/s" in error.details()
        status = rpc_status.from_call(error)
        assert status is not None and status.message == error.details()
        (detail,) = status.details
        info = error_details_pb2.RetryInfo()
        assert detail.Unpack(info)
        delay_ms = info.retry_delay.ToMilliseconds()
        # About a minute away (one token at 0.016/s), never less than the bucket needs.
        assert 30_000 <= delay_ms <= 63_000
        trailers = dict(error.trailing_metadata())
        assert int(trailers["retry-after-ms"]) == delay_ms  # deprecated, kept for one release
        assert f"retry in {delay_ms} ms" in error.details()
        delays.add(delay_ms)
    assert len(delays) <= 3  # rounded up into 1 s buckets past 10 s: the statuses are shared
    page = _metrics_page(gateway)
    rejections = _count(page, "leadgw_rejections_total", 'tenant="flood"', 'reason="rate_requests"')
    assert rejections == 19
    # No span for a refusal taken before decoding, but the RPC metrics still count it.
    exhausted = _count(
        page,
        "rpc_server_duration_milliseconds_count",
        'rpc_method="ScoreLeads"',
        'rpc_grpc_status_code="8"',
    )
    assert exhausted == 19
    ok = _count(
        page,
        "rpc_server_duration_milliseconds_count",
        'rpc_method="ScoreLeads"',
        'rpc_grpc_status_code="0"',
    )
    assert ok == 1


def test_a_leads_refusal_gives_its_request_token_back(gateway_process, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(KEYS)
    gateway = gateway_process(
        "--keys-file", str(keys_file), "--metrics-port", "0", env={"LEADGW_RATE_BURST_S": "60"}
    )
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        assert _call(stub, BOTH, leads=25) is None  # the whole lead bucket and 19 of debt
        # Two request tokens are left. Were a leads refusal to keep the call's request token,
        # the third call here would be refused for requests/s; each is refused for leads/s.
        errors = [_call(stub, BOTH) for _ in range(4)]
    for error in errors:
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "leads/s" in error.details(), error.details()
    page = _metrics_page(gateway)
    assert _count(page, "leadgw_rejections_total", 'tenant="both"', 'reason="rate_leads"') == 4


def test_retry_delays_are_rounded_up_into_buckets() -> None:
    for wait_s in (0.0001, 0.0031, 0.05, 0.0999, 0.1004, 0.4567, 1.2345, 9.87, 61.2, 3600.4):
        assert retry_ms(wait_s) >= wait_s * 1000  # a retry after the delay passes
    assert [retry_ms(w) for w in (0.0001, 0.0031, 0.1, 0.1004, 0.4561, 1.2301, 61.2)] == [
        1,
        4,
        100,
        110,
        460,
        1300,
        62000,
    ]


def test_a_refusal_status_is_built_once_per_delay_bucket() -> None:
    statuses = RefusalStatuses(size=4)
    first = statuses.of("a", Refusal("requests", 0.0042, 100.0))
    assert statuses.of("a", Refusal("requests", 0.00401, 100.0)) is first  # both 5 ms
    assert statuses.of("a", Refusal("requests", 0.0062, 100.0)) is not first
    assert statuses.of("b", Refusal("requests", 0.0042, 100.0))[0].startswith("tenant 'b'")
    message, trailers = first
    assert message == "tenant 'a' is over its rate limit of 100 requests/s; retry in 5 ms"
    assert dict(trailers)["retry-after-ms"] == "5"
    for n in range(10):  # bounded: past its size it starts again
        statuses.of("a", Refusal("requests", n, 100.0))
    assert len(statuses._built) <= 4
