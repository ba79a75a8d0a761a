"""The lead model: generator, training pieces, `leadgw train` end to end, and exact reasons."""

from __future__ import annotations

import argparse
import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from gateway.cli import train as cli
from runtimes.schema import FeatureSchema
from runtimes.training import metrics, synth
from runtimes.training.additive import AdditiveModel, quantile_cuts, sigmoid
from runtimes.training.calibration import fit_platt
from runtimes.training.features import CHANNELS, feature_tables
from runtimes.training.train import TrainOptions, train
from runtimes.types import LeadInput

COMMITTED = Path(__file__).resolve().parents[2] / "runtimes" / "bundled_models" / "lead_scorer"
SMALL_ROWS = 20_000


def train_args(repository: Path, **overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--repository", str(repository), "--quiet"])
    args.rows = SMALL_ROWS
    args.seed = 11
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one small model trained by `leadgw train`."""
    repository = tmp_path_factory.mktemp("repo")
    assert cli.run(train_args(repository)) == 0
    return repository


def random_leads(schema: FeatureSchema, count: int, seed: int) -> list[LeadInput]:
    """Leads with every feature drawn anywhere in its accepted range, or missing."""
    rng = np.random.default_rng(seed)
    leads = []
    for i in range(count):
        features: dict[str, Any] = {}
        for spec in schema.specs:
            if not spec.required and rng.random() < 0.2:
                continue
            if spec.kind == "number":
                # Log-uniform over wide ranges, so money values are not all in the billions.
                top = min(spec.maximum, 1e7)
                value = float(np.exp(rng.uniform(0, np.log1p(top))) - 1)
                features[spec.name] = min(max(value, spec.minimum), spec.maximum)
            elif spec.kind == "category":
                features[spec.name] = str(rng.choice(spec.categories))
            else:
                features[spec.name] = bool(rng.random() < 0.5)
        leads.append(LeadInput(f"R-{i}", features))
    return leads


def assert_reasons_exact(version_dir: Path, config_path: Path) -> None:
    config = tomllib.loads(config_path.read_text())
    schema = FeatureSchema.from_config(config)
    leads = random_leads(schema, 1_000, seed=5)
    realistic = synth.generate(1_000, seed=99).leads()
    x = np.concatenate([schema.encode(leads), schema.encode(realistic)])
    session = ort.InferenceSession(
        str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    base = float(session.get_modelmeta().custom_metadata_map["base_value"])
    probability, logit, contributions = session.run(None, {"features": x})
    assert contributions.shape == (2_000, schema.width)
    np.testing.assert_allclose(base + contributions.sum(axis=1), logit[:, 0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(sigmoid(logit[:, 0]), probability[:, 0], atol=1e-6, rtol=0)
    # A reason is not a constant: contributions vary with the leads.
    assert np.ptp(contributions, axis=0).max() > 0.5


# ---- generator ----


def test_generator_is_reproducible() -> None:
    first, again, other = synth.generate(500, 1), synth.generate(500, 1), synth.generate(500, 2)
    assert first.records() == again.records()
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.true_logit, again.true_logit)
    assert first.records() != other.records()


def test_generator_looks_like_a_crm() -> None:
    prospects = synth.generate(20_000, 4)
    records = prospects.records()
    assert 0.01 < prospects.labels.mean() < 0.08  # a few percent convert
    for field in ("household_income", "investable_assets", "days_since_last_touch", "age"):
        missing = sum(r[field] is None for r in records) / len(records)
        assert 0.01 < missing < 0.6, field
    assert {r["channel"] for r in records} == set(CHANNELS)
    known = [r for r in records if r["investable_assets"] and r["age"]]
    assets = np.array([r["investable_assets"] for r in known])
    ages = np.array([r["age"] for r in known])
    assert np.corrcoef(ages, np.log(assets))[0, 1] > 0.2  # wealth grows with age
    # Every generated record passes the serving schema.
    schema = FeatureSchema.from_config({"features": feature_tables()})
    assert schema.encode(prospects.leads()).shape == (20_000, schema.width)


# ---- pieces ----


def test_metrics_on_known_examples() -> None:
    y = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert metrics.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert metrics.average_precision(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 50_000)
    calibrated = (rng.random(50_000) < p).astype(int)
    assert metrics.expected_calibration_error(calibrated, p) < 0.01
    assert metrics.expected_calibration_error(calibrated, p * 2) > 0.05


def test_platt_recovers_scale_and_shift() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(-3, 1.5, 100_000)
    y = (rng.random(raw.size) < sigmoid(0.7 * raw + 0.4)).astype(int)
    scale, shift = fit_platt(raw, y)
    assert scale == pytest.approx(0.7, abs=0.05)
    assert shift == pytest.approx(0.4, abs=0.15)


def test_affine_and_centring_keep_the_model_exact() -> None:
    x = np.array([[0.0, 5.0], [1.0, 7.0], [2.0, 9.0], [-1.0, 9.0]], dtype=np.float32)
    cuts = [quantile_cuts(x[:, 0], 8, floor=0.0), quantile_cuts(x[:, 1], 8)]
    assert cuts[0].tolist() == [0.0, 1.0, 2.0]  # -1 (missing) gets its own bin
    tables = [np.array([0.5, -1.0, 2.0, 0.25]), np.array([1.0, 0.0, 3.0])]
    model = AdditiveModel(["a", "b"], cuts, tables, -2.0)
    changed = model.affine(0.5, 1.0).centred(model.bins(x))
    np.testing.assert_allclose(changed.logit(x), 0.5 * model.logit(x) + 1.0)
    np.testing.assert_allclose(changed.contributions(x).mean(axis=0), 0.0, atol=1e-12)


def test_training_is_reproducible() -> None:
    options = TrainOptions(rows=10_000, seed=3)
    first, again = train(options), train(options)
    assert first.model.base_value == again.model.base_value
    for a, b in zip(first.model.tables, again.model.tables, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- leadgw train, end to end ----


def test_train_writes_every_file(trained: Path) -> None:
    model_dir = trained / "lead_scorer"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.toml"]
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == [
        "metrics.json",
        "model.onnx",
        "model_card.md",
    ]
    assert (model_dir / "1" / "model.onnx").stat().st_size < 1_000_000


def test_config_has_the_loader_shape(trained: Path) -> None:
    config = tomllib.loads((trained / "lead_scorer" / "config.toml").read_text())
    assert config["name"] == "lead_scorer"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["input"] == {"name": "features"}
    assert config["outputs"] == {
        "probability": "probability",
        "logit": "logit",
        "contributions": "contributions",
    }
    assert 0 < config["bands"]["warm"] < config["bands"]["hot"] < 1
    assert config["onnxruntime"] == {"intra_op_threads": 1, "inter_op_threads": 1}
    assert set(config["batching"]) == {"max_batch_size", "max_queue_delay_us", "max_queue_size"}
    assert [f["name"] for f in config["features"]] == [f["name"] for f in feature_tables()]
    assert FeatureSchema.from_config(config).width == len(feature_tables())


def test_onnx_metadata_and_signature(trained: Path) -> None:
    session = ort.InferenceSession(
        str(trained / "lead_scorer" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    meta = session.get_modelmeta().custom_metadata_map
    names = [f["name"] for f in feature_tables()]
    assert meta["feature_names"] == ",".join(names)
    assert meta["leadgw_model_version"] == "1"
    assert -8 < float(meta["base_value"]) < 0
    (features,) = session.get_inputs()
    assert (features.name, features.type, features.shape[1]) == ("features", "tensor(float)", 16)
    outputs = {o.name: o.shape[1] for o in session.get_outputs()}
    assert outputs == {"probability": 1, "logit": 1, "contributions": len(names)}


def test_metrics_and_card_report_the_run(trained: Path) -> None:
    version_dir = trained / "lead_scorer" / "1"
    report = json.loads((version_dir / "metrics.json").read_text())
    test = report["test"]
    assert test["auc"] > 0.75  # chance is 0.5; the generator's ceiling is about 0.84
    assert test["auc"] <= report["ceiling"]["auc"] + 0.02
    assert test["pr_auc"] > 3 * test["positive_rate"]
    assert test["ece"] < 0.02
    assert report["rows"] == SMALL_ROWS and report["seed"] == 11
    assert report["onnx"]["checks"]["reasons_sum_vs_logit"] < 1e-4
    card = (version_dir / "model_card.md").read_text()
    assert f"| ROC AUC | {test['auc']:.4f} | {report['ceiling']['auc']:.4f} |" in card
    assert f"| hot | ≥ {report['bands_thresholds']['hot']} |" in card
    assert "leadgw train --model lead_scorer --version 1 --rows 20000 --seed 11" in card
    assert "`investable_assets`" in card


def test_trained_model_reasons_are_exact(trained: Path) -> None:
    model_dir = trained / "lead_scorer"
    assert_reasons_exact(model_dir / "1", model_dir / "config.toml")


def test_next_version_gets_its_own_config_when_bands_change(trained: Path) -> None:
    shared = (trained / "lead_scorer" / "config.toml").read_text()
    assert cli.run(train_args(trained, seed=12)) == 0
    version_dir = trained / "lead_scorer" / "2"
    assert (version_dir / "model.onnx").is_file()
    assert (trained / "lead_scorer" / "config.toml").read_text() == shared
    own = tomllib.loads((version_dir / "config.toml").read_text())
    assert own["bands"] != tomllib.loads(shared)["bands"]


def test_a_version_with_the_same_settings_shares_a_model_config_that_has_control_tables(
    trained: Path, tmp_path: Path
) -> None:
    """``leadgw models canary`` (or a hand) writes [routing] into the model's config.toml, and
    the trainer writes no control table: compared whole, the files always differed, so every
    version trained after a canary got a config.toml of its own, identical settings and all."""
    model_dir = tmp_path / "lead_scorer"
    shutil.copytree(trained / "lead_scorer" / "1", model_dir / "1")
    shared = (trained / "lead_scorer" / "config.toml").read_text() + (
        '\n[version_policy]\nlatest = 2\n\n[routing]\ngeneration = 3\nlive = "1"\n'
        '\n[routing.aliases]\nstable = "1"\n'
    )
    (model_dir / "config.toml").write_text(shared)
    assert cli.run(train_args(tmp_path)) == 0  # the fixture's seed: the same settings
    assert sorted(p.name for p in (model_dir / "2").iterdir()) == [
        "metrics.json",
        "model.onnx",
        "model_card.md",
    ]
    assert (model_dir / "config.toml").read_text() == shared  # its control tables kept


def test_bad_arguments_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(train_args(tmp_path / "nowhere")) == 2
    assert "is not an existing folder" in capsys.readouterr().err
    (tmp_path / "lead_scorer" / "3").mkdir(parents=True)
    assert cli.run(train_args(tmp_path, version="3")) == 2
    assert "version 3 already exists" in capsys.readouterr().err
    assert cli.run(train_args(tmp_path, version="v1")) == 2
    assert "must be a positive integer" in capsys.readouterr().err


# ---- the committed model ----


def test_committed_model_reasons_are_exact() -> None:
    assert_reasons_exact(COMMITTED / "1", COMMITTED / "config.toml")


def test_committed_model_card_matches_its_metrics() -> None:
    report = json.loads((COMMITTED / "1" / "metrics.json").read_text())
    card = (COMMITTED / "1" / "model_card.md").read_text()
    assert f"| ROC AUC | {report['test']['auc']:.4f} |" in card
    assert report["test"]["auc"] > 0.8
    config = tomllib.loads((COMMITTED / "config.toml").read_text())
    assert config["bands"] == report["bands_thresholds"]
