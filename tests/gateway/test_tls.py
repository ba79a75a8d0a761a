"""TLS and mTLS on the gRPC port, certificate rotation, and the refusal of keys in clear."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from leads_helpers import sample_leads, score_request
from tls_certs import TestCA

from gateway.auth import hash_key
from gateway.settings import Settings
from gateway.tls import check_transport
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


def _score(channel: grpc.Channel) -> int:
    stub = pb_grpc.LeadServiceStub(channel)
    return len(stub.ScoreLeads(score_request(sample_leads(2)), timeout=10).scores)


def _tls_channel(address: str, ca: TestCA, client=None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=None if client is None else client.key_pem,
        certificate_chain=None if client is None else client.cert_pem,
    )
    return grpc.secure_channel(address, credentials)


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_tls_client_connects_and_plaintext_is_refused(gateway_process, tmp_path: Path) -> None:
    ca = TestCA()
    cert, key = ca.server().write(tmp_path / "tls", "server")
    gateway = gateway_process("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    with _tls_channel(gateway.address, ca) as channel:
        assert _score(channel) == 2
    with grpc.insecure_channel(gateway.address) as plaintext:
        assert _refused(lambda: _score(plaintext)).code() == grpc.StatusCode.UNAVAILABLE
    with _tls_channel(gateway.address, TestCA("a CA the server does not use")) as untrusting:
        assert _refused(lambda: _score(untrusting)).code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_clients_without_a_certificate_from_the_client_ca(
    gateway_process, tmp_path: Path
) -> None:
    server_ca, client_ca = TestCA("server CA"), TestCA("client CA")
    cert, key = server_ca.server().write(tmp_path / "tls", "server")
    gateway = gateway_process(
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-client-ca-file",
        str(client_ca.write(tmp_path / "tls" / "clients.pem")),
    )
    with _tls_channel(gateway.address, server_ca) as anonymous:
        assert _refused(lambda: _score(anonymous)).code() == grpc.StatusCode.UNAVAILABLE
    stranger = TestCA("another CA").client()
    with _tls_channel(gateway.address, server_ca, stranger) as foreign:
        assert _refused(lambda: _score(foreign)).code() == grpc.StatusCode.UNAVAILABLE
    with _tls_channel(gateway.address, server_ca, client_ca.client()) as member:
        assert _score(member) == 2


def test_cli_commands_speak_tls_and_mtls(gateway_process, tmp_path: Path) -> None:
    server_ca, client_ca = TestCA("server CA"), TestCA("client CA")
    folder = tmp_path / "tls"
    cert, key = server_ca.server().write(folder, "server")
    client_cert, client_key = client_ca.client().write(folder, "client")
    gateway = gateway_process(
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-client-ca-file",
        str(client_ca.write(folder / "clients.pem")),
    )
    ca_file = server_ca.write(folder / "server-ca.pem")

    def leadgw(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", "models", "--address", gateway.address]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
        )

    served = leadgw("--ca", str(ca_file), "--cert", str(client_cert), "--key", str(client_key))
    assert served.returncode == 0, served.stderr
    assert "lead_scorer" in served.stdout
    without_cert = leadgw("--ca", str(ca_file))
    assert without_cert.returncode != 0
    half = leadgw("--ca", str(ca_file), "--cert", str(client_cert))
    assert half.returncode == 2
    assert "--cert and --key go together" in half.stderr


async def test_rotated_certificate_reaches_new_connections_without_dropping_open_calls(
    tmp_path: Path,
) -> None:
    from gateway.server import start

    folder = tmp_path / "tls"
    old_ca, new_ca = TestCA("old CA"), TestCA("new CA")
    cert, key = old_ca.server().write(folder, "server")
    settings = Settings(
        port=0,
        data_dir=tmp_path / "data",
        load_demo_corpus=False,
        tls_cert_file=cert,
        tls_key_file=key,
    )
    gateway = await start(settings)
    address = f"127.0.0.1:{gateway.port}"
    request = score_request(sample_leads(2))

    def channel(ca: TestCA) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca.cert_pem))

    try:
        async with channel(old_ca) as before, channel(new_ca) as too_early:
            # A call in flight across the rotation: a health watch stream on the old connection.
            watch = health_pb2_grpc.HealthStub(before).Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.LeadServiceStub(too_early).ScoreLeads(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

            new_ca_server = new_ca.server()
            new_ca_server.write(folder, "server")  # replaced by renames, as a deployment would

            async with channel(new_ca) as after, channel(old_ca) as stale:
                scores = await pb_grpc.LeadServiceStub(after).ScoreLeads(request, timeout=5)
                assert len(scores.scores) == 2
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await pb_grpc.LeadServiceStub(stale).ScoreLeads(request, timeout=5)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            # The connection made before the rotation still serves, stream and new calls alike.
            await gateway.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            again = await pb_grpc.LeadServiceStub(before).ScoreLeads(request, timeout=5)
            assert len(again.scores) == 2
            watch.cancel()
    finally:
        await gateway.stop(grace=1.0, drain=0)


def test_keys_in_clear_off_loopback_are_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[keys]]\ntenant = "a"\nscopes = ["score"]\nsha256 = "{hash_key("k")}"\n')
    command = [sys.executable, "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(
        [*command, "--keys-file", str(keys)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"LEADGW_DATA_DIR": str(tmp_path), "LEADGW_WORKERS": "1", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "without TLS" in done.stderr and "ALLOW_INSECURE_KEYS_OFF_LOOPBACK" in done.stderr


def test_the_insecure_opt_out_is_logged_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = tmp_path / "keys.toml"
    common = {"host": "10.0.0.1", "keys_file": keys, "data_dir": tmp_path}
    with pytest.raises(ValueError, match="without TLS"):
        check_transport(Settings(**common))
    with caplog.at_level(logging.ERROR, logger="gateway.tls"):
        check_transport(Settings(**common, allow_insecure_keys_off_loopback=True))
    assert any("INSECURE" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def _health_port(gateway) -> int:
    """The port the gateway's log line says its health server bound (it was asked for port 0:
    a port probed free and released here could be taken again before the gateway binds it)."""
    import re

    log = gateway.stderr_text()
    match = re.search(r"health service in plaintext on [^\s:]+:(\d+)", log)
    assert match, log
    return int(match[1])


def test_probes_reach_health_in_plaintext_on_the_health_port_and_nothing_else(
    gateway_process, tmp_path: Path
) -> None:
    """Kubelet's gRPC probes cannot speak TLS; the health port serves them the same statuses."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ca = TestCA()
    cert, key = ca.server().write(tmp_path / "tls", "server")
    gateway = gateway_process(
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        env={"LEADGW_HEALTH_PORT": "0"},
    )
    health_port = _health_port(gateway)
    assert health_port not in (0, int(gateway.address.rsplit(":", 1)[1]))
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as plaintext:
        check = health_pb2_grpc.HealthStub(plaintext).Check
        for name in ("", "leadgw.v1.LeadService"):
            reply = check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        # Only health: the API is not reachable in plaintext through it.
        assert _refused(lambda: _score(plaintext)).code() == grpc.StatusCode.UNIMPLEMENTED
    with _tls_channel(gateway.address, ca) as channel:
        assert _score(channel) == 2
