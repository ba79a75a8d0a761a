"""RepositoryModelLoad / RepositoryModelUnload through the real server, from tritonclient and
from the generated stubs; and the poll mode picking up the repository's changes by itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from gateway.auth import hash_key
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from tests.gateway.leads_helpers import sample_leads, score_request

HERE = Path(__file__).resolve().parent
ADMIN_KEY = "key-for-the-platform-team"
SCORER_KEY = "key-for-a-backend"
ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)


def tritonclient(address: str, api_key: str, *calls: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(HERE / "tritonclient_control.py"), address, api_key, *calls],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(done.stdout)


def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[keys]]\nname = "platform"\ntenant = "acme"\nscopes = ["score", "admin"]\n'
        f'sha256 = "{hash_key(ADMIN_KEY)}"\n\n'
        f'[[keys]]\nname = "backend"\ntenant = "acme"\nscopes = ["score"]\n'
        f'sha256 = "{hash_key(SCORER_KEY)}"\n'
    )
    return path


def load(stub, model: str, metadata=ADMIN, **params: object) -> grpc.StatusCode:
    request = oip.RepositoryModelLoadRequest(model_name=model)
    _set_params(request, params)
    try:
        stub.RepositoryModelLoad(request, metadata=metadata, timeout=60)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def unload(stub, model: str, **params: object) -> grpc.StatusCode:
    request = oip.RepositoryModelUnloadRequest(model_name=model)
    _set_params(request, params)
    try:
        stub.RepositoryModelUnload(request, metadata=ADMIN, timeout=60)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _set_params(request, params: dict[str, object]) -> None:
    for key, value in params.items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        else:
            request.parameters[key].string_param = str(value)


def served_versions(lead_stub, metadata=ADMIN, **fields: object) -> set[str]:
    response = lead_stub.ScoreLeads(
        score_request(sample_leads(3), **fields), metadata=metadata, timeout=10
    )
    return {s.model_version for s in response.scores}


def index(stub) -> dict[str, tuple[str, str]]:
    found = stub.RepositoryIndex(oip.RepositoryIndexRequest(), metadata=ADMIN, timeout=10)
    return {m.version: (m.state, m.reason) for m in found.models}


@pytest.fixture
def explicit_gateway(gateway_process, tmp_path: Path, repository_v1: Path, retrained_v2: Path):
    """Explicit mode; version 2 is in the repository but the policy serves version 1 only."""
    model = repository_v1 / "lead_scorer"
    shutil.copytree(retrained_v2, model / "2")
    config = model / "config.toml"
    config.write_text(config.read_text() + "\n[version_policy]\nspecific = [1]\n")
    return gateway_process(
        "--model-repository", str(repository_v1), "--keys-file", str(keys_file(tmp_path)),
        "--model-control-mode", "explicit", "--repository-poll-secs", "0.2",
    )  # fmt: skip


def test_load_unload_and_their_refusals(explicit_gateway, repository_v1: Path) -> None:
    address = explicit_gateway.address
    with grpc.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        lead_stub = pb_grpc.LeadServiceStub(channel)
        assert served_versions(lead_stub) == {"1"}
        assert index(stub)["2"][0] == "UNAVAILABLE"
        # tritonclient, unchanged: a plain load succeeds; unknown models are NOT_FOUND; without
        # admin scope, PERMISSION_DENIED; the only version, with traffic, is not unloaded.
        results = tritonclient(
            address, ADMIN_KEY, "load:lead_scorer", "load:nope", "unload:nope",
            "unload:lead_scorer",
        )  # fmt: skip
        assert results[0] == "OK"
        assert results[1].startswith("StatusCode.NOT_FOUND|") and "nope" in results[1]
        assert results[2].startswith("StatusCode.NOT_FOUND|")
        assert results[3].startswith("StatusCode.FAILED_PRECONDITION|")
        assert "traffic" in results[3]
        denied = tritonclient(address, SCORER_KEY, "load:lead_scorer", "unload:lead_scorer")
        assert all(r.startswith("StatusCode.PERMISSION_DENIED|") for r in denied)
        assert "admin" in denied[0]
        # A version by number: loaded everywhere before the call returns, then live (highest).
        assert load(stub, "lead_scorer", version="9") == grpc.StatusCode.NOT_FOUND
        assert load(stub, "lead_scorer", version="2") == grpc.StatusCode.OK
        assert index(stub)["2"] == ("READY", "live")
        assert served_versions(lead_stub) == {"2"}
        # Version 1 may go: version 2 still serves. Then version 2 alone, with traffic: refused
        # unless forced.
        assert unload(stub, "lead_scorer", version="1") == grpc.StatusCode.OK
        assert index(stub)["1"] == ("UNAVAILABLE", "unloaded")
        assert unload(stub, "lead_scorer", version="2") == grpc.StatusCode.FAILED_PRECONDITION
        assert served_versions(lead_stub) == {"2"}
        assert unload(stub, "lead_scorer", version="7") == grpc.StatusCode.NOT_FOUND
        assert unload(stub, "lead_scorer", version="2", force=True) == grpc.StatusCode.OK
        with pytest.raises(grpc.RpcError) as gone:
            served_versions(lead_stub)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        # And back, by tritonclient's plain load.
        assert tritonclient(address, ADMIN_KEY, "load:lead_scorer") == ["OK"]
        assert served_versions(lead_stub) == {"1"}
    # The routing lives in config.toml: it survives a restart.
    text = (repository_v1 / "lead_scorer" / "config.toml").read_text()
    assert "[routing]" in text and "generation = " in text


def test_control_is_refused_when_the_mode_is_none(shared_gateway) -> None:
    results = tritonclient(shared_gateway.address, "-", "load:lead_scorer")
    assert results[0].startswith("StatusCode.FAILED_PRECONDITION|")
    assert "model_control_mode" in results[0]


def test_poll_mode_applies_new_changed_and_removed_versions(
    gateway_process, repository_v1: Path, retrained_v2: Path
) -> None:
    gateway = gateway_process(
        "--model-repository", str(repository_v1),
        "--model-control-mode", "poll", "--repository-poll-secs", "0.2",
    )  # fmt: skip
    model = repository_v1 / "lead_scorer"
    with grpc.insecure_channel(gateway.address) as channel:
        lead_stub = pb_grpc.LeadServiceStub(channel)
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        assert served_versions(lead_stub) == {"1"}
        staging = model.parent / ".staging-2"
        shutil.copytree(retrained_v2, staging)
        staging.rename(model / "2")  # appears whole
        wait_until(lambda: served_versions(lead_stub) == {"2"})
        shutil.rmtree(model / "1")
        wait_until(lambda: "1" not in index(stub))
        # A version policy: latest 1 of versions 2 and 3 (a copy of 2) serves only 3.
        shutil.copytree(model / "2", model.parent / ".staging-3")
        config = model / "config.toml"
        config.write_text(config.read_text() + "\n[version_policy]\nlatest = 1\n")
        (model.parent / ".staging-3").rename(model / "3")
        wait_until(lambda: index(stub).get("2", ("",))[0] == "UNAVAILABLE")
        assert served_versions(lead_stub) == {"3"}
        # A broken policy is reported and changes nothing.
        config.write_text(config.read_text().replace("latest = 1", "latest = 0"))
        time.sleep(1.0)
        assert served_versions(lead_stub) == {"3"}
    assert "[version_policy] latest must be an integer >= 1" in gateway.stderr_text()


def wait_until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the change did not arrive in time"
        time.sleep(0.05)
