"""Versions loaded, swapped and unloaded while clients score: no call fails, every answer names
the version that produced it, and a version that cannot load leaves the live one serving."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from gateway.server import start
from gateway.settings import Settings
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.model_config import find_config, load_config
from runtimes.schema import FeatureSchema
from tests.gateway.leads_helpers import sample_leads, score_request

CLIENTS = 4


def expected_probabilities(version_dir: Path, leads: list) -> np.ndarray:
    schema = FeatureSchema.from_config(
        load_config(find_config(version_dir.parent, version_dir)).raw
    )
    session = ort.InferenceSession(str(version_dir / "model.onnx"))
    return session.run(["probability"], {"features": schema.encode(leads)})[0][:, 0]


class Scorers:
    """Client threads scoring through the real server until stopped; they keep every answer."""

    def __init__(self, address: str, leads: list) -> None:
        self.request = score_request(leads)
        self.answers: list[tuple[str, list[float]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(address,), daemon=True) for _ in range(CLIENTS)
        ]

    async def __aenter__(self) -> Scorers:
        for thread in self._threads:
            thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Joined on a thread: the server answering their last calls runs on this event loop.
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def _run(self, address: str) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            while not self._stop.is_set():
                try:
                    response = stub.ScoreLeads(self.request, timeout=10)
                except grpc.RpcError as exc:
                    with self._lock:
                        self.failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                versions = {s.model_version for s in response.scores}
                assert len(versions) == 1
                with self._lock:
                    self.answers.append((versions.pop(), [s.probability for s in response.scores]))


async def wait_for_answers(scorers: Scorers, more: int) -> None:
    """Lets the clients get ``more`` answers (from the current state) before the next change."""
    target = scorers.count() + more
    while scorers.count() < target:
        await asyncio.sleep(0.01)


async def test_swaps_while_scoring_fail_no_call(
    tmp_path: Path, repository_v1: Path, retrained_v2: Path
) -> None:
    model = repository_v1 / "lead_scorer"
    leads = sample_leads(5, seed=3)
    expected = {
        "1": expected_probabilities(model / "1", leads),
        "2": expected_probabilities(retrained_v2, leads),
    }
    assert not np.allclose(expected["1"], expected["2"], atol=1e-4)  # the versions differ
    settings = Settings(
        port=0, data_dir=tmp_path / "data", load_demo_corpus=False, model_repository=repository_v1
    )
    gateway = await start(settings)
    try:
        async with Scorers(gateway.address, leads) as scorers:
            await wait_for_answers(scorers, 20)
            # A new version: loaded and warmed on a thread, then live (the highest).
            shutil.copytree(retrained_v2, model / "2")
            await gateway.repository.sync()
            assert gateway.repository.live_version("lead_scorer") == "2"
            await wait_for_answers(scorers, 20)
            # A version that cannot load: reported with its reason; version 2 keeps serving.
            (model / "3").mkdir()
            (model / "3" / "model.onnx").write_bytes(b"not an onnx file")
            report = await gateway.repository.sync()
            assert "3" in report.failed["lead_scorer"]
            await wait_for_answers(scorers, 20)
            # The old version removed from the repository: unloaded after its last call.
            shutil.rmtree(model / "1")
            report = await gateway.repository.sync()
            assert ("lead_scorer", "1") in report.unloaded
            await wait_for_answers(scorers, 20)
            # The live version's files replaced in place: reloaded, swapped, the old one retired.
            shutil.copyfile(model / "2" / "model.onnx", model / "2" / "model.tmp")
            (model / "2" / "model.tmp").replace(model / "2" / "model.onnx")
            report = await gateway.repository.sync()
            assert ("lead_scorer", "2") in report.loaded
            await wait_for_answers(scorers, 20)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            index = await oip_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
                oip.RepositoryIndexRequest()
            )
    finally:
        await gateway.stop(grace=1.0, drain=0)
    assert scorers.failures == []
    seen = {version for version, _ in scorers.answers}
    assert seen == {"1", "2"}
    for version, probabilities in scorers.answers:
        np.testing.assert_allclose(probabilities, expected[version], atol=1e-6)
    states = {m.version: (m.state, m.reason) for m in index.models}
    assert states["2"] == ("READY", "live")
    assert states["3"][0] == "FAILED" and "model.onnx" in states["3"][1]
    assert "1" not in states  # its folder is gone
