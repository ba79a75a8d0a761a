"""What ``ModelConfig`` reports of batching is what the model's batcher runs with."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import grpc

from gateway.settings import BUNDLED_MODELS
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.inference import grpc_service_pb2_grpc as oip_grpc
from runtimes.batching_config import BatchingConfig
from runtimes.model_config import load_config, strip_tables

TUNED = "\n[batching]\nmax_batch_size = 64\nmax_queue_delay_us = 1500\nmax_queue_size = 333\n"


def test_model_config_reports_the_batching_the_model_runs_with(
    gateway_process, tmp_path: Path
) -> None:
    """One model with every reported setting changed, one with no [batching] table: each is
    reported as its config object holds it, defaults included (they were written out a second
    time by hand in the servicer, free to drift from BatchingConfig's)."""
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, repository)
    text = strip_tables((repository / "lead_scorer" / "config.toml").read_text(), ("batching",))
    (repository / "lead_scorer" / "config.toml").write_text(text + TUNED)
    plain = repository / "plain"
    shutil.copytree(repository / "lead_scorer" / "1", plain / "1")
    (plain / "config.toml").write_text(text.replace('name = "lead_scorer"', 'name = "plain"', 1))
    expected = {
        name: BatchingConfig.from_config(load_config(repository / name / "config.toml").raw)
        for name in ("lead_scorer", "plain")
    }
    assert expected["plain"] == BatchingConfig()
    defaults = dataclasses.asdict(BatchingConfig())
    tuned = dataclasses.asdict(expected["lead_scorer"])
    for key in ("max_batch_size", "max_queue_delay_us", "max_queue_size"):
        assert tuned[key] != defaults[key], key

    gateway = gateway_process("--model-repository", str(repository))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for name, batching in expected.items():
            config = stub.ModelConfig(oip.ModelConfigRequest(name=name), timeout=10).config
            reported = (
                config.max_batch_size,
                config.dynamic_batching.max_queue_delay_microseconds,
                config.dynamic_batching.default_queue_policy.max_queue_size,
            )
            assert reported == (
                batching.max_batch_size,
                batching.max_queue_delay_us,
                batching.max_queue_size,
            ), name


def test_model_config_reports_the_models_version_policy(gateway_process, tmp_path: Path) -> None:
    """It said ``all`` whatever the model's [version_policy] table chose."""
    repository = tmp_path / "models"
    bundled = BUNDLED_MODELS / "lead_scorer"
    text = (bundled / "config.toml").read_text()
    policies = {"every": "", "newest": "latest = 2", "chosen": "specific = [1, 3]"}
    for name, table in policies.items():
        for version in ("1", "2", "3"):
            shutil.copytree(bundled / "1", repository / name / version)
        config = text.replace('name = "lead_scorer"', f'name = "{name}"', 1)
        if table:
            config += f"\n[version_policy]\n{table}\n"
        (repository / name / "config.toml").write_text(config)

    gateway = gateway_process("--model-repository", str(repository))
    with grpc.insecure_channel(gateway.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        configs = {
            name: stub.ModelConfig(oip.ModelConfigRequest(name=name), timeout=10).config
            for name in policies
        }
    assert configs["every"].version_policy.WhichOneof("policy_choice") == "all"
    assert configs["newest"].version_policy.WhichOneof("policy_choice") == "latest"
    assert configs["newest"].version_policy.latest.num_versions == 2
    assert configs["chosen"].version_policy.WhichOneof("policy_choice") == "specific"
    assert list(configs["chosen"].version_policy.specific.versions) == [1, 3]
    # And each serves what its policy reports.
    versions = {name: c.parameters["versions"].string_value for name, c in configs.items()}
    assert versions == {"every": "1,2,3", "newest": "2,3", "chosen": "1,3"}
