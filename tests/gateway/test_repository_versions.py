"""Versions in the model repository, and server reflection, through the real server."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from leads_helpers import sample_leads, score_request

from gateway.settings import BUNDLED_MODELS
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.model_config import load_config
from runtimes.schema import FeatureSchema


def two_versions(tmp_path: Path) -> Path:
    """The bundled model as versions 1 and 2, plus a broken version 3."""
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, repository)
    model = repository / "lead_scorer"
    shutil.copytree(model / "1", model / "2")
    (model / "3").mkdir()
    (model / "3" / "model.onnx").write_bytes(b"not an onnx file")
    return repository


def test_latest_serves_by_default_and_every_loaded_version_is_addressable(
    gateway_process, tmp_path: Path
) -> None:
    gateway = gateway_process("--model-repository", str(two_versions(tmp_path)))
    assert "lead_scorer v1,2" in gateway.ready_line
    request = score_request(sample_leads(2))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        assert {s.model_version for s in stub.ScoreLeads(request).scores} == {"2"}
        request.model_version = "1"
        assert {s.model_version for s in stub.ScoreLeads(request).scores} == {"1"}
        index = oip_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
            oip.RepositoryIndexRequest()
        )
    states = {(m.version, m.state) for m in index.models}
    assert states == {("1", "READY"), ("2", "READY"), ("3", "FAILED")}
    assert next(m.reason for m in index.models if m.version == "3")  # says why


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            lambda text: text.replace("max_batch_size = 1024", "max_batch_size = 0"),
            "max_batch_size must be a positive integer",
        ),
        # Read only from the model's own config.toml: here they were ignored, silently.
        (
            lambda text: text + '\n[routing]\nlive = "2"\n',
            "[routing] is read only from the model's own config.toml",
        ),
        (
            lambda text: text + "\n[version_policy]\nlatest = 1\n",
            "[version_policy] is read only from the model's own config.toml",
        ),
        (
            lambda text: text.replace(
                'platform = "onnxruntime_onnx"', 'platform = "pytorch_libtorch"'
            ),
            "platform must be 'onnxruntime_onnx' (leadgw serves ONNX Runtime models only), "
            "got 'pytorch_libtorch'",
        ),
        # The graph was fed by its own input's name, while ModelInfer took only the config's.
        (
            lambda text: text.replace('[input]\nname = "features"', '[input]\nname = "inputs"'),
            "[input] name 'inputs' is not the graph's input name 'features' (",
        ),
    ],
    ids=["bad batching value", "routing table", "version policy table", "platform", "input name"],
)
def test_a_version_with_a_bad_config_fails_alone(
    gateway_process, tmp_path: Path, change: Callable[[str], str], complaint: str
) -> None:
    # docs/configuration.md: a bad config.toml stops that version from loading, the others load.
    repository = two_versions(tmp_path)
    model = repository / "lead_scorer"
    shutil.rmtree(model / "3")
    config = (model / "config.toml").read_text()
    assert "max_batch_size = 1024" in config
    assert change(config) != config
    (model / "2" / "config.toml").write_text(change(config))
    gateway = gateway_process("--model-repository", str(repository))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        assert {
            s.model_version for s in stub.ScoreLeads(score_request(sample_leads(2))).scores
        } == {"1"}
        index = oip_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
            oip.RepositoryIndexRequest()
        )
    states = {m.version: (m.state, m.reason) for m in index.models}
    assert states["1"][0] == "READY"
    assert states["2"][0] == "FAILED"
    assert complaint in states["2"][1]
    assert str(model / "2" / "config.toml") in states["2"][1]


def test_reflection_lists_the_services(shared_gateway) -> None:
    with grpc.insecure_channel(shared_gateway.address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {
        "leadgw.v1.LeadService",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
    } <= services


async def test_concurrent_mixed_sizes_and_versions_each_get_their_own_rows(
    gateway_process, tmp_path: Path
) -> None:
    repository = two_versions(tmp_path)
    config = repository / "lead_scorer" / "config.toml"
    # Always through the batch queue, so concurrent requests really share model runs.
    config.write_text(config.read_text().replace("inline_run_us = 250", "inline_run_us = 0"))
    gateway = gateway_process("--model-repository", str(repository))
    schema = FeatureSchema.from_config(load_config(config).raw)
    session = ort.InferenceSession(str(BUNDLED_MODELS / "lead_scorer" / "1" / "model.onnx"))
    requests = []
    for i in range(24):
        leads = sample_leads(1 + (i * 7) % 40, seed=100 + i, prefix=f"r{i}-")
        requests.append((leads, score_request(leads, model_version=str(1 + i % 2))))
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.LeadServiceStub(channel)
        responses = await asyncio.gather(*(stub.ScoreLeads(r) for _, r in requests))
    for (leads, request), response in zip(requests, responses, strict=True):
        expected = session.run(["probability"], {"features": schema.encode(leads)})[0][:, 0]
        assert [s.lead_id for s in response.scores] == [lead.lead_id for lead in leads]
        assert {s.model_version for s in response.scores} == {request.model_version}
        got = np.array([s.probability for s in response.scores])
        np.testing.assert_allclose(got, expected, atol=1e-6)
