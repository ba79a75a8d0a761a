"""The keys file is followed without a restart: on change, on SIGHUP, and safely when bad."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from leads_helpers import sample_leads, score_request

from gateway.auth import hash_key
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc

KEEP, REVOKE, ADDED = "key-that-stays", "key-to-revoke", "key-added-later"
BOUND_S = 20.0  # generous bound for loaded machines; the design target is one second


def _entry(tenant: str, key: str) -> str:
    return f'[[keys]]\nname = "{tenant}"\ntenant = "{tenant}"\nscopes = ["score"]\nsha256 = "{hash_key(key)}"\n\n'


def _replace(path: Path, text: str) -> None:
    """As a deployment would: write aside, then rename over the file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _code(channel: grpc.Channel, key: str) -> grpc.StatusCode:
    stub = pb_grpc.LeadServiceStub(channel)
    try:
        stub.ScoreLeads(score_request(sample_leads(1)), metadata=(("x-api-key", key),), timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class _Steady:
    """Calls with one key in a loop on its own thread, counting what did not succeed."""

    def __init__(self, address: str, key: str) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.calls = 0
        self._stop = threading.Event()
        self._address, self._key = address, key
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            while not self._stop.is_set():
                code = _code(channel, self._key)
                self.calls += 1
                if code != grpc.StatusCode.OK:
                    self.failures.append(code)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(_entry("keep", KEEP) + _entry("gone", REVOKE))
    return path


def test_revoked_key_stops_working_and_other_keys_never_fail(gateway_process, keys_file) -> None:
    gateway = gateway_process("--keys-file", str(keys_file))
    steady = _Steady(gateway.address, KEEP)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            assert _code(channel, REVOKE) == grpc.StatusCode.OK
            _replace(keys_file, _entry("keep", KEEP) + _entry("new", ADDED))
            _wait_for(lambda: _code(channel, REVOKE) == grpc.StatusCode.UNAUTHENTICATED, "revoke")
            assert _code(channel, ADDED) == grpc.StatusCode.OK
            # Rotate back and forth a few times while the steady caller keeps calling.
            for round_ in range(3):
                _replace(keys_file, _entry("keep", KEEP) + _entry(f"r{round_}", REVOKE))
                _wait_for(lambda: _code(channel, REVOKE) == grpc.StatusCode.OK, "re-add")
                _replace(keys_file, _entry("keep", KEEP))
                _wait_for(lambda: _code(channel, REVOKE) != grpc.StatusCode.OK, "revoke again")
    finally:
        steady.stop()
    assert steady.calls > 0
    assert steady.failures == []
    assert "keys file reloaded" in gateway.stderr_text()


def test_bad_or_empty_keys_file_keeps_the_old_keys_and_logs_an_error(
    gateway_process, keys_file
) -> None:
    gateway = gateway_process("--keys-file", str(keys_file))
    with grpc.insecure_channel(gateway.address) as channel:
        _replace(keys_file, "[[keys]\nthis is not toml")
        _wait_for(lambda: "not reloaded" in gateway.stderr_text(), "the parse error in the log")
        assert _code(channel, KEEP) == grpc.StatusCode.OK
        assert _code(channel, "anything") == grpc.StatusCode.UNAUTHENTICATED
        _replace(keys_file, "# every key removed by mistake\n")
        _wait_for(lambda: "holds no key" in gateway.stderr_text(), "the empty-file error")
        assert _code(channel, KEEP) == grpc.StatusCode.OK
        assert _code(channel, REVOKE) == grpc.StatusCode.OK


def _rewrite_unnoticed(path: Path, text: str) -> None:
    """Same inode, same size, same modification time: only SIGHUP can tell it changed."""
    before = os.stat(path)
    assert len(text.encode()) == before.st_size
    with open(path, "r+") as handle:
        handle.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_sighup_to_the_supervisor_reloads_every_worker(gateway_process, keys_file) -> None:
    gateway = gateway_process("--keys-file", str(keys_file), "--workers", "2")
    # Swap the revoked key's hash for the added key's: the file's stamp does not move.
    _rewrite_unnoticed(keys_file, _entry("keep", KEEP) + _entry("gone", ADDED))
    time.sleep(1.5)  # three polls: the change must stay unnoticed without the signal
    with grpc.insecure_channel(gateway.address) as channel:
        assert _code(channel, ADDED) == grpc.StatusCode.UNAUTHENTICATED
    gateway.process.send_signal(signal.SIGHUP)
    _wait_for(lambda: gateway.stderr_text().count("keys file reloaded") >= 2, "both reloads")
    # Fresh connections spread over both workers: each must know the new key.
    for _ in range(16):
        own_connection = (("grpc.use_local_subchannel_pool", 1),)
        with grpc.insecure_channel(gateway.address, options=own_connection) as channel:
            assert _code(channel, ADDED) == grpc.StatusCode.OK
            assert _code(channel, REVOKE) == grpc.StatusCode.UNAUTHENTICATED
    assert gateway.stop() == 0
