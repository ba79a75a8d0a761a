"""ScoreLeads through generated stubs against the real server."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
from leads_helpers import sample_leads, score_request

from gateway.settings import BUNDLED_MODELS
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.model_config import load_config
from runtimes.schema import FeatureSchema

CONFIG = load_config(BUNDLED_MODELS / "lead_scorer" / "config.toml")
SCHEMA = FeatureSchema.from_config(CONFIG.raw)


def test_scores_match_the_model_and_reasons_are_exact(lead_stub) -> None:
    leads = sample_leads(500, seed=3)
    response = lead_stub.ScoreLeads(score_request(leads, max_reasons=len(SCHEMA.names)))
    assert [s.lead_id for s in response.scores] == [lead.lead_id for lead in leads]

    session = ort.InferenceSession(str(BUNDLED_MODELS / "lead_scorer" / "1" / "model.onnx"))
    expected_p, expected_logit, expected_c = session.run(
        ["probability", "logit", "contributions"], {"features": SCHEMA.encode(leads)}
    )
    for i, score in enumerate(response.scores):
        assert math.isclose(score.probability, float(expected_p[i, 0]), abs_tol=1e-6)
        assert math.isclose(score.logit, float(expected_logit[i, 0]), abs_tol=1e-5)
        # Every feature is listed when max_reasons covers them all: the sum is exact.
        assert len(score.reasons) == len(SCHEMA.names)
        total = score.base_value + sum(r.contribution for r in score.reasons)
        assert abs(total - score.logit) < 1e-4
        assert math.isclose(1 / (1 + math.exp(-score.logit)), score.probability, abs_tol=1e-6)
        by_feature = {r.feature: r.contribution for r in score.reasons}
        for j, name in enumerate(SCHEMA.names):
            assert abs(by_feature[name] - float(expected_c[i, j])) < 1e-5
        assert score.model_name == "lead_scorer" and score.model_version == "1"


def test_reasons_are_the_largest_by_magnitude_and_readable(lead_stub) -> None:
    leads = sample_leads(50, seed=4)
    full = lead_stub.ScoreLeads(score_request(leads, max_reasons=len(SCHEMA.names)))
    top3 = lead_stub.ScoreLeads(score_request(leads, max_reasons=3))
    for everything, short in zip(full.scores, top3.scores, strict=True):
        assert len(short.reasons) == 3
        ordered = sorted(everything.reasons, key=lambda r: -abs(r.contribution))
        assert [r.feature for r in short.reasons] == [r.feature for r in ordered[:3]]
        for reason in short.reasons:
            assert reason.label and reason.label != reason.feature


def test_default_reason_count_is_three(lead_stub) -> None:
    response = lead_stub.ScoreLeads(score_request(sample_leads(5)))
    assert all(len(s.reasons) == 3 for s in response.scores)


def test_ranks_and_bands_follow_probability(lead_stub) -> None:
    leads = sample_leads(300, seed=5)
    scores = lead_stub.ScoreLeads(score_request(leads)).scores
    assert sorted(s.rank for s in scores) == list(range(1, len(leads) + 1))
    by_rank = sorted(scores, key=lambda s: s.rank)
    probabilities = [s.probability for s in by_rank]
    assert probabilities == sorted(probabilities, reverse=True)
    for score in scores:
        if score.probability >= CONFIG.bands.hot:
            assert score.band == pb.SCORE_BAND_HOT
        elif score.probability >= CONFIG.bands.warm:
            assert score.band == pb.SCORE_BAND_WARM
        else:
            assert score.band == pb.SCORE_BAND_COLD
    assert {s.band for s in scores} >= {pb.SCORE_BAND_COLD, pb.SCORE_BAND_WARM}


def test_explicit_model_and_version(lead_stub) -> None:
    response = lead_stub.ScoreLeads(
        score_request(sample_leads(2), model_name="lead_scorer", model_version="1")
    )
    assert all(s.model_version == "1" for s in response.scores)


def test_model_infer_typed_contents_answer_typed(oip_stub) -> None:
    features = SCHEMA.encode(sample_leads(3, seed=6))
    request = oip.ModelInferRequest(model_name="lead_scorer", id="typed-1")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=list(features.shape))
    tensor.contents.fp32_contents.extend(features.ravel().tolist())
    response = oip_stub.ModelInfer(request)
    assert response.id == "typed-1"
    assert not response.raw_output_contents
    outputs = {o.name: o for o in response.outputs}
    probability = np.array(outputs["probability"].contents.fp32_contents)
    assert probability.shape == (3,)
    assert list(outputs["contributions"].shape) == [3, features.shape[1]]


def test_model_infer_raw_contents_answer_raw(oip_stub) -> None:
    features = SCHEMA.encode(sample_leads(4, seed=8))
    request = oip.ModelInferRequest(model_name="lead_scorer")
    request.inputs.add(name="features", datatype="FP32", shape=list(features.shape))
    request.raw_input_contents.append(features.astype("<f4").tobytes())
    response = oip_stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 3
    probability = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    assert probability.shape == (4,)
    assert np.all((probability > 0) & (probability < 1))
