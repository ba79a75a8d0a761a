"""Per-tenant rate limits, RetryInfo on refusal, rejection metrics and the audit log, through
the real server."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from leads_helpers import sample_leads, score_request

from gateway.auth import DEFAULT_TENANT, hash_key
from gateway.key_reload import ReloadingKeyStore
from gateway.rate_limits import RateLimiter
from gateway.server import _rate_limiter
from gateway.settings import Settings
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from retrieval.summary.limits import TenantLimiter
from runtimes.errors import ResourceExhausted

FLOOD, CALM, BULK, READER = "flood-key", "calm-key", "bulk-key", "reader-key"
KEYS = f"""
[[keys]]
name = "flood-backend"
tenant = "flood"
scopes = ["score"]
sha256 = "{hash_key(FLOOD)}"

[[keys]]
name = "calm-backend"
tenant = "calm"
scopes = ["score"]
sha256 = "{hash_key(CALM)}"

[[keys]]
name = "bulk-backend"
tenant = "bulk"
scopes = ["score"]
sha256 = "{hash_key(BULK)}"

[[keys]]
name = "reader-app"
tenant = "calm"
scopes = ["summarize"]
sha256 = "{hash_key(READER)}"

# A request a minute: a second call is refused however slow the machine is.
[tenants.flood]
rate_requests_per_s = 0.016

# Two leads a second: a 25-lead call's debt takes over 10 s to repay, however slow the machine.
[tenants.bulk]
rate_leads_per_s = 2
"""


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    return path


def _call(stub: pb_grpc.LeadServiceStub, key: str, leads: int = 1) -> grpc.RpcError | None:
    try:
        stub.ScoreLeads(
            score_request(sample_leads(leads)), metadata=(("x-api-key", key),), timeout=10
        )
    except grpc.RpcError as error:
        return error
    return None


def _retry_info(error: grpc.RpcError) -> error_details_pb2.RetryInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    return info


def _scrape_rejections(gateway) -> list[str]:
    port = None
    for _ in range(100):
        match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", gateway.stderr_text())
        if match:
            port = int(match[1])
            break
        time.sleep(0.05)
    assert port is not None, gateway.stderr_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return [line for line in text.splitlines() if line.startswith("leadgw_rejections_total{")]


def test_flooding_tenant_is_refused_with_retry_info_while_another_tenant_is_not(
    gateway_process, keys_file
) -> None:
    gateway = gateway_process("--keys-file", str(keys_file), "--metrics-port", "0")
    flood_errors: list[grpc.RpcError | None] = []
    calm_errors: list[grpc.RpcError | None] = []
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        for _ in range(30):  # bounded: interleaved, so both tenants call at the same time
            flood_errors.append(_call(stub, FLOOD))
            calm_errors.append(_call(stub, CALM))
    assert calm_errors == [None] * 30
    assert flood_errors[0] is None
    refused = [e for e in flood_errors if e is not None]
    assert len(refused) == 29
    first = refused[0]
    assert first.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "'flood'" in first.details() and "requests/s" in first.details()
    delay = _retry_info(first).retry_delay
    assert delay.seconds > 0 or delay.nanos > 0
    trailers = dict(first.trailing_metadata())
    assert int(trailers["retry-after-ms"]) > 0  # deprecated, kept for one release
    lines = _scrape_rejections(gateway)
    flood_line = [line for line in lines if 'tenant="flood"' in line]
    assert len(flood_line) == 1 and 'reason="rate_requests"' in flood_line[0]
    assert flood_line[0].endswith(" 29.0")
    assert not any('tenant="calm"' in line for line in lines)


def test_leads_per_second_limit(gateway_process, keys_file) -> None:
    gateway = gateway_process("--keys-file", str(keys_file))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        # Bigger than the bucket (2 leads): passes when the bucket is full, leaving it in debt.
        assert _call(stub, BULK, leads=25) is None
        error = _call(stub, BULK, leads=1)
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "leads/s" in error.details()
    assert _retry_info(error).retry_delay.seconds >= 5  # ~23 leads of debt at 2 a second


def test_limit_holds_for_the_gateway_not_per_worker(gateway_process, keys_file) -> None:
    gateway = gateway_process("--keys-file", str(keys_file), "--workers", "2")
    answers = []
    for _ in range(12):  # fresh connections: the kernel spreads them over both workers
        own_connection = (("grpc.use_local_subchannel_pool", 1),)
        with grpc.insecure_channel(gateway.address, options=own_connection) as channel:
            answers.append(_call(pb_grpc.LeadServiceStub(channel), FLOOD))
    assert sum(1 for a in answers if a is None) == 1
    assert all(a.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for a in answers if a is not None)


def test_audit_log_records_decisions_and_never_the_key(gateway_process, keys_file) -> None:
    gateway = gateway_process("--keys-file", str(keys_file))
    wrong = "not-a-key-anyone-has"
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        assert _call(stub, CALM) is None
        assert _call(stub, wrong).code() == grpc.StatusCode.UNAUTHENTICATED
        assert _call(stub, READER).code() == grpc.StatusCode.PERMISSION_DENIED
    deadline = time.monotonic() + 10
    while gateway.stderr_text().count('"leadgw.audit"') < 3:
        assert time.monotonic() < deadline, gateway.stderr_text()
        time.sleep(0.05)
    text = gateway.stderr_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    audit = [r for r in records if r["logger"] == "leadgw.audit"]
    method = "/leadgw.v1.LeadService/ScoreLeads"
    allowed, unknown, no_scope = audit
    assert (allowed["audit"], allowed["tenant"], allowed["key_name"], allowed["method"]) == (
        "allowed",
        "calm",
        "calm-backend",
        method,
    )
    assert (unknown["audit"], unknown["reason"], unknown["tenant"]) == (
        "denied",
        "unauthenticated",
        "",
    )
    assert (no_scope["audit"], no_scope["reason"], no_scope["key_name"]) == (
        "denied",
        "permission_denied",
        "reader-app",
    )
    assert all(r["peer"] for r in audit)
    for secret in (CALM, wrong, READER, hash_key(CALM), hash_key(wrong), hash_key(READER)):
        assert secret not in text


def test_a_tenant_summary_limit_overrides_the_default() -> None:
    refused: list[str] = []
    limiter = TenantLimiter(
        2, limit_for=lambda t: 1 if t == "small" else None, on_refused=refused.append
    )
    small = pytest.raises(ResourceExhausted, match="runs 1 summaries")
    with limiter.slot("small"), small, limiter.slot("small"):
        pass
    other = pytest.raises(ResourceExhausted, match="runs 2 summaries")
    with limiter.slot("other"), limiter.slot("other"), other, limiter.slot("other"):
        pass
    assert refused == ["small", "other"]


def test_without_a_keys_file_nothing_is_audited(gateway_process) -> None:
    """No keys file: no authentication decision, so no audit line on every request."""
    gateway = gateway_process()
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        for _ in range(3):
            stub.ScoreLeads(score_request(sample_leads(1)), timeout=10)
    assert '"leadgw.audit"' not in gateway.stderr_text()


def test_the_limiter_is_left_out_only_when_nothing_can_ever_be_limited(
    tmp_path: Path, keys_file: Path
) -> None:
    """No default rate and no keys file: no call can be limited, so the rate-limit wrappers get
    no limiter and leave the chain (they cost ~80 µs a call for checking that nothing is
    limited). A default rate, or a keys file (whose reloads may bring a tenant's own), keeps it."""
    data = tmp_path / "data"
    assert _rate_limiter(Settings(data_dir=data), None, None) is None
    for settings in (
        Settings(data_dir=data, rate_requests_per_s=5),
        Settings(data_dir=data, rate_leads_per_s=5),
    ):
        assert isinstance(_rate_limiter(settings, None, None), RateLimiter)
    keys = ReloadingKeyStore.from_file(keys_file)
    assert isinstance(_rate_limiter(Settings(data_dir=data), keys, None), RateLimiter)


def test_a_default_rate_limits_callers_without_a_keys_file(gateway_process) -> None:
    gateway = gateway_process(env={"LEADGW_RATE_REQUESTS_PER_S": "0.016"})
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        errors = [_call(stub, "no keys file: ignored") for _ in range(3)]
    assert errors[0] is None
    assert [e.code() if e else None for e in errors[1:]] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    assert f"'{DEFAULT_TENANT}'" in errors[1].details()


def test_a_limit_a_reloaded_keys_file_brings_applies(gateway_process, tmp_path: Path) -> None:
    """A keys file with no limits at start: its tenant is limited once a reload brings one."""
    path = tmp_path / "keys.toml"
    unlimited = KEYS.split("# A request a minute")[0]
    path.write_text(unlimited)
    gateway = gateway_process("--keys-file", str(path))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        assert [_call(stub, FLOOD) for _ in range(3)] == [None] * 3
        aside = path.with_suffix(".tmp")  # written aside and renamed over, as a deployment does
        aside.write_text(KEYS)
        aside.replace(path)
        deadline = time.monotonic() + 20  # the reload is polled; generous for a loaded machine
        while (error := _call(stub, FLOOD)) is None:
            assert time.monotonic() < deadline, "the reloaded limit never applied"
            time.sleep(0.05)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "'flood'" in error.details()
