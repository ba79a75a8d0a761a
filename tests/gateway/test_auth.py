"""API keys, tenants and scopes, through the real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from leads_helpers import sample_leads, score_request

from gateway.auth import hash_key
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

SCORER_KEY = "key-for-acme-scoring"
SUMMARY_KEY = "key-for-beta-summaries"


@pytest.fixture
def keyed_gateway(gateway_process, tmp_path: Path):
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\nname = "acme"\ntenant = "acme"\nscopes = ["score"]\n'
        f'sha256 = "{hash_key(SCORER_KEY)}"\n\n'
        f'[[keys]]\ntenant = "beta"\nscopes = ["summarize"]\nsha256 = "{hash_key(SUMMARY_KEY)}"\n'
    )
    return gateway_process("--keys-file", str(keys))


def _score(address: str, metadata: tuple = ()) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        return len(stub.ScoreLeads(score_request(sample_leads(2)), metadata=metadata).scores)


@pytest.mark.parametrize(
    ("metadata", "status", "words"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED, "missing API key"),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED, "invalid"),
        ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED, "missing API key"),
        ((("authorization", f"Bearer {SUMMARY_KEY}"),), grpc.StatusCode.PERMISSION_DENIED, "score"),
    ],
)
def test_refused(keyed_gateway, metadata, status, words) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _score(keyed_gateway.address, metadata)
    assert caught.value.code() == status
    assert words in caught.value.details()


def test_allowed_with_bearer_or_x_api_key(keyed_gateway) -> None:
    assert _score(keyed_gateway.address, (("authorization", f"Bearer {SCORER_KEY}"),)) == 2
    assert _score(keyed_gateway.address, (("x-api-key", SCORER_KEY),)) == 2


def test_binary_metadata_beside_the_key_is_left_alone(keyed_gateway) -> None:
    """A binary header (``-bin``: bytes, not text) that is not UTF-8, such as a tracing
    context, neither stands for a key nor fails the call."""
    binary = ("trace-context-bin", b"\xff\xfe\x00")
    assert _score(keyed_gateway.address, (binary, ("x-api-key", SCORER_KEY))) == 2
    with pytest.raises(grpc.RpcError) as caught:
        _score(keyed_gateway.address, (binary, ("authorization-bin", b"\xff")))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing API key" in caught.value.details()


def test_health_and_admin_scope(keyed_gateway) -> None:
    with grpc.insecure_channel(keyed_gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "leadgw.v1.LeadService", "inference.GRPCInferenceService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        oip_stub = oip_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            oip_stub.RepositoryIndex(
                oip.RepositoryIndexRequest(), metadata=(("x-api-key", SCORER_KEY),)
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "admin" in caught.value.details()


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_an_unserved_triton_method_needs_a_key_like_the_others(keyed_gateway) -> None:
    """docs/security.md: a method of Triton's service that leadgw does not serve answers
    UNIMPLEMENTED to any valid key, UNAUTHENTICATED without one; ModelStreamInfer, a
    bidirectional stream (which the method wrappers leave as it is), UNIMPLEMENTED to anyone."""
    key = (("x-api-key", SCORER_KEY),)
    with grpc.insecure_channel(keyed_gateway.address) as channel:
        statistics = channel.unary_unary("/inference.GRPCInferenceService/ModelStatistics")
        assert _refusal(lambda: statistics(b"")).code() == grpc.StatusCode.UNAUTHENTICATED
        refused = _refusal(lambda: statistics(b"", metadata=key))
        assert refused.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "ModelStatistics is not implemented by leadgw" in refused.details()
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        refused = _refusal(lambda: list(stream(iter([]))))
        assert refused.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "ModelStreamInfer is not implemented by leadgw" in refused.details()


def test_refuses_to_serve_beyond_loopback_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"LEADGW_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert "without a keys file" in done.stderr


@pytest.mark.parametrize(
    ("tenant", "scopes", "words"),
    [
        ("x", '["fly"]', "unknown scopes"),
        # Served, its key could score but every notes call answered INVALID_ARGUMENT.
        ("acme/../beta", '["score"]', "tenant 'acme/../beta' has characters outside"),
        # A misspelt field: served, the key would have had none of the scopes meant for it.
        ("acme", '["score"]\nscope = ["admin"]', "unknown fields ['scope']"),
        # No scopes: the key would authenticate and be refused every call.
        ("acme", "[]", "scopes is missing or empty"),
    ],
)
def test_bad_keys_file_is_reported(tmp_path: Path, tenant: str, scopes: str, words: str) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[keys]]\ntenant = "{tenant}"\nscopes = {scopes}\nsha256 = "' + "0" * 64 + '"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--keys-file", str(keys)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert words in done.stderr and "entry 1" in done.stderr
